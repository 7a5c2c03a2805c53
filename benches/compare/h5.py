#!/usr/bin/env python3
"""HDF5 read throughput peer benchmark: h5py side (see README.md, "HDF5 reads").

    python h5.py make DIR                 # create DIR/big.h5 and DIR/shards/ (if missing)
    python h5.py bench DIR [--repeats R]  # JSON lines on stdout, versions on stderr

Run with the venv python (benches/compare/setup_venv.sh installs h5py).
h5py + numpy only; everything single-threaded (h5py does not use threads).

Data (`make`): dataset `tensor`, float32 [2000, 64, 64], chunks (1, 64, 64),
gzip level 4, no shuffle, in DIR/big.h5; the same 2000 samples split into 8
shards of 250 consecutive samples (DIR/shards/shard-0000K.h5, same dataset
name, chunking and compression) described by DIR/shards/manifest.json.
Sample n (rng = numpy default_rng(0); per sample, k_n, l_n = rng.integers(1, 5,
size=2), then the noise): tensor[n, i, j] = sin(2 pi x_i k_n) cos(2 pi y_j l_n)
+ 0.01 * standard_normal, x_i = i / 64, y_j = j / 64, computed in float64 and
stored as float32.

Cases (`bench`), each one untimed warm-up then R timed repeats:
- "full read": open big.h5, np.asarray(f["tensor"]), close;
- "random access 500": open big.h5 once, read f["tensor"][i] for 500 indices
  from default_rng(1).integers(0, 2000, 500) (duplicates possible), close;
- "shards epoch b32": open the 8 shard files (names and sizes from
  manifest.json, read before the timed region), then for the 2000 samples in
  default_rng(2).permutation(2000) order, in batches of 32 (the last batch has
  the remaining 16), fill a float32 [batch, 64, 64] array sample by sample
  with dataset[i]; close the files.
Each JSON line: {"side": "h5py", "name", "ms" (median), "min_ms", "repeats",
"mb_per_s" (decompressed bytes, 1e6 per MB, at the median), "bytes",
"samples", "checksum" (float64 sum of every value read in the last repeat,
computed after the timer stops)}.
"""

import argparse
import gc
import json
import os
import sys
import time

import h5py
import numpy as np

N_SAMPLES = 2000
SIDE = 64
N_SHARDS = 8
PER_SHARD = N_SAMPLES // N_SHARDS
CHUNKS = (1, SIDE, SIDE)
GZIP_LEVEL = 4
DATASET = "tensor"
SAMPLE_BYTES = SIDE * SIDE * 4
RANDOM_COUNT = 500
BATCH = 32


def log(msg):
    print("[h5.py] " + msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------- make
def make_data():
    rng = np.random.default_rng(0)
    x = np.arange(SIDE) / SIDE
    xx, yy = np.meshgrid(x, x, indexing="ij")
    out = np.empty((N_SAMPLES, SIDE, SIDE), dtype=np.float32)
    for n in range(N_SAMPLES):
        k, l = rng.integers(1, 5, size=2)
        field = np.sin(2 * np.pi * xx * k) * np.cos(2 * np.pi * yy * l)
        out[n] = field + 0.01 * rng.standard_normal((SIDE, SIDE))
    return out


def write_tensor(path, data):
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.create_dataset(DATASET, data=data, chunks=CHUNKS,
                         compression="gzip", compression_opts=GZIP_LEVEL)
    os.replace(tmp, path)


def has_tensor(path, n):
    try:
        with h5py.File(path, "r") as f:
            d = f[DATASET]
            return d.shape == (n, SIDE, SIDE) and d.dtype == np.float32 and d.chunks == CHUNKS
    except (OSError, KeyError):
        return False


def manifest_dict():
    return {
        "format": "physflow-shards",
        "version": 1,
        "dataset": DATASET,
        "sample_shape": [SIDE, SIDE],
        "total_samples": N_SAMPLES,
        "shard_count": N_SHARDS,
        "shards": [{"index": k, "file": "shard-%05d.h5" % k, "samples": PER_SHARD,
                    "first_sample": k * PER_SHARD, "seed": 0}
                   for k in range(N_SHARDS)],
        "stats": None,
        "generator": "benches/compare/h5.py",
    }


def random_indices():
    return [int(i) for i in np.random.default_rng(1).integers(0, N_SAMPLES, RANDOM_COUNT)]


def cmd_make(directory):
    # The random-access indices, shared with physflow's bench_h5 so that both
    # sides read the same samples (and their checksums agree).
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "random_indices.json"), "w") as fh:
        json.dump(random_indices(), fh)
    big = os.path.join(directory, "big.h5")
    shard_dir = os.path.join(directory, "shards")
    manifest = os.path.join(shard_dir, "manifest.json")
    want = manifest_dict()
    shards_ok = (os.path.isfile(manifest)
                 and all(has_tensor(os.path.join(shard_dir, s["file"]), PER_SHARD)
                         for s in want["shards"]))
    if shards_ok:
        with open(manifest) as fh:
            shards_ok = json.load(fh) == want
    if has_tensor(big, N_SAMPLES) and shards_ok:
        log("data already present in %s" % directory)
        return
    os.makedirs(shard_dir, exist_ok=True)
    log("generating %d x %d x %d float32 samples" % (N_SAMPLES, SIDE, SIDE))
    data = make_data()
    write_tensor(big, data)
    log("wrote %s (%.1f MB on disk, %.1f MB raw)" % (big, os.path.getsize(big) / 1e6,
                                                     data.nbytes / 1e6))
    for s in want["shards"]:
        a = s["first_sample"]
        write_tensor(os.path.join(shard_dir, s["file"]), data[a:a + s["samples"]])
    with open(manifest + ".tmp", "w") as fh:
        json.dump(want, fh, indent=2)
        fh.write("\n")
    os.replace(manifest + ".tmp", manifest)
    log("wrote %d shards and %s" % (N_SHARDS, manifest))


