#!/usr/bin/env bash
# Scale-out on a Redis Cluster beside one Redis: two parity servers, on one fresh redis-server or
# on a fresh three-master Redis Cluster (redis-cli --cluster create, no replicas), for two loads:
#
#   spread     events to 64 users at once (`bench spread`: 20 events per user per round, each
#              user's connection on the second server, the emitter on the first): each user's
#              events are a stream of its own, so on a cluster they spread over the shards.
#   broadcast  `shout` to 1,000 subscribers, 500 on each server (`bench fanout`): one stream
#              (`b`), so on a cluster one shard carries every broadcast.
#
# With history (the default) and without (`--no-resume`). Each Redis process's CPU per event
# comes from /proc (utime + stime) over the measured seconds; Redis commands per event from
# INFO commandstats (a script's own commands included), summed over the nodes. Configurations
# are rotated run by run; the table shows medians. The figures go into BENCHMARKS.md and the
# capacity model in docs/SCALING.md by hand.
#
#   examples/bench/cluster.sh [--runs N] [--duration S]
set -euo pipefail
HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$HERE/../.." && pwd)"
cd "$ROOT"
RUNS=3
DURATION=4
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 1; }
cargo build --release --quiet -p parity -p bench
BIN="$ROOT/target/release"
RESULTS="$(mktemp)"
SCRATCH="$(mktemp -d)"
PIDS=()
RPIDS=()
RPORTS=()
cleanup() {
    for p in "${PIDS[@]}" "${RPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}" "${RPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
    RPIDS=()
    RPORTS=()
}
trap 'cleanup; rm -rf "$SCRATCH" "$RESULTS"' EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# redis_node PORT [ARGS...]: a redis-server on PORT, once it answers.
redis_node() {
    local port="$1"
    shift
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$SCRATCH" "$@" >/dev/null 2>&1 &
    RPIDS+=($!)
    RPORTS+=("$port")
    for _ in $(seq 1 100); do
        [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ] && return 0
        sleep 0.05
    done
    echo "redis-server did not start on $port" >&2
    return 1
}

# start_redis single|cluster: sets RURL.
start_redis() {
    if [ "$1" = single ]; then
        local port
        port="$(free_port)"
        redis_node "$port"
        RURL="redis://127.0.0.1:$port"
        return
    fi
    local hosts=()
    for _ in 1 2 3; do
        local port bus
        port="$(free_port)"
        bus="$(free_port)"
        redis_node "$port" --cluster-enabled yes --cluster-config-file "$SCRATCH/nodes-$port.conf" \
            --cluster-port "$bus" --cluster-node-timeout 2000
        hosts+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${hosts[@]}" --cluster-replicas 0 --cluster-yes >/dev/null 2>&1
    for port in "${RPORTS[@]}"; do
        for _ in $(seq 1 200); do
            redis-cli -p "$port" CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok' && break
            sleep 0.05
        done
    done
    RURL="redis+cluster://$(IFS=,; echo "${hosts[*]}")"
}

start_parity() { # start_parity ARGS...: appends to PIDS, sets URL
    local out
    out="$(mktemp)"
    EPHAPTIC_LOG=warn "$BIN/parity" --addr 127.0.0.1:0 "$@" >"$out" 2>/dev/null &
    PIDS+=($!)
    URL=""
    for _ in $(seq 1 150); do
        URL="$(sed -n '1s/^listening on //p' "$out")"
        [ -n "$URL" ] && break
        sleep 0.1
    done
    rm -f "$out"
}

commands() { # commands: Redis commands run so far, over every node (INFO itself left out)
    local n=0
    for port in "${RPORTS[@]}"; do
        n=$((n + $(redis-cli -p "$port" INFO commandstats 2>/dev/null \
            | sed -n 's/^cmdstat_\([a-z|]*\):calls=\([0-9]*\),.*/\1 \2/p' \
            | awk '$1 != "info" && $1 != "cluster|info" { n += $2 } END { print n + 0 }')))
    done
    echo "$n"
}

