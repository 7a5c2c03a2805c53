#!/usr/bin/env python3
"""Peer side of physflow's stiff-ODE benchmarks (B2-B4): scipy BDF and diffrax Kvaerno5.

Problems (identical on every side; rtol = 1e-6, atol = 1e-8, output only at t1):
  robertson    y' = [-k1 y1 + k3 y2 y3, k1 y1 - k2 y2^2 - k3 y2 y3, k2 y2^2],
               k1 = 0.04, k2 = 3e7, k3 = 1e4, y0 = [1, 0, 0], t in [0, 1e5]
  vdp1000      y1' = y2, y2' = mu (1 - y1^2) y2 - y1, mu = 1000, y0 = [2, 0],
               t in [0, 3000]
  bruss2d-32   2D Brusselator on the periodic unit square, no forcing, N = 32
  bruss2d-64   the same with N = 64:
               u_t = A + u^2 v - (B+1) u + alpha lap(u),  v_t = B u - u^2 v + alpha lap(v),
               A = 1, B = 3.4, alpha = 0.1; grid x_i = i/N, y_j = j/N (i, j = 0..N-1);
               state [u (N^2 entries, index i*N + j), v (same order)], length 2 N^2;
               lap = 5-point periodic stencil times N^2;
               u(x, y) = 22 y (1-y)^(3/2), v(x, y) = 27 x (1-x)^(3/2); t in [0, 11.5]

Peers:
  scipy    solve_ivp(method="BDF", rtol, atol, jac=analytic, t_eval=[t1]); the
           Jacobian is a dense ndarray for robertson / vdp1000 and a scipy.sparse
           csc_matrix for the Brusselator (analytic, assembled vectorised into a
           precomputed sparsity pattern).  scipy factorises with splu when the
           Jacobian is sparse.
  diffrax  diffeqsolve(ODETerm(f), Kvaerno5(), dt0=None, PIDController(rtol, atol),
           SaveAt(t1=True), max_steps=10**6), float64, under jax.jit.  Kvaerno5
           builds the Jacobian of its stage equation with jax.jacfwd (dense,
           2N^2 x 2N^2 for the Brusselator) and LU-factorises it densely, twice
           per attempted step in diffrax 0.7.2 (once at the second stage, and
           once when the stage loop is initialised with "the Jacobian of an
           explicit step": a zero diagonal, but still linearised, materialised
           and factorised; the njac counts below confirm 2 per step).
           Compilation (jit lower + compile) is timed separately ("compile_s")
           and excluded from "ms".
           Kvaerno5's default root finder (diffrax.VeryChord with the
           controller's rtol / atol) rejects about half of the attempted steps
           on robertson and vdp1000 (its stage solves fail its convergence-rate
           test; a larger root_find_max_steps does not change it).  With
           --diffrax-chord, extra information rows "<problem> (chord)" use
           Kvaerno5(root_finder=optimistix.Chord(rtol, atol)), which takes 5-6x
           fewer steps there but re-linearises and re-factorises at every
           implicit stage (about 8 Jacobians per step); the ratio table uses
           the default rows only.

Timing: each (peer, problem) runs in its own single-threaded subprocess.  One
untimed warm-up solve, then --repeats timed solves; "ms" is the median,
"min_ms" the minimum.  When the warm-up solve takes more than 10 s, it counts as
the first timed sample and the repeats are cut so that the row takes about a
minute.  A diffrax (or scipy) solve that has not finished within its budget
(--diffrax-budget, --scipy-budget seconds, measured from the end of
compilation) is killed and its row has "ms": null, "skipped": reason and
"ms_lower_bound": budget in ms.

Accuracy cross-check: a reference is computed once per problem with scipy Radau
(rtol = 1e-10, atol = 1e-12, same analytic Jacobian), cached in
~/.cache/physflow-compare/stiff-ref (PHYSFLOW_COMPARE_REF_DIR or --ref-dir),
and emitted as a row with side "reference" and "ms": null.  Each peer row gets
  err_vs_ref         max |y(t1) - y_ref(t1)| over the full final state,
  err_scaled_vs_ref  max |y - y_ref| / (atol + rtol |y_ref|) at the benchmark
                     tolerances,
and, for the Brusselator, err_mean_vs_ref = max(|u_mean - ref|, |v_mean - ref|)
(what table.py can also compute for the physflow rows, which carry only the
means).  A reference that takes longer than --ref-budget seconds is skipped.

Rows (one JSON object per line on stdout; logs on stderr):
  {"side": "scipy"|"diffrax"|"reference", "name": "robertson"|..., "ms": median,
   "min_ms": ..., "repeats": n, "steps": accepted steps, "nfe": f evaluations,
   "y_final": [...] (robertson, vdp1000) or "u_mean", "v_mean" (Brusselator),
   "err_vs_ref": ..., "versions": {...}, ...}
  scipy extra keys: "njev", "nlu" (from solve_ivp); "steps" is the number of
    accepted steps (len(sol.t) - 1 of the untimed warm-up solve, which is run
    with t_eval=None; the step sequence does not depend on t_eval).
  diffrax extra keys: "num_steps", "num_accepted_steps", "num_rejected_steps"
    (sol.stats; "steps" = num_accepted_steps), "compile_s", "njac"
    (linearisations of the vector field, i.e. Jacobian evaluations) and "nfe"
    (vector-field evaluations outside them), both counted with
    jax.debug.callback (in the primal rule / the JVP rule of a custom_jvp
    wrapper) in a separately compiled, untimed solve, done only when one solve
    takes under 30 s.

  python stiff.py [--repeats N] [--quick] [--only SUBSTRING] [--skip-scipy]
                  [--skip-diffrax] [--diffrax-chord] [--diffrax-budget S] [--scipy-budget S]
                  [--ref-budget S] [--no-ref] [--recompute-ref] [--self-check]
"""

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time

