#!/usr/bin/env python3
"""Peer side of physflow benchmark B5 (neural-ODE training step).

Problem (identical on every side):
  * vector field: MLP 2 -> 64 -> 64 -> 2, tanh after both hidden layers,
    linear output, autonomous (no time input), float32;
  * batch 256, y0 ~ N(0, I) of shape [256, 2] (fixed seed);
  * output times t = linspace(0, 1, 10) (10 times, t = 0 included);
  * adaptive solve, rtol = atol = 1e-6 (also for adjoint solves);
  * loss = mean((y(t_i) - target)^2) over all 10 times, target = zeros [10, 256, 2];
  * one step = forward solve + loss + backward (grads w.r.t. all net parameters).

Weights, y0 are drawn once with numpy (seed 0, PyTorch-default-like
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) init) and loaded into both torch and JAX, so
torchdiffeq and diffrax solve exactly the same problem.

Rows (one JSON object per line on stdout):
  {"side": "torchdiffeq", "name": "odeint dopri5", "ms": ..., "nfe": ..., "repeats": N, ...}
Extra keys: "nfe_fwd" (evaluations in the forward solve), "nfe_bwd" (in the
backward pass, when known), "note".

Every side runs single-threaded in its own subprocess (torch and JAX are never
imported into the same process).  Usage:

  python neural_ode.py [--repeats N] [--quick] [--only torch|jax]
"""

import argparse
import json
import os
import subprocess
import sys
import time

