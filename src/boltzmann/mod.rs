//! Boltzmann generators: sample an equilibrium density `p(x) ∝ exp(−β u(x))` with a
//! normalizing flow ([`crate::flows`]) and reweight the samples to unbiased averages
//! (Noé, Olsson, Köhler & Wu 2019, "Boltzmann generators").
//!
//! * [`energy`]: the [`Energy`] trait (energy and force for a batch, ndarray in and out) and
//!   the reference systems: 2D double well, Müller–Brown, DW4, LJ13 / LJ55.
//! * [`autodiff`]: energies written once on burn tensors ([`autodiff::TensorEnergy`]) with
//!   forces by automatic differentiation, and a force checker against finite differences.
//! * [`eqfm`]: equivariant flow matching for particle systems (an EGNN continuous flow on the
//!   mean-free base, minibatch OT between orbits), sampled with exact log-densities.
//! * [`mcmc`]: reference samplers of our own (Metropolis–Hastings, MALA).
//! * [`quadrature`]: exact grid quadrature for 2D systems.
//! * [`reweight`]: importance weights, Kish ESS, bootstrap errors, free energies
//!   (exponential averaging, BAR), histograms.
//! * [`train`]: training a flow by data (forward KL), by energy (reverse KL) or both.

pub mod autodiff;
pub mod energy;
pub mod eqfm;
pub mod mcmc;
pub mod quadrature;
pub mod reweight;
pub mod train;

pub use autodiff::{check_forces, Autodiff, TensorEnergy};
pub use energy::{evaluate, evaluate_energy, Energy};
pub use eqfm::{load_eqfm, train_eqfm, EqCoupling, EqFmConfig, EqFmModel, EqFmReport, EqFmTrainer, Likelihood};
pub use train::{load_generator, train, BgTrainer, BoltzmannGenerator, LogEntry, TrainConfig, TrainReport, Weighted};
