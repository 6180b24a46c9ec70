#!/usr/bin/env bash
# Ingest benchmark: stored events/s, latency and peak RSS of `stackhound serve` on a fresh
# SQLite file (or a fresh PostgreSQL database), checked against the issue counts the API
# reports, and compared with the bare-HTTP ceiling (`stackhound bench-sink`) measured with the
# same load generator.
#
# Usage: bench/ingest.sh [--duration S] [--concurrency N] [--compress gzip|br|none]
#                        [--issues N] [--muted N] [--ceiling-duration S] [--keep]
#                        [--database-url URL] [--processes N] [--grouping-transition]
# Defaults: 60 s, 256 connections, gzip, 200 issues, 0 muted, ceiling min(duration, 20) s,
# a fresh SQLite file, 1 process.
# --muted N (at most 100): a 3 s warm-up creates the issues, then N of them are muted with
# volume conditions that never hold, so every event of theirs is checked against them.
# --database-url postgres://USER[:PASS]@HOST[:PORT]/DB: creates a fresh database
# stackhound_bench_<random> on that server (through psql, connecting to DB) and drops it at
# the end unless --keep. A sqlite:// URL is used as it is (not fresh, never deleted).
# --processes N: N `stackhound serve` on the one database (PostgreSQL only), each on its own
# port; one load generator spreads its connections round-robin over them, and the ceiling
# runs as N bench-sinks the same way. The issue counts are read through the first server.
# --grouping-transition: the project starts on the previous grouping scheme, so the first
# event upgrades it and the run happens inside the transition (every event hashed twice).
# Everything runs on 127.0.0.1 only. Exits non-zero if the stored count does not match.
set -euo pipefail

DURATION=60
CONCURRENCY=256
COMPRESS=gzip
ISSUES=200
MUTED=0
CEILING_DURATION=
KEEP=0
URL_ARG=
PROCESSES=1
TRANSITION=0

usage() { sed -n '7,20p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --compress) COMPRESS=$2; shift 2 ;;
        --issues) ISSUES=$2; shift 2 ;;
        --muted) MUTED=$2; shift 2 ;;
        --ceiling-duration) CEILING_DURATION=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --database-url) URL_ARG=$2; shift 2 ;;
        --processes) PROCESSES=$2; shift 2 ;;
        --grouping-transition) TRANSITION=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
die() { echo "$*" >&2; exit 2; }
case "$PROCESSES" in ''|*[!0-9]*|0*) die "--processes must be a positive integer" ;; esac
case "$CONCURRENCY" in ''|*[!0-9]*|0*) die "--concurrency must be a positive integer" ;; esac
[ "$PROCESSES" -le "$CONCURRENCY" ] \
    || die "--processes $PROCESSES is more than --concurrency $CONCURRENCY: some server would get no connection"
