//! The learned network of flow matching and its views as vector fields: velocity `b(t, x)`,
//! score `s(t, x) = ∇ log ρ_t(x)` or denoiser `η(t, x) = E[ε | x_t = x]`, optionally conditioned
//! on a vector `c` (class one-hot, parameters) with classifier-free guidance.

use std::cell::RefCell;

use burn::module::Module;
use burn::tensor::{DType, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::path::{Interpolant, ProbabilityPath};
use crate::host::ToHost;
use crate::nn::fused::{FusedMlp, MlpCache, TimeArg};
use crate::nn::{Activation, Mlp, MlpConfig};
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

/// Architecture of the network: `[x, c, t] → hidden… → dim`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// The hidden layers' nonlinearity; tanh networks run on the fused CPU kernels on the
    /// CPU device.
    #[serde(default = "default_activation")]
    pub activation: Activation,
}

fn default_activation() -> Activation {
    Activation::Tanh
}

impl Default for NetConfig {
    /// torchcfm's 2D benchmark size: three hidden layers of 256, tanh.
    fn default() -> Self {
        Self { hidden: vec![256, 256, 256], activation: Activation::Tanh }
    }
}

impl NetConfig {
    /// Hidden widths with tanh.
    pub fn tanh(hidden: Vec<usize>) -> Self {
        Self { hidden, activation: Activation::Tanh }
    }

    /// The MLP `[x (dim), c (cond_dim), t] → hidden… → dim`.
    pub fn mlp(&self, dim: usize, cond_dim: usize) -> MlpConfig {
        let mut sizes = vec![dim + cond_dim];
        sizes.extend(&self.hidden);
        sizes.push(dim);
        MlpConfig { sizes, time_input: true, activation: self.activation }
    }
}

/// A flow-matching network with what it needs to be read: the state and condition widths,
/// the path, the base and the objective.
///
/// The network is a burn [`Mlp`] on the device it was made or trained on; on the CPU device a
/// tanh network is also held in the fused kernels' layout ([`crate::nn::fused`]), which
/// evaluate it (same numbers to f32 round-off, several times faster).
#[derive(Clone, Debug)]
pub struct FmModel {
    /// State width `d`.
    pub dim: usize,
    /// Condition width (0: unconditional).
    pub cond_dim: usize,
    /// The path it was trained on.
    pub path: ProbabilityPath,
    /// The base of the path.
    pub base: BaseKind,
    /// What it predicts.
    pub objective: Objective,
    /// The architecture.
    pub net_config: NetConfig,
    /// The burn network, made from the fused copy on first use when the model was built on
    /// the CPU (so that CPU work creates no burn tensors it does not need).
    mlp: std::sync::OnceLock<Mlp>,
    device: Device,
    /// The fused copy (CPU device, tanh).
    pub(crate) net: Option<FusedMlp<f32>>,
}

impl FmModel {
    /// A fresh network on the CPU with PyTorch's default `nn.Linear` initialisation
    /// (`U(−1/√fan_in, 1/√fan_in)`) from `seed`.
    ///
    /// # Errors
    /// `InvalidArgument` for zero widths.
    pub fn new(dim: usize, cond_dim: usize, net: &NetConfig, path: ProbabilityPath, base: BaseKind, objective: Objective, seed: u64) -> Result<Self> {
        Self::new_on(dim, cond_dim, net, path, base, objective, seed, &Device::flex())
    }

    /// A fresh network on `device` (f32): the same parameters as [`FmModel::new`] for the
    /// same seed, whatever the device.
    ///
    /// # Errors
    /// `InvalidArgument` for zero widths.
    #[allow(clippy::too_many_arguments)]
    pub fn new_on(
        dim: usize,
        cond_dim: usize,
        net: &NetConfig,
        path: ProbabilityPath,
        base: BaseKind,
        objective: Objective,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        use rand::{RngExt, SeedableRng};
        let cfg = net.mlp(dim, cond_dim);
        cfg.validate()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut params = Vec::with_capacity(cfg.num_params());
        for l in 0..cfg.sizes.len() - 1 {
            let fan_in = cfg.sizes[l] + usize::from(l == 0);
            let bound = 1.0 / (fan_in as f32).sqrt();
            for _ in 0..fan_in * cfg.sizes[l + 1] + cfg.sizes[l + 1] {
                params.push(rng.random_range(-bound..bound));
            }
        }
        Self::from_params(dim, cond_dim, net, path, base, objective, &params, device)
    }

