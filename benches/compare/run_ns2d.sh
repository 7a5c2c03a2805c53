#!/usr/bin/env bash
# Navier-Stokes simulator throughput: physflow's sim::ns2d against the same IF-RK4
# pseudo-spectral scheme in numpy, interleaved (physflow, numpy, physflow, ...) on one
# thread. Target: physflow >= 1000 steps/s at 64x64.  See README.md ("ns2d").
#
#   bash benches/compare/run_ns2d.sh [ROUNDS] [N]      # default 3 rounds, n = 64
#
# Uses the comparison venv (numpy) from setup_venv.sh, or PHYSFLOW_NUMPY_PYTHON if set
# (any python with numpy).  Never run by CI.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
ROUNDS="${1:-3}"
N="${2:-64}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1
PY="${PHYSFLOW_NUMPY_PYTHON:-}"
if [ -z "$PY" ]; then
    PY="$(bash "$HERE/setup_venv.sh" | tail -n 1)/bin/python"
fi
(cd "$ROOT" && cargo build --release --example bench_ns2d >&2)
OUT="$(mktemp)"
for r in $(seq "$ROUNDS"); do
    "$ROOT/target/release/examples/bench_ns2d" --json --n "$N" | tee -a "$OUT"
    "$PY" "$HERE/ns2d.py" --n "$N" | tee -a "$OUT"
done
python3 - "$OUT" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {}
for r in rows:
    by.setdefault(r["side"], []).append(r)
pf, np_ = by.get("physflow", []), by.get("numpy", [])
m = lambda rs: statistics.median(r["ms"] for r in rs)
print(f"\n| side | ms / step (median of {len(pf)} rounds) | steps / s | mean abs w | w(0,0) |")
print("|---|---:|---:|---:|---:|")
for name, rs in (("physflow", pf), ("numpy", np_)):
    if rs:
        print(f"| {name} | {m(rs):.4f} | {1e3 / m(rs):.0f} | {rs[-1]['mean_abs_w']:.10f} | {rs[-1]['w00']:.10f} |")
if pf and np_:
    print(f"\nphysflow / numpy time per step: {m(pf) / m(np_):.3f}")
PY
