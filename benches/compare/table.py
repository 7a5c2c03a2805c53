#!/usr/bin/env python3
"""Turn benchmark JSON lines (physflow + peers) into Markdown tables.

Reads JSON lines from the files given on the command line, or from stdin when
none are given.  `--bench b5` (the default) labels the tables "B5" and prints
the B5 ratios; `--bench sde` does the same for the neural-SDE benchmark
(run_sde.sh), whose table also has a "loss" column.  `--bench stiff` (run_stiff.sh,
stiff.py) prints its own tables: every row with steps, nfe and the error against
the "reference" rows, then one line per problem with physflow BDF, raw diffsol
BDF, scipy BDF and diffrax Kvaerno5 times and the target ratios (STIFF_* below).
`--bench h5` (run_h5.sh, h5.py) prints the HDF5 read rows (ms, min ms, MB/s,
checksum) and one line per case with the ratio h5py ms / physflow ms (target
>= 1: physflow at least as fast; H5_CASES below) and whether the two sides'
checksums agree.  Lines that are not JSON objects with "side", "name" and "ms"
are ignored (so cargo / log noise can be piped in).  Standard library only.

Input schema, one object per line:
  {"side": "physflow"|"torchdiffeq"|"diffrax"|"torch"|..., "name": str,
   "ms": float (median ms of one step), "nfe": int|null, "repeats": int,
   optional "nfe_fwd": int, "nfe_bwd": int (evaluations in the forward solve /
   in the backward pass), "min_ms": float; other keys are ignored}

  python table.py physflow.jsonl peers.jsonl
  cat *.jsonl | python table.py
  python table.py --bench sde physflow.jsonl peers.jsonl
  python table.py --bench stiff physflow.jsonl peers.jsonl
  python table.py --bench h5 physflow.jsonl peers.jsonl

Stiff rows may have "ms": null (a solve skipped because it exceeded its time
budget; "ms_lower_bound" then bounds it from below and the ratios use the
bound when it settles the target), "steps", "y_final" (robertson, vdp1000) or
"u_mean" / "v_mean" (Brusselator), "err_vs_ref", "skipped".

HDF5 rows ("side": "physflow"|"h5py") have "ms" (median ms of one whole case),
"min_ms", "repeats", "mb_per_s" (decompressed MB/s, 1e6 bytes per MB) and
optionally "checksum" (float64 sum of every value read), "bytes", "samples".
"""

import json
import sys

# ---------------------------------------------------------------------------
# Ratios the project cares about.  Each entry:
#   (label, numerator, denominator(s), comparison, target)
# numerator / denominator are (side, name) keys.  A list of denominators is
# tried in order and the first one present is used (torchdiffeq has no tsit5,
# so its dopri5 rows stand in; the table says which row was used).
# A ratio is printed only when both rows are present, otherwise "n/a".
# ---------------------------------------------------------------------------
RATIOS = [
    ("physflow direct tsit5 / torchdiffeq odeint",
     [("physflow", "direct tsit5")],
     [("torchdiffeq", "odeint tsit5"), ("torchdiffeq", "odeint dopri5")],
     "<=", 0.3),
    ("physflow direct tsit5 / diffrax tsit5 recursive checkpoint",
     [("physflow", "direct tsit5")],
     [("diffrax", "tsit5 recursive checkpoint")],
     "<=", 0.4),
    ("physflow adjoint tsit5 / torchdiffeq odeint_adjoint",
     [("physflow", "adjoint tsit5")],
     [("torchdiffeq", "odeint_adjoint tsit5"), ("torchdiffeq", "odeint_adjoint dopri5")],
     "<=", 0.15),
    ("physflow adjoint tsit5 / diffrax tsit5 backsolve",
     [("physflow", "adjoint tsit5")],
     [("diffrax", "tsit5 backsolve")],
     "<=", 0.6),
    ("torch eager mlp forward x20 / physflow fused mlp forward x20",
     [("torch", "eager mlp forward x20")],
     [("physflow", "fused mlp forward x20")],
     ">=", 3.0),
]

