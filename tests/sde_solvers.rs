//! SDE solvers on geometric Brownian motion and Ornstein–Uhlenbeck (f64, CPU).

use burn::tensor::Tensor;
use physflow::device::cpu_f64;
use physflow::host::ToHost;
use physflow::sde::{sdeint, sdeint_with_stats, AdaptiveSde, BrownianPath, Calculus, FnSde, Noise, SdeOptions, SdeSolver, VirtualBrownianTree};

fn loglog_slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    let (mx, my) = (lx.iter().sum::<f64>() / n, ly.iter().sum::<f64>() / n);
    let sxy: f64 = lx.iter().zip(&ly).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = lx.iter().map(|a| (a - mx).powi(2)).sum();
    sxy / sxx
}

/// Strong order on GBM `dX = μX dt + σX dW` (Itô), whose exact solution driven by the same
/// path is `X0 exp((μ − σ²/2) t + σ W(t))`; Stratonovich solvers integrate the equivalent
/// `dX = (μ − σ²/2) X dt + σX ∘ dW`. Steps 2⁻³..2⁻⁷ fall on nodes of the Brownian tree, so
/// every step size sees the same path exactly. The fitted slope of the mean absolute error is
/// within ±0.2 of each solver's strong order.
#[test]
fn strong_order_on_geometric_brownian_motion() {
    let device = cpu_f64().unwrap();
    let (mu, sigma, batch) = (0.5, 0.8, 512);
    let w = VirtualBrownianTree::new(0.0, 1.0, 1e-9, [batch, 1], 2024).unwrap();
    let w1 = w.increment_host(0.0, 1.0).unwrap();
    let exact: Vec<f64> = w1.iter().map(|w| ((mu - 0.5 * sigma * sigma) + sigma * w).exp()).collect();
    let y0 = Tensor::<2>::ones([batch, 1], &device);
    for solver in SdeSolver::ALL.into_iter().filter(|s| !s.needs_additive_noise()) {
        let order = solver.strong_order(false).unwrap();
        let drift = match solver.calculus() {
            Calculus::Ito => mu,
            Calculus::Stratonovich => mu - 0.5 * sigma * sigma,
        };
        let sde = FnSde::new(move |_t, y: Tensor<2>| y.mul_scalar(drift), move |_t, y: Tensor<2>| y.mul_scalar(sigma));
        let dts: Vec<f64> = (3..=7).map(|k| 0.5f64.powi(k)).collect();
        let errs: Vec<f64> = dts
            .iter()
            .map(|&dt| {
                let ys = sdeint(&sde, y0.clone(), &[0.0, 1.0], &w, &SdeOptions::fixed(solver, dt)).unwrap();
                let y1 = ys[1].to_vec_as::<f64>();
                y1.iter().zip(&exact).map(|(a, b)| (a - b).abs()).sum::<f64>() / batch as f64
            })
            .collect();
        let slope = loglog_slope(&dts, &errs);
        assert!((slope - order).abs() <= 0.2, "{solver:?}: strong order {slope:.3}, expected {order} (errors {errs:?})");
    }
}

/// Weak: Ornstein–Uhlenbeck `dX = −θX dt + σ dW` from X0 = 1 has mean `e^{−θT}` and variance
/// `σ²(1 − e^{−2θT})/(2θ)`. With N paths the sample mean's standard error is `sd/√N` and the
/// sample variance's is about `var·√(2/N)`; both checked at 4 standard errors. Euler–Maruyama's
/// own bias at dt = 2⁻⁸ (relative O(θ dt) ≈ 0.4 %) is well inside that.
#[test]
fn ornstein_uhlenbeck_moments() {
    let device = cpu_f64().unwrap();
    let (theta, sigma, batch, t1) = (1.0, 0.7, 4096, 1.0);
    let w = VirtualBrownianTree::new(0.0, t1, 1e-9, [batch, 1], 99).unwrap();
    let sde = FnSde::new(move |_t, y: Tensor<2>| y.mul_scalar(-theta), move |_t, y: Tensor<2>| y.ones_like().mul_scalar(sigma));
    let ys = sdeint(&sde, Tensor::<2>::ones([batch, 1], &device), &[0.0, t1], &w, &SdeOptions::fixed(SdeSolver::EulerMaruyama, 1.0 / 256.0)).unwrap();
    let x = ys[1].to_vec_as::<f64>();
    let n = batch as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let mean_exact = (-theta * t1).exp();
    let var_exact = sigma * sigma * (1.0 - (-2.0 * theta * t1).exp()) / (2.0 * theta);
    assert!((mean - mean_exact).abs() < 4.0 * (var_exact / n).sqrt(), "mean {mean} vs {mean_exact}");
    assert!((var - var_exact).abs() < 4.0 * var_exact * (2.0 / n).sqrt(), "variance {var} vs {var_exact}");
}