    /// A model with the given flat parameters (layout of [`crate::nn::fused`]) on `device`.
    ///
    /// # Errors
    /// `Shape` for a wrong count, `InvalidArgument` for zero widths.
    #[allow(clippy::too_many_arguments)]
    pub fn from_params(
        dim: usize,
        cond_dim: usize,
        net: &NetConfig,
        path: ProbabilityPath,
        base: BaseKind,
        objective: Objective,
        params: &[f32],
        device: &Device,
    ) -> Result<Self> {
        let cfg = net.mlp(dim, cond_dim);
        cfg.validate()?;
        if device.clone().without_autodiff() == Device::flex() && net.activation == Activation::Tanh {
            if params.len() != cfg.num_params() {
                return Err(Error::Shape { what: "flow-matching network parameters".into(), expected: vec![cfg.num_params()], got: vec![params.len()] });
            }
            let mut sizes = cfg.sizes.clone();
            sizes[0] += 1;
            let fused = FusedMlp::new(sizes, true, params.to_vec());
            return Ok(Self {
                dim,
                cond_dim,
                path,
                base,
                objective,
                net_config: net.clone(),
                mlp: std::sync::OnceLock::new(),
                device: Device::flex(),
                net: Some(fused),
            });
        }
        let mlp = cfg.from_flat(params, device, DType::F32)?;
        Ok(Self::from_mlp(dim, cond_dim, net, path, base, objective, mlp))
    }

    /// A model around a burn network (`[dim + cond_dim + 1] → … → [dim]`, time last).
    pub(crate) fn from_mlp(dim: usize, cond_dim: usize, net: &NetConfig, path: ProbabilityPath, base: BaseKind, objective: Objective, mlp: Mlp) -> Self {
        let mlp = mlp.valid();
        let fused = mlp.fusable().then(|| {
            let mut sizes = mlp.sizes();
            sizes[0] += 1;
            FusedMlp::new(sizes, true, mlp.flat_params().into_iter().map(|v| v as f32).collect())
        });
        let device = mlp.layers[0].weight.val().device().without_autodiff();
        Self { dim, cond_dim, path, base, objective, net_config: net.clone(), mlp: std::sync::OnceLock::from(mlp), device, net: fused }
    }

