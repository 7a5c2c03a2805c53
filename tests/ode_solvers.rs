//! Accuracy of every solver on the shared reference problems (f64, CPU).

use burn::tensor::Tensor;
use physflow::device::cpu_f64;
use physflow::ode::problems::{batch_tensor, tensor_rows, DampedRotation, Kepler};
use physflow::ode::SystemField;
use physflow::ode::{self, Adaptive, FnField, Limits, Options, PiController, Solver, StepControl, StepSize, Time};
use physflow::sim::systems::LotkaVolterra;
use physflow::Error;

/// Least-squares slope of `log y` against `log x`.
fn loglog_slope(x: &[f64], y: &[f64]) -> f64 {
    let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    let n = lx.len() as f64;
    let mx = lx.iter().sum::<f64>() / n;
    let my = ly.iter().sum::<f64>() / n;
    let sxy: f64 = lx.iter().zip(&ly).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = lx.iter().map(|a| (a - mx).powi(2)).sum();
    sxy / sxx
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Convergence order of every solver, run with fixed steps, on `y' = A y` against the
/// closed form `expm(A t) y0`: the slope of log error vs log step is within ±0.3 of the order.
#[test]
fn convergence_order_of_every_solver() {
    let device = cpu_f64().unwrap();
    let sys = DampedRotation::default();
    let field = sys.field();
    let y0v = [1.0, 0.5];
    let t1 = 4.0;
    let exact = sys.exact(t1, y0v);
    for solver in Solver::ALL {
        let order = solver.tableau().order;
        // Five halvings; the slope is fitted on the three finest, the asymptotic regime
        // (Tsit5's small leading error constant makes the coarse steps pre-asymptotic),
        // with errors still well above f64 round-off.
        let dts: Vec<f64> = if order >= 4 { vec![0.2, 0.1, 0.05, 0.025, 0.0125] } else { vec![0.04, 0.02, 0.01, 0.005, 0.0025] };
        let mut errs = Vec::new();
        for &dt in &dts {
            let opts = Options::fixed(solver, dt);
            let y0 = batch_tensor(&[y0v], &device);
            let sol = ode::solve(&field, y0, &[0.0, t1], &opts).unwrap();
            let y1 = &tensor_rows(&sol.ys[1])[0];
            errs.push(max_abs_diff(y1, &exact));
        }
        let slope = loglog_slope(&dts[2..], &errs[2..]);
        assert!((slope - order as f64).abs() <= 0.3, "{}: measured order {slope:.3}, expected {order} (errors {errs:?})", solver.tableau().name);
    }
}

/// Adaptive solvers on Kepler (e = 0.5, exact solution from Kepler's equation) over one
/// period: the error falls as the tolerance falls. With error-per-step control the global
/// error scales like tol^{p/(p+1)} (Hairer, Nørsett & Wanner I, §II.4), so the log-log
/// slope lies between 0.6 (p = 2 estimator) and 1.2 (allowing for the safety margin).
/// `StepSize::Grid` takes exactly one step per output interval: on `y' = -y` one RK4 step of
/// size `h` multiplies `y` by the method's stability polynomial `R(-h) = 1 - h + h²/2 - h³/6 + h⁴/24`
/// (Hairer & Wanner II, §IV.2), so the outputs are products of `R` over a non-uniform grid.
#[test]
fn grid_steps_land_on_the_output_times() {
    let device = cpu_f64().unwrap();
    let decay = FnField::new(|_t: &Time, y: Tensor<2>| y.neg());
    let times = [0.0, 0.1, 0.35, 0.4, 1.0];
    let sol = ode::solve(&decay, batch_tensor(&[[1.0], [2.0]], &device), &times, &Options::grid(Solver::Rk4)).unwrap();
    assert_eq!(sol.stats.steps, times.len() - 1);
    let r = |h: f64| 1.0 - h + h * h / 2.0 - h.powi(3) / 6.0 + h.powi(4) / 24.0;
    let mut expected = 1.0;
    for k in 1..times.len() {
        expected *= r(times[k] - times[k - 1]);
        let y = tensor_rows(&sol.ys[k]);
        assert!((y[0][0] - expected).abs() < 1e-15 && (y[1][0] - 2.0 * expected).abs() < 2e-15, "t = {}: {y:?} vs {expected}", times[k]);
    }
    // Adaptive solvers step on the grid too, their error estimate unused.
    let tsit = ode::solve(&decay, batch_tensor(&[[1.0]], &device), &times, &Options::grid(Solver::Tsit5)).unwrap();
    assert_eq!((tsit.stats.steps, tsit.stats.rejected), (times.len() - 1, 0));
}

#[test]
fn adaptive_error_scales_with_tolerance() {
    let device = cpu_f64().unwrap();
    let kep = Kepler::default();
    let field = kep.field();
    let t1 = 2.0 * std::f64::consts::PI;
    let exact = kep.exact(t1);
    for (solver, controller) in Solver::ALL.into_iter().filter(|s| s.is_adaptive()).flat_map(|s| [(s, PiController::default()), (s, PiController::hairer())]) {
        let tols = [1e-5, 1e-6, 1e-7, 1e-8, 1e-9];
        let mut errs = Vec::new();
        for &tol in &tols {
            let opts = Options { solver, step: StepSize::Adaptive(Adaptive { controller, ..Adaptive::tol(tol, tol) }), ..Options::default() };
            let y0 = batch_tensor(&[kep.y0()], &device);
            let sol = ode::solve(&field, y0, &[0.0, t1], &opts).unwrap();
            let y = &tensor_rows(&sol.ys[1])[0];
            errs.push(max_abs_diff(y, &exact));
        }
        for w in errs.windows(2) {
            assert!(w[1] < w[0], "{}: error did not fall with tolerance: {errs:?}", solver.tableau().name);
        }
        let slope = loglog_slope(&tols, &errs);
        assert!((0.6..=1.2).contains(&slope), "{}: error vs tolerance slope {slope:.3} (errors {errs:?})", solver.tableau().name);
        // At tol = 1e-9 the error over one period stays within 1000 × tol.
        assert!(errs[4] < 1e-6, "{}: error {} at tol 1e-9", solver.tableau().name, errs[4]);
    }
}

/// Lotka–Volterra against a tight-tolerance solve by another method (Dopri5 at 1e-12),
/// at 20 output times (dense output), and its conserved quantity.
#[test]
fn lotka_volterra_against_tight_reference() {
    let device = cpu_f64().unwrap();
    // The one Lotka–Volterra definition (`sim::systems`), as a batched tensor field.
    let lv = LotkaVolterra::default();
    let field = SystemField::new(&lv).unwrap();
    let times: Vec<f64> = (0..=20).map(|i| i as f64 * 0.5).collect();
    let y0 = [[1.0, 1.0], [2.0, 0.5]];
    let reference = {
        let opts = Options::adaptive(Solver::Dopri5, 1e-12, 1e-12);
        ode::solve(&field, batch_tensor(&y0, &device), &times, &opts).unwrap()
    };
    for solver in [Solver::Tsit5, Solver::Bosh3] {
        let opts = Options::adaptive(solver, 1e-8, 1e-8);
        let sol = ode::solve(&field, batch_tensor(&y0, &device), &times, &opts).unwrap();
        for (k, (a, b)) in sol.ys.iter().zip(&reference.ys).enumerate() {
            let (ra, rb) = (tensor_rows(a), tensor_rows(b));
            for i in 0..2 {
                let err = max_abs_diff(&ra[i], &rb[i]);
                assert!(err < 1e-5, "{} t={} sample {i}: error {err}", solver.tableau().name, times[k]);
            }
        }
    }
    let v0 = LotkaVolterra::invariant(&lv.p, &y0[0]);
    for y in &reference.ys {
        let v = LotkaVolterra::invariant(&lv.p, &tensor_rows(y)[0]);
        assert!((v - v0).abs() < 1e-9, "invariant drifted: {v} vs {v0}");
    }
}

/// Dense output between steps converges at its order: for every solver, in fixed steps of
/// h = 0.04 and 0.02 on the damped rotation (closed form), the largest error at points between
/// steps falls by 2^q, q the order of the global error of the interpolated solution. Cubic
/// Hermite interpolation has a local error of O(h⁴) on top of the method's O(h^p), so
/// q = min(p, 4); the methods' own continuous extensions of order p − 1 (Dormand–Prince's
/// CONTD5, Tsitouras') have a local error of O(h^p), so q = p (Hairer, Nørsett & Wanner,
/// §II.6). The fitted q must be in [q − 0.3, q + 0.7]: the upper slack because Tsitouras'
/// method, tuned for small leading error coefficients, still shows its O(h^(p+1)) terms at these
/// steps (fitted 5.6); smaller steps reach round-off. The error at h = 0.02 must be below C h^q with
/// C = 4 (the closed form's derivatives are ≤ 1 on [0, 3]). Adaptive runs: the dense error at
/// rtol = atol = 1e-9 stays below 1e-7.
#[test]
fn dense_evaluation_between_steps() {
    let device = cpu_f64().unwrap();
    let sys = DampedRotation::default();
    let field = sys.field();
    let points: Vec<f64> = (0..60).map(|i| 0.05 * i as f64 + 0.0137).filter(|t| *t < 3.0).collect();
    let dense_error = |opts: &Options| -> f64 {
        let sol = ode::solve(&field, batch_tensor(&[[1.0, 0.0]], &device), &[0.0, 3.0], opts).unwrap();
        assert!(sol.evaluate(3.5).is_err());
        points.iter().map(|&t| max_abs_diff(&tensor_rows(&sol.evaluate(t).unwrap())[0], &sys.exact(t, [1.0, 0.0]))).fold(0.0, f64::max)
    };
    for solver in Solver::ALL {
        let tab = solver.tableau();
        let name = tab.name;
        let q = if tab.dense.is_some() { tab.order } else { tab.order.min(4) } as f64;
        let (e1, e2) =
            (dense_error(&Options { dense: true, ..Options::fixed(solver, 0.04) }), dense_error(&Options { dense: true, ..Options::fixed(solver, 0.02) }));
        let fitted = (e1 / e2).log2();
        eprintln!("{name}: dense error {e1:.3e} (h = 0.04), {e2:.3e} (h = 0.02), order {fitted:.2} (expected {q})");
        assert!((q - 0.3..q + 0.7).contains(&fitted), "{name}: dense-output order {fitted:.2}, expected {q} (errors {e1:e}, {e2:e})");
        assert!(e2 < 4.0 * 0.02f64.powf(q), "{name}: dense error {e2:e} at h = 0.02");
        if solver.is_adaptive() {
            let e = dense_error(&Options { dense: true, ..Options::adaptive(solver, 1e-9, 1e-9) });
            assert!(e < 1e-7, "{name}: adaptive dense error {e:e}");
        }
    }
}

/// Integration backwards in time returns to the initial state.
#[test]
fn backward_in_time() {
    let device = cpu_f64().unwrap();
    let sys = DampedRotation::default();
    let field = sys.field();
    let opts = Options::adaptive(Solver::Tsit5, 1e-10, 1e-12);
    let y1 = sys.exact(2.0, [1.0, 0.0]);
    let sol = ode::solve(&field, batch_tensor(&[y1], &device), &[2.0, 1.0, 0.0], &opts).unwrap();
    let y0 = &tensor_rows(&sol.ys[2])[0];
    assert!(max_abs_diff(y0, &[1.0, 0.0]) < 1e-8, "{y0:?}");
    let mid = &tensor_rows(&sol.ys[1])[0];
    assert!(max_abs_diff(mid, &sys.exact(1.0, [1.0, 0.0])) < 1e-8);
}

/// Per-sample control gives each sample of a heterogeneous batch the result of solving it alone.
#[test]
fn per_sample_control_matches_solving_alone() {
    let device = cpu_f64().unwrap();
    let lv = LotkaVolterra::default();
    let field = SystemField::new(&lv).unwrap();
    let y0 = [[1.0, 1.0], [4.0, 0.2], [0.3, 2.5], [1.5, 3.0]];
    let times = [0.0, 0.7, 2.0, 5.0];
    for solver in [Solver::Tsit5, Solver::Dopri5, Solver::Bosh3] {
        let opts =
            Options { solver, step: StepSize::Adaptive(Adaptive { control: StepControl::PerSample, ..Adaptive::tol(1e-7, 1e-9) }), ..Options::default() };
        let sol = ode::solve(&field, batch_tensor(&y0, &device), &times, &opts).unwrap();
        assert!(sol.status.iter().all(|s| *s == ode::Status::Success), "{:?}", sol.status);
        let alone_opts = Options::adaptive(solver, 1e-7, 1e-9);
        let mut alone_steps = 0;
        for (i, row) in y0.iter().enumerate() {
            let alone = ode::solve(&field, batch_tensor(&[*row], &device), &times, &alone_opts).unwrap();
            alone_steps += alone.stats.steps;
            for k in 0..times.len() {
                let a = &tensor_rows(&sol.ys[k])[i];
                let b = &tensor_rows(&alone.ys[k])[0];
                // Same step sequence; only the order of floating-point operations differs.
                assert!(max_abs_diff(a, b) < 1e-12, "{} sample {i} t={}: {a:?} vs {b:?}", solver.tableau().name, times[k]);
            }
        }
        assert_eq!(sol.stats.steps, alone_steps, "{}: accepted steps", solver.tableau().name);
    }
}

/// Bad input gives named errors, never a panic.
#[test]
fn bad_input_errors() {
    let device = cpu_f64().unwrap();
    let field = DampedRotation::default().field();
    let opts = Options::default();
    let nan = batch_tensor(&[[f64::NAN, 0.0]], &device);
    assert!(matches!(ode::solve(&field, nan, &[0.0, 1.0], &opts), Err(Error::NonFiniteInput { what: "y0", .. })));
    let y0 = || batch_tensor(&[[1.0, 0.0]], &device);
    assert!(matches!(ode::solve(&field, y0(), &[1.0, 1.0], &opts), Err(Error::InvalidArgument { name: "times", .. })));
    assert!(matches!(ode::solve(&field, y0(), &[0.0, 1.0, 0.5], &opts), Err(Error::InvalidArgument { name: "times", .. })));
    let bad = Options::adaptive(Solver::Tsit5, 0.0, 1e-8);
    assert!(matches!(ode::solve(&field, y0(), &[0.0, 1.0], &bad), Err(Error::InvalidArgument { name: "rtol", .. })));
    let bad = Options::adaptive(Solver::Tsit5, -1e-3, 1e-8);
    assert!(matches!(ode::solve(&field, y0(), &[0.0, 1.0], &bad), Err(Error::InvalidArgument { name: "rtol", .. })));
    let bad = Options { solver: Solver::Rk4, ..Options::default() };
    assert!(matches!(ode::solve(&field, y0(), &[0.0, 1.0], &bad), Err(Error::InvalidArgument { name: "step", .. })));
    let few = Options { limits: Limits { max_steps: 3, ..Limits::default() }, ..Options::default() };
    assert!(matches!(ode::solve(&field, y0(), &[0.0, 100.0], &few), Err(Error::MaxStepsReached { max_steps: 3, .. })));

    // y' = y² from y(0) = 1 blows up at t = 1.
    let blowup = FnField::new(|_t: &Time, y: Tensor<2>| y.square());
    let y1 = || batch_tensor(&[[1.0]], &device);
    let adaptive = ode::solve(&blowup, y1(), &[0.0, 2.0], &Options::default());
    assert!(matches!(adaptive, Err(Error::StepSizeUnderflow { t, .. }) | Err(Error::NonFinite { t, .. }) if (t - 1.0).abs() < 1e-2), "{adaptive:?}");
    // f(y) = sqrt(y) at y < 0 is NaN from the start: named as a non-finite derivative.
    let nan_field = FnField::new(|_t: &Time, y: Tensor<2>| y.sqrt());
    let r = ode::solve(&nan_field, batch_tensor(&[[-1.0]], &device), &[0.0, 1.0], &Options::default());
    assert!(matches!(r, Err(Error::NonFinite { what: "derivative f(t, y)", .. })), "{r:?}");
    let fixed = ode::solve(&blowup, y1(), &[0.0, 2.0], &Options::fixed(Solver::Rk4, 0.1));
    assert!(matches!(fixed, Err(Error::NonFinite { what: "state", .. })), "{fixed:?}");
    // Per-sample: the failing sample is reported, the others finish.
    let ps = Options { step: StepSize::Adaptive(Adaptive { control: StepControl::PerSample, ..Adaptive::default() }), ..Options::default() };
    let mixed = ode::solve(&blowup, batch_tensor(&[[1.0], [0.1]], &device), &[0.0, 2.0], &ps).unwrap();
    // Diagnosed at the blow-up t = 1 as the batch-wide solve is: the step underflows, or f
    // is not finite just past it.
    assert!(matches!(mixed.status[0], ode::Status::StepSizeUnderflow { t } | ode::Status::NonFinite { t } if (t - 1.0).abs() < 1e-2), "{:?}", mixed.status);
    assert_eq!(mixed.status[1], ode::Status::Success);
    let y = tensor_rows(&mixed.ys[1]);
    // y(t) = y0 / (1 − y0 t): 0.1 / 0.8 at t = 2.
    assert!((y[1][0] - 0.125).abs() < 1e-6, "{y:?}");
}
