#!/usr/bin/env python3
"""Write the small HDF5 fixtures that physflow's tests read (see README.md).

    ~/.cache/physflow-compare/venv/bin/python data/h5/make_fixtures.py

(the venv comes from benches/compare/setup_venv.sh, which pins h5py).  Writes
pdebench_1d.h5, pdebench_2d_cfd.h5, pdebench_grouped.h5 and scalar_f64.h5 into
this script's own directory, overwriting them.  Deterministic: the same h5py /
HDF5 versions give byte-identical files (no timestamps are stored).  Every
float32 value is exactly representable (checked below), so the Rust tests can
compare with `==`.  Prints the h5py / HDF5 versions and a description of every
file written (superblock, filters, chunk index, attribute types).
"""

import os
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def exact_f32(a64):
    """Cast a float64 array to float32, asserting that no value is rounded."""
    a32 = a64.astype(np.float32)
    if not np.array_equal(a32.astype(np.float64), a64):
        raise AssertionError("value not exactly representable in float32")
    return a32


def pdebench_1d(path):
    # tensor[n, t, x] = n + 0.25 t + x / 64, shape [N=4, T=6, X=16]
    n, t, x = np.meshgrid(np.arange(4), np.arange(6), np.arange(16), indexing="ij")
    tensor = exact_f32(n + 0.25 * t + x / 64.0)
    xc = exact_f32((np.arange(16) + 0.5) / 16.0)
    tc = exact_f32(0.25 * np.arange(7))  # PDEBench stores T + 1 time points
    with h5py.File(path, "w") as f:
        f.create_dataset("tensor", data=tensor, chunks=(1, 6, 16),
                         compression="gzip", compression_opts=4, shuffle=True)
        f.create_dataset("x-coordinate", data=xc)
        f.create_dataset("t-coordinate", data=tc)
        f.attrs["beta"] = np.float64(0.4)
        f.attrs["Nu"] = np.float64(0.001)


def pdebench_2d_cfd(path):
    # v[n, t, i, j] = 100 c + 10 n + t + i / 8 + j / 32, shape [N=2, T=3, X=8, Y=4]
    n, t, i, j = np.meshgrid(np.arange(2), np.arange(3), np.arange(8), np.arange(4),
                             indexing="ij")
    with h5py.File(path, "w") as f:
        for c, name in enumerate(["density", "Vx", "Vy", "pressure"]):
            v = exact_f32(100.0 * c + 10.0 * n + t + i / 8.0 + j / 32.0)
            f.create_dataset(name, data=v, chunks=(1, 3, 8, 4),
                             compression="lzf", shuffle=True)
        f.create_dataset("x-coordinate", data=exact_f32(np.arange(8) / 8.0))
        f.create_dataset("y-coordinate", data=exact_f32(np.arange(4) / 4.0))
        f.create_dataset("t-coordinate", data=exact_f32(0.5 * np.arange(4)))
        f.attrs["eta"] = np.float64(0.01)
        f.attrs["zeta"] = np.float64(0.1)
        f.attrs["M"] = np.float64(1.0)


def pdebench_grouped(path):
    # data[t, i, j, c] = 1000 s + 100 c + t + i / 8 + j / 32, shape [T=5, X=8, Y=4, C=2]
    t, i, j, c = np.meshgrid(np.arange(5), np.arange(8), np.arange(4), np.arange(2),
                             indexing="ij")
    with h5py.File(path, "w") as f:
        f.attrs["equation"] = "diffusion-reaction"  # str -> variable-length UTF-8
        for s in range(3):
            g = f.create_group("%04d" % s)
            g.attrs["seed"] = np.int64(s)
            data = exact_f32(1000.0 * s + 100.0 * c + t + i / 8.0 + j / 32.0)
            g.create_dataset("data", data=data, chunks=(5, 8, 4, 2),
                             compression="gzip", compression_opts=6, fletcher32=True)
            grid = g.create_group("grid")
            grid.create_dataset("x", data=exact_f32(np.arange(8) / 8.0))
            grid.create_dataset("y", data=exact_f32(np.arange(4) / 4.0))
            grid.create_dataset("t", data=exact_f32(np.arange(5) / 8.0))


def scalar_f64(path):
    values = np.array([[0.1 * (5 * r + c) for c in range(5)] for r in range(3)],
                      dtype=np.float64)
    ints = np.array([-2, 0, 7, 1 << 40], dtype=np.int64)
    with h5py.File(path, "w") as f:
        f.create_dataset("values", data=values)  # contiguous, no filters
        f.create_dataset("ints", data=ints)
        f.attrs["label"] = "scalar test"  # str -> variable-length UTF-8
        f.attrs["vec"] = np.array([1.5, -2.0, 3.25], dtype=np.float64)


FIXTURES = [
    ("pdebench_1d.h5", pdebench_1d),
    ("pdebench_2d_cfd.h5", pdebench_2d_cfd),
    ("pdebench_grouped.h5", pdebench_grouped),
    ("scalar_f64.h5", scalar_f64),
]


def main():
    print("h5py %s, HDF5 %s, numpy %s" % (h5py.__version__, h5py.version.hdf5_version,
                                          np.__version__))
    sys.path.insert(0, HERE)
    sys.dont_write_bytecode = True  # no __pycache__ next to the fixtures
    from check_with_h5py import describe_file  # same directory

    total = 0
    for name, make in FIXTURES:
        path = os.path.join(HERE, name)
        make(path)
        size = os.path.getsize(path)
        total += size
        print()
        print("== %s (%d bytes)" % (name, size))
        describe_file(path)
    print()
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
