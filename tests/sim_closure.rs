//! Systems built from a right-hand side written once (`sim::ClosureSystem`):
//! their derived Jacobian products against the library's hand-written ones,
//! their solves and gradients against the hand-written systems' solves and
//! against finite differences, traced sparsity at scale, and bad closures.

use physflow::prelude::*;
use physflow::sim::systems::{Brusselator2d, DenseSystem, Robertson, VanDerPol};

#[path = "../benches/common/closures.rs"]
mod closures;
use closures::{brusselator, robertson, van_der_pol, Bruss};

fn close(a: &[f64], b: &[f64], rel: f64) -> bool {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= rel * scale)
}

/// All four products of `sys` against `reference` at a few states, to round-off.
fn products_match(sys: &dyn System, reference: &dyn System, states: &[Vec<f64>]) {
    let (n, m) = (sys.dim(), sys.param_names().len());
    let p = reference.params();
    for (s, y) in states.iter().enumerate() {
        let v: Vec<f64> = (0..n).map(|i| ((i + s) as f64 * 0.71).sin()).collect();
        let vp: Vec<f64> = (0..m).map(|k| 1.0 + k as f64).collect();
        let check = |what: &str, f: &dyn Fn(&dyn System, &mut [f64]), len: usize| {
            let (mut a, mut b) = (vec![0.0; len], vec![0.0; len]);
            f(sys, &mut a);
            f(reference, &mut b);
            assert!(close(&a, &b, 1e-13), "{what} at state {s}: {a:?} vs {b:?}");
        };
        check("rhs", &|x, o| x.rhs(0.3, y, &p, o), n);
        check("jvp", &|x, o| x.jvp(0.3, y, &p, &v, o), n);
        check("vjp", &|x, o| x.vjp(0.3, y, &p, &v, o), n);
        check("param_jvp", &|x, o| x.param_jvp(0.3, y, &p, &vp, o), n);
        check("param_vjp", &|x, o| x.param_vjp(0.3, y, &p, &v, o), m);
    }
}

#[test]
fn derived_products_equal_the_hand_written_ones() {
    let states = vec![vec![1.0, 0.0, 0.0], vec![0.7, 3e-5, 0.3], vec![0.1, 1e-6, 0.9]];
    products_match(&robertson(), &Robertson::default(), &states);
    products_match(&van_der_pol(1000.0), &VanDerPol::new(1000.0), &[vec![2.0, 0.0], vec![-1.3, 40.0]]);
    let reference = Brusselator2d::new(8);
    let bruss = brusselator(8);
    let y1: Vec<f64> = reference.initial_state().iter().enumerate().map(|(i, v)| v + 0.1 * (i as f64).cos()).collect();
    products_match(&bruss, &reference, &[reference.initial_state(), y1]);
}

/// Same solver, same tolerances: the closure system's trajectory and forward
/// sensitivities equal the hand-written system's up to the round-off of its
/// Jacobian entries (the step sequences may split, hence 1e-8 relative to the
/// tolerance 1e-10, not bit equality).
#[test]
fn closure_solves_and_sensitivities_match_hand_written_systems() {
    let opts = SimOptions { rtol: 1e-10, atol: 1e-14, ..SimOptions::default() };
    let times = [0.4, 4.0, 40.0];
    let (cl, hw) = (robertson(), Robertson::default());
    let a = sim::forward_sensitivities(&cl, &cl.params(), &cl.initial_state(), &times, &opts, Wrt::Params).unwrap();
    let b = sim::forward_sensitivities(&hw, &hw.params(), &hw.initial_state(), &times, &opts, Wrt::Params).unwrap();
    let (sa, sb) = (a.trajectory.states.as_slice().unwrap(), b.trajectory.states.as_slice().unwrap());
    assert!(close(sa, sb, 1e-8), "{sa:?} vs {sb:?}");
    for k in 0..3 {
        let (ga, gb) = (a.dy_dp.index_axis(Axis(2), k).to_owned(), b.dy_dp.index_axis(Axis(2), k).to_owned());
        assert!(close(ga.as_slice().unwrap(), gb.as_slice().unwrap(), 1e-6), "∂y/∂k{}: {ga} vs {gb}", k + 1);
    }
}

/// Adjoint gradient of `G = Σ_k y₁(t_k)²/2` for a closure Van der Pol (μ = 5)
/// against central differences of tight solves (relative step 1e-5).
#[test]
fn adjoint_of_a_closure_system_matches_finite_differences() {
    let sys = van_der_pol(5.0);
    let opts = SimOptions { rtol: 1e-10, atol: 1e-12, ..SimOptions::default() };
    let times = [0.5, 1.0, 2.0];
    let loss = |y: &Array2<f64>| {
        let mut dg = Array2::zeros(y.dim());
        dg.column_mut(0).assign(&y.column(0));
        (y.column(0).iter().map(|v| 0.5 * v * v).sum::<f64>(), dg)
    };
    let adj = sim::adjoint_gradient(&sys, &[5.0], &[2.0, 0.0], &times, &opts, loss).unwrap();
    let g = |mu: f64, y0: [f64; 2]| loss(&sim::simulate_with(&sys, &[mu], &y0, &times, &opts).unwrap().states).0;
    let h = 5e-5;
    let fd_mu = (g(5.0 + h, [2.0, 0.0]) - g(5.0 - h, [2.0, 0.0])) / (2.0 * h);
    let fd_y1 = (g(5.0, [2.0 + h, 0.0]) - g(5.0, [2.0 - h, 0.0])) / (2.0 * h);
    assert!((adj.params[0] - fd_mu).abs() < 1e-5 * (1.0 + fd_mu.abs()), "dG/dμ {} vs FD {fd_mu}", adj.params[0]);
    assert!((adj.y0[0] - fd_y1).abs() < 1e-5 * (1.0 + fd_y1.abs()), "dG/dy₁(0) {} vs FD {fd_y1}", adj.y0[0]);
}

