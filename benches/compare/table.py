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
checksums agree.  `--bench fm` (run_fm.sh, fm.py) prints the flow-matching
tables: training throughput (samples/s, physflow / torchcfm, target >= 1.5),
sampling time (2048 samples, 100 Euler steps, physflow / torchcfm, target
<= 0.5), W2 to held-out moons by NFE (target: physflow <= torchcfm at equal
training steps and NFE) and the quality runs' training time (FM_* below).
Lines that are not JSON objects with "side", "name" and "ms" are ignored (so
cargo / log noise can be piped in; `--bench fm` only needs "side" and "name",
its W2 rows have no "ms").  Standard library only.

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
  python table.py --bench fm physflow.jsonl peers.jsonl
  python table.py --bench boltzmann results.jsonl

`--bench boltzmann` (run_boltzmann.sh, boltzmann.py, examples/bench_boltzmann.rs)
prints one table per system: for each impl (physflow, normflows, normflows-subclass)
ESS/N at a quarter and half of the training budget (interpolated in training time
between the evaluations around it), the final ESS/N and reverse-KL estimate
E[βu + log q] = KL(q‖p) − log Z (plus KL(q‖p) itself where the rows carry log Z:
boltzmann.py's dw2d rows), each as mean ± half range over seeds, training steps per
second and the number of incomplete (diverged / cut-off) runs; then the ratios
physflow / peer of mean ESS/N at equal training time and of steps per second, and the
difference of the final E[βu + log q] (BZ_*).

Stiff rows may have "ms": null (a solve skipped because it exceeded its time
budget; "ms_lower_bound" then bounds it from below and the ratios use the
bound when it settles the target), "steps", "y_final" (robertson, vdp1000) or
"u_mean" / "v_mean" (Brusselator), "err_vs_ref", "skipped".

HDF5 rows ("side": "physflow"|"h5py") have "ms" (median ms of one whole case),
"min_ms", "repeats", "mb_per_s" (decompressed MB/s, 1e6 bytes per MB) and
optionally "checksum" (float64 sum of every value read), "bytes", "samples".

Flow-matching rows ("side": "physflow"|"torchcfm", "act": "tanh"|"selu"):
"train_indep" / "train_ot" with "ms" (median ms per training step of batch
256) and "samples_per_s" (optional "data_ms", "coupling_ms": parts of "ms");
"sample_euler100" (and torchcfm's "sample_euler100_odeint") with "ms", "nfe",
"samples"; "w2_indep" / "w2_ot" with "steps", "nfe", "w2" and optionally
"train_seconds", "final_loss"; "w2_floor" with "w2"; physflow's
"fewstep_indep" with "sampler", "steps", "nfe", "ms", "w2".  Rows are keyed by
(side, name, act, steps, nfe); the last one wins.
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
STIFF_SIDES = [("physflow", "physflow BDF"), ("closure", "physflow closure BDF"),
               ("diffsol", "diffsol BDF"), ("scipy", "scipy BDF"),
               ("diffrax", "diffrax Kvaerno5")]
STIFF_RATIOS = [
    ("scipy / physflow", "scipy", "physflow", ">=", 50.0),
    ("diffrax / physflow", "diffrax", "physflow", ">=", 20.0),
    ("physflow / diffsol", "physflow", "diffsol", "<=", 1.2),
    ("closure / physflow", "closure", "physflow", "<=", 1.3),
]
STIFF_SIDE_ORDER = ["physflow", "closure", "diffsol", "scipy", "diffrax", "reference"]

# HDF5 read benchmark (run_h5.sh): cases in table order (physflow's
# examples/bench_h5.rs and h5.py use the same names) and the target for
# h5py ms / physflow ms.
H5_CASES = ["full read", "random access 500", "shards epoch b32"]
H5_SIDES = ["physflow", "h5py"]
H5_TARGET = 1.0

# Flow-matching benchmark (run_fm.sh): physflow's examples/bench_fm.rs and
# fm.py use the same row names.  Targets: training samples/s physflow /
# torchcfm >= 1.5; sampling ms physflow / torchcfm <= 0.5; W2 physflow <=
# torchcfm at equal training steps and NFE.  physflow rows are matched to the
# torchcfm row of the same "act"; where physflow has no row of that act (it
# has tanh only), its tanh row is used and the table says so.
FM_COUPLINGS = ["indep", "ot"]
FM_ACTS = ["tanh", "selu"]
FM_PHYSFLOW_FALLBACK_ACT = "tanh"
FM_BATCH = 256
FM_TRAIN_TARGET = 1.5      # physflow samples/s / torchcfm samples/s, >=
FM_SAMPLE_NAME = "sample_euler100"
FM_SAMPLE_TARGET = 0.5     # physflow ms / torchcfm ms, <=
FM_FEWSTEP_TARGET = 0.2    # physflow few-step ms / torchcfm 100-step Euler ms, <=


def json_objects(streams, required):
    """The JSON objects of `streams` (one per line) that have every key in
    `required`; other lines (cargo / log noise, malformed JSON) are skipped."""
    for stream in streams:
        for line in stream:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and set(required) <= obj.keys():
                yield obj


def read_rows(streams):
    rows = {}
    order = []
    for obj in json_objects(streams, ("side", "name", "ms")):
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
    if bench not in BENCHES and bench not in ("stiff", "h5", "fm", "boltzmann"):
        sys.exit("table.py: unknown --bench %r (known: %s, stiff, h5, fm, boltzmann)" % (bench, ", ".join(BENCHES)))
    if args:
        streams = [open(p) for p in args]
    else:
        streams = [sys.stdin]
    if bench == "fm":
        print(fm_tables(read_fm_rows(streams)))
        return
    if bench == "boltzmann":
        print(boltzmann_tables(list(json_objects(streams, ("bench", "impl", "system", "train_seconds", "ess_fraction")))))
        return
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


# --------------------------------------------------------------------------- fm
def read_fm_rows(streams):
    """{(side, name, act, steps, nfe): row} from JSON lines with "side" and
    "name" (the W2 rows have no "ms"); the last row of a key wins."""
    rows = {}
    for obj in json_objects(streams, ("side", "name")):
        w2 = str(obj["name"]).startswith(("w2_", "fewstep_"))
        key = (str(obj["side"]), str(obj["name"]), obj.get("act"),
               obj.get("steps") if w2 else None, obj.get("nfe") if w2 else None)
        rows[key] = obj
    return rows


def fm_get(rows, side, name, act, steps=None, nfe=None):
    return rows.get((side, name, act, steps, nfe))


def fm_physflow(rows, name, act, steps=None, nfe=None):
    """physflow's row for `act`, else its FM_PHYSFLOW_FALLBACK_ACT row:
    (row or None, act used)."""
    r = fm_get(rows, "physflow", name, act, steps, nfe)
    if r is not None or act == FM_PHYSFLOW_FALLBACK_ACT:
        return r, act
    return fm_get(rows, "physflow", name, FM_PHYSFLOW_FALLBACK_ACT, steps, nfe), FM_PHYSFLOW_FALLBACK_ACT


def fm_acts(rows, side):
    seen = {k[2] for k in rows if k[0] == side and k[2] is not None}
    return [a for a in FM_ACTS if a in seen] + sorted(a for a in seen if a not in FM_ACTS)


def fm_sps(r):
    """Training samples/s of a row: "samples_per_s", else batch * 1000 / ms."""
    if r is None:
        return None
    v = _num(r.get("samples_per_s"))
    if v is None:
        ms = _num(r.get("ms"))
        v = FM_BATCH * 1000.0 / ms if ms else None
    return v


def fm_w2(r):
    return "n/a" if r is None or _num(r.get("w2")) is None else "%.4f" % _num(r["w2"])


def fm_leq(a, b):
    """'yes' / 'no' / 'n/a' for W2 a <= W2 b."""
    va = None if a is None else _num(a.get("w2"))
    vb = None if b is None else _num(b.get("w2"))
    if va is None or vb is None:
        return "n/a"
    return "yes" if va <= vb else "no"


def fm_tables(rows):
    acts = fm_acts(rows, "torchcfm") or list(FM_ACTS)
    pf_acts = fm_acts(rows, "physflow") or [FM_PHYSFLOW_FALLBACK_ACT]
    out = []

    # Training throughput.
    out += ["### Flow matching: training throughput (batch %d, samples/s; higher is better)"
            % FM_BATCH, "",
            "| coupling | torchcfm act | physflow row | physflow ms/step | physflow samples/s "
            "| torchcfm ms/step | torchcfm samples/s | physflow / torchcfm | target | met "
            "| torchcfm data ms | torchcfm coupling ms |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|:---:|---:|---:|"]
    for coupling in FM_COUPLINGS:
        name = "train_" + coupling
        for act in acts:
            p, pact = fm_physflow(rows, name, act)
            t = fm_get(rows, "torchcfm", name, act)
            ps, ts = fm_sps(p), fm_sps(t)
            if ps is None or ts is None or ts == 0.0:
                value, met = "n/a", "n/a"
            else:
                ratio = ps / ts
                value, met = "%.2f" % ratio, "yes" if ratio >= FM_TRAIN_TARGET else "no"
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | ≥ %g | %s | %s | %s |" % (
                coupling, act, "physflow %s" % pact,
                fmt_ms(_num(p.get("ms")) if p else None), "n/a" if ps is None else "%.0f" % ps,
                fmt_ms(_num(t.get("ms")) if t else None), "n/a" if ts is None else "%.0f" % ts,
                value, FM_TRAIN_TARGET, met,
                fmt_ms(_num(t.get("data_ms")) if t else None),
                fmt_ms(_num(t.get("coupling_ms")) if t else None)))
    out += ["", "A step includes drawing the batch (torchcfm: sample_8gaussians + "
                "sample_moons, the 'data ms' part) and the coupling (the 'coupling ms' part: "
                "t, x_t, u_t, plus the exact OT plan for `ot`)."]

    # Sampling time.
    out += ["", "### Flow matching: sampling time (2048 samples, 100 Euler steps, ms; lower is better)",
            "",
            "| torchcfm act | physflow row | physflow ms | torchcfm ms (plain loop) "
            "| physflow / torchcfm | target | met | torchcfm odeint ms | physflow / odeint |",
            "|---|---|---:|---:|---:|---:|:---:|---:|---:|"]
    for act in acts:
        p, pact = fm_physflow(rows, FM_SAMPLE_NAME, act)
        t = fm_get(rows, "torchcfm", FM_SAMPLE_NAME, act)
        o = fm_get(rows, "torchcfm", FM_SAMPLE_NAME + "_odeint", act)
        pm = _num(p.get("ms")) if p else None
        tm = _num(t.get("ms")) if t else None
        om = _num(o.get("ms")) if o else None
        if pm is None or tm is None or tm == 0.0:
            value, met = "n/a", "n/a"
        else:
            ratio = pm / tm
            value, met = "%.3f" % ratio, "yes" if ratio <= FM_SAMPLE_TARGET else "no"
        info = "n/a" if pm is None or not om else "%.3f" % (pm / om)
        out.append("| %s | %s | %s | %s | %s | ≤ %g | %s | %s | %s |" % (
            act, "physflow %s" % pact, fmt_ms(pm), fmt_ms(tm), value, FM_SAMPLE_TARGET, met,
            fmt_ms(om), info))

    # Few-step samplers (physflow) against torchcfm's 100-step Euler: time and W2.
    few = sorted(((k, r) for k, r in rows.items() if k[0] == "physflow" and k[1] == "fewstep_indep"),
                 key=lambda kv: (_num(kv[0][3]) or 0, _num(kv[0][4]) or 0))
    if few:
        out += ["", "### Flow matching: few-step sampling vs torchcfm's 100 Euler steps "
                    "(independent coupling, 2048 samples)", "",
                "| sampler | steps | NFE | physflow ms | physflow W2 | torchcfm act | torchcfm 100-step ms "
                "| torchcfm W2 @ 100 | ms ratio | target | W2 ≤ torchcfm's | met |",
                "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|:---:|:---:|"]
        for k, r in few:
            for act in acts:
                t = fm_get(rows, "torchcfm", FM_SAMPLE_NAME, act)
                tw = fm_get(rows, "torchcfm", "w2_indep", act, k[3], 100)
                pm, tm = _num(r.get("ms")), (_num(t.get("ms")) if t else None)
                ratio = None if pm is None or not tm else pm / tm
                leq = fm_leq(r, tw)
                met = "n/a" if ratio is None or leq == "n/a" else (
                    "yes" if ratio <= FM_FEWSTEP_TARGET and leq == "yes" else "no")
                out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | ≤ %g | %s | %s |" % (
                    r.get("sampler", "?"), k[3], k[4], fmt_ms(pm), fm_w2(r), act, fmt_ms(tm), fm_w2(tw),
                    "n/a" if ratio is None else "%.3f" % ratio, FM_FEWSTEP_TARGET, leq, met))
        out += ["", "Target (issue 26): the best sampler reaches the W2 of torchcfm's 100-step "
                    "Euler in ≤ %g× its sampling time, single thread." % FM_FEWSTEP_TARGET]

    # W2 by NFE, one table per coupling, one line per (steps, nfe).
    for coupling in FM_COUPLINGS:
        name = "w2_" + coupling
        keys = sorted({(k[3], k[4]) for k in rows if k[1] == name},
                      key=lambda sn: (_num(sn[0]) or 0, _num(sn[1]) or 0))
        out += ["", "### Flow matching: W2 to 2048 held-out moons, `%s` coupling (lower is better)"
                % coupling, "",
                "| steps | NFE | " + " | ".join("physflow %s" % a for a in pf_acts) + " | "
                + " | ".join("torchcfm %s" % a for a in acts) + " | "
                + " | ".join("physflow ≤ torchcfm %s" % a for a in acts) + " |",
                "|---:|---:|" + "---:|" * (len(pf_acts) + len(acts)) + ":---:|" * len(acts)]
        for steps, nfe in keys:
            cells = [fm_w2(fm_get(rows, "physflow", name, a, steps, nfe)) for a in pf_acts]
            cells += [fm_w2(fm_get(rows, "torchcfm", name, a, steps, nfe)) for a in acts]
            for a in acts:
                p, pact = fm_physflow(rows, name, a, steps, nfe)
                met = fm_leq(p, fm_get(rows, "torchcfm", name, a, steps, nfe))
                cells.append(met if pact == a or met == "n/a" else "%s (physflow %s)" % (met, pact))
            out.append("| %s | %s | %s |" % (steps, nfe, " | ".join(cells)))
        if not keys:
            out.append("| n/a | n/a |" + " n/a |" * (len(pf_acts) + 2 * len(acts)))
    floors = ["%s %.4f" % (k[0], _num(r["w2"])) for k, r in sorted(rows.items(), key=lambda kv: kv[0][0])
              if k[1] == "w2_floor" and _num(r.get("w2")) is not None]
    checks = [r for k, r in rows.items() if k[1] == "w2_check"]
    out += ["", "Target: physflow ≤ torchcfm at equal training steps and NFE (Euler). "
                "Floor (W2 between two independent 2048-point moons draws, what a perfect model "
                "scores): %s." % (", ".join(floors) or "n/a")]
    for r in checks:
        out.append("W2 cross-check (%s): assignment %s, ot.emd2 %s, relative difference %s." % (
            r.get("side"), r.get("w2_lsa"), r.get("w2_emd2"), _sci(_num(r.get("rel_diff")))))

    # Quality runs: training time of the W2 models.
    runs = {}
    for k, r in rows.items():
        if k[1].startswith("w2_") and k[1] != "w2_floor" and k[1] != "w2_check":
            runs.setdefault((k[1][3:], k[2], k[3], k[0]), r)
    out += ["", "### Flow matching: quality runs (training before the W2 rows)", "",
            "| coupling | act | side | steps | train s | final loss |",
            "|---|---|---|---:|---:|---:|"]
    side_rank = {"physflow": 0, "torchcfm": 1}
    for (coupling, act, steps, side), r in sorted(
            runs.items(), key=lambda kv: (FM_COUPLINGS.index(kv[0][0]) if kv[0][0] in FM_COUPLINGS else 9,
                                          _num(kv[0][2]) or 0,
                                          FM_ACTS.index(kv[0][1]) if kv[0][1] in FM_ACTS else 9,
                                          side_rank.get(kv[0][3], 9))):
        ts, fl = _num(r.get("train_seconds")), _num(r.get("final_loss"))
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            coupling, act, side, steps, "n/a" if ts is None else "%.1f" % ts,
            "n/a" if fl is None else "%.4f" % fl))
    if not runs:
        out.append("| n/a | n/a | n/a | n/a | n/a | n/a |")
    return "\n".join(out)



