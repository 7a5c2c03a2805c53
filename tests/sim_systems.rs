//! The systems library against analytic solutions, conserved quantities,
//! published values and tight solves with a different method; Jacobian
//! products against finite differences; bad input.

use physflow::sim::systems::{self, ic, Boundary, Brusselator2d, DenseSystem, Grid1d, Heat2d, LinearOscillator, LotkaVolterra, Pde1d, Robertson, VanDerPol};
use physflow::sim::{self, Integrator, JacobianKind, SimOptions, System};
use physflow::Error;

fn tight(method: Integrator) -> SimOptions {
    SimOptions { method, rtol: 1e-10, atol: 1e-12, ..SimOptions::default() }
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Linear oscillator vs its closed form, every method. Tolerance-proportional
/// global error: rtol 1e-10 per step, accumulated over 5 time units, bound 1e4·rtol.
#[test]
fn every_method_matches_the_linear_oscillator_closed_form() {
    let sys = LinearOscillator::default();
    let times: Vec<f64> = (0..=10).map(|k| 0.5 * k as f64).collect();
    for method in Integrator::ALL {
        let traj = sim::simulate(&sys, &times, &tight(method)).unwrap();
        for (k, t) in times.iter().enumerate() {
            let exact = LinearOscillator::exact(&sys.p, &sys.y0, *t);
            let err = max_abs_diff(traj.states.row(k).as_slice().unwrap(), &exact);
            assert!(err < 1e-6, "{method:?}: error {err:e} at t = {t}");
        }
    }
}

/// Heat 1D, Dirichlet zero, sine initial state: the first eigenmode of the
/// discrete Laplacian decays as exp(λt), λ = −(4D/h²) sin²(πh/(2L)) — the exact
/// solution of the semi-discrete system. Dense and sparse Jacobians.
#[test]
fn heat1d_sine_mode_decays_at_the_discrete_eigenvalue() {
    let g = Grid1d::new(40, 2.0, Boundary::Dirichlet { left: 0.0, right: 0.0 });
    let d = 0.3;
    let sys = Pde1d::heat(g, d, ic::sine(&g, 1, 1.0));
    let h = g.h();
    let lam = -(4.0 * d / (h * h)) * (std::f64::consts::PI * h / (2.0 * g.length)).sin().powi(2);
    let times = [0.5, 1.0, 2.0];
    for jac in [JacobianKind::Dense, JacobianKind::Sparse] {
        for method in [Integrator::Bdf, Integrator::Esdirk34, Integrator::TrBdf2] {
            let opts = SimOptions { jacobian: jac, ..tight(method) };
            let traj = sim::simulate(&sys, &times, &opts).unwrap();
            for (k, t) in times.iter().enumerate() {
                let exact: Vec<f64> = sys.u0.iter().map(|u| u * (lam * t).exp()).collect();
                let err = max_abs_diff(traj.states.row(k).as_slice().unwrap(), &exact);
                assert!(err < 1e-7, "{jac:?} {method:?}: error {err:e} at t = {t}");
            }
        }
    }
}

/// Heat 2D, Dirichlet zero, mode (1, 2): decays at the sum of the two axes' eigenvalues.
#[test]
fn heat2d_sine_mode_decays_at_the_discrete_eigenvalue() {
    let gx = Grid1d::new(12, 1.0, Boundary::Dirichlet { left: 0.0, right: 0.0 });
    let gy = Grid1d::new(10, 2.0, Boundary::Dirichlet { left: 0.0, right: 0.0 });
    let sys = Heat2d::sine_mode(gx, gy, 0.05, 1, 2);
    let lam = |g: &Grid1d, k: f64| -(4.0 / (g.h() * g.h())) * (k * std::f64::consts::PI * g.h() / (2.0 * g.length)).sin().powi(2);
    let rate = sys.d * (lam(&gx, 1.0) + lam(&gy, 2.0));
    let traj = sim::simulate(&sys, &[1.0], &tight(Integrator::Bdf)).unwrap();
    let exact: Vec<f64> = sys.u0.iter().map(|u| u * rate.exp()).collect();
    let err = max_abs_diff(traj.states.row(0).as_slice().unwrap(), &exact);
    assert!(err < 1e-8, "error {err:e}");
}

/// Robertson: the SUNDIALS cvRoberts_dns example output at t = 40 (computed by
/// CVODE at rtol 1e-4, so it is a reference to 1e-4 only), a tight ESDIRK34
/// solve (rtol 1e-11) for every other method, and the conserved mass.
#[test]
fn robertson_matches_reference_values_and_conserves_mass() {
    let sys = Robertson::default();
    let times = [0.4, 40.0, 4.0e4, 1.0e5];
    let reference = sim::simulate(&sys, &times, &SimOptions { rtol: 1e-11, atol: 1e-14, ..tight(Integrator::Esdirk34) }).unwrap();
    let published = [7.158017e-01, 9.185037e-06, 2.841892e-01];
    for i in 0..3 {
        let rel = (reference.states[[1, i]] - published[i]).abs() / published[i];
        assert!(rel < 1e-4, "component {i} at t = 40: {} vs published {}", reference.states[[1, i]], published[i]);
    }
    for method in [Integrator::Bdf, Integrator::TrBdf2] {
        let opts = SimOptions { rtol: 1e-9, atol: 1e-14, ..tight(method) };
        let traj = sim::simulate(&sys, &times, &opts).unwrap();
        for (k, t) in times.iter().enumerate() {
            for i in 0..3 {
                let (a, b) = (traj.states[[k, i]], reference.states[[k, i]]);
                assert!((a - b).abs() <= 1e-6 * b.abs() + 1e-12, "{method:?}: y{i}({t}) = {a} vs {b}");
            }
            let mass: f64 = traj.states.row(k).sum();
            assert!((mass - 1.0).abs() < 1e-9, "{method:?}: mass {mass} at t = {t}");
        }
    }
}

/// Lotka–Volterra: V = δx − γ ln x + βz − α ln z is constant along solutions.
#[test]
fn lotka_volterra_invariant_is_held() {
    let sys = LotkaVolterra::default();
    let times: Vec<f64> = (1..=20).map(|k| k as f64).collect();
    let v0 = LotkaVolterra::invariant(&sys.p, &sys.y0);
    for method in Integrator::ALL {
        let traj = sim::simulate(&sys, &times, &tight(method)).unwrap();
        for k in 0..times.len() {
            let v = LotkaVolterra::invariant(&sys.p, traj.states.row(k).as_slice().unwrap());
            // rtol 1e-10 over 20 time units: bound 1e4·rtol as above.
            assert!((v - v0).abs() < 1e-6, "{method:?}: invariant drifted by {:e} at t = {}", v - v0, times[k]);
        }
    }
}

/// Systems without closed forms: two different methods at tight tolerance agree.
#[test]
fn nonlinear_systems_agree_across_methods() {
    let cases: Vec<(&str, Vec<f64>, f64)> = vec![
        ("lorenz", vec![0.5, 1.0], 1e-6),
        ("pendulum", vec![1.0, 5.0], 1e-7),
        ("burgers1d", vec![0.1, 0.3], 1e-7),
        ("fisher_kpp1d", vec![0.5, 1.0], 1e-7),
        ("allen_cahn1d", vec![1.0, 2.0], 1e-7),
        ("brusselator2d", vec![0.5, 1.0], 1e-6),
    ];
    for (name, times, tol) in cases {
        let sys = systems::by_name(name).unwrap();
        let a = sim::simulate(sys.as_ref(), &times, &tight(Integrator::Bdf)).unwrap();
        let b = sim::simulate(sys.as_ref(), &times, &tight(if name == "lorenz" { Integrator::Tsit45 } else { Integrator::Esdirk34 })).unwrap();
        let scale = a.states.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let err = max_abs_diff(a.states.as_slice().unwrap(), b.states.as_slice().unwrap()) / scale;
        assert!(err < tol, "{name}: BDF vs second method differ by {err:e} (relative)");
    }
}

/// Van der Pol μ = 1000 to t = 3000 (the vdp1000 benchmark): BDF and TR-BDF2 agree.
/// (diffsol's ESDIRK34 stops here with repeated Newton failures near t ≈ 1600–2200
/// at rtol ≤ 1e-8; see docs/sim.md.)
#[test]
fn stiff_van_der_pol_agrees_across_methods() {
    let sys = VanDerPol::default();
    let times = [500.0, 1500.0, 3000.0];
    let opts = |m| SimOptions { method: m, rtol: 1e-9, atol: 1e-11, ..SimOptions::default() };
    let a = sim::simulate(&sys, &times, &opts(Integrator::Bdf)).unwrap();
    let b = sim::simulate(&sys, &times, &opts(Integrator::TrBdf2)).unwrap();
    // y1 stays in [-2, 2]; y2 can be O(1) between the fast jumps.
    let err = max_abs_diff(a.states.column(0).to_vec().as_slice(), b.states.column(0).to_vec().as_slice());
    assert!(err < 1e-4, "y1 differs by {err:e}");
    assert!(a.stats.steps > 100, "a stiff solve takes many steps ({})", a.stats.steps);
}

/// Burgers in flux form with periodic boundaries conserves Σu h exactly (up to
/// the solver's linear-invariant preservation); heat with zero Neumann fluxes too.
#[test]
fn conservative_pdes_keep_their_mass() {
    for name in ["burgers1d", "heat_neumann"] {
        let sys: Box<dyn System> = if name == "burgers1d" {
            systems::by_name("burgers1d").unwrap()
        } else {
            let g = Grid1d::new(50, 1.0, Boundary::Neumann { left: 0.0, right: 0.0 });
            Box::new(Pde1d::heat(g, 0.05, ic::gaussian(&g, 0.3, 0.05, 1.0)))
        };
        let y0 = sys.initial_state();
        let m0: f64 = y0.iter().sum();
        let traj = sim::simulate(sys.as_ref(), &[0.2, 0.5], &tight(Integrator::Bdf)).unwrap();
        for k in 0..2 {
            let m: f64 = traj.states.row(k).sum();
            assert!((m - m0).abs() < 1e-8 * (1.0 + m0.abs()), "{name}: mass {m} vs {m0}");
        }
    }
}

/// Every library system's four products against central differences of its
/// right-hand side (and jvp/vjp, param_jvp/param_vjp against each other).
#[test]
fn jacobian_products_match_finite_differences() {
    for name in systems::NAMES {
        let mut sys = systems::by_name(name).unwrap();
        if name == "brusselator2d" {
            sys = Box::new(Brusselator2d::new(5));
        }
        let n = sys.dim();
        let p = sys.params();
        let m = p.len();
        // A generic state near the initial one, so that no term vanishes.
        let y: Vec<f64> = sys.initial_state().iter().enumerate().map(|(i, v)| v + 0.1 + 0.01 * ((i * 7 % 5) as f64)).collect();
        let v: Vec<f64> = (0..n).map(|i| ((i * 3 % 7) as f64 - 3.0) / 3.0).collect();
        let w: Vec<f64> = (0..n).map(|i| ((i * 5 % 11) as f64 - 5.0) / 5.0).collect();
        let vp: Vec<f64> = (0..m).map(|k| 1.0 - 0.3 * k as f64).collect();
        let t = 0.3;
        let f = |y: &[f64], p: &[f64]| {
            let mut out = vec![0.0; n];
            sys.rhs(t, y, p, &mut out);
            out
        };
        // Central differences along v (state) and vp (parameters), step relative to the scale.
        let fnorm = f(&y, &p).iter().fold(0.0f64, |a, b| a.max(b.abs()));
        // Central differences: truncation O(h²) plus roundoff ≈ ε·max|f|/h.
        let fd_tol = |scale: f64, h: f64| 1e-6 * scale + 1e-14 * fnorm / h;
        let fd = |dir_y: &[f64], dir_p: &[f64]| {
            let eps = 1e-5;
            let scale_y = y.iter().fold(1.0f64, |a, b| a.max(b.abs()));
            let hy = eps * scale_y;
            let plus_y: Vec<f64> = y.iter().zip(dir_y).map(|(a, b)| a + hy * b).collect();
            let minus_y: Vec<f64> = y.iter().zip(dir_y).map(|(a, b)| a - hy * b).collect();
            let hp: Vec<f64> = p.iter().map(|a| eps * a.abs().max(1e-3)).collect();
            let plus_p: Vec<f64> = p.iter().zip(dir_p).zip(&hp).map(|((a, b), h)| a + h * b).collect();
            let minus_p: Vec<f64> = p.iter().zip(dir_p).zip(&hp).map(|((a, b), h)| a - h * b).collect();
            let is_y = dir_y.iter().any(|v| *v != 0.0);
            let (fp, fm) = if is_y { (f(&plus_y, &p), f(&minus_y, &p)) } else { (f(&y, &plus_p), f(&y, &minus_p)) };
            (fp, fm, if is_y { vec![hy; m.max(1)] } else { hp })
        };
        let mut jv = vec![0.0; n];
        sys.jvp(t, &y, &p, &v, &mut jv);
        let (fp, fm, h) = fd(&v, &vec![0.0; m]);
        let fd_jv: Vec<f64> = fp.iter().zip(&fm).map(|(a, b)| (a - b) / (2.0 * h[0])).collect();
        let scale = fd_jv.iter().fold(1.0f64, |a, b| a.max(b.abs()));
        assert!(max_abs_diff(&jv, &fd_jv) < fd_tol(scale, h[0]), "{name}: jvp vs FD off by {:e}", max_abs_diff(&jv, &fd_jv));

        let mut jtw = vec![0.0; n];
        sys.vjp(t, &y, &p, &w, &mut jtw);
        let lhs: f64 = w.iter().zip(&jv).map(|(a, b)| a * b).sum();
        let rhs: f64 = jtw.iter().zip(&v).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-10 * (1.0 + lhs.abs()), "{name}: <w, Jv> = {lhs} but <Jᵀw, v> = {rhs}");

        // Parameters one at a time (their steps differ).
        let mut jpv = vec![0.0; n];
        sys.param_jvp(t, &y, &p, &vp, &mut jpv);
        let mut fd_jpv = vec![0.0; n];
        let mut hmin = f64::INFINITY;
        for k in 0..m {
            let mut e = vec![0.0; m];
            e[k] = 1.0;
            let (fp, fm, h) = fd(&vec![0.0; n], &e);
            hmin = hmin.min(h[k]);
            for i in 0..n {
                fd_jpv[i] += vp[k] * (fp[i] - fm[i]) / (2.0 * h[k]);
            }
        }
        let scale = fd_jpv.iter().fold(1.0f64, |a, b| a.max(b.abs()));
        assert!(max_abs_diff(&jpv, &fd_jpv) < fd_tol(scale, hmin), "{name}: param_jvp vs FD off by {:e}", max_abs_diff(&jpv, &fd_jpv));
        let mut jptw = vec![0.0; m];
        sys.param_vjp(t, &y, &p, &w, &mut jptw);
        let lhs: f64 = w.iter().zip(&jpv).map(|(a, b)| a * b).sum();
        let rhs: f64 = jptw.iter().zip(&vp).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-9 * (1.0 + lhs.abs()), "{name}: <w, J_p v> = {lhs} but <J_pᵀ w, v> = {rhs}");
    }
}

