"""Navier-Stokes throughput reference: the same pseudo-spectral IF-RK4 scheme as physflow's
`sim::ns2d`, in numpy (pocketfft real transforms, float64, one thread).

Problem (identical to examples/bench_ns2d.rs): periodic [0, 1)^2, n x n, nu = 1e-3, the FNO
diagonal forcing f = 0.1 (sin 2pi(x+y) + cos 2pi(x+y)), w0 = sin(2pi x) cos(6pi y)
+ 0.5 cos(4pi x + 1) sin(10pi y), fixed dt = 1e-3, 2/3 dealiasing (|kx|, |ky| < n/3).
Prints one JSON line per size: median ms per step and the checksums after the steps.

    python ns2d.py [--n 64] [--steps 1000] [--repeats 5]
"""
import argparse
import json
import time

import numpy as np


def solver(n, nu=1e-3, amp=0.1, dt=1e-3):
    x = np.arange(n) / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    k = np.fft.fftfreq(n, 1.0 / n)
    k[n // 2] = 0.0  # Nyquist: no real derivative (dealiased anyway)
    kr = np.fft.rfftfreq(n, 1.0 / n)
    KX, KY = np.meshgrid(2 * np.pi * k, 2 * np.pi * kr, indexing="ij")
    k2 = KX**2 + KY**2
    inv_k2 = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
    keep = (3 * np.abs(np.fft.fftfreq(n, 1.0 / n))[:, None] < n) & (3 * np.abs(kr)[None, :] < n)
    f_hat = np.fft.rfft2(amp * (np.sin(2 * np.pi * (X + Y)) + np.cos(2 * np.pi * (X + Y)))) * keep
    lin = -nu * k2
    e_full, e_half = np.exp(lin * dt), np.exp(lin * dt / 2)

    def N(w):
        psi = w * inv_k2
        u = np.fft.irfft2(1j * KY * psi, s=(n, n))
        v = np.fft.irfft2(-1j * KX * psi, s=(n, n))
        wx = np.fft.irfft2(1j * KX * w, s=(n, n))
        wy = np.fft.irfft2(1j * KY * w, s=(n, n))
        return np.fft.rfft2(-(u * wx + v * wy)) * keep + f_hat

    def step(w):
        k1 = N(w)
        k2_ = N(e_half * (w + 0.5 * dt * k1))
        k3 = N(e_half * w + 0.5 * dt * k2_)
        k4 = N(e_full * w + dt * e_half * k3)
        return e_full * w + dt / 6 * (e_full * k1 + 2 * e_half * (k2_ + k3) + k4)

    w0 = np.sin(2 * np.pi * X) * np.cos(6 * np.pi * Y) + 0.5 * np.cos(4 * np.pi * X + 1) * np.sin(10 * np.pi * Y)
    return step, np.fft.rfft2(w0) * keep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    step, w0 = solver(a.n)
    times = []
    for r in range(a.repeats + 1):
        w = w0.copy()
        s = time.perf_counter()
        for _ in range(a.steps):
            w = step(w)
        ms = (time.perf_counter() - s) * 1e3 / a.steps
        if r > 0:  # the first run is warm-up
            times.append(ms)
    wr = np.fft.irfft2(w, s=(a.n, a.n))
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({"side": "numpy", "name": f"ns2d-{a.n} if-rk4 step", "ms": med, "min_ms": times[0], "steps_per_s": 1e3 / med,
                      "repeats": a.repeats, "steps": a.steps, "mean_abs_w": float(np.abs(wr).mean()), "w00": float(wr[0, 0]),
                      "numpy": np.__version__}))


if __name__ == "__main__":
    main()
