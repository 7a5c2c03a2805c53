#!/usr/bin/env bash
# Boltzmann generators trained by energy (reverse KL) on the 2D double well (dw2d) and DW4
# (dw4): physflow vs normflows, the same RealNVP (8 affine couplings, [64, 64] tanh
# conditioners, bounded scale, float64), batch 256, Adam 1e-3, gradient-norm clip 100, for an
# equal budget of training seconds; ESS/N measured on 20000 fresh samples at every
# EVAL_EVERY seconds of training time (the clock paused).  See README.md ("Boltzmann
# generators").
#
#   bash benches/compare/run_boltzmann.sh                       # 60 s per run, seeds 0 1 2
#   BUDGET=20 SEEDS="0" bash benches/compare/run_boltzmann.sh   # quick look
#
# Environment:
#   PHYSFLOW_COMPARE_VENV   venv location (default ~/.cache/physflow-compare/venv)
#   PHYSFLOW_COMPARE_OUT    where the JSON lines and the table are written
#                           (default ~/.cache/physflow-compare/results/boltzmann-<timestamp>)
#   BUDGET                  training seconds per run (default 60)
#   EVAL_EVERY              training seconds between evaluations (default BUDGET / 10)
#   SEEDS                   default "0 1 2";  SYSTEMS  default "dw2d dw4"
#   NF_COUPLINGS            normflows variants (boltzmann.py --coupling), default "block subclass":
#                           block = nf.flows.AffineCouplingBlock (impl "normflows"), subclass = the
#                           same layer as a lean nf.flows.Flow subclass (impl "normflows-subclass")
#   SKIP_PHYSFLOW=1         skip the cargo side;  SKIP_PEERS=1  skip the normflows side
#
# physflow's example is built once (cargo build --release --example bench_boltzmann) and the
# binary target/release/examples/bench_boltzmann is run with the same flags as boltzmann.py.
# For each system and seed the sides run one after the other, the order flipping from seed to
# seed so that neither always goes first; everything is single-threaded.  Never run by CI.
# Takes about (1 + |NF_COUPLINGS|) * |SYSTEMS| * |SEEDS| * BUDGET seconds plus the evaluations
# (a few seconds per run) and the release build: ~20 minutes with the defaults.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${PHYSFLOW_COMPARE_OUT:-$HOME/.cache/physflow-compare/results/boltzmann-$(date +%Y%m%d-%H%M%S)}"
BUDGET="${BUDGET:-60}"
EVAL_EVERY="${EVAL_EVERY:-}"
SEEDS="${SEEDS:-0 1 2}"
SYSTEMS="${SYSTEMS:-dw2d dw4}"
NF_COUPLINGS="${NF_COUPLINGS:-block subclass}"
mkdir -p "$OUT"

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1

status=0
if [ -r /proc/loadavg ]; then
    echo "[run_boltzmann] load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(getconf _NPROCESSORS_ONLN) cores (run on an idle machine)" >&2
fi

FLAGS=(--seconds "$BUDGET")
if [ -n "$EVAL_EVERY" ]; then
    FLAGS+=(--eval-every "$EVAL_EVERY")
fi

# (a) Python environment (normflows on torch).
VENV=""
if [ "${SKIP_PEERS:-0}" != 1 ]; then
    VENV="$(bash "$HERE/setup_venv.sh" | tail -n 1)"
fi

# (b) physflow's example, built once.
BIN="$ROOT/target/release/examples/bench_boltzmann"
if [ "${SKIP_PHYSFLOW:-0}" != 1 ]; then
    echo "[run_boltzmann] cargo build --release --example bench_boltzmann" >&2
    (cd "$ROOT" && cargo build --release --example bench_boltzmann) >&2
fi

RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

run_physflow() {  # system seed
    [ "${SKIP_PHYSFLOW:-0}" = 1 ] && return 0
    echo "[run_boltzmann] $1 seed $2: physflow" >&2
    if ! RAYON_NUM_THREADS=1 "$BIN" --system "$1" --seed "$2" "${FLAGS[@]}" \
            2>> "$OUT/physflow.log" | tee -a "$RESULTS" >&2; then
        echo "[run_boltzmann] WARNING: physflow $1 seed $2 failed (see physflow.log; rows so far kept)" >&2
        status=1
    fi
}

run_normflows() {  # system seed
    [ "${SKIP_PEERS:-0}" = 1 ] && return 0
    local coupling
    for coupling in $NF_COUPLINGS; do
        echo "[run_boltzmann] $1 seed $2: normflows ($coupling)" >&2
        if ! "$VENV/bin/python" "$HERE/boltzmann.py" --system "$1" --seed "$2" --coupling "$coupling" \
                "${FLAGS[@]}" 2>> "$OUT/peers.log" | tee -a "$RESULTS" >&2; then
            echo "[run_boltzmann] WARNING: normflows ($coupling) $1 seed $2 failed or diverged (see peers.log; rows so far kept)" >&2
            status=1
        fi
    done
}

# (c) the runs, alternating between the sides.
i=0
for system in $SYSTEMS; do
    for seed in $SEEDS; do
        if [ $((i % 2)) = 0 ]; then
            run_physflow "$system" "$seed"
            run_normflows "$system" "$seed"
        else
            run_normflows "$system" "$seed"
            run_physflow "$system" "$seed"
        fi
        i=$((i + 1))
    done
done

# (d) tables.
python3 "$HERE/table.py" --bench boltzmann "$RESULTS" | tee "$OUT/table.md"
echo "[run_boltzmann] results in $OUT" >&2
exit "$status"
