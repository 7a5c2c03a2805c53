#!/usr/bin/env bash
# Boltzmann generators trained by energy (reverse KL) on the 2D double well and DW4:
# physflow vs normflows, the same RealNVP (8 affine couplings, [64, 64] tanh conditioners,
# bounded scale, f64), batch 256, Adam 1e-3, for an equal budget of training seconds; ESS/N
# measured on 20000 samples at ten points of the budget.  See README.md.
#
#   bash benches/compare/run_boltzmann.sh               # 60 s per run, seeds 0 1 2
#   BUDGET=20 SEEDS="0" bash benches/compare/run_boltzmann.sh
#
# Environment:
#   PHYSFLOW_COMPARE_VENV   venv location (default ~/.cache/physflow-compare/venv)
#   PHYSFLOW_COMPARE_OUT    where the JSON lines and the table are written
#                           (default ~/.cache/physflow-compare/results/boltzmann-<timestamp>)
#   BUDGET (seconds per run, default 60), SEEDS (default "0 1 2"), SYSTEMS (default "dw2d dw4")
#
# Runs alternate between the two sides so that machine-load drift hits both; everything is
# single-threaded.  Never run by CI.  Takes about 2 · |SYSTEMS| · |SEEDS| · BUDGET seconds plus
# evaluation and the release build.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${PHYSFLOW_COMPARE_OUT:-$HOME/.cache/physflow-compare/results/boltzmann-$(date +%Y%m%d-%H%M%S)}"
BUDGET="${BUDGET:-60}"
SEEDS="${SEEDS:-0 1 2}"
SYSTEMS="${SYSTEMS:-dw2d dw4}"
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1

if [ -r /proc/loadavg ]; then
    echo "[run_boltzmann] load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(getconf _NPROCESSORS_ONLN) cores (run on an idle machine)" >&2
fi
VENV="$(bash "$HERE/setup_venv.sh" | tail -n 1)"
(cd "$ROOT" && cargo build --release --example bench_boltzmann) >&2
BIN="$ROOT/target/release/examples/bench_boltzmann"

: > "$OUT/results.jsonl"
for system in $SYSTEMS; do
    for seed in $SEEDS; do
        echo "[run_boltzmann] $system seed $seed: physflow" >&2
        "$BIN" --system "$system" --seconds "$BUDGET" --seed "$seed" | tee -a "$OUT/results.jsonl" >&2
        echo "[run_boltzmann] $system seed $seed: normflows" >&2
        "$VENV/bin/python" "$HERE/boltzmann.py" --system "$system" --seconds "$BUDGET" --seed "$seed" | tee -a "$OUT/results.jsonl" >&2
    done
done
python3 "$HERE/table.py" --bench boltzmann "$OUT/results.jsonl" | tee "$OUT/table.md"
echo "[run_boltzmann] results in $OUT" >&2