RTOL = 1e-6
ATOL = 1e-8
REF_RTOL = 1e-10
REF_ATOL = 1e-12
REF_METHOD = "Radau"
MAX_STEPS = 10 ** 6
SLOW_S = 10.0           # warm-up solves longer than this count as a timed sample
SLOW_ROW_S = 60.0       # ... and the repeats are cut to about this much time
COUNT_MAX_S = 30.0      # diffrax evaluation-counting solve only below this
CHORD_SUFFIX = " (chord)"  # name suffix of the opt-in --diffrax-chord rows
# Bump when a problem definition changes (invalidates cached references).
PROBLEMS_VERSION = 1

# Robertson
K1, K2, K3 = 0.04, 3e7, 1e4
# Van der Pol
MU = 1000.0
# Brusselator
BR_A, BR_B, BR_ALPHA = 1.0, 3.4, 0.1

PROBLEMS = {
    "robertson": dict(kind="robertson", t1=1e5),
    "vdp1000": dict(kind="vdp", t1=3000.0),
    "bruss2d-32": dict(kind="bruss", n=32, t1=11.5),
    "bruss2d-64": dict(kind="bruss", n=64, t1=11.5),
}

SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "JAX_PLATFORMS": "cpu",
    "JAX_ENABLE_X64": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def log(msg):
    print("[stiff] %s" % msg, file=sys.stderr, flush=True)


def emit(row):
    print(json.dumps(row), flush=True)


def event(name, **kw):
    """Progress line for the parent process (never printed by the parent)."""
    d = {"_event": name}
    d.update(kw)
    print(json.dumps(d), flush=True)


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


# --------------------------------------------------------------------------- problems (numpy)
def y0_of(name):
    import numpy as np

    p = PROBLEMS[name]
    if p["kind"] == "robertson":
        return np.array([1.0, 0.0, 0.0])
    if p["kind"] == "vdp":
        return np.array([2.0, 0.0])
    n = p["n"]
    c = np.arange(n) / n
    # u[i, j] depends on y_j (second index), v[i, j] on x_i (first index).
    u = np.broadcast_to(22.0 * c * (1.0 - c) ** 1.5, (n, n))
    v = np.broadcast_to((27.0 * c * (1.0 - c) ** 1.5)[:, None], (n, n))
    return np.concatenate([u.ravel(), v.ravel()])


