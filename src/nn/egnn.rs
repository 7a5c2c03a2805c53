//! The E(n)-equivariant graph network (Satorras, Hoogeboom & Welling 2021, "E(n) equivariant
//! graph neural networks", eqs. 3–6) as a time-conditioned vector field on particle systems, in
//! the form equivariant flow matching uses (Klein, Krämer & Noé 2023; Garcia Satorras et al.
//! 2021, "E(n) equivariant normalizing flows"): `v(t, x) = x^L − x^0`, centre of mass removed.
//!
//! A state is `[batch, N·d]`, particle-major (`x[b, i·d + k]` is coordinate `k` of particle
//! `i`), as [`crate::flows::Base::MeanFreeNormal`] samples. Per layer `l`, on a complete graph:
//!
//! ```text
//! m_ij   = φ_e(h_i, h_j, |x_i − x_j|²)                        (edge messages, j ≠ i)
//! x_i   ← x_i + 1/(N−1) Σ_{j≠i} (x_i − x_j)/(|x_i − x_j| + 1) · φ_x(m_ij)
//! h_i   ← h_i + φ_h(h_i, 1/(N−1) Σ_{j≠i} m_ij)
//! ```
//!
//! with `h⁰_i = W t + b` (identical particles: time is the only node feature); the last layer
//! has no node update (its features would not reach the output). `φ_e` ends in
//! SiLU, `φ_x`'s last layer starts at `coord_init_scale` (1e-3) of PyTorch's default scale (as
//! the E-NF code's xavier gain 0.001), so a fresh field is small. Distances and messages are invariant under
//! rotations, reflections and translations of `x` and equivariant under relabelling the
//! particles, so `v` is E(d)- and permutation-equivariant and translation-invariant; removing
//! its mean over particles keeps samples in the centre-of-mass-free subspace. The division by
//! `|x_i − x_j| + 1` (E-NF's `norm_diff`) keeps updates bounded when particles overlap.

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{Activation, Mlp, MlpConfig};
use crate::ode::{FieldModule, Time};
use crate::{Error, Result};

/// Architecture of an [`Egnn`] (serde, defaults: the LJ13 model of Klein et al. 2023, 5 layers
/// of width 128).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgnnConfig {
    /// Number of particles `N ≥ 2`.
    pub particles: usize,
    /// Spatial dimension `d ≥ 1`.
    pub spatial_dim: usize,
    /// Message-passing layers `L ≥ 1`.
    pub layers: usize,
    /// Width of the node features and of every hidden layer.
    pub hidden: usize,
    /// Scale of `φ_x`'s last layer at initialisation relative to PyTorch's default (1e-3: a
    /// fresh field is nearly zero, as the E-NF code's xavier gain 0.001).
    pub coord_init_scale: f64,
}

impl Default for EgnnConfig {
    fn default() -> Self {
        EgnnConfig { particles: 13, spatial_dim: 3, layers: 5, hidden: 128, coord_init_scale: 1e-3 }
    }
}

impl EgnnConfig {
    /// Check the sizes.
    ///
    /// # Errors
    /// `InvalidArgument` naming the first bad size.
    pub fn validate(&self) -> Result<()> {
        if self.particles < 2 {
            return Err(Error::invalid("particles", format!("an EGNN needs at least 2 particles, got {}", self.particles)));
        }
        if self.spatial_dim == 0 || self.layers == 0 || self.hidden == 0 {
            return Err(Error::invalid("egnn", format!("spatial_dim, layers and hidden must be ≥ 1, got {self:?}")));
        }
        if !(self.coord_init_scale.is_finite() && self.coord_init_scale >= 0.0) {
            return Err(Error::invalid("coord_init_scale", format!("need a finite scale ≥ 0, got {}", self.coord_init_scale)));
        }
        Ok(())
    }

    /// The state width `N·d`.
    pub fn dim(&self) -> usize {
        self.particles * self.spatial_dim
    }

