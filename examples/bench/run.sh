#!/usr/bin/env bash
# The benchmark suite: ephaptic (examples/parity, release) against the floor (examples/floor: a
# bare axum WebSocket with hand-written MessagePack) and the reference implementation (PyPI
# ephaptic==0.5.0, examples/bench/reference_server.py), and against the peers a team would pick
# instead (examples/bench/peers/: socketioxide, jsonrpsee, socket.io 4.8 on Node, tRPC 11 on
# Node), side by side in one run on one machine. Writes BENCHMARKS.md at the repository root.
#
#   examples/bench/run.sh                full run: 3 runs of 5 s per configuration (~8 min; --runs 5: ~12)
#   examples/bench/run.sh --quick        smoke run: 1 short run per configuration (~3 min)
#   options: --runs N  --duration S  --wait-idle (first wait, polling every 30 s, for a 1-minute
#            load below 0.7; at most --wait-idle-max S, default 1200)  --no-python
#            --no-redis (skip the scale-out cases, which need redis-server)
#            --out FILE (default BENCHMARKS.md)
#            --no-peers (skip the peers) --peers-only (ephaptic and the peers only: no floor, no
#            reference, no sessions; with Redis, the peers' two-server rows) --no-node (skip the
#            two Node peers)
#
# Everything runs on 127.0.0.1. Every bench process is bounded in time (and killed by `timeout`
# if it is not). Needs: cargo, python3 (with venv), taskset (util-linux), jq is not needed; for
# the Node peers, node (20+) and npm.
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$HERE/../.." && pwd)"
cd "$ROOT"

RUNS=3
DURATION=5
PY_DURATION=3
WARMUP=1
QUICK=false
WAIT_IDLE=false
WAIT_MAX=1200
PYTHON=true
REDIS=true
OUT="$ROOT/BENCHMARKS.md"
PEERS=true
PEERS_ONLY=false
NODE=true
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=true ;;
        --runs) RUNS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --wait-idle) WAIT_IDLE=true ;;
        --wait-idle-max) WAIT_MAX="$2"; shift ;;
        --no-python) PYTHON=false ;;
        --no-redis) REDIS=false ;;
        --out) OUT="$2"; shift ;;
        --no-peers) PEERS=false ;;
        --peers-only) PEERS_ONLY=true; PYTHON=false ;;
        --no-node) NODE=false ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if $QUICK; then
    RUNS=1
    DURATION=2
    PY_DURATION=2
    WARMUP=0.5
fi

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Build, venv, limits

log "building release binaries (parity, floor, bench)"
cargo build --release --quiet -p parity -p floor -p bench
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET/release"

# The peers: each Rust peer is a crate of its own (its own workspace and Cargo.lock, so the main
# workspace never builds it), each Node peer a package with an exact package-lock.json.
PEERS_DIR="$HERE/peers"
PEER_BIN="$TARGET/peers"
PEER_SERVERS=()
if $PEERS; then
    PEER_SERVERS=(socketioxide jsonrpsee)
    for p in socketioxide jsonrpsee; do
        log "building the $p peer (release, --locked)"
        cargo build --release --quiet --locked --manifest-path "$PEERS_DIR/$p/Cargo.toml" --target-dir "$PEER_BIN/$p"
    done
    if $NODE && command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        for p in socketio trpc; do
            if [ ! -d "$PEERS_DIR/$p/node_modules" ] || [ "$PEERS_DIR/$p/package-lock.json" -nt "$PEERS_DIR/$p/node_modules" ]; then
                log "installing the $p peer (npm ci)"
                (cd "$PEERS_DIR/$p" && npm ci --no-audit --no-fund --loglevel=error)
                touch "$PEERS_DIR/$p/node_modules"
            fi
        done
        PEER_SERVERS+=(socketio trpc)
    else
        log "skipping the Node peers (--no-node, or no node/npm)"
    fi
fi

VENV="$ROOT/target/bench-venv"
if $PYTHON; then
    if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('ephaptic') != '0.5.0')" 2>/dev/null; then
        log "setting up $VENV with ephaptic==0.5.0"
        python3 -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "ephaptic==0.5.0"
    fi
fi

# 10,000 connections need 10,000 descriptors on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
    log "warning: the open-file limit is $(ulimit -n); the 10,000-connection cases need more (raise the hard limit)"
fi

