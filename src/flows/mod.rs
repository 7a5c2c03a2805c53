//! Normalizing flows: invertible maps `x = f(z)` with a tractable `log|det ∂x/∂z|`, so that a
//! base density `ρ(z)` is pushed to `q(x) = ρ(f⁻¹(x)) |det ∂f⁻¹/∂x|` (Rezende & Mohamed 2015;
//! Papamakarios et al. 2021, "Normalizing flows for probabilistic modeling and inference").
//!
//! * [`Flow`]: `forward(z) → (x, log|det ∂x/∂z|)`, `inverse(x) → (z, log|det ∂z/∂x|)` on
//!   batches `[batch, dim]`, and the vector–Jacobian products of both directions (for training
//!   by energy through `forward` and by data through `inverse`).
//! * Layers: [`AffineCoupling`] (RealNVP with a bounded scale), [`SplineCoupling`]
//!   (rational-quadratic splines with linear tails), [`ActNorm`], [`Permutation`],
//!   [`LuLinear`], composed by [`Sequential`] (built from a serde [`FlowConfig`]).
//! * [`ContinuousFlow`]: a continuous normalizing flow over [`crate::ode`], log-determinant by
//!   the exact trace or Hutchinson's estimator (trained by flow matching, [`crate::fm`]).
//! * [`Base`]: the standard normal, and the mean-free normal for particle systems.
//! * [`StochasticBlock`]: Metropolis / Langevin steps toward an interpolated target, with their
//!   path weight in place of the log-determinant (stochastic normalizing flows, Wu et al. 2020).
//!
//! Everything is f64 on the CPU: coupling conditioners run on the fused MLP
//! ([`crate::nn::fused`]), and the VJPs are written out by hand for each layer (tested against
//! finite differences), so a training step costs about two forward passes.
//!
//! ```
//! use physflow::flows::{Flow, FlowConfig};
//! let flow = FlowConfig::real_nvp(4, vec![16, 16]).build(2, 0).unwrap();
//! let z = ndarray::array![[0.3, -1.2], [2.0, 0.5]];
//! let (x, ld) = flow.forward(z.view()).unwrap();
//! let (z2, ld_inv) = flow.inverse(x.view()).unwrap();
//! assert!((&z2 - &z).iter().all(|e| e.abs() < 1e-12));
//! assert!((&ld + &ld_inv).iter().all(|e| e.abs() < 1e-12));
//! ```

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::{Error, Result};

pub mod base;
pub mod continuous;
pub mod coupling;
pub mod linear;
pub mod module;
pub mod sequential;
pub mod spline;
pub mod stochastic;

pub use base::Base;
pub use continuous::ContinuousFlow;
pub use coupling::{AffineCoupling, Mask, SplineCoupling};
pub use linear::{ActNorm, LuLinear, Permutation};
pub use module::FlowModule;
pub use sequential::{FlowConfig, LayerConfig, Sequential};
pub use stochastic::{Kernel, StochasticBlock, StochasticConfig};

/// An invertible map `x = f(z)` on `ℝ^dim` with its log-Jacobian-determinant.
///
/// Conventions: `z` is the base side, `x` the data (target) side; every method works on a batch
/// of rows `[batch, dim]` and returns one log-determinant per row `[batch]`.
pub trait Flow: Send + Sync {
    /// The dimension `dim` of `z` and `x`.
    fn dim(&self) -> usize;

    /// A short description for reports (`"affine_coupling(parity 0, [64, 64])"`).
    fn name(&self) -> String;

    /// Number of trainable parameters.
    fn num_params(&self) -> usize {
        0
    }

    /// The flat parameter vector `[num_params]`.
    fn params(&self) -> Vec<f64> {
        Vec::new()
    }

    /// Replace the parameters.
    ///
    /// # Errors
    /// `Shape` if `params.len() != self.num_params()` (nothing is changed then).
    fn set_params(&mut self, params: &[f64]) -> Result<()> {
        check_params(&self.name(), params, 0)
    }

    /// Data-dependent initialisation from samples of this layer's *output* `x: [n, dim]`
    /// (ActNorm standardises them); a no-op for other layers.
    fn data_init(&mut self, _x: ArrayView2<f64>) -> Result<()> {
        Ok(())
    }

    /// `x = f(z)` and `log|det ∂x/∂z|` for `z: [batch, dim]`.
    fn forward(&self, z: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)>;

