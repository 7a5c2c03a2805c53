#!/usr/bin/env python3
"""Peer side of physflow's neural-SDE benchmark (one training step, fixed steps).

Problem (identical on every side):
  * state dim 4, batch 256, float32, diagonal noise (4 Brownian channels);
  * drift f(y): MLP 4 -> 64 -> 64 -> 4, tanh after both hidden layers, linear
    output, autonomous (no time input);
  * diffusion g(y): MLP 4 -> 64 -> 4, tanh after the hidden layer, then sigmoid
    on the output, autonomous; diagonal noise: dy = f(y) dt + g(y) * dW
    (elementwise);
  * y0 ~ N(0, I) of shape [256, 4] (fixed seed);
  * t in [0, 1], 100 fixed steps (dt = 0.01), only y(1) is saved;
  * loss = mean(y(1)^2);
  * one step = forward solve + loss + backward (gradients w.r.t. all parameters
    of both networks).

Weights and y0 are drawn once with numpy default_rng(0): for each Linear in
order (the three drift layers, then the two diffusion layers) W ~
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) of shape [out, in], then b [out] with the
same bound; then y0.  torch and JAX load the same arrays.

The Brownian samples are NOT shared between the sides: torchsde uses its
default BrownianInterval (t0=0, t1=1, levy_area_approximation="none", tol=0,
pool_size=8, cache_size=45, exactly what sdeint builds when no bm is given)
with entropy=0, created inside every timed step as a user would; diffrax uses
VirtualBrownianTree(t0=0, t1=1, tol=1e-3, shape=(256, 4), key=PRNGKey(0)).
Each side's path is fixed, so its loss is the same on every repeat, but the
losses differ between the sides (different paths), and also between Ito rows
(Euler) and Stratonovich rows (midpoint, reversible Heun), which solve
different SDEs with the same f and g.  The "loss" key is there to show that the
sides solve problems of the same size, not equal numbers.

Rows (one JSON object per line on stdout):
  {"side": "torchsde", "name": "euler backprop", "ms": ..., "nfe": ..., "repeats": N,
   "min_ms": ..., "loss": ..., ...}
Extra keys: "nfe_fwd" / "nfe_bwd" (drift-network evaluations in the forward
solve / in the backward pass, when known), "diffusion_evals_fwd" /
"diffusion_evals_bwd" (the same for the diffusion network), "num_steps",
"calculus" ("ito" or "stratonovich"), "adjoint_method", "note".  "nfe" is the
total number of drift-network evaluations in one step, when known.

  torchsde (sdeint / sdeint_adjoint, dt=0.01, adjoint_params = all parameters):
    euler backprop                    Ito, method="euler", backprop through the solver
    euler adjoint                     Ito, sdeint_adjoint(method="euler"), torchsde's
                                      default adjoint_method for Ito diagonal noise
                                      (milstein in torchsde 0.2.6; the row says which)
    midpoint backprop (stratonovich)  Stratonovich, method="midpoint", backprop
    midpoint adjoint (stratonovich)   Stratonovich, sdeint_adjoint(method="midpoint"),
                                      default adjoint_method (midpoint)
    reversible heun backprop          Stratonovich, method="reversible_heun", backprop
    reversible heun adjoint           sdeint_adjoint(method="reversible_heun",
                                      adjoint_method="adjoint_reversible_heun")
  diffrax (diffeqsolve, dt0=0.01, ConstantStepSize, SaveAt(t1=True), default
  max_steps=4096, jax.jit(jax.value_and_grad(loss)) on a pytree of params,
  compile excluded from timing):
    euler recursive checkpoint                Euler() (Ito), RecursiveCheckpointAdjoint()
    midpoint recursive checkpoint             Midpoint() (Stratonovich), RecursiveCheckpointAdjoint()
    midpoint backsolve                        Midpoint(), BacksolveAdjoint() (continuous
                                              stochastic adjoint, Stratonovich only)
    reversible heun recursive checkpoint      ReversibleHeun(), RecursiveCheckpointAdjoint()
    reversible heun backsolve                 ReversibleHeun(), BacksolveAdjoint()
                                              (pathologically slow, see below; at
                                              most 3 repeats)
  terms: MultiTerm(ODETerm(drift), ControlTerm(diffusion, VirtualBrownianTree(...)))
  with the diffusion returning lineax.DiagonalLinearOperator(g(y)) (diffrax 0.7's
  way to write diagonal noise; WeaklyDiagonalControlTerm is deprecated).
  diffrax 0.7.2, the newest on PyPI, has no ReversibleAdjoint (the algebraically
  reversible backward pass of Kidger et al. 2021); "reversible heun backsolve"
  (the continuous adjoint solved backwards with ReversibleHeun) is the closest
  O(1)-memory row it offers, and rows are emitted for ReversibleAdjoint
  automatically if a later diffrax has it.  ReversibleHeun.step calls terms.vf and
  terms.prod rather than terms.vf_prod, so under BacksolveAdjoint diffrax's
  AdjointTerm materialises the Jacobian of the adjoint vector field against the
  whole [256, 4] control at every evaluation: that row is ~100x slower than the
  others and is timed with at most 3 repeats.

torchsde details: ts = [0, 1] is a float64 tensor (state and parameters stay
float32).  torchsde's fixed-step loop accumulates t += dt in ts's dtype; with
float32 ts it takes a 101st step of ~6.6e-7 at the end, and the default
BrownianInterval (dt=None) then refines its tree to that length, which costs
~1.5 s per solve.  float64 ts gives exactly 100 steps each way.  The
evaluation counts of the torchsde rows include the one drift and one diffusion
call that sdeint makes at t0 to check shapes.

Every side runs single-threaded in its own subprocess (torch and JAX are never
imported into the same process).  Usage:

  python sde.py [--repeats N] [--warmup N] [--quick] [--only torch|jax]
  python sde.py --dump-problem PATH
"""

