//! The choices of a solve: the method ([`Solver`]), how it steps ([`StepSize`]) and the
//! budgets that stop it ([`Limits`]). Each option lives where it means something: tolerances
//! only on adaptive steps, `dt` only on fixed ones.

use serde::{Deserialize, Serialize};

use super::controller::PiController;
use super::tableau::{self, Tableau};
use crate::{Error, Result};

/// Declares [`Solver`] from one line per method — its doc, variant and tableau in
/// [`super::tableau`] — so that adding a method is its tableau plus one line here, and the
/// variant, [`Solver::ALL`] (the list the shared tests iterate) and [`Solver::tableau`] cannot
/// disagree.
macro_rules! solvers {
    ($( $(#[doc = $doc:literal])+ $variant:ident => $tableau:ident, )+) => {
        /// The explicit Runge–Kutta methods. [`Solver::ALL`] is the list the tests iterate over.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum Solver {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Solver {
            /// Every solver; tests loop over this list.
            pub const ALL: [Solver; [$(stringify!($variant)),+].len()] = [$(Solver::$variant),+];

            /// The method's Butcher tableau.
            pub fn tableau(self) -> &'static Tableau {
                match self {
                    $( Solver::$variant => &tableau::$tableau, )+
                }
            }
        }
    };
}

solvers! {
    /// Forward Euler, fixed step, order 1.
    Euler => EULER,
    /// Explicit midpoint, fixed step, order 2.
    Midpoint => MIDPOINT,
    /// Heun (explicit trapezoid), fixed step, order 2.
    Heun => HEUN,
    /// Kutta's third-order method, fixed step, order 3.
    Rk3 => RK3,
    /// Classical Runge–Kutta, fixed step, order 4.
    Rk4 => RK4,
    /// Bogacki–Shampine 3(2), adaptive.
    Bosh3 => BOSH3,
    /// Dormand–Prince 5(4), adaptive.
    Dopri5 => DOPRI5,
    /// Tsitouras 5(4), adaptive.
    Tsit5 => TSIT5,
}

impl Solver {
    /// Whether the solver adapts its step size (has an error estimate).
    pub fn is_adaptive(self) -> bool {
        self.tableau().is_adaptive()
    }

    /// Parse a solver name (`"tsit5"`, `"rk4"`, ...).
    pub fn from_name(name: &str) -> crate::Result<Self> {
        Solver::ALL
            .into_iter()
            .find(|s| s.tableau().name.eq_ignore_ascii_case(name))
            .ok_or_else(|| crate::Error::invalid("solver", format!("unknown solver `{name}`; known: {}", Solver::ALL.map(|s| s.tableau().name).join(", "))))
    }
}

/// How adaptive step sizes are shared across the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StepControl {
    /// One step size for the whole batch; the error norm is the RMS over all samples.
    #[default]
    Batch,
    /// Each sample has its own accepted steps; finished samples are frozen.
    PerSample,
}

/// Error-controlled steps of an adaptive solver: a step is accepted when the scaled RMS
/// error `‖e / (atol + rtol · max(|y_n|, |y_{n+1}|))‖ ≤ 1` (Hairer, Nørsett & Wanner, §II.4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adaptive {
    /// Relative tolerance, > 0.
    pub rtol: f64,
    /// Absolute tolerance, > 0.
    pub atol: f64,
    /// Initial step; `None` selects it automatically (Hairer, Nørsett & Wanner, §II.4).
    pub dt0: Option<f64>,
    /// Smallest step before `StepSizeUnderflow` (in units of `t`; 0 leaves only the
    /// floating-point floor of a few ulps of `t`).
    pub min_step: f64,
    /// Step-size controller.
    pub controller: PiController,
    /// Batch-wide or per-sample step-size control.
    pub control: StepControl,
}

impl Default for Adaptive {
    /// rtol = 1e-6, atol = 1e-8, automatic first step, the I controller, batch-wide control.
    fn default() -> Self {
        Self { rtol: 1e-6, atol: 1e-8, dt0: None, min_step: 0.0, controller: PiController::default(), control: StepControl::Batch }
    }
}

impl Adaptive {
    /// Tolerances `rtol`, `atol`, everything else default.
    pub fn tol(rtol: f64, atol: f64) -> Self {
        Self { rtol, atol, ..Self::default() }
    }
}