run() { # run single|cluster spread|broadcast history|none RUN
    local redis="$1" load="$2" history="$3" r="$4" args=() url1 url2
    start_redis "$redis"
    local resume=()
    [ "$history" = none ] && resume=(--no-resume)
    start_parity --redis "$RURL" "${resume[@]}"
    url1="$URL"
    start_parity --redis "$RURL" "${resume[@]}"
    url2="$URL"
    for p in "${RPIDS[@]}"; do args+=(--redis-pid "$p"); done
    local before after line
    before="$(commands)"
    if [ "$load" = spread ]; then
        line="$(timeout 120 "$BIN/bench" spread "$url1" --conns 64 --events 20 --also "$url2" \
            --duration "$DURATION" --warmup 1 --server-pid "${PIDS[0]}" --also-pid "${PIDS[1]}" \
            "${args[@]}" --label "$redis/$load/$history/$r" 2>/dev/null || true)"
    else
        line="$(timeout 120 "$BIN/bench" fanout "$url1" --conns 1000 --also "$url2" \
            --duration "$DURATION" --warmup 1 --server-pid "${PIDS[0]}" --also-pid "${PIDS[1]}" \
            "${args[@]}" --label "$redis/$load/$history/$r" 2>/dev/null || true)"
    fi
    after="$(commands)"
    printf '%s\n' "$line" | python3 -c '
import json, sys
line = sys.stdin.read().strip()
if not line:
    sys.exit(0)
r = json.loads(line)
r.update(redis=sys.argv[1], load=sys.argv[2], history=sys.argv[3], commands=int(sys.argv[5]) - int(sys.argv[4]))
print(json.dumps(r))' "$redis" "$load" "$history" "$before" "$after" >>"$RESULTS"
    echo "  $redis $load $history run $r: $(tail -c 200 <<<"$line")" >&2
    cleanup
}

CONFIGS=()
for load in spread broadcast; do
    for history in history none; do
        for redis in single cluster; do
            CONFIGS+=("$redis $load $history")
        done
    done
done
N=${#CONFIGS[@]}
for r in $(seq 1 "$RUNS"); do
    for i in $(seq 0 $((N - 1))); do
        # Rotated, so a drifting load weighs on every configuration alike.
        # shellcheck disable=SC2086
        run ${CONFIGS[$(((i + r) % N))]} "$r"
    done
done

python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
print("| load | history | Redis | events/s | server CPU per event | Redis CPU per event, each process | Redis CPU per event, total | Redis commands per event |")
print("|---|---|---|---:|---:|---|---:|---:|")
for load in ("spread", "broadcast"):
    for history in ("history", "none"):
        for redis in ("single", "cluster"):
            rs = [r for r in rows if r["redis"] == redis and r["load"] == load and r["history"] == history and "error" not in r]
            if not rs:
                continue
            if load == "spread":
                events = [r["events_total"] for r in rs]
                rate = med([r["events_per_s"] for r in rs])
                server = med([r["server_cpu_us_per_event"] for r in rs])
            else:
                events = [r["events_sent"] for r in rs]
                rate = med([r["events_per_s"] for r in rs])
                server = med([r["server_cpu_us_per_event"] for r in rs])
            each = [med([r["redis_cpu_us_per_event_by_process"][i] for r in rs]) for i in range(len(rs[0]["redis_cpu_us_per_event_by_process"]))]
            total = med([sum(x for x in r["redis_cpu_us_per_event_by_process"] if x is not None) for r in rs])
            # Commands over the whole run per event sent (warm-up included in both).
            cmds = med([r["commands"] / e for r, e in zip(rs, events) if e])
            shown = " / ".join(f"{x:.1f} us" for x in each if x is not None)
            name = "one Redis" if redis == "single" else "3-shard cluster"
            print(f"| {load} | {'kept' if history == 'history' else 'not kept'} | {name} | {rate:,.0f} | {server:.1f} us | {shown} | {total:.1f} us | {cmds:.1f} |")
EOF
