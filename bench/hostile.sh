#!/usr/bin/env bash
# Hostile-load benchmark: peak RSS of `stackhound serve` against its ingestion memory budget, and stored events/s under open-loop overload.
#
# Usage: bench/hostile.sh [--duration S] [--memory-mib N] [--skip-memory] [--skip-overload]
#                         [--honor-retry-after] [--keep]
# Defaults: 20 s per load phase, a budget of 256 MiB (STACKHOUND_INGEST_MEMORY_MIB).
# Memory attack, on one server: 16 clients send ~97 KB gzip envelopes whose attachment
# inflates to 95 MiB of zeros, then 200 clients send 900,000-byte events (uncompressed); RSS
# is sampled every 100 ms (and VmHWM read), then again after 10 s idle.
# Overload, a fresh server each: the knee K (closed loop, 256 connections), then open loops
# (a fixed schedule, at most 4096 requests outstanding) at 2K, 4K and 12,000 events/s.
# Stored events/s are the sums of the issue counts the API reports, over the run's time.
# Every server gets a fresh SQLite file in a temp dir; everything runs on 127.0.0.1 only.
# --honor-retry-after: in the open loops a connection answered 503/429 sends nothing for its
# Retry-After, as SDKs hold back (without it every slot is sent: the worst case).
# Server settings come from the environment (e.g. STACKHOUND_QUEUE_CAPACITY=1024).
# --keep keeps the temp dir (databases, logs, the generator's JSON reports).
set -euo pipefail

DURATION=20
MEMORY_MIB=256
SKIP_MEMORY=0
SKIP_OVERLOAD=0
KEEP=0
HONOR=()
# What the brief of the overload calls for; the open loop's cap on outstanding requests.
KNEE_CONCURRENCY=256
OPEN_CONCURRENCY=4096
FIXED_RATE=12000
IDLE_AFTER=10

usage() { sed -n '4,17p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --memory-mib) MEMORY_MIB=$2; shift 2 ;;
        --skip-memory) SKIP_MEMORY=1; shift ;;
        --skip-overload) SKIP_OVERLOAD=1; shift ;;
        --honor-retry-after) HONOR=(--honor-retry-after); shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
die() { echo "$*" >&2; exit 2; }
case "$MEMORY_MIB" in ''|*[!0-9]*|0*) die "--memory-mib must be a positive integer" ;; esac
python3 -c "import sys; d = float(sys.argv[1]); sys.exit(not 0 < d <= 3600)" "$DURATION" 2>/dev/null \
    || die "--duration must be a number of seconds between 0 and 3600"
[ "$SKIP_MEMORY$SKIP_OVERLOAD" != 11 ] || die "--skip-memory and --skip-overload: nothing left to run"