# ---------------------------------------------------------------------- bench
def case_full_read(directory):
    path = os.path.join(directory, "big.h5")

    def run():
        with h5py.File(path, "r") as f:
            a = np.asarray(f[DATASET])
        return [a]
    return run, N_SAMPLES


def case_random_access(directory):
    path = os.path.join(directory, "big.h5")
    idx = random_indices()

    def run():
        out = []
        with h5py.File(path, "r") as f:
            d = f[DATASET]
            for i in idx:
                out.append(d[i])
        return out
    return run, RANDOM_COUNT


def case_shards_epoch(directory):
    shard_dir = os.path.join(directory, "shards")
    with open(os.path.join(shard_dir, "manifest.json")) as fh:
        m = json.load(fh)
    dataset = m["dataset"]
    paths = [os.path.join(shard_dir, s["file"]) for s in m["shards"]]
    # global sample -> (shard, local index), from the manifest
    where = []
    for k, s in enumerate(m["shards"]):
        where.extend((k, j) for j in range(s["samples"]))
    total = len(where)
    order = np.random.default_rng(2).permutation(total)
    batches = [[where[int(g)] for g in order[b:b + BATCH]] for b in range(0, total, BATCH)]
    shape = tuple(m["sample_shape"])

    def run():
        files = [h5py.File(p, "r") for p in paths]
        try:
            dsets = [f[dataset] for f in files]
            out = []
            for batch in batches:
                arr = np.empty((len(batch),) + shape, dtype=np.float32)
                for j, (k, i) in enumerate(batch):
                    arr[j] = dsets[k][i]
                out.append(arr)
        finally:
            for f in files:
                f.close()
        return out
    return run, total


CASES = [
    ("full read", case_full_read),
    ("random access 500", case_random_access),
    ("shards epoch b32", case_shards_epoch),
]


def cmd_bench(directory, repeats, warmup, only):
    log("h5py %s, HDF5 %s, numpy %s, Python %s" % (
        h5py.__version__, h5py.version.hdf5_version, np.__version__, sys.version.split()[0]))
    for name, make_case in CASES:
        if only and only not in name:
            continue
        run, samples = make_case(directory)
        for _ in range(warmup):
            run()
        times = []
        out = None
        for _ in range(repeats):
            out = None
            gc.collect()
            t0 = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - t0)
        checksum = float(sum(float(np.sum(a, dtype=np.float64)) for a in out))
        nbytes = samples * SAMPLE_BYTES
        med = float(np.median(times))
        row = {"side": "h5py", "name": name, "ms": med * 1e3, "min_ms": min(times) * 1e3,
               "repeats": repeats, "mb_per_s": nbytes / med / 1e6, "bytes": nbytes,
               "samples": samples, "checksum": checksum}
        print(json.dumps(row), flush=True)
        log("%-18s median %8.2f ms  min %8.2f ms  %7.1f MB/s" % (
            name, row["ms"], row["min_ms"], row["mb_per_s"]))


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pm = sub.add_parser("make", help="create DIR/big.h5 and DIR/shards/ if missing")
    pm.add_argument("dir")
    pb = sub.add_parser("bench", help="time the h5py reads (JSON lines on stdout)")
    pb.add_argument("dir")
    pb.add_argument("--repeats", type=int, default=10)
    pb.add_argument("--warmup", type=int, default=1)
    pb.add_argument("--only", default="", help="run only cases whose name contains this")
    args = p.parse_args(argv[1:])
    if args.cmd == "make":
        cmd_make(args.dir)
    else:
        if args.repeats < 1:
            p.error("--repeats must be >= 1")
        cmd_bench(args.dir, args.repeats, args.warmup, args.only)


if __name__ == "__main__":
    main(sys.argv)
