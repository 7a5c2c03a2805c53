//! Batched explicit ODE solvers on burn tensors, with three gradient strategies.
//!
//! A solve combines independent values, as in diffrax: the vector field
//! ([`VectorField`]), the solver and step-size controller (in [`Options`]), the
//! output times, and the gradient strategy ([`Gradient`]).
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use physflow::ode::{self, FnField, Options, Solver, Time};
//!
//! let device = physflow::device::cpu_f64().unwrap();
//! // dy/dt = -y, y(0) = 1  =>  y(1) = e^{-1}
//! let field = FnField::new(|_t: &Time, y: Tensor<2>| y.neg());
//! let y0 = Tensor::<2>::ones([4, 1], &device);
//! let opts = Options { solver: Solver::Tsit5, rtol: 1e-10, atol: 1e-10, ..Options::default() };
//! let sol = ode::solve(&field, y0, &[0.0, 1.0], &opts).unwrap();
//! let y1: Vec<f64> = sol.ys[1].to_data().to_vec().unwrap();
//! assert!((y1[0] - (-1.0f64).exp()).abs() < 1e-9);
//! ```

pub mod adjoint;
pub mod array;
mod controller;
mod events;
pub(crate) mod field;
pub mod problems;
pub(crate) mod solve;
mod system_field;
pub mod tableau;

pub use adjoint::{solve_for_grad, AdjointMode, AdjointOptions, Gradient, Grads, Tape};
pub use array::{solve_array, solve_array_events, solve_system, ArrayEvents, ArraySolution};
pub use controller::PiController;
pub use events::{event_gradients, solve_events, EventSolution, SampleEvent};
pub(crate) use field::autodiff_vjp;
pub use field::{FieldModule, FlatGrads, FnField, ModuleField, ModuleGrads, ParamCotangent, ParamFnField, Time, VectorField};
pub use solve::{solve, Solution, Stats, Status};
pub use system_field::{SystemField, SystemSaved};

use serde::{Deserialize, Serialize};
use tableau::Tableau;

/// The explicit Runge–Kutta methods. [`Solver::ALL`] is the list the tests iterate over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// Forward Euler, fixed step, order 1.
    Euler,
    /// Explicit midpoint, fixed step, order 2.
    Midpoint,
    /// Heun (explicit trapezoid), fixed step, order 2.
    Heun,
    /// Classical Runge–Kutta, fixed step, order 4.
    Rk4,
    /// Bogacki–Shampine 3(2), adaptive.
    Bosh3,
    /// Dormand–Prince 5(4), adaptive.
    Dopri5,
    /// Tsitouras 5(4), adaptive.
    Tsit5,
}

impl Solver {
    /// Every solver; tests loop over this list.
    pub const ALL: [Solver; 7] = [Solver::Euler, Solver::Midpoint, Solver::Heun, Solver::Rk4, Solver::Bosh3, Solver::Dopri5, Solver::Tsit5];

    /// The method's Butcher tableau.
    pub fn tableau(self) -> &'static Tableau {
        match self {
            Solver::Euler => &tableau::EULER,
            Solver::Midpoint => &tableau::MIDPOINT,
            Solver::Heun => &tableau::HEUN,
            Solver::Rk4 => &tableau::RK4,
            Solver::Bosh3 => &tableau::BOSH3,
            Solver::Dopri5 => &tableau::DOPRI5,
            Solver::Tsit5 => &tableau::TSIT5,
        }
    }

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

/// Options of a solve. `Options::default()` is Tsit5 at rtol = 1e-6, atol = 1e-8.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// The Runge–Kutta method.
    pub solver: Solver,
    /// Relative tolerance (adaptive solvers), > 0.
    pub rtol: f64,
    /// Absolute tolerance (adaptive solvers), > 0.
    pub atol: f64,
    /// Initial step for adaptive solvers; `None` selects it automatically (Hairer, Nørsett & Wanner, §II.4).
    pub dt0: Option<f64>,
    /// Fixed step size: required by fixed-step solvers, and turns an adaptive solver into a
    /// fixed-step one (its error estimate unused). Steps are shortened so outputs fall on step ends.
    pub dt: Option<f64>,
    /// Step budget (accepted + rejected); `MaxStepsReached` beyond it.
    pub max_steps: usize,
    /// Smallest step an adaptive solver may take before `StepSizeUnderflow` (in units of `t`;
    /// 0 leaves only the floating-point floor of a few ulps of `t`).
    pub min_step: f64,
    /// Wall-clock budget of one solve in seconds, checked every step; `TimeLimitReached`
    /// beyond it. `None`: no limit.
    pub max_wall_seconds: Option<f64>,
    /// Step-size controller of adaptive solvers.
    pub controller: PiController,
    /// Batch-wide or per-sample step-size control.
    pub control: StepControl,
    /// Keep every step so the solution can be evaluated anywhere ([`Solution::evaluate`]).
    pub dense: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            solver: Solver::Tsit5,
            rtol: 1e-6,
            atol: 1e-8,
            dt0: None,
            dt: None,
            max_steps: 100_000,
            min_step: 0.0,
            max_wall_seconds: None,
            controller: PiController::default(),
            control: StepControl::Batch,
            dense: false,
        }
    }
}
