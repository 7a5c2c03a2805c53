#!/usr/bin/env python3
"""Flow-matching peer benchmark: torchcfm side (see README.md, "Flow matching").

    python fm.py bench [--quick] [--only train|sample|w2]   # JSON lines on stdout
        [--repeats R] [--steps-timed N] [--train-steps N]

The options mirror examples/bench_fm.rs (run_fm.sh passes its arguments to
both sides): --repeats sets the training-timing and sampling repeats,
--steps-timed the timed steps per training repeat, --train-steps the
training steps before the W2 rows.

Run with the venv python (benches/compare/setup_venv.sh installs torchcfm,
POT, scikit-learn, matplotlib and torchdyn).  Everything single-threaded:
OMP/MKL/OpenBLAS = 1 thread, torch.set_num_threads(1) and
set_num_interop_threads(1), POT's emd with numThreads=1 (torchcfm's default).

The problem is torchcfm's 2-D tutorial: 8 Gaussians -> two moons.
  * x0 = torchcfm.utils.sample_8gaussians(n): 8 centres 5 * (cos k pi/4,
    sin k pi/4), a uniformly chosen centre (torch.multinomial) plus
    MultivariateNormal(0, sqrt(0.1) * I) noise -- torchcfm passes sqrt(var) as
    the *covariance*, so each coordinate has variance sqrt(0.1) = 0.316 and
    standard deviation 0.1 ** 0.25 = 0.562; torch RNG.
  * x1 = torchcfm.utils.sample_moons(n) = 3 * X - 1 with X from torchdyn's
    generate_moons(n, noise=0.2) (not sklearn's make_moons): n // 2 points at
    evenly spaced angles linspace(0, pi, n // 2) on the upper arc (cos, sin),
    the rest on the lower arc (1 - cos, 0.5 - sin), every point shifted by
    u * (1, 1) with u ~ U[0, 0.2) (one scalar per point, both coordinates);
    numpy global RNG.
  * model: torchcfm.models.models.MLP(dim=2, time_varying=True, w=256), i.e.
    Linear 3->256, SELU, 256->256, SELU, 256->256, SELU, 256->2 ("selu"), and
    the same layers with Tanh ("tanh"); input cat([x, t]); PyTorch default init.
  * one training step (as in torchcfm's tutorials): x0, x1 sampled as above
    (batch 256), t, xt, ut = FM.sample_location_and_conditional_flow(x0, x1),
    loss = mean((model(cat[xt, t]) - ut) ** 2), backward, Adam(lr=1e-3) step.
    FM = ConditionalFlowMatcher(sigma=0) ("indep") or
    ExactOptimalTransportConditionalFlowMatcher(sigma=0) ("ot": ot.emd plan on
    the squared-distance matrix, then 256 (i, j) pairs drawn from the plan with
    replacement by np.random.choice); t ~ U[0, 1) per sample (torch.rand).

Rows (one JSON object per line on stdout, "side": "torchcfm"; numbers of a
full run, --quick cuts them down, see FULL / QUICK):
  * "train_indep" / "train_ot", per "act": 200 untimed steps, then 3 times
    1000 timed steps (data sampling included); "ms" = median ms per step,
    "min_ms", "samples_per_s" = 256 * 1000 / ms, "repeats", "steps", "batch",
    "data_ms" / "coupling_ms" = the part of "ms" spent in the two samplers /
    in sample_location_and_conditional_flow (OT plan included), measured
    inside the same timed steps.
  * "sample_euler100", per "act": 2048 points from sample_8gaussians, 100
    Euler steps t = 0 -> 1 under torch.no_grad() with a plain loop
    x = x + dt * model(cat[x, t]); "ms" = median over "repeats" after one
    warm-up, "samples": 2048, "nfe": 100.  "sample_euler100_odeint": the same
    with torchdiffeq.odeint(method="euler") on the grid
    t = linspace(0, 1, 101) (all 101 states returned; "nfe" counted).
    Weights do not matter for timing: the model is freshly initialised
    (torch.manual_seed(0)).
  * "w2_indep" / "w2_ot", per "act" and "nfe" in NFES: train 3000 steps from
    torch.manual_seed(0) + np.random.seed(0), sample 2048 points (x0 drawn
    after torch.manual_seed(2), the same for every run) with nfe Euler steps,
    exact W2 to 2048 held-out moons (drawn after np.random.seed(1)): equal
    sizes and uniform weights, so W2^2 = min over permutations of the mean
    squared distance, solved by scipy.optimize.linear_sum_assignment on the
    float64 squared-distance matrix.  Keys "steps", "nfe", "w2",
    "train_seconds" (the 3000 steps, batch sampling included), "final_loss"
    (mean loss of the last 100 steps).
  * "w2_floor": W2 between the held-out moons and a second independent
    sample_moons(2048) draw (np.random.seed(3)): what a perfect model scores.
  * "w2_check": the W2 between x0 and the held-out moons, also computed with
    ot.emd2 (POT's exact network simplex); "w2_lsa", "w2_emd2", "rel_diff".
"""