# The open loop holds up to 4096 connections, and the server as many: raise the soft
# open-files limit as far as allowed (both inherit it), and stay under it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ $((NOFILE - 256)) -lt "$OPEN_CONCURRENCY" ]; then
    OPEN_CONCURRENCY=$((NOFILE - 256))
    [ "$OPEN_CONCURRENCY" -ge 64 ] || die "open-files limit $NOFILE is too low for the open loop"
    echo "== open-files limit $NOFILE: the open loop holds at most $OPEN_CONCURRENCY connections" >&2
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
echo "== building (release)" >&2
cargo build --release
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/stackhound

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stackhound-hostile.XXXXXX")
SERVER_PID=
SAMPLER_PID=

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
    stop "$SAMPLER_PID"
    stop "$SERVER_PID"
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
status_kb() { # status_kb PID FIELD: VmRSS or VmHWM of a process, in KiB
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
# Sets the process's VmHWM back to its current RSS (Linux >= 4.0, our own process), so a
# phase's peak is its own; fails quietly where not allowed (the 100 ms samples remain).
reset_hwm() { { echo 5 >"/proc/$1/clear_refs"; } 2>/dev/null; }

# The RSS sampler: VmRSS every 100 ms until SIGTERM, then the peak and the last sample as JSON.
cat >"$WORK/rss.py" <<'EOF'
import json, signal, sys, time
pid, out = sys.argv[1], sys.argv[2]
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
peak = last = samples = 0
while not stop:
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    except (OSError, StopIteration):
        break
    peak, last, samples = max(peak, rss), rss, samples + 1
    time.sleep(0.1)
with open(out, "w") as f:
    json.dump({"peak_kb": peak, "last_kb": last, "samples": samples}, f)
EOF
sample_start() { # sample_start NAME: samples the server's RSS into $WORK/NAME.rss.json
    python3 "$WORK/rss.py" "$SERVER_PID" "$WORK/$1.rss.json" &
    SAMPLER_PID=$!
}
sample_stop() {
    stop "$SAMPLER_PID"
    SAMPLER_PID=
}

# cli ARGS...: a stackhound command on the current database; its log lines (migrations) are
# shown only when it fails.
cli() {
    local rc=0
    DATABASE_URL=$DB_URL "$BIN" "$@" 2>"$WORK/cli.err" || rc=$?
    [ "$rc" = 0 ] || cat "$WORK/cli.err" >&2
    return "$rc"
}
# start_server NAME: a fresh SQLite file, its project and API token, and `stackhound serve` on
# a free loopback port with the budget; sets DSN, SLUG, TOKEN, PORT, SERVER_PID.
start_server() {
    local name=$1
    DB_URL=sqlite://$WORK/$name.sqlite3
    PORT=$(free_port)
    export STACKHOUND_PUBLIC_URL=http://127.0.0.1:$PORT
    local project_json key project_id
    project_json=$(cli project create bench --json)
    SLUG=$(json_field slug <<<"$project_json")
    TOKEN=$(json_field token <<<"$(cli token create --json)")
    key=$(sed -E 's#^http://([^@:]+).*#\1#' <<<"$(json_field dsn <<<"$project_json")")
    project_id=$(sed -E 's#.*/([^/]+)/?$#\1#' <<<"$(json_field dsn <<<"$project_json")")
    DSN=http://$key@127.0.0.1:$PORT/$project_id
    echo "== $name: serving on 127.0.0.1:$PORT, fresh SQLite file, budget $MEMORY_MIB MiB" >&2
    DATABASE_URL=$DB_URL STACKHOUND_BIND=127.0.0.1:$PORT STACKHOUND_INGEST_MEMORY_MIB=$MEMORY_MIB \
        "$BIN" serve >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
    wait_listening "$SERVER_PID" "$PORT" "$WORK/$name.log"
}
# stop_server NAME: fails if the server died during the phase; drops its database.
stop_server() {
    local name=$1
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "the $name server exited during the run; log:" >&2
        tail -n 30 "$WORK/$name.log" >&2
        exit 1
    fi
    stop "$SERVER_PID"
    SERVER_PID=
    [ "$KEEP" = 1 ] || rm -f "$WORK/$name.sqlite3" "$WORK/$name.sqlite3-wal" "$WORK/$name.sqlite3-shm"
}
# Sum of the issue counts the API reports: the events the server stored.
stored_count() {
    python3 - "$PORT" "$SLUG" "$TOKEN" <<'EOF'
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
}
# phase NAME STRESS_ARGS...: one load run against the current server, with the RSS sampled;
# writes $WORK/NAME.json (the generator's report) and $WORK/NAME.meta.json (events stored
# during the phase, peak RSS as sampled and as VmHWM, whether VmHWM was reset for it).
phase() {
    local name=$1
    shift
    local hwm_ok=1 before
    before=$(stored_count)
    reset_hwm "$SERVER_PID" || hwm_ok=0
    sample_start "$name"
    "$BIN" stress --dsn "$DSN" --duration "$DURATION" --json "$@" >"$WORK/$name.json"
    sample_stop
    local hwm stored
    hwm=$(status_kb "$SERVER_PID" VmHWM)
    stored=$(stored_count)
    python3 - "$WORK/$name.rss.json" "$hwm" "$hwm_ok" "$before" "$stored" >"$WORK/$name.meta.json" <<'EOF'
import json, sys
rss = json.load(open(sys.argv[1]))
print(json.dumps({"sampled_peak_kb": rss["peak_kb"], "hwm_kb": int(sys.argv[2]),
                  "hwm_own": sys.argv[3] == "1", "stored": int(sys.argv[5]) - int(sys.argv[4])}))
EOF
}

# 1. Memory attack: one server, the bomb, then the big events, then idle.
if [ "$SKIP_MEMORY" = 0 ]; then
    start_server memory
    sleep 1
    status_kb "$SERVER_PID" VmRSS >"$WORK/memory.rss_before"
    echo "== memory attack: 16 clients, gzip envelopes with a 95 MiB attachment, ${DURATION}s" >&2
    phase attack --attack inflate --concurrency 16
    echo "== memory attack: 200 clients, 900,000-byte events (uncompressed), ${DURATION}s" >&2
    phase big --event-size 900000 --compress none --concurrency 200
    echo "== memory attack: ${IDLE_AFTER}s idle" >&2
    sleep "$IDLE_AFTER"
    status_kb "$SERVER_PID" VmRSS >"$WORK/memory.rss_after"
    stop_server memory
fi

# 2. Overload: the knee in a closed loop, then open loops at 2K, 4K and a fixed rate; each on a
# fresh server and database, so every run starts from the same state.
if [ "$SKIP_OVERLOAD" = 0 ]; then
    start_server knee
    echo "== overload: knee, closed loop, $KNEE_CONCURRENCY connections, ${DURATION}s" >&2
    phase knee --concurrency "$KNEE_CONCURRENCY"
    stop_server knee
    KNEE=$(python3 -c '
import json, sys
r, m = (json.load(open(p)) for p in sys.argv[1:3])
print(round(m["stored"] / r["elapsed_s"]) if r["elapsed_s"] else 0)' "$WORK/knee.json" "$WORK/knee.meta.json")
    if [ "$KNEE" -lt 1 ]; then
        echo "== overload: the knee is $KNEE events/s; no open-loop runs" >&2
    else
        for mult in 2 4; do
            rate=$((mult * KNEE))
            start_server "open${mult}k"
            echo "== overload: open loop at ${mult}K = $rate events/s, at most $OPEN_CONCURRENCY outstanding, ${DURATION}s" >&2
            phase "open${mult}k" --rate "$rate" --concurrency "$OPEN_CONCURRENCY" "${HONOR[@]}"
            stop_server "open${mult}k"
        done
    fi
    start_server fixed
    echo "== overload: open loop at $FIXED_RATE events/s, at most $OPEN_CONCURRENCY outstanding, ${DURATION}s" >&2
    phase fixed --rate "$FIXED_RATE" --concurrency "$OPEN_CONCURRENCY" "${HONOR[@]}"
    stop_server fixed
fi

# 3. Summary.
python3 - "$WORK" "$DURATION" "$MEMORY_MIB" "$IDLE_AFTER" "$KNEE_CONCURRENCY" <<'EOF'
import json, os, sys
work, duration, budget, idle, knee_conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
def load(name):
    path = os.path.join(work, name)
    if not os.path.exists(path + ".json"):
        return None
    r = json.load(open(path + ".json"))
    r.update(json.load(open(path + ".meta.json")))
    # VmHWM is exact but covers the process's life unless it was reset for this phase.
    hwm = r["hwm_kb"] if r["hwm_own"] else 0
    r["peak_mib"] = max(r["sampled_peak_kb"], hwm) / 1024
    r["stored_per_s"] = r["stored"] / r["elapsed_s"] if r["elapsed_s"] else 0.0
    return r
def mib(kb):
    return int(open(os.path.join(work, kb)).read()) / 1024
def statuses(r):
    other = r["rejected_4xx"] - r["answered_413"] + r["errors_5xx"] + r["transport_errors"]
    return (f"200 {r['accepted']}, 503 {r['answered_503']}, 429 {r['answered_429']}, "
            f"413 {r['answered_413']}, other {other} (of {r['sent']} sent; {r['stored']} stored)")
def versus(peak):
    return f"peak RSS {peak:.1f} MiB, budget {budget} MiB, overhead {peak - budget:+.1f} MiB"
def share(n, of):
    return f"{100 * n / of:.1f}%" if of else "n/a"
def check(r):
    return "MATCH" if r["stored"] == r["accepted"] else f"MISMATCH: {r['accepted']} answered 200"

print(f"hostile benchmark ({duration} s per phase, ingestion budget {budget} MiB):")
attack, big = load("attack"), load("big")
if attack:
    print("  memory attack (one server)")
    print(f"    inflate        16 clients, {attack['body_bytes'] / 1000:.1f} KB gzip -> 95 MiB attachment: "
          f"{statuses(attack)}")
    print(f"                   {versus(attack['peak_mib'])}")
    print(f"    big events     200 clients, {big['body_bytes'] / 1000:.0f} KB events: {statuses(big)}")
    print(f"                   {versus(big['peak_mib'])}")
    peak = max(attack["peak_mib"], big["peak_mib"])
    print(f"    both           {versus(peak)}; RSS idle before {mib('memory.rss_before'):.1f} MiB")
    print(f"    memory returned  RSS after {idle} s idle: {mib('memory.rss_after'):.1f} MiB")
knee = load("knee")
if knee:
    k = knee["stored_per_s"]
    print("  overload (a fresh server and SQLite file per run)")
    print(f"    knee K         closed loop, {knee_conc} connections: {k:.0f} stored events/s, "
          f"p50 {knee['p50_ms']:.1f} ms, p99 {knee['p99_ms']:.1f} ms, 503/429 "
          f"{share(knee['overloaded_503_429'], knee['sent'])}, peak RSS {knee['peak_mib']:.1f} MiB ({check(knee)})")
    for name, label in (("open2k", "2K"), ("open4k", "4K"), ("fixed", None)):
        r = load(name)
        if not r:
            continue
        slots = r["sent"] + r["not_sent"]
        head = f"{label} = {r['target_rate']:.0f}/s" if label else f"{r['target_rate']:.0f}/s"
        ratio = f" = {r['stored_per_s'] / k:.2f} K" if k else ""
        print(f"    {head:<14} open loop: {r['stored_per_s']:.0f} stored events/s{ratio}, "
              f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; 503/429 "
              f"{share(r['overloaded_503_429'], r['sent'])} of sent, not sent "
              f"{share(r['not_sent'], slots)} of slots (sent {r['send_rate']:.0f}/s); "
              f"transport {r['transport_errors']}; peak RSS {r['peak_mib']:.1f} MiB ({check(r)})")

print()
print("summary:")
if attack:
    print(f"  memory attack       {versus(max(attack['peak_mib'], big['peak_mib']))}")
    print(f"  memory returned     RSS after {idle} s idle {mib('memory.rss_after'):.1f} MiB "
          f"(before the attack {mib('memory.rss_before'):.1f} MiB)")
if knee:
    print(f"  overload knee K     {knee['stored_per_s']:.0f} stored events/s")
    for name, label in (("open2k", "2K"), ("open4k", "4K")):
        r = load(name)
        if r and knee["stored_per_s"]:
            at = f"{label} = {r['target_rate']:.0f}/s"
            print(f"  at {at:<16} {r['stored_per_s']:.0f} stored events/s, overload throughput "
                  f"ratio {r['stored_per_s'] / knee['stored_per_s']:.2f}")
fixed = load("fixed")
if fixed:
    print(f"  open loop {fixed['target_rate']:.0f}/s   peak RSS {fixed['peak_mib']:.1f} MiB, "
          f"{fixed['stored_per_s']:.0f} stored events/s")
EOF
