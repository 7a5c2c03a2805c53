"""Boltzmann generator trained by energy (reverse KL): normflows, side by side with physflow.

The same problem and flow as physflow's `examples/bench_boltzmann.rs`:

* systems: `dw2d`, u = a x0 + b x0^2 + c x0^4 + x1^2 / 2 (a=0, b=-4, c=1); `dw4`, 4 particles
  in 2D, u = sum_{i<j} a (d_ij - d0)^4 + b (d_ij - d0)^2 (a=0.9, b=-4, d0=4), flown in its 6
  centre-of-mass-free coordinates y with x = Q y, Q = H (x) I_2, H the Helmert basis (column k:
  (1, ..., 1, -k, 0, ..., 0) / sqrt(k (k + 1)) with k ones). beta = 1.
* flow: RealNVP, 8 affine couplings; coupling l conditions on the coordinates i with
  i % 2 == l % 2 and transforms the others; conditioner MLP [n_cond, 64, 64, 2 n_trans] with
  tanh, torch's default nn.Linear init except the last layer, which is zero (identity start);
  outputs [s_raw, t]; bounded scale s = 3 tanh(s_raw / 3); y = x exp(s) + t, log|det| = sum s.
  normflows' MaskedAffineFlow feeds the masked full vector to its nets and has no bounded
  scale, so the coupling is written as an `nf.flows.Flow` subclass (normflows' convention:
  forward = base -> target with log|det d x / d z|); everything else is normflows:
  `nf.NormalizingFlow`, `nf.distributions.DiagGaussian(D, trainable=False)`, a
  `nf.distributions.Target` with log_prob = -beta u, and `model.reverse_kld(256)` as the loss.
* training: Adam 1e-3, batch 256, gradient-norm clip 100, float64, one thread, for a budget of
  training seconds; every `--eval-every` training seconds the clock pauses and ESS/N is measured
  on 20000 fresh samples (log w = -beta u - log q, Kish ESS).

Prints one JSON line per evaluation (the last with "final": true). Non-finite losses are counted
and reported (`nonfinite`), and such steps are skipped (no parameter update).

    python boltzmann.py --system dw2d --seconds 60 --seed 0
"""

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn
import normflows as nf

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)


def helmert(n):
    h = np.zeros((n, n - 1))
    for k in range(1, n):
        h[:k, k - 1] = 1.0
        h[k, k - 1] = -k
        h[:, k - 1] /= math.sqrt(k * (k + 1))
    return h


class DoubleWell2D(nf.distributions.Target):
    def __init__(self, a=0.0, b=-4.0, c=1.0):
        super().__init__()
        self.a, self.b, self.c = a, b, c

    def energy(self, x):
        x0, x1 = x[:, 0], x[:, 1]
        return self.a * x0 + self.b * x0**2 + self.c * x0**4 + 0.5 * x1**2

    def log_prob(self, z):
        return -self.energy(z)


class Dw4Internal(nf.distributions.Target):
    """DW4 in the centre-of-mass-free coordinates: u(Q y)."""

    def __init__(self, a=0.9, b=-4.0, d0=4.0, n=4, d=2):
        super().__init__()
        self.a, self.b, self.d0, self.n, self.d = a, b, d0, n, d
        q = np.kron(helmert(n), np.eye(d))  # [n d, (n-1) d]
        self.register_buffer("q", torch.tensor(q))
        iu = torch.triu_indices(n, n, offset=1)
        self.register_buffer("iu0", iu[0])
        self.register_buffer("iu1", iu[1])

    def energy(self, y):
        x = (y @ self.q.T).view(-1, self.n, self.d)
        diff = x[:, self.iu0] - x[:, self.iu1]
        dist = torch.sqrt((diff**2).sum(-1))
        s = dist - self.d0
        return (self.a * s**4 + self.b * s**2).sum(-1)

    def log_prob(self, z):
        return -self.energy(z)


def mlp(n_in, n_out, hidden=(64, 64)):
    layers, w = [], n_in
    for h in hidden:
        layers += [nn.Linear(w, h), nn.Tanh()]
        w = h
    last = nn.Linear(w, n_out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class BoundedAffineCoupling(nf.flows.Flow):
    """x_B = z_B exp(s) + t, s = s_max tanh(s_raw / s_max), (s_raw, t) = NN(z_A)."""

    def __init__(self, dim, parity, hidden=(64, 64), s_max=3.0):
        super().__init__()
        cond = [i for i in range(dim) if i % 2 == parity % 2]
        trans = [i for i in range(dim) if i % 2 != parity % 2]
        self.register_buffer("cond", torch.tensor(cond))
        self.register_buffer("trans", torch.tensor(trans))
        self.nt = len(trans)
        self.s_max = s_max
        self.net = mlp(len(cond), 2 * len(trans), hidden)

    def _st(self, z):
        out = self.net(z[:, self.cond])
        s = self.s_max * torch.tanh(out[:, : self.nt] / self.s_max)
        return s, out[:, self.nt :]

    def forward(self, z):
        s, t = self._st(z)
        x = z.clone()
        x[:, self.trans] = z[:, self.trans] * torch.exp(s) + t
        return x, s.sum(-1)

    def inverse(self, x):
        s, t = self._st(x)
        z = x.clone()
        z[:, self.trans] = (x[:, self.trans] - t) * torch.exp(-s)
        return z, -s.sum(-1)


def build(system):
    target = DoubleWell2D() if system == "dw2d" else Dw4Internal()
    dim = 2 if system == "dw2d" else 6
    flows = [BoundedAffineCoupling(dim, l % 2) for l in range(8)]
    q0 = nf.distributions.DiagGaussian(dim, trainable=False)
    return nf.NormalizingFlow(q0=q0, flows=flows, p=target), dim


@torch.no_grad()
def evaluate(model, n=20000):
    x, log_q = model.sample(n)
    log_w = model.p.log_prob(x) - log_q
    lw = log_w.numpy()
    m = lw.max()
    w = np.exp(lw - m)
    ess = w.sum() ** 2 / (w**2).sum() / n
    return float(ess), float(-lw.mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", default="dw2d", choices=["dw2d", "dw4"])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=float, default=None)
    a = ap.parse_args()
    eval_every = a.eval_every or a.seconds / 10
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    model, _ = build(a.system)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trained, steps, nonfinite, next_eval = 0.0, 0, 0, eval_every
    while True:
        t0 = time.perf_counter()
        while trained + (time.perf_counter() - t0) < min(next_eval, a.seconds):
            opt.zero_grad()
            loss = model.reverse_kld(256)
            if not torch.isfinite(loss):
                nonfinite += 1
                continue
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
            opt.step()
            steps += 1
        trained += time.perf_counter() - t0
        ess, kl = evaluate(model)
        last = trained >= a.seconds - 1e-9
        row = {"bench": "boltzmann", "impl": "normflows", "system": a.system, "seed": a.seed, "step": steps,
               "train_seconds": round(trained, 3), "ess_fraction": ess, "kl": kl,
               "samples_per_s": 256 * steps / max(trained, 1e-9), "threads": 1, "nonfinite": nonfinite}
        if last:
            row["final"] = True
        print(json.dumps(row), flush=True)
        if last:
            break
        next_eval += eval_every


if __name__ == "__main__":
    main()