# Never echo a database password: user:secret@ -> user:***@.
redact() {
    BENCH_URL=$1 python3 -c '
import os
url = os.environ["BENCH_URL"]
scheme, sep, rest = url.partition("://")
authority, slash, path = rest.partition("/")
userinfo, at, host = authority.rpartition("@")
if sep and at and ":" in userinfo:
    user = userinfo.split(":", 1)[0]
    url = f"{scheme}://{user}:***@{host}{slash}{path}"
print(url)'
}
case "$URL_ARG" in
    '') DB_KIND=sqlite ;;
    sqlite:*)
        DB_KIND=sqlite
        case "$URL_ARG" in *:memory:*|*mode=memory*)
            die "--database-url: an in-memory SQLite database cannot be shared between processes" ;;
        esac
        # The path as sqlx reads it; relative to the caller's directory, made absolute
        # because the script changes directory.
        SQLITE_PATH=${URL_ARG#sqlite:}
        SQLITE_PATH=${SQLITE_PATH#//}
        SQLITE_QUERY=
        case "$SQLITE_PATH" in *\?*) SQLITE_QUERY="?${SQLITE_PATH#*\?}"; SQLITE_PATH=${SQLITE_PATH%%\?*} ;; esac
        [ -n "$SQLITE_PATH" ] || die "--database-url $URL_ARG: no file path"
        case "$SQLITE_PATH" in /*) ;; *) SQLITE_PATH=$PWD/$SQLITE_PATH ;; esac
        ;;
    postgres://*|postgresql://*)
        DB_KIND=postgres
        command -v psql >/dev/null || die "--database-url $(redact "$URL_ARG"): psql not found"
        ;;
    *) die "--database-url $(redact "$URL_ARG"): only sqlite:// and postgres:// URLs are supported" ;;
esac
if [ "$PROCESSES" -gt 1 ] && [ "$DB_KIND" != postgres ]; then
    die "--processes $PROCESSES needs a PostgreSQL --database-url: SQLite is one machine, one process"
fi
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
SERVER_PIDS=()
SINK_PIDS=()
PG_DB=          # set once the fresh PostgreSQL database exists
PG_PASSWORD=
PG_ADMIN_URL=

# psql on the server of --database-url, connected to its database; the password goes through
# the environment, never the command line.
pg() {
    if [ -n "$PG_PASSWORD" ]; then
        PGPASSWORD=$PG_PASSWORD psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$PG_ADMIN_URL" "$@"
    else
        psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$PG_ADMIN_URL" "$@"
    fi
}

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
stop_all() { # stop_all PID...
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do stop "$pid"; done
}
cleanup() {
    stop_all ${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"} ${SINK_PIDS[@]+"${SINK_PIDS[@]}"}
    if [ -n "$PG_DB" ]; then
        if [ "$KEEP" = 1 ]; then
            echo "kept database $PG_DB ($(redact "$DB_URL"))" >&2
        elif pg -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" 2>/dev/null \
            || pg -c "DROP DATABASE IF EXISTS \"$PG_DB\""; then
            echo "dropped database $PG_DB" >&2
        else
            echo "could not drop database $PG_DB" >&2
        fi
    fi
    if [ "$KEEP" = 1 ]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() { # free_ports N: N distinct free loopback ports, one a line
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))
EOF
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
            tail -n 30 "$log" | mask >&2
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
# Copies stdin to stdout with the password of the database URL (as written and decoded)
# replaced by ***: for anything a stackhound process printed, should it ever show the URL.
mask() {
    BENCH_URL=${DB_URL:-} python3 -c '
import os, sys, urllib.parse as up
pw = up.urlsplit(os.environ["BENCH_URL"]).password if "://" in os.environ["BENCH_URL"] else None
forms = sorted({pw, up.unquote(pw)} if pw else set(), key=len, reverse=True)
for line in sys.stdin:
    for f in forms:
        line = line.replace(f, "***")
    sys.stdout.write(line)'
}
# cli ARGS...: a stackhound command on the database (URL through DATABASE_URL); its stderr
# goes to ours with the password masked.
cli() {
    local rc=0
    DATABASE_URL=$DB_URL "$BIN" "$@" 2>"$WORK/cli.err" || rc=$?
    mask <"$WORK/cli.err" >&2
    return "$rc"
}
vm_hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
# Size of the database in bytes: the SQLite file with its WAL, or pg_database_size.
db_bytes() {
    if [ "$DB_KIND" = postgres ]; then
        pg -c "SELECT pg_database_size('$PG_DB')"
    else
        python3 -c 'import os, sys; print(sum(os.path.getsize(p) for p in sys.argv[1:] if os.path.exists(p)))' \
            "$SQLITE_PATH" "$SQLITE_PATH-wal" "$SQLITE_PATH-shm"
    fi
}

# 1. The database: a fresh SQLite file, the given SQLite file, or a fresh PostgreSQL database.
if [ "$DB_KIND" = postgres ]; then
    # Split the URL without putting it on a command line: the password goes to PGPASSWORD
    # for psql, the rest (same server, same query parameters) is the admin connection; the
    # servers get the URL with the database replaced, through DATABASE_URL.
    PG_DB=
    NEW_DB=stackhound_bench_$(python3 -c 'import secrets; print(secrets.token_hex(5))')
    PG_PARTS=$(BENCH_URL=$URL_ARG NEW_DB=$NEW_DB python3 - <<'EOF'
import os, urllib.parse as up
u = up.urlsplit(os.environ["BENCH_URL"])
userinfo, _, hostport = u.netloc.rpartition("@")
user = userinfo.split(":", 1)[0]
admin = up.urlunsplit((u.scheme, f"{user}@{hostport}" if userinfo else hostport, u.path, u.query, ""))
run = up.urlunsplit((u.scheme, u.netloc, "/" + os.environ["NEW_DB"], u.query, ""))
# Three lines: password (may be empty), admin URL, run URL.
print(up.unquote(u.password or "")); print(admin); print(run)
EOF
)
    { IFS= read -r PG_PASSWORD; IFS= read -r PG_ADMIN_URL; IFS= read -r DB_URL; } <<<"$PG_PARTS"
    unset PG_PARTS
    PG_VERSION=$(pg -c "SHOW server_version")
    pg -c "CREATE DATABASE \"$NEW_DB\""
    PG_DB=$NEW_DB
    DB_DESC="PostgreSQL ${PG_VERSION%% *}, fresh database $PG_DB"
    echo "== created database $PG_DB ($(redact "$DB_URL"))" >&2
elif [ -n "$URL_ARG" ]; then
    DB_URL=sqlite://$SQLITE_PATH$SQLITE_QUERY
    DB_DESC="SQLite file $SQLITE_PATH"
else
    SQLITE_PATH=$WORK/bench.sqlite3
    DB_URL=sqlite://$SQLITE_PATH
    DB_DESC="fresh SQLite file"
fi

# 2. Project, token, servers. Every stackhound process gets the database URL through
# DATABASE_URL, so a password never shows on a command line.
mapfile -t PORTS < <(free_ports "$PROCESSES")
export STACKHOUND_PUBLIC_URL=http://127.0.0.1:${PORTS[0]}
PROJECT_JSON=$(cli project create bench --json)
DSN=$(json_field dsn <<<"$PROJECT_JSON")
SLUG=$(json_field slug <<<"$PROJECT_JSON")
TOKEN=$(json_field token <<<"$(cli token create --json)")
KEY=$(sed -E 's#^http://([^@:]+).*#\1#' <<<"$DSN")
PROJECT_ID=$(sed -E 's#.*/([^/]+)/?$#\1#' <<<"$DSN")
PORT=${PORTS[0]}            # the server whose API is asked for the issue counts
DB_BYTES_BEFORE=$(db_bytes)

# One --dsn per server: the load generator spreads its connections round-robin over them.
DSN_ARGS=()
for p in "${PORTS[@]}"; do DSN_ARGS+=(--dsn "http://$KEY@127.0.0.1:$p/$PROJECT_ID"); done

# Started one after another: the first has the schema in place before the next opens it.
for i in "${!PORTS[@]}"; do
    p=${PORTS[$i]}
    echo "== serving on 127.0.0.1:$p (server $((i + 1))/$PROCESSES, database $(redact "$DB_URL"))" >&2
    DATABASE_URL=$DB_URL STACKHOUND_PUBLIC_URL=http://127.0.0.1:$p \
        "$BIN" serve --bind "127.0.0.1:$p" >"$WORK/server-$((i + 1)).log" 2>&1 &
    SERVER_PIDS+=($!)
    wait_listening "$!" "$p" "$WORK/server-$((i + 1)).log"
done

# 2a. Optionally put the project on the previous grouping scheme: the first event upgrades it.
if [ "$TRANSITION" = 1 ]; then
    python3 - "$PORT" "$SLUG" "$TOKEN" <<'EOF'
import json, sys, urllib.request
port, slug, token = sys.argv[1:4]
req = urllib.request.Request(
    f"http://127.0.0.1:{port}/api/0/projects/stackhound/{slug}/",
    data=json.dumps({"groupingConfig": "sh-2026-11", "secondaryGroupingExpiry": 0}).encode(),
    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, method="PUT")
with urllib.request.urlopen(req) as r:
    assert json.load(r)["groupingConfig"] == "sh-2026-11"
print("== project on grouping scheme sh-2026-11: the run upgrades it (transition)", file=sys.stderr)
EOF
fi

# 2b. Optionally mute some issues first.
WARMUP_ACCEPTED=0
if [ "$MUTED" -gt 0 ]; then
    echo "== warm-up, then muting $MUTED issues" >&2
    WARMUP_CONCURRENCY=$(( PROCESSES > 16 ? PROCESSES : 16 ))
    "$BIN" stress "${DSN_ARGS[@]}" --duration 3 --concurrency "$WARMUP_CONCURRENCY" \
        --compress "$COMPRESS" --issues "$ISSUES" --json >"$WORK/warmup.json"
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
echo "== stress: ${DURATION}s, $CONCURRENCY connections over $PROCESSES server(s), $COMPRESS, $ISSUES issues" >&2
"$BIN" stress "${DSN_ARGS[@]}" --duration "$DURATION" --concurrency "$CONCURRENCY" \
    --compress "$COMPRESS" --issues "$ISSUES" --json >"$WORK/stress.json"

# 4. Every accepted event must be counted in exactly one issue. Then peak RSS, then stop.
for i in "${!SERVER_PIDS[@]}"; do
    if ! kill -0 "${SERVER_PIDS[$i]}" 2>/dev/null; then
        echo "server $((i + 1)) exited during the run; log:" >&2
        tail -n 30 "$WORK/server-$((i + 1)).log" | mask >&2
        exit 1
    fi
done
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
PEAK_RSS_KB=()
for pid in "${SERVER_PIDS[@]}"; do PEAK_RSS_KB+=("$(vm_hwm_kb "$pid")"); done
stop_all "${SERVER_PIDS[@]}"
SERVER_PIDS=()
DB_BYTES=$(db_bytes)
ACCEPTED=$(( $(json_field accepted <"$WORK/stress.json") + WARMUP_ACCEPTED ))
if [ "$STORED" = "$ACCEPTED" ]; then
    CHECK=MATCH
else
    CHECK=MISMATCH
fi
echo "== $CHECK: stress accepted $ACCEPTED, issues count $STORED" >&2

# 5. Ceiling: same load against bare HTTP sinks, as many as servers, spread the same way.
mapfile -t SINK_PORTS < <(free_ports "$PROCESSES")
SINK_DSN_ARGS=()
for p in "${SINK_PORTS[@]}"; do
    echo "== ceiling: bench-sink on 127.0.0.1:$p for ${CEILING_DURATION}s" >&2
    "$BIN" bench-sink --bind "127.0.0.1:$p" >"$WORK/sink-$p.log" 2>&1 &
    SINK_PIDS+=($!)
    wait_listening "$!" "$p" "$WORK/sink-$p.log"
    SINK_DSN_ARGS+=(--dsn "http://$KEY@127.0.0.1:$p/$PROJECT_ID")
done
"$BIN" stress "${SINK_DSN_ARGS[@]}" --duration "$CEILING_DURATION" \
    --concurrency "$CONCURRENCY" --compress "$COMPRESS" --issues "$ISSUES" --json \
    >"$WORK/sink.json"
stop_all "${SINK_PIDS[@]}"
SINK_PIDS=()

# 6. Summary.
python3 - "$WORK/stress.json" "$WORK/sink.json" "$DB_BYTES_BEFORE" "$DB_BYTES" "$STORED" \
    "$CHECK" "$DURATION" "$CONCURRENCY" "$COMPRESS" "$DB_DESC" "${PEAK_RSS_KB[@]}" <<'EOF'
import json, sys
ours, sink = (json.load(open(p)) for p in sys.argv[1:3])
db_before, db_bytes, stored = (int(x) for x in sys.argv[3:6])
check, duration, concurrency, compress, db_desc = sys.argv[6:11]
rss_kb = [int(x) for x in sys.argv[11:]]
n = len(rss_kb)
pct = 100 * ours["events_per_sec"] / sink["events_per_sec"] if sink["events_per_sec"] else 0
def cpu(r):
    c = r.get("client_cpu_s")
    return f"{c * 1e6 / r['sent']:.1f} us/request" if c is not None and r["sent"] else "n/a"
def per_server(r):
    per = r.get("accepted_per_dsn") or []
    return f"; per server {' / '.join(str(a) for a in per)}" if len(per) > 1 else ""
servers = "1 stackhound serve" if n == 1 else f"{n} stackhound serve processes"
print(f"ingest benchmark ({duration}s, {concurrency} connections, {compress}):")
print(f"  setup         {servers}, {db_desc}")
print(f"  stored        {ours['events_per_sec']:.0f} events/s, p50 {ours['p50_ms']:.1f} ms, "
      f"p99 {ours['p99_ms']:.1f} ms ({ours['accepted']} accepted{per_server(ours)}; "
      f"4xx {ours['rejected_4xx']}, 503/429 {ours['overloaded_503_429']}, "
      f"5xx {ours['errors_5xx']}, transport {ours['transport_errors']})")
if n == 1:
    print(f"  peak RSS      {rss_kb[0] / 1024:.1f} MB")
else:
    each = " + ".join(f"{kb / 1024:.1f}" for kb in rss_kb)
    print(f"  peak RSS      {each} MB = {sum(rss_kb) / 1024:.1f} MB (per server, sum)")
growth = db_bytes - db_before
before = f", {db_before / 1e6:.1f} MB before the load" if db_before >= 1e6 else ""
print(f"  database      {db_bytes / 1e6:.1f} MB{before}, {stored} events stored ({check}), "
      f"{growth / max(stored, 1):.0f} bytes/event")
sinks = "bench-sink" if n == 1 else f"{n} bench-sinks"
print(f"  ceiling       {sink['events_per_sec']:.0f} requests/s ({sinks}), p50 "
      f"{sink['p50_ms']:.1f} ms, p99 {sink['p99_ms']:.1f} ms")
print(f"  ratio         {pct:.1f}% of the bare-HTTP ceiling")
print(f"  load gen CPU  {cpu(ours)} (server run), {cpu(sink)} (sink run)")
EOF
[ "$CHECK" = MATCH ]
