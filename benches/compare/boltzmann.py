#!/usr/bin/env python3
"""Boltzmann generator trained by energy (reverse KL): normflows side (see README.md,
"Boltzmann generators").  physflow's side is examples/bench_boltzmann.rs; both print the
same JSON lines and run_boltzmann.sh runs them alternately.

    python boltzmann.py --system dw2d|dw4 [--seconds 60] [--seed 0] [--eval-every S]
                        [--coupling block|subclass]
    python boltzmann.py --selftest        # checks the coupling, masks, Helmert basis, energies

Run with the venv python (benches/compare/setup_venv.sh installs normflows 1.7.3).  float64
(torch.set_default_dtype), one thread (OMP/MKL/OpenBLAS = 1, torch.set_num_threads(1),
set_num_interop_threads(1)).

The problem (identical on both sides), beta = 1:
  * dw2d: u = a x0 + b x0^2 + c x0^4 + x1^2 / 2, a = 0, b = -4, c = 1; flow dimension D = 2.
  * dw4: 4 particles in 2D, u = sum_{i<j} a (d_ij - d0)^4 + b (d_ij - d0)^2, a = 0.9, b = -4,
    d0 = 4.  Translation invariant, so the flow lives in the D = 6 centre-of-mass-free
    coordinates y, x = Q y, Q = H (x) I_2 with H the n x (n-1) Helmert basis (column k = 1..n-1:
    (1, ..., 1, -k, 0, ..., 0) / sqrt(k (k + 1)), k ones); particle-major layout,
    x[b, i*d + c] = sum_k H[i, k] y[b, k*d + c].  The target's log_prob is -beta u(Q y).
  * base: standard normal in D dimensions.
  * flow: RealNVP, L = 8 affine couplings.  Layer l (0-based, l = 0 is applied first to the
    base sample) conditions on the indices i with i % 2 == l % 2 and transforms the others.
    Conditioner: MLP [n_cond, 64, 64, 2 n_trans], tanh after both hidden layers, PyTorch's
    default nn.Linear init except the last layer, which is zero (the flow starts as the
    identity).  Outputs [s_raw (n_trans columns), t (n_trans columns)]; bounded scale
    s = 3 tanh(s_raw / 3); x_B = z_B exp(s) + t, x_A = z_A; log|det dx/dz| = sum s.
    No ActNorm, no permutations.
  * training: loss = model.reverse_kld(256) = mean(log q(x) + beta u(x)), x ~ flow (batch 256,
    fresh base samples every step), Adam(lr=1e-3) with PyTorch's defaults otherwise,
    torch.nn.utils.clip_grad_norm_(params, 100) before each step.

How normflows expresses it (--coupling block, the default):
  * nf.NormalizingFlow(q0=nf.distributions.DiagGaussian(D, trainable=False), flows=[...],
    p=<nf.distributions.Target subclass>); loss model.reverse_kld(256) (score_fn=True, i.e. the
    plain reparametrised estimator: mean over the batch of log q0(z) - sum log|det| - log p(x));
    evaluation samples from model.sample(20000).
  * each coupling is nf.flows.AffineCouplingBlock(param_map, scale=True, scale_map="exp",
    split_mode=...), i.e. Split -> nf.flows.AffineCoupling -> Merge.  Split "checkerboard" on a
    [batch, D] tensor (D even) gives z1 = the odd indices, z2 = the even ones;
    "checkerboard_inv" the other way round; AffineCoupling conditions on z1 and transforms z2,
    and Merge puts both back at their original indices.  So layer l uses
    "checkerboard_inv" for l even (condition on the even indices) and "checkerboard" for l odd.
  * AffineCoupling with scale_map="exp" computes z2 * exp(param[:, 1::2]) + param[:, 0::2] and
    log_det = sum param[:, 1::2], with no bound of its own.  The bounded scale therefore lives
    in param_map (BoundedParamMap below): it runs the MLP, applies s = 3 tanh(s_raw / 3) to the
    first n_trans outputs and interleaves [t_0, s_0, t_1, s_1, ...] into AffineCoupling's
    (shift, scale) layout.  The layer is then exactly the one specified; --selftest checks it
    against a direct implementation of the formula, both masks, the inverse and log|det|
    against the autograd Jacobian.
  * nf.flows.MaskedAffineFlow does not fit: it feeds the masked full vector b * z (D inputs,
    not n_cond) to separate s and t networks and has no bounded scale.
  * --coupling subclass replaces AffineCouplingBlock by a leaner nf.flows.Flow subclass with
    the same arithmetic (index gather / scatter instead of Split/Merge, which rebuild their
    checkerboard index tensors on every call).  It exists to measure normflows' layer
    overhead; its rows say "coupling": "subclass" and their impl is "normflows-subclass" so
    the table keeps them apart.

Evaluation: every --eval-every seconds of training time (default seconds / 10) the clock stops
and 20000 fresh samples are drawn (from an RNG stream of their own, so training does not depend
on the evaluation schedule); log w = -beta u(x) - log q(x); Kish ESS = (sum w)^2 / sum w^2 with
the maximum log w subtracted first; "kl" = mean(-log w), the reverse KL up to the constant
log Z.  For dw2d log Z is known by quadrature, and the rows also carry "kl_true" = kl + log Z
(the reverse KL itself, >= 0; a flow that has dropped one well sits near log 2 = 0.69) and
"left_fraction" (the share of samples with x0 < 0; 0.5 for the target) with its reweighted
value "left_fraction_rw".

Non-finite losses or gradients are not skipped and not hidden: like physflow (whose training
returns Error::Diverged at the first one), training stops at the first non-finite loss or
gradient norm, the update is not applied, and the last row says "diverged": true with
"nonfinite" = 1 and "diverged_at_step"; every row carries "nonfinite" (0 normally).  The
evaluation also reports "eval_nonfinite", the number of the 20000 samples whose log w is not
finite (ESS/N is then NaN, printed as NaN).

Rows, one JSON object per line on stdout:
  {"bench": "boltzmann", "impl": "normflows", "system": "dw2d", "seed": 0, "step": n,
   "train_seconds": t, "ess_fraction": e, "kl": k, "samples_per_s": 256 n / t, "threads": 1,
   ... extra keys: "budget_seconds", "eval_samples", "train_loss" (mean loss since the previous
   row), "nonfinite", "eval_nonfinite", "coupling", dw2d: "kl_true", "left_fraction",
   "left_fraction_rw"}
and the last row also has "final": true.
"""