/// The Brusselator closure at N = 16 (512 states) picks the sparse Jacobian by
/// itself and its BDF solution equals the hand-written sparse system's.
#[test]
fn a_large_closure_system_is_sparse_by_default_and_solves() {
    let reference = Brusselator2d::new(16);
    let sys = brusselator(16);
    assert_eq!(sys.jacobian_kind(), JacobianKind::Sparse);
    let opts = SimOptions { rtol: 1e-8, atol: 1e-10, ..SimOptions::default() };
    let a = sim::simulate(&sys, &[0.5, 1.0], &opts).unwrap();
    let b = sim::simulate(&reference, &[0.5, 1.0], &opts).unwrap();
    assert!(close(a.states.as_slice().unwrap(), b.states.as_slice().unwrap(), 1e-6));
}

/// Tracing the N = 128 Brusselator (32,768 states): every output reads its
/// five-point stencil in its own species and the other species at the same
/// point, so 6 inputs per output, 196,608 non-zeros — found without the
/// 32,768² probe (8 GiB) a dense sparsity search would take.
#[test]
fn sparsity_is_traced_at_32768_states_without_dense_memory() {
    let n = 128;
    let sys = ClosureSystem::new("bruss", Bruss { n }, vec![1.0; 2 * n * n]).param("a", 1.0).param("b", 3.4).param("alpha", 0.1);
    let rows = sys.sparsity().expect("sparse");
    assert!(rows.iter().all(|r| r.len() == 6));
    let k = 5 * n + 7; // u at (5, 7): u at (4,7), (5,6), (5,7), (5,8), (6,7) and v at (5,7)
    assert_eq!(rows[k], vec![(4 * n + 7) as u32, (5 * n + 6) as u32, k as u32, (5 * n + 8) as u32, (6 * n + 7) as u32, (n * n + k) as u32]);
    assert!(sys.colours() <= 12, "{} colours", sys.colours());
}

/// A dense hand-written system of 12 states (144 Jacobian entries, past the
/// 64 the old stack buffer held): its products are the matrix's.
#[test]
fn dense_products_work_beyond_64_entries() {
    struct Linear;
    impl System for Linear {
        fn name(&self) -> String {
            "linear".into()
        }
        fn dim(&self) -> usize {
            12
        }
        fn param_names(&self) -> Vec<String> {
            vec!["s".into()]
        }
        fn params(&self) -> Vec<f64> {
            vec![1.0]
        }
        fn initial_state(&self) -> Vec<f64> {
            vec![1.0; 12]
        }
        fn rhs(&self, _t: f64, y: &[f64], p: &[f64], dy: &mut [f64]) {
            for i in 0..12 {
                dy[i] = p[0] * (0..12).map(|j| a(i, j) * y[j]).sum::<f64>();
            }
        }
        physflow::dense_products!();
    }
    impl DenseSystem for Linear {
        fn jac(&self, _t: f64, _y: &[f64], p: &[f64], jac: &mut [f64]) {
            (0..144).for_each(|k| jac[k] = p[0] * a(k / 12, k % 12));
        }
        fn jac_p(&self, t: f64, y: &[f64], p: &[f64], jac: &mut [f64]) {
            self.rhs(t, y, &[1.0], jac);
            let _ = p;
        }
    }
    fn a(i: usize, j: usize) -> f64 {
        ((i * 12 + j) as f64).sin()
    }
    let v: Vec<f64> = (0..12).map(|i| i as f64).collect();
    let (mut jv, mut jtv) = (vec![0.0; 12], vec![0.0; 12]);
    Linear.jvp(0.0, &[0.0; 12], &[2.0], &v, &mut jv);
    Linear.vjp(0.0, &[0.0; 12], &[2.0], &v, &mut jtv);
    for i in 0..12 {
        let row: f64 = (0..12).map(|j| 2.0 * a(i, j) * v[j]).sum();
        let col: f64 = (0..12).map(|j| 2.0 * a(j, i) * v[j]).sum();
        assert!((jv[i] - row).abs() < 1e-12 && (jtv[i] - col).abs() < 1e-12);
    }
}

