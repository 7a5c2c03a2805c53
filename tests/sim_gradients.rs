//! Forward sensitivities and adjoint gradients of `sim` solves against central
//! finite differences of tight solves, and against each other; ensembles
//! against sequential solves.

use ndarray::{Array2, Axis};
use physflow::sim::systems::{ic, Boundary, Grid1d, LotkaVolterra, Pde1d, Robertson};
use physflow::sim::{self, Integrator, SimOptions, System, Wrt};

fn tight(method: Integrator) -> SimOptions {
    SimOptions { method, rtol: 1e-10, atol: 1e-12, ..SimOptions::default() }
}

/// `G = Σ_k Σ_i c_i y_i(t_k)²/2` with fixed weights `c`, and its gradient in `y`.
fn weighted_loss(c: &[f64]) -> impl Fn(&Array2<f64>) -> (f64, Array2<f64>) + '_ {
    move |y: &Array2<f64>| {
        let g = y.rows().into_iter().map(|r| r.iter().zip(c).map(|(v, c)| 0.5 * c * v * v).sum::<f64>()).sum();
        let mut dg = y.clone();
        for mut r in dg.rows_mut() {
            for (v, c) in r.iter_mut().zip(c) {
                *v *= c;
            }
        }
        (g, dg)
    }
}

/// Central difference of `G` along parameter `k` (or initial-state component `k - m`).
fn fd_loss(system: &dyn System, p: &[f64], y0: &[f64], times: &[f64], opts: &SimOptions, c: &[f64], k: usize, rel: f64) -> f64 {
    let m = p.len();
    let eval = |sign: f64| {
        let (mut p, mut y0) = (p.to_vec(), y0.to_vec());
        let (x, h) = if k < m { (&mut p[k], 0.0) } else { (&mut y0[k - m], 0.0) };
        let step = rel * x.abs().max(1e-2) + h;
        *x += sign * step;
        let traj = sim::simulate_with(system, &p, &y0, times, opts).unwrap();
        (weighted_loss(c)(&traj.states).0, step)
    };
    let ((gp, h), (gm, _)) = (eval(1.0), eval(-1.0));
    (gp - gm) / (2.0 * h)
}

/// Lotka–Volterra: forward ∂y/∂p and ∂y/∂y₀ at every output time vs central
/// differences (rtol 1e-10 solves, relative step 1e-5), every method.
#[test]
fn forward_sensitivities_match_finite_differences() {
    let sys = LotkaVolterra::default();
    let times = [0.5, 1.5, 3.0];
    for method in Integrator::ALL {
        let opts = tight(method);
        let s = sim::forward_sensitivities(&sys, &sys.p, &sys.y0, &times, &opts, Wrt::ParamsAndInitialState).unwrap();
        let dy0 = s.dy_dy0.as_ref().unwrap();
        for k in 0..6 {
            let rel = 1e-5;
            let (mut pp, mut pm, mut yp, mut ym) = (sys.p.to_vec(), sys.p.to_vec(), sys.y0.to_vec(), sys.y0.to_vec());
            let h = if k < 4 {
                let h = rel * sys.p[k];
                pp[k] += h;
                pm[k] -= h;
                h
            } else {
                let h = rel * sys.y0[k - 4];
                yp[k - 4] += h;
                ym[k - 4] -= h;
                h
            };
            let a = sim::simulate_with(&sys, &pp, &yp, &times, &opts).unwrap().states;
            let b = sim::simulate_with(&sys, &pm, &ym, &times, &opts).unwrap().states;
            for t in 0..times.len() {
                for i in 0..2 {
                    let fd = (a[[t, i]] - b[[t, i]]) / (2.0 * h);
                    let an = if k < 4 { s.dy_dp[[t, i, k]] } else { dy0[[t, i, k - 4]] };
                    // Solver noise 1e-10 amplified by 1/h ~ 1e5, plus O(h²) truncation.
                    assert!((an - fd).abs() < 1e-4 * (1.0 + fd.abs()), "{method:?}: d y{i}(t{t}) / dq{k}: sensitivity {an} vs FD {fd}");
                }
            }
        }
    }
}