/// Bad input: a Brownian path of the wrong shape, and times outside its span.
#[test]
fn sde_bad_input() {
    let device = cpu_f64().unwrap();
    let sde = FnSde::new(|_t, y: Tensor<2>| y.clone(), |_t, y: Tensor<2>| y);
    let w = VirtualBrownianTree::new(0.0, 1.0, 1e-6, [3, 2], 0).unwrap();
    let y0 = Tensor::<2>::ones([4, 2], &device);
    assert!(matches!(sdeint(&sde, y0, &[0.0, 1.0], &w, &SdeOptions::fixed(SdeSolver::EulerMaruyama, 0.1)), Err(physflow::Error::Shape { .. })));
    let y0 = Tensor::<2>::ones([3, 2], &device);
    assert!(sdeint(&sde, y0.clone(), &[0.0, 2.0], &w, &SdeOptions::fixed(SdeSolver::EulerMaruyama, 0.1)).is_err());
    // SRA1 on noise not declared additive; Milstein on general noise; a diffusion of the wrong
    // width for the declared noise.
    let r = sdeint(&sde, y0.clone(), &[0.0, 1.0], &w, &SdeOptions::fixed(SdeSolver::Sra1, 0.1));
    assert!(matches!(r, Err(physflow::Error::Unsupported(_))));
    let general = FnSde::new(|_t, y: Tensor<2>| y.clone(), |_t, y: Tensor<2>| y).with_noise(Noise::General { noise_dim: 2 });
    let w2 = VirtualBrownianTree::new(0.0, 1.0, 1e-6, [3, 2], 0).unwrap();
    let r = sdeint(&general, y0.clone(), &[0.0, 1.0], &w2, &SdeOptions::fixed(SdeSolver::EulerMaruyama, 0.1));
    assert!(matches!(r, Err(physflow::Error::Shape { .. })), "{r:?}");
    let r = sdeint(&general, y0, &[0.0, 1.0], &w2, &SdeOptions::fixed(SdeSolver::MilsteinIto, 0.1));
    assert!(r.is_err());
}

/// Reversible Heun: 100 steps forward on a nonlinear SDE, then 100 `unstep`s with the same
/// Brownian increments return the initial state to round-off (the method is algebraically
/// reversible; f64 round-off over 200 steps stays far below 1e-10).
#[test]
fn reversible_heun_forward_then_backward_is_the_identity() {
    use physflow::sde::ReversibleHeunState;
    let device = cpu_f64().unwrap();
    let batch = 64;
    let w = VirtualBrownianTree::new(0.0, 1.0, 1e-9, [batch, 2], 5).unwrap();
    let sde =
        FnSde::new(|t, y: Tensor<2>| y.clone().sin().mul_scalar(-1.0) + y.mul_scalar(0.1 * t), |_t, y: Tensor<2>| y.tanh().mul_scalar(0.5).add_scalar(0.3));
    let y0v: Vec<f64> = (0..2 * batch).map(|i| ((i as f64) * 0.37).sin()).collect();
    let y0 = Tensor::<2>::from_data(burn::tensor::TensorData::new(y0v.clone(), [batch, 2]), &device);
    let n = 100;
    let ts: Vec<f64> = (0..=n).map(|k| k as f64 / n as f64).collect();
    let mut state = ReversibleHeunState::new(&sde, 0.0, y0);
    for k in 0..n {
        let dw = w.increment(ts[k], ts[k + 1], &device, burn::tensor::DType::F64).unwrap();
        state = state.step(&sde, ts[k + 1], &dw);
    }
    let moved: f64 = state.y.to_vec_as::<f64>().iter().zip(&y0v).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(moved > 0.1, "the SDE should move the state ({moved})");
    for k in (0..n).rev() {
        let dw = w.increment(ts[k], ts[k + 1], &device, burn::tensor::DType::F64).unwrap();
        state = state.unstep(&sde, ts[k], &dw);
    }
    let back = state.y.to_vec_as::<f64>();
    let err = back.iter().zip(&y0v).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err < 1e-10, "reconstruction error {err}");
    let err_hat = state.y_hat.to_vec_as::<f64>().iter().zip(&y0v).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err_hat < 1e-10, "auxiliary reconstruction error {err_hat}");
}

