//! Events in batched `ode` solves: each sample stops at its own terminal event (falling
//! balls against the analytic impact times), recorded crossings (oscillators of different
//! frequencies against their analytic zeros), a first-passage time with a known
//! distribution, differentiable stop times against the analytic derivatives, and bad input.

use burn::tensor::{DType, Tensor, TensorData};
use physflow::host::ToHost;
use physflow::ode::{self, FnField, Gradient, Options, Solver, SystemField, Time};
use physflow::sim::{ClosureSystem, Direction, Event, Rhs, Scalar};
use physflow::Error;

const G: f64 = 9.81;

fn tensor(rows: &[[f64; 2]]) -> Tensor<2> {
    let device = physflow::device::cpu_f64().unwrap();
    let data: Vec<f64> = rows.iter().flatten().copied().collect();
    Tensor::<2>::from_data(TensorData::new(data, [rows.len(), 2]), (&device, DType::F64))
}

/// Free fall `x' = v`, `v' = −g` on `[batch, 2]` tensors.
fn gravity() -> FnField<impl Fn(&Time, Tensor<2>) -> Tensor<2>> {
    FnField::new(|_t: &Time, y: Tensor<2>| {
        let v = y.clone().narrow(1, 1, 1);
        Tensor::cat(vec![v.clone(), v.zeros_like().sub_scalar(G)], 1)
    })
}

fn ground<'a>() -> Event<'a> {
    Event::new("ground", |_t, y, _p| y[0]).direction(Direction::Falling).terminal().gradient(|_t, _y, _p, dg| {
        dg[0] = 1.0;
        dg[1] = 0.0;
        0.0
    })
}

/// Impact time of a ball dropped from `x0` with upward speed `v0`: `(v0 + √(v0² + 2g x0))/g`.
fn impact(x0: f64, v0: f64) -> f64 {
    (v0 + (v0 * v0 + 2.0 * G * x0).sqrt()) / G
}

#[test]
fn each_ball_stops_at_its_own_impact_for_every_solver() {
    let starts = [[1.0, 0.0], [5.0, 2.0], [0.3, -1.0], [20.0, 0.0]];
    let times = [0.0, 0.5, 1.0, 4.0];
    for solver in Solver::ALL {
        let opts = if solver.is_adaptive() { Options::adaptive(solver, 1e-10, 1e-10) } else { Options::fixed(solver, 1e-2) };
        let sol = ode::solve_events(&gravity(), tensor(&starts), &times, &[ground()], &opts).unwrap();
        for (i, s) in starts.iter().enumerate() {
            let t_star = impact(s[0], s[1]);
            let expected = if t_star <= 4.0 { Some(t_star) } else { None };
            match (sol.stop_times[i], expected) {
                // Free fall is quadratic: every method of order ≥ 2 integrates it exactly, Euler
                // has O(h) position error; the located root carries the interpolant's error.
                (Some(t), Some(e)) => {
                    let tol = if solver == Solver::Euler { 0.05 } else { 1e-8 };
                    assert!((t - e).abs() < tol, "{solver:?} sample {i}: stop at {t}, exact {e}");
                    assert!(sol.final_states[i][0].abs() < 1e-8, "{solver:?}: stopped above ground");
                }
                (None, None) => {}
                (got, want) => panic!("{solver:?} sample {i}: stop {got:?}, expected {want:?}"),
            }
        }
        // After its stop a sample holds its stop state at every output time.
        let last: Vec<f64> = sol.solution.ys[3].host_vec::<f64>().unwrap();
        for i in 0..3 {
            assert_eq!(&last[2 * i..2 * i + 2], sol.final_states[i].as_slice(), "{solver:?} sample {i} moved after its stop");
        }
        // Sample 3 (from 20 m, impact at 2.02 s) was still falling at t = 1.
        let at1: Vec<f64> = sol.solution.ys[2].host_vec::<f64>().unwrap();
        let tol = if solver == Solver::Euler { 0.1 } else { 1e-8 };
        assert!((at1[6] - (20.0 - 0.5 * G)).abs() < tol, "{solver:?}: {}", at1[6]);
    }
}

