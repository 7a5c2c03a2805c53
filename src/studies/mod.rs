//! Studies: end-to-end runs that simulate, train, sample, measure and plot. Examples and the
//! `physflow` command are thin wrappers over these.

pub mod bg_double_well;
pub mod bg_particles;
pub mod fm_double_well;
pub mod fm_moons;
pub mod neural_ode;
pub mod neural_sde;
pub mod param_fit;
pub mod pde_darcy;
pub mod pde_fields;
pub mod pde_ns2d;
pub mod stiff_hybrid;