import os

# Single thread everywhere, before torch / numpy are imported.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)
torch.set_num_interop_threads(1)

import normflows as nf

BATCH = 256
LR = 1e-3
CLIP = 100.0
LAYERS = 8
HIDDEN = (64, 64)
S_MAX = 3.0
BETA = 1.0
EVAL_SAMPLES = 20000
EVAL_SEED_OFFSET = 0x5EED  # evaluation k draws from torch.manual_seed(seed * 1_000_003 + offset + k)


def log(msg):
    print("[boltzmann.py] " + msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- targets
def helmert(n):
    """n x (n-1) Helmert basis: column k-1 = (1, ..., 1, -k, 0, ..., 0) / sqrt(k (k+1)), k ones."""
    h = np.zeros((n, n - 1))
    for k in range(1, n):
        h[:k, k - 1] = 1.0
        h[k, k - 1] = -float(k)
        h[:, k - 1] /= math.sqrt(k * (k + 1))
    return h


class DoubleWell2D(nf.distributions.Target):
    """u = a x0 + b x0^2 + c x0^4 + x1^2 / 2; log_prob = -beta u."""

    def __init__(self, a=0.0, b=-4.0, c=1.0, beta=BETA):
        super().__init__()
        self.a, self.b, self.c, self.beta = a, b, c, beta

    def energy(self, x):
        x0, x1 = x[:, 0], x[:, 1]
        return self.a * x0 + self.b * x0 ** 2 + self.c * x0 ** 4 + 0.5 * x1 ** 2

    def log_prob(self, z):
        return -self.beta * self.energy(z)

    def log_z(self):
        """log of the integral of exp(-beta u) over R^2 (x0 by quadrature, x1 Gaussian)."""
        x = np.linspace(-8.0, 8.0, 400_001)
        e = -self.beta * (self.a * x + self.b * x ** 2 + self.c * x ** 4)
        m = e.max()
        z0 = np.trapezoid(np.exp(e - m), x)
        return float(m + math.log(z0) + 0.5 * math.log(2.0 * math.pi / self.beta))


class MultiDoubleWell(nn.Module):
    """DW4 in Cartesian coordinates: x [batch, n d] particle-major."""

    def __init__(self, n=4, d=2, a=0.9, b=-4.0, d0=4.0):
        super().__init__()
        self.n, self.d, self.a, self.b, self.d0 = n, d, a, b, d0
        iu = torch.triu_indices(n, n, offset=1)
        self.register_buffer("iu0", iu[0])
        self.register_buffer("iu1", iu[1])

    def energy(self, x):
        p = x.reshape(-1, self.n, self.d)
        diff = p[:, self.iu0] - p[:, self.iu1]
        s = torch.sqrt((diff ** 2).sum(-1)) - self.d0
        return (self.a * s ** 4 + self.b * s ** 2).sum(-1)


class InternalTarget(nf.distributions.Target):
    """A translation-invariant energy in the centre-of-mass-free coordinates: log_prob(y) =
    -beta u(Q y), Q = H (x) I_d (n d x (n-1) d)."""

    def __init__(self, cart, beta=BETA):
        super().__init__()
        self.cart, self.beta = cart, beta
        self.register_buffer("q", torch.tensor(np.kron(helmert(cart.n), np.eye(cart.d))))

    def to_cartesian(self, y):
        return y @ self.q.T

    def energy(self, y):
        return self.cart.energy(self.to_cartesian(y))

    def log_prob(self, z):
        return -self.beta * self.energy(z)


def make_target(system):
    if system == "dw2d":
        return DoubleWell2D(), 2
    if system == "dw4":
        return InternalTarget(MultiDoubleWell()), 6
    raise ValueError(system)


# ----------------------------------------------------------------------------- flow
def mlp(n_in, n_out, hidden=HIDDEN):
    """[n_in, hidden..., n_out], tanh after every hidden layer, default nn.Linear init except the
    last layer, which is zero."""
    layers, w = [], n_in
    for h in hidden:
        layers += [nn.Linear(w, h), nn.Tanh()]
        w = h
    last = nn.Linear(w, n_out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


def masks(dim, parity):
    cond = [i for i in range(dim) if i % 2 == parity % 2]
    trans = [i for i in range(dim) if i % 2 != parity % 2]
    return cond, trans


def bounded(raw, s_max=S_MAX):
    return s_max * torch.tanh(raw / s_max)


class BoundedParamMap(nn.Module):
    """param_map for nf.flows.AffineCoupling: z1 -> MLP -> [s_raw, t] -> interleaved
    [t_0, s_0, t_1, s_1, ...] with s = s_max tanh(s_raw / s_max) (AffineCoupling reads the
    shift from columns 0::2 and the log-scale from 1::2)."""

    def __init__(self, n_cond, n_trans, hidden=HIDDEN, s_max=S_MAX):
        super().__init__()
        self.nt, self.s_max = n_trans, s_max
        self.net = mlp(n_cond, 2 * n_trans, hidden)

    def forward(self, z1):
        out = self.net(z1)
        s = bounded(out[:, : self.nt], self.s_max)
        t = out[:, self.nt:]
        return torch.stack((t, s), dim=2).reshape(out.shape[0], 2 * self.nt)


def block_coupling(dim, parity):
    """normflows' AffineCouplingBlock (Split -> AffineCoupling -> Merge) conditioning on the
    indices of parity `parity`."""
    cond, trans = masks(dim, parity)
    mode = "checkerboard_inv" if parity % 2 == 0 else "checkerboard"
    return nf.flows.AffineCouplingBlock(BoundedParamMap(len(cond), len(trans)), scale=True,
                                        scale_map="exp", split_mode=mode)


class SubclassCoupling(nf.flows.Flow):
    """The same layer as an nf.flows.Flow subclass (gather / scatter by index)."""

    def __init__(self, dim, parity, hidden=HIDDEN, s_max=S_MAX):
        super().__init__()
        cond, trans = masks(dim, parity)
        self.register_buffer("cond", torch.tensor(cond))
        self.register_buffer("trans", torch.tensor(trans))
        self.nt, self.s_max = len(trans), s_max
        self.net = mlp(len(cond), 2 * len(trans), hidden)

    def _st(self, z):
        out = self.net(z.index_select(1, self.cond))
        return bounded(out[:, : self.nt], self.s_max), out[:, self.nt:]

    def forward(self, z):
        s, t = self._st(z)
        x = z.index_copy(1, self.trans, z.index_select(1, self.trans) * torch.exp(s) + t)
        return x, s.sum(-1)

    def inverse(self, x):
        s, t = self._st(x)
        z = x.index_copy(1, self.trans, (x.index_select(1, self.trans) - t) * torch.exp(-s))
        return z, -s.sum(-1)


def build(system, coupling="block"):
    target, dim = make_target(system)
    make = block_coupling if coupling == "block" else SubclassCoupling
    flows = [make(dim, l % 2) for l in range(LAYERS)]
    q0 = nf.distributions.DiagGaussian(dim, trainable=False)
    return nf.NormalizingFlow(q0=q0, flows=flows, p=target), dim


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model, system, gen_seed):
    """ESS/N, KL estimate and diagnostics on EVAL_SAMPLES fresh samples (own RNG stream)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(gen_seed)
        x, log_q = model.sample(EVAL_SAMPLES)
    log_w = (model.p.log_prob(x) - log_q).numpy()
    finite = np.isfinite(log_w)
    res = {"eval_nonfinite": int((~finite).sum())}
    if finite.all():
        w = np.exp(log_w - log_w.max())
        res["ess_fraction"] = float(w.sum() ** 2 / (w ** 2).sum() / EVAL_SAMPLES)
    else:
        w = None
        res["ess_fraction"] = float("nan")
    res["kl"] = float(-log_w.mean())
    if system == "dw2d":
        res["kl_true"] = res["kl"] + model.p.log_z()
        left = x[:, 0].numpy() < 0.0
        res["left_fraction"] = float(left.mean())
        res["left_fraction_rw"] = float((w * left).sum() / w.sum()) if w is not None else float("nan")
    return res


# ----------------------------------------------------------------------------- training
def run(args):
    eval_every = args.eval_every if args.eval_every else args.seconds / 10.0
    if not (args.seconds > 0 and eval_every > 0):
        sys.exit("boltzmann.py: --seconds and --eval-every must be > 0")
    torch.manual_seed(args.seed)
    model, dim = build(args.system, args.coupling)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=LR)
    impl = "normflows" if args.coupling == "block" else "normflows-subclass"
    log("torch %s, normflows %s, numpy %s; system %s (D = %d), seed %d, %g s, eval every %g s, "
        "coupling %s, %d parameters, threads %d/%d"
        % (torch.__version__, nf.__version__, np.__version__, args.system, dim, args.seed,
           args.seconds, eval_every, args.coupling, sum(p.numel() for p in params),
           torch.get_num_threads(), torch.get_num_interop_threads()))

    trained, steps, k = 0.0, 0, 0
    nonfinite, diverged_at = 0, None
    while True:
        k += 1
        stop_at = min(k * eval_every, args.seconds)
        loss_sum, loss_n = 0.0, 0
        start = time.perf_counter()
        while trained + (time.perf_counter() - start) < stop_at:
            opt.zero_grad(set_to_none=True)
            loss = model.reverse_kld(BATCH)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, CLIP)
            lv = loss.item()
            if not (math.isfinite(lv) and math.isfinite(gnorm.item())):
                nonfinite += 1
                diverged_at = steps
                log("non-finite loss %r / gradient norm %r at step %d: training stops"
                    % (lv, gnorm.item(), steps))
                break
            opt.step()
            steps += 1
            loss_sum += lv
            loss_n += 1
        trained += time.perf_counter() - start
        ev = evaluate(model, args.system, args.seed * 1_000_003 + EVAL_SEED_OFFSET + k)
        last = diverged_at is not None or trained >= args.seconds
        row = {"bench": "boltzmann", "impl": impl, "system": args.system, "seed": args.seed,
               "step": steps, "train_seconds": round(trained, 4),
               "ess_fraction": ev.pop("ess_fraction"), "kl": ev.pop("kl"),
               "samples_per_s": round(BATCH * steps / max(trained, 1e-12), 1), "threads": 1,
               "budget_seconds": args.seconds, "eval_samples": EVAL_SAMPLES,
               "train_loss": loss_sum / loss_n if loss_n else None,
               "nonfinite": nonfinite, **ev, "coupling": args.coupling}
        if diverged_at is not None:
            row["diverged"] = True
            row["diverged_at_step"] = diverged_at
        if last:
            row["final"] = True
        print(json.dumps(row), flush=True)
        log("%s seed %d: %.1f s, step %d, ESS/N %.4f, KL %.4f%s"
            % (args.system, args.seed, trained, steps, row["ess_fraction"], row["kl"],
               (", left %.3f (rw %.3f)" % (row["left_fraction"], row["left_fraction_rw"]))
               if "left_fraction" in row else ""))
        if last:
            return 1 if diverged_at is not None else 0


# ----------------------------------------------------------------------------- self-test
def selftest():
    """Checks the layer composition against the spec; prints one line per check, exits 1 on a
    failure."""
    failures = []

    def check(name, ok, detail=""):
        print("[selftest] %-60s %s %s" % (name, "ok" if ok else "FAIL", detail), file=sys.stderr)
        if not ok:
            failures.append(name)

    torch.manual_seed(123)
    for dim in (2, 6):
        for parity in (0, 1):
            cond, trans = masks(dim, parity)
            blk = block_coupling(dim, parity)
            sub = SubclassCoupling(dim, parity)
            # Non-zero last layers (random, larger than the default so the bound matters) and
            # the same weights in both implementations.
            with torch.no_grad():
                last = blk.flows[1].param_map.net[-1]
                last.weight.normal_(0.0, 2.0)
                last.bias.normal_(0.0, 2.0)
            sub.net.load_state_dict(blk.flows[1].param_map.net.state_dict())
            z = 2.0 * torch.randn(64, dim)
            x, ld = blk(z)
            # Reference: the spec's formula, written out.
            out = blk.flows[1].param_map.net(z[:, cond])
            s = S_MAX * torch.tanh(out[:, : len(trans)] / S_MAX)
            t = out[:, len(trans):]
            xr = z.clone()
            xr[:, trans] = z[:, trans] * torch.exp(s) + t
            tag = "D=%d parity %d (cond %s, trans %s)" % (dim, parity, cond, trans)
            check("block == formula, " + tag, torch.allclose(x, xr, atol=1e-13, rtol=0)
                  and torch.allclose(ld, s.sum(-1), atol=1e-13, rtol=0))
            check("block leaves cond coords unchanged, " + tag, torch.equal(x[:, cond], z[:, cond]))
            xs, lds = sub(z)
            check("subclass == block, " + tag, torch.allclose(xs, x, atol=1e-13, rtol=0)
                  and torch.allclose(lds, ld, atol=1e-13, rtol=0))
            zb, ldi = blk.inverse(x)
            check("block inverse, " + tag, torch.allclose(zb, z, atol=1e-10, rtol=0)
                  and torch.allclose(ldi, -ld, atol=1e-12, rtol=0))
            jac = torch.autograd.functional.jacobian(lambda v: blk(v[None])[0][0], z[0])
            check("block log|det| == autograd, " + tag,
                  abs(torch.linalg.slogdet(jac)[1].item() - ld[0].item()) < 1e-10)
            check("|s| <= s_max, " + tag, bool((s.abs() <= S_MAX).all()))
    # Fresh flows are the identity and the layer order alternates as specified.
    for system in ("dw2d", "dw4"):
        model, dim = build(system)
        z = torch.randn(16, dim)
        x = z
        ld = torch.zeros(16)
        for f in model.flows:
            x, l = f(x)
            ld = ld + l
        check("fresh %s flow is the identity" % system, torch.equal(x, z) and torch.equal(ld, torch.zeros(16)))
        modes = [f.flows[0].mode for f in model.flows]
        check("%s layer split modes alternate (layer 0 conditions on even)" % system,
              modes == ["checkerboard_inv", "checkerboard"] * (LAYERS // 2), str(modes[:2]))
        check("%s default dtype float64" % system,
              all(p.dtype == torch.float64 for p in model.parameters()) and model.q0.loc.dtype == torch.float64)
    # Helmert basis: orthonormal columns orthogonal to (1, ..., 1); Q y is centre-of-mass free.
    h = helmert(4)
    check("Helmert H^T H = I, H^T 1 = 0", np.allclose(h.T @ h, np.eye(3), atol=1e-14)
          and np.allclose(h.T @ np.ones(4), 0.0, atol=1e-14))
    check("Helmert column 1 = (1, -1, 0, 0)/sqrt 2", np.allclose(h[:, 0], [2 ** -0.5, -(2 ** -0.5), 0, 0]))
    tgt, _ = make_target("dw4")
    y = torch.randn(32, 6)
    xc = tgt.to_cartesian(y)
    check("Q y has zero centre of mass", torch.allclose(xc.view(32, 4, 2).mean(1), torch.zeros(32, 2), atol=1e-14))
    # x[i*d + c] = sum_k H[i,k] y[k*d + c]
    xm = torch.einsum("ik,bkc->bic", torch.tensor(h), y.view(32, 3, 2)).reshape(32, 8)
    check("Q = H (x) I_2 particle-major layout", torch.allclose(xc, xm, atol=1e-14))
    # Energies: DW4 translation invariance, a hand value; DW2D values and log Z.
    shift = torch.tensor([0.7, -1.3]).repeat(4)
    check("DW4 energy translation invariant",
          torch.allclose(tgt.cart.energy(xc), tgt.cart.energy(xc + shift), atol=1e-9))
    sq = torch.tensor([[0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0]])  # square of side 4
    d_diag = 4.0 * math.sqrt(2.0) - 4.0
    want = 2 * (0.9 * d_diag ** 4 - 4.0 * d_diag ** 2)  # 4 sides at d0 contribute 0
    check("DW4 energy of the side-4 square", abs(tgt.cart.energy(sq).item() - want) < 1e-12,
          "%.12f vs %.12f" % (tgt.cart.energy(sq).item(), want))
    dw, _ = make_target("dw2d")
    check("DW2D energy", abs(dw.energy(torch.tensor([[1.5, -2.0]])).item()
                             - (1.5 ** 4 - 4 * 1.5 ** 2 + 2.0)) < 1e-12)
    check("DW2D energy minima at x0 = +-sqrt 2 (u = -4)",
          abs(dw.energy(torch.tensor([[math.sqrt(2.0), 0.0]])).item() + 4.0) < 1e-12)
    lz = dw.log_z()
    xs = np.linspace(-6, 6, 2_000_001)
    lz2 = math.log(np.exp(-(xs ** 4 - 4 * xs ** 2)).sum() * (xs[1] - xs[0])) + 0.5 * math.log(2 * math.pi)
    check("DW2D log Z by quadrature", abs(lz - lz2) < 1e-8, "%.10f" % lz)
    # Loss is normflows' reverse KL: mean(log q + beta u) on the model's samples.
    model, _ = build("dw2d")
    torch.manual_seed(5)
    l1 = model.reverse_kld(BATCH)
    torch.manual_seed(5)
    xq, lq = model.sample(BATCH)
    l2 = (lq + model.p.energy(xq)).mean()
    check("reverse_kld == mean(log q + beta u)", abs(l1.item() - l2.item()) < 1e-12)
    if failures:
        print("[selftest] %d failure(s)" % len(failures), file=sys.stderr)
        return 1
    print("[selftest] all checks passed", file=sys.stderr)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--system", default="dw2d", choices=["dw2d", "dw4"])
    ap.add_argument("--seconds", type=float, default=60.0, help="training-time budget (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=float, default=None,
                    help="training seconds between evaluations (default seconds / 10)")
    ap.add_argument("--coupling", default="block", choices=["block", "subclass"],
                    help="block: nf.flows.AffineCouplingBlock (default); subclass: own nf.flows.Flow")
    ap.add_argument("--selftest", action="store_true")
    args = ap.parse_args()
    if args.selftest:
        return selftest()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