# Like-for-like ratios shown for information (no target).
INFO_RATIOS = [
    ("physflow direct dopri5 / torchdiffeq odeint dopri5",
     [("physflow", "direct dopri5")], [("torchdiffeq", "odeint dopri5")]),
    ("physflow adjoint dopri5 / torchdiffeq odeint_adjoint dopri5",
     [("physflow", "adjoint dopri5")], [("torchdiffeq", "odeint_adjoint dopri5")]),
    ("physflow direct dopri5 / diffrax dopri5 recursive checkpoint",
     [("physflow", "direct dopri5")], [("diffrax", "dopri5 recursive checkpoint")]),
    ("physflow checkpointed tsit5 / diffrax tsit5 recursive checkpoint",
     [("physflow", "checkpointed tsit5")], [("diffrax", "tsit5 recursive checkpoint")]),
    ("physflow adjoint dopri5 / diffrax dopri5 backsolve",
     [("physflow", "adjoint dopri5")], [("diffrax", "dopri5 backsolve")]),
    ("physflow direct tsit5 (burn path) / physflow direct tsit5",
     [("physflow", "direct tsit5 (burn path)")], [("physflow", "direct tsit5")]),
    ("physflow burn mlp forward x20 / physflow fused mlp forward x20",
     [("physflow", "burn mlp forward x20")], [("physflow", "fused mlp forward x20")]),
]

# Neural-SDE benchmark (run_sde.sh).  physflow row names are those of
# examples/bench_sde.rs (benches/common/sde.rs, configurations()); targets as
# in docs/benchmarks.md.  physflow's plain rows use a grid Brownian path, its
# "(tree)" rows a virtual Brownian tree with tol 1e-3 like diffrax.  diffrax
# 0.7.2 has no ReversibleAdjoint: that ratio falls back to ReversibleHeun with
# RecursiveCheckpointAdjoint and says so.
SDE_RATIOS = [
    ("physflow euler direct / torchsde euler backprop",
     [("physflow", "euler direct")], [("torchsde", "euler backprop")], "<=", 0.3),
    ("physflow euler-heun stochastic adjoint / torchsde euler adjoint (default sdeint_adjoint)",
     [("physflow", "euler-heun stochastic adjoint")], [("torchsde", "euler adjoint")], "<=", 0.1),
    ("physflow reversible heun adjoint / torchsde reversible heun adjoint",
     [("physflow", "reversible heun adjoint")], [("torchsde", "reversible heun adjoint")], "<=", 0.1),
    ("physflow euler direct / diffrax euler recursive checkpoint",
     [("physflow", "euler direct")], [("diffrax", "euler recursive checkpoint")], "<=", 0.2),
    ("physflow euler-heun direct / diffrax midpoint recursive checkpoint",
     [("physflow", "euler-heun direct")], [("diffrax", "midpoint recursive checkpoint")], "<=", 0.2),
    ("physflow euler-heun stochastic adjoint / diffrax midpoint backsolve",
     [("physflow", "euler-heun stochastic adjoint")], [("diffrax", "midpoint backsolve")], "<=", 0.2),
    ("physflow reversible heun adjoint / diffrax reversible heun reversible adjoint",
     [("physflow", "reversible heun adjoint")],
     [("diffrax", "reversible heun reversible adjoint"),
      ("diffrax", "reversible heun recursive checkpoint")], "<=", 0.2),
]
SDE_INFO_RATIOS = [
    ("physflow euler direct (tree) / diffrax euler recursive checkpoint",
     [("physflow", "euler direct (tree)")], [("diffrax", "euler recursive checkpoint")]),
    ("physflow reversible heun adjoint (tree) / diffrax reversible heun reversible adjoint",
     [("physflow", "reversible heun adjoint (tree)")],
     [("diffrax", "reversible heun reversible adjoint"),
      ("diffrax", "reversible heun recursive checkpoint")]),
    ("physflow euler-heun direct / torchsde midpoint backprop (stratonovich)",
     [("physflow", "euler-heun direct")], [("torchsde", "midpoint backprop (stratonovich)")]),
    ("physflow euler-heun stochastic adjoint / torchsde midpoint adjoint (stratonovich)",
     [("physflow", "euler-heun stochastic adjoint")], [("torchsde", "midpoint adjoint (stratonovich)")]),
]

# --bench NAME -> (title, target ratios, info ratios, extra row columns)
BENCHES = {
    "b5": ("B5", RATIOS, INFO_RATIOS, []),
    "sde": ("SDE", SDE_RATIOS, SDE_INFO_RATIOS, ["loss"]),
}

SIDE_ORDER = ["physflow", "torchdiffeq", "torchsde", "diffrax", "torch", "jax"]

# Stiff benchmarks B2-B4 (run_stiff.sh): problems in table order, the four
# columns (side, label), and the target ratios
# (label, numerator side, denominator side, comparison, target).
STIFF_PROBLEMS = ["robertson", "vdp1000", "bruss2d-32", "bruss2d-64"]
STIFF_SIDES = [("physflow", "physflow BDF"), ("diffsol", "diffsol BDF"),
               ("scipy", "scipy BDF"), ("diffrax", "diffrax Kvaerno5")]
