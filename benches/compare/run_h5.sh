#!/usr/bin/env bash
# HDF5 read throughput: physflow (hdf5-pure) vs h5py on the same files -- one
# whole-file read, 500 random sample reads, and one shuffled epoch over 8
# shards in batches of 32.  See README.md ("HDF5 reads").
#
#   bash benches/compare/run_h5.sh                 # full run
#   bash benches/compare/run_h5.sh --repeats 3     # args go to `h5.py bench`
#
# Environment:
#   PHYSFLOW_COMPARE_VENV     venv location (default ~/.cache/physflow-compare/venv)
#   PHYSFLOW_COMPARE_H5_DATA  where the benchmark files live; created by
#                             `h5.py make` when missing, reused afterwards
#                             (default ~/.cache/physflow-compare/h5-data, ~62 MB)
#   PHYSFLOW_COMPARE_OUT      where the JSON lines and the table are written
#                             (default ~/.cache/physflow-compare/results/h5-<timestamp>)
#   SKIP_PHYSFLOW=1           skip the cargo side;  SKIP_PEERS=1  skip the h5py side
#
# Everything runs single-threaded.  Never run by CI.  Files are read from the
# page cache after each side's warm-up, so this measures the readers
# (chunk lookup, inflate, copies), not the disk.  A run takes about a minute
# plus the release build.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DATA="${PHYSFLOW_COMPARE_H5_DATA:-$HOME/.cache/physflow-compare/h5-data}"
OUT="${PHYSFLOW_COMPARE_OUT:-$HOME/.cache/physflow-compare/results/h5-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT" "$DATA"

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1

status=0
if [ -r /proc/loadavg ]; then
    echo "[run_h5] load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(getconf _NPROCESSORS_ONLN) cores (run on an idle machine)" >&2
fi

# (a) Python environment (h5py) and the data, which both sides read.
VENV="$(bash "$HERE/setup_venv.sh" | tail -n 1)"
echo "[run_h5] data: $VENV/bin/python h5.py make $DATA" >&2
"$VENV/bin/python" "$HERE/h5.py" make "$DATA"

# (b) physflow side (side "physflow" rows, same case names as h5.py).
: > "$OUT/physflow.jsonl"
if [ "${SKIP_PHYSFLOW:-0}" != 1 ]; then
    echo "[run_h5] physflow: cargo run --release --example bench_h5 -- --json --data $DATA" >&2
    if ! (cd "$ROOT" && RAYON_NUM_THREADS=1 cargo run --release --example bench_h5 -- --json --data "$DATA") \
            > "$OUT/physflow.jsonl"; then
        echo "[run_h5] WARNING: physflow side failed; its rows will be n/a" >&2
        status=1
    fi
fi

# (c) h5py side (stderr log kept next to the rows).
: > "$OUT/peers.jsonl"
if [ "${SKIP_PEERS:-0}" != 1 ]; then
    echo "[run_h5] peers: $VENV/bin/python h5.py bench $DATA $*" >&2
    if ! "$VENV/bin/python" "$HERE/h5.py" bench "$DATA" "$@" > "$OUT/peers.jsonl" 2> >(tee "$OUT/peers.log" >&2); then
        echo "[run_h5] WARNING: peer side failed (partial rows kept)" >&2
        status=1
    fi
fi

# (d) table.
cat "$OUT/physflow.jsonl" "$OUT/peers.jsonl" | python3 "$HERE/table.py" --bench h5 | tee "$OUT/table.md"
echo "[run_h5] results in $OUT" >&2
exit "$status"