if $WAIT_IDLE; then
    waited=0
    while :; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        if awk -v l="$load" 'BEGIN { exit !(l < 0.7) }'; then break; fi
        if [ "$waited" -ge "$WAIT_MAX" ]; then
            log "the machine did not settle in ${WAIT_MAX}s (1-minute load $load); measuring anyway"
            break
        fi
        log "waiting for the machine to settle (1-minute load $load)"
        sleep 30
        waited=$((waited + 30))
    done
fi

RESULTS_DIR="$ROOT/target/bench-results"
mkdir -p "$RESULTS_DIR"
STAMP="$(date +%Y%m%d-%H%M%S)"
RESULTS="$RESULTS_DIR/$STAMP.jsonl"
: >"$RESULTS"

# The machine, for the report.
{
    printf '{"kind":"machine","date":"%s","nproc":%s,' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)"
    printf '"cpu":"%s",' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//; s/"/\\"/g')"
    printf '"kernel":"%s","rustc":"%s",' "$(uname -sr)" "$(rustc -V)"
    printf '"python":"%s","loadavg_start":"%s",' "$(python3 -V 2>&1)" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '"node":"%s","peers":"%s",' "$(node -v 2>/dev/null || echo none)" "${PEER_SERVERS[*]:-}"
    printf '"mem_total_kib":%s,"runs":%s,"duration_s":%s,"py_duration_s":%s,"warmup_s":%s,"quick":%s}\n' \
        "$(awk '/MemTotal/ {print $2}' /proc/meminfo)" "$RUNS" "$DURATION" "$PY_DURATION" "$WARMUP" "$QUICK"
} >>"$RESULTS"

# ---------------------------------------------------------------------------------------------
# Servers

# wait_for_url FILE: prints the URL of the server whose stdout is FILE once its first line
# (`listening on <url>`) is there; prints nothing after 15 s.
wait_for_url() {
    local url=""
    for _ in $(seq 1 150); do
        url="$(sed -n '1s/^listening on //p' "$1")"
        [ -n "$url" ] && break
        sleep 0.1
    done
    printf '%s' "$url"
}

# server_cmd NAME: the command line of server NAME, in SCMD. `ephaptic-py` is parity too: the
# name stands for the Python client's frames (see bench_args).
server_cmd() {
    case "$1" in
        ephaptic | ephaptic-py) SCMD=(env EPHAPTIC_LOG=warn "$BIN/parity" --addr 127.0.0.1:0) ;;
        ephaptic-noresume) SCMD=(env EPHAPTIC_LOG=warn "$BIN/parity" --addr 127.0.0.1:0 --no-resume) ;;
        # Room for the 1,000 events of the replay case (the defaults keep 256 per identity and
        # replay at most 500).
        ephaptic-replay) SCMD=(env EPHAPTIC_LOG=warn "$BIN/parity" --addr 127.0.0.1:0 --history-size 1024 --max-replay 1000) ;;
        floor) SCMD=("$BIN/floor" --addr 127.0.0.1:0) ;;
        python) SCMD=("$VENV/bin/python" "$HERE/reference_server.py" --addr 127.0.0.1:0) ;;
        socketioxide) SCMD=("$PEER_BIN/socketioxide/release/peer-socketioxide" --addr 127.0.0.1:0) ;;
        jsonrpsee) SCMD=("$PEER_BIN/jsonrpsee/release/peer-jsonrpsee" --addr 127.0.0.1:0) ;;
        socketio) SCMD=(env NODE_ENV=production node "$PEERS_DIR/socketio/server.js" --addr 127.0.0.1:0) ;;
        trpc) SCMD=(env NODE_ENV=production node "$PEERS_DIR/trpc/server.js" --addr 127.0.0.1:0) ;;
        *) log "unknown server $1"; return 1 ;;
    esac
}

# bench_args NAME: the load generator's protocol options for server NAME, in BARGS.
bench_args() {
    case "$1" in
        socketioxide | socketio) BARGS=(--proto socketio) ;;
        jsonrpsee) BARGS=(--proto jsonrpc) ;;
        trpc) BARGS=(--proto trpc) ;;
        # The Python client writes `kwargs` always and sends each call on its own.
        ephaptic-py) BARGS=(--proto ephaptic-python --unbatched) ;;
        *) BARGS=() ;;
    esac
}

