//! Stochastic differential equations: reproducible Brownian paths with space-time Lévy area
//! (the virtual Brownian tree and a fixed-grid path), diagonal, general and additive noise, Itô
//! and Stratonovich solvers with fixed or adaptive steps, and three gradient strategies (direct,
//! stochastic adjoint, reversible-Heun adjoint). Guide: docs/sde.md.

mod adjoint;
mod array;
pub(crate) mod brownian;
mod field;
mod methods;
mod solve;

pub use adjoint::{sdeint_for_grad, SdeGradient, SdeTape};
pub use array::sdeint_array;
pub use brownian::{BrownianPath, GridBrownian, VirtualBrownianTree};
pub use field::{FnSde, NeuralSde, Noise, SdeField, SdeParams, Sigmoid, StateFree};
pub use methods::reversible_heun::ReversibleHeunState;
pub use methods::SdeSolver;
pub use solve::{sdeint, sdeint_with_stats, AdaptiveSde, Calculus, SdeOptions, SdeStats};
