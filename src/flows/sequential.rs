//! Composition of flows, and the serde description that builds one.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::{check_cotangents, ActNorm, AffineCoupling, Flow, Kernel, LuLinear, Mask, Permutation, SplineCoupling, StochasticBlock, StochasticConfig};
use crate::energy::Energy;
use crate::{Error, Result};

/// `f = f_L ∘ … ∘ f_1`: `forward` applies the layers in order and sums their
/// log-determinants; `inverse` goes back in reverse order. Parameters are the layers'
/// parameters concatenated in order.
pub struct Sequential {
    layers: Vec<Box<dyn Flow>>,
    dim: usize,
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.layers.iter().map(|l| l.name())).finish()
    }
}

impl Sequential {
    /// Composes `layers` (first applied first in `forward`).
    ///
    /// # Errors
    /// `InvalidArgument` for an empty list or layers of different dimensions.
    pub fn new(layers: Vec<Box<dyn Flow>>) -> Result<Self> {
        let dim = layers.first().map(|l| l.dim()).ok_or(Error::InvalidArgument { name: "layers", reason: "a flow needs at least one layer".into() })?;
        if let Some(l) = layers.iter().find(|l| l.dim() != dim) {
            return Err(Error::InvalidArgument { name: "layers", reason: format!("layer {} has dimension {}, the first layer {dim}", l.name(), l.dim()) });
        }
        Ok(Sequential { layers, dim })
    }

    /// The layers in `forward` order.
    pub fn layers(&self) -> &[Box<dyn Flow>] {
        &self.layers
    }

    /// `forward`, keeping every layer's input (for the VJP).
    fn forward_saving(&self, z: ArrayView2<f64>) -> Result<(Vec<Array2<f64>>, Array2<f64>, Array1<f64>)> {
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut cur = z.to_owned();
        let mut ld = Array1::zeros(z.nrows());
        for l in &self.layers {
            let (next, lld) = l.forward(cur.view())?;
            ld += &lld;
            inputs.push(std::mem::replace(&mut cur, next));
        }
        Ok((inputs, cur, ld))
    }

    fn inverse_saving(&self, x: ArrayView2<f64>) -> Result<(Vec<Array2<f64>>, Array2<f64>, Array1<f64>)> {
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut cur = x.to_owned();
        let mut ld = Array1::zeros(x.nrows());
        for l in self.layers.iter().rev() {
            let (next, lld) = l.inverse(cur.view())?;
            ld += &lld;
            inputs.push(std::mem::replace(&mut cur, next));
        }
        Ok((inputs, cur, ld))
    }

    fn offsets(&self) -> Vec<usize> {
        let mut off = vec![0];
        for l in &self.layers {
            off.push(off.last().unwrap() + l.num_params());
        }
        off
    }

    /// `x = f(z)`, `log|det ∂x/∂z|`, and the VJP for the cotangents that `cotangents(x, ld)`
    /// returns, in one pass: the forward states are kept, not recomputed. Returns
    /// `(x, ld, z_bar)` and accumulates into `param_bar`.
    #[allow(clippy::type_complexity)]
    pub fn forward_and_vjp(
        &self,
        z: ArrayView2<f64>,
        cotangents: impl FnOnce(&Array2<f64>, &Array1<f64>) -> Result<(Array2<f64>, Array1<f64>)>,
        param_bar: &mut [f64],
    ) -> Result<(Array2<f64>, Array1<f64>, Array2<f64>)> {
        let (inputs, x, ld) = self.forward_saving(z)?;
        let (x_bar, ld_bar) = cotangents(&x, &ld)?;
        check_cotangents(x.view(), x_bar.view(), ld_bar.view(), param_bar, self.num_params())?;
        let off = self.offsets();
        let mut bar = x_bar;
        for (i, l) in self.layers.iter().enumerate().rev() {
            bar = l.forward_vjp(inputs[i].view(), bar.view(), ld_bar.view(), &mut param_bar[off[i]..off[i + 1]])?;
        }
        Ok((x, ld, bar))
    }