/// Crossings that do not stop: oscillators `x'' = −ω² x` (ω carried as a third, constant
/// state) record their zeros `t_k = (k + ½)π/ω`, each sample its own.
#[test]
fn recorded_crossings_match_the_zeros_of_each_sample() {
    struct Osc;
    impl Rhs for Osc {
        fn eval<S: Scalar>(&self, _t: f64, y: &[S], _p: &[S], dy: &mut [S]) {
            dy[0] = y[1];
            dy[1] = -(y[2] * y[2]) * y[0];
            dy[2] = S::cst(0.0);
        }
    }
    let sys = ClosureSystem::new("oscillators", Osc, vec![1.0, 0.0, 1.0]);
    let field = SystemField::new(&sys).unwrap();
    let omegas = [1.0, 2.0, 3.5];
    let device = physflow::device::cpu_f64().unwrap();
    let y0 = Tensor::<2>::from_data(TensorData::new(omegas.iter().flat_map(|w| [1.0, 0.0, *w]).collect::<Vec<_>>(), [3, 3]), (&device, DType::F64));
    let zero = Event::new("x = 0", |_t, y, _p| y[0]);
    let down = Event::new("x = 0 falling", |_t, y, _p| y[0]).direction(Direction::Falling);
    let opts = Options::adaptive(Solver::Tsit5, 1e-10, 1e-10);
    let sol = ode::solve_events(&field, y0, &[0.0, 10.0], &[zero, down], &opts).unwrap();
    for (i, w) in omegas.iter().enumerate() {
        let zeros: Vec<f64> = (0..).map(|k| (k as f64 + 0.5) * std::f64::consts::PI / w).take_while(|t| *t < 10.0).collect();
        let got: Vec<f64> = sol.hits.iter().filter(|h| h.sample == i && h.event == 0).map(|h| h.t).collect();
        assert_eq!(got.len(), zeros.len(), "ω = {w}: {got:?}");
        for (a, b) in got.iter().zip(&zeros) {
            assert!((a - b).abs() < 1e-8, "ω = {w}: zero at {a}, exact {b}");
        }
        // x = cos ωt falls through zero at the even-numbered zeros only.
        let falling: Vec<f64> = sol.hits.iter().filter(|h| h.sample == i && h.event == 1).map(|h| h.t).collect();
        assert_eq!(falling.len(), zeros.len().div_ceil(2), "ω = {w}");
        assert!(falling.iter().zip(zeros.iter().step_by(2)).all(|(a, b)| (a - b).abs() < 1e-8));
    }
    assert!(sol.stop_times.iter().all(Option::is_none));
}

/// First passage of `y' = −y` from `y0 ~ U(1, e)` to the level 1: `T = ln y0`, so
/// `P(T ≤ s) = (eˢ − 1)/(e − 1)` on `[0, 1]`. Each sample's time against `ln y0`, and the
/// empirical distribution against the law by the Kolmogorov–Smirnov distance (the 0.1 %
/// critical value at n = 2000 is 1.95/√n = 0.044).
#[test]
fn first_passage_times_have_the_known_distribution() {
    let n = 2000;
    // A fixed low-discrepancy-free sample: a seeded LCG, so the test is deterministic.
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut uniform = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let e = std::f64::consts::E;
    let y0: Vec<f64> = (0..n).map(|_| 1.0 + (e - 1.0) * uniform()).collect();
    let device = physflow::device::cpu_f64().unwrap();
    let yt = Tensor::<2>::from_data(TensorData::new(y0.clone(), [n, 1]), (&device, DType::F64));
    let decay = FnField::new(|_t: &Time, y: Tensor<2>| y.neg());
    let level = Event::new("y = 1", |_t, y, _p| y[0] - 1.0).terminal();
    let opts = Options::adaptive(Solver::Tsit5, 1e-9, 1e-9);
    let sol = ode::solve_events(&decay, yt, &[0.0, 2.0], &[level], &opts).unwrap();
    let mut times: Vec<f64> = Vec::with_capacity(n);
    for (i, y) in y0.iter().enumerate() {
        let t = sol.stop_times[i].expect("every sample reaches 1 before t = 1");
        assert!((t - y.ln()).abs() < 1e-7, "sample {i}: {t} vs {}", y.ln());
        times.push(t);
    }
    times.sort_by(f64::total_cmp);
    let ks = times
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let cdf = (t.exp() - 1.0) / (e - 1.0);
            (cdf - k as f64 / n as f64).abs().max((cdf - (k + 1) as f64 / n as f64).abs())
        })
        .fold(0.0, f64::max);
    assert!(ks < 0.044, "KS distance {ks}");
}