STIFF_RATIOS = [
    ("scipy / physflow", "scipy", "physflow", ">=", 50.0),
    ("diffrax / physflow", "diffrax", "physflow", ">=", 20.0),
    ("physflow / diffsol", "physflow", "diffsol", "<=", 1.2),
]
STIFF_SIDE_ORDER = ["physflow", "diffsol", "scipy", "diffrax", "reference"]

# HDF5 read benchmark (run_h5.sh): cases in table order (physflow's
# examples/bench_h5.rs and h5.py use the same names) and the target for
# h5py ms / physflow ms.
H5_CASES = ["full read", "random access 500", "shards epoch b32"]
H5_SIDES = ["physflow", "h5py"]
H5_TARGET = 1.0


def read_rows(streams):
    rows = {}
    order = []
    for stream in streams:
        for line in stream:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if not isinstance(obj, dict) or not {"side", "name", "ms"} <= obj.keys():
                continue
            key = (str(obj["side"]), str(obj["name"]))
            if key not in rows:
                order.append(key)
            rows[key] = obj  # last one wins
    return rows, order


def fmt_ms(v):
    if v is None:
        return "n/a"
    v = float(v)
    if v >= 100:
        return "%.1f" % v
    if v >= 1:
        return "%.2f" % v
    return "%.4f" % v


def first_present(rows, keys):
    for k in keys:
        if k in rows and rows[k].get("ms") is not None:
            return k
    return None


def main(argv):
    args = argv[1:]
    bench = "b5"
    if args and args[0].startswith("--bench"):
        if "=" in args[0]:
            bench, args = args[0].split("=", 1)[1], args[1:]
        elif len(args) >= 2:
            bench, args = args[1], args[2:]
        else:
            sys.exit("table.py: --bench needs a value (%s)" % ", ".join(BENCHES))
    if bench not in BENCHES and bench not in ("stiff", "h5"):
        sys.exit("table.py: unknown --bench %r (known: %s, stiff, h5)" % (bench, ", ".join(BENCHES)))
    if args:
        streams = [open(p) for p in args]
    else:
        streams = [sys.stdin]
    rows, order = read_rows(streams)
    if bench == "stiff":
        print(stiff_tables(rows, order))
        return
    if bench == "h5":
        print(h5_tables(rows, order))
        return
    title, ratios, info_ratios, extra_cols = BENCHES[bench]

    def sort_key(k):
        side = k[0]
        return (SIDE_ORDER.index(side) if side in SIDE_ORDER else len(SIDE_ORDER), order.index(k))

    out = []
    out.append("### %s rows (median ms per step)" % title)
    out.append("")
    out.append("| side | name | ms (median) | min ms | nfe | nfe fwd | nfe bwd | repeats |"
               + "".join(" %s |" % c for c in extra_cols))
    out.append("|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(extra_cols))

    def opt(r, k):
        v = r.get(k)
        return "n/a" if v is None else v

    for key in sorted(rows, key=sort_key):
        r = rows[key]
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            key[0], key[1], fmt_ms(r.get("ms")), fmt_ms(r.get("min_ms")),
            opt(r, "nfe"), opt(r, "nfe_fwd"),
            opt(r, "nfe_bwd"), r.get("repeats", ""))
            + "".join(" %s |" % opt(r, c) for c in extra_cols))
    if not rows:
        out.append("| n/a | (no rows read) | n/a | n/a | n/a | n/a | n/a | |" + " |" * len(extra_cols))

    out.append("")
    out.append("### %s ratios" % title)
    out.append("")
    out.append("| ratio | rows used | value | target | met |")
    out.append("|---|---|---:|---:|:---:|")
    for label, nums, dens, cmp, target in ratios:
        out.append(ratio_line(rows, label, nums, dens, cmp, target))
    for label, nums, dens in info_ratios:
        out.append(ratio_line(rows, label, nums, dens, None, None))

    print("\n".join(out))


def ratio_line(rows, label, nums, dens, cmp, target):
    nk = first_present(rows, nums)
    dk = first_present(rows, dens)
    tgt = "%s %g" % ("≤" if cmp == "<=" else "≥", target) if cmp else "(info)"
    if nk is None or dk is None or float(rows[dk]["ms"]) == 0.0:
        missing = [("%s %s" % k) for k in ([nums[0]] if nk is None else []) + ([dens[0]] if dk is None else [])]
        return "| %s | missing: %s | n/a | %s | n/a |" % (label, ", ".join(missing) or "zero denominator", tgt)
    value = float(rows[nk]["ms"]) / float(rows[dk]["ms"])
    used = "%s %s / %s %s" % (nk[0], nk[1], dk[0], dk[1])
    if dk != dens[0]:
        used += " (stand-in for %s %s)" % dens[0]
    if cmp == "<=":
        met = "yes" if value <= target else "no"
    elif cmp == ">=":
        met = "yes" if value >= target else "no"
    else:
        met = "–"
    return "| %s | %s | %.3f | %s | %s |" % (label, used, value, tgt, met)


