#!/usr/bin/env python3
"""Check HDF5 files (e.g. written by physflow) with h5py.

    ~/.cache/physflow-compare/venv/bin/python data/h5/check_with_h5py.py [--strict] FILE_OR_DIR...

For every file: prints its tree (groups, datasets with shape, dtype, layout,
chunks, filter pipeline, chunk index type; attributes with their HDF5 type),
reads every dataset fully, and loads the file the way PDEBench-style training
code does:

- single-file layout (a root dataset `tensor`, [N, T, X] or [N, T, X, Y]):
  `np.array(f["tensor"], dtype=np.float32)` moved to [N, X, T] / [N, X, Y, T],
  `x-coordinate` (and `y-coordinate`) checked against the spatial axes and
  `t-coordinate` against T (PDEBench stores T or T + 1 time points);
- CFD layout (root datasets `density`, `Vx`, ... of shape [N, T, X(, Y)]):
  each field as float32 moved to [N, X(, Y), T], stacked on a channel axis;
- grouped layout (groups holding `data` and `grid/x`): groups in
  `sorted(f.keys())`, `np.array(g["data"], dtype="f")` of shape
  [T, X(, Y), C] checked against `g["grid"]["x"]` (and `y`) and
  `g["grid"]["t"]`; all groups must agree in shape.

A directory holding `manifest.json` (physflow shard layout) is checked as a
shard set: every shard file listed exists, its `samples` equals the first axis
of the manifest's `dataset` in that file (and `sample_shape` the rest), the
`first_sample` offsets are consecutive, `shard_count` matches and the sum of
`samples` equals `total_samples`; every shard is then checked as a file.  Any
other directory: every *.h5 / *.hdf5 / *.hdf file in it (not recursive).

A missing coordinate array (`x-coordinate` etc.) is only a warning, since
physflow's shards hold a bare `tensor`; `--strict` makes it a failure.  A
coordinate array of the wrong length is always a failure.
Exits 1 if anything failed (the failures are listed at the end), else 0.
Needs h5py and numpy only.
"""

import ctypes
import json
import os
import sys

import h5py
import numpy as np

H5_SUFFIXES = (".h5", ".hdf5", ".hdf")
CFD_FIELDS = ("density", "pressure", "Vx", "Vy", "Vz")
CHUNK_INDEX_NAMES = {0: "v1 B-tree", 1: "single chunk", 2: "implicit",
                     3: "fixed array", 4: "extensible array", 5: "v2 B-tree"}
LAYOUT_NAMES = {0: "compact", 1: "contiguous", 2: "chunked", 3: "virtual"}
CSET_NAMES = {0: "ASCII", 1: "UTF-8"}
STRPAD_NAMES = {0: "nullterm", 1: "nullpad", 2: "spacepad"}

_libhdf5 = None


def _hdf5_lib():
    """The libhdf5 h5py is linked against (for H5Dget_chunk_index_type, which
    h5py does not wrap); None when it cannot be found."""
    global _libhdf5
    if _libhdf5 is None:
        _libhdf5 = False
        try:
            with open("/proc/self/maps") as maps:
                paths = [l.split()[-1] for l in maps if "libhdf5" in l and "_hl" not in l]
            if paths:
                lib = ctypes.CDLL(paths[0])
                if hasattr(lib, "H5Dget_chunk_index_type"):
                    _libhdf5 = lib
        except OSError:
            pass
    return _libhdf5 or None


def chunk_index_type(dset):
    lib = _hdf5_lib()
    if lib is None:
        return "?"
    out = ctypes.c_int(-1)
    if lib.H5Dget_chunk_index_type(ctypes.c_int64(dset.id.id), ctypes.byref(out)) < 0:
        return "?"
    return CHUNK_INDEX_NAMES.get(out.value, str(out.value))


def type_text(tid, dtype):
    """Describe an HDF5 datatype: strings in detail, the rest by numpy dtype."""
    if isinstance(tid, h5py.h5t.TypeStringID):
        kind = "vlen" if tid.is_variable_str() else "fixed %d-byte" % tid.get_size()
        return "%s %s string (%s)" % (kind, CSET_NAMES.get(tid.get_cset(), "?"),
                                      STRPAD_NAMES.get(tid.get_strpad(), "?"))
    return dtype.str if dtype.names is None else str(dtype)


def attr_lines(obj, indent):
    lines = []
    for name in sorted(obj.attrs.keys()):
        aid = obj.attrs.get_id(name)
        shape = aid.shape
        value = obj.attrs[name]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, (np.ndarray, np.generic)):
            value = value.tolist()
        lines.append("%s@%s: %s, %s = %r" % (
            indent, name, type_text(aid.get_type(), aid.dtype),
            "scalar" if shape == () else "shape %s" % (list(shape),), value))
    return lines