def numpy_problem(name):
    """(f(t, y), jac(t, y), y0, t1) with numpy / scipy.sparse."""
    import numpy as np

    p = PROBLEMS[name]
    y0 = y0_of(name)
    if p["kind"] == "robertson":
        def f(t, y):
            y1, y2, y3 = y
            return np.array([-K1 * y1 + K3 * y2 * y3,
                             K1 * y1 - K2 * y2 * y2 - K3 * y2 * y3,
                             K2 * y2 * y2])

        def jac(t, y):
            y1, y2, y3 = y
            return np.array([[-K1, K3 * y3, K3 * y2],
                             [K1, -2.0 * K2 * y2 - K3 * y3, -K3 * y2],
                             [0.0, 2.0 * K2 * y2, 0.0]])
        return f, jac, y0, p["t1"]

    if p["kind"] == "vdp":
        def f(t, y):
            y1, y2 = y
            return np.array([y2, MU * (1.0 - y1 * y1) * y2 - y1])

        def jac(t, y):
            y1, y2 = y
            return np.array([[0.0, 1.0],
                             [-2.0 * MU * y1 * y2 - 1.0, MU * (1.0 - y1 * y1)]])
        return f, jac, y0, p["t1"]

    import scipy.sparse as sp

    n = p["n"]
    m = n * n
    h2 = float(n * n)
    c_lap = BR_ALPHA * h2

    def f(t, y):
        u = y[:m].reshape(n, n)
        v = y[m:].reshape(n, n)
        lu = np.roll(u, 1, 0) + np.roll(u, -1, 0) + np.roll(u, 1, 1) + np.roll(u, -1, 1) - 4.0 * u
        lv = np.roll(v, 1, 0) + np.roll(v, -1, 0) + np.roll(v, 1, 1) + np.roll(v, -1, 1) - 4.0 * v
        uuv = u * u * v
        du = BR_A + uuv - (BR_B + 1.0) * u + c_lap * lu
        dv = BR_B * u - uuv + c_lap * lv
        return np.concatenate([du.ravel(), dv.ravel()])

    # Sparsity pattern (COO, no duplicates for n >= 3), converted to csc once;
    # `perm` maps csc data positions to COO entries, so each Jacobian is one
    # vectorised gather into a fixed structure.
    idx = np.arange(m).reshape(n, n)
    k = idx.ravel()
    nbrs = [np.roll(idx, s, a).ravel() for s, a in ((1, 0), (-1, 0), (1, 1), (-1, 1))]
    rows, cols = [], []
    for off in (0, m):  # uu block, vv block: diagonal + 4 neighbours
        rows.append(k + off)
        cols.append(k + off)
        for nb in nbrs:
            rows.append(k + off)
            cols.append(nb + off)
    rows.append(k)          # du/dv: diagonal of the upper-right block
    cols.append(k + m)
    rows.append(k + m)      # dv/du: diagonal of the lower-left block
    cols.append(k)
    rows = np.concatenate(rows)
    cols = np.concatenate(cols)
    nnz = rows.size
    pattern = sp.coo_matrix((np.arange(1, nnz + 1, dtype=np.float64), (rows, cols)),
                            shape=(2 * m, 2 * m)).tocsc()
    pattern.sort_indices()
    assert pattern.nnz == nnz, "duplicate entries in the Brusselator pattern"
    perm = pattern.data.astype(np.int64) - 1
    indices = pattern.indices.copy()
    indptr = pattern.indptr.copy()
    coo_vals = np.empty(nnz)
    # Constant Laplacian neighbour entries.
    for blk in range(2):
        base = blk * 5 * m
        coo_vals[base + m: base + 5 * m] = c_lap

    def jac(t, y):
        u = y[:m]
        v = y[m:]
        uv = u * v
        uu = u * u
        vals = coo_vals.copy()
        vals[0:m] = -4.0 * c_lap - (BR_B + 1.0) + 2.0 * uv      # d du / du (diagonal)
        vals[5 * m:6 * m] = -4.0 * c_lap - uu                    # d dv / dv (diagonal)
        vals[10 * m:11 * m] = uu                                 # d du / dv
        vals[11 * m:12 * m] = BR_B - 2.0 * uv                    # d dv / du
        return sp.csc_matrix((vals[perm], indices, indptr), shape=(2 * m, 2 * m))

    return f, jac, y0, p["t1"]


def summary(name, y):
    """Keys describing a final state: y_final, or u_mean / v_mean."""
    import numpy as np

    y = np.asarray(y, dtype=np.float64)
    if PROBLEMS[name]["kind"] == "bruss":
        m = y.size // 2
        return {"u_mean": float(np.mean(y[:m])), "v_mean": float(np.mean(y[m:]))}
    return {"y_final": [float(v) for v in y]}


def errors(name, y, ref):
    import numpy as np

    if ref is None:
        return {}
    y = np.asarray(y, dtype=np.float64)
    d = np.abs(y - ref)
    out = {"err_vs_ref": float(d.max()),
           "err_scaled_vs_ref": float((d / (ATOL + RTOL * np.abs(ref))).max())}
    if PROBLEMS[name]["kind"] == "bruss":
        m = y.size // 2
        out["err_mean_vs_ref"] = float(max(abs(y[:m].mean() - ref[:m].mean()),
                                           abs(y[m:].mean() - ref[m:].mean())))
    return out


