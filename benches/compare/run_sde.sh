#!/usr/bin/env bash
# Neural-SDE benchmark: physflow vs torchsde vs diffrax, one training step
# (100 fixed steps, forward solve + loss + backward).  See README.md.
#
#   bash benches/compare/run_sde.sh            # full run
#   bash benches/compare/run_sde.sh --quick    # smoke test (args go to sde.py)
#
# Environment:
#   PHYSFLOW_COMPARE_VENV   venv location (default ~/.cache/physflow-compare/venv)
#   PHYSFLOW_COMPARE_OUT    where the JSON lines and the table are written
#                           (default ~/.cache/physflow-compare/results/sde-<timestamp>)
#   SKIP_PHYSFLOW=1         skip the cargo side;  SKIP_PEERS=1  skip the Python side
#
# Everything runs single-threaded.  Never run by CI.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${PHYSFLOW_COMPARE_OUT:-$HOME/.cache/physflow-compare/results/sde-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
export JAX_PLATFORMS=cpu

status=0
if [ -r /proc/loadavg ]; then
    echo "[run_sde] load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(getconf _NPROCESSORS_ONLN) cores (run on an idle machine)" >&2
fi

# (a) Python environment for the peers (also needed to dump the shared problem).
if [ "${SKIP_PEERS:-0}" != 1 ]; then
    VENV="$(bash "$HERE/setup_venv.sh" | tail -n 1)"
elif [ -x "${PHYSFLOW_COMPARE_VENV:-$HOME/.cache/physflow-compare/venv}/bin/python" ]; then
    VENV="${PHYSFLOW_COMPARE_VENV:-$HOME/.cache/physflow-compare/venv}"
fi

# (b) physflow side.
: > "$OUT/physflow.jsonl"
if [ "${SKIP_PHYSFLOW:-0}" != 1 ]; then
    echo "[run_sde] physflow: cargo run --release --example bench_sde -- --json" >&2
    # The same drift / diffusion weights and y0 as the peers (drawn by numpy),
    # when the venv is there.  (The Brownian paths are each side's own.)
    PROBLEM_ARGS=()
    if [ -n "${VENV:-}" ] && "$VENV/bin/python" "$HERE/sde.py" --dump-problem "$OUT/problem.json"; then
        PROBLEM_ARGS=(--problem "$OUT/problem.json")
    fi
    if ! (cd "$ROOT" && RAYON_NUM_THREADS=1 cargo run --release --example bench_sde -- --json "${PROBLEM_ARGS[@]}") \
            > "$OUT/physflow.jsonl"; then
        echo "[run_sde] WARNING: physflow side failed; its rows will be n/a" >&2
        status=1
    fi
fi

# (c) peers.
: > "$OUT/peers.jsonl"
if [ "${SKIP_PEERS:-0}" != 1 ]; then
    echo "[run_sde] peers: $VENV/bin/python sde.py $*" >&2
    if ! "$VENV/bin/python" "$HERE/sde.py" "$@" > "$OUT/peers.jsonl"; then
        echo "[run_sde] WARNING: peer side failed (partial rows kept)" >&2
        status=1
    fi
fi

# (d) table.
cat "$OUT/physflow.jsonl" "$OUT/peers.jsonl" | python3 "$HERE/table.py" --bench sde | tee "$OUT/table.md"
echo "[run_sde] results in $OUT" >&2
exit "$status"