def filters_text(dcpl):
    out = []
    for k in range(dcpl.get_nfilters()):
        code, flags, opts, name = dcpl.get_filter(k)
        name = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
        out.append("%s(%d%s)%s" % (name, code, ", optional" if flags & 1 else "",
                                   list(opts) if opts else ""))
    return " -> ".join(out) if out else "none"


def chunk_summary(dset):
    """Number of allocated chunks, their stored bytes, and how many have a
    non-zero filter mask (a filter skipped for that chunk: optional filters
    such as deflate / lzf are skipped when they do not shrink the chunk)."""
    infos = []
    try:
        dset.id.chunk_iter(infos.append)
    except (AttributeError, TypeError, RuntimeError):
        try:
            infos = [dset.id.get_chunk_info(i) for i in range(dset.id.get_num_chunks())]
        except Exception:  # noqa: BLE001 - information only
            return ""
    masked = sum(1 for i in infos if i.filter_mask != 0)
    return "; %d chunks, %d bytes stored, %d with a filter skipped" % (
        len(infos), sum(i.size for i in infos), masked)


def describe_file(path):
    """Print the file-level facts and the object tree of PATH."""
    with h5py.File(path, "r") as f:
        fcpl = f.id.get_create_plist()
        sb, fl, stab, shhdr = fcpl.get_version()
        print("file %s: superblock v%d (freelist v%d, symbol table v%d, shared header v%d), "
              "libver bounds %s, userblock %d" % (os.path.basename(path), sb, fl, stab, shhdr,
                                                  f.libver, fcpl.get_userblock()))
        for line in attr_lines(f, "  "):
            print(line)

        def visit(name, obj):
            depth = name.count("/") + 1
            pad = "  " * depth
            if isinstance(obj, h5py.Group):
                print("%s%s/ (group)" % (pad, name))
            else:
                dcpl = obj.id.get_create_plist()
                layout = LAYOUT_NAMES.get(dcpl.get_layout(), "?")
                chunk = ""
                if obj.chunks is not None:
                    chunk = ", chunks %s, index %s" % (list(obj.chunks), chunk_index_type(obj))
                    filters = filters_text(dcpl) + chunk_summary(obj)
                else:
                    filters = filters_text(dcpl)
                print("%s%s: shape %s, %s, %s%s, filters %s" % (
                    pad, name, list(obj.shape), type_text(obj.id.get_type(), obj.dtype),
                    layout, chunk, filters))
            for line in attr_lines(obj, pad + "  "):
                print(line)

        f.visititems(visit)


# --------------------------------------------------------------------- checks
STRICT = False
WARNINGS = []


def warn(failures, msg):
    """A missing coordinate array: PDEBench's own loaders would fail on the
    file, but physflow's shards (a bare `tensor`) legitimately have none.  A
    failure under --strict, else a warning."""
    if STRICT:
        failures.append(msg)
    else:
        WARNINGS.append(msg)
        print("  warning: " + msg)


def read_all(f, failures, label):
    """Read every dataset fully; print a one-line summary of each."""
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    for name in names:
        try:
            a = f[name][()]
        except Exception as e:  # noqa: BLE001 - report any read failure
            failures.append("%s: reading %s failed: %s" % (label, name, e))
            continue
        a = np.asarray(a)
        if a.dtype.kind in "fiu" and a.size:
            extra = ", min %g, max %g" % (a.min(), a.max())
            if a.dtype.kind == "f":
                bad = int(np.count_nonzero(~np.isfinite(a)))
                if bad:
                    extra += ", %d non-finite" % bad
        else:
            extra = ""
        print("  read %s: %d values%s" % (name, a.size, extra))


def move_time_last(a):
    """[N, T, X(, Y, Z)] -> [N, X(, Y, Z), T]."""
    return np.moveaxis(a, 1, -1)


def check_coord(f, name, n_expected, failures, label, allow=()):
    if name not in f:
        return None
    c = np.array(f[name], dtype=np.float32)
    ok = c.ndim == 1 and (c.shape[0] == n_expected or c.shape[0] in allow)
    if not ok:
        failures.append("%s: %s has shape %s, expected [%d]%s" % (
            label, name, list(c.shape), n_expected,
            "".join(" or [%d]" % a for a in allow)))
    return c


