//! Events and budgets of `sim` solves: a bouncing ball against its analytic
//! impact times, recorded crossings of an oscillator against `cos t`'s zeros,
//! terminal events, step and wall-clock budgets, and bad event functions.

use physflow::prelude::*;
use physflow::sim::systems::{LinearOscillator, Robertson};
use physflow::sim::{Direction, Event};

/// Free fall, state `[h, v]`, `p = [g]`.
struct Fall;
impl Rhs for Fall {
    fn eval<S: Scalar>(&self, _t: f64, y: &[S], p: &[S], dy: &mut [S]) {
        dy[0] = y[1];
        dy[1] = -p[0];
    }
}

fn tight(method: Integrator) -> SimOptions {
    SimOptions { method, rtol: 1e-10, atol: 1e-12, ..SimOptions::default() }
}

/// A ball dropped from `h₀ = 1` with restitution `e = 0.8` (reset `v⁺ = −e v⁻`):
/// impacts at `t₁ = √(2h₀/g)`, `t_{k+1} = t_k + 2 eᵏ v₁ / g` with `v₁ = √(2 g h₀)`
/// (elementary mechanics); between impacts the height is a parabola, so the
/// solution at the output times is known exactly too. Every method.
#[test]
fn bouncing_ball_impacts_match_the_analytic_times() {
    let (g, e) = (9.81, 0.8);
    let ball = ClosureSystem::new("ball", Fall, vec![1.0, 0.0]).param("g", g);
    let v1 = (2.0 * g).sqrt();
    let mut impacts = vec![(2.0 / g).sqrt()];
    for k in 1..10 {
        impacts.push(impacts[k - 1] + 2.0 * e.powi(k as i32) * v1 / g);
    }
    // Height at time t from the analytic impacts.
    let height = |t: f64| {
        if t < impacts[0] {
            return 1.0 - 0.5 * g * t * t;
        }
        let k = impacts.iter().rposition(|&ti| ti <= t).unwrap();
        let (s, v) = (t - impacts[k], e.powi(k as i32 + 1) * v1);
        v * s - 0.5 * g * s * s
    };
    let times: Vec<f64> = (1..=30).map(|i| 0.1 * i as f64).collect();
    let within = impacts.iter().filter(|&&t| t <= 3.0).count();
    for method in Integrator::ALL {
        let bounce = Event::new("ground", |_t, y, _p| y[0]).direction(Direction::Falling).reset(move |_t, y, _p| {
            y[0] = 0.0;
            y[1] *= -e;
        });
        let out = sim::simulate_events(&ball, &[g], &[1.0, 0.0], &times, &[bounce], &tight(method)).unwrap();
        assert!(out.stopped_at.is_none());
        let hits: Vec<f64> = out.events.iter().map(|h| h.t).collect();
        assert_eq!(hits.len(), within, "{method:?}: {hits:?} vs {impacts:?}");
        for (k, (a, b)) in hits.iter().zip(&impacts).enumerate() {
            assert!((a - b).abs() < 1e-7, "{method:?}: impact {k} at {a}, analytic {b}");
        }
        assert_eq!(out.trajectory.times.len(), times.len());
        for (i, &t) in times.iter().enumerate() {
            let h = out.trajectory.states[[i, 0]];
            assert!((h - height(t)).abs() < 1e-6, "{method:?}: h({t}) = {h}, analytic {}", height(t));
        }
    }
}