# ---------------------------------------------------------------------- boltzmann
# Boltzmann-generator benchmark (run_boltzmann.sh): physflow's
# examples/bench_boltzmann.rs and boltzmann.py print one row per evaluation
# ({"bench": "boltzmann", "impl", "system", "seed", "step", "train_seconds",
# "ess_fraction", "kl", "samples_per_s", "threads", ["final"]}); a run is the
# rows of one (impl, system, seed), the last one wins per step.  ESS/N at a
# checkpoint is interpolated linearly in training time between the two
# evaluations around it (the checkpoints are fractions of the budget).
BZ_FRACS = (0.25, 0.5, 1.0)
BZ_BASELINE = "physflow"
BZ_IMPL_ORDER = ["physflow", "normflows", "normflows-subclass"]


def _bz_runs(rows):
    """{system: {(impl, seed): [rows sorted by train_seconds]}}."""
    runs = {}
    for r in rows:
        if r.get("bench") != "boltzmann" or _num(r.get("train_seconds")) is None:
            continue
        key = (str(r["impl"]), r.get("seed"))
        by_step = runs.setdefault(str(r["system"]), {}).setdefault(key, {})
        by_step[(r.get("step"), _num(r["train_seconds"]))] = r
    return {s: {k: sorted(v.values(), key=lambda e: _num(e["train_seconds"])) for k, v in rr.items()}
            for s, rr in runs.items()}