def load_single_file(f, failures, label):
    """PDEBench single-file layouts; returns True when one was recognised."""
    found = False
    if "tensor" in f and isinstance(f["tensor"], h5py.Dataset):
        found = True
        raw = np.array(f["tensor"], dtype=np.float32)
        if raw.ndim not in (3, 4):
            failures.append("%s: tensor has %d axes, expected 3 ([N,T,X]) or 4 ([N,T,X,Y])"
                            % (label, raw.ndim))
        else:
            data = move_time_last(raw)
            n, t = raw.shape[0], raw.shape[1]
            if "x-coordinate" not in f:
                warn(failures, "%s: tensor without x-coordinate" % label)
            check_coord(f, "x-coordinate", raw.shape[2], failures, label)
            if raw.ndim == 4:
                if "y-coordinate" not in f:
                    warn(failures, "%s: 2D tensor without y-coordinate" % label)
                check_coord(f, "y-coordinate", raw.shape[3], failures, label)
            check_coord(f, "t-coordinate", t + 1, failures, label, allow=(t,))
            print("  PDEBench single-file: tensor %s -> %s (N=%d, T=%d), float32"
                  % (list(raw.shape), list(data.shape), n, t))
    fields = [k for k in CFD_FIELDS if k in f and isinstance(f[k], h5py.Dataset)]
    if fields:
        found = True
        arrays = [np.array(f[k], dtype=np.float32) for k in fields]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            failures.append("%s: CFD fields differ in shape: %s"
                            % (label, {k: list(a.shape) for k, a in zip(fields, arrays)}))
        elif arrays[0].ndim < 3:
            failures.append("%s: CFD fields have %d axes, expected [N, T, X...]"
                            % (label, arrays[0].ndim))
        else:
            raw = arrays[0]
            data = np.stack([move_time_last(a) for a in arrays], axis=-1)
            for axis, cname in zip(range(2, raw.ndim), ("x-coordinate", "y-coordinate",
                                                       "z-coordinate")):
                if cname not in f:
                    warn(failures, "%s: CFD layout without %s" % (label, cname))
                check_coord(f, cname, raw.shape[axis], failures, label)
            check_coord(f, "t-coordinate", raw.shape[1] + 1, failures, label,
                        allow=(raw.shape[1],))
            print("  PDEBench CFD: fields %s, each %s -> stacked %s, float32"
                  % (fields, list(raw.shape), list(data.shape)))
    return found


def load_grouped(f, failures, label):
    """PDEBench grouped per-seed layout; returns True when recognised."""
    seeds = []
    for key in sorted(f.keys()):
        g = f[key]
        if (isinstance(g, h5py.Group) and "data" in g and "grid" in g
                and isinstance(g["grid"], h5py.Group) and "x" in g["grid"]):
            seeds.append(key)
    if not seeds:
        return False
    shape = None
    for key in seeds:
        g = f[key]
        data = np.array(g["data"], dtype="f")
        x = np.array(g["grid"]["x"], dtype="f")
        if "t" not in g["grid"]:
            failures.append("%s: %s/grid has no t" % (label, key))
            continue
        t = np.array(g["grid"]["t"], dtype="f")
        if data.ndim not in (3, 4, 5):
            failures.append("%s: %s/data has %d axes, expected [T, X(, Y, Z), C]"
                            % (label, key, data.ndim))
            continue
        if t.shape != (data.shape[0],):
            failures.append("%s: %s/grid/t has shape %s, data has T=%d"
                            % (label, key, list(t.shape), data.shape[0]))
        if x.shape != (data.shape[1],):
            failures.append("%s: %s/grid/x has shape %s, data has X=%d"
                            % (label, key, list(x.shape), data.shape[1]))
        if data.ndim >= 4:
            if "y" not in g["grid"]:
                failures.append("%s: %s/grid has no y for a 2D data set" % (label, key))
            else:
                y = np.array(g["grid"]["y"], dtype="f")
                if y.shape != (data.shape[2],):
                    failures.append("%s: %s/grid/y has shape %s, data has Y=%d"
                                    % (label, key, list(y.shape), data.shape[2]))
        if shape is None:
            shape = data.shape
        elif data.shape != shape:
            failures.append("%s: %s/data has shape %s, %s has %s"
                            % (label, key, list(data.shape), seeds[0], list(shape)))
    # training code then moves T behind the spatial axes: [X(, Y), T, C]
    if shape is not None:
        moved = list(shape[1:-1]) + [shape[0], shape[-1]]
        print("  PDEBench grouped: %d seed groups (%s .. %s), data %s -> %s, float32"
              % (len(seeds), seeds[0], seeds[-1], list(shape), moved))
    return True


