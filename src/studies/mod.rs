//! Studies: end-to-end runs that simulate, train, sample, measure and plot. Each implements
//! [`Study`] and has a row in [`TABLE`], which the `physflow` command and the demo tour
//! ([`tour`]) read; examples are thin wrappers over them.

pub mod bg_double_well;
pub mod bg_particles;
pub mod config;
pub mod fm_double_well;
pub mod fm_moons;
pub mod neural_ode;
pub mod neural_sde;
pub mod param_fit;
pub mod pde_darcy;
pub mod pde_fields;
pub mod pde_ns2d;
mod registry;
pub mod stiff_hybrid;
pub mod tour;

pub use registry::{configure, find, finish, run_study, Context, Entry, Outcome, Overrides, Study, TABLE};
