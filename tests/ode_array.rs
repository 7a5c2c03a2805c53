//! The ndarray API of `ode` and `sde` (closures and `sim::System`s in, arrays out), the
//! `System` → `ode::VectorField` bridge with its gradients, and the step and wall-clock
//! budgets of both engines.

use burn::tensor::Tensor;
use ndarray::{array, Array2, Axis};
use physflow::ode::{self, Adaptive, FnField, Gradient, Limits, Options, Solver, StepSize, SystemField, Time};
use physflow::sde::{self, Noise, SdeOptions, SdeSolver, VirtualBrownianTree};
use physflow::sim::{self, SimOptions, System};
use physflow::Error;

#[path = "../benches/common/closures.rs"]
mod closures;
use closures::van_der_pol;

fn tight() -> Options {
    Options::adaptive(Solver::Tsit5, 1e-11, 1e-11)
}

/// Harmonic oscillators `x'' = -x` against the analytic `x(t) = x₀ cos t`, for every solver,
/// and the same numbers as the tensor API with the same field (bit for bit: one engine).
#[test]
fn closure_solve_matches_analytic_and_tensor_path() {
    let y0 = array![[1.0, 0.0], [2.0, 0.0], [-0.5, 0.0]];
    let times = [0.0, 0.5, 1.0, 2.0];
    for solver in Solver::ALL {
        let opts = if solver.is_adaptive() { Options::adaptive(solver, 1e-10, 1e-10) } else { Options::fixed(solver, 1e-3) };
        let sol = ode::solve_array(
            |_t, y, mut dy| {
                dy[0] = y[1];
                dy[1] = -y[0];
            },
            y0.view(),
            &times,
            &opts,
        )
        .unwrap();
        assert_eq!(sol.ys.dim(), (4, 3, 2));
        // Global error of an order-p method at h = 1e-3 over t ≤ 2: Euler's is ~1e-3.
        let tol = match solver {
            Solver::Euler => 3e-3,
            Solver::Midpoint | Solver::Heun => 2e-6,
            _ => 1e-8,
        };
        for (k, t) in times.iter().enumerate() {
            for i in 0..3 {
                let exact = y0[[i, 0]] * t.cos();
                assert!((sol.ys[[k, i, 0]] - exact).abs() < tol, "{solver:?} t={t} sample {i}: {} vs {exact}", sol.ys[[k, i, 0]]);
            }
        }
        // The tensor path on the same problem.
        let device = physflow::device::cpu_f64().unwrap();
        let field = FnField::new(|_t: &Time, y: Tensor<2>| {
            let x = y.clone().narrow(1, 0, 1);
            let v = y.narrow(1, 1, 1);
            Tensor::cat(vec![v, x.neg()], 1)
        });
        let yt = physflow::host::tensor_from_array2(&y0.view(), &device, burn::tensor::DType::F64);
        let reference = ode::solve(&field, yt, &times, &opts).unwrap();
        let last = physflow::host::array2_from_tensor(&reference.ys[3]).unwrap();
        assert_eq!(sol.last(), last.view(), "{solver:?}: ndarray and tensor paths differ");
        assert_eq!(sol.stats, reference.stats);
    }
}

#[test]
fn dense_output_and_per_sample_control() {
    let y0 = array![[1.0], [3.0]];
    let decay = |_t: f64, y: ndarray::ArrayView1<f64>, mut dy: ndarray::ArrayViewMut1<f64>| dy[0] = -y[0];
    let opts = Options { dense: true, ..tight() };
    let sol = ode::solve_array(decay, y0.view(), &[0.0, 2.0], &opts).unwrap();
    for t in [0.0, 0.3, 1.7, 2.0] {
        let y = sol.evaluate(t).unwrap();
        for i in 0..2 {
            assert!((y[[i, 0]] - y0[[i, 0]] * (-t).exp()).abs() < 1e-9, "t = {t}");
        }
    }
    assert!(matches!(sol.evaluate(2.5), Err(Error::InvalidArgument { .. })));
    let plain = ode::solve_array(decay, y0.view(), &[0.0, 2.0], &tight()).unwrap();
    assert!(matches!(plain.evaluate(1.0), Err(Error::InvalidArgument { .. })));
    let per = Options { step: StepSize::Adaptive(Adaptive { control: ode::StepControl::PerSample, ..Adaptive::tol(1e-11, 1e-11) }), ..tight() };
    let sol = ode::solve_array(decay, y0.view(), &[0.0, 1.0, 2.0], &per).unwrap();
    assert!(sol.status.iter().all(|s| *s == ode::Status::Success));
    assert!((sol.ys[[2, 1, 0]] - 3.0 * (-2f64).exp()).abs() < 1e-9);
}