/// `σ ∫_0^T e^{−θ(T−s)} dW_s` for every sample, the stochastic part of the exact OU solution
/// driven by the same path: by parts, `e^{−θT} σ (e^{θT} W_T − θ ∫_0^T e^{θs} W_s ds)`, with the
/// Riemann integral done cell by cell on the tree's 2⁻¹² leaves as `e^{θ s_mid} ∫_cell W ds`
/// (the tree gives `∫ W ds` exactly at its nodes). Quadrature error O(δ²) ≈ 1e-7, far below the
/// solvers' errors at the step sizes tested.
fn ou_noise_integral(w: &VirtualBrownianTree, theta: f64, sigma: f64, t1: f64, cells: usize) -> Vec<f64> {
    let (w_end, _) = w.point_host(t1).unwrap();
    let mut acc = vec![0.0; w_end.len()];
    let (_, mut i_prev) = w.point_host(0.0).unwrap();
    for k in 0..cells {
        let (a, b) = (k as f64 * t1 / cells as f64, (k + 1) as f64 * t1 / cells as f64);
        let (_, i_next) = w.point_host(b).unwrap();
        let weight = (theta * 0.5 * (a + b)).exp();
        for j in 0..acc.len() {
            acc[j] += weight * (i_next[j] - i_prev[j]);
        }
        i_prev = i_next;
    }
    let decay = (-theta * t1).exp();
    w_end.iter().zip(&acc).map(|(wt, a)| decay * sigma * ((theta * t1).exp() * wt - theta * a)).collect()
}

/// Strong order on Ornstein–Uhlenbeck `dX = −θX dt + σ dW` (additive noise: Itô = Stratonovich)
/// against its exact solution on the same path: slope within ±0.2 of each solver's order for
/// additive noise (1.5 for SRA1, 1.0 for the others).
#[test]
fn strong_order_on_ornstein_uhlenbeck() {
    let device = cpu_f64().unwrap();
    let (theta, sigma, batch, x0) = (1.5, 0.8, 256, 1.0);
    let cells = 1 << 12;
    let w = VirtualBrownianTree::new(0.0, 1.0, 1.0 / cells as f64, [batch, 1], 77).unwrap();
    let noise = ou_noise_integral(&w, theta, sigma, 1.0, cells);
    let exact: Vec<f64> = noise.iter().map(|n| x0 * (-theta).exp() + n).collect();
    let sde = FnSde::new(move |_t, y: Tensor<2>| y.mul_scalar(-theta), move |_t, y: Tensor<2>| y.ones_like().mul_scalar(sigma)).additive();
    let y0 = Tensor::<2>::ones([batch, 1], &device).mul_scalar(x0);
    for solver in SdeSolver::ALL {
        let order = solver.strong_order(true).unwrap();
        let dts: Vec<f64> = (2..=6).map(|k| 0.5f64.powi(k)).collect();
        let errs: Vec<f64> = dts
            .iter()
            .map(|&dt| {
                let ys = sdeint(&sde, y0.clone(), &[0.0, 1.0], &w, &SdeOptions::fixed(solver, dt)).unwrap();
                let y1 = ys[1].to_vec_as::<f64>();
                y1.iter().zip(&exact).map(|(a, b)| (a - b).abs()).sum::<f64>() / batch as f64
            })
            .collect();
        let slope = loglog_slope(&dts, &errs);
        if solver == SdeSolver::Sra1 {
            // With a linear drift the order-1.5 error terms of SRA1 (they carry f'') vanish and
            // it converges at order 2 here; its 1.5 is checked on a nonlinear drift below.
            assert!(slope >= order - 0.2, "{solver:?}: strong order {slope:.3}, expected at least {order} (errors {errs:?})");
        } else {
            assert!((slope - order).abs() <= 0.2, "{solver:?}: strong order {slope:.3}, expected {order} (errors {errs:?})");
        }
    }
}

