#!/usr/bin/env bash
# Flow matching (8 Gaussians -> two moons, torchcfm's 2-D tutorial problem):
# physflow vs torchcfm -- training throughput (batch 256, independent and
# exact-OT couplings), sampling time (2048 samples, 100 Euler steps) and W2 to
# held-out moons by NFE after 3000 training steps.  See README.md ("Flow
# matching").
#
#   bash benches/compare/run_fm.sh              # full run
#   bash benches/compare/run_fm.sh --quick      # args go to both sides
#   (both understand --quick, --repeats R, --steps-timed N, --train-steps N)
#
# Environment:
#   PHYSFLOW_COMPARE_VENV   venv location (default ~/.cache/physflow-compare/venv)
#   PHYSFLOW_COMPARE_OUT    where the JSON lines and the table are written
#                           (default ~/.cache/physflow-compare/results/fm-<timestamp>)
#   SKIP_PHYSFLOW=1         skip the cargo side;  SKIP_PEERS=1  skip the torchcfm side
#
# Everything runs single-threaded.  Never run by CI.  The torchcfm side takes
# about 10 minutes (--quick: about 1.5), plus the release build.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${PHYSFLOW_COMPARE_OUT:-$HOME/.cache/physflow-compare/results/fm-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1

status=0
if [ -r /proc/loadavg ]; then
    echo "[run_fm] load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(getconf _NPROCESSORS_ONLN) cores (run on an idle machine)" >&2
fi

# (a) Python environment (torchcfm, POT, scikit-learn, ...).
VENV=""
if [ "${SKIP_PEERS:-0}" != 1 ]; then
    VENV="$(bash "$HERE/setup_venv.sh" | tail -n 1)"
fi

# (b) physflow side (side "physflow" rows, same case names as fm.py).
: > "$OUT/physflow.jsonl"
if [ "${SKIP_PHYSFLOW:-0}" != 1 ]; then
    echo "[run_fm] physflow: cargo run --release --example bench_fm -- --json $*" >&2
    if ! (cd "$ROOT" && RAYON_NUM_THREADS=1 cargo run --release --example bench_fm -- --json "$@") \
            > "$OUT/physflow.jsonl"; then
        echo "[run_fm] WARNING: physflow side failed; its rows will be n/a" >&2
        status=1
    fi
fi

# (c) torchcfm side (stderr log kept next to the rows).
: > "$OUT/peers.jsonl"
if [ "${SKIP_PEERS:-0}" != 1 ]; then
    echo "[run_fm] peers: $VENV/bin/python fm.py bench $*" >&2
    if ! "$VENV/bin/python" "$HERE/fm.py" bench "$@" > "$OUT/peers.jsonl" 2> >(tee "$OUT/peers.log" >&2); then
        echo "[run_fm] WARNING: peer side failed (partial rows kept)" >&2
        status=1
    fi
fi

# (d) tables.
cat "$OUT/physflow.jsonl" "$OUT/peers.jsonl" | python3 "$HERE/table.py" --bench fm | tee "$OUT/table.md"
echo "[run_fm] results in $OUT" >&2
exit "$status"