SEED = 0
BATCH = 256
DIM = 2
HIDDEN = 64
N_TIMES = 10
RTOL = 1e-6
ATOL = 1e-6
MLP_EVALS = 20  # "mlp forward x20" rows

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
    """Weights (torch Linear layout [out, in]), y0, ts, target as float32 numpy."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    layers = []
    for fan_in, fan_out in ((DIM, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, DIM)):
        bound = 1.0 / np.sqrt(fan_in)
        w = rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(np.float32)
        b = rng.uniform(-bound, bound, size=(fan_out,)).astype(np.float32)
        layers.append((w, b))
    y0 = rng.standard_normal((BATCH, DIM)).astype(np.float32)
    ts = np.linspace(0.0, 1.0, N_TIMES).astype(np.float32)
    target = np.zeros((N_TIMES, BATCH, DIM), dtype=np.float32)
    return layers, y0, ts, target


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
    import torchdiffeq
    from torchdiffeq import odeint, odeint_adjoint

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    print("# torch %s, torchdiffeq %s, threads %d/%d" % (
        torch.__version__, getattr(torchdiffeq, "__version__", "?"),
        torch.get_num_threads(), torch.get_num_interop_threads()), file=sys.stderr)

    layers, y0_np, ts_np, target_np = problem_arrays()

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = torch.nn.Linear(DIM, HIDDEN)
            self.l2 = torch.nn.Linear(HIDDEN, HIDDEN)
            self.l3 = torch.nn.Linear(HIDDEN, DIM)
            with torch.no_grad():
                for lin, (w, b) in zip((self.l1, self.l2, self.l3), layers):
                    lin.weight.copy_(torch.from_numpy(w))
                    lin.bias.copy_(torch.from_numpy(b))
            self.nfe = 0

        def mlp(self, y):
            return self.l3(torch.tanh(self.l2(torch.tanh(self.l1(y)))))

        def forward(self, t, y):  # autonomous: t is ignored
            self.nfe += 1
            return self.mlp(y)

    net = Field().float()
    params = tuple(net.parameters())
    y0 = torch.from_numpy(y0_np)
    ts = torch.from_numpy(ts_np)
    target = torch.from_numpy(target_np)

    # torchdiffeq's adaptive method names (tsit5 is only used if present).
    from torchdiffeq._impl.odeint import SOLVERS

    methods = [m for m in ("tsit5", "dopri5") if m in SOLVERS]
    note_no_tsit5 = None
    if "tsit5" not in SOLVERS:
        note_no_tsit5 = "torchdiffeq %s has no tsit5 (methods: %s)" % (
            getattr(torchdiffeq, "__version__", "?"),
            ",".join(sorted(SOLVERS)),
        )
        print("# " + note_no_tsit5, file=sys.stderr)

    def make_step(method, adjoint):
        def step():
            for p in params:
                p.grad = None
            net.nfe = 0
            if adjoint:
                sol = odeint_adjoint(
                    net, y0, ts, rtol=RTOL, atol=ATOL, method=method,
                    adjoint_rtol=RTOL, adjoint_atol=ATOL, adjoint_method=method,
                    adjoint_params=params,
                )
            else:
                sol = odeint(net, y0, ts, rtol=RTOL, atol=ATOL, method=method)
            loss = torch.mean((sol - target) ** 2)
            nfe_fwd = net.nfe
            loss.backward()
            return nfe_fwd, net.nfe - nfe_fwd, float(loss.detach())
        return step

    for method in methods:
        for adjoint, label in ((False, "odeint"), (True, "odeint_adjoint")):
            step = make_step(method, adjoint)
            nfe_fwd, nfe_bwd, loss = step()  # also checks it runs
            times = time_fn(step, args.warmup, args.repeats)
            note = None
            if adjoint:
                note = "nfe counts forward() calls in the forward solve plus the adjoint solve"
            else:
                note = "backprop through the solver; backward makes no vector-field calls"
            if method == "dopri5" and note_no_tsit5:
                note += "; " + note_no_tsit5
            emit("torchdiffeq", "%s %s" % (label, method), times, nfe=nfe_fwd + nfe_bwd,
                 nfe_fwd=nfe_fwd, nfe_bwd=nfe_bwd, loss=round(loss, 8), note=note)

    # Eager MLP forward x20 at batch 256, no autograd (vs physflow fused CPU MLP).
    def mlp20():
        with torch.no_grad():
            y = y0
            for _ in range(MLP_EVALS):
                out = net.mlp(y)
            return out

    reps = max(args.repeats, 10 if args.quick else 200)
    times = time_fn(mlp20, max(args.warmup, 5), reps)
    emit("torch", "eager mlp forward x20", times, nfe=MLP_EVALS,
         note="torch.no_grad, %d evaluations of the MLP at batch %d, eager" % (MLP_EVALS, BATCH))


# --------------------------------------------------------------------------- jax
def run_jax(args):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import diffrax

    jax.config.update("jax_platforms", "cpu")
    assert jax.default_backend() == "cpu", jax.default_backend()
    import equinox
    print("# jax %s, jaxlib %s, diffrax %s, equinox %s, XLA_FLAGS=%r" % (
        jax.__version__, jax.lib.__version__ if hasattr(jax.lib, "__version__") else "?",
        diffrax.__version__, equinox.__version__, os.environ.get("XLA_FLAGS")), file=sys.stderr)

    layers, y0_np, ts_np, target_np = problem_arrays()
    # JAX layout: y @ W with W [in, out].
    params = [(jnp.asarray(w.T), jnp.asarray(b)) for (w, b) in layers]
    y0 = jnp.asarray(y0_np)
    ts = jnp.asarray(ts_np)
    target = jnp.asarray(target_np)

    def mlp(p, y):
        (w1, b1), (w2, b2), (w3, b3) = p
        h = jnp.tanh(y @ w1 + b1)
        h = jnp.tanh(h @ w2 + b2)
        return h @ w3 + b3

    def field(t, y, p):  # autonomous
        return mlp(p, y)

    term = diffrax.ODETerm(field)
    saveat = diffrax.SaveAt(ts=ts)

    def make(solver, adjoint):
        def solve(p):
            return diffrax.diffeqsolve(
                term, solver, t0=0.0, t1=1.0, dt0=None, y0=y0, args=p,
                saveat=saveat,
                stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
                adjoint=adjoint, max_steps=100_000,
            )

        def loss_fn(p):
            sol = solve(p)
            return jnp.mean((sol.ys - target) ** 2)

        vg = jax.jit(jax.value_and_grad(loss_fn))
        stats = jax.jit(lambda p: solve(p).stats)
        return vg, stats

    # Both Tsit5 and Dopri5 are 7-stage FSAL methods: 6 new evaluations per
    # attempted step (rejected ones included; num_steps counts both), +1 for
    # the first stage of the very first step.  With dt0=None diffrax 0.7.2's
    # PIDController returns a fixed dt0=0.01 for the wrapped ODETerm, so the
    # initial step selection makes no evaluations.  This formula was checked
    # against a jax.debug.callback counter in a plain forward solve.
    def fwd_evals(num_steps):
        return 6 * int(num_steps) + 1

    solvers = (("tsit5", diffrax.Tsit5()), ("dopri5", diffrax.Dopri5()))
    adjoints = (
        ("recursive checkpoint", diffrax.RecursiveCheckpointAdjoint()),
        ("backsolve", diffrax.BacksolveAdjoint()),
    )
    for sname, solver in solvers:
        for aname, adjoint in adjoints:
            vg, stats_fn = make(solver, adjoint)
            loss, grads = vg(params)  # compile
            jax.block_until_ready(grads)
            st = stats_fn(params)
            num_steps = int(st["num_steps"])
            nacc = int(st["num_accepted_steps"])
            nrej = int(st["num_rejected_steps"])

            def step():
                out = vg(params)
                jax.block_until_ready(out)

            times = time_fn(step, args.warmup, args.repeats)
            nfe = fwd_evals(num_steps)
            if aname == "backsolve":
                note = ("nfe = forward solve only, 6*num_steps+1 from sol.stats; "
                        "the backward adjoint solve's evaluations are not exposed")
            else:
                note = ("nfe = forward solve only, 6*num_steps+1 from sol.stats; "
                        "the backward pass differentiates through (recomputed) stages")
            emit("diffrax", "%s %s" % (sname, aname), times, nfe=nfe, nfe_fwd=nfe,
                 num_steps=num_steps, num_accepted=nacc, num_rejected=nrej,
                 loss=round(float(loss), 8), note=note)

    mlp_jit = jax.jit(mlp)

    def mlp20():
        y = y0
        for _ in range(MLP_EVALS):
            out = mlp_jit(params, y)
        jax.block_until_ready(out)

    reps = max(args.repeats, 10 if args.quick else 200)
    times = time_fn(mlp20, max(args.warmup, 5), reps)
    emit("jax", "jit mlp forward x20", times, nfe=MLP_EVALS,
         note="info only: 20 dispatches of a jitted MLP at batch %d" % BATCH)


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed repeats per row (default 20, 3 with --quick)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed warm-up steps (default 3, 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="few repeats, for a smoke test")
    ap.add_argument("--dump-problem", metavar="PATH", default=None,
                    help="write the problem (weights as [in, out] row-major, y0, ts) as JSON "
                         "for physflow's bench_b5 --problem, and exit")
    ap.add_argument("--only", choices=("torch", "jax"), default=None,
                    help="run one side in this process (used internally)")
    args = ap.parse_args()
    if args.repeats is None:
        args.repeats = 3 if args.quick else 20
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3

    if args.dump_problem:
        layers, y0, ts, _ = problem_arrays()
        problem = {
            "layers": [{"w": w.T.astype("float64").ravel().tolist(), "b": b.astype("float64").tolist(),
                        "d_in": int(w.shape[1]), "d_out": int(w.shape[0])} for w, b in layers],
            "y0": y0.astype("float64").ravel().tolist(),
            "ts": ts.astype("float64").tolist(),
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