/// How a solve chooses its steps.
///
/// In TOML: `step = { kind = "adaptive", rtol = 1e-6, atol = 1e-8 }`,
/// `step = { kind = "fixed", dt = 0.01 }` or `step = { kind = "grid" }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields, from = "StepSizeToml")]
pub enum StepSize {
    /// Error-controlled steps; needs a solver with an error estimate ([`Solver::is_adaptive`]).
    Adaptive(Adaptive),
    /// Equal steps of at most `dt` (> 0) inside each output interval, shortened so that every
    /// output time is a step end. Any solver; an adaptive one ignores its error estimate.
    Fixed {
        /// Largest step, in units of `t`.
        dt: f64,
    },
    /// One step per output interval: the output times are the time grid (a sampler's
    /// schedule, for instance). Any solver.
    Grid,
}

/// What [`StepSize`] reads from: `grid` as an empty table, so that a field on it is refused
/// (serde ignores unknown fields on an internally tagged unit variant).
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum StepSizeToml {
    Adaptive(Adaptive),
    Fixed { dt: f64 },
    Grid {},
}

impl From<StepSizeToml> for StepSize {
    fn from(s: StepSizeToml) -> Self {
        match s {
            StepSizeToml::Adaptive(a) => StepSize::Adaptive(a),
            StepSizeToml::Fixed { dt } => StepSize::Fixed { dt },
            StepSizeToml::Grid {} => StepSize::Grid,
        }
    }
}

impl Default for StepSize {
    fn default() -> Self {
        StepSize::Adaptive(Adaptive::default())
    }
}

/// Budgets of one solve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Step budget (accepted + rejected); `MaxStepsReached` beyond it. At least 1.
    pub max_steps: usize,
    /// Wall-clock budget in seconds, checked every step; `TimeLimitReached` beyond it.
    /// `None`: no limit.
    pub max_wall_seconds: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_steps: 100_000, max_wall_seconds: None }
    }
}

/// Options of a solve. `Options::default()` is Tsit5, adaptive at rtol = 1e-6, atol = 1e-8.
///
/// ```
/// use physflow::ode::{Options, Solver, StepSize};
/// let tight = Options::adaptive(Solver::Dopri5, 1e-10, 1e-12);
/// let sampler = Options::fixed(Solver::Rk4, 0.05);
/// let on_grid = Options::grid(Solver::Heun);
/// assert!(matches!(sampler.step, StepSize::Fixed { dt } if dt == 0.05));
/// # let _ = (tight, on_grid);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// The Runge–Kutta method.
    pub solver: Solver,
    /// How steps are chosen.
    pub step: StepSize,
    /// Step and wall-clock budgets.
    pub limits: Limits,
    /// Keep every step so the solution can be evaluated anywhere ([`super::Solution::evaluate`]).
    pub dense: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { solver: Solver::Tsit5, step: StepSize::default(), limits: Limits::default(), dense: false }
    }
}

impl Options {
    /// `solver` with error-controlled steps at `rtol`, `atol`.
    pub fn adaptive(solver: Solver, rtol: f64, atol: f64) -> Self {
        Self { solver, step: StepSize::Adaptive(Adaptive::tol(rtol, atol)), ..Self::default() }
    }

    /// `solver` with equal steps of at most `dt`.
    pub fn fixed(solver: Solver, dt: f64) -> Self {
        Self { solver, step: StepSize::Fixed { dt }, ..Self::default() }
    }

    /// `solver` with one step per output interval.
    pub fn grid(solver: Solver) -> Self {
        Self { solver, step: StepSize::Grid, ..Self::default() }
    }

    /// The error control, when steps are adaptive.
    pub fn adaptive_steps(&self) -> Option<&Adaptive> {
        match &self.step {
            StepSize::Adaptive(a) => Some(a),
            _ => None,
        }
    }

    /// Whether each sample of the batch takes its own adaptive steps.
    pub fn per_sample(&self) -> bool {
        self.adaptive_steps().is_some_and(|a| a.control == StepControl::PerSample)
    }