/// A right-hand side that returns NaN past `y₁ = 2`, and a system without states,
/// are named errors, not panics.
#[test]
fn a_closure_returning_nan_is_an_error() {
    struct Blowup;
    impl Rhs for Blowup {
        fn eval<S: Scalar>(&self, _t: f64, y: &[S], _p: &[S], dy: &mut [S]) {
            dy[0] = if y[0].value() > 2.0 { S::cst(f64::NAN) } else { y[0] };
        }
    }
    let empty = ClosureSystem::new("empty", Blowup, vec![]);
    assert!(matches!(sim::simulate(&empty, &[1.0], &SimOptions::default()), Err(Error::InvalidArgument { name: "y0", .. })));
    let sys = ClosureSystem::new("blowup", Blowup, vec![1.0]);
    for method in Integrator::ALL {
        let err = sim::simulate(&sys, &[0.5, 3.0], &SimOptions::default().with_method(method)).unwrap_err();
        assert!(matches!(err, Error::SolverFailed { .. } | Error::NonFinite { .. }), "{method:?}: {err}");
    }
}

/// A system that hides the pattern of the one it wraps, so that its sparse
/// solves go through diffsol's pattern probe.
struct WithoutPattern<'a>(&'a dyn System);
impl System for WithoutPattern<'_> {
    fn name(&self) -> String {
        self.0.name()
    }
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn param_names(&self) -> Vec<String> {
        self.0.param_names()
    }
    fn params(&self) -> Vec<f64> {
        self.0.params()
    }
    fn initial_state(&self) -> Vec<f64> {
        self.0.initial_state()
    }
    fn rhs(&self, t: f64, y: &[f64], p: &[f64], dy: &mut [f64]) {
        self.0.rhs(t, y, p, dy)
    }
    fn jvp(&self, t: f64, y: &[f64], p: &[f64], v: &[f64], out: &mut [f64]) {
        self.0.jvp(t, y, p, v, out)
    }
    fn vjp(&self, t: f64, y: &[f64], p: &[f64], w: &[f64], out: &mut [f64]) {
        self.0.vjp(t, y, p, w, out)
    }
    fn param_jvp(&self, t: f64, y: &[f64], p: &[f64], v: &[f64], out: &mut [f64]) {
        self.0.param_jvp(t, y, p, v, out)
    }
    fn param_vjp(&self, t: f64, y: &[f64], p: &[f64], w: &[f64], out: &mut [f64]) {
        self.0.param_vjp(t, y, p, w, out)
    }
    fn jacobian_kind(&self) -> JacobianKind {
        JacobianKind::Sparse
    }
}

/// A sparse solve with a given pattern (no probe, coloured assembly) takes the
/// same steps and reaches the same states as with diffsol's probe, for the
/// hand-written Brusselator (its own pattern) and its closure twin (traced).
#[test]
fn a_given_pattern_solves_like_the_probed_one() {
    let hand = Brusselator2d::new(12);
    let closure = brusselator(12);
    let opts = SimOptions::default();
    for sys in [&hand as &dyn System, &closure] {
        assert!(sys.jacobian_pattern().is_some());
        let a = sim::simulate(sys, &[1.0, 5.0], &opts).unwrap();
        let b = sim::simulate(&WithoutPattern(sys), &[1.0, 5.0], &opts).unwrap();
        assert_eq!(a.stats.steps, b.stats.steps);
        assert!(close(a.states.as_slice().unwrap(), b.states.as_slice().unwrap(), 1e-10));
    }
}

/// A pattern of the wrong size is refused before the solve.
#[test]
fn a_pattern_of_the_wrong_size_is_an_error() {
    struct Bad;
    impl System for Bad {
        fn name(&self) -> String {
            "bad".into()
        }
        fn dim(&self) -> usize {
            40
        }
        fn param_names(&self) -> Vec<String> {
            vec![]
        }
        fn params(&self) -> Vec<f64> {
            vec![]
        }
        fn initial_state(&self) -> Vec<f64> {
            vec![1.0; 40]
        }
        fn rhs(&self, _t: f64, y: &[f64], _p: &[f64], dy: &mut [f64]) {
            dy.iter_mut().zip(y).for_each(|(d, y)| *d = -y);
        }
        fn jvp(&self, _t: f64, _y: &[f64], _p: &[f64], v: &[f64], out: &mut [f64]) {
            out.iter_mut().zip(v).for_each(|(o, v)| *o = -v);
        }
        fn vjp(&self, t: f64, y: &[f64], p: &[f64], w: &[f64], out: &mut [f64]) {
            self.jvp(t, y, p, w, out)
        }
        fn param_jvp(&self, _t: f64, _y: &[f64], _p: &[f64], _v: &[f64], out: &mut [f64]) {
            out.fill(0.0)
        }
        fn param_vjp(&self, _t: f64, _y: &[f64], _p: &[f64], _w: &[f64], _out: &mut [f64]) {}
        fn jacobian_kind(&self) -> JacobianKind {
            JacobianKind::Sparse
        }
        fn jacobian_pattern(&self) -> Option<Vec<Vec<u32>>> {
            Some((0..40).map(|i| vec![i as u32 + 1]).collect())
        }
    }
    let err = sim::simulate(&Bad, &[1.0], &SimOptions::default()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { name: "jacobian_pattern", .. }), "{err}");
}