    /// The same model on `device`.
    ///
    /// # Errors
    /// [`Error::Device`] when the parameters cannot be read back.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        Self::from_params(self.dim, self.cond_dim, &self.net_config, self.path, self.base, self.objective, &self.params()?, device)
    }

    /// The burn network (`[x, c, t] → … → [dim]`), on [`FmModel::device`].
    pub fn mlp(&self) -> &Mlp {
        self.mlp.get_or_init(|| {
            let net = self.net.as_ref().expect("a model without a burn network has the fused copy");
            self.net_config
                .mlp(self.dim, self.cond_dim)
                .from_flat(net.params(), &self.device, DType::F32)
                .expect("the fused copy has the network's parameter count")
        })
    }

    /// The device the network is on.
    pub fn device(&self) -> Device {
        self.device.clone()
    }

    /// The flat parameters (layout of [`crate::nn::fused`]), as f32.
    ///
    /// # Errors
    /// [`Error::Device`] when they cannot be read back from the device.
    pub fn params(&self) -> Result<Vec<f32>> {
        match &self.net {
            Some(net) => Ok(net.params().to_vec()),
            None => {
                let mut out = Vec::new();
                for layer in &self.mlp().layers {
                    out.extend(layer.weight.val().host_vec::<f32>()?);
                    if let Some(b) = &layer.bias {
                        out.extend(b.val().host_vec::<f32>()?);
                    }
                }
                Ok(out)
            }
        }
    }

    /// Replace the parameters.
    ///
    /// # Errors
    /// `Shape` for a wrong count.
    pub fn set_params(&mut self, params: &[f32]) -> Result<()> {
        *self = Self::from_params(self.dim, self.cond_dim, &self.net_config, self.path, self.base, self.objective, params, &self.device())?;
        Ok(())
    }

    /// Layer widths including the time column.
    pub fn sizes(&self) -> Vec<usize> {
        let mut s = self.net_config.mlp(self.dim, self.cond_dim).sizes;
        s[0] += 1;
        s
    }

    /// Raw network output `[batch, dim]` at per-sample or shared times for states
    /// `x: [batch, dim]` and conditions `c: [batch, cond_dim]` (zeros = the null condition of
    /// classifier-free guidance), on the host.
    pub fn predict(&self, t: TimeArg<f32>, x: &[f32], cond: Option<&[f32]>, batch: usize, out: &mut [f32]) {
        let input = self.pack(x, cond, batch);
        match &self.net {
            Some(net) => net.forward_par(t, &input, batch, out),
            None => {
                let device = self.device();
                let width = self.dim + self.cond_dim;
                let times = match t {
                    TimeArg::Shared(v) => Time::Shared(v as f64),
                    TimeArg::PerSample(ts) => Time::PerSample(ts.iter().map(|v| *v as f64).collect()),
                    TimeArg::None => Time::Shared(0.0),
                };
                let xt = Tensor::<2>::from_data(TensorData::new(input.to_vec(), [batch, width]), (&device, DType::F32));
                out.copy_from_slice(&self.mlp().forward_t(&times, xt).to_vec_as::<f32>());
            }
        }
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
        ModelField { model: self, cond: None, guidance: 1.0, ad: self.autodiff_twin() }
    }

    /// The field at condition `cond` (one row `[cond_dim]` for every sample, or
    /// `[batch, cond_dim]`) with classifier-free guidance weight `w`:
    /// `f = f(x, ∅) + w (f(x, c) − f(x, ∅))` (Ho & Salimans 2022; `w = 1` is the plain
    /// conditional model, `w = 0` the unconditional one).
    ///
    /// # Errors
    /// `Shape` if the condition width is not `cond_dim`.
    pub fn conditional_field(&self, cond: Vec<f32>, guidance: f64) -> Result<ModelField<'_>> {
        if self.cond_dim == 0 || cond.is_empty() || !cond.len().is_multiple_of(self.cond_dim) {
            return Err(Error::Shape { what: "condition".into(), expected: vec![self.cond_dim], got: vec![cond.len()] });
        }
        Ok(ModelField { model: self, cond: Some(cond), guidance, ad: self.autodiff_twin() })
    }

    /// The network with autodiff parameters, for VJPs off the fused path.
    fn autodiff_twin(&self) -> Option<Mlp> {
        self.net.is_none().then(|| self.mlp().clone().fork(&self.device().autodiff()))
    }
}

/// An [`FmModel`] as a [`VectorField`] on `[batch, dim]` (f32 network, any tensor dtype).
/// For a score or denoiser model the field is the score `s(t, x)`.
pub struct ModelField<'a> {
    model: &'a FmModel,
    cond: Option<Vec<f32>>,
    guidance: f64,
    /// The burn path's network with autodiff parameters (`None` on the fused path).
    ad: Option<Mlp>,
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

/// What [`ModelField::eval_saving`] keeps: on the fused path, per guidance term its weight
/// and the forward state of the network, so that the VJPs at this point (`d` of them for an
/// exact divergence) do not rerun the forward pass; on the burn path, the point.
pub enum ModelSaved {
    /// Fused CPU kernels.
    Fused {
        /// Per-sample output scale (`−1/σ_t` for a denoiser, else 1).
        scale: Vec<f32>,
        /// `(weight, forward state)` per guidance term.
        terms: Vec<(f32, RefCell<MlpCache<f32>>)>,
        /// Batch size.
        batch: usize,
        /// Device and dtype of the state.
        device: Device,
        /// The state's dtype.
        dtype: DType,
    },
    /// burn: the point `(t, y)`.
    Burn(Time, Tensor<2>),
}