/// SRA1's strong order 1.5 on a nonlinear drift with time-dependent additive noise,
/// `dX = (X − X³) dt + (1 + t) dW`, against a reference solve on the same path at dt = 2⁻¹³
/// (its error, O(2⁻¹⁹·⁵), is 1/64 of the finest tested step's). Steps 2⁻⁵..2⁻⁹, where the
/// noise terms dominate the error (at coarser steps the drift's order-2 error does, and the
/// fitted slope is closer to 2); slope within ±0.2 of 1.5.
#[test]
fn sra1_strong_order_on_a_nonlinear_drift() {
    let device = cpu_f64().unwrap();
    let batch = 256;
    let fine = 1.0 / 8192.0;
    let w = VirtualBrownianTree::new(0.0, 1.0, fine, [batch, 1], 123).unwrap();
    let sde = FnSde::new(|_t, y: Tensor<2>| y.clone() - y.powi_scalar(3), |t, y: Tensor<2>| y.ones_like().mul_scalar(1.0 + t)).additive();
    let y0v: Vec<f64> = (0..batch).map(|i| ((i as f64) * 0.61).sin()).collect();
    let y0 = Tensor::<2>::from_data(burn::tensor::TensorData::new(y0v, [batch, 1]), &device);
    let solve = |dt: f64| sdeint(&sde, y0.clone(), &[0.0, 1.0], &w, &SdeOptions::fixed(SdeSolver::Sra1, dt)).unwrap()[1].to_vec_as::<f64>();
    let reference = solve(fine);
    let dts: Vec<f64> = (5..=9).map(|k| 0.5f64.powi(k)).collect();
    let errs: Vec<f64> = dts.iter().map(|&dt| solve(dt).iter().zip(&reference).map(|(a, b)| (a - b).abs()).sum::<f64>() / batch as f64).collect();
    let slope = loglog_slope(&dts, &errs);
    assert!((slope - 1.5).abs() <= 0.2, "SRA1: strong order {slope:.3}, expected 1.5 (errors {errs:?})");
}

/// General additive noise: `dX = −θX dt + B dW` with `X ∈ R², W ∈ R³`, `B` a fixed 2×3 matrix,
/// has `X_T ~ N(e^{−θT} X0, BBᵀ (1 − e^{−2θT})/(2θ))`. Every entry of the sample mean and
/// covariance is checked at 4 standard errors (mean: √(Σ_ii/N); covariance entry:
/// √((Σ_ii Σ_jj + Σ_ij²)/N), the Gaussian sampling variance), for EM, Euler–Heun and SRA1.
/// SRA1's and the Heun scheme's bias at dt = 2⁻⁶ is O(dt²) (≈ 2e-4), far inside.
#[test]
fn general_additive_noise_moments() {
    let device = cpu_f64().unwrap();
    let (theta, batch, t1): (f64, usize, f64) = (1.0, 8192, 1.0);
    let b = [[0.5, -0.3, 0.2], [0.1, 0.4, -0.6]];
    let bflat: Vec<f64> = b.iter().flatten().copied().collect();
    let bt = Tensor::<2>::from_data(burn::tensor::TensorData::new(bflat, [1, 6]), &device);
    let sde = FnSde::new(
        move |_t, y: Tensor<2>| y.mul_scalar(-theta),
        move |_t, y: Tensor<2>| {
            let [n, _] = y.dims();
            bt.clone().expand([n, 6])
        },
    )
    .with_noise(Noise::General { noise_dim: 3 })
    .additive();
    let x0 = [1.0, -0.5];
    let y0 = Tensor::<2>::from_data(burn::tensor::TensorData::new(x0.repeat(batch), [batch, 2]), &device);
    let decay = (-theta * t1).exp();
    let factor = (1.0 - (-2.0 * theta * t1).exp()) / (2.0 * theta);
    let cov = |i: usize, j: usize| (0..3).map(|k| b[i][k] * b[j][k]).sum::<f64>() * factor;
    let n = batch as f64;
    for (seed, solver) in [SdeSolver::EulerMaruyama, SdeSolver::EulerHeun, SdeSolver::Sra1].into_iter().enumerate() {
        let w = VirtualBrownianTree::new(0.0, t1, 1e-6, [batch, 3], 500 + seed as u64).unwrap();
        let ys = sdeint(&sde, y0.clone(), &[0.0, t1], &w, &SdeOptions::fixed(solver, 1.0 / 64.0)).unwrap();
        let x = ys[1].to_vec_as::<f64>();
        let mean: Vec<f64> = (0..2).map(|i| (0..batch).map(|s| x[2 * s + i]).sum::<f64>() / n).collect();
        for i in 0..2 {
            let want = decay * x0[i];
            assert!((mean[i] - want).abs() < 4.0 * (cov(i, i) / n).sqrt(), "{solver:?} mean[{i}] {} vs {want}", mean[i]);
            for j in 0..2 {
                let c = (0..batch).map(|s| (x[2 * s + i] - mean[i]) * (x[2 * s + j] - mean[j])).sum::<f64>() / (n - 1.0);
                let se = ((cov(i, i) * cov(j, j) + cov(i, j).powi(2)) / n).sqrt();
                assert!((c - cov(i, j)).abs() < 4.0 * se, "{solver:?} cov[{i}{j}] {c} vs {}", cov(i, j));
            }
        }
    }
}