SPID=""
SURL=""
# start_server NAME [CPU]: starts a server (pinned to CPU when given), sets SPID and SURL.
start_server() {
    local name="$1" cpu="${2:-}" pin=() out
    [ -n "$cpu" ] && pin=(taskset -c "$cpu")
    server_cmd "$name" || return 1
    out="$(mktemp)"
    "${pin[@]}" "${SCMD[@]}" >"$out" 2>/dev/null &
    SPID=$!
    SURL="$(wait_for_url "$out")"
    rm -f "$out"
    if [ -z "$SURL" ]; then
        log "$name did not start"
        kill "$SPID" 2>/dev/null || true
        return 1
    fi
    # Python binds after printing; give it a moment to listen.
    [ "$name" = python ] && sleep 1
    return 0
}

stop_server() {
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=""
}
trap 'stop_server' EXIT

# run_one NAME SERVER RUN LIMIT_S BENCH_CPU SERVER_CPU MODE ARGS...: one run against a fresh
# server; one JSON line in $RESULTS (with the exact bench command).
run_one() {
    local name="$1" server="$2" r="$3" limit="$4" bcpu="$5" scpu="$6" mode="$7"
    shift 7
    local pin=()
    [ -n "$bcpu" ] && pin=(taskset -c "$bcpu")
    start_server "$server" "$scpu" || return 0
    bench_args "$server"
    local cmd=("${pin[@]}" "$BIN/bench" "$mode" "$SURL" "$@" "${BARGS[@]}" --server-pid "$SPID" --label "$server/$name/$r")
    log "$server $name run $r/$RUNS: ${cmd[*]}"
    local line
    line="$(timeout "$limit" "${cmd[@]}" 2>/dev/null || true)"
    [ -z "$line" ] && line="{\"mode\":\"$mode\",\"error\":\"no result within ${limit}s\"}"
    printf '%s\n' "$line" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
r.update(kind="result", server=sys.argv[1], case=sys.argv[2], run=int(sys.argv[3]), cmd=sys.argv[4])
print(json.dumps(r))' "$server" "$name" "$r" "$(printf '%q ' "${cmd[@]}" | sed "s#$SURL#\$URL#; s#--server-pid $SPID#--server-pid \$PID#; s#$BIN/#target/release/#g")" >>"$RESULTS"
    stop_server
}

# rust_case NAME LIMIT_S BENCH_CPU SERVER_CPU MODE ARGS...: RUNS runs of ephaptic and of the
# floor, interleaved (ephaptic, floor, floor, ephaptic, ...), so that a machine whose load
# drifts during the suite weighs on both alike.
rust_case() {
    local name="$1"
    shift
    for r in $(seq 1 "$RUNS"); do
        local order=(ephaptic floor)
        [ $((r % 2)) -eq 0 ] && order=(floor ephaptic)
        for s in "${order[@]}"; do
            run_one "$name" "$s" "$r" "$@"
        done
    done
}

common=(--duration "$DURATION" --warmup "$WARMUP")
if ! $PEERS_ONLY; then
rust_case calls_1x64 120 "" "" calls --conns 1 --inflight 64 "${common[@]}"
rust_case calls_100x8 120 "" "" calls --conns 100 --inflight 8 "${common[@]}"
rust_case latency_1x1_same_cpu 120 0 0 calls --conns 1 --inflight 1 "${common[@]}"
rust_case latency_1x1_other_cpu 120 1 0 calls --conns 1 --inflight 1 "${common[@]}"
rust_case fanout_1000 180 "" "" fanout --conns 1000 "${common[@]}"
rust_case fanout_10000 240 "" "" fanout --conns 10000 "${common[@]}"
rust_case idle_10000 300 "" "" idle --conns 10000 --hold 3

# Sessions: what the history costs an event (fan-out with it, the default, and without it,
# `parity --no-resume`, interleaved), and the time to replay 1,000 missed events to a client
# that resumes (in memory here; through Redis below).
for r in $(seq 1 "$RUNS"); do
    order=(ephaptic ephaptic-noresume)
    [ $((r % 2)) -eq 0 ] && order=(ephaptic-noresume ephaptic)
    for s in "${order[@]}"; do
        run_one history_fanout_1000 "$s" "$r" 180 "" "" fanout --conns 1000 "${common[@]}"
    done
    run_one replay_1000 ephaptic-replay "$r" 120 "" "" replay --events 1000 --rounds 50
done
fi # ! PEERS_ONLY