    /// `z = f⁻¹(x)`, `log|det ∂z/∂x|`, and the VJP for `cotangents(z, ld)`, in one pass.
    /// Returns `(z, ld, x_bar)` and accumulates into `param_bar`.
    #[allow(clippy::type_complexity)]
    pub fn inverse_and_vjp(
        &self,
        x: ArrayView2<f64>,
        cotangents: impl FnOnce(&Array2<f64>, &Array1<f64>) -> Result<(Array2<f64>, Array1<f64>)>,
        param_bar: &mut [f64],
    ) -> Result<(Array2<f64>, Array1<f64>, Array2<f64>)> {
        let (inputs, z, ld) = self.inverse_saving(x)?;
        let (z_bar, ld_bar) = cotangents(&z, &ld)?;
        check_cotangents(z.view(), z_bar.view(), ld_bar.view(), param_bar, self.num_params())?;
        let off = self.offsets();
        let n = self.layers.len();
        let mut bar = z_bar;
        // inputs[k] is the input of layer n−1−k in the inverse pass; the VJP runs from the
        // last inverse step (layer 0) back to the first (layer n−1).
        for (i, l) in self.layers.iter().enumerate() {
            bar = l.inverse_vjp(inputs[n - 1 - i].view(), bar.view(), ld_bar.view(), &mut param_bar[off[i]..off[i + 1]])?;
        }
        Ok((z, ld, bar))
    }
}

impl Flow for Sequential {
    fn dim(&self) -> usize {
        self.dim
    }

    fn name(&self) -> String {
        format!("sequential[{}]", self.layers.iter().map(|l| l.name()).collect::<Vec<_>>().join(", "))
    }

    fn num_params(&self) -> usize {
        self.layers.iter().map(|l| l.num_params()).sum()
    }

    fn params(&self) -> Vec<f64> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }

    fn set_params(&mut self, params: &[f64]) -> Result<()> {
        super::check_params("sequential", params, self.num_params())?;
        let off = self.offsets();
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.set_params(&params[off[i]..off[i + 1]])?;
        }
        Ok(())
    }

    /// Initialises data-dependent layers from the last to the first, each on the data pulled
    /// back through the layers after it.
    fn data_init(&mut self, x: ArrayView2<f64>) -> Result<()> {
        let mut cur = x.to_owned();
        for l in self.layers.iter_mut().rev() {
            l.data_init(cur.view())?;
            cur = l.inverse(cur.view())?.0;
        }
        Ok(())
    }

    fn forward(&self, z: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        let mut cur = z.to_owned();
        let mut ld = Array1::zeros(z.nrows());
        for l in &self.layers {
            let (next, lld) = l.forward(cur.view())?;
            ld += &lld;
            cur = next;
        }
        Ok((cur, ld))
    }

    fn inverse(&self, x: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        let mut cur = x.to_owned();
        let mut ld = Array1::zeros(x.nrows());
        for l in self.layers.iter().rev() {
            let (next, lld) = l.inverse(cur.view())?;
            ld += &lld;
            cur = next;
        }
        Ok((cur, ld))
    }

    fn forward_vjp(&self, z: ArrayView2<f64>, x_bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &mut [f64]) -> Result<Array2<f64>> {
        let (xb, lb) = (x_bar.to_owned(), ld_bar.to_owned());
        Ok(self.forward_and_vjp(z, |_, _| Ok((xb, lb)), param_bar)?.2)
    }

    fn inverse_vjp(&self, x: ArrayView2<f64>, z_bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &mut [f64]) -> Result<Array2<f64>> {
        let (zb, lb) = (z_bar.to_owned(), ld_bar.to_owned());
        Ok(self.inverse_and_vjp(x, |_, _| Ok((zb, lb)), param_bar)?.2)
    }
}