import os

# Single thread everywhere, before torch / numpy are imported.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")  # torchcfm.utils imports matplotlib.pyplot

import argparse
import json
import math
import statistics
import sys
import time

import numpy as np
import ot
import scipy
from scipy.optimize import linear_sum_assignment
import torch
import torchdiffeq

torch.set_num_threads(1)
torch.set_num_interop_threads(1)

import torchcfm
from torchcfm.conditional_flow_matching import (
    ConditionalFlowMatcher,
    ExactOptimalTransportConditionalFlowMatcher,
)
from torchcfm.models.models import MLP
from torchcfm.utils import sample_8gaussians, sample_moons

SIDE = "torchcfm"
DIM = 2
WIDTH = 256
BATCH = 256
LR = 1e-3
N_EVAL = 2048                     # sampled points and held-out moons for W2
NFES = (2, 5, 10, 20, 50, 100)    # Euler steps for the W2 rows
SAMPLE_NFE = 100                  # Euler steps of the sampling-time rows
ACTS = ("tanh", "selu")
COUPLINGS = ("indep", "ot")

TRAIN_SEED = 0     # torch.manual_seed and np.random.seed before init + training
HELDOUT_SEED = 1   # np.random.seed for the held-out moons
X0_SEED = 2        # torch.manual_seed for the 2048 source points of the W2 rows
FLOOR_SEED = 3     # np.random.seed for the second moons draw of "w2_floor"

# Training: warm-up steps, timed steps per repeat, repeats; sampling: timed
# repeats after one warm-up; quality: training steps and the Euler NFEs at
# which W2 is measured.  --quick (about a minute) cuts everything down; its W2
# numbers are not comparable with full runs (fewer steps; 500 as in
# bench_fm --quick).  One exact W2 (assignment on 2048 x 2048) takes a few
# seconds, hence fewer NFEs in quick.
FULL = dict(warmup=200, steps=1000, repeats=3, sample_repeats=5, q_steps=3000, nfes=NFES)
QUICK = dict(warmup=10, steps=50, repeats=3, sample_repeats=1, q_steps=500, nfes=(10, 100))


def log(msg):
    print("[fm.py] " + msg, file=sys.stderr, flush=True)


def emit(row):
    row = {"side": SIDE, **row}
    print(json.dumps(row), flush=True)


# ---------------------------------------------------------------------- setup
def make_model(act):
    """torchcfm's MLP (SELU) or the same layer sizes with Tanh."""
    if act == "selu":
        return MLP(dim=DIM, time_varying=True, w=WIDTH)
    if act == "tanh":
        return torch.nn.Sequential(
            torch.nn.Linear(DIM + 1, WIDTH), torch.nn.Tanh(),
            torch.nn.Linear(WIDTH, WIDTH), torch.nn.Tanh(),
            torch.nn.Linear(WIDTH, WIDTH), torch.nn.Tanh(),
            torch.nn.Linear(WIDTH, DIM),
        )
    raise ValueError(act)


def make_matcher(coupling):
    if coupling == "indep":
        return ConditionalFlowMatcher(sigma=0.0)
    if coupling == "ot":
        return ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)
    raise ValueError(coupling)


def seed_all(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)


class Trainer:
    """One torchcfm-tutorial training step, with the time spent in the data
    samplers and in the coupling (sample_location_and_conditional_flow)
    accumulated separately."""

    def __init__(self, act, coupling):
        self.model = make_model(act)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.fm = make_matcher(coupling)
        self.data_s = 0.0
        self.coupling_s = 0.0

    def step(self):
        t0 = time.perf_counter()
        self.opt.zero_grad()
        x0 = sample_8gaussians(BATCH)
        x1 = sample_moons(BATCH)
        t1 = time.perf_counter()
        t, xt, ut = self.fm.sample_location_and_conditional_flow(x0, x1)
        t2 = time.perf_counter()
        vt = self.model(torch.cat([xt, t[:, None]], dim=-1))
        loss = torch.mean((vt - ut) ** 2)
        loss.backward()
        self.opt.step()
        self.data_s += t1 - t0
        self.coupling_s += t2 - t1
        return loss


