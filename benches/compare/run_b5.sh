#!/usr/bin/env bash
# Benchmark B5: physflow vs torchdiffeq vs diffrax, one neural-ODE training step.
#
#   bash benches/compare/run_b5.sh            # full run
#   bash benches/compare/run_b5.sh --quick    # smoke test (args go to neural_ode.py)
#
# Environment:
#   PHYSFLOW_COMPARE_VENV   venv location (default ~/.cache/physflow-compare/venv)
#   PHYSFLOW_COMPARE_OUT    where the JSON lines and the table are written
#                           (default ~/.cache/physflow-compare/results/<timestamp>)
#   SKIP_PHYSFLOW=1         skip the cargo side;  SKIP_PEERS=1  skip the Python side
#
# Everything runs single-threaded.  Never run by CI.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${PHYSFLOW_COMPARE_OUT:-$HOME/.cache/physflow-compare/results/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
export JAX_PLATFORMS=cpu

status=0
if [ -r /proc/loadavg ]; then
    echo "[run_b5] load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(getconf _NPROCESSORS_ONLN) cores (run on an idle machine)" >&2
fi

# (a) Python environment for the peers.
if [ "${SKIP_PEERS:-0}" != 1 ]; then
    VENV="$(bash "$HERE/setup_venv.sh" | tail -n 1)"
fi

# (b) physflow side.
: > "$OUT/physflow.jsonl"
if [ "${SKIP_PHYSFLOW:-0}" != 1 ]; then
    echo "[run_b5] physflow: cargo run --release --example bench_b5 -- --json" >&2
    # The same weights, y0 and times as the peers (drawn by numpy), when the venv is there.
    PROBLEM_ARGS=()
    if [ -n "${VENV:-}" ] && "$VENV/bin/python" "$HERE/neural_ode.py" --dump-problem "$OUT/problem.json"; then
        PROBLEM_ARGS=(--problem "$OUT/problem.json")
    fi
    if ! (cd "$ROOT" && RAYON_NUM_THREADS=1 cargo run --release --example bench_b5 -- --json "${PROBLEM_ARGS[@]}") \
            > "$OUT/physflow.jsonl"; then
        echo "[run_b5] WARNING: physflow side failed; its rows will be n/a" >&2
        status=1
    fi
fi

# (c) peers.
: > "$OUT/peers.jsonl"
if [ "${SKIP_PEERS:-0}" != 1 ]; then
    echo "[run_b5] peers: $VENV/bin/python neural_ode.py $*" >&2
    if ! "$VENV/bin/python" "$HERE/neural_ode.py" "$@" > "$OUT/peers.jsonl"; then
        echo "[run_b5] WARNING: peer side failed (partial rows kept)" >&2
        status=1
    fi
fi

# (d) table.
cat "$OUT/physflow.jsonl" "$OUT/peers.jsonl" | python3 "$HERE/table.py" | tee "$OUT/table.md"
echo "[run_b5] results in $OUT" >&2
exit "$status"