/// The adjoint gradient of a loss summed over output times vs finite
/// differences and vs the forward sensitivities, every method.
#[test]
fn adjoint_matches_finite_differences_and_forward_sensitivities() {
    let sys = LotkaVolterra::default();
    let times = [0.5, 1.5, 3.0];
    let c = [1.0, 2.0];
    for method in Integrator::ALL {
        let opts = tight(method);
        let adj = sim::adjoint_gradient(&sys, &sys.p, &sys.y0, &times, &opts, weighted_loss(&c)).unwrap();
        let fwd = sim::forward_sensitivities(&sys, &sys.p, &sys.y0, &times, &opts, Wrt::ParamsAndInitialState).unwrap();
        // dG/dq from the forward sensitivities: Σ_k Σ_i c_i y_i s_ik.
        let y = &fwd.trajectory.states;
        for k in 0..6 {
            let mut from_fwd = 0.0;
            for t in 0..times.len() {
                for i in 0..2 {
                    let s = if k < 4 { fwd.dy_dp[[t, i, k]] } else { fwd.dy_dy0.as_ref().unwrap()[[t, i, k - 4]] };
                    from_fwd += c[i] * y[[t, i]] * s;
                }
            }
            let a = if k < 4 { adj.params[k] } else { adj.y0[k - 4] };
            let fd = fd_loss(&sys, &sys.p, &sys.y0, &times, &opts, &c, k, 1e-5);
            assert!((a - fd).abs() < 1e-4 * (1.0 + fd.abs()), "{method:?}: dG/dq{k}: adjoint {a} vs FD {fd}");
            assert!((a - from_fwd).abs() < 1e-5 * (1.0 + a.abs()), "{method:?}: dG/dq{k}: adjoint {a} vs forward {from_fwd}");
        }
    }
}

/// Stiff case: Robertson's rate constants (BDF), adjoint vs forward vs FD,
/// relative to each parameter's scale (k₂ = 3·10⁷).
#[test]
fn robertson_gradients_agree() {
    let sys = Robertson::default();
    let times = [1.0, 10.0, 100.0];
    let c = [1.0, 1e8, 1.0]; // y₂ ~ 1e-5: weight it so that it matters
    let opts = SimOptions { rtol: 1e-10, atol: 1e-14, ..tight(Integrator::Bdf) };
    let adj = sim::adjoint_gradient(&sys, &sys.p, &sys.y0, &times, &opts, weighted_loss(&c)).unwrap();
    let fwd = sim::forward_sensitivities(&sys, &sys.p, &sys.y0, &times, &opts, Wrt::Params).unwrap();
    let y = &fwd.trajectory.states;
    for k in 0..3 {
        let from_fwd: f64 = (0..times.len()).flat_map(|t| (0..3).map(move |i| (t, i))).map(|(t, i)| c[i] * y[[t, i]] * fwd.dy_dp[[t, i, k]]).sum();
        let fd = fd_loss(&sys, &sys.p, &sys.y0, &times, &opts, &c, k, 1e-4);
        // Compare p_k·dG/dp_k (the log-parameter gradient), which has one scale for all k.
        let (a, f, w) = (adj.params[k] * sys.p[k], fd * sys.p[k], from_fwd * sys.p[k]);
        let scale = 1e-3 + f.abs();
        assert!((a - f).abs() < 1e-4 * scale, "k{}: adjoint {a} vs FD {f}", k + 1);
        assert!((a - w).abs() < 1e-4 * scale, "k{}: adjoint {a} vs forward {w}", k + 1);
    }
}