    /// `z = f⁻¹(x)` and `log|det ∂z/∂x|` for `x: [batch, dim]`.
    fn inverse(&self, x: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)>;

    /// Reverse mode through [`Self::forward`] at `z: [batch, dim]`: given cotangents
    /// `x_bar: [batch, dim]` of `x` and `ld_bar: [batch]` of the log-determinant, returns
    /// `z_bar: [batch, dim]` and ACCUMULATES (`+=`) the parameter cotangent into
    /// `param_bar: [num_params]`.
    fn forward_vjp(&self, z: ArrayView2<f64>, x_bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &mut [f64]) -> Result<Array2<f64>>;

    /// Reverse mode through [`Self::inverse`] at `x: [batch, dim]`: given `z_bar` and `ld_bar`,
    /// returns `x_bar` and accumulates into `param_bar`.
    fn inverse_vjp(&self, x: ArrayView2<f64>, z_bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &mut [f64]) -> Result<Array2<f64>>;
}

/// Checks the width of a batch and that it is finite.
pub(crate) fn check_input(what: &'static str, x: ArrayView2<f64>, dim: usize) -> Result<()> {
    if x.ncols() != dim {
        return Err(Error::Shape { what: what.into(), expected: vec![x.nrows(), dim], got: vec![x.nrows(), x.ncols()] });
    }
    if let Some(row) = x.rows().into_iter().position(|r| r.iter().any(|v| !v.is_finite())) {
        return Err(Error::NonFiniteInput { what, index: row });
    }
    Ok(())
}

/// Checks the length of a parameter vector given to `layer`.
pub(crate) fn check_params(layer: &str, params: &[f64], n: usize) -> Result<()> {
    if params.len() != n {
        return Err(Error::Shape { what: format!("parameters of {layer}"), expected: vec![n], got: vec![params.len()] });
    }
    Ok(())
}

/// Checks cotangent shapes against the primal batch.
pub(crate) fn check_cotangents(x: ArrayView2<f64>, bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &[f64], n_params: usize) -> Result<()> {
    if bar.dim() != x.dim() {
        return Err(Error::Shape { what: "flow cotangent".into(), expected: vec![x.nrows(), x.ncols()], got: vec![bar.nrows(), bar.ncols()] });
    }
    if ld_bar.len() != x.nrows() {
        return Err(Error::Shape { what: "log-determinant cotangent".into(), expected: vec![x.nrows()], got: vec![ld_bar.len()] });
    }
    if param_bar.len() != n_params {
        return Err(Error::Shape { what: "parameter cotangent".into(), expected: vec![n_params], got: vec![param_bar.len()] });
    }
    Ok(())
}

/// One registered list of every layer kind, built for dimension `dim` with non-trivial
/// parameters (random, from `seed`), that the tests iterate over: a new layer is tested the
/// moment it is added here.
///
/// # Errors
/// `InvalidArgument` for `dim < 2` (the couplings need two sides).
pub fn registered_layers(dim: usize, seed: u64) -> Result<Vec<Box<dyn Flow>>> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut layers: Vec<Box<dyn Flow>> = vec![
        Box::new(AffineCoupling::new(Mask::parity(dim, 0)?, &[16, 16], 3.0, seed)?),
        Box::new(AffineCoupling::new(Mask::parity(dim, 1)?, &[8], 1.5, seed + 1)?),
        Box::new(SplineCoupling::new(Mask::parity(dim, 0)?, &[16, 16], 6, 3.0, seed + 2)?),
        Box::new(SplineCoupling::new(Mask::parity(dim, 1)?, &[8], 4, 1.0, seed + 3)?),
        Box::new(ActNorm::new(dim)),
        Box::new(Permutation::random(dim, seed + 4)),
        Box::new(LuLinear::new(dim, seed + 5)),
    ];
    for layer in &mut layers {
        // Random parameters of size ~0.5 (so couplings are far from the identity; the spline's
        // bound of 1 puts some inputs on the tails).
        let p: Vec<f64> = (0..layer.num_params()).map(|_| rng.random_range(-0.6..0.6)).collect();
        layer.set_params(&p)?;
    }
    let seq = FlowConfig::neural_spline(2, vec![8], 5, 2.0).build(dim, seed + 6)?;
    let mut seq: Box<dyn Flow> = Box::new(seq);
    let p: Vec<f64> = (0..seq.num_params()).map(|_| rng.random_range(-0.4..0.4)).collect();
    seq.set_params(&p)?;
    layers.push(seq);
    Ok(layers)
}
