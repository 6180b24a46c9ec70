#!/usr/bin/env bash
# Ingest benchmark: stored events/s, latency and peak RSS of `stackhound serve` on a fresh
# SQLite file, checked against the issue counts the API reports, and compared with the
# bare-HTTP ceiling (`stackhound bench-sink`) measured with the same load generator.
#
# Usage: bench/ingest.sh [--duration S] [--concurrency N] [--compress gzip|br|none]
#                        [--issues N] [--muted N] [--ceiling-duration S] [--keep]
# Defaults: 60 s, 256 connections, gzip, 200 issues, 0 muted, ceiling min(duration, 20) s.
# --muted N (at most 100): a 3 s warm-up creates the issues, then N of them are muted with
# volume conditions that never hold, so every event of theirs is checked against them.
# Everything runs on 127.0.0.1 only. Exits non-zero if the stored count does not match.
set -euo pipefail

DURATION=60
CONCURRENCY=256
COMPRESS=gzip
ISSUES=200
MUTED=0
CEILING_DURATION=
KEEP=0

usage() { sed -n '6,9p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --compress) COMPRESS=$2; shift 2 ;;
        --issues) ISSUES=$2; shift 2 ;;
        --muted) MUTED=$2; shift 2 ;;
        --ceiling-duration) CEILING_DURATION=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
# The sink is only a reference point: a shorter run is enough, but never longer than ours.
if [ -z "$CEILING_DURATION" ]; then
    CEILING_DURATION=$(python3 -c "print(min(float('$DURATION'), 20.0))")
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
echo "== building (release)" >&2
cargo build --release
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/stackhound

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stackhound-bench.XXXXXX")
DB=$WORK/bench.sqlite3
DB_URL=sqlite://$DB
SERVER_PID=
SINK_PID=

# Stops one background process we started: SIGTERM, then SIGKILL after 30 s.
stop() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop "$SERVER_PID"
    stop "$SINK_PID"
    if [ "$KEEP" = 1 ]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