    /// A fresh network with weights from `seed` on `device` (its default float type).
    ///
    /// # Errors
    /// As [`Self::validate`].
    pub fn init(&self, seed: u64, device: &Device) -> Result<Egnn> {
        self.validate()?;
        let h = self.hidden;
        let silu = |sizes: Vec<usize>| MlpConfig::new(sizes).with_activation(Activation::Silu);
        let seed_of = |l: usize, k: u64| seed.wrapping_mul(0x9E37_79B9).wrapping_add(16 * l as u64 + k);
        let embed = MlpConfig::new(vec![1, h]).init(seed_of(0, 0), device)?;
        let layers = (0..self.layers)
            .map(|l| -> Result<EgnnLayer> {
                let coord = silu(vec![h, h, 1]).init(seed_of(l + 1, 2), device)?;
                let mut flat = coord.flat_params();
                let last = h + 1;
                let n = flat.len();
                flat[n - last..].iter_mut().for_each(|v| *v *= self.coord_init_scale);
                Ok(EgnnLayer {
                    edge: silu(vec![2 * h + 1, h, h]).init(seed_of(l + 1, 1), device)?,
                    coord: coord.with_flat_params(&flat)?,
                    // The last layer's features would not reach the output: no node update.
                    node: if l + 1 < self.layers { Some(silu(vec![2 * h, h, h]).init(seed_of(l + 1, 3), device)?) } else { None },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Egnn { embed, layers, particles: self.particles, spatial_dim: self.spatial_dim, hidden: h, coord_init_scale: self.coord_init_scale })
    }
}

/// One message-passing layer: the edge, coordinate and node networks.
#[derive(Module, Debug)]
pub struct EgnnLayer {
    edge: Mlp,
    coord: Mlp,
    node: Option<Mlp>,
}

/// The EGNN vector field `v(t, x)` on `[batch, N·d]` (module docs).
#[derive(Module, Debug)]
pub struct Egnn {
    embed: Mlp,
    layers: Vec<EgnnLayer>,
    #[module(skip)]
    particles: usize,
    #[module(skip)]
    spatial_dim: usize,
    #[module(skip)]
    hidden: usize,
    #[module(skip)]
    coord_init_scale: f64,
}

impl Egnn {
    /// The architecture.
    pub fn config(&self) -> EgnnConfig {
        EgnnConfig {
            particles: self.particles,
            spatial_dim: self.spatial_dim,
            layers: self.layers.len(),
            hidden: self.hidden,
            coord_init_scale: self.coord_init_scale,
        }
    }

    /// The device of the parameters.
    pub fn device(&self) -> Device {
        self.embed.layers[0].weight.val().device()
    }

    /// The float type of the parameters.
    pub fn dtype(&self) -> burn::tensor::DType {
        self.embed.layers[0].weight.val().dtype()
    }

    /// `v(t, x)` for `x: [batch, N·d]` → `[batch, N·d]`, mean-free over particles.
    ///
    /// # Errors
    /// `Shape` when the width is not `N·d`.
    pub fn velocity(&self, t: &Time, x: Tensor<2>) -> Result<Tensor<2>> {
        let [b, w] = x.dims();
        let (n, d, h) = (self.particles, self.spatial_dim, self.hidden);
        if w != n * d {
            return Err(Error::Shape { what: format!("EGNN input ({n} particles × {d} dims)"), expected: vec![b, n * d], got: vec![b, w] });
        }
        let device = x.device();
        let x0 = x.clone().reshape([b, n, d]);
        let mut pos = x0.clone();
        // Off-diagonal mask [1, N, N, 1]: no self-messages.
        let off: Vec<f64> = (0..n * n).map(|k| if k / n == k % n { 0.0 } else { 1.0 }).collect();
        let mask = Tensor::<4>::from_data(TensorData::new(off, [1, n, n, 1]), (&device, x.dtype()));
        let diag = mask.clone().neg().add_scalar(1.0);
        let inv_deg = 1.0 / (n - 1) as f64;
        let mut feat = self.embed.forward_t(&Time::Shared(0.0), t.column(b, &device, &x)).reshape([b, 1, h]).expand([b, n, h]);
        for layer in &self.layers {
            let diff = pos.clone().unsqueeze_dim::<4>(2) - pos.clone().unsqueeze_dim::<4>(1); // x_i − x_j, [B, N, N, d]
            let r2 = diff.clone().square().sum_dim(3); // [B, N, N, 1]
            let hi = feat.clone().unsqueeze_dim::<4>(2).expand([b, n, n, h]);
            let hj = feat.clone().unsqueeze_dim::<4>(1).expand([b, n, n, h]);
            let e_in = Tensor::cat(vec![hi, hj, r2.clone()], 3).reshape([b * n * n, 2 * h + 1]);
            let m = silu(layer.edge.forward_t(&Time::Shared(0.0), e_in)).reshape([b, n, n, h]) * mask.clone();
            let wx = layer.coord.forward_t(&Time::Shared(0.0), m.clone().reshape([b * n * n, h])).reshape([b, n, n, 1]);
            // |x_i − x_i| = 0 on the diagonal: 1 is added there inside the square root, so its
            // derivative stays finite (the diagonal is masked out anyway).
            let dist = (r2 + diag.clone()).sqrt();
            let step = (diff / (dist.add_scalar(1.0)) * wx * mask.clone()).sum_dim(2).reshape([b, n, d]).mul_scalar(inv_deg);
            pos = pos + step;
            if let Some(node) = &layer.node {
                let agg = m.sum_dim(2).reshape([b, n, h]).mul_scalar(inv_deg);
                let upd = node.forward_t(&Time::Shared(0.0), Tensor::cat(vec![feat.clone(), agg], 2).reshape([b * n, 2 * h])).reshape([b, n, h]);
                feat = feat + upd;
            }
        }
        let v = pos - x0;
        let v = v.clone() - v.mean_dim(1);
        Ok(v.reshape([b, n * d]))
    }
}

impl FieldModule<2> for Egnn {
    /// [`Egnn::velocity`].
    ///
    /// # Panics
    /// On a state of the wrong width (solvers check widths before they call a field).
    fn forward(&self, t: &Time, y: Tensor<2>) -> Tensor<2> {
        self.velocity(t, y).unwrap_or_else(|e| panic!("{e}"))
    }
}
