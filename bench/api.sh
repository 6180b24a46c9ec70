#!/usr/bin/env bash
# API read benchmark: latency of the issue list (plain, filtered, sorted, with stats), the issue
# detail, its tag summaries and its latest event, with N issues and M events in the store.
#
# Usage: bench/api.sh [--issues N] [--events M] [--requests R] [--database-url URL] [--keep]
# Defaults: 10,000 issues, 1,000,000 events, 300 timed requests per scenario (after 30
# untimed), a fresh SQLite file. --database-url postgres://USER@HOST[:PORT]/DB creates a fresh
# database stackhound_bench_<random> on that server (psql, trust or PGPASSWORD) and drops it
# at the end unless --keep.
# The store is filled through the ingestion endpoint by `stackhound stress` (the realistic
# 10 KB Django event in N grouping variants, all with environment `production` and the tag
# `browser:Firefox 125.0`), so the filtered lists below match every issue: their slowest case.
# On PostgreSQL the tables are then vacuumed and analyzed, as autovacuum would.
# One client, one keep-alive connection, requests one after another; p50/p99/max per scenario
# in milliseconds. Everything runs on 127.0.0.1 only.
set -euo pipefail

ISSUES=10000
EVENTS=1000000
REQUESTS=300
URL_ARG=
KEEP=0
usage() { sed -n '5,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --issues) ISSUES=$2; shift 2 ;;
        --events) EVENTS=$2; shift 2 ;;
        --requests) REQUESTS=$2; shift 2 ;;
        --database-url) URL_ARG=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
echo "== building (release)" >&2
cargo build --release
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/stackhound
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stackhound-apibench.XXXXXX")
SERVER_PID=
PG_DB=
PG_ADMIN=

cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ -n "$PG_DB" ] && [ "$KEEP" = 0 ]; then
        psql -X -q -d "$PG_ADMIN" -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" || true
    fi
    if [ "$KEEP" = 1 ]; then echo "kept $WORK ${PG_DB:+and database $PG_DB}" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

case "$URL_ARG" in
    '') DB_URL=sqlite://$WORK/bench.sqlite3; DB_DESC="SQLite (fresh file)" ;;
    postgres://*|postgresql://*)
        PG_ADMIN=$URL_ARG
        PG_DB=stackhound_bench_$(python3 -c 'import secrets; print(secrets.token_hex(5))')
        psql -X -q -d "$PG_ADMIN" -c "CREATE DATABASE \"$PG_DB\""
        DB_URL=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit((p.scheme, p.netloc, "/" + sys.argv[2], p.query, "")))' "$URL_ARG" "$PG_DB")
        DB_DESC="PostgreSQL $(psql -X -A -t -d "$PG_ADMIN" -c 'SHOW server_version' | cut -d' ' -f1) (fresh database)"
        ;;
    *) echo "--database-url: sqlite is the default; only postgres:// URLs are taken" >&2; exit 2 ;;
esac

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export DATABASE_URL=$DB_URL STACKHOUND_PUBLIC_URL=http://127.0.0.1:$PORT
PROJECT_JSON=$("$BIN" project create bench --json)
DSN=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["dsn"])' <<<"$PROJECT_JSON")
TOKEN=$("$BIN" token create --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
"$BIN" serve --bind "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 30 "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
done

echo "== filling: $EVENTS events over $ISSUES issues ($DB_DESC)" >&2
FILL_START=$(date +%s)
"$BIN" stress --dsn "$DSN" --issues "$ISSUES" --max-events "$EVENTS" --duration 36000 \
    --concurrency 64 --json >"$WORK/fill.json"
FILL_SECS=$(( $(date +%s) - FILL_START ))
echo "== filled in ${FILL_SECS}s: $(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["accepted"], "accepted")' "$WORK/fill.json")" >&2
# PostgreSQL plans from table statistics, which autovacuum gathers within about a minute of a
# fill like this one; a server running with autovacuum off (as this project's CI machine does)
# would be measured with none at all, so they are gathered here, as autovacuum would.
if [ -n "$PG_DB" ]; then
    echo "== VACUUM ANALYZE (autovacuum: $(psql -X -A -t -d "$DB_URL" -c 'SHOW autovacuum'))" >&2
    psql -X -q -d "$DB_URL" -c "VACUUM ANALYZE"
fi

python3 - "$PORT" "$TOKEN" "$REQUESTS" "$DB_DESC" "$ISSUES" "$EVENTS" <<'EOF'
import http.client, json, random, sys, time, urllib.parse

port, token, requests, db_desc, issues, events = sys.argv[1:7]
requests = int(requests)
conn = http.client.HTTPConnection("127.0.0.1", int(port))
headers = {"Authorization": f"Bearer {token}"}

def get(path):
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        sys.exit(f"GET {path}: {resp.status} {body[:300]!r}")
    return body

base = "/api/0/projects/stackhound/bench/issues/"
ids = [i["id"] for i in json.loads(get(base + "?query=&limit=100"))]
total = sum(1 for _ in ids)
rng = random.Random(7)

def q(**params):
    return base + "?" + urllib.parse.urlencode(params)

scenarios = [
    ("list (all statuses, by last seen)", lambda: q(query="", limit=100)),
    ("list is:unresolved + stats 24h", lambda: q(query="is:unresolved", statsPeriod="24h", limit=100)),
    ("list sort=freq + stats 14d", lambda: q(query="", sort="freq", statsPeriod="14d", limit=100)),
    ("filtered: environment:production", lambda: q(query="is:unresolved environment:production", limit=100)),
    ("filtered: env + tag, sort=freq", lambda: q(query='environment:production browser:"Firefox 125.0"', sort="freq", limit=100)),
    ("filtered: free text + times_seen", lambda: q(query="KeyError times_seen:>10", limit=100)),
    ("issue detail", lambda: f"/api/0/issues/{rng.choice(ids)}/"),
    ("tag summaries", lambda: f"/api/0/issues/{rng.choice(ids)}/tags/"),
    ("tag values (browser)", lambda: f"/api/0/issues/{rng.choice(ids)}/tags/browser/values/"),
    ("latest event", lambda: f"/api/0/issues/{rng.choice(ids)}/events/latest/"),
]
print(f"\n{db_desc}: {issues} issues, {events} events; {requests} requests per scenario, one connection")
print(f"{'scenario':40} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
worst = 0.0
for name, path in scenarios:
    for _ in range(30):
        get(path())
    times = []
    for _ in range(requests):
        p = path()
        t = time.perf_counter()
        get(p)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p50, p99 = times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]
    worst = max(worst, p99)
    print(f"{name:40} {p50:8.2f} {p99:8.2f} {times[-1]:8.2f}")
print(f"worst p99: {worst:.2f} ms (target: under 20 ms)")
EOF