json_field() { # json_field FIELD < json
    python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
# Waits until something accepts TCP connections on the port, or the process dies.
wait_listening() {
    local pid=$1 port=$2 log=$3
    for _ in $(seq 600); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "process exited before listening on $port; log:" >&2
            tail -n 30 "$log" >&2
            exit 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing listening on $port after 60 s" >&2
    exit 1
}
vm_hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# 1-2. Fresh database, project, token, server.
PORT=$(free_port)
export STACKHOUND_PUBLIC_URL=http://127.0.0.1:$PORT
PROJECT_JSON=$("$BIN" project create bench --json --database-url "$DB_URL")
DSN=$(json_field dsn <<<"$PROJECT_JSON")
SLUG=$(json_field slug <<<"$PROJECT_JSON")
TOKEN=$(json_field token <<<"$("$BIN" token create --json --database-url "$DB_URL")")
KEY=$(sed -E 's#^http://([^@:]+).*#\1#' <<<"$DSN")
PROJECT_ID=$(sed -E 's#.*/([^/]+)/?$#\1#' <<<"$DSN")

echo "== serving on 127.0.0.1:$PORT (database $DB)" >&2
"$BIN" serve --bind "127.0.0.1:$PORT" --database-url "$DB_URL" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
wait_listening "$SERVER_PID" "$PORT" "$WORK/server.log"

# 2b. Optionally mute some issues first.
WARMUP_ACCEPTED=0
if [ "$MUTED" -gt 0 ]; then
    echo "== warm-up, then muting $MUTED issues" >&2
    "$BIN" stress --dsn "$DSN" --duration 3 --concurrency 16 --compress "$COMPRESS" \
        --issues "$ISSUES" --json >"$WORK/warmup.json"
    WARMUP_ACCEPTED=$(json_field accepted <"$WORK/warmup.json")
    python3 - "$PORT" "$SLUG" "$TOKEN" "$MUTED" <<'EOF'
import json, sys, urllib.request
port, slug, token, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base = f"http://127.0.0.1:{port}/api/0/projects/stackhound/{slug}/issues/"
auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
with urllib.request.urlopen(urllib.request.Request(f"{base}?query=&limit=100", headers=auth)) as r:
    ids = [i["id"] for i in json.load(r)][:n]
never = [{"period": "hour", "nr_of_periods": 1, "volume": 10**12},
         {"period": "minute", "nr_of_periods": 5, "volume": 10**12}]
body = json.dumps({"status": "ignored", "statusDetails": {"unmuteOn": never}}).encode()
query = "&".join(f"id={i}" for i in ids)
req = urllib.request.Request(f"{base}?{query}", data=body, headers=auth, method="PUT")
with urllib.request.urlopen(req) as r:
    assert r.status == 200, r.status
with urllib.request.urlopen(urllib.request.Request(f"{base}?query=is:ignored&limit=100", headers=auth)) as r:
    print(f"== muted {len(json.load(r))} issues", file=sys.stderr)
EOF
fi

# 3. Load.
echo "== stress: ${DURATION}s, $CONCURRENCY connections, $COMPRESS, $ISSUES issues" >&2
"$BIN" stress --dsn "$DSN" --duration "$DURATION" --concurrency "$CONCURRENCY" \
    --compress "$COMPRESS" --issues "$ISSUES" --json >"$WORK/stress.json"

# 4. Every accepted event must be counted in exactly one issue. Then peak RSS, then stop.
STORED=$(python3 - "$PORT" "$SLUG" "$TOKEN" <<'EOF'
import json, re, sys, urllib.parse, urllib.request
port, slug, token = sys.argv[1:4]
base = f"http://127.0.0.1:{port}/api/0/projects/stackhound/{slug}/issues/"
cursor, total, pages = "", 0, 0
while True:
    query = urllib.parse.urlencode({"query": "", "cursor": cursor})
    req = urllib.request.Request(f"{base}?{query}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        issues = json.load(resp)
        link = resp.headers.get("Link", "")
    total += sum(int(issue["count"]) for issue in issues)
    pages += 1
    nxt = [p for p in link.split(",") if 'rel="next"' in p]
    if not nxt or 'results="true"' not in nxt[0] or pages > 100000:
        break
    cursor = re.search(r'cursor="([^"]*)"', nxt[0]).group(1)
print(total)
EOF
)
PEAK_RSS_KB=$(vm_hwm_kb "$SERVER_PID")
stop "$SERVER_PID"
SERVER_PID=
DB_BYTES=$(python3 -c 'import os, sys; print(sum(os.path.getsize(p) for p in sys.argv[1:] if os.path.exists(p)))' \
    "$DB" "$DB-wal" "$DB-shm")
ACCEPTED=$(( $(json_field accepted <"$WORK/stress.json") + WARMUP_ACCEPTED ))
if [ "$STORED" = "$ACCEPTED" ]; then
    CHECK=MATCH
else
    CHECK=MISMATCH
fi
echo "== $CHECK: stress accepted $ACCEPTED, issues count $STORED" >&2

# 5. Ceiling: same load against the bare HTTP sink.
PORT2=$(free_port)
echo "== ceiling: bench-sink on 127.0.0.1:$PORT2 for ${CEILING_DURATION}s" >&2
"$BIN" bench-sink --bind "127.0.0.1:$PORT2" >"$WORK/sink.log" 2>&1 &
SINK_PID=$!
wait_listening "$SINK_PID" "$PORT2" "$WORK/sink.log"
"$BIN" stress --dsn "http://$KEY@127.0.0.1:$PORT2/$PROJECT_ID" --duration "$CEILING_DURATION" \
    --concurrency "$CONCURRENCY" --compress "$COMPRESS" --issues "$ISSUES" --json \
    >"$WORK/sink.json"
stop "$SINK_PID"
SINK_PID=

# 6. Summary.
python3 - "$WORK/stress.json" "$WORK/sink.json" "$PEAK_RSS_KB" "$DB_BYTES" "$STORED" "$CHECK" \
    "$DURATION" "$CONCURRENCY" "$COMPRESS" <<'EOF'
import json, sys
ours, sink = (json.load(open(p)) for p in sys.argv[1:3])
rss_kb, db_bytes, stored = (int(x) for x in sys.argv[3:6])
check, duration, concurrency, compress = sys.argv[6:10]
pct = 100 * ours["events_per_sec"] / sink["events_per_sec"] if sink["events_per_sec"] else 0
def cpu(r):
    c = r.get("client_cpu_s")
    return f"{c * 1e6 / r['sent']:.1f} us/request" if c is not None and r["sent"] else "n/a"
print(f"ingest benchmark ({duration}s, {concurrency} connections, {compress}):")
print(f"  stored        {ours['events_per_sec']:.0f} events/s, p50 {ours['p50_ms']:.1f} ms, "
      f"p99 {ours['p99_ms']:.1f} ms ({ours['accepted']} accepted; 4xx {ours['rejected_4xx']}, "
      f"503/429 {ours['overloaded_503_429']}, 5xx {ours['errors_5xx']}, "
      f"transport {ours['transport_errors']})")
print(f"  peak RSS      {rss_kb / 1024:.1f} MB")
print(f"  database      {db_bytes / 1e6:.1f} MB, {stored} events stored ({check}), "
      f"{db_bytes / max(stored, 1):.0f} bytes/event")
print(f"  ceiling       {sink['events_per_sec']:.0f} requests/s (bench-sink), p50 "
      f"{sink['p50_ms']:.1f} ms, p99 {sink['p99_ms']:.1f} ms")
print(f"  ratio         {pct:.1f}% of the bare-HTTP ceiling")
print(f"  load gen CPU  {cpu(ours)} (server run), {cpu(sink)} (sink run)")
EOF
[ "$CHECK" = MATCH ]
