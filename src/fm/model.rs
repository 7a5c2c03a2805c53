//! The learned network of flow matching and its views as vector fields: velocity `b(t, x)`,
//! score `s(t, x) = ∇ log ρ_t(x)` or denoiser `η(t, x) = E[ε | x_t = x]`, optionally conditioned
//! on a vector `c` (class one-hot, parameters) with classifier-free guidance.

use std::cell::RefCell;

use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::path::{Interpolant, Path};
use crate::host::ToHost;
use crate::nn::fused::{FusedMlp, MlpCache, TimeArg};
use crate::ode::{Time, VectorField};
use crate::{Error, Result};

/// What the network is trained to predict (Albergo et al. 2023, §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// The velocity `b(t, x) = E[∂ₜx_t | x_t = x]` (flow matching): loss `|b_θ − ∂ₜx_t|²`.
    #[default]
    Velocity,
    /// The score `s(t, x)`: loss `|σ_t s_θ + ε|²` (denoising score matching weighted by the
    /// noise variance `σ_t²`, Song et al. 2021).
    Score,
    /// The denoiser `η(t, x) = E[ε | x_t = x]` of the Gaussian part: loss `|η_θ − ε|²`; the
    /// score is `−η/σ_t`.
    Denoiser,
}

/// Where the base samples `x₀` come from, which decides the Gaussian part of `x_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseKind {
    /// `x₀ ~ N(0, I)`: the Gaussian part of `x_t` is `α x₀ + γ z`.
    Gaussian,
    /// `x₀` from data: the Gaussian part is `γ z` only.
    Data,
}

/// The Gaussian part of `x_t` as `σ_t ε` with `ε ~ N(0, I)`: `σ_t = √(γ² + α²)` for a Gaussian
/// base, `σ_t = γ` otherwise. Returns `σ_t`.
pub fn noise_scale(path: &dyn Interpolant, base: BaseKind, t: f64) -> f64 {
    let c = path.coefficients(t);
    match base {
        BaseKind::Gaussian => (c.gamma * c.gamma + c.alpha * c.alpha).sqrt(),
        BaseKind::Data => c.gamma.abs(),
    }
}

/// Architecture of the network: `[x, c, t] → hidden… → dim`, tanh (the fused CPU kernels of
/// [`crate::nn::fused`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Hidden widths.
    pub hidden: Vec<usize>,
}

impl Default for NetConfig {
    /// torchcfm's 2D benchmark size: three hidden layers of 256.
    fn default() -> Self {
        Self { hidden: vec![256, 256, 256] }
    }
}

/// A trained flow-matching network with what it needs to be read: the state and condition
/// widths, the path, the base and the objective.
#[derive(Clone, Debug)]
pub struct FmModel {
    /// State width `d`.
    pub dim: usize,
    /// Condition width (0: unconditional).
    pub cond_dim: usize,
    /// The path it was trained on.
    pub path: Path,
    /// The base of the path.
    pub base: BaseKind,
    /// What it predicts.
    pub objective: Objective,
    pub(crate) net: FusedMlp<f32>,
}

impl FmModel {
    /// A fresh network with PyTorch's default `nn.Linear` initialisation
    /// (`U(−1/√fan_in, 1/√fan_in)`) from `seed`.
    pub fn new(dim: usize, cond_dim: usize, net: &NetConfig, path: Path, base: BaseKind, objective: Objective, seed: u64) -> Self {
        use rand::{RngExt, SeedableRng};
        let mut sizes = vec![dim + cond_dim + 1];
        sizes.extend(&net.hidden);
        sizes.push(dim);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut params = Vec::with_capacity(FusedMlp::<f32>::param_count(&sizes));
        for l in 0..sizes.len() - 1 {
            let bound = 1.0 / (sizes[l] as f32).sqrt();
            for _ in 0..sizes[l] * sizes[l + 1] + sizes[l + 1] {
                params.push(rng.random_range(-bound..bound));
            }
        }
        Self { dim, cond_dim, path, base, objective, net: FusedMlp::new(sizes, true, params) }
    }

    /// The flat parameters (layout of [`crate::nn::fused`]).
    pub fn params(&self) -> &[f32] {
        self.net.params()
    }

    /// Replace the parameters.
    ///
    /// # Errors
    /// `Shape` for a wrong count.
    pub fn set_params(&mut self, params: &[f32]) -> Result<()> {
        if params.len() != self.net.num_params() {
            return Err(Error::Shape { what: "flow-matching network parameters".into(), expected: vec![self.net.num_params()], got: vec![params.len()] });
        }
        self.net.set_params(params);
        Ok(())
    }