# --------------------------------------------------------------------------- timing helper
def time_solves(solve, repeats):
    """Warm-up call, then timed calls.  Returns (samples in s, first result,
    warm-up seconds).  A warm-up over SLOW_S counts as a sample."""
    t0 = time.perf_counter()
    first = solve()
    warm = time.perf_counter() - t0
    event("first_solve_done", seconds=warm)
    samples = []
    if warm > SLOW_S:
        samples.append(warm)
        n = min(repeats, max(1, int(SLOW_ROW_S / warm)))
        log("  one solve took %.1f s: %d timed sample(s), the warm-up included" % (warm, n))
        repeats = n - 1
    for _ in range(repeats):
        t0 = time.perf_counter()
        solve()
        samples.append(time.perf_counter() - t0)
    return samples, first, warm


def timing_keys(samples):
    ms = [s * 1e3 for s in samples]
    return {"ms": round(median(ms), 4), "min_ms": round(min(ms), 4), "repeats": len(ms)}


def load_ref(path):
    if not path:
        return None
    import numpy as np

    with np.load(path) as z:
        return np.array(z["y_final"])


# --------------------------------------------------------------------------- scipy
def scipy_versions():
    import numpy
    import scipy
    return {"scipy": scipy.__version__, "numpy": numpy.__version__}


def run_scipy(args):
    from scipy.integrate import solve_ivp

    name = args.problem
    f, jac, y0, t1 = numpy_problem(name)
    log("scipy %s: solve_ivp BDF, rtol=%g atol=%g, analytic %s Jacobian"
        % (name, RTOL, ATOL, "sparse csc" if PROBLEMS[name]["kind"] == "bruss" else "dense"))
    event("compiled", compile_s=0.0)

    # Warm-up solve with t_eval=None: sol.t holds every accepted step.
    t0 = time.perf_counter()
    warm_sol = solve_ivp(f, (0.0, t1), y0, method="BDF", rtol=RTOL, atol=ATOL, jac=jac)
    warm = time.perf_counter() - t0
    event("first_solve_done", seconds=warm)
    if warm_sol.status != 0:
        emit({"side": "scipy", "name": name, "ms": None, "skipped": "solve_ivp failed: %s"
              % warm_sol.message, "versions": scipy_versions()})
        return
    steps = len(warm_sol.t) - 1

    def solve():
        return solve_ivp(f, (0.0, t1), y0, method="BDF", rtol=RTOL, atol=ATOL, jac=jac,
                         t_eval=[t1])

    samples = []
    reps = args.repeats
    if warm > SLOW_S:
        samples.append(warm)
        reps = min(reps, max(1, int(SLOW_ROW_S / warm))) - 1
        log("  one solve took %.1f s: %d timed sample(s), the warm-up included" % (warm, reps + 1))
    sol = None
    for _ in range(reps):
        t0 = time.perf_counter()
        sol = solve()
        samples.append(time.perf_counter() - t0)
    if sol is None:  # only the warm-up was timed
        y = warm_sol.y[:, -1]
        nfev, njev, nlu = warm_sol.nfev, warm_sol.njev, warm_sol.nlu
    else:
        assert sol.status == 0, sol.message
        y = sol.y[:, -1]
        nfev, njev, nlu = sol.nfev, sol.njev, sol.nlu
        if (nfev, njev, nlu) != (warm_sol.nfev, warm_sol.njev, warm_sol.nlu):
            log("  note: t_eval changed the counts (%d/%d/%d vs %d/%d/%d)" % (
                nfev, njev, nlu, warm_sol.nfev, warm_sol.njev, warm_sol.nlu))
    row = {"side": "scipy", "name": name}
    row.update(timing_keys(samples))
    row.update({"steps": int(steps), "nfe": int(nfev), "njev": int(njev), "nlu": int(nlu)})
    row.update(summary(name, y))
    row.update(errors(name, y, load_ref(args.ref)))
    row["method"] = "solve_ivp BDF, analytic %s Jacobian" % (
        "scipy.sparse csc" if PROBLEMS[name]["kind"] == "bruss" else "dense")
    row["versions"] = scipy_versions()
    log("  %s: %.3f ms median of %d, %d steps, nfev %d, njev %d, nlu %d%s" % (
        name, row["ms"], row["repeats"], steps, nfev, njev, nlu,
        (", err_vs_ref %.2e" % row["err_vs_ref"]) if "err_vs_ref" in row else ""))
    emit(row)


