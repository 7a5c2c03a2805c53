//! Stochastic differential equations. So far: reproducible Brownian paths (the virtual
//! Brownian tree and a fixed-grid path); solvers and SDE adjoints follow (issue: neural SDEs).

mod brownian;

pub use brownian::{BrownianPath, GridBrownian, VirtualBrownianTree};
