//! Physical systems on the CPU through diffsol: stiff and explicit solvers,
//! forward and adjoint sensitivities, ensembles, parameter estimation, and burn
//! networks inside a stiff right-hand side.
//!
//! A system is defined once ([`System`]: right-hand side, Jacobian products,
//! named parameters, initial state) and solved with any [`Integrator`] — BDF,
//! ESDIRK34, TR-BDF2 (implicit; dense or sparse Jacobian) or Tsit45 — with
//! output as an ndarray `[T, D]`.
//!
//! ```
//! use physflow::sim::{self, systems::VanDerPol, Integrator, SimOptions};
//! let vdp = VanDerPol::new(10.0);
//! let opts = SimOptions { method: Integrator::Bdf, rtol: 1e-8, atol: 1e-10, ..SimOptions::default() };
//! let traj = sim::simulate(&vdp, &[0.0, 1.0, 2.0], &opts).unwrap();
//! assert_eq!(traj.states.dim(), (3, 2));
//! ```

mod autodiff;
mod closure;
pub mod darcy;
mod ensemble;
mod equations;
pub mod events;
pub(crate) mod fft2;
pub mod fields;
mod fit;
pub mod grf;
mod grid;
pub mod ns2d;
pub mod scalar;
mod sens;
mod solve;
mod system;
pub mod systems;

pub use autodiff::{col, AutodiffSystem, BurnRhs};
pub use closure::{ClosureSystem, Rhs, SPARSE_MAX_DENSITY, SPARSE_MIN_DIM};
pub use ensemble::ensemble;
pub use events::{Action, Direction, Event, EventHit};
pub use fit::{default_weights, fit, fit_with, loss_and_gradient, FitConfig, FitResult, FitTrainer, Observation, Optimizer};
pub use grid::{Boundary, Grid1d};
pub use scalar::{Dual, Scalar};
pub use sens::{adjoint_gradient, forward_sensitivities, AdjointGradient, Sensitivities, Wrt};
pub use solve::{simulate, simulate_events, simulate_with, EventTrajectory, Integrator, SimOptions, SimStats, Trajectory};
pub use system::{check_inputs, check_params, non_negative, positive, FieldLayout, JacobianKind, System};