def run_reference(args):
    import numpy as np
    from scipy.integrate import solve_ivp

    name = args.problem
    f, jac, y0, t1 = numpy_problem(name)
    log("reference %s: solve_ivp %s rtol=%g atol=%g" % (name, REF_METHOD, REF_RTOL, REF_ATOL))
    event("compiled", compile_s=0.0)
    t0 = time.perf_counter()
    sol = solve_ivp(f, (0.0, t1), y0, method=REF_METHOD, rtol=REF_RTOL, atol=REF_ATOL,
                    jac=jac, t_eval=[t1])
    secs = time.perf_counter() - t0
    event("first_solve_done", seconds=secs)
    if sol.status != 0:
        log("  reference failed: %s" % sol.message)
        sys.exit(2)
    meta = {"key": ref_key(name), "solve_s": secs, "nfev": int(sol.nfev), "njev": int(sol.njev),
            "nlu": int(sol.nlu), "versions": scipy_versions()}
    tmp = args.ref + ".tmp.npz"
    np.savez(tmp, y_final=sol.y[:, -1], meta=json.dumps(meta))
    os.replace(tmp, args.ref)
    log("  reference %s done in %.1f s (nfev %d, nlu %d)" % (name, secs, sol.nfev, sol.nlu))


def ref_key(name):
    p = PROBLEMS[name]
    return "%s|v%d|%s|%s|rtol=%g|atol=%g" % (name, PROBLEMS_VERSION, json.dumps(p, sort_keys=True),
                                              REF_METHOD, REF_RTOL, REF_ATOL)


# --------------------------------------------------------------------------- jax / diffrax
def jax_vf(name):
    import jax.numpy as jnp

    p = PROBLEMS[name]
    if p["kind"] == "robertson":
        def vf(t, y, args):
            y1, y2, y3 = y[0], y[1], y[2]
            return jnp.stack([-K1 * y1 + K3 * y2 * y3,
                              K1 * y1 - K2 * y2 * y2 - K3 * y2 * y3,
                              K2 * y2 * y2])
        return vf
    if p["kind"] == "vdp":
        def vf(t, y, args):
            y1, y2 = y[0], y[1]
            return jnp.stack([y2, MU * (1.0 - y1 * y1) * y2 - y1])
        return vf
    n = p["n"]
    m = n * n
    c_lap = BR_ALPHA * float(n * n)

    def lap(w):
        return (jnp.roll(w, 1, 0) + jnp.roll(w, -1, 0) + jnp.roll(w, 1, 1)
                + jnp.roll(w, -1, 1) - 4.0 * w)

    def vf(t, y, args):
        u = y[:m].reshape(n, n)
        v = y[m:].reshape(n, n)
        uuv = u * u * v
        du = BR_A + uuv - (BR_B + 1.0) * u + c_lap * lap(u)
        dv = BR_B * u - uuv + c_lap * lap(v)
        return jnp.concatenate([du.ravel(), dv.ravel()])
    return vf


def jax_versions():
    import diffrax
    import equinox
    import jax
    import jaxlib
    import lineax
    import optimistix
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "diffrax": diffrax.__version__,
            "equinox": equinox.__version__, "lineax": getattr(lineax, "__version__", "?"),
            "optimistix": getattr(optimistix, "__version__", "?")}


