//! # physflow
//!
//! Flows on physical systems: batched neural ODE solvers with exact gradients (direct,
//! checkpointed, continuous adjoint), fused CPU MLP vector fields, neural SDEs, stiff physical
//! systems through diffsol, HDF5 datasets, flow matching, normalizing flows and Boltzmann
//! generators ([`flows`], [`boltzmann`]), generative models of PDE fields that satisfy their
//! constraints exactly ([`pde`]: functional flow matching, PCFM/ECI sampling), and the studies
//! built on them.
//!
//! ```
//! use burn::tensor::Tensor;
//! use physflow::ode::{self, Gradient, Options, Solver};
//! use physflow::ode::problems::DampedRotation;
//!
//! let device = physflow::device::cpu_f64().unwrap();
//! let system = DampedRotation::default();
//! let field = system.field();
//! let y0 = Tensor::<2>::from_floats([[1.0, 0.0]], &device);
//! let times = [0.0, 0.5, 1.0];
//! let opts = Options::adaptive(Solver::Dopri5, 1e-10, 1e-12);
//! let (sol, tape) = ode::solve_for_grad(&field, y0, &times, &opts, Gradient::Direct).unwrap();
//! let exact = system.exact(1.0, [1.0, 0.0]);
//! let y1: Vec<f64> = sol.ys[2].to_data().to_vec().unwrap();
//! assert!((y1[0] - exact[0]).abs() < 1e-9);
//! // L = Σ y(t=1): the gradient w.r.t. y0 is expm(A)ᵀ 1.
//! let cot = vec![sol.ys[0].zeros_like(), sol.ys[1].zeros_like(), sol.ys[2].ones_like()];
//! let grads = tape.backward(&cot).unwrap();
//! let g: Vec<f64> = grads.y0.to_data().to_vec().unwrap();
//! let e1 = system.exact(1.0, [1.0, 0.0]);
//! assert!((g[0] - (e1[0] + e1[1])).abs() < 1e-8);
//! ```

pub mod boltzmann;
#[cfg(feature = "cli")]
pub mod cli;
pub mod device;
pub mod energy;
pub mod error;
pub mod flows;
pub mod fm;
pub mod host;
pub mod io;
pub mod nn;
pub mod ode;
pub mod pde;
#[cfg(feature = "cli")]
pub mod plot;
pub mod prelude;
pub mod sde;
pub mod sim;
#[cfg(feature = "cli")]
pub mod studies;
pub mod train;

pub use error::{Error, Result};

/// The guides' code blocks, compiled as doc tests so they cannot drift from the API.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../docs/boltzmann.md")]
    struct Boltzmann;
    #[doc = include_str!("../docs/fm.md")]
    struct Fm;
    #[doc = include_str!("../docs/io.md")]
    struct Io;
    #[doc = include_str!("../docs/ode.md")]
    struct Ode;
    #[doc = include_str!("../docs/pde.md")]
    struct Pde;
    #[doc = include_str!("../docs/sde.md")]
    struct Sde;
    #[doc = include_str!("../docs/sim.md")]
    struct Sim;
    #[doc = include_str!("../docs/training.md")]
    struct Training;
}
