//! What a simulation code needs in one import: `use physflow::prelude::*;`.
//!
//! It brings the `sim` module and its main types (systems from a right-hand
//! side written once, options, solves, sensitivities, ensembles, events), the
//! validation helpers a user system returns typed errors with, the crate's
//! [`Error`] and [`Result`], and `ndarray` at the version the API takes (so a
//! caller never has two ndarrays in its tree).

pub use crate::sim::{
    self, adjoint_gradient, ensemble, forward_sensitivities, non_negative, positive, simulate, simulate_with, ClosureSystem, Dual,
    JacobianKind, Method, Rhs, Scalar, SimOptions, SimStats, System, Trajectory, Wrt,
};
pub use crate::{Error, Result};
pub use ndarray::{self, array, Array1, Array2, ArrayView1, ArrayView2, Axis};
