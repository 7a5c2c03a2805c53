//! Boltzmann generators: sample an equilibrium density `p(x) ∝ exp(−β u(x))` with a
//! normalizing flow ([`crate::flows`]) and reweight the samples to unbiased averages
//! (Noé, Olsson, Köhler & Wu 2019, "Boltzmann generators").
//!
//! The energies (the [`crate::energy::Energy`] trait and the reference systems: 2D double
//! well, Müller–Brown, DW4, LJ13 / LJ55) are their own module, [`crate::energy`].
//!
//! * [`eqfm`]: equivariant flow matching for particle systems (an EGNN continuous flow on the
//!   mean-free base, minibatch OT between orbits), sampled with exact log-densities.
//! * [`mcmc`]: reference samplers of our own (Metropolis–Hastings, MALA).
//! * [`quadrature`]: exact grid quadrature for 2D systems.
//! * [`reweight`]: importance weights, Kish ESS, bootstrap errors, free energies
//!   (exponential averaging, BAR), histograms.
//! * [`mod@train`]: training a flow by data (forward KL), by energy (reverse KL) or both.

pub mod eqfm;
mod generator;
pub mod mcmc;
pub mod quadrature;
pub mod reweight;
pub mod train;

pub use eqfm::{load_eqfm, train_eqfm, EqCoupling, EqFmConfig, EqFmModel, EqFmReport, EqFmTrainer, Likelihood};
pub use generator::{BoltzmannGenerator, Weighted};
pub use train::{load_generator, train, BgTrainer, LogEntry, TrainConfig, TrainReport};