/// One layer of a [`FlowConfig`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerConfig {
    /// [`AffineCoupling`] conditioning on the indices with `i % 2 == parity`.
    AffineCoupling {
        /// Which half conditions (0 or 1).
        parity: usize,
        /// Conditioner hidden widths.
        hidden: Vec<usize>,
        /// Scale bound `s_max`.
        scale_bound: f64,
    },
    /// [`SplineCoupling`] conditioning on the indices with `i % 2 == parity`.
    SplineCoupling {
        /// Which half conditions (0 or 1).
        parity: usize,
        /// Conditioner hidden widths.
        hidden: Vec<usize>,
        /// Number of bins `K`.
        bins: usize,
        /// Tail bound `B`: the spline acts on `[−B, B]`.
        bound: f64,
    },
    /// [`ActNorm`].
    ActNorm,
    /// [`LuLinear`] (its permutation drawn from the build seed).
    LuLinear,
    /// A random [`Permutation`] (drawn from the build seed).
    Permutation,
    /// A [`StochasticBlock`] toward the generator's target at inverse temperature β (energy
    /// and β from [`FlowConfig::build_with_target`]; its noise seed from the build seed).
    Stochastic {
        /// The Markov kernel.
        kernel: Kernel,
        /// Kernel steps.
        steps: usize,
        /// Interpolation `λ ∈ [0, 1]` between the standard normal and the target.
        lambda: f64,
        /// Project the noise onto the centre-of-mass-free subspace (particle energies).
        #[serde(default)]
        mean_free: bool,
    },
}

/// A flow architecture: layers applied in order from the base `z` to `x`. Built into a
/// [`Sequential`] by [`FlowConfig::build`]; saved next to checkpoints so a flow can be rebuilt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// The layers, base side first.
    pub layers: Vec<LayerConfig>,
}

impl Default for FlowConfig {
    /// RealNVP with 8 affine couplings and `[64, 64]` conditioners.
    fn default() -> Self {
        Self::real_nvp(8, vec![64, 64])
    }
}

impl FlowConfig {
    /// RealNVP: `couplings` affine coupling layers with alternating parity and scale bound 3.
    pub fn real_nvp(couplings: usize, hidden: Vec<usize>) -> Self {
        FlowConfig { layers: (0..couplings).map(|i| LayerConfig::AffineCoupling { parity: i % 2, hidden: hidden.clone(), scale_bound: 3.0 }).collect() }
    }

    /// A neural spline flow: `couplings` spline couplings (`bins` bins on `[−bound, bound]`),
    /// alternating parity, each followed by an LU linear layer that mixes the coordinates.
    pub fn neural_spline(couplings: usize, hidden: Vec<usize>, bins: usize, bound: f64) -> Self {
        let mut layers = Vec::new();
        for i in 0..couplings {
            layers.push(LayerConfig::SplineCoupling { parity: i % 2, hidden: hidden.clone(), bins, bound });
            layers.push(LayerConfig::LuLinear);
        }
        FlowConfig { layers }
    }