impl ModelField<'_> {
    /// `aᵀ ∂f/∂x` at fused forward states, summed over the guidance terms with their weights;
    /// with `t_bar`, also `t_bar[i] = Σ_k w_k s_i aᵢᵀ ∂net_k/∂t` (the time column's cotangent).
    fn fused_vjp(&self, saved: &ModelSaved, a: &Tensor<2>, mut t_bar: Option<&mut [f32]>) -> Tensor<2> {
        let ModelSaved::Fused { scale, terms, batch: b, device, dtype } = saved else { unreachable!("fused_vjp takes fused states") };
        let (b, dtype) = (*b, *dtype);
        let net = self.model.net.as_ref().expect("fused path");
        let d = self.model.dim;
        let mut a_host: Vec<f32> = a.to_vec_as::<f32>();
        for (row, s) in a_host.chunks_mut(d).zip(scale) {
            row.iter_mut().for_each(|v| *v *= s);
        }
        let width = d + self.model.cond_dim;
        let mut acc = vec![0.0f32; b * d];
        let mut x_bar = vec![0.0f32; b * width];
        let mut term_t_bar = vec![0.0f32; if t_bar.is_some() { b } else { 0 }];
        for (w, cache) in terms {
            // No parameter cotangent (an empty slot skips the weight products).
            net.vjp(&mut cache.borrow_mut(), &a_host, &mut x_bar, &mut [], t_bar.as_ref().map(|_| term_t_bar.as_mut_slice()));
            for (acc_row, xb_row) in acc.chunks_mut(d).zip(x_bar.chunks(width)) {
                acc_row.iter_mut().zip(xb_row).for_each(|(s, v)| *s += w * v);
            }
            if let Some(tb) = t_bar.as_deref_mut() {
                tb.iter_mut().zip(&term_t_bar).for_each(|(s, v)| *s += w * v);
            }
        }
        Tensor::<2>::from_data(TensorData::new(acc, [b, d]), (device, dtype))
    }

    /// The field at `(t, y)` as host values, with the forward states for its VJPs.
    fn forward(&self, t: &Time, y: &Tensor<2>) -> (Vec<f32>, ModelSaved) {
        let [b, d] = y.dims();
        assert_eq!(d, self.model.dim, "ModelField: state width {d}, model width {}", self.model.dim);
        let net = self.model.net.as_ref().expect("fused path");
        let x: Vec<f32> = y.to_vec_as::<f32>();
        let ts = Self::times(t, b);
        let scale: Vec<f32> = (0..b).map(|i| self.out_scale(t.of(i)) as f32).collect();
        let mut acc = vec![0.0f32; b * d];
        let mut out = vec![0.0f32; b * d];
        let mut terms = Vec::new();
        for (w, cond) in self.terms(b) {
            let input = self.model.pack(&x, cond.as_deref(), b);
            let mut cache = MlpCache::new();
            net.forward_cached(TimeArg::PerSample(&ts), &input, b, &mut out, &mut cache);
            acc.iter_mut().zip(&out).for_each(|(a, o)| *a += w * o);
            terms.push((w, RefCell::new(cache)));
        }
        for (row, s) in acc.chunks_mut(d).zip(&scale) {
            row.iter_mut().for_each(|v| *v *= s);
        }
        (acc, ModelSaved::Fused { scale, terms, batch: b, device: y.device(), dtype: y.dtype() })
    }

    /// The field on burn tensors (any device): `Σ_k w_k s_t mlp([y, c_k], t)`, in f32 on the
    /// network's device, returned in `y`'s dtype and device. Traced by autodiff when `mlp`
    /// and `y` are autodiff tensors.
    fn burn_forward(&self, mlp: &Mlp, t: &Time, y: Tensor<2>) -> Tensor<2> {
        let [b, d] = y.dims();
        let (out_device, out_dtype) = (y.device(), y.dtype());
        let device = mlp.layers[0].weight.val().device();
        // A state on another device than the network goes through the host (works between any
        // two backends).
        let x = if out_device == device { y.cast(DType::F32) } else { crate::device::transfer(&y, &device, DType::F32).expect("readback of the ODE state") };
        let scale: Vec<f32> = (0..b).map(|i| self.out_scale(t.of(i)) as f32).collect();
        let mut acc: Option<Tensor<2>> = None;
        for (w, cond) in self.terms(b) {
            let input = match cond {
                Some(c) => Tensor::cat(vec![x.clone(), Tensor::<2>::from_data(TensorData::new(c, [b, self.model.cond_dim]), (&device, DType::F32))], 1),
                None if self.model.cond_dim > 0 => Tensor::cat(vec![x.clone(), Tensor::<2>::zeros([b, self.model.cond_dim], (&device, DType::F32))], 1),
                None => x.clone(),
            };
            let out = mlp.forward_t(t, input).mul_scalar(w);
            acc = Some(match acc {
                Some(a) => a + out,
                None => out,
            });
        }
        let mut f = acc.expect("at least one term");
        if self.model.objective == Objective::Denoiser {
            f = f * Tensor::<2>::from_data(TensorData::new(scale, [b, 1]), (&device, DType::F32));
        }
        let _ = d;
        if f.device() == out_device {
            f.cast(out_dtype)
        } else {
            crate::device::transfer(&f, &out_device, out_dtype).expect("readback of the field")
        }
    }
}

