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
//! let opts = Options::adaptive(Solver::Tsit5, 1e-10, 1e-10);
//! let sol = ode::solve(&field, y0, &[0.0, 1.0], &opts).unwrap();
//! let y1: Vec<f64> = sol.ys[1].to_data().to_vec().unwrap();
//! assert!((y1[0] - (-1.0f64).exp()).abs() < 1e-9);
//! ```

pub mod adjoint;
pub mod array;
mod controller;
mod dense;
mod events;
pub(crate) mod field;
mod options;
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
pub use options::{Adaptive, Limits, Options, Solver, StepControl, StepSize};
pub use solve::{solve, Solution, Stats, Status};
pub use system_field::{SystemField, SystemSaved};
