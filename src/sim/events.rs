//! Events: scalar functions `g(t, y, p)` whose zero crossings the solver
//! locates (to ~100 ulp of `t`) on its dense output, then records, stops at,
//! or resets the state at — the `solve_ivp(events=…)` / SUNDIALS root-finding
//! surface, for every [`super::Integrator`].
//!
//! Crossings are found per step from the sign of every `g` at the step's ends
//! (so two crossings of one `g` inside one step cancel and are missed, as in
//! every step-end root finder: keep steps below the events' spacing with
//! `h0`/tolerances when that matters); several events crossing inside one
//! step are all reported, in time order, up to the first one that stops or
//! resets. A crossing starts from a non-zero value: when a step starts on the
//! surface (right after a reset onto it), the sign just after its start counts.

use crate::{Error, Result};

/// Which sign changes of `g` count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Both.
    #[default]
    Any,
    /// `g` going from negative to non-negative.
    Rising,
    /// `g` going from positive to non-positive.
    Falling,
}

/// The event function's type: `g(t, y, p)`.
pub type EventFn<'a> = Box<dyn Fn(f64, &[f64], &[f64]) -> f64 + Send + Sync + 'a>;
/// A reset's type: `y⁺ = r(t, y⁻, p)` written in place.
pub type ResetFn<'a> = Box<dyn Fn(f64, &mut [f64], &[f64]) + Send + Sync + 'a>;

/// The gradient of an event function: writes `∂g/∂y` into its last argument and returns
/// `∂g/∂t`, at `(t, y, p)`.
pub type EventGradFn<'a> = Box<dyn Fn(f64, &[f64], &[f64], &mut [f64]) -> f64 + Send + Sync + 'a>;

/// What happens at a crossing.
pub enum Action<'a> {
    /// Record it and go on.
    Record,
    /// Record it and end the solve there (a terminal event).
    Stop,
    /// Record it, replace the state by the reset's output and restart the
    /// integrator from there (an impact, a dose, a switch).
    Reset(ResetFn<'a>),
}

/// One event: a name, `g`, the crossings that count and what they do.
pub struct Event<'a> {
    /// A name for reports and errors.
    pub name: String,
    /// `g(t, y, p)`; the event happens where it crosses zero.
    pub g: EventFn<'a>,
    /// Which crossings count.
    pub direction: Direction,
    /// What a crossing does.
    pub action: Action<'a>,
    /// `∂g/∂y` and `∂g/∂t`, for differentiable event times (the implicit-function formula
    /// of `ode::event_gradients`); `None` when not given.
    pub gradient: Option<EventGradFn<'a>>,
}

impl<'a> Event<'a> {
    /// An event `name` at the zeros of `g`, either direction, recorded only.
    pub fn new(name: impl Into<String>, g: impl Fn(f64, &[f64], &[f64]) -> f64 + Send + Sync + 'a) -> Self {
        Event { name: name.into(), g: Box::new(g), direction: Direction::Any, action: Action::Record, gradient: None }
    }
    /// Only crossings in `direction` count.
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }
    /// The solve ends at the first crossing.
    pub fn terminal(mut self) -> Self {
        self.action = Action::Stop;
        self
    }
    /// The gradient of `g`: `grad(t, y, p, dg_dy)` writes `∂g/∂y` and returns `∂g/∂t`
    /// (needed to differentiate event times; `sim` solves do not use it).
    pub fn gradient(mut self, grad: impl Fn(f64, &[f64], &[f64], &mut [f64]) -> f64 + Send + Sync + 'a) -> Self {
        self.gradient = Some(Box::new(grad));
        self
    }
    /// Each crossing replaces the state by `reset(t, y, p)` (in place).
    pub fn reset(mut self, reset: impl Fn(f64, &mut [f64], &[f64]) + Send + Sync + 'a) -> Self {
        self.action = Action::Reset(Box::new(reset));
        self
    }
}

/// A crossing that happened.
#[derive(Clone, Debug, PartialEq)]
pub struct EventHit {
    /// Index of the event in the list given to the solve.
    pub event: usize,
    /// Time of the crossing.
    pub t: f64,
    /// State at the crossing (before a reset).
    pub state: Vec<f64>,
}

/// Whether `g` going from `g0` to `g1` over a step is a crossing that counts.
pub(crate) fn crosses(g0: f64, g1: f64, direction: Direction) -> bool {
    let rising = g0 < 0.0 && g1 >= 0.0;
    let falling = g0 > 0.0 && g1 <= 0.0;
    match direction {
        Direction::Any => rising || falling,
        Direction::Rising => rising,
        Direction::Falling => falling,
    }
}

/// The zero of `g` in `[ta, tb]` given `g(ta) = ga` and `g(tb) = gb` of opposite
/// signs (or `gb = 0`), by the Illinois variant of regula falsi (Dowell &
/// Jarratt 1971): superlinear, and the bracket never widens. Ends when the
/// bracket is below `100 ε (|tb| + |tb − ta|)`, the tolerance SUNDIALS uses.
pub(crate) fn locate(mut ta: f64, mut ga: f64, mut tb: f64, mut gb: f64, g: &mut dyn FnMut(f64) -> Result<f64>) -> Result<f64> {
    if gb == 0.0 {
        return Ok(tb);
    }
    let tol = 100.0 * f64::EPSILON * (tb.abs() + (tb - ta).abs());
    let mut side = 0i8;
    for _ in 0..200 {
        if (tb - ta).abs() <= tol {
            break;
        }
        let mut tm = (ta * gb - tb * ga) / (gb - ga);
        if !(tm > ta.min(tb) && tm < ta.max(tb)) {
            tm = 0.5 * (ta + tb);
        }
        let gm = g(tm)?;
        if !gm.is_finite() {
            return Err(Error::invalid("events", format!("event function is {gm} at t = {tm}")));
        }
        if gm == 0.0 {
            return Ok(tm);
        }
        if (gm > 0.0) == (gb > 0.0) {
            tb = tm;
            gb = gm;
            if side == 1 {
                ga *= 0.5;
            }
            side = 1;
        } else {
            ta = tm;
            ga = gm;
            if side == -1 {
                gb *= 0.5;
            }
            side = -1;
        }
    }
    // The crossing lies in the final bracket; report its upper end, where g has
    // the sign it has after the crossing.
    Ok(tb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn illinois_finds_a_root_to_round_off() {
        // cos t = 0 on [1, 2]: t = π/2.
        let mut g = |t: f64| Ok(t.cos());
        let t = locate(1.0, 1f64.cos(), 2.0, 2f64.cos(), &mut g).unwrap();
        assert!((t - std::f64::consts::FRAC_PI_2).abs() < 1e-13, "{t}");
        // A flat-then-steep function, where plain regula falsi stalls at one end.
        let mut g = |t: f64| Ok(t.powi(9) - 1e-9);
        let t = locate(0.0, -1e-9, 1.0, 1.0 - 1e-9, &mut g).unwrap();
        assert!((t - 0.1).abs() < 1e-12, "{t}");
    }

    #[test]
    fn crossings_respect_direction_and_leaving_zero_is_not_one() {
        assert!(crosses(-1.0, 1.0, Direction::Rising) && !crosses(-1.0, 1.0, Direction::Falling));
        assert!(crosses(1.0, 0.0, Direction::Falling) && crosses(1.0, -1.0, Direction::Any));
        assert!(!crosses(0.0, 1.0, Direction::Any) && !crosses(0.0, -1.0, Direction::Any));
    }
}