/// `d/dθ` of the stop times by the implicit-function formula against the analytic
/// derivatives: for falling balls `∂t*/∂x0 = 1/√(v0² + 2g x0)`, `∂t*/∂v0 = (1 + v0/√(…))/g`;
/// for decay `y' = −k y` to the level `c`, `t* = ln(y0/c)/k`: `∂t*/∂k = −t*/k`,
/// `∂t*/∂y0 = 1/(k y0)` (and a loss on the stop state, which is `c` whatever θ: zero gradient
/// through `y*`, a check of the state part of the formula).
#[test]
fn stop_times_are_differentiable() {
    let starts = [[1.0, 0.0], [5.0, 2.0], [0.3, -1.0]];
    let opts = Options::adaptive(Solver::Tsit5, 1e-10, 1e-10);
    let events = [ground()];
    let y0 = tensor(&starts);
    let sol = ode::solve_events(&gravity(), y0.clone(), &[0.0, 5.0], &events, &opts).unwrap();
    for gradient in [Gradient::Direct, Gradient::Adjoint(Default::default())] {
        let grads = ode::event_gradients(&gravity(), y0.clone(), &[0.0, 5.0], &events, &sol, &[1.0; 3], y0.zeros_like(), &opts, gradient.clone()).unwrap();
        let g: Vec<f64> = grads.y0.host_vec::<f64>().unwrap();
        for (i, s) in starts.iter().enumerate() {
            let root = (s[1] * s[1] + 2.0 * G * s[0]).sqrt();
            let (dx, dv) = (1.0 / root, (1.0 + s[1] / root) / G);
            assert!((g[2 * i] - dx).abs() < 1e-7 && (g[2 * i + 1] - dv).abs() < 1e-7, "{gradient}: sample {i}: {:?} vs {:?}", &g[2 * i..2 * i + 2], (dx, dv));
        }
    }

    struct Decay;
    impl Rhs for Decay {
        fn eval<S: Scalar>(&self, _t: f64, y: &[S], p: &[S], dy: &mut [S]) {
            dy[0] = -(p[0] * y[0]);
        }
    }
    let (k, c) = (0.7, 0.25);
    let sys = ClosureSystem::new("decay", Decay, vec![1.0]).param("k", k);
    let field = SystemField::new(&sys).unwrap();
    let device = physflow::device::cpu_f64().unwrap();
    let y0s = [1.0, 2.0, 0.5];
    let y0 = Tensor::<2>::from_data(TensorData::new(y0s.to_vec(), [3, 1]), (&device, DType::F64));
    let events = [Event::new("y = c", move |_t, y, _p| y[0] - c).terminal().gradient(|_t, _y, _p, dg| {
        dg[0] = 1.0;
        0.0
    })];
    let sol = ode::solve_events(&field, y0.clone(), &[0.0, 10.0], &events, &opts).unwrap();
    // L = Σ t*_i + Σ y*_i: the second sum is 3c for every θ.
    let grads = ode::event_gradients(&field, y0.clone(), &[0.0, 10.0], &events, &sol, &[1.0; 3], y0.ones_like(), &opts, Gradient::Direct).unwrap();
    let gy: Vec<f64> = grads.y0.host_vec::<f64>().unwrap();
    let mut dk = 0.0;
    for (i, y) in y0s.iter().enumerate() {
        let t = (y / c).ln() / k;
        assert!((sol.stop_times[i].unwrap() - t).abs() < 1e-8);
        assert!((gy[i] - 1.0 / (k * y)).abs() < 1e-7, "∂t*/∂y0 {} vs {}", gy[i], 1.0 / (k * y));
        dk += -t / k;
    }
    assert!((grads.params[0] - dk).abs() < 1e-7, "∂L/∂k {} vs {dk}", grads.params[0]);
}

#[test]
fn bad_events_are_named() {
    let y0 = tensor(&[[1.0, 0.0]]);
    let opts = Options::default();
    let reset = Event::new("bounce", |_t, y, _p| y[0]).reset(|_t, y, _p| y[1] = -y[1]);
    assert!(matches!(ode::solve_events(&gravity(), y0.clone(), &[0.0, 1.0], &[reset], &opts), Err(Error::Unsupported(_))));
    let nan = Event::new("nan", |t, _y, _p| if t > 0.2 { f64::NAN } else { 1.0 });
    assert!(matches!(ode::solve_events(&gravity(), y0.clone(), &[0.0, 1.0], &[nan], &opts), Err(Error::InvalidArgument { .. })));
    // An event that never fires leaves the solve as it was without events.
    let never = Event::new("never", |_t, _y, _p| 1.0).terminal();
    let with = ode::solve_events(&gravity(), y0.clone(), &[0.0, 0.3], &[never], &opts).unwrap();
    let without = ode::solve(&gravity(), y0.clone(), &[0.0, 0.3], &opts).unwrap();
    assert_eq!(with.solution.ys[1].to_data(), without.ys[1].to_data());
    assert_eq!(with.solution.stats, without.stats);
    // A terminal event without a gradient cannot be differentiated.
    let plain = [Event::new("ground", |_t, y, _p| y[0]).terminal()];
    let sol = ode::solve_events(&gravity(), y0.clone(), &[0.0, 1.0], &plain, &opts).unwrap();
    assert!(sol.stop_times[0].is_some());
    let r = ode::event_gradients(&gravity(), y0.clone(), &[0.0, 1.0], &plain, &sol, &[1.0], y0.zeros_like(), &opts, Gradient::Direct);
    assert!(matches!(r, Err(Error::InvalidArgument { .. })));
    let r = ode::event_gradients(&gravity(), y0.clone(), &[0.0, 1.0], &plain, &sol, &[1.0, 2.0], y0.zeros_like(), &opts, Gradient::Direct);
    assert!(matches!(r, Err(Error::Shape { .. })));
}