/// Sparse path: heat 1D (Neumann) diffusivity gradient, adjoint vs FD.
#[test]
fn sparse_adjoint_matches_finite_differences() {
    let g = Grid1d::new(30, 1.0, Boundary::Neumann { left: 0.0, right: 0.0 });
    let sys = Pde1d::heat(g, 0.02, ic::gaussian(&g, 0.3, 0.08, 1.0));
    let times = [0.2, 0.5];
    let c = vec![1.0; 30];
    let opts = tight(Integrator::Bdf);
    let adj = sim::adjoint_gradient(&sys, &sys.p, &sys.u0, &times, &opts, weighted_loss(&c)).unwrap();
    let fd = fd_loss(&sys, &sys.p, &sys.u0, &times, &opts, &c, 0, 1e-5);
    assert!((adj.params[0] - fd).abs() < 1e-5 * (1.0 + fd.abs()), "adjoint {} vs FD {fd}", adj.params[0]);
    // And one initial-state component.
    let fd0 = fd_loss(&sys, &sys.p, &sys.u0, &times, &opts, &c, 1 + 9, 1e-5);
    assert!((adj.y0[9] - fd0).abs() < 1e-5 * (1.0 + fd0.abs()), "adjoint {} vs FD {fd0}", adj.y0[9]);
}

/// A loss gradient of the wrong shape is an error, not a panic.
#[test]
fn adjoint_rejects_a_wrong_loss_gradient_shape() {
    let sys = LotkaVolterra::default();
    let e = sim::adjoint_gradient(&sys, &sys.p, &sys.y0, &[1.0, 2.0], &SimOptions::default(), |_| (0.0, Array2::zeros((1, 2)))).unwrap_err();
    assert!(matches!(e, physflow::Error::Shape { .. }), "{e}");
}

/// Ensembles over parameters and initial states are bit-identical to sequential solves.
#[test]
fn ensembles_are_bit_identical_to_sequential_solves() {
    let sys = Robertson::default();
    let n = 6;
    let params = Array2::from_shape_fn((n, 3), |(k, j)| sys.p[j] * (1.0 + 0.1 * k as f64));
    let y0s = Array2::from_shape_fn((n, 3), |(k, j)| {
        if j == 0 {
            1.0 - 0.05 * k as f64
        } else if j == 2 {
            0.05 * k as f64
        } else {
            0.0
        }
    });
    let times = [1.0, 10.0, 100.0];
    let opts = SimOptions::default();
    let out = sim::ensemble(&sys, Some(&params), Some(&y0s), &times, &opts, false).unwrap();
    assert_eq!(out.dim(), (n, 3, 3));
    for k in 0..n {
        let one = sim::simulate_with(&sys, params.row(k).as_slice().unwrap(), y0s.row(k).as_slice().unwrap(), &times, &opts).unwrap();
        assert_eq!(out.index_axis(Axis(0), k), one.states, "member {k}");
    }
    // A bad member's error surfaces.
    let mut bad = params.clone();
    bad[[3, 0]] = -1.0;
    assert!(sim::ensemble(&sys, Some(&bad), None, &times, &opts, false).is_err());
}

/// HIRES (8 species, stiff): every implicit method at rtol 1e-10 reproduces the
/// reference solution of the Bari test set for IVP solvers (RADAU5 at 1e-14):
/// to 1e-7 relative for BDF and ESDIRK34, 1e-6 for the second-order TR-BDF2,
/// whose global error at one local tolerance is the largest (measured 1.2e-7).
#[test]
fn hires_matches_the_test_set_reference() {
    use physflow::sim::systems::{hires, HIRES_REFERENCE, HIRES_T_END};
    let sys = hires();
    for method in Integrator::ALL.into_iter().filter(|m| m.is_implicit()) {
        let opts = SimOptions { method, rtol: 1e-10, atol: 1e-14, ..SimOptions::default() };
        let traj = sim::simulate(&sys, &[HIRES_T_END], &opts).unwrap();
        let tol = if method == Integrator::TrBdf2 { 1e-6 } else { 1e-7 };
        for (i, (y, r)) in traj.states.row(0).iter().zip(HIRES_REFERENCE).enumerate() {
            assert!(((y - r) / r).abs() < tol, "{method:?}: y{} = {y}, reference {r}", i + 1);
        }
    }
}