# The peers: ephaptic and each peer doing the same work, their runs rotated per configuration
# (run r starts with the r-th server), so a drifting load weighs on all alike.
# peer_case NAME LIMIT_S SERVERS MODE ARGS...: SERVERS is a space-separated list.
peer_case() {
    local name="$1" limit="$2" servers=($3)
    shift 3
    local n=${#servers[@]}
    for r in $(seq 1 "$RUNS"); do
        for i in $(seq 0 $((n - 1))); do
            run_one "$name" "${servers[$(((i + r - 1) % n))]}" "$r" "$limit" "" "" "$@"
        done
    done
}
if $PEERS; then
    all="ephaptic ${PEER_SERVERS[*]}"
    peer_case peers_calls_1x64 120 "$all" calls --conns 1 --inflight 64 "${common[@]}"
    peer_case peers_calls_100x8 120 "$all" calls --conns 100 --inflight 8 "${common[@]}"
    # The shapes real clients send: one frame per call, written and flushed on its own (browsers,
    # the TS client), and the Python client's frames (ephaptic-py: `kwargs` always present).
    peer_case peers_unbatched_1x64 120 "ephaptic-py $all" calls --conns 1 --inflight 64 --unbatched "${common[@]}"
    peer_case peers_unbatched_100x8 120 "ephaptic-py $all" calls --conns 100 --inflight 8 --unbatched "${common[@]}"
    peer_case peers_fanout_1000 180 "$all" fanout --conns 1000 "${common[@]}"
    peer_case peers_fanout_10000 300 "$all" fanout --conns 10000 "${common[@]}"
    peer_case peers_idle_10000 300 "$all" idle --conns 10000 --hold 3
fi

# Scale-out: fan-out to 1,000 subscribers through Redis. One server without Redis, one server
# with it (the cost of publishing), and two servers on one Redis with the subscribers split
# 500/500 (the emitter on the first): deliveries/s, latency, both servers' CPU, Redis's CPU.
if $REDIS && command -v redis-server >/dev/null 2>&1; then
    RPID=""
    PIDS=()
    URLS=()
    RPORT=""
    RURL=""
    # start_redis: a fresh redis-server on a free loopback port (RPID, RPORT, RURL), once it
    # listens.
    start_redis() {
        local rport
        rport="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
        redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
        RPID=$!
        for _ in $(seq 1 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break
            sleep 0.05
        done
        RPORT="$rport"
        RURL="redis://127.0.0.1:$rport"
    }
    # start_parity [ARGS...]: one more parity; appends to PIDS and URLS.
    start_parity() {
        local out
        out="$(mktemp)"
        EPHAPTIC_LOG=warn "$BIN/parity" --addr 127.0.0.1:0 "$@" >"$out" 2>/dev/null &
        PIDS+=($!)
        local url
        url="$(wait_for_url "$out")"
        rm -f "$out"
        URLS+=("$url")
        [ -n "$url" ]
    }
    stop_all() {
        for p in "${PIDS[@]}" $RPID; do kill "$p" 2>/dev/null || true; done
        for p in "${PIDS[@]}" $RPID; do wait "$p" 2>/dev/null || true; done
        PIDS=()
        URLS=()
        RPID=""
        RPORT=""
        RURL=""
    }
    trap 'stop_server; stop_all' EXIT
    # scale_one CASE RUN SERVERS(0 = no Redis, 1, 2) [SUBSCRIBERS (default 1000)] [MODE (fanout,
    # or replay)] [PARITY ARGS...]
    scale_one() {
        local name="$1" r="$2" n="$3" subs="${4:-1000}" mode="${5:-fanout}" extra=()
        shift 5 2>/dev/null || shift $#
        local parity_args=("$@")
        if [ "$n" -gt 0 ]; then
            start_redis
            extra=(--redis "$RURL")
        fi
        start_parity "${extra[@]}" "${parity_args[@]}" || { log "parity did not start"; stop_all; return 0; }
        local args=(--server-pid "${PIDS[0]}")
        if [ "$n" -eq 2 ]; then
            start_parity "${extra[@]}" "${parity_args[@]}" || { log "parity did not start"; stop_all; return 0; }
            args+=(--also "${URLS[1]}" --also-pid "${PIDS[1]}")
        fi
        [ -n "$RPID" ] && args+=(--redis-pid "$RPID")
        local cmd
        if [ "$mode" = replay ]; then
            cmd=("$BIN/bench" replay "${URLS[0]}" --events 1000 --rounds 10 "${args[@]}" --label "ephaptic/$name/$r")
        else
            cmd=("$BIN/bench" fanout "${URLS[0]}" --conns "$subs" "${common[@]}" "${args[@]}" --label "ephaptic/$name/$r")
        fi
        log "ephaptic $name run $r/$RUNS: ${cmd[*]}"
        # Redis's commands while the bench runs (scripts' own commands included), for the
        # operations an event costs Redis.
        redis_calls() {
            [ -n "$RPORT" ] || { echo 0; return; }
            redis-cli -p "$RPORT" INFO commandstats 2>/dev/null | sed -n 's/^cmdstat_\([a-z|]*\):calls=\([0-9]*\),.*/\1 \2/p' \
                | awk '$1 != "info" { n += $2 } END { print n + 0 }'
        }
        local calls_before
        calls_before="$(redis_calls)"
        local line
        line="$(timeout 180 "${cmd[@]}" 2>/dev/null || true)"
        [ -z "$line" ] && line="{\"mode\":\"$mode\",\"error\":\"no result within 180s\"}"
        local calls_after
        calls_after="$(redis_calls)"
        line="$(printf '%s\n' "$line" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
if sys.argv[1] != "0" or sys.argv[2] != "0":
    r["redis_commands"] = int(sys.argv[2]) - int(sys.argv[1])
print(json.dumps(r))' "$calls_before" "$calls_after")"
        local shown
        shown="$(printf '%q ' "${cmd[@]}" | sed "s#$BIN/#target/release/#g; s#ws://127.0.0.1:[0-9]*/_ephaptic#\$URL#g; s#--server-pid [0-9]*#--server-pid \$PID#; s#--also-pid [0-9]*#--also-pid \$PID2#; s#--redis-pid [0-9]*#--redis-pid \$RPID#")"
        printf '%s\n' "$line" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
r.update(kind="result", server="ephaptic", case=sys.argv[1], run=int(sys.argv[2]), cmd=sys.argv[3])
print(json.dumps(r))' "$name" "$r" "$shown" >>"$RESULTS"
        stop_all
    }
    common=(--duration "$DURATION" --warmup "$WARMUP")
    for r in $(seq 1 "$RUNS"); do
        $PEERS_ONLY && break
        # Rotated, so a drifting load weighs on all three alike.
        case $((r % 3)) in
            1) order=(0 1 2) ;;
            2) order=(1 2 0) ;;
            0) order=(2 0 1) ;;
        esac
        for n in "${order[@]}"; do
            case "$n" in
                0) scale_one scale_local "$r" 0 ;;
                1) scale_one scale_redis_1 "$r" 1 ;;
                2) scale_one scale_redis_2 "$r" 2 ;;
            esac
        done
        # One subscriber: what an event costs the emitting server itself, with and without
        # the Redis path (the delivery is then a small part of it), and the Redis path without
        # history (`--no-resume`: a plain PUBLISH instead of the history script).
        if [ $((r % 2)) -eq 1 ]; then
            scale_one path_local "$r" 0 1
            scale_one path_redis "$r" 1 1
            scale_one path_redis_noresume "$r" 1 1 fanout --no-resume
        else
            scale_one path_redis_noresume "$r" 1 1 fanout --no-resume
            scale_one path_redis "$r" 1 1
            scale_one path_local "$r" 0 1
        fi
        scale_one scale_redis_2_noresume "$r" 2 1000 fanout --no-resume
        # 1,000 missed events replayed from the history in Redis.
        scale_one replay_redis_1000 "$r" 1 1 replay --history-size 1024 --max-replay 1000
    done

    # Across two servers, for ephaptic and the peers that scale out through Redis
    # (socketioxide-redis, @socket.io/redis-adapter): fan-out to 1,000 subscribers on one server
    # without Redis, then on two servers sharing a Redis, 500 + 500, the emitter on the first.
    # pscale_one CASE RUN SERVER N [BENCH ARGS...]: one fan-out run (N = 1: one server, no
    # Redis; 2: two on one Redis).
    pscale_one() {
        local name="$1" r="$2" server="$3" n="$4" extra=() out url
        shift 4
        local more=("$@")
        if [ "$n" -eq 2 ]; then
            start_redis
            extra=(--redis "$RURL")
        fi
        server_cmd "$server" || return 0
        for _ in $(seq 1 "$n"); do
            out="$(mktemp)"
            "${SCMD[@]}" "${extra[@]}" >"$out" 2>/dev/null &
            PIDS+=($!)
            url="$(wait_for_url "$out")"
            rm -f "$out"
            if [ -z "$url" ]; then
                log "$server did not start"
                printf '{"kind":"result","mode":"fanout","server":"%s","case":"%s","run":%s,"cmd":"","error":"the server did not start"}\n' "$server" "$name" "$r" >>"$RESULTS"
                stop_all
                return 0
            fi
            URLS+=("$url")
        done
        # Node's redis adapter subscribes after the server prints; give it a moment.
        [ "$n" -eq 2 ] && sleep 1
        bench_args "$server"
        local args=(--server-pid "${PIDS[0]}")
        [ "$n" -eq 2 ] && args+=(--also "${URLS[1]}" --also-pid "${PIDS[1]}" --redis-pid "$RPID")
        local cmd=("$BIN/bench" fanout "${URLS[0]}" --conns 1000 "${common[@]}" "${more[@]}" "${BARGS[@]}" "${args[@]}" --label "$server/$name/$r")
        log "$server $name run $r/$RUNS: ${cmd[*]}"
        local line
        line="$(timeout 180 "${cmd[@]}" 2>/dev/null || true)"
        [ -z "$line" ] && line='{"mode":"fanout","error":"no result within 180s"}'
        local shown
        shown="$(printf '%q ' "${SCMD[@]}" "${extra[@]}" | sed "s#$BIN/#target/release/#g; s#$PEER_BIN/#target/peers/#g; s#$ROOT/##g; s#redis://127.0.0.1:[0-9]*#redis://127.0.0.1:\$RPORT#g") x$n; $(printf '%q ' "${cmd[@]}" | sed "s#$BIN/#target/release/#g; s#ws://127.0.0.1:[0-9]*/[^ ]*#\$URL#g; s#--server-pid [0-9]*#--server-pid \$PID#; s#--also-pid [0-9]*#--also-pid \$PID2#; s#--redis-pid [0-9]*#--redis-pid \$RPID#")"
        printf '%s\n' "$line" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
r.update(kind="result", server=sys.argv[1], case=sys.argv[2], run=int(sys.argv[3]), cmd=sys.argv[4])
print(json.dumps(r))' "$server" "$name" "$r" "$shown" >>"$RESULTS"
        stop_all
    }
    if $PEERS; then
        PACE=50
        scalers=(ephaptic socketioxide)
        [[ " ${PEER_SERVERS[*]} " == *" socketio "* ]] && scalers+=(socketio)
        for r in $(seq 1 "$RUNS"); do
            for i in $(seq 0 $((${#scalers[@]} - 1))); do
                s="${scalers[$(((i + r - 1) % ${#scalers[@]}))]}"
                # As fast as each goes, then at a pace well below it (50 events/s, 50,000
                # deliveries/s), where the latency is the path's and not the queue's.
                if [ $((r % 2)) -eq 1 ]; then
                    pscale_one peers_scale_1 "$r" "$s" 1
                    pscale_one peers_scale_2 "$r" "$s" 2
                    pscale_one peers_paced_1 "$r" "$s" 1 --rate "$PACE"
                    pscale_one peers_paced_2 "$r" "$s" 2 --rate "$PACE"
                else
                    pscale_one peers_paced_2 "$r" "$s" 2 --rate "$PACE"
                    pscale_one peers_paced_1 "$r" "$s" 1 --rate "$PACE"
                    pscale_one peers_scale_2 "$r" "$s" 2
                    pscale_one peers_scale_1 "$r" "$s" 1
                fi
            done
        done
    fi
else
    log "skipping the scale-out cases (--no-redis, or no redis-server installed)"
fi

# The reference, two orders of magnitude slower: shorter runs, and one bounded attempt at its
# idle and 10,000-connection cases.
if $PYTHON; then
    common=(--duration "$PY_DURATION" --warmup "$WARMUP")
    for r in $(seq 1 "$RUNS"); do
        run_one calls_1x64 python "$r" 120 "" "" calls --conns 1 --inflight 64 "${common[@]}"
        run_one calls_100x8 python "$r" 120 "" "" calls --conns 100 --inflight 8 "${common[@]}"
        run_one latency_1x1_same_cpu python "$r" 120 0 0 calls --conns 1 --inflight 1 "${common[@]}"
        run_one latency_1x1_other_cpu python "$r" 120 1 0 calls --conns 1 --inflight 1 "${common[@]}"
        run_one fanout_1000 python "$r" 180 "" "" fanout --conns 1000 "${common[@]}"
    done
    run_one fanout_10000 python 1 240 "" "" fanout --conns 10000 "${common[@]}"
    run_one idle_10000 python 1 300 "" "" idle --conns 10000 --hold 3
fi

printf '{"kind":"end","loadavg_end":"%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS"
log "results: $RESULTS"
python3 "$HERE/report.py" "$RESULTS" "$HERE/NOTES.md" >"$OUT"
log "wrote $OUT"
