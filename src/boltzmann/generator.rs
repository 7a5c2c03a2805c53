//! A trained Boltzmann generator: the flow `x = f(z)` from `z ~ N(0, I)`, its samples with
//! `log q(x)`, and importance weights toward the target `exp(−β u)` (Noé et al. 2019).

use std::sync::Arc;

use ndarray::{Array1, Array2, ArrayView2};
use rand::rngs::StdRng;

use super::reweight;
use crate::energy::Energy;
use crate::flows::{Base, Flow, FlowConfig, Sequential};
use crate::Result;

/// A trained Boltzmann generator: a flow from a standard normal base to configurations.
pub struct BoltzmannGenerator {
    /// The architecture the flow was built from.
    pub config: FlowConfig,
    /// The flow `x = f(z)`.
    pub flow: Sequential,
    /// The base `N(0, I_dim)`.
    pub base: Base,
    /// The seed the flow was built from (it fixes the LU layers' permutations).
    pub seed: u64,
    /// The target `(u, β)` that stochastic layers move toward ([`Self::with_target`]).
    target: Option<(Arc<dyn Energy>, f64)>,
}

impl BoltzmannGenerator {
    /// A fresh generator on `dim` coordinates (the flow starts as the identity).
    ///
    /// # Errors
    /// `InvalidArgument` for a bad architecture.
    pub fn new(config: &FlowConfig, dim: usize, seed: u64) -> Result<Self> {
        Self::build(config, dim, seed, None)
    }

    /// A fresh generator toward the target `exp(−β u)`, for architectures with stochastic
    /// layers ([`crate::flows::LayerConfig::Stochastic`], which need `u` and β; other layers
    /// ignore them): the stochastic normalizing flows of Wu, Köhler & Noé (2020).
    ///
    /// # Errors
    /// `InvalidArgument` for a bad architecture or β.
    pub fn with_target(config: &FlowConfig, energy: Arc<dyn Energy>, beta: f64, seed: u64) -> Result<Self> {
        Self::build(config, energy.dim(), seed, Some((energy, beta)))
    }

    fn build(config: &FlowConfig, dim: usize, seed: u64, target: Option<(Arc<dyn Energy>, f64)>) -> Result<Self> {
        let flow = config.build_with_target(dim, seed, target.as_ref().map(|(u, b)| (u, *b)))?;
        Ok(BoltzmannGenerator { config: config.clone(), flow, base: Base::StandardNormal { dim }, seed, target })
    }

    /// A generator of the same architecture, seed and target with the same parameters.
    pub(crate) fn duplicate(&self) -> Result<Self> {
        let mut copy = Self::build(&self.config, self.dim(), self.seed, self.target.clone())?;
        copy.flow.set_params(&self.flow.params())?;
        Ok(copy)
    }

    /// Dimension of a configuration.
    pub fn dim(&self) -> usize {
        self.flow.dim()
    }

    /// `n` samples `x: [n, dim]` and their `log q(x): [n]`.
    pub fn sample(&self, n: usize, rng: &mut StdRng) -> Result<(Array2<f64>, Array1<f64>)> {
        let z = self.base.sample(n, rng);
        let lp = self.base.log_prob(z.view())?;
        let (x, ld) = self.flow.forward(z.view())?;
        Ok((x, lp - ld))
    }

    /// `log q(x)` per row of `x: [batch, dim]`.
    pub fn log_prob(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        let (z, ld) = self.flow.inverse(x)?;
        Ok(self.base.log_prob(z.view())? + ld)
    }

    /// `n` samples with their energies `u` and log importance weights
    /// `log w = −β u − log q` for the target `exp(−β u)` ([`reweight::log_weights`]).
    pub fn sample_weighted(&self, energy: &dyn Energy, beta: f64, n: usize, rng: &mut StdRng) -> Result<Weighted> {
        let (x, log_q) = self.sample(n, rng)?;
        let u = crate::energy::evaluate_energy(energy, x.view())?;
        let log_w = reweight::log_weights(beta, u.view(), log_q.view())?;
        Ok(Weighted { x, u, log_q, log_w })
    }
}

/// Samples of a generator with what reweighting needs.
#[derive(Clone, Debug)]
pub struct Weighted {
    /// Configurations `[n, dim]`.
    pub x: Array2<f64>,
    /// Energies `u(x)` `[n]`.
    pub u: Array1<f64>,
    /// `log q(x)` `[n]`.
    pub log_q: Array1<f64>,
    /// `log w = −β u − log q` `[n]`.
    pub log_w: Array1<f64>,
}