# --------------------------------------------------------------------------- stiff
def _num(v):
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _sci(v):
    return "n/a" if v is None else "%.1e" % v


def stiff_ms(r):
    """(value in ms, is_lower_bound) or (None, False)."""
    if r is None:
        return None, False
    ms = _num(r.get("ms"))
    if ms is not None:
        return ms, False
    lb = _num(r.get("ms_lower_bound"))
    if lb is not None:
        return lb, True
    return None, False


def stiff_err(r, ref):
    """Error text of a row against the reference row of its problem: max |dy|
    over y_final (robertson, vdp1000), max |d mean| over u_mean / v_mean (the
    Brusselator; rows that computed it also show their full-state error), or
    the row's own err_vs_ref when there is no usable reference row."""
    own = _num(r.get("err_vs_ref"))
    if ref is not None:
        y, yr = r.get("y_final"), ref.get("y_final")
        if isinstance(y, list) and isinstance(yr, list) and len(y) == len(yr) and y:
            try:
                return _sci(max(abs(float(a) - float(b)) for a, b in zip(y, yr)))
            except (TypeError, ValueError):
                pass
        means = [(_num(r.get(k)), _num(ref.get(k))) for k in ("u_mean", "v_mean")]
        if all(a is not None and b is not None for a, b in means):
            text = "Δmean " + _sci(max(abs(a - b) for a, b in means))
            if own is not None:
                text += "; state " + _sci(own)
            return text
    return _sci(own)


def stiff_ratio(rows, name, label, num_side, den_side, cmp, target):
    num, num_lb = stiff_ms(rows.get((num_side, name)))
    den, den_lb = stiff_ms(rows.get((den_side, name)))
    if num is None or den is None or den == 0.0 or (num_lb and den_lb):
        return "n/a"
    value = num / den
    text = "%.1f" % value if value >= 10 else "%.2f" % value
    if num_lb:      # numerator only bounded below: ratio >= value
        text = "≥ " + text
        settled = cmp == ">=" and value >= target
    elif den_lb:    # denominator only bounded below: ratio <= value
        text = "≤ " + text
        settled = cmp == "<=" and value <= target
    else:
        settled = None
    if settled is None:
        ok = value >= target if cmp == ">=" else value <= target
        return "%s (%s)" % (text, "met" if ok else "not met")
    return "%s (%s)" % (text, "met" if settled else "n/a: bound only")