def run_diffrax(args):
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    import diffrax
    import jax.numpy as jnp
    import numpy as np

    assert jax.default_backend() == "cpu", jax.default_backend()
    name = args.problem
    t1 = PROBLEMS[name]["t1"]
    vf = jax_vf(name)
    y0 = jnp.asarray(y0_of(name), dtype=jnp.float64)
    if args.variant == "chord":
        import optimistix as optx
        solver = diffrax.Kvaerno5(root_finder=optx.Chord(rtol=RTOL, atol=ATOL))
        row_name = name + CHORD_SUFFIX
        root_desc = "optimistix Chord(rtol, atol) root finder (info row, not the default)"
    else:
        solver = diffrax.Kvaerno5()
        row_name = name
        root_desc = "default root finder (VeryChord with the controller's rtol / atol)"
    log("diffrax %s: Kvaerno5 (%s), PIDController(rtol=%g, atol=%g), dt0=None, %d states, "
        "jax %s, diffrax %s, XLA_FLAGS=%r" % (row_name, root_desc, RTOL, ATOL, y0.size,
                                               jax.__version__, diffrax.__version__,
                                               os.environ.get("XLA_FLAGS")))

    def make_solve(field):
        def solve(y0):
            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(field), solver, t0=0.0, t1=t1, dt0=None, y0=y0,
                saveat=diffrax.SaveAt(t1=True),
                stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
                max_steps=MAX_STEPS)
            st = sol.stats
            return sol.ys[-1], (st["num_steps"], st["num_accepted_steps"], st["num_rejected_steps"])
        return solve

    t_c = time.perf_counter()
    compiled = jax.jit(make_solve(vf)).lower(y0).compile()
    compile_s = time.perf_counter() - t_c
    log("  compiled in %.1f s" % compile_s)
    event("compiled", compile_s=compile_s)

    def solve():
        out = compiled(y0)
        jax.block_until_ready(out)
        return out

    samples, (y, stats), warm = time_solves(solve, args.repeats)
    y = np.asarray(y)
    num_steps, num_acc, num_rej = (int(s) for s in stats)
    row = {"side": "diffrax", "name": row_name}
    row.update(timing_keys(samples))
    row.update({"steps": num_acc, "num_steps": num_steps, "num_accepted_steps": num_acc,
                "num_rejected_steps": num_rej, "nfe": None})
    row.update(summary(name, y))
    row.update(errors(name, y, load_ref(args.ref)))
    row["compile_s"] = round(compile_s, 3)

    # Evaluation counts: vector-field evaluations (primal calls) and Jacobian
    # evaluations (linearisations: the custom_jvp rule runs once per jax.jacfwd /
    # linearise of the stage function; its tangent part is then vmapped over
    # the identity).  Separate compile, untimed.
    if warm <= COUNT_MAX_S:
        counts = {"f": 0, "jac": 0}

        def bump(key):
            def cb():
                counts[key] += 1
            return cb

        @jax.custom_jvp
        def counted(y):
            jax.debug.callback(bump("f"))
            return vf(None, y, None)

        @counted.defjvp
        def counted_jvp(primals, tangents):
            jax.debug.callback(bump("jac"))
            return jax.jvp(lambda z: vf(None, z, None), primals, tangents)

        ccount = jax.jit(make_solve(lambda t, y, a: counted(y))).lower(y0).compile()
        yc, sc = ccount(y0)
        jax.block_until_ready(yc)
        jax.effects_barrier()
        if tuple(int(s) for s in sc) == (num_steps, num_acc, num_rej):
            row["nfe"] = counts["f"]
            row["njac"] = counts["jac"]
        else:
            log("  counting solve took a different path (%s vs %s); nfe not reported"
                % (tuple(int(s) for s in sc), (num_steps, num_acc, num_rej)))
    else:
        row["note_nfe"] = "evaluation counts skipped (one solve took %.0f s)" % warm
    row["method"] = ("diffrax Kvaerno5, %s, PIDController; jacfwd Jacobian of the stage "
                     "function (dense) + dense LU, twice per attempted step" % root_desc)
    row["versions"] = jax_versions()
    log("  %s: %.3f ms median of %d, %d steps (%d rejected), nfe %s, njac %s%s" % (
        row_name, row["ms"], row["repeats"], num_acc, num_rej, row.get("nfe"), row.get("njac"),
        (", err_vs_ref %.2e" % row["err_vs_ref"]) if "err_vs_ref" in row else ""))
    emit(row)


# --------------------------------------------------------------------------- self-check
def self_check():
    """Analytic Jacobians vs central differences, numpy f vs JAX f (small sizes)."""
    import numpy as np

    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    PROBLEMS["bruss2d-5"] = dict(kind="bruss", n=5, t1=11.5)
    ok = True
    for name in ("robertson", "vdp1000", "bruss2d-5", "bruss2d-32"):
        f, jac, y0, _ = numpy_problem(name)
        for y in (y0, y0 + 0.1 * rng.standard_normal(y0.size)):
            J = jac(0.0, y)
            J = J.toarray() if hasattr(J, "toarray") else J
            if y.size <= 64:
                Jfd = np.empty_like(J)
                for k in range(y.size):
                    e = np.zeros(y.size)
                    hk = 1e-6 * max(1.0, abs(y[k]))
                    e[k] = hk
                    Jfd[:, k] = (f(0.0, y + e) - f(0.0, y - e)) / (2 * hk)
            else:
                Jfd = np.asarray(jax.jacfwd(lambda z: jax_vf(name)(0.0, z, None))(jnp.asarray(y)))
            scale = max(1.0, np.abs(J).max())
            ej = np.abs(J - Jfd).max() / scale
            ef = np.abs(f(0.0, y) - np.asarray(jax_vf(name)(0.0, jnp.asarray(y), None))).max()
            good = ej < 1e-6 and ef < 1e-9 * max(1.0, np.abs(f(0.0, y)).max())
            ok &= good
            log("self-check %-10s n=%-5d jac rel err %.2e, |f_np - f_jax| %.2e %s"
                % (name, y.size, ej, ef, "ok" if good else "FAIL"))
    if PROBLEMS["bruss2d-5"]:
        del PROBLEMS["bruss2d-5"]
    y = y0_of("bruss2d-32")
    log("bruss2d-32 y0: u_mean %.6f v_mean %.6f, u[0, j=8] %.6f, v[i=8, 0] %.6f"
        % (y[:1024].mean(), y[1024:].mean(), y[8], y[1024 + 8 * 32]))
    sys.exit(0 if ok else 1)