impl VectorField<2> for ModelField<'_> {
    type Params = ();
    type Saved = ModelSaved;

    /// The state must be `[batch, dim]`, and a per-sample condition must have `batch` rows.
    fn check_state(&self, y0: &Tensor<2>) -> Result<()> {
        let [b, d] = y0.dims();
        if d != self.model.dim {
            return Err(Error::Shape { what: "flow-matching state".into(), expected: vec![b, self.model.dim], got: vec![b, d] });
        }
        let c = self.model.cond_dim;
        if let Some(cond) = &self.cond {
            if cond.len() != c && cond.len() != b * c {
                return Err(Error::Shape { what: "condition (one row, or one per sample)".into(), expected: vec![b, c], got: vec![cond.len() / c.max(1), c] });
            }
        }
        Ok(())
    }

    /// Without VJP state: on the fused path the network's own scratch buffers, no allocation
    /// per call (the ODE sampler's hot path).
    fn eval(&self, t: &Time, y: &Tensor<2>) -> Tensor<2> {
        let [b, d] = y.dims();
        assert_eq!(d, self.model.dim, "ModelField: state width {d}, model width {}", self.model.dim);
        if self.model.net.is_none() {
            return self.burn_forward(self.model.mlp(), t, y.clone());
        }
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
        if self.model.net.is_none() {
            return (self.eval(t, y), ModelSaved::Burn(t.clone(), y.clone()));
        }
        let (acc, saved) = self.forward(t, y);
        let ModelSaved::Fused { batch, ref device, dtype, .. } = saved else { unreachable!("fused path saves fused state") };
        let shape = [batch, self.model.dim];
        (Tensor::<2>::from_data(TensorData::new(acc, shape), (device, dtype)), saved)
    }

    /// `aᵀ ∂f/∂x`: by the fused network's VJP at the saved forward states (the condition and
    /// time columns dropped), or by burn autodiff.
    fn vjp_saved(&self, saved: &ModelSaved, a: &Tensor<2>, _params: Option<(&mut (), f64)>) -> Tensor<2> {
        match saved {
            ModelSaved::Burn(t, y) => {
                let mlp = self.ad.as_ref().expect("burn path keeps an autodiff twin");
                let (gy, _, _) = crate::ode::autodiff_vjp(y, a, |y| self.burn_forward(mlp, t, y));
                gy.without_autodiff()
            }
            ModelSaved::Fused { .. } => self.fused_vjp(saved, a, None),
        }
    }

    /// On the fused path with a velocity or score network (whose output scale does not depend
    /// on `t`): the time column's cotangent of the same VJP, `aᵢᵀ ∂fᵢ/∂t` exactly.
    fn vjp_with_time_saved(&self, saved: &ModelSaved, a: &Tensor<2>) -> Option<(Tensor<2>, Vec<f64>)> {
        let ModelSaved::Fused { batch, .. } = saved else { return None };
        if self.model.objective == Objective::Denoiser {
            return None;
        }
        let mut t_bar = vec![0.0f32; *batch];
        let x_bar = self.fused_vjp(saved, a, Some(&mut t_bar));
        Some((x_bar, t_bar.into_iter().map(f64::from).collect()))
    }

    fn zero_params(&self) {}
}