    /// Checks every value and that the step choice suits the solver.
    pub fn check(&self) -> Result<()> {
        let tab = self.solver.tableau();
        match &self.step {
            StepSize::Adaptive(a) => {
                if !tab.is_adaptive() {
                    return Err(Error::invalid("step", format!("solver `{}` has no error estimate: use StepSize::Fixed {{ dt }} or StepSize::Grid", tab.name)));
                }
                if !(a.rtol > 0.0 && a.rtol.is_finite()) {
                    return Err(Error::invalid("rtol", format!("must be positive and finite, got {}", a.rtol)));
                }
                if !(a.atol > 0.0 && a.atol.is_finite()) {
                    return Err(Error::invalid("atol", format!("must be positive and finite, got {}", a.atol)));
                }
                if let Some(dt0) = a.dt0 {
                    if !(dt0 > 0.0 && dt0.is_finite()) {
                        return Err(Error::invalid("dt0", format!("must be positive and finite, got {dt0}")));
                    }
                }
                if !(a.min_step >= 0.0 && a.min_step.is_finite()) {
                    return Err(Error::invalid("min_step", format!("must be non-negative and finite, got {}", a.min_step)));
                }
            }
            StepSize::Fixed { dt } => {
                if !(*dt > 0.0 && dt.is_finite()) {
                    return Err(Error::invalid("dt", format!("must be positive and finite, got {dt}")));
                }
            }
            StepSize::Grid => {}
        }
        if self.limits.max_steps == 0 {
            return Err(Error::invalid("max_steps", "must be at least 1"));
        }
        if let Some(s) = self.limits.max_wall_seconds {
            if !(s > 0.0) || s.is_nan() {
                return Err(Error::invalid("max_wall_seconds", format!("must be positive, got {s}")));
            }
        }
        Ok(())
    }
}

/// A short label of the step choice for reports: `rtol 1e-6`, `step 0.05`, `grid`.
impl std::fmt::Display for StepSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepSize::Adaptive(a) => write!(f, "rtol {:.0e}", a.rtol),
            StepSize::Fixed { dt } => write!(f, "step {dt}"),
            StepSize::Grid => write!(f, "grid"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_choice_reads_back_from_toml() {
        for opts in [
            Options::default(),
            Options::adaptive(Solver::Dopri5, 1e-9, 1e-11),
            Options { step: StepSize::Adaptive(Adaptive { control: StepControl::PerSample, dt0: Some(0.1), ..Adaptive::default() }), ..Options::default() },
            Options::fixed(Solver::Rk4, 0.05),
            Options { dense: true, limits: Limits { max_steps: 7, max_wall_seconds: Some(2.0) }, ..Options::grid(Solver::Heun) },
        ] {
            let text = toml::to_string(&opts).unwrap();
            let back: Options = toml::from_str(&text).unwrap();
            assert_eq!(back, opts, "{text}");
        }
        let fixed: Options = toml::from_str("solver = \"rk4\"\nstep = { kind = \"fixed\", dt = 0.1 }\n").unwrap();
        assert_eq!(fixed, Options::fixed(Solver::Rk4, 0.1));
        let tol: Options = toml::from_str("step = { kind = \"adaptive\", rtol = 1e-4 }\n").unwrap();
        assert_eq!(tol.adaptive_steps().map(|a| (a.rtol, a.atol)), Some((1e-4, 1e-8)));
    }

    #[test]
    fn options_that_do_not_belong_together_are_rejected() {
        // A tolerance on fixed steps, a step on adaptive ones, an unknown kind: parse errors.
        for text in [
            "step = { kind = \"fixed\", dt = 0.1, rtol = 1e-3 }",
            "step = { kind = \"adaptive\", dt = 0.1 }",
            "step = { kind = \"grid\", dt = 0.1 }",
            "step = { kind = \"tiny\" }",
            "rtol = 1e-6",
        ] {
            assert!(toml::from_str::<Options>(text).is_err(), "{text}");
        }
        let named = |o: Options| match o.check() {
            Err(Error::InvalidArgument { name, .. }) => name,
            other => panic!("{other:?}"),
        };
        assert_eq!(named(Options { step: StepSize::default(), ..Options::fixed(Solver::Euler, 0.1) }), "step");
        assert_eq!(named(Options::fixed(Solver::Rk4, 0.0)), "dt");
        assert_eq!(named(Options::adaptive(Solver::Tsit5, 1e-6, f64::NAN)), "atol");
        assert_eq!(named(Options { limits: Limits { max_steps: 0, max_wall_seconds: None }, ..Options::default() }), "max_steps");
        assert!(Options::grid(Solver::Euler).check().is_ok());
        assert!(Options::fixed(Solver::Tsit5, 0.1).check().is_ok());
    }
}