def check_file(path, failures):
    label = path
    print("=" * 72)
    try:
        describe_file(path)
        with h5py.File(path, "r") as f:
            read_all(f, failures, label)
            single = load_single_file(f, failures, label)
            grouped = load_grouped(f, failures, label)
            if not (single or grouped):
                print("  (no PDEBench layout recognised; datasets read only)")
    except Exception as e:  # noqa: BLE001 - report anything h5py raises
        failures.append("%s: %s: %s" % (label, type(e).__name__, e))


def check_manifest_dir(directory, failures):
    mpath = os.path.join(directory, "manifest.json")
    label = mpath
    print("=" * 72)
    try:
        with open(mpath) as fh:
            m = json.load(fh)
    except (OSError, ValueError) as e:
        failures.append("%s: cannot read: %s" % (label, e))
        return
    if m.get("format") != "physflow-shards":
        failures.append("%s: format is %r, expected 'physflow-shards'" % (label, m.get("format")))
    dataset = m.get("dataset")
    shards = m.get("shards")
    if not isinstance(dataset, str) or not isinstance(shards, list):
        failures.append("%s: needs a string 'dataset' and a list 'shards'" % label)
        return
    sample_shape = m.get("sample_shape")
    print("manifest %s: dataset %r, %d shards, total_samples %s, sample_shape %s"
          % (mpath, dataset, len(shards), m.get("total_samples"), sample_shape))
    if m.get("shard_count") is not None and m["shard_count"] != len(shards):
        failures.append("%s: shard_count %s but %d shards listed"
                        % (label, m["shard_count"], len(shards)))
    total = 0
    files = []
    for k, sh in enumerate(shards):
        name = sh.get("file") if isinstance(sh, dict) else None
        if not isinstance(name, str):
            failures.append("%s: shard %d has no 'file'" % (label, k))
            continue
        fpath = os.path.join(directory, name)
        samples = sh.get("samples")
        if sh.get("index") is not None and sh["index"] != k:
            failures.append("%s: shard %d has index %s" % (label, k, sh["index"]))
        if sh.get("first_sample") is not None and sh["first_sample"] != total:
            failures.append("%s: shard %d (%s) has first_sample %s, expected %d"
                            % (label, k, name, sh["first_sample"], total))
        if not os.path.isfile(fpath):
            failures.append("%s: shard file %s is missing" % (label, name))
        else:
            files.append(fpath)
            try:
                with h5py.File(fpath, "r") as f:
                    if dataset not in f:
                        failures.append("%s: %s has no dataset %r" % (label, name, dataset))
                    else:
                        shape = f[dataset].shape
                        if not shape or shape[0] != samples:
                            failures.append("%s: %s: manifest says %s samples, %s has shape %s"
                                            % (label, name, samples, dataset, list(shape)))
                        if sample_shape is not None and list(shape[1:]) != list(sample_shape):
                            failures.append("%s: %s: sample shape %s, manifest says %s"
                                            % (label, name, list(shape[1:]), sample_shape))
                        print("  shard %d %s: %s %s, samples %s"
                              % (k, name, dataset, list(shape), samples))
            except Exception as e:  # noqa: BLE001
                failures.append("%s: opening %s: %s" % (label, name, e))
        if isinstance(samples, int):
            total += samples
        else:
            failures.append("%s: shard %d (%s) has samples %r" % (label, k, name, samples))
    if m.get("total_samples") != total:
        failures.append("%s: total_samples %s but the shards sum to %d"
                        % (label, m.get("total_samples"), total))
    for fpath in files:
        check_file(fpath, failures)


def main(argv):
    global STRICT
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    if "--strict" in argv:
        STRICT = True
        argv = [a for a in argv if a != "--strict"]
    print("h5py %s, HDF5 %s, numpy %s" % (h5py.__version__, h5py.version.hdf5_version,
                                          np.__version__))
    failures = []
    for arg in argv[1:]:
        if os.path.isdir(arg):
            if os.path.isfile(os.path.join(arg, "manifest.json")):
                check_manifest_dir(arg, failures)
            else:
                files = sorted(os.path.join(arg, n) for n in os.listdir(arg)
                               if n.endswith(H5_SUFFIXES))
                if not files:
                    failures.append("%s: no HDF5 files in directory" % arg)
                for path in files:
                    check_file(path, failures)
        elif os.path.isfile(arg):
            check_file(arg, failures)
        else:
            failures.append("%s: no such file or directory" % arg)
    print("=" * 72)
    if WARNINGS:
        print("%d warning(s) (failures under --strict):" % len(WARNINGS))
        for line in WARNINGS:
            print("  " + line)
    if failures:
        print("FAILED (%d):" % len(failures))
        for line in failures:
            print("  " + line)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