def _bz_budget(runs):
    """The training budget (s): "budget_seconds" of any row, else the smallest
    final training time rounded to 0.1 s."""
    for ev in runs.values():
        for e in ev:
            b = _num(e.get("budget_seconds"))
            if b:
                return b
    finals = [_num(ev[-1]["train_seconds"]) for ev in runs.values() if ev]
    return round(min(finals), 1) if finals else 0.0


def _bz_at(ev, t):
    """ESS/N of one run at training time t: linear interpolation between the
    evaluations around t; the last one if the run ended within 2 % before t;
    None before the first evaluation or after a run that stopped early."""
    pts = [(_num(e["train_seconds"]), _num(e.get("ess_fraction"))) for e in ev]
    pts = [(a, b) for a, b in pts if a is not None and b is not None]
    if not pts or t < pts[0][0] - 1e-9:
        return None
    for (t0, v0), (t1, v1) in zip(pts, pts[1:]):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return pts[-1][1] if pts[-1][0] >= 0.98 * t else None


def _bz_stat(vals, n):
    """'mean ± half range' over seeds, with '(k/n)' when only k of n runs count."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a", None
    m = sum(vals) / len(vals)
    s = "%.3f ± %.3f" % (m, (max(vals) - min(vals)) / 2)
    if len(vals) < n:
        s += " (%d/%d)" % (len(vals), n)
    return s, m


def _bz_ok(ev):
    """A run is complete when its last row is "final" and did not diverge."""
    return bool(ev) and bool(ev[-1].get("final")) and not ev[-1].get("diverged")


def boltzmann_tables(rows):
    out = []
    by_system = _bz_runs(rows)
    if not by_system:
        return "### Boltzmann generator\n\n(no rows read)"
    for system in sorted(by_system):
        runs = by_system[system]
        budget = _bz_budget(runs)
        checkpoints = [f * budget for f in BZ_FRACS]
        impls = sorted({k[0] for k in runs},
                       key=lambda i: (BZ_IMPL_ORDER.index(i) if i in BZ_IMPL_ORDER else len(BZ_IMPL_ORDER), i))
        # log Z, where a row knows it (boltzmann.py's dw2d rows: kl_true = kl + log Z).
        log_z = None
        for ev in runs.values():
            for e in ev:
                if _num(e.get("kl_true")) is not None and _num(e.get("kl")) is not None:
                    log_z = _num(e["kl_true"]) - _num(e["kl"])
        out += ["### Boltzmann generator, %s: ESS/N by training time (budget %g s; mean ± half range over seeds)"
                % (system, budget), "",
                "| impl | seeds | " + " | ".join("ESS/N @ %g s" % c for c in checkpoints[:-1])
                + " | ESS/N final | E[βu + log q] final"
                + (" | KL(q‖p) final" if log_z is not None else "")
                + " | steps/s | incomplete |",
                "|---|---:|" + "---:|" * (len(checkpoints) + 3 + (log_z is not None))]
        means, sps_mean, kl_mean = {}, {}, {}
        for impl in impls:
            evs = [ev for (im, _), ev in sorted(runs.items(), key=lambda kv: str(kv[0][1])) if im == impl]
            n = len(evs)
            cells = []
            for c in checkpoints[:-1]:
                s, m = _bz_stat([_bz_at(ev, c) for ev in evs], n)
                means[(impl, c)] = m
                cells.append(s)
            finals = [ev[-1] for ev in evs if _bz_ok(ev)]
            s, m = _bz_stat([_num(e.get("ess_fraction")) for e in finals], n)
            means[(impl, checkpoints[-1])] = m
            cells.append(s)
            kls = [_num(e.get("kl")) for e in finals]
            s, kl_mean[impl] = _bz_stat(kls, n)
            cells.append(s)
            if log_z is not None:
                cells.append(_bz_stat([None if k is None else k + log_z for k in kls], n)[0])
            sps = [_num(ev[-1]["step"]) / _num(ev[-1]["train_seconds"]) for ev in evs
                   if _num(ev[-1].get("step")) is not None and _num(ev[-1]["train_seconds"])]
            sps_mean[impl] = sum(sps) / len(sps) if sps else None
            cells.append("n/a" if sps_mean[impl] is None else "%.1f" % sps_mean[impl])
            bad = n - sum(1 for ev in evs if _bz_ok(ev))
            cells.append(str(bad))
            out.append("| %s | %d | %s |" % (impl, n, " | ".join(cells)))
        peers = [i for i in impls if i != BZ_BASELINE]
        if BZ_BASELINE in impls and peers:
            out += ["", "| ratio | " + " | ".join("ESS/N @ %g s" % c for c in checkpoints[:-1])
                    + " | ESS/N final | steps/s | Δ E[βu + log q] final |",
                    "|---|" + "---:|" * (len(checkpoints) + 2)]
            for peer in peers:
                cells = []
                for c in checkpoints:
                    a, b = means.get((BZ_BASELINE, c)), means.get((peer, c))
                    cells.append("n/a" if a is None or not b else "%.2f" % (a / b))
                a, b = sps_mean.get(BZ_BASELINE), sps_mean.get(peer)
                cells.append("n/a" if a is None or not b else "%.2f" % (a / b))
                a, b = kl_mean.get(BZ_BASELINE), kl_mean.get(peer)
                cells.append("n/a" if a is None or b is None else "%+.3f" % (a - b))
                out.append("| %s / %s | %s |" % (BZ_BASELINE, peer, " | ".join(cells)))
        out += ["", "ESS/N = Kish ESS / N on 20000 fresh samples, the clock paused; at a checkpoint "
                    "interpolated linearly in training time between the evaluations around it; "
                    "'final' is the last evaluation (at the budget) of each complete run. "
                    "E[βu + log q] = KL(q‖p) − log Z (lower is better)%s. Ratios are of the "
                    "means over seeds (> 1: physflow ahead); Δ E[βu + log q] is physflow's mean "
                    "minus the peer's (< 0: physflow closer to the target; steadier than ESS/N). 'incomplete': runs without a final "
                    "row or that stopped at a non-finite loss; they count at the checkpoints "
                    "they reached, '(k/n)' says how many runs a cell averages."
                    % ("; log Z = %.4f, so a flow that misses one of the two wells has "
                       "KL(q‖p) ≳ log 2 = 0.69" % log_z if log_z is not None else ""), ""]
    return "\n".join(out).rstrip("\n")


if __name__ == "__main__":
    main(sys.argv)