# --------------------------------------------------------------------------- parent
def run_child(side, name, args, budget, ref_path, variant=None):
    """Run one (side, problem) in a single-threaded subprocess.  Forwards its
    rows; kills it when one solve (after compilation) exceeds `budget` s.
    Returns (status, info): status "ok", "timeout", "compile-timeout" or "failed"."""
    env = dict(os.environ)
    env.update(SINGLE_THREAD_ENV)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", side, "--problem", name,
           "--repeats", str(args.repeats)]
    if ref_path:
        cmd += ["--ref", ref_path]
    if variant:
        cmd += ["--variant", variant]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, bufsize=1)
    q = queue.Queue()

    def reader():
        for line in proc.stdout:
            q.put(line)
        q.put(None)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    info = {}
    phase = "compile"
    compile_limit = max(900.0, budget)
    deadline = time.monotonic() + compile_limit
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            line = q.get(timeout=timeout)
        except queue.Empty:
            proc.kill()
            proc.wait()
            return ("compile-timeout" if phase == "compile" else "timeout"), info
        if line is None:
            break
        s = line.strip()
        try:
            obj = json.loads(s) if s.startswith("{") else None
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "_event" in obj:
            if obj["_event"] == "compiled":
                info["compile_s"] = obj.get("compile_s")
                phase = "solve"
                deadline = time.monotonic() + budget
            elif obj["_event"] == "first_solve_done":
                info["first_solve_s"] = obj.get("seconds")
                phase = "repeats"
                deadline = None
            continue
        sys.stdout.write(line)
        sys.stdout.flush()
    rc = proc.wait()
    return ("ok" if rc == 0 else "failed"), info