    /// Checks the settings, naming the first bad one.
    pub fn validate(&self, dim: usize) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidArgument { name: "flow.layers", reason });
        if self.layers.is_empty() {
            return bad("a flow needs at least one layer".into());
        }
        for (i, l) in self.layers.iter().enumerate() {
            match l {
                LayerConfig::AffineCoupling { parity, hidden, scale_bound } if (dim < 2 || *parity > 1 || hidden.contains(&0) || !(*scale_bound > 0.0)) => {
                    return bad(format!("layer {i}: affine coupling needs dim ≥ 2 (got {dim}), parity 0 or 1, non-zero widths and scale_bound > 0: {l:?}"));
                }
                LayerConfig::SplineCoupling { parity, hidden, bins, bound }
                    if (dim < 2 || *parity > 1 || hidden.contains(&0) || *bins < 2 || *bins > 500 || !(*bound > 0.0)) =>
                {
                    return bad(format!(
                        "layer {i}: spline coupling needs dim ≥ 2 (got {dim}), parity 0 or 1, non-zero widths, 2 ≤ bins ≤ 500 and bound > 0: {l:?}"
                    ));
                }
                LayerConfig::Stochastic { kernel, steps, lambda, mean_free } => {
                    let c = StochasticConfig { kernel: *kernel, steps: *steps, lambda: *lambda, mean_free: *mean_free, ..StochasticConfig::default() };
                    if let Err(e) = c.validate() {
                        return bad(format!("layer {i}: {e}"));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Builds the flow on `dim` coordinates; network weights and permutations from `seed`.
    /// Fresh coupling and linear layers are the identity.
    /// A flow with [`LayerConfig::Stochastic`] layers needs the target: see
    /// [`Self::build_with_target`].
    ///
    /// # Errors
    /// `InvalidArgument` naming the first bad layer (a stochastic one included).
    pub fn build(&self, dim: usize, seed: u64) -> Result<Sequential> {
        self.build_with_target(dim, seed, None)
    }

    /// [`Self::build`] with the target `exp(−β u)` that stochastic layers move toward:
    /// `target = Some((u, β))`.
    ///
    /// # Errors
    /// `InvalidArgument` naming the first bad layer, or a stochastic layer without a target;
    /// `Shape` when the energy's dimension is not `dim`.
    pub fn build_with_target(&self, dim: usize, seed: u64, target: Option<(&Arc<dyn Energy>, f64)>) -> Result<Sequential> {
        if let Some((u, _)) = target {
            if u.dim() != dim {
                return Err(Error::Shape { what: format!("target energy `{}` of the flow", u.name()), expected: vec![dim], got: vec![u.dim()] });
            }
        }
        let layers = self
            .resolve(dim, seed)?
            .into_iter()
            .enumerate()
            .map(|(i, spec)| -> Result<Box<dyn Flow>> {
                Ok(match spec {
                    LayerSpec::Affine { mask, hidden, scale_bound, seed } => Box::new(AffineCoupling::new(mask, &hidden, scale_bound, seed)?),
                    LayerSpec::Spline { mask, hidden, bins, bound, seed } => Box::new(SplineCoupling::new(mask, &hidden, bins, bound, seed)?),
                    LayerSpec::ActNorm => Box::new(ActNorm::new(dim)),
                    LayerSpec::LuLinear { perm } => Box::new(LuLinear::with_perm(perm)),
                    LayerSpec::Permutation { perm } => Box::new(Permutation::new(perm)?),
                    LayerSpec::Stochastic(mut c) => {
                        let (u, beta) = target.ok_or_else(|| Error::InvalidArgument {
                            name: "flow.layers",
                            reason: format!("layer {i} is a stochastic block, which needs the target energy (FlowConfig::build_with_target, BoltzmannGenerator::with_target)"),
                        })?;
                        c.beta = beta;
                        Box::new(StochasticBlock::new(u.clone(), c)?)
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Sequential::new(layers)
    }

    /// The layers with their masks, permutations and initialisation seeds fixed from `seed`:
    /// the one place that turns a configuration into concrete layers, shared by the CPU flow
    /// ([`Self::build`]) and the device module ([`super::FlowModule`]).
    pub(crate) fn resolve(&self, dim: usize, seed: u64) -> Result<Vec<LayerSpec>> {
        self.validate(dim)?;
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let s = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
                Ok(match l {
                    LayerConfig::AffineCoupling { parity, hidden, scale_bound } => {
                        LayerSpec::Affine { mask: Mask::parity(dim, *parity)?, hidden: hidden.clone(), scale_bound: *scale_bound, seed: s }
                    }
                    LayerConfig::SplineCoupling { parity, hidden, bins, bound } => {
                        LayerSpec::Spline { mask: Mask::parity(dim, *parity)?, hidden: hidden.clone(), bins: *bins, bound: *bound, seed: s }
                    }
                    LayerConfig::ActNorm => LayerSpec::ActNorm,
                    LayerConfig::LuLinear => LayerSpec::LuLinear { perm: Permutation::random_order(dim, s) },
                    LayerConfig::Permutation => LayerSpec::Permutation { perm: Permutation::random_order(dim, s) },
                    LayerConfig::Stochastic { kernel, steps, lambda, mean_free } => {
                        LayerSpec::Stochastic(StochasticConfig { kernel: *kernel, steps: *steps, lambda: *lambda, beta: 1.0, mean_free: *mean_free, seed: s })
                    }
                })
            })
            .collect()
    }
}

/// One resolved layer of a [`FlowConfig`] (see [`FlowConfig::resolve`]).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum LayerSpec {
    Affine {
        mask: Mask,
        hidden: Vec<usize>,
        scale_bound: f64,
        seed: u64,
    },
    Spline {
        mask: Mask,
        hidden: Vec<usize>,
        bins: usize,
        bound: f64,
        seed: u64,
    },
    ActNorm,
    LuLinear {
        perm: Vec<usize>,
    },
    Permutation {
        perm: Vec<usize>,
    },
    /// β is set when the block is built against its target.
    Stochastic(StochasticConfig),
}
