#!/usr/bin/env bash
# What seeing the server costs a call: parity as it ships (plain: no metrics, no subscriber that
# wants call spans), with `--metrics` (the Prometheus counters and histograms), with
# `EPHAPTIC_LOG=spans` (a subscriber whose registry builds and keeps every call's span for a
# layer that wants them, beside a fmt layer for warnings, each with its own filter), with both
# (observed), with both and the calls sampled one in a hundred (`--sample-calls 0.01`, 5,000 spans a
# second at this rate: sampled), and
# with the least subscriber that keeps spans (`EPHAPTIC_LOG=spans-registry`: the registry and
# that layer alone, under one global filter: registry); batched and unbatched, the variants
# rotated run by run. Prints a Markdown table of medians: calls/s and server CPU per call. The figures go
# into BENCHMARKS.md by hand.
#
#   examples/bench/observability.sh [--runs N] [--duration S]
set -euo pipefail
HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$HERE/../.." && pwd)"
cd "$ROOT"
RUNS=5
DURATION=4
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
cargo build --release --quiet -p parity -p bench
BIN="$ROOT/target/release"
RESULTS="$(mktemp)"

run() { # run VARIANT SHAPE ARGS...
    local variant="$1" shape="$2" out pid url
    shift 2
    out="$(mktemp)"
    case "$variant" in
        observed) EPHAPTIC_LOG=spans "$BIN/parity" --addr 127.0.0.1:0 --metrics 127.0.0.1:0 >"$out" 2>/dev/null & ;;
        sampled) EPHAPTIC_LOG=spans "$BIN/parity" --addr 127.0.0.1:0 --metrics 127.0.0.1:0 --sample-calls 0.01 >"$out" 2>/dev/null & ;;
        registry) EPHAPTIC_LOG=spans-registry "$BIN/parity" --addr 127.0.0.1:0 >"$out" 2>/dev/null & ;;
        metrics) EPHAPTIC_LOG=warn "$BIN/parity" --addr 127.0.0.1:0 --metrics 127.0.0.1:0 >"$out" 2>/dev/null & ;;
        spans) EPHAPTIC_LOG=spans "$BIN/parity" --addr 127.0.0.1:0 >"$out" 2>/dev/null & ;;
        *) EPHAPTIC_LOG=warn "$BIN/parity" --addr 127.0.0.1:0 >"$out" 2>/dev/null & ;;
    esac
    pid=$!
    for _ in $(seq 1 100); do
        url="$(sed -n 's/^listening on //p' "$out")"
        [ -n "$url" ] && break
        sleep 0.05
    done
    timeout 60 "$BIN/bench" calls "$url" --conns 1 --inflight 64 --duration "$DURATION" --warmup 1 \
        --server-pid "$pid" --label "$variant" "$@" 2>/dev/null \
        | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r["variant"]=sys.argv[1]; r["shape"]=sys.argv[2]; print(json.dumps(r))' \
            "$variant" "$shape" >>"$RESULTS" || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$out"
}

VARIANTS=(plain metrics spans observed sampled registry)
N=${#VARIANTS[@]}
for r in $(seq 1 "$RUNS"); do
    # Rotated run by run, so a drifting load weighs on all alike.
    order=()
    for i in $(seq 0 $((N - 1))); do order+=("${VARIANTS[$(((i + r) % N))]}"); done
    for v in "${order[@]}"; do
        run "$v" batched
        run "$v" unbatched --unbatched
    done
done

python3 - "$RESULTS" "$RUNS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"| 1 connection, 64 in flight ({sys.argv[2]} runs each, medians) | calls/s | server CPU us/call | CPU per call vs plain |")
print("|---|---|---|---|")
for shape in ("batched", "unbatched"):
    def med(variant, key):
        vals = [r[key] for r in rows if r["shape"] == shape and r["variant"] == variant and r.get(key) is not None]
        return statistics.median(vals) if vals else float("nan")
    base = med("plain", "server_cpu_us_per_call")
    for v in ("plain", "metrics", "spans", "observed", "sampled", "registry"):
        cpu = med(v, "server_cpu_us_per_call")
        print(f"| {shape}, {v} | {med(v, 'calls_per_s'):,.0f} | {cpu:.2f} | {100 * (cpu / base - 1):+.1f} % |")
PY
rm -f "$RESULTS"