# ----------------------------------------------------------------- sampling
@torch.no_grad()
def euler(model, x, nfe):
    """Plain Euler from t = 0 to 1 in nfe steps: x <- x + dt * model(cat[x, t])."""
    dt = 1.0 / nfe
    tcol = torch.empty(x.shape[0], 1)
    for i in range(nfe):
        tcol.fill_(i * dt)
        x = x + dt * model(torch.cat([x, tcol], dim=1))
    return x


class CountingField(torch.nn.Module):
    """f(t, x) = model(cat[x, t]) for torchdiffeq, counting evaluations."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.nfe = 0

    def forward(self, t, x):
        self.nfe += 1
        return self.model(torch.cat([x, t.expand(x.shape[0], 1)], dim=1))


@torch.no_grad()
def euler_odeint(field, x, nfe):
    """torchdiffeq's fixed-grid Euler on the grid linspace(0, 1, nfe + 1) (it
    steps between the given times and returns the state at each of them)."""
    ts = torch.linspace(0.0, 1.0, nfe + 1)
    return torchdiffeq.odeint(field, x, ts, method="euler")[-1]


# ----------------------------------------------------------------------- W2
def sq_dists(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)


def w2_exact(a, b):
    """Exact W2 between two equal-size uniform point clouds (assignment)."""
    m = sq_dists(a, b)
    rows, cols = linear_sum_assignment(m)
    return math.sqrt(m[rows, cols].mean())


def w2_emd2(a, b):
    m = sq_dists(a, b)
    w = ot.unif(m.shape[0])
    return math.sqrt(ot.emd2(w, w, m, numItermax=10_000_000))


# ---------------------------------------------------------------------- cases
def case_train(cfg):
    for coupling in COUPLINGS:
        for act in ACTS:
            seed_all(TRAIN_SEED)
            tr = Trainer(act, coupling)
            for _ in range(cfg["warmup"]):
                tr.step()
            per_step, data, coup = [], [], []
            for _ in range(cfg["repeats"]):
                tr.data_s = tr.coupling_s = 0.0
                start = time.perf_counter()
                for _ in range(cfg["steps"]):
                    tr.step()
                elapsed = time.perf_counter() - start
                per_step.append(elapsed * 1e3 / cfg["steps"])
                data.append(tr.data_s * 1e3 / cfg["steps"])
                coup.append(tr.coupling_s * 1e3 / cfg["steps"])
            ms = statistics.median(per_step)
            emit({"name": "train_" + coupling, "act": act, "ms": round(ms, 4),
                  "min_ms": round(min(per_step), 4),
                  "samples_per_s": round(BATCH * 1000.0 / ms, 1),
                  "repeats": cfg["repeats"], "steps": cfg["steps"],
                  "warmup": cfg["warmup"], "batch": BATCH,
                  "data_ms": round(statistics.median(data), 4),
                  "coupling_ms": round(statistics.median(coup), 4)})
            log("train_%s %s: %.3f ms/step (data %.3f, coupling %.3f)"
                % (coupling, act, ms, statistics.median(data), statistics.median(coup)))


def time_runs(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def case_sample(cfg):
    for act in ACTS:
        torch.manual_seed(TRAIN_SEED)
        model = make_model(act).eval()
        torch.manual_seed(X0_SEED)
        x0 = sample_8gaussians(N_EVAL)
        times = time_runs(lambda: euler(model, x0, SAMPLE_NFE), cfg["sample_repeats"])
        emit({"name": "sample_euler%d" % SAMPLE_NFE, "act": act,
              "ms": round(statistics.median(times), 4), "min_ms": round(min(times), 4),
              "repeats": len(times), "samples": N_EVAL, "nfe": SAMPLE_NFE,
              "solver": "plain loop"})
        log("sample_euler%d %s: %.2f ms" % (SAMPLE_NFE, act, statistics.median(times)))

        field = CountingField(model)
        times = time_runs(lambda: euler_odeint(field, x0, SAMPLE_NFE), cfg["sample_repeats"])
        nfe = field.nfe // (len(times) + 1)
        emit({"name": "sample_euler%d_odeint" % SAMPLE_NFE, "act": act,
              "ms": round(statistics.median(times), 4), "min_ms": round(min(times), 4),
              "repeats": len(times), "samples": N_EVAL, "nfe": nfe,
              "solver": "torchdiffeq.odeint euler"})
        log("sample_euler%d_odeint %s: %.2f ms (nfe %d)"
            % (SAMPLE_NFE, act, statistics.median(times), nfe))


def case_w2(cfg):
    np.random.seed(HELDOUT_SEED)
    heldout = sample_moons(N_EVAL).numpy()
    np.random.seed(FLOOR_SEED)
    second = sample_moons(N_EVAL).numpy()
    torch.manual_seed(X0_SEED)
    x0 = sample_8gaussians(N_EVAL)

    floor = w2_exact(second, heldout)
    emit({"name": "w2_floor", "w2": round(floor, 6), "samples": N_EVAL})
    log("w2_floor (two moons draws): %.5f" % floor)

    # Cross-check the assignment W2 against POT's exact EMD once.
    a = x0.numpy()
    lsa, emd = w2_exact(a, heldout), w2_emd2(a, heldout)
    emit({"name": "w2_check", "w2_lsa": lsa, "w2_emd2": emd,
          "rel_diff": abs(lsa - emd) / emd, "note": "x0 (8 gaussians) vs held-out moons"})
    log("w2 check (x0 vs moons): assignment %.9f, ot.emd2 %.9f" % (lsa, emd))

    steps = cfg["q_steps"]
    for coupling in COUPLINGS:
        for act in ACTS:
            seed_all(TRAIN_SEED)
            tr = Trainer(act, coupling)
            losses = []
            start = time.perf_counter()
            for _ in range(steps):
                losses.append(tr.step().item())
            train_s = time.perf_counter() - start
            final_loss = float(np.mean(losses[-100:]))
            model = tr.model.eval()
            for nfe in cfg["nfes"]:
                x1 = euler(model, x0, nfe).numpy()
                w2 = w2_exact(x1, heldout)
                emit({"name": "w2_" + coupling, "act": act, "steps": steps, "nfe": nfe,
                      "w2": round(w2, 6), "samples": N_EVAL, "batch": BATCH,
                      "train_seconds": round(train_s, 3), "final_loss": round(final_loss, 5)})
                log("w2_%s %s steps %d nfe %d: %.5f" % (coupling, act, steps, nfe, w2))


CASES = {"train": case_train, "sample": case_sample, "w2": case_w2}


def cmd_bench(quick, only, repeats=None, steps_timed=None, train_steps=None):
    cfg = dict(QUICK if quick else FULL)
    if repeats is not None:
        cfg["repeats"] = cfg["sample_repeats"] = repeats
    if steps_timed is not None:
        cfg["steps"] = steps_timed
    if train_steps is not None:
        cfg["q_steps"] = train_steps
    log("torch %s, torchcfm %s, torchdiffeq %s, POT %s, numpy %s, scipy %s; threads %d/%d; %s"
        % (torch.__version__, torchcfm.__version__, torchdiffeq.__version__, ot.__version__,
           np.__version__, scipy.__version__, torch.get_num_threads(),
           torch.get_num_interop_threads(), "quick" if quick else "full"))
    if os.path.exists("/proc/loadavg"):
        with open("/proc/loadavg") as f:
            log("load average before: " + " ".join(f.read().split()[:3]))
    for name, fn in CASES.items():
        if only and only != name:
            continue
        start = time.perf_counter()
        fn(cfg)
        log("%s cases took %.1f s" % (name, time.perf_counter() - start))
    if os.path.exists("/proc/loadavg"):
        with open("/proc/loadavg") as f:
            log("load average after: " + " ".join(f.read().split()[:3]))


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pb = sub.add_parser("bench", help="run the cases, JSON lines on stdout")
    pb.add_argument("--quick", action="store_true",
                    help="fewer steps and repeats (about 1.5 minutes)")
    pb.add_argument("--only", choices=sorted(CASES), default=None,
                    help="run one group of cases")
    pb.add_argument("--repeats", type=int, default=None,
                    help="training-timing and sampling repeats (default 3 / 5)")
    pb.add_argument("--steps-timed", type=int, default=None,
                    help="timed training steps per repeat (default 1000)")
    pb.add_argument("--train-steps", type=int, default=None,
                    help="training steps before the W2 rows (default 3000)")
    args = p.parse_args(argv[1:])
    if args.cmd == "bench":
        cmd_bench(args.quick, args.only, args.repeats, args.steps_timed, args.train_steps)


if __name__ == "__main__":
    main(sys.argv)
