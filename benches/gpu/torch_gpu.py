"""Torch side of benches/gpu/run.sh: the cases of examples/bench_gpu.rs on a torch device.

- fm_train_b256 / fm_train_b4096: flow-matching training of the 3->256->256->256->2 tanh MLP,
  Adam 1e-3, 8 Gaussians -> moons; batches drawn on the host with numpy every step and copied
  to the device (as physflow does), independent coupling, linear path (torchcfm's
  ConditionalFlowMatcher with sigma = 0 written out).
- b5_adjoint / b5_direct: B5 with torchdiffeq (odeint_adjoint / odeint), Tsit5 is not in
  torchdiffeq, so dopri5 at rtol = atol = 1e-6 (the same order and tolerances).
- fno_step_64: an FNO with physflow's default architecture (lift, 4 spectral layers of width
  32 with 8x8 modes plus pointwise 1x1, GELU, time features 8, projection 64), batch 16 of
  64x64, one Adam step.

Prints JSON lines like the physflow side. `python3 torch_gpu.py --device cuda [--quick]`.
"""
import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def eight_gaussians(rng, n):
    centers = np.array([(math.cos(2 * math.pi * k / 8), math.sin(2 * math.pi * k / 8)) for k in range(8)]) * 5.0
    idx = rng.integers(0, 8, n)
    return (centers[idx] + 0.5 * rng.standard_normal((n, 2))).astype(np.float32)


def moons(rng, n):
    t = rng.uniform(0, math.pi, n)
    upper = rng.integers(0, 2, n).astype(bool)
    x = np.where(upper, np.cos(t), 1 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x, y], 1) * 3 - np.array([1, 0.5]) + 0.1 * rng.standard_normal((n, 2))
    return pts.astype(np.float32)


def mlp(dims, act=nn.Tanh):
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i + 2 < len(dims):
            layers.append(act())
    return nn.Sequential(*layers)


def fm_ms(dev, batch, steps, seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = mlp([3, 256, 256, 256, 2]).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        x0 = torch.from_numpy(eight_gaussians(rng, batch)).to(dev)
        x1 = torch.from_numpy(moons(rng, batch)).to(dev)
        t = torch.from_numpy(rng.random((batch, 1), dtype=np.float32)).to(dev)
        xt = (1 - t) * x0 + t * x1
        loss = ((net(torch.cat([xt, t], 1)) - (x1 - x0)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()
    sync(dev)
    return (time.perf_counter() - t0) * 1e3 / steps


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = mlp([2, 64, 64, 2])

    def forward(self, t, y):
        return self.net(y)


def b5_ms(dev, adjoint, repeats):
    import torchdiffeq

    torch.manual_seed(0)
    f = Field().to(dev)
    y0 = torch.randn(256, 2, device=dev)
    ts = torch.linspace(0, 1, 10, device=dev)
    solve = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint

    def step():
        ys = solve(f, y0, ts, rtol=1e-6, atol=1e-6, method="dopri5")
        loss = (ys ** 2).mean()
        f.zero_grad(set_to_none=True)
        loss.backward()
        return loss.item()

    step()
    out = []
    for _ in range(repeats):
        sync(dev)
        t0 = time.perf_counter()
        step()
        sync(dev)
        out.append((time.perf_counter() - t0) * 1e3)
    return median(out)


class Spectral(nn.Module):
    def __init__(self, c, m):
        super().__init__()
        self.m = m
        s = 1.0 / (c * c)
        self.w1 = nn.Parameter(s * torch.rand(c, c, m, m, dtype=torch.cfloat))
        self.w2 = nn.Parameter(s * torch.rand(c, c, m, m, dtype=torch.cfloat))

    def forward(self, x):
        b, c, nx, ny = x.shape
        xf = torch.fft.rfft2(x)
        out = torch.zeros(b, c, nx, ny // 2 + 1, dtype=torch.cfloat, device=x.device)
        m = self.m
        out[:, :, :m, :m] = torch.einsum("bixy,ioxy->boxy", xf[:, :, :m, :m], self.w1)
        out[:, :, -m:, :m] = torch.einsum("bixy,ioxy->boxy", xf[:, :, -m:, :m], self.w2)
        return torch.fft.irfft2(out, s=(nx, ny))


class Fno(nn.Module):
    def __init__(self, width=32, modes=8, layers=4, tf=8, proj=64):
        super().__init__()
        self.tf = tf
        self.lift = nn.Linear(1 + 2, width)
        self.spec = nn.ModuleList([Spectral(width, modes) for _ in range(layers)])
        self.point = nn.ModuleList([nn.Conv2d(width, width, 1) for _ in range(layers)])
        self.temb = nn.Linear(2 * tf, width)
        self.tbias = nn.ModuleList([nn.Linear(width, width) for _ in range(layers)])
        self.p1 = nn.Linear(width, proj)
        self.p2 = nn.Linear(proj, 1)

    def forward(self, u, t):
        b, _, nx, ny = u.shape
        gx = torch.linspace(0, 1, nx, device=u.device).view(1, 1, nx, 1).expand(b, 1, nx, ny)
        gy = torch.linspace(0, 1, ny, device=u.device).view(1, 1, 1, ny).expand(b, 1, nx, ny)
        h = self.lift(torch.cat([u, gx, gy], 1).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        freqs = torch.arange(self.tf, device=u.device) + 1.0
        te = self.temb(torch.cat([torch.sin(math.pi * t[:, None] * freqs), torch.cos(math.pi * t[:, None] * freqs)], 1))
        for k, (s, p, tb) in enumerate(zip(self.spec, self.point, self.tbias)):
            h = s(h) + p(h) + tb(te)[:, :, None, None]
            if k + 1 < len(self.spec):
                h = torch.nn.functional.gelu(h)
        h = torch.nn.functional.gelu(self.p1(h.permute(0, 2, 3, 1)))
        return self.p2(h).permute(0, 3, 1, 2)


def fno_ms(dev, repeats, steps):
    torch.manual_seed(0)
    net = Fno().to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    u = torch.rand(16, 1, 64, 64, device=dev) * 2 - 1
    target = torch.rand(16, 1, 64, 64, device=dev) * 2 - 1
    t = torch.rand(16, device=dev)

    def step():
        loss = ((net(u, t) - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    step()
    out = []
    for _ in range(repeats):
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(dev)
        out.append((time.perf_counter() - t0) * 1e3 / steps)
    return median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    a = ap.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cpu":
        torch.set_num_threads(1)  # side by side with physflow's single-threaded CPU paths
    repeats = a.repeats or (2 if a.quick else 5)
    steps = 20 if a.quick else 100
    name = a.device
    for batch in (256, 4096):
        fm_ms(dev, batch, 5, 99)
        ms = median([fm_ms(dev, batch, steps, r) for r in range(repeats)])
        print(json.dumps({"side": "torch", "device": name, "name": f"fm_train_b{batch}", "ms": ms, "samples_per_s": batch * 1e3 / ms, "steps": steps}), flush=True)
    try:
        for case, adj in (("b5_adjoint", True), ("b5_direct", False)):
            print(json.dumps({"side": "torch", "device": name, "name": case, "ms": b5_ms(dev, adj, repeats)}), flush=True)
    except ImportError as e:
        print(json.dumps({"side": "torch", "device": name, "name": "b5_adjoint", "skipped": f"torchdiffeq missing: {e}"}), flush=True)
    print(json.dumps({"side": "torch", "device": name, "name": "fno_step_64", "ms": fno_ms(dev, repeats, 3 if a.quick else 10)}), flush=True)


if __name__ == "__main__":
    main()