/// One definition, two engines: the closure-built Van der Pol (μ = 1, not stiff) solved by
/// `ode` (Tsit5) and by `sim` (BDF), both at tight tolerances, agree.
#[test]
fn system_solves_like_sim() {
    let vdp = van_der_pol(1.0);
    let times = [0.0, 1.0, 3.0, 5.0];
    let y0 = Array2::from_shape_vec((1, 2), vdp.initial_state()).unwrap();
    let sol = ode::solve_system(&vdp, y0.view(), &times, &tight()).unwrap();
    let reference = sim::simulate(&vdp, &times, &SimOptions { rtol: 1e-11, atol: 1e-11, ..SimOptions::default() }).unwrap();
    for k in 0..times.len() {
        for j in 0..2 {
            let (a, b) = (sol.ys[[k, 0, j]], reference.states[[k, j]]);
            assert!((a - b).abs() < 1e-7 * b.abs().max(1.0), "t = {}: {a} vs {b}", times[k]);
        }
    }
}

/// Gradients through `SystemField` (the system's own VJPs) against central differences of
/// tight solves: `L = Σ y(T)` with respect to `y0` and `μ`, for each gradient strategy.
#[test]
fn system_field_gradients_match_finite_differences() {
    let vdp = van_der_pol(1.0);
    let t_end = 2.0;
    let loss = |mu: f64, y0: [f64; 2]| -> f64 {
        let sys = van_der_pol(mu);
        let sol = ode::solve_system(&sys, ndarray::array![[y0[0], y0[1]]].view(), &[0.0, t_end], &Options::adaptive(Solver::Tsit5, 1e-12, 1e-12)).unwrap();
        sol.last().sum()
    };
    let eps = 1e-5;
    let fd_mu = (loss(1.0 + eps, [2.0, 0.0]) - loss(1.0 - eps, [2.0, 0.0])) / (2.0 * eps);
    let fd_y0 = [(loss(1.0, [2.0 + eps, 0.0]) - loss(1.0, [2.0 - eps, 0.0])) / (2.0 * eps), (loss(1.0, [2.0, eps]) - loss(1.0, [2.0, -eps])) / (2.0 * eps)];
    let device = physflow::device::cpu_f64().unwrap();
    let field = SystemField::new(&vdp).unwrap();
    for gradient in [Gradient::Direct, Gradient::Checkpointed { checkpoints: 4 }, Gradient::Adjoint(Default::default())] {
        let y0 = Tensor::<2>::from_data(burn::tensor::TensorData::new(vec![2.0, 0.0], [1, 2]), (&device, burn::tensor::DType::F64));
        let (_, tape) = ode::solve_for_grad(&field, y0.clone(), &[0.0, t_end], &tight(), gradient.clone()).unwrap();
        let grads = tape.backward(&[y0.zeros_like(), y0.ones_like()]).unwrap();
        let gy = physflow::host::array2_from_tensor(&grads.y0).unwrap();
        for (g, f) in gy.iter().zip(&fd_y0) {
            assert!((g - f).abs() < 1e-6 * f.abs().max(1.0), "{gradient}: dL/dy0 {g} vs {f}");
        }
        assert!((grads.params[0] - fd_mu).abs() < 1e-6 * fd_mu.abs().max(1.0), "{gradient}: dL/dmu {} vs {fd_mu}", grads.params[0]);
    }
}

#[test]
fn bad_shapes_and_options_are_named() {
    let vdp = van_der_pol(1.0);
    let wide = Array2::<f64>::zeros((2, 3));
    assert!(matches!(ode::solve_system(&vdp, wide.view(), &[0.0, 1.0], &tight()), Err(Error::Shape { .. })));
    let empty = Array2::<f64>::zeros((0, 2));
    assert!(matches!(ode::solve_system(&vdp, empty.view(), &[0.0, 1.0], &tight()), Err(Error::Shape { .. })));
    let f = |_t: f64, _y: ndarray::ArrayView1<f64>, _dy: ndarray::ArrayViewMut1<f64>| {};
    let y0 = array![[1.0]];
    for opts in [
        Options { step: StepSize::Adaptive(Adaptive { min_step: -1.0, ..Adaptive::default() }), ..Options::default() },
        Options { limits: Limits { max_wall_seconds: Some(0.0), ..Limits::default() }, ..Options::default() },
        Options { limits: Limits { max_wall_seconds: Some(f64::NAN), ..Limits::default() }, ..Options::default() },
    ] {
        assert!(matches!(ode::solve_array(f, y0.view(), &[0.0, 1.0], &opts), Err(Error::InvalidArgument { .. })), "{opts:?}");
    }
    assert!(matches!(SystemField::with_params(&vdp, &[1.0, 2.0]), Err(Error::InvalidArgument { .. })));
    // A closure that returns NaN is named at the step where it happened.
    let nan = |t: f64, _y: ndarray::ArrayView1<f64>, mut dy: ndarray::ArrayViewMut1<f64>| dy[0] = if t > 0.5 { f64::NAN } else { 1.0 };
    assert!(matches!(ode::solve_array(nan, y0.view(), &[0.0, 1.0], &tight()), Err(Error::NonFinite { .. })));
}