/// `x = cos ωt` (the linear oscillator with ω = 2, ζ = 0 from `[1, 0]`): a
/// recorded event on `x` fires at every `(π/2 + kπ)/ω`; with `Rising` only at
/// `(3π/2 + 2kπ)/ω`; a terminal event on `v = 0` stops at `π/ω` and returns
/// only the output times before it.
#[test]
fn recorded_and_terminal_crossings_of_an_oscillator() {
    let osc = LinearOscillator::default();
    let p = [2.0, 0.0];
    let omega = p[0];
    let opts = tight(Integrator::Tsit45);
    let times: Vec<f64> = (1..=10).map(|i| 0.5 * i as f64).collect();
    let any = Event::new("x = 0", |_t, y, _p| y[0]);
    let rising = Event::new("x = 0, rising", |_t, y, _p| y[0]).direction(Direction::Rising);
    let out = sim::simulate_events(&osc, &p, &[1.0, 0.0], &times, &[any, rising], &opts).unwrap();
    let pi = std::f64::consts::PI;
    let of = |k: usize| out.events.iter().filter(|h| h.event == k).map(|h| h.t).collect::<Vec<_>>();
    let expect_any: Vec<f64> = (0..).map(|k| (0.5 + k as f64) * pi / omega).take_while(|&t| t <= 5.0).collect();
    let expect_rising: Vec<f64> = (0..).map(|k| (1.5 + 2.0 * k as f64) * pi / omega).take_while(|&t| t <= 5.0).collect();
    for (got, want) in [(of(0), expect_any), (of(1), expect_rising)] {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-8), "{got:?} vs {want:?}");
    }
    // The state recorded at a crossing is on the surface.
    assert!(out.events.iter().all(|h| h.state[0].abs() < 1e-8));
    let stop = Event::new("v = 0", |_t, y, _p| y[1]).terminal();
    let out = sim::simulate_events(&osc, &p, &[1.0, 0.0], &times, &[stop], &opts).unwrap();
    let t_stop = out.stopped_at.unwrap();
    assert!((t_stop - pi / omega).abs() < 1e-8, "{t_stop}");
    assert_eq!(out.trajectory.times, times.iter().copied().filter(|&t| t <= t_stop).collect::<Vec<_>>());
}

/// An event that never triggers leaves the solve as it was: same states as
/// without events, no hits.
#[test]
fn an_event_that_never_triggers_changes_nothing() {
    let rob = Robertson::default();
    let opts = SimOptions::default();
    let never = Event::new("y1 < 0", |_t, y, _p| y[0] + 1.0);
    let a = sim::simulate_events(&rob, &rob.params(), &rob.initial_state(), &[1.0, 10.0], &[never], &opts).unwrap();
    let b = sim::simulate(&rob, &[1.0, 10.0], &opts).unwrap();
    assert!(a.events.is_empty() && a.stopped_at.is_none());
    assert_eq!(a.trajectory.states, b.states);
}

#[test]
fn step_and_time_budgets_are_typed_errors() {
    let rob = Robertson::default();
    let opts = SimOptions { max_steps: Some(5), ..SimOptions::default() };
    match sim::simulate(&rob, &[1e5], &opts) {
        Err(Error::MaxStepsReached { max_steps: 5, t }) => assert!(t > 0.0 && t < 1e5),
        other => panic!("expected MaxStepsReached, got {other:?}"),
    }
    let opts = SimOptions { max_wall_seconds: Some(1e-9), ..SimOptions::default() };
    assert!(matches!(sim::simulate(&rob, &[1e5], &opts), Err(Error::TimeLimitReached { .. })));
    for bad in [
        SimOptions { max_steps: Some(0), ..SimOptions::default() },
        SimOptions { max_wall_seconds: Some(-1.0), ..SimOptions::default() },
        SimOptions { min_step: Some(f64::NAN), ..SimOptions::default() },
    ] {
        assert!(matches!(sim::simulate(&rob, &[1.0], &bad), Err(Error::InvalidArgument { .. })), "{bad:?}");
    }
    // Counters come back with each solve.
    let ok = sim::simulate(&rob, &[1.0], &SimOptions::default()).unwrap();
    assert!(ok.stats.steps > 0 && ok.stats.rhs_evaluations > ok.stats.steps && ok.stats.linear_solver_setups > 0, "{:?}", ok.stats);
}

#[test]
fn a_non_finite_event_function_is_an_error() {
    let osc = LinearOscillator::default();
    let bad = Event::new("nan", |_t, _y, _p| f64::NAN);
    let err = sim::simulate_events(&osc, &osc.params(), &[1.0, 0.0], &[1.0], &[bad], &SimOptions::default()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { name: "events", .. }), "{err}");
}