    /// Layer widths including the time column.
    pub fn sizes(&self) -> &[usize] {
        self.net.sizes()
    }

    /// Raw network output `[batch, dim]` at per-sample or shared times for states
    /// `x: [batch, dim]` and conditions `c: [batch, cond_dim]` (zeros = the null condition of
    /// classifier-free guidance).
    pub fn predict(&self, t: TimeArg<f32>, x: &[f32], cond: Option<&[f32]>, batch: usize, out: &mut [f32]) {
        let input = self.pack(x, cond, batch);
        self.net.forward(t, &input, batch, out);
    }

    /// `[x, c]` rows as the network's input.
    pub(crate) fn pack<'a>(&self, x: &'a [f32], cond: Option<&[f32]>, batch: usize) -> std::borrow::Cow<'a, [f32]> {
        if self.cond_dim == 0 {
            return std::borrow::Cow::Borrowed(x);
        }
        let (d, c) = (self.dim, self.cond_dim);
        let mut input = vec![0.0f32; batch * (d + c)];
        for i in 0..batch {
            input[i * (d + c)..i * (d + c) + d].copy_from_slice(&x[i * d..(i + 1) * d]);
            if let Some(cond) = cond {
                input[i * (d + c) + d..(i + 1) * (d + c)].copy_from_slice(&cond[i * c..(i + 1) * c]);
            }
        }
        std::borrow::Cow::Owned(input)
    }

    /// The model as a vector field for [`crate::ode::solve`]: its velocity (objective
    /// [`Objective::Velocity`]) or its score (the other two), unconditional.
    pub fn field(&self) -> ModelField<'_> {
        ModelField { model: self, cond: None, guidance: 1.0 }
    }

    /// The field at condition `cond` (one row `[cond_dim]` for every sample, or
    /// `[batch, cond_dim]`) with classifier-free guidance weight `w`:
    /// `f = f(x, ∅) + w (f(x, c) − f(x, ∅))` (Ho & Salimans 2022; `w = 1` is the plain
    /// conditional model, `w = 0` the unconditional one).
    ///
    /// # Errors
    /// `Shape` if the condition width is not `cond_dim`.
    pub fn conditional_field(&self, cond: Vec<f32>, guidance: f64) -> Result<ModelField<'_>> {
        if self.cond_dim == 0 || cond.is_empty() || cond.len() % self.cond_dim != 0 {
            return Err(Error::Shape { what: "condition".into(), expected: vec![self.cond_dim], got: vec![cond.len()] });
        }
        Ok(ModelField { model: self, cond: Some(cond), guidance })
    }
}

/// An [`FmModel`] as a [`VectorField`] on `[batch, dim]` (f32 network, any tensor dtype).
/// For a score or denoiser model the field is the score `s(t, x)`.
pub struct ModelField<'a> {
    model: &'a FmModel,
    cond: Option<Vec<f32>>,
    guidance: f64,
}

impl ModelField<'_> {
    /// Conditions for `batch` samples: a shared row repeated, or one row each.
    fn cond_rows(&self, batch: usize) -> Option<Vec<f32>> {
        let c = self.model.cond_dim;
        self.cond.as_ref().map(|cond| {
            if cond.len() == c {
                cond.repeat(batch)
            } else {
                assert_eq!(cond.len(), batch * c, "ModelField: {} condition values for a batch of {batch}", cond.len());
                cond.clone()
            }
        })
    }

    /// The factor that turns the network's raw output into the field: `−1/σ_t` for a denoiser
    /// (`s = −η/σ_t`), 1 otherwise.
    fn out_scale(&self, t: f64) -> f64 {
        match self.model.objective {
            Objective::Velocity | Objective::Score => 1.0,
            Objective::Denoiser => -1.0 / noise_scale(&self.model.path, self.model.base, t),
        }
    }

    /// The evaluations that make up the field, `(weight, condition)`: one, or two with guidance.
    fn terms(&self, batch: usize) -> Vec<(f32, Option<Vec<f32>>)> {
        match self.cond_rows(batch) {
            None => vec![(1.0, None)],
            Some(c) if self.guidance == 1.0 => vec![(1.0, Some(c))],
            Some(c) => vec![(1.0 - self.guidance as f32, None), (self.guidance as f32, Some(c))],
        }
    }

    fn times(t: &Time, batch: usize) -> Vec<f32> {
        (0..batch).map(|i| t.of(i) as f32).collect()
    }
}

