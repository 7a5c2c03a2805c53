//! Studies: end-to-end runs that simulate, train, sample, measure and plot. Examples and the
//! `physflow` command are thin wrappers over these.

pub mod neural_ode;
pub mod neural_sde;
pub mod param_fit;
pub mod stiff_hybrid;