def stiff_tables(rows, order):
    names = list(STIFF_PROBLEMS)
    for side, name in order:
        if side in dict(STIFF_SIDES) and name not in names and " (" not in name:
            names.append(name)

    def sort_key(k):
        side, name = k
        base = name.split(" (")[0]
        return (names.index(base) if base in names else len(names),
                STIFF_SIDE_ORDER.index(side) if side in STIFF_SIDE_ORDER else len(STIFF_SIDE_ORDER),
                order.index(k))

    out = ["### Stiff (B2–B4) rows (median ms per solve, rtol 1e-6, atol 1e-8)", "",
           "| side | name | ms (median) | min ms | repeats | steps | nfe | err vs ref | note |",
           "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for key in sorted(rows, key=sort_key):
        r = rows[key]
        side, name = key
        ref = rows.get(("reference", name.split(" (")[0]))
        note = ""
        if side == "reference":
            ms_text = "n/a"
            err = "—"
            solve_s = _num(r.get("solve_s"))
            note = "%s%s" % (r.get("method", "reference"),
                             "" if solve_s is None else ", %.1f s" % solve_s)
        else:
            ms, lb = stiff_ms(r)
            ms_text = ("> %s" % fmt_ms(ms)) if lb else fmt_ms(ms)
            err = stiff_err(r, ref)
        if r.get("skipped"):
            note = "skipped: %s" % r["skipped"]
        steps = r.get("steps")
        steps_text = "n/a" if steps is None else str(steps)
        if r.get("num_rejected_steps") is not None:
            steps_text += " (+%s rejected)" % r["num_rejected_steps"]
        if side == "diffrax" and r.get("compile_s") is not None:
            note = (note + "; " if note else "") + "compile %.1f s" % float(r["compile_s"])
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            side, name, ms_text, fmt_ms(_num(r.get("min_ms"))), r.get("repeats", ""),
            steps_text, "n/a" if r.get("nfe") is None else r["nfe"], err, note))
    if not rows:
        out.append("| n/a | (no rows read) | n/a | n/a | | n/a | n/a | n/a | |")

    out += ["", "### Stiff (B2–B4) per problem (ms) and target ratios", "",
            "| problem | " + " | ".join(lbl for _, lbl in STIFF_SIDES) + " | "
            + " | ".join("%s (%s %g)" % (lbl, "≥" if c == ">=" else "≤", t)
                         for lbl, _, _, c, t in STIFF_RATIOS) + " |",
            "|---|" + "---:|" * len(STIFF_SIDES) + ":---:|" * len(STIFF_RATIOS)]
    for name in names:
        cells = []
        for side, _ in STIFF_SIDES:
            r = rows.get((side, name))
            ms, lb = stiff_ms(r)
            if ms is None:
                cells.append("skipped" if r is not None and r.get("skipped") else "n/a")
            else:
                cells.append(("> %s" % fmt_ms(ms)) if lb else fmt_ms(ms))
        for lbl, ns, ds, c, t in STIFF_RATIOS:
            cells.append(stiff_ratio(rows, name, lbl, ns, ds, c, t))
        out.append("| %s | %s |" % (name, " | ".join(cells)))
    out += ["",
            "A ratio marked ≥ / ≤ uses a skipped solve's time budget as a bound on its time "
            "(`ms_lower_bound`); 'n/a: bound only' means the bound does not settle the "
            "target. 'err vs ref': max |y(t1) − y_ref(t1)| against the `reference` row "
            "(scipy Radau, rtol 1e-10, atol 1e-12); for the Brusselator the error of the "
            "means of u and v (Δmean), plus the full-state error where the row computed it."]
    return "\n".join(out)


# --------------------------------------------------------------------------- h5
def h5_checksums_agree(a, b):
    """'agree' / 'DIFFER' / 'n/a' for two rows' float64 checksums (the sides
    may sum in different orders, hence the small tolerance)."""
    ca, cb = _num(a.get("checksum")), _num(b.get("checksum"))
    if ca is None or cb is None:
        return "n/a"
    return "agree" if abs(ca - cb) <= 1e-5 + 1e-9 * max(abs(ca), abs(cb)) else "DIFFER"


def h5_tables(rows, order):
    names = list(H5_CASES)
    for _, name in order:
        if name not in names:
            names.append(name)

    def sort_key(k):
        side, name = k
        return (names.index(name),
                H5_SIDES.index(side) if side in H5_SIDES else len(H5_SIDES),
                order.index(k))

    def mbs(r):
        v = _num(r.get("mb_per_s"))
        return "n/a" if v is None else "%.1f" % v

    out = ["### HDF5 read rows (median ms per case, single thread)", "",
           "| side | name | ms (median) | min ms | MB/s | repeats | checksum |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for key in sorted(rows, key=sort_key):
        r = rows[key]
        cs = _num(r.get("checksum"))
        out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            key[0], key[1], fmt_ms(_num(r.get("ms"))), fmt_ms(_num(r.get("min_ms"))),
            mbs(r), r.get("repeats", ""), "n/a" if cs is None else "%.9g" % cs))
    if not rows:
        out.append("| n/a | (no rows read) | n/a | n/a | n/a | | n/a |")

    out += ["", "### HDF5 read ratios (h5py ms / physflow ms; ≥ 1 means physflow is at "
                "least as fast)", "",
            "| case | physflow ms | h5py ms | h5py / physflow | target | met | checksums |",
            "|---|---:|---:|---:|---:|:---:|:---:|"]
    for name in names:
        p, h = rows.get(("physflow", name)), rows.get(("h5py", name))
        pm = _num(p.get("ms")) if p else None
        hm = _num(h.get("ms")) if h else None
        if pm is None or hm is None or pm == 0.0:
            value, met = "n/a", "n/a"
        else:
            ratio = hm / pm
            value, met = "%.2f" % ratio, "yes" if ratio >= H5_TARGET else "no"
        agree = h5_checksums_agree(p, h) if p and h else "n/a"
        out.append("| %s | %s | %s | %s | ≥ %g | %s | %s |" % (
            name, fmt_ms(pm), fmt_ms(hm), value, H5_TARGET, met, agree))
    return "\n".join(out)


if __name__ == "__main__":
    main(sys.argv)