/// Adaptive steps (step doubling on the Brownian tree) on GBM with Euler–Heun: tightening the
/// tolerance 100× must cut the mean error against the exact solution at least 5× (an order-1
/// method with local error ∝ h^{3/2} picks h ∝ tol^{2/3}, a ≈ 20× cut), with steps rejected
/// along the way; the grid path cannot serve off-grid adaptive queries and says so.
#[test]
fn adaptive_steps_follow_the_tolerance() {
    let device = cpu_f64().unwrap();
    let (mu, sigma, batch) = (0.5, 0.8, 256);
    let w = VirtualBrownianTree::new(0.0, 1.0, 1e-9, [batch, 1], 31).unwrap();
    let w1 = w.increment_host(0.0, 1.0).unwrap();
    let exact: Vec<f64> = w1.iter().map(|w| ((mu - 0.5 * sigma * sigma) + sigma * w).exp()).collect();
    let drift = mu - 0.5 * sigma * sigma;
    let sde = FnSde::new(move |_t, y: Tensor<2>| y.mul_scalar(drift), move |_t, y: Tensor<2>| y.mul_scalar(sigma));
    let y0 = Tensor::<2>::ones([batch, 1], &device);
    let run = |tol: f64| {
        let opts = SdeOptions {
            solver: SdeSolver::EulerHeun,
            dt: 0.1,
            adaptive: Some(AdaptiveSde { rtol: tol, atol: tol, ..AdaptiveSde::default() }),
            ..SdeOptions::default()
        };
        let (ys, stats) = sdeint_with_stats(&sde, y0.clone(), &[0.0, 1.0], &w, &opts).unwrap();
        let y1 = ys[1].to_vec_as::<f64>();
        (y1.iter().zip(&exact).map(|(a, b)| (a - b).abs()).sum::<f64>() / batch as f64, stats)
    };
    let (coarse, s1) = run(1e-2);
    let (fine, s2) = run(1e-4);
    assert!(coarse / fine >= 5.0, "errors {coarse:e} -> {fine:e}");
    assert!(s2.steps > s1.steps && s2.rejected > 0, "{s1:?} {s2:?}");
    let grid = physflow::sde::GridBrownian::new(0.0, 0.1, 10, [batch, 1], 1).unwrap();
    let opts = SdeOptions { adaptive: Some(AdaptiveSde::default()), ..SdeOptions::fixed(SdeSolver::EulerHeun, 0.1) };
    assert!(sdeint(&sde, y0, &[0.0, 1.0], &grid, &opts).is_err());
}