import argparse
import json
import os
import subprocess
import sys
import time

SEED = 0
BATCH = 256
DIM = 4
HIDDEN = 64
T0 = 0.0
T1 = 1.0
STEPS = 100
DT = (T1 - T0) / STEPS  # 0.01
VBT_TOL = 1e-3  # diffrax VirtualBrownianTree tolerance

DRIFT_SHAPES = ((DIM, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, DIM))  # (fan_in, fan_out)
DIFFUSION_SHAPES = ((DIM, HIDDEN), (HIDDEN, DIM))

SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "JAX_PLATFORMS": "cpu",
    "JAX_ENABLE_X64": "0",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def emit(side, name, times_s, nfe=None, **extra):
    times_ms = sorted(t * 1e3 for t in times_s)
    n = len(times_ms)
    median = times_ms[n // 2] if n % 2 else 0.5 * (times_ms[n // 2 - 1] + times_ms[n // 2])
    row = {"side": side, "name": name, "ms": round(median, 4), "nfe": nfe, "repeats": n}
    row["min_ms"] = round(times_ms[0], 4)
    for k, v in extra.items():
        if v is not None:
            row[k] = v
    print(json.dumps(row), flush=True)


def problem_arrays():
    """(drift layers, diffusion layers, y0) as float32 numpy; layers are
    (W [out, in] (torch Linear layout), b [out])."""
    import numpy as np

    rng = np.random.default_rng(SEED)

    def draw(shapes):
        layers = []
        for fan_in, fan_out in shapes:
            bound = 1.0 / np.sqrt(fan_in)
            w = rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(np.float32)
            b = rng.uniform(-bound, bound, size=(fan_out,)).astype(np.float32)
            layers.append((w, b))
        return layers

    drift = draw(DRIFT_SHAPES)
    diffusion = draw(DIFFUSION_SHAPES)
    y0 = rng.standard_normal((BATCH, DIM)).astype(np.float32)
    return drift, diffusion, y0


def time_fn(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# --------------------------------------------------------------------------- torch
def run_torch(args):
    import torch
    import torchsde

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    print("# torch %s, torchsde %s, threads %d/%d" % (
        torch.__version__, getattr(torchsde, "__version__", "?"),
        torch.get_num_threads(), torch.get_num_interop_threads()), file=sys.stderr)

    drift_np, diffusion_np, y0_np = problem_arrays()

    class Mlp(torch.nn.Module):
        """Linear layers with tanh between them; optional sigmoid on the output.
        Counts its forward calls (evaluations at the whole batch)."""

        def __init__(self, layers, out_sigmoid):
            super().__init__()
            self.lins = torch.nn.ModuleList()
            for w, b in layers:
                lin = torch.nn.Linear(w.shape[1], w.shape[0])
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(w))
                    lin.bias.copy_(torch.from_numpy(b))
                self.lins.append(lin)
            self.out_sigmoid = out_sigmoid
            self.calls = 0

        def forward(self, y):
            self.calls += 1
            h = y
            for lin in self.lins[:-1]:
                h = torch.tanh(lin(h))
            h = self.lins[-1](h)
            return torch.sigmoid(h) if self.out_sigmoid else h

    class NeuralSde(torch.nn.Module):
        noise_type = "diagonal"

        def __init__(self, drift, diffusion, sde_type):
            super().__init__()
            self.drift = drift
            self.diffusion = diffusion
            self.sde_type = sde_type

        def f(self, t, y):  # autonomous: t is ignored
            return self.drift(y)

        def g(self, t, y):
            return self.diffusion(y)

    drift = Mlp(drift_np, out_sigmoid=False).float()
    diffusion = Mlp(diffusion_np, out_sigmoid=True).float()
    sdes = {"ito": NeuralSde(drift, diffusion, "ito"),
            "stratonovich": NeuralSde(drift, diffusion, "stratonovich")}
    params = tuple(drift.parameters()) + tuple(diffusion.parameters())
    y0 = torch.from_numpy(y0_np)
    # ts in float64 (the state stays float32): torchsde's fixed-step loop
    # accumulates t += dt in ts's dtype and clamps to t1.  With float32 ts,
    # 100 steps of 0.01 end at 0.99999934, so it takes a 101st step of ~6.6e-7;
    # the default BrownianInterval (dt=None) then refines its dependency tree
    # down to that length (~50k interval splits, ~1.5 s per solve, ~90% of
    # the step).  float64 ts gives exactly 100 steps forward and backward
    # (checked by logging the Brownian queries).
    ts = torch.tensor([T0, T1], dtype=torch.float64)

    from torchsde._core.adjoint import _select_default_adjoint_method

    # (name, calculus, method, adjoint?, adjoint_method passed explicitly or None)
    rows = [
        ("euler backprop", "ito", "euler", False, None),
        ("euler adjoint", "ito", "euler", True, None),
        ("midpoint backprop (stratonovich)", "stratonovich", "midpoint", False, None),
        ("midpoint adjoint (stratonovich)", "stratonovich", "midpoint", True, None),
        ("reversible heun backprop", "stratonovich", "reversible_heun", False, None),
        ("reversible heun adjoint", "stratonovich", "reversible_heun", True, "adjoint_reversible_heun"),
    ]

    def make_step(calculus, method, adjoint, adjoint_method):
        sde = sdes[calculus]

        def step():
            for p in params:
                p.grad = None
            drift.calls = diffusion.calls = 0
            # What sdeint builds by default when bm=None, but with fixed entropy.
            bm = torchsde.BrownianInterval(
                t0=ts[0], t1=ts[-1], size=(BATCH, DIM), dtype=y0.dtype, device=y0.device,
                levy_area_approximation="none", entropy=SEED)
            if adjoint:
                ys = torchsde.sdeint_adjoint(sde, y0, ts, bm=bm, method=method, dt=DT,
                                             adjoint_method=adjoint_method, adjoint_params=params)
            else:
                ys = torchsde.sdeint(sde, y0, ts, bm=bm, method=method, dt=DT)
            loss = torch.mean(ys[-1] ** 2)
            fwd = (drift.calls, diffusion.calls)
            loss.backward()
            bwd = (drift.calls - fwd[0], diffusion.calls - fwd[1])
            return fwd, bwd, float(loss.detach())
        return step

    for name, calculus, method, adjoint, adjoint_method in rows:
        step = make_step(calculus, method, adjoint, adjoint_method)
        (f_fwd, g_fwd), (f_bwd, g_bwd), loss = step()  # also checks it runs
        times = time_fn(step, args.warmup, args.repeats)
        used_adjoint = None
        if adjoint:
            used_adjoint = _select_default_adjoint_method(
                sdes[calculus], method, adjoint_method)
            how = "explicit" if adjoint_method else "torchsde default"
            note = ("sdeint_adjoint, adjoint_method=%s (%s); evaluation counts include "
                    "sdeint's shape-check calls at t0 and the adjoint's vjp evaluations"
                    % (used_adjoint, how))
        else:
            note = ("sdeint, backprop through the solver (backward makes no network calls); "
                    "counts include sdeint's shape-check calls at t0")
        note += "; BrownianInterval(entropy=%d) built inside the step" % SEED
        emit("torchsde", name, times, nfe=f_fwd + f_bwd, nfe_fwd=f_fwd, nfe_bwd=f_bwd,
             diffusion_evals_fwd=g_fwd, diffusion_evals_bwd=g_bwd,
             calculus=calculus, method=method, adjoint_method=used_adjoint,
             loss=round(loss, 8), note=note)


# --------------------------------------------------------------------------- jax
def run_jax(args):
    import jax
    import jax.numpy as jnp
    import diffrax
    import lineax

    jax.config.update("jax_platforms", "cpu")
    assert jax.default_backend() == "cpu", jax.default_backend()
    import equinox
    print("# jax %s, diffrax %s, equinox %s, lineax %s, XLA_FLAGS=%r" % (
        jax.__version__, diffrax.__version__, equinox.__version__,
        getattr(lineax, "__version__", "?"), os.environ.get("XLA_FLAGS")), file=sys.stderr)

    drift_np, diffusion_np, y0_np = problem_arrays()
    # JAX layout: y @ W with W [in, out].
    params = (
        [(jnp.asarray(w.T), jnp.asarray(b)) for (w, b) in drift_np],
        [(jnp.asarray(w.T), jnp.asarray(b)) for (w, b) in diffusion_np],
    )
    y0 = jnp.asarray(y0_np)

    def mlp(layers, y):
        h = y
        for w, b in layers[:-1]:
            h = jnp.tanh(h @ w + b)
        w, b = layers[-1]
        return h @ w + b

    def drift(t, y, p):  # autonomous
        return mlp(p[0], y)

    def diffusion(t, y, p):  # diagonal noise: g(y) * dW elementwise
        return lineax.DiagonalLinearOperator(jax.nn.sigmoid(mlp(p[1], y)))

    def make(solver, adjoint):
        def solve(p):
            bm = diffrax.VirtualBrownianTree(t0=T0, t1=T1, tol=VBT_TOL, shape=(BATCH, DIM),
                                             key=jax.random.PRNGKey(SEED))
            terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, bm))
            return diffrax.diffeqsolve(
                terms, solver, t0=T0, t1=T1, dt0=DT, y0=y0, args=p,
                saveat=diffrax.SaveAt(t1=True), adjoint=adjoint,
            )

        def loss_fn(p):
            return jnp.mean(solve(p).ys[-1] ** 2)

        vg = jax.jit(jax.value_and_grad(loss_fn))
        stats = jax.jit(lambda p: solve(p).stats)
        return vg, stats

    # Network evaluations per step in the forward solve (drift and diffusion
    # alike): Euler 1 per step; Midpoint 2 per step; ReversibleHeun 1 per step
    # plus 1 at t0 to initialise its auxiliary state.  Checked against a
    # jax.debug.callback counter in a plain forward solve.
    evals = {
        "euler": lambda n: n,
        "midpoint": lambda n: 2 * n,
        "reversible heun": lambda n: n + 1,
    }
    rows = [
        ("euler", diffrax.Euler(), "ito", "recursive checkpoint", diffrax.RecursiveCheckpointAdjoint()),
        ("midpoint", diffrax.Midpoint(), "stratonovich", "recursive checkpoint",
         diffrax.RecursiveCheckpointAdjoint()),
        ("midpoint", diffrax.Midpoint(), "stratonovich", "backsolve", diffrax.BacksolveAdjoint()),
        ("reversible heun", diffrax.ReversibleHeun(), "stratonovich", "recursive checkpoint",
         diffrax.RecursiveCheckpointAdjoint()),
        ("reversible heun", diffrax.ReversibleHeun(), "stratonovich", "backsolve",
         diffrax.BacksolveAdjoint()),
    ]
    # ReversibleHeun.step calls terms.vf then terms.prod (not vf_prod), so under
    # BacksolveAdjoint the AdjointTerm materialises the Jacobian of the adjoint
    # vector field against the whole [256, 4] control at every evaluation: ~100x
    # slower than the other rows (tens of seconds per step).  It is measured,
    # but with few repeats and no extra warm-up (the compiling call already ran
    # one full step).
    SLOW = {("reversible heun", "backsolve"): 3}
    if hasattr(diffrax, "ReversibleAdjoint"):  # not in diffrax 0.7.2
        rows.append(("reversible heun", diffrax.ReversibleHeun(), "stratonovich", "reversible adjoint",
                     diffrax.ReversibleAdjoint()))
    else:
        print("# diffrax %s has no ReversibleAdjoint; no 'reversible heun reversible adjoint' row"
              % diffrax.__version__, file=sys.stderr)

    notes = {
        "recursive checkpoint": "backward differentiates through the (checkpointed, recomputed) steps",
        "backsolve": "continuous stochastic adjoint solved backwards with the same solver "
                     "(Stratonovich only); the backward solve's evaluations are not exposed",
        "reversible adjoint": "algebraically reversible backward pass",
    }
    for sname, solver, calculus, aname, adjoint in rows:
        vg, stats_fn = make(solver, adjoint)
        t_c = time.perf_counter()
        loss, grads = vg(params)  # compile
        jax.block_until_ready(grads)
        compile_s = time.perf_counter() - t_c
        num_steps = int(stats_fn(params)["num_steps"])

        def step():
            out = vg(params)
            jax.block_until_ready(out)

        cap = SLOW.get((sname, aname))
        if cap is None:
            times = time_fn(step, args.warmup, args.repeats)
        else:
            times = time_fn(step, 0, min(args.repeats, cap))
        nfe = evals[sname](num_steps)
        emit("diffrax", "%s %s" % (sname, aname), times, nfe=None, nfe_fwd=nfe,
             diffusion_evals_fwd=nfe, num_steps=num_steps, calculus=calculus,
             loss=round(float(loss), 8), first_call_s=round(compile_s, 3),
             note="nfe_fwd from sol.stats (forward solve only); " + notes[aname]
                  + "; VirtualBrownianTree(tol=%g, key=PRNGKey(%d))" % (VBT_TOL, SEED)
                  + ("" if cap is None else
                     "; ReversibleHeun uses terms.vf, so the backsolve's AdjointTerm builds a "
                     "full Jacobian against the control per evaluation (slow); repeats capped "
                     "at %d, no warm-up beyond the compiling call" % cap))


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed repeats per row (default 20, 3 with --quick)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed warm-up steps after the first (compiling) call "
                         "(default 3, 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="few repeats, for a smoke test")
    ap.add_argument("--dump-problem", metavar="PATH", default=None,
                    help="write the problem (weights as [in, out] row-major, y0, t0, t1, steps) "
                         "as JSON for physflow's bench_sde --problem, and exit")
    ap.add_argument("--only", choices=("torch", "jax"), default=None,
                    help="run one side in this process (used internally)")
    args = ap.parse_args()
    if args.repeats is None:
        args.repeats = 3 if args.quick else 20
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3

    if args.dump_problem:
        drift, diffusion, y0 = problem_arrays()

        def layers_json(layers):
            return [{"w": w.T.astype("float64").ravel().tolist(), "b": b.astype("float64").tolist(),
                     "d_in": int(w.shape[1]), "d_out": int(w.shape[0])} for w, b in layers]

        problem = {
            "drift": layers_json(drift),
            "diffusion": layers_json(diffusion),
            "y0": y0.astype("float64").ravel().tolist(),
            "t0": T0,
            "t1": T1,
            "steps": STEPS,
        }
        with open(args.dump_problem, "w") as f:
            json.dump(problem, f)
        return

    if args.only == "torch":
        run_torch(args)
        return
    if args.only == "jax":
        run_jax(args)
        return

    # Parent: run each side in a fresh single-threaded subprocess.
    env = dict(os.environ)
    env.update(SINGLE_THREAD_ENV)
    passthrough = ["--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    if args.quick:
        passthrough.append("--quick")
    failed = []
    for side in ("torch", "jax"):
        cmd = [sys.executable, os.path.abspath(__file__), "--only", side] + passthrough
        print("# running %s side" % side, file=sys.stderr, flush=True)
        rc = subprocess.call(cmd, env=env)
        if rc != 0:
            failed.append(side)
            print("# %s side failed with exit code %d" % (side, rc), file=sys.stderr)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    # Force the single-thread settings before torch / jax are imported (they are
    # imported lazily above), also when a side is run directly with --only.
    os.environ.update(SINGLE_THREAD_ENV)
    main()
