//! `use physflow::prelude::*;` — what a simulation code needs in one import.
//!
#![doc = include_str!("../docs/simulation-codes.md")]

pub use crate::sim::{
    self, adjoint_gradient, ensemble, forward_sensitivities, non_negative, positive, simulate, simulate_events, simulate_with, ClosureSystem, Direction, Dual,
    Event, EventHit, EventTrajectory, Integrator, JacobianKind, Rhs, Scalar, SimOptions, SimStats, System, Trajectory, Wrt,
};
pub use crate::{ode, sde};
pub use crate::{Error, Result};
pub use ndarray::{self, array, Array1, Array2, ArrayView1, ArrayView2, Axis};