/// Budgets: a stiff problem (Van der Pol μ = 1000) with an explicit solver runs into
/// `max_steps`, `min_step` and the wall-clock limit, each as its own error.
#[test]
fn budgets_are_typed_errors() {
    let stiff = van_der_pol(1000.0);
    let y0 = array![[2.0, 0.0]];
    let times = [0.0, 3000.0];
    let r = ode::solve_system(&stiff, y0.view(), &times, &Options { limits: Limits { max_steps: 500, ..Limits::default() }, ..Options::default() });
    assert!(matches!(r, Err(Error::MaxStepsReached { max_steps: 500, .. })), "{r:?}");
    // Explicit stability needs h ≲ 2.8/|λ|, |λ| ~ 2000 on the slow manifold: 1e-2 is refused.
    let r = ode::solve_system(
        &stiff,
        y0.view(),
        &times,
        &Options { step: StepSize::Adaptive(Adaptive { min_step: 1e-2, ..Adaptive::default() }), ..Options::default() },
    );
    assert!(matches!(r, Err(Error::StepSizeUnderflow { .. })), "{r:?}");
    let r =
        ode::solve_system(&stiff, y0.view(), &times, &Options { limits: Limits { max_wall_seconds: Some(0.05), max_steps: usize::MAX }, ..Options::default() });
    match r {
        Err(Error::TimeLimitReached { seconds, t, steps }) => {
            assert_eq!(seconds, 0.05);
            assert!(t > 0.0 && t < 3000.0 && steps > 0, "t = {t}, steps = {steps}");
        }
        other => panic!("expected TimeLimitReached, got {other:?}"),
    }
    // The SDE engine has the same wall-clock budget: 10⁷ fixed steps do not fit in 50 ms.
    let w = VirtualBrownianTree::new(0.0, 1.0, 1e-9, [1, 1], 3).unwrap();
    let opts = SdeOptions { max_wall_seconds: Some(0.05), ..SdeOptions::fixed(SdeSolver::EulerMaruyama, 1e-7) };
    let r = sde::sdeint_array(|_t, y, mut f| f[0] = -y[0], |_t, _y, mut g| g[0] = 1.0, Noise::Diagonal, array![[0.0]].view(), &[0.0, 1.0], &w, &opts);
    assert!(matches!(r, Err(Error::TimeLimitReached { .. })), "{r:?}");
}

/// The ndarray SDE solve against the tensor solve (same path, same numbers) and against the
/// Ornstein–Uhlenbeck moments `E y = y₀ e^{-θt}`, `Var y = σ²(1 − e^{-2θt})/(2θ)`.
#[test]
fn sde_array_matches_tensor_path_and_ou_moments() {
    let (theta, sigma, b) = (1.5, 0.8, 4000usize);
    let y0 = Array2::from_elem((b, 1), 1.0);
    let w = VirtualBrownianTree::new(0.0, 1.0, 1e-6, [b, 1], 11).unwrap();
    for solver in [SdeSolver::EulerMaruyama, SdeSolver::EulerHeun, SdeSolver::Sra1, SdeSolver::ReversibleHeun] {
        let opts = SdeOptions::fixed(solver, 1e-2);
        let (ys, stats) =
            sde::sdeint_array(|_t, y, mut f| f[0] = -theta * y[0], |_t, _y, mut g| g[0] = sigma, Noise::Diagonal, y0.view(), &[0.0, 1.0], &w, &opts).unwrap();
        assert_eq!(stats.steps, 100);
        let end = ys.index_axis(Axis(0), 1);
        let mean = end.mean().unwrap();
        let var = end.var(1.0);
        let (m, v) = ((-theta).exp(), sigma * sigma * (1.0 - (-2.0 * theta).exp()) / (2.0 * theta));
        // Standard errors at b = 4000: mean ~ 0.008, variance ~ 0.0045; 4 of them, plus O(h) bias.
        assert!((mean - m).abs() < 0.035, "{solver:?}: mean {mean} vs {m}");
        assert!((var - v).abs() < 0.03, "{solver:?}: var {var} vs {v}");
        let device = physflow::device::cpu_f64().unwrap();
        let field = sde::FnSde::new(move |_t, y: Tensor<2>| y.mul_scalar(-theta), move |_t, y: Tensor<2>| y.zeros_like().add_scalar(sigma)).additive();
        let yt = physflow::host::tensor_from_array2(&y0.view(), &device, burn::tensor::DType::F64);
        let reference = sde::sdeint(&field, yt, &[0.0, 1.0], &w, &opts).unwrap();
        let r = physflow::host::array2_from_tensor(&reference[1]).unwrap();
        assert_eq!(end, r.view(), "{solver:?}: ndarray and tensor paths differ");
    }
    let milstein = SdeOptions::fixed(SdeSolver::MilsteinIto, 1e-2);
    let r = sde::sdeint_array(|_t, y, mut f| f[0] = -y[0], |_t, _y, mut g| g[0] = 1.0, Noise::Diagonal, y0.view(), &[0.0, 1.0], &w, &milstein);
    assert!(matches!(r, Err(Error::Unsupported(_))));
}
