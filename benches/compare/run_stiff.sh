#!/usr/bin/env bash
# Stiff-ODE benchmarks B2-B4: physflow BDF and raw diffsol BDF vs scipy BDF
# (solve_ivp) and diffrax Kvaerno5 on robertson, vdp1000, bruss2d-32 and
# bruss2d-64 (rtol 1e-6, atol 1e-8, final time only).  See README.md.
#
#   bash benches/compare/run_stiff.sh            # full run
#   bash benches/compare/run_stiff.sh --quick    # smoke test (args go to stiff.py)
#   bash benches/compare/run_stiff.sh --only bruss2d-32 --diffrax-budget 1800
#
# Environment:
#   PHYSFLOW_COMPARE_VENV   venv location (default ~/.cache/physflow-compare/venv)
#   PHYSFLOW_COMPARE_OUT    where the JSON lines and the table are written
#                           (default ~/.cache/physflow-compare/results/stiff-<timestamp>)
#   PHYSFLOW_COMPARE_REF_DIR  cache of the Radau reference solutions
#                           (default ~/.cache/physflow-compare/stiff-ref)
#   SKIP_PHYSFLOW=1         skip the cargo side;  SKIP_PEERS=1  skip the Python side
#
# Everything runs single-threaded.  Never run by CI.  A full peer run takes
# about 20-30 minutes, most of it diffrax on the Brusselator (two solves killed
# after --diffrax-budget, 300 s each by default) and the first computation of
# the references (cached afterwards).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${PHYSFLOW_COMPARE_OUT:-$HOME/.cache/physflow-compare/results/stiff-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
export JAX_PLATFORMS=cpu JAX_ENABLE_X64=1

status=0
if [ -r /proc/loadavg ]; then
    echo "[run_stiff] load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(getconf _NPROCESSORS_ONLN) cores (run on an idle machine)" >&2
fi

# (a) Python environment for the peers.
if [ "${SKIP_PEERS:-0}" != 1 ]; then
    VENV="$(bash "$HERE/setup_venv.sh" | tail -n 1)"
fi

# (b) physflow side: physflow's BDF and raw diffsol's BDF (side "physflow" and
# side "diffsol" rows, same problem names as the peers).
: > "$OUT/physflow.jsonl"
if [ "${SKIP_PHYSFLOW:-0}" != 1 ]; then
    echo "[run_stiff] physflow: cargo run --release --example bench_stiff -- --json" >&2
    if ! (cd "$ROOT" && RAYON_NUM_THREADS=1 cargo run --release --example bench_stiff -- --json) \
            > "$OUT/physflow.jsonl"; then
        echo "[run_stiff] WARNING: physflow side failed; its rows will be n/a" >&2
        status=1
    fi
fi

# (c) peers (stderr log kept next to the rows).
: > "$OUT/peers.jsonl"
if [ "${SKIP_PEERS:-0}" != 1 ]; then
    echo "[run_stiff] peers: $VENV/bin/python stiff.py $*" >&2
    if ! "$VENV/bin/python" "$HERE/stiff.py" "$@" > "$OUT/peers.jsonl" 2> >(tee "$OUT/peers.log" >&2); then
        echo "[run_stiff] WARNING: peer side failed (partial rows kept)" >&2
        status=1
    fi
fi

# (d) table.
cat "$OUT/physflow.jsonl" "$OUT/peers.jsonl" | python3 "$HERE/table.py" --bench stiff | tee "$OUT/table.md"
echo "[run_stiff] results in $OUT" >&2
exit "$status"
