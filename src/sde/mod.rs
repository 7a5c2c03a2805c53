//! Stochastic differential equations: reproducible Brownian paths (the virtual Brownian tree and
//! a fixed-grid path) and fixed-step solvers for diagonal noise. Adaptive steps, general and
//! additive-noise solvers (SRA1), reversible Heun and the SDE adjoints follow (neural SDE issue).

mod brownian;
mod solve;

pub use brownian::{BrownianPath, GridBrownian, VirtualBrownianTree};
pub use solve::{sdeint, Calculus, FnSde, ReversibleHeunState, SdeField, SdeSolver};