/// Gradients of `G = ½ Σ_k Σ_i (y_i(t_k)/y_i^ref)²` over 20 output times of
/// HIRES with respect to its 12 rate constants, against forward sensitivities
/// at rtol 1e-13 (whose state matches the test-set reference, test above). At
/// rtol 1e-8: forward sensitivities within 100× the tolerance, and the adjoint
/// with its quadrature under error control (`quadrature_rtol/atol`) within
/// 10× (measured: 3.7e-7 and 3e-8 relative to the largest component).
#[test]
fn hires_adjoint_and_forward_gradients_reach_the_requested_tolerance() {
    use physflow::sim::systems::{hires, HIRES_REFERENCE, HIRES_T_END};
    let sys = hires();
    let (p, y0) = (sys.params(), sys.initial_state());
    let times: Vec<f64> = (1..=20).map(|k| HIRES_T_END * k as f64 / 20.0).collect();
    let loss = |y: &Array2<f64>| {
        let mut dg = Array2::zeros(y.dim());
        let mut g = 0.0;
        for ((t, i), v) in y.indexed_iter() {
            let r = v / HIRES_REFERENCE[i];
            g += 0.5 * r * r;
            dg[[t, i]] = r / HIRES_REFERENCE[i];
        }
        (g, dg)
    };
    let from_forward = |opts: &SimOptions| {
        let f = sim::forward_sensitivities(&sys, &p, &y0, &times, opts, Wrt::Params).unwrap();
        let (_, dg) = loss(&f.trajectory.states);
        (0..p.len()).map(|k| f.dy_dp.index_axis(Axis(2), k).iter().zip(dg.iter()).map(|(s, d)| s * d).sum::<f64>()).collect::<Vec<f64>>()
    };
    let reference = from_forward(&SimOptions { rtol: 1e-13, atol: 1e-15, ..SimOptions::default() });
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let err = |g: &[f64]| g.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
    let rtol = 1e-8;
    let opts = SimOptions { rtol, atol: 1e-10, ..SimOptions::default() };
    let fwd = err(&from_forward(&opts));
    assert!(fwd < 100.0 * rtol, "forward sensitivities: {fwd:e}");
    let controlled = SimOptions { quadrature_rtol: Some(rtol), quadrature_atol: Some(1e-8), ..opts };
    let adj = err(&sim::adjoint_gradient(&sys, &p, &y0, &times, &controlled, loss).unwrap().params);
    assert!(adj < 10.0 * rtol, "adjoint: {adj:e}");
}

#[test]
fn per_component_tolerances_are_checked_and_used() {
    let sys = Robertson::default();
    let bad = SimOptions { atol_components: Some(vec![1e-8; 2]), ..SimOptions::default() };
    assert!(matches!(sim::simulate(&sys, &[1.0], &bad), Err(physflow::Error::Shape { .. })));
    let bad = SimOptions { atol_components: Some(vec![1e-8, 0.0, 1e-8]), ..SimOptions::default() };
    assert!(matches!(sim::simulate(&sys, &[1.0], &bad), Err(physflow::Error::InvalidArgument { name: "atol_components", .. })));
    let bad = SimOptions { quadrature_rtol: Some(1e-6), ..SimOptions::default() };
    assert!(matches!(sim::simulate(&sys, &[1.0], &bad), Err(physflow::Error::InvalidArgument { name: "quadrature_atol", .. })));
    // y₂ of Robertson is ~1e-5: a tight absolute tolerance on it alone makes the
    // solve take more steps than the loose scalar one.
    let loose = sim::simulate(&sys, &[40.0], &SimOptions { atol: 1e-6, ..SimOptions::default() }).unwrap();
    let tight_y2 = sim::simulate(&sys, &[40.0], &SimOptions { atol_components: Some(vec![1e-6, 1e-12, 1e-6]), ..SimOptions::default() }).unwrap();
    assert!(tight_y2.stats.steps > loose.stats.steps, "{} vs {}", tight_y2.stats.steps, loose.stats.steps);
}
