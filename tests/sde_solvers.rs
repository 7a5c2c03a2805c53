//! SDE solvers on geometric Brownian motion and Ornstein–Uhlenbeck (f64, CPU).

use burn::tensor::Tensor;
use physflow::device::cpu_f64;
use physflow::host::ToHost;
use physflow::sde::{sdeint, BrownianPath, Calculus, FnSde, SdeSolver, VirtualBrownianTree};

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
    let device = cpu_f64();
    let (mu, sigma, batch) = (0.5, 0.8, 512);
    let w = VirtualBrownianTree::new(0.0, 1.0, 1e-9, [batch, 1], 2024).unwrap();
    let w1 = w.increment_host(0.0, 1.0).unwrap();
    let exact: Vec<f64> = w1.iter().map(|w| ((mu - 0.5 * sigma * sigma) + sigma * w).exp()).collect();
    let y0 = Tensor::<2>::ones([batch, 1], &device);
    for solver in SdeSolver::ALL {
        let drift = match solver.calculus() {
            Calculus::Ito => mu,
            Calculus::Stratonovich => mu - 0.5 * sigma * sigma,
        };
        let sde = FnSde::new(move |_t, y: Tensor<2>| y.mul_scalar(drift), move |_t, y: Tensor<2>| y.mul_scalar(sigma));
        let dts: Vec<f64> = (3..=7).map(|k| 0.5f64.powi(k)).collect();
        let errs: Vec<f64> = dts
            .iter()
            .map(|&dt| {
                let ys = sdeint(&sde, y0.clone(), &[0.0, 1.0], &w, solver, dt).unwrap();
                let y1 = ys[1].to_vec_as::<f64>();
                y1.iter().zip(&exact).map(|(a, b)| (a - b).abs()).sum::<f64>() / batch as f64
            })
            .collect();
        let slope = loglog_slope(&dts, &errs);
        assert!(
            (slope - solver.strong_order()).abs() <= 0.2,
            "{solver:?}: strong order {slope:.3}, expected {} (errors {errs:?})",
            solver.strong_order()
        );
    }
}

/// Weak: Ornstein–Uhlenbeck `dX = −θX dt + σ dW` from X0 = 1 has mean `e^{−θT}` and variance
/// `σ²(1 − e^{−2θT})/(2θ)`. With N paths the sample mean's standard error is `sd/√N` and the
/// sample variance's is about `var·√(2/N)`; both checked at 4 standard errors. Euler–Maruyama's
/// own bias at dt = 2⁻⁸ (relative O(θ dt) ≈ 0.4 %) is well inside that.
#[test]
fn ornstein_uhlenbeck_moments() {
    let device = cpu_f64();
    let (theta, sigma, batch, t1) = (1.0, 0.7, 4096, 1.0);
    let w = VirtualBrownianTree::new(0.0, t1, 1e-9, [batch, 1], 99).unwrap();
    let sde = FnSde::new(move |_t, y: Tensor<2>| y.mul_scalar(-theta), move |_t, y: Tensor<2>| y.ones_like().mul_scalar(sigma));
    let ys = sdeint(&sde, Tensor::<2>::ones([batch, 1], &device), &[0.0, t1], &w, SdeSolver::EulerMaruyama, 1.0 / 256.0).unwrap();
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
    let device = cpu_f64();
    let sde = FnSde::new(|_t, y: Tensor<2>| y.clone(), |_t, y: Tensor<2>| y);
    let w = VirtualBrownianTree::new(0.0, 1.0, 1e-6, [3, 2], 0).unwrap();
    let y0 = Tensor::<2>::ones([4, 2], &device);
    assert!(matches!(sdeint(&sde, y0, &[0.0, 1.0], &w, SdeSolver::EulerMaruyama, 0.1), Err(physflow::Error::Shape { .. })));
    let y0 = Tensor::<2>::ones([3, 2], &device);
    assert!(sdeint(&sde, y0, &[0.0, 2.0], &w, SdeSolver::EulerMaruyama, 0.1).is_err());
}

/// Reversible Heun: 100 steps forward on a nonlinear SDE, then 100 `unstep`s with the same
/// Brownian increments return the initial state to round-off (the method is algebraically
/// reversible; f64 round-off over 200 steps stays far below 1e-10).
#[test]
fn reversible_heun_forward_then_backward_is_the_identity() {
    use physflow::sde::ReversibleHeunState;
    let device = cpu_f64();
    let batch = 64;
    let w = VirtualBrownianTree::new(0.0, 1.0, 1e-9, [batch, 2], 5).unwrap();
    let sde = FnSde::new(
        |t, y: Tensor<2>| y.clone().sin().mul_scalar(-1.0) + y.mul_scalar(0.1 * t),
        |_t, y: Tensor<2>| y.tanh().mul_scalar(0.5).add_scalar(0.3),
    );
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