/// What [`ModelField::eval_saving`] keeps: per guidance term its weight and the forward
/// state of the network, so that the VJPs at this point (`d` of them for an exact divergence)
/// do not rerun the forward pass.
pub struct ModelSaved {
    /// Per-sample output scale (`−1/σ_t` for a denoiser, else 1).
    scale: Vec<f32>,
    /// `(weight, forward state)` per guidance term.
    terms: Vec<(f32, RefCell<MlpCache<f32>>)>,
    batch: usize,
    device: burn::tensor::Device,
    dtype: burn::tensor::DType,
}

impl ModelField<'_> {
    /// The field at `(t, y)` as host values, with the forward states for its VJPs.
    fn forward(&self, t: &Time, y: &Tensor<2>) -> (Vec<f32>, ModelSaved) {
        let [b, d] = y.dims();
        assert_eq!(d, self.model.dim, "ModelField: state width {d}, model width {}", self.model.dim);
        let x: Vec<f32> = y.to_vec_as::<f32>();
        let ts = Self::times(t, b);
        let scale: Vec<f32> = (0..b).map(|i| self.out_scale(t.of(i)) as f32).collect();
        let mut acc = vec![0.0f32; b * d];
        let mut out = vec![0.0f32; b * d];
        let mut terms = Vec::new();
        for (w, cond) in self.terms(b) {
            let input = self.model.pack(&x, cond.as_deref(), b);
            let mut cache = MlpCache::new();
            self.model.net.forward_cached(TimeArg::PerSample(&ts), &input, b, &mut out, &mut cache);
            acc.iter_mut().zip(&out).for_each(|(a, o)| *a += w * o);
            terms.push((w, RefCell::new(cache)));
        }
        for (row, s) in acc.chunks_mut(d).zip(&scale) {
            row.iter_mut().for_each(|v| *v *= s);
        }
        (acc, ModelSaved { scale, terms, batch: b, device: y.device(), dtype: y.dtype() })
    }
}

impl VectorField<2> for ModelField<'_> {
    type Params = ();
    type Saved = ModelSaved;

    /// Without VJP state: the network's own scratch buffers, no allocation per call (the ODE
    /// sampler's hot path).
    fn eval(&self, t: &Time, y: &Tensor<2>) -> Tensor<2> {
        let [b, d] = y.dims();
        assert_eq!(d, self.model.dim, "ModelField: state width {d}, model width {}", self.model.dim);
        let x: Vec<f32> = y.to_vec_as::<f32>();
        let ts = Self::times(t, b);
        let mut acc = vec![0.0f32; b * d];
        let mut out = vec![0.0f32; b * d];
        for (w, cond) in self.terms(b) {
            self.model.predict(TimeArg::PerSample(&ts), &x, cond.as_deref(), b, &mut out);
            acc.iter_mut().zip(&out).for_each(|(a, o)| *a += w * o);
        }
        if self.model.objective == Objective::Denoiser {
            for (i, row) in acc.chunks_mut(d).enumerate() {
                let s = self.out_scale(t.of(i)) as f32;
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        Tensor::<2>::from_data(TensorData::new(acc, [b, d]), (&y.device(), y.dtype()))
    }

    fn eval_saving(&self, t: &Time, y: &Tensor<2>) -> (Tensor<2>, ModelSaved) {
        let (acc, saved) = self.forward(t, y);
        let shape = [saved.batch, self.model.dim];
        (Tensor::<2>::from_data(TensorData::new(acc, shape), (&saved.device, saved.dtype)), saved)
    }

    /// `aᵀ ∂f/∂x` by the fused network's VJP at the saved forward states (the condition and
    /// time columns dropped).
    fn vjp_saved(&self, saved: &ModelSaved, a: &Tensor<2>, _params: Option<(&mut (), f64)>) -> Tensor<2> {
        let (b, d) = (saved.batch, self.model.dim);
        let mut a_host: Vec<f32> = a.to_vec_as::<f32>();
        for (row, s) in a_host.chunks_mut(d).zip(&saved.scale) {
            row.iter_mut().for_each(|v| *v *= s);
        }
        let width = d + self.model.cond_dim;
        let mut acc = vec![0.0f32; b * d];
        let mut x_bar = vec![0.0f32; b * width];
        // The fused VJP always accumulates the parameter cotangent; it is discarded here.
        let mut p_bar = vec![0.0f32; self.model.net.num_params()];
        for (w, cache) in &saved.terms {
            self.model.net.vjp(&mut cache.borrow_mut(), &a_host, &mut x_bar, &mut p_bar, None);
            for (acc_row, xb_row) in acc.chunks_mut(d).zip(x_bar.chunks(width)) {
                acc_row.iter_mut().zip(xb_row).for_each(|(s, v)| *s += w * v);
            }
        }
        Tensor::<2>::from_data(TensorData::new(acc, [b, d]), (&saved.device, saved.dtype))
    }

    fn zero_params(&self) {}
}