def ref_dir(args):
    d = args.ref_dir or os.environ.get("PHYSFLOW_COMPARE_REF_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "physflow-compare", "stiff-ref")
    os.makedirs(d, exist_ok=True)
    return d


def ensure_reference(name, args):
    """Path of the cached reference for `name` (computed if needed), or None."""
    import numpy as np

    path = os.path.join(ref_dir(args), "%s.npz" % name)
    meta = None
    if os.path.exists(path) and not args.recompute_ref:
        try:
            with np.load(path) as z:
                meta = json.loads(str(z["meta"]))
                y = np.array(z["y_final"])
            if meta.get("key") != ref_key(name):
                log("reference %s: cache key differs, recomputing" % name)
                meta = None
            else:
                log("reference %s: cached (%s, computed in %.1f s)" % (name, path, meta["solve_s"]))
        except Exception as e:  # corrupt cache
            log("reference %s: unreadable cache (%s), recomputing" % (name, e))
            meta = None
    if meta is None:
        status, info = run_child("reference", name, args, args.ref_budget, path)
        if status != "ok":
            why = ("not finished within --ref-budget %g s" % args.ref_budget
                   if status == "timeout" else "reference solve %s" % status)
            log("reference %s skipped: %s" % (name, why))
            emit({"side": "reference", "name": name, "ms": None, "skipped": why,
                  "method": "solve_ivp %s rtol=%g atol=%g" % (REF_METHOD, REF_RTOL, REF_ATOL)})
            return None
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            y = np.array(z["y_final"])
    row = {"side": "reference", "name": name, "ms": None,
           "method": "solve_ivp %s rtol=%g atol=%g, analytic Jacobian" % (REF_METHOD, REF_RTOL, REF_ATOL),
           "solve_s": round(meta["solve_s"], 3), "nfe": meta.get("nfev"), "nlu": meta.get("nlu"),
           "versions": meta.get("versions")}
    row.update(summary(name, y))
    emit(row)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed solves per row (default 5, 1 with --quick; fewer for solves over 10 s)")
    ap.add_argument("--quick", action="store_true", help="1 repeat, skip bruss2d-64")
    ap.add_argument("--only", metavar="SUBSTRING", default=None,
                    help="only problems whose name contains SUBSTRING")
    ap.add_argument("--skip-scipy", action="store_true")
    ap.add_argument("--skip-diffrax", action="store_true")
    ap.add_argument("--diffrax-budget", type=float, default=300.0,
                    help="seconds one diffrax solve may take (after compilation) before the row "
                         "is skipped (default 300)")
    ap.add_argument("--diffrax-chord", action="store_true",
                    help="also run Kvaerno5 with optimistix.Chord as its root finder (rows named "
                         "'<problem> (chord)', information only)")
    ap.add_argument("--scipy-budget", type=float, default=600.0,
                    help="the same for scipy (default 600)")
    ap.add_argument("--ref-budget", type=float, default=900.0,
                    help="seconds the reference solve may take (default 900)")
    ap.add_argument("--no-ref", action="store_true", help="no reference solves / err_vs_ref")
    ap.add_argument("--recompute-ref", action="store_true", help="ignore cached references")
    ap.add_argument("--ref-dir", default=None,
                    help="reference cache (default $PHYSFLOW_COMPARE_REF_DIR or "
                         "~/.cache/physflow-compare/stiff-ref)")
    ap.add_argument("--self-check", action="store_true",
                    help="check the analytic Jacobians and the JAX vector fields, then exit")
    # internal
    ap.add_argument("--child", choices=("scipy", "diffrax", "reference"), help=argparse.SUPPRESS)
    ap.add_argument("--problem", help=argparse.SUPPRESS)
    ap.add_argument("--ref", help=argparse.SUPPRESS)
    ap.add_argument("--variant", choices=("chord",), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    args.repeats = max(1, args.repeats)

    if args.self_check:
        self_check()
    if args.child == "scipy":
        return run_scipy(args)
    if args.child == "diffrax":
        return run_diffrax(args)
    if args.child == "reference":
        return run_reference(args)

    names = [n for n in PROBLEMS if args.only is None or args.only in n]
    if args.quick and not (args.only and "64" in args.only):
        names = [n for n in names if n != "bruss2d-64"]
    if not names:
        sys.exit("stiff.py: no problem matches --only %r" % args.only)
    if os.path.exists("/proc/loadavg"):
        with open("/proc/loadavg") as fh:
            log("load average %s on %d cores; problems: %s; repeats %d"
                % (" ".join(fh.read().split()[:3]), os.cpu_count(), ", ".join(names), args.repeats))

    failed = []
    for name in names:
        ref = None if args.no_ref else ensure_reference(name, args)
        runs = [("scipy", None, args.skip_scipy, args.scipy_budget),
                ("diffrax", None, args.skip_diffrax, args.diffrax_budget),
                ("diffrax", "chord", args.skip_diffrax or not args.diffrax_chord,
                 args.diffrax_budget)]
        for side, variant, skip, budget in runs:
            if skip:
                continue
            row_name = name + (CHORD_SUFFIX if variant == "chord" else "")
            log("running %s %s" % (side, row_name))
            status, info = run_child(side, name, args, budget, ref, variant)
            if status == "ok":
                continue
            if status in ("timeout", "compile-timeout"):
                what = "compilation" if status == "compile-timeout" else "one solve"
                why = ("%s took longer than the budget of %g s (killed)"
                       % (what, budget if status == "timeout" else max(900.0, budget)))
                if side == "diffrax" and PROBLEMS[name]["kind"] == "bruss":
                    why += ("; diffrax builds and LU-factorises a dense %d x %d Jacobian twice "
                            "per attempted step" % (
                        2 * PROBLEMS[name]["n"] ** 2, 2 * PROBLEMS[name]["n"] ** 2))
                log("%s %s skipped: %s" % (side, row_name, why))
                row = {"side": side, "name": row_name, "ms": None, "min_ms": None, "repeats": 0,
                       "skipped": why}
                if status == "timeout":
                    row["ms_lower_bound"] = budget * 1e3
                if info.get("compile_s") is not None and side == "diffrax":
                    row["compile_s"] = round(info["compile_s"], 3)
                emit(row)
            else:
                log("%s %s failed" % (side, row_name))
                emit({"side": side, "name": row_name, "ms": None, "repeats": 0,
                      "skipped": "the %s solve failed (see the log)" % side})
                failed.append("%s %s" % (side, row_name))
    if failed:
        log("failed: %s" % ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    # Single-thread settings before numpy / jax are imported (lazily above).
    os.environ.update(SINGLE_THREAD_ENV)
    main()