/// `ẏ = y²`, `y(0) = 1` blows up at t = 1: the solve fails with the system name and a time.
struct Blowup;

impl System for Blowup {
    fn name(&self) -> String {
        "blowup".into()
    }
    fn dim(&self) -> usize {
        1
    }
    fn param_names(&self) -> Vec<String> {
        vec![]
    }
    fn params(&self) -> Vec<f64> {
        vec![]
    }
    fn initial_state(&self) -> Vec<f64> {
        vec![1.0]
    }
    fn rhs(&self, _t: f64, y: &[f64], _p: &[f64], dy: &mut [f64]) {
        dy[0] = y[0] * y[0];
    }
    physflow::dense_products!();
}

impl DenseSystem for Blowup {
    fn jac(&self, _t: f64, y: &[f64], _p: &[f64], j: &mut [f64]) {
        j[0] = 2.0 * y[0];
    }
    fn jac_p(&self, _t: f64, _y: &[f64], _p: &[f64], _j: &mut [f64]) {}
}

#[test]
fn bad_input_and_solver_failures_are_errors() {
    // Negative diffusivity, rejected before solving.
    let g = Grid1d::new(10, 1.0, Boundary::Periodic);
    let heat = Pde1d::heat(g, -1.0, vec![0.0; 10]);
    let e = sim::simulate(&heat, &[1.0], &SimOptions::default()).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }) && e.to_string().contains("diffusivity"), "{e}");
    // Wrong parameter count.
    let rob = Robertson::default();
    let e = sim::simulate_with(&rob, &[0.04, 3e7], &rob.y0, &[1.0], &SimOptions::default()).unwrap_err();
    assert!(e.to_string().contains("takes 3 parameters"), "{e}");
    // Wrong initial-state length and non-finite values.
    assert!(matches!(sim::simulate_with(&rob, &rob.p, &[1.0, 0.0], &[1.0], &SimOptions::default()), Err(Error::Shape { .. })));
    assert!(sim::simulate_with(&rob, &[f64::NAN, 1.0, 1.0], &rob.y0, &[1.0], &SimOptions::default()).is_err());
    // Times out of order.
    assert!(sim::simulate(&rob, &[2.0, 1.0], &SimOptions::default()).is_err());
    // Unknown system and method names.
    assert!(systems::by_name("robertsen").is_err());
    assert!(Integrator::parse("rk4").is_err());
    // Finite-time blow-up: a SolverFailed naming the system and a time near 1.
    for method in Integrator::ALL {
        let e = sim::simulate(&Blowup, &[2.0], &SimOptions { method, ..SimOptions::default() }).unwrap_err();
        match e {
            Error::SolverFailed { system, t, .. } => {
                assert_eq!(system, "blowup");
                if let Some(t) = t {
                    // Implicit steps may land a little past the singularity before failing.
                    assert!((0.9..=1.01).contains(&t), "{method:?}: failed at t = {t}");
                }
            }
            Error::NonFinite { .. } => {}
            other => panic!("{method:?}: unexpected error {other}"),
        }
    }
}

/// Brusselator 2D: the sparse and dense Jacobian paths give the same solution.
#[test]
fn sparse_and_dense_jacobians_agree() {
    let sys = Brusselator2d::new(6);
    let times = [0.5, 1.0];
    let a = sim::simulate(&sys, &times, &SimOptions { jacobian: JacobianKind::Sparse, ..tight(Integrator::Bdf) }).unwrap();
    let b = sim::simulate(&sys, &times, &SimOptions { jacobian: JacobianKind::Dense, ..tight(Integrator::Bdf) }).unwrap();
    assert!(max_abs_diff(a.states.as_slice().unwrap(), b.states.as_slice().unwrap()) < 1e-8);
}
