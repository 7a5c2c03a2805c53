//! Training by regression on the interpolant (flow matching / stochastic interpolants) on any
//! device: one step draws a minibatch of `x₀` and `x₁`, couples them, draws times and latent
//! noise, forms `x_t` and the target, and takes an Adam step on the mean squared error.
//!
//! The loop is [`crate::train::fit`]; [`FmTrainer`] is the model, batch source and loss. The
//! network is a burn [`crate::nn::Mlp`]: on the CPU device a tanh network trains on the fused
//! kernels (forward, VJP and Adam on flat buffers), elsewhere on burn autodiff with burn's Adam
//! (same hyperparameters). The batch is drawn on the host from the step's generator, so every
//! device trains on the same data.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{DType, Device, Tensor, TensorData};
use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::coupling::Coupling;
use super::model::{noise_scale, BaseKind, FmModel, NetConfig, Objective};
use super::path::{Interpolant, ProbabilityPath};
use crate::nn::fused::{FusedMlp, MlpCache, TimeArg};
use crate::nn::Mlp;
use crate::ode::Time;
use crate::train::{CheckpointReader, CheckpointWriter, FitReport, Run, RunOptions, Trainer};
use crate::{Error, Result};

/// How training times are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TimeSampling {
    /// `t ~ U(0, 1)`.
    #[default]
    Uniform,
    /// `t = sigmoid(m + s n)`, `n ~ N(0, 1)` (Esser et al. 2024, §3.1: more weight on the
    /// middle of the path).
    LogitNormal {
        /// Location `m`.
        mean: f64,
        /// Scale `s > 0`.
        std: f64,
    },
}

impl TimeSampling {
    /// A time in `(0, 1)`.
    pub fn draw(&self, rng: &mut StdRng) -> f64 {
        match *self {
            TimeSampling::Uniform => rng.random::<f64>(),
            TimeSampling::LogitNormal { mean, std } => {
                let n: f64 = StandardNormal.sample(rng);
                1.0 / (1.0 + (-(mean + std * n)).exp())
            }
        }
    }
}

/// Settings of a training run (serde, every field defaulted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The interpolant.
    pub path: ProbabilityPath,
    /// How minibatches of `x₀` and `x₁` are paired.
    pub coupling: Coupling,
    /// What the network predicts.
    pub objective: Objective,
    /// How times are drawn.
    pub time: TimeSampling,
    /// The network.
    pub net: NetConfig,
    /// Probability of replacing the condition by the null condition (zeros) during training,
    /// for classifier-free guidance.
    pub cond_dropout: f64,
    /// Steps, batch, learning rate and schedule, clipping, EMA, seed, log and checkpoint
    /// cadence.
    pub run: RunOptions,
}

impl Default for TrainConfig {
    /// torchcfm's 2D settings: batch 256, Adam 1e-3, 3 × 256 hidden, 3000 steps.
    fn default() -> Self {
        Self {
            path: ProbabilityPath::default(),
            coupling: Coupling::default(),
            objective: Objective::Velocity,
            time: TimeSampling::Uniform,
            net: NetConfig::default(),
            cond_dropout: 0.0,
            run: RunOptions { steps: 3000, batch_size: 256, lr: 1e-3, log_every: 10, ..RunOptions::default() },
        }
    }
}

/// A source of samples `[n, dim]`.
pub enum SampleSource<'a> {
    /// Standard normal `N(0, I)`.
    Gaussian,
    /// Rows of a data set, drawn uniformly with replacement.
    Data(ArrayView2<'a, f64>),
    /// Fresh samples from a generator: `f(rng, n) → [n, dim]`.
    Sampler(&'a (dyn Fn(&mut StdRng, usize) -> Array2<f64> + Sync)),
}

/// What to learn: a transport from `x₀` to `x₁` in `dim` dimensions, optionally conditioned on
/// one row of `cond` per row of the `x₁` data.
pub struct Problem<'a> {
    /// State width.
    pub dim: usize,
    /// Base samples.
    pub x0: SampleSource<'a>,
    /// Data samples.
    pub x1: SampleSource<'a>,
    /// Conditions `[n₁, cond_dim]`, row `i` for row `i` of `x1` (which must be `Data`).
    pub cond: Option<ArrayView2<'a, f64>>,
}

pub(crate) use crate::train::{clip_global_norm, Adam};

/// Draw `n` rows from a source into `out` (`[n, dim]`, f32); for `Data`, the rows drawn.
pub(crate) fn draw(source: &SampleSource, dim: usize, n: usize, rng: &mut StdRng, rows: Option<&[usize]>, out: &mut Vec<f32>) -> Result<Vec<usize>> {
    out.clear();
    match source {
        SampleSource::Gaussian => {
            out.extend((0..n * dim).map(|_| StandardNormal.sample(rng)).map(|x: f64| x as f32));
            Ok(Vec::new())
        }
        SampleSource::Data(a) => {
            if a.ncols() != dim || a.nrows() == 0 {
                return Err(Error::Shape { what: "training data".into(), expected: vec![a.nrows().max(1), dim], got: vec![a.nrows(), a.ncols()] });
            }
            let idx: Vec<usize> = match rows {
                Some(r) => r.to_vec(),
                None => (0..n).map(|_| rng.random_range(0..a.nrows())).collect(),
            };
            for &i in &idx {
                out.extend(a.row(i).iter().map(|&x| x as f32));
            }
            Ok(idx)
        }
        SampleSource::Sampler(f) => {
            let a = f(rng, n);
            if a.dim() != (n, dim) {
                return Err(Error::Shape { what: "sampler output".into(), expected: vec![n, dim], got: a.shape().to_vec() });
            }
            out.extend(a.iter().map(|&x| x as f32));
            Ok(Vec::new())
        }
    }
}

fn validate(problem: &Problem, config: &TrainConfig) -> Result<usize> {
    config.path.validate()?;
    config.coupling.validate()?;
    config.run.validate()?;
    if problem.dim == 0 {
        return Err(Error::invalid("dim", "need a state width of at least 1"));
    }
    config.net.mlp(problem.dim, 0).validate()?;
    if !(0.0..1.0).contains(&config.cond_dropout) {
        return Err(Error::invalid("cond_dropout", format!("need 0 ≤ p < 1, got {}", config.cond_dropout)));
    }
    if let TimeSampling::LogitNormal { std, mean } = config.time {
        if !(std > 0.0 && mean.is_finite()) {
            return Err(Error::invalid("time.std", format!("logit-normal needs std > 0, got {std}")));
        }
    }
    if config.coupling == Coupling::Paired {
        match (&problem.x0, &problem.x1) {
            (SampleSource::Data(a), SampleSource::Data(b)) if a.nrows() == b.nrows() => {}
            _ => return Err(Error::invalid("coupling", "paired coupling needs x0 and x1 as Data with the same number of rows")),
        }
    }
    let cond_dim = match &problem.cond {
        None => 0,
        Some(c) => match &problem.x1 {
            SampleSource::Data(x1) if x1.nrows() == c.nrows() && c.ncols() > 0 => c.ncols(),
            _ => return Err(Error::invalid("cond", "conditions need x1 as Data with one condition row per data row")),
        },
    };
    let base = base_of(&problem.x0);
    if config.objective != Objective::Velocity {
        let (lo, hi) = config.path.time_range();
        let s = noise_scale(&config.path, base, 0.5 * (lo + hi));
        if s == 0.0 {
            return Err(Error::invalid("objective", "score and denoiser objectives need a Gaussian part in x_t: a Gaussian base or a path with γ > 0"));
        }
    }
    Ok(cond_dim)
}

fn base_of(source: &SampleSource) -> BaseKind {
    match source {
        SampleSource::Gaussian => BaseKind::Gaussian,
        _ => BaseKind::Data,
    }
}

/// The host buffers of one minibatch: network input `[x_t, c]`, times, targets and weights.
struct HostBatch {
    x0: Vec<f32>,
    x1: Vec<f32>,
    input: Vec<f32>,
    ts: Vec<f32>,
    target: Vec<f32>,
    weight: Vec<f32>,
}

/// The fused CPU path: forward, VJP and Adam on flat buffers.
struct FusedEngine {
    net: FusedMlp<f32>,
    adam: Adam<f32>,
    cache: MlpCache<f32>,
    out: Vec<f32>,
    cot: Vec<f32>,
    x_bar: Vec<f32>,
    grad: Vec<f32>,
    ema: Option<Vec<f32>>,
}

/// The burn path: the network on an autodiff device, burn's Adam.
struct BurnEngine {
    mlp: Mlp,
    optim: ModuleOptimizer,
    device: Device,
    ema: Option<Mlp>,
    /// Further devices (autodiff) that each take a shard of the batch (data parallelism).
    replicas: Vec<Device>,
}

enum Engine {
    Fused(Box<FusedEngine>),
    Burn(Box<BurnEngine>),
}

/// Flow-matching training as a [`Trainer`]: the network, the optimizer, and the batch source
/// of a [`Problem`].
pub struct FmTrainer<'a> {
    problem: &'a Problem<'a>,
    config: TrainConfig,
    cond_dim: usize,
    base: BaseKind,
    device: Device,
    engine: Engine,
    batch: HostBatch,
}

impl<'a> FmTrainer<'a> {
    /// A fresh network (from `config.run.seed`) for `problem` on `device`.
    ///
    /// # Errors
    /// `InvalidArgument` / `Shape` for bad settings or data.
    pub fn new(problem: &'a Problem<'a>, config: &TrainConfig, device: &Device) -> Result<Self> {
        Self::build(problem, config, device, false)
    }

    /// The same trainer on the burn path even where the fused kernels would run: for the
    /// tests and benchmarks that compare the two paths on the CPU (a user picks a device,
    /// never a path).
    #[doc(hidden)]
    pub fn new_burn_path(problem: &'a Problem<'a>, config: &TrainConfig, device: &Device) -> Result<Self> {
        Self::build(problem, config, device, true)
    }

    /// Data-parallel training on `devices` (the first holds the model and the optimizer): each
    /// step's batch is split into `devices.len()` contiguous shards, each device computes its
    /// shard's share of the loss and gradient on a copy of the network, and the gradients are
    /// summed on the host and applied on the first device, so the step equals the
    /// single-device step up to summation order. Always on the burn path. Devices may be of
    /// different backends (the copies and gradients go through the host), and the same device
    /// may appear more than once.
    ///
    /// # Errors
    /// `InvalidArgument` for no devices or more devices than batch rows; as [`Self::new`].
    pub fn new_data_parallel(problem: &'a Problem<'a>, config: &TrainConfig, devices: &[Device]) -> Result<Self> {
        let Some(first) = devices.first() else {
            return Err(Error::invalid("devices", "data-parallel training needs at least one device"));
        };
        if devices.len() > config.run.batch_size {
            return Err(Error::invalid("devices", format!("{} devices for a batch of {}: each needs at least one row", devices.len(), config.run.batch_size)));
        }
        let mut t = Self::build(problem, config, first, true)?;
        if let Engine::Burn(e) = &mut t.engine {
            e.replicas = devices[1..].iter().map(|d| d.clone().autodiff()).collect();
        }
        Ok(t)
    }

    fn build(problem: &'a Problem<'a>, config: &TrainConfig, device: &Device, force_burn: bool) -> Result<Self> {
        let cond_dim = validate(problem, config)?;
        let (dim, bsz) = (problem.dim, config.run.batch_size);
        let base = base_of(&problem.x0);
        let model = FmModel::new_on(dim, cond_dim, &config.net, config.path, base, config.objective, config.run.seed, device)?;
        let width = dim + cond_dim;
        let engine = match model.net.as_ref().filter(|_| !force_burn) {
            Some(net) => Engine::Fused(Box::new(FusedEngine {
                net: net.clone(),
                adam: Adam::<f32>::new(net.num_params()),
                cache: MlpCache::new(),
                out: vec![0.0; bsz * dim],
                cot: vec![0.0; bsz * dim],
                x_bar: vec![0.0; bsz * width],
                grad: vec![0.0; net.num_params()],
                ema: None,
            })),
            None => {
                // Parameters made afresh on the autodiff device, so they are tracked leaves.
                let ad = device.clone().autodiff();
                let mlp = config.net.mlp(dim, cond_dim).from_flat(&model.params()?, &ad, DType::F32)?;
                Engine::Burn(Box::new(BurnEngine { mlp, optim: crate::train::burn_adam(), device: ad, ema: None, replicas: Vec::new() }))
            }
        };
        let batch = HostBatch {
            x0: Vec::new(),
            x1: Vec::new(),
            input: vec![0.0; bsz * width],
            ts: vec![0.0; bsz],
            target: vec![0.0; bsz * dim],
            weight: vec![1.0; bsz],
        };
        Ok(Self { problem, config: config.clone(), cond_dim, base, device: device.clone(), engine, batch })
    }

    /// Whether this run trains on the fused CPU kernels (the CPU device and a tanh network).
    pub fn fused(&self) -> bool {
        matches!(self.engine, Engine::Fused(_))
    }

    /// The model as it stands (its parameter average when the run keeps an EMA), on the
    /// training device.
    ///
    /// # Errors
    /// [`Error::Device`] when the parameters cannot be read back.
    pub fn model(&self) -> Result<FmModel> {
        let (dim, c) = (self.problem.dim, &self.config);
        match &self.engine {
            Engine::Fused(e) => {
                let params = e.ema.as_deref().unwrap_or(e.net.params());
                FmModel::from_params(dim, self.cond_dim, &c.net, c.path, self.base, c.objective, params, &self.device)
            }
            Engine::Burn(e) => {
                let mlp = e.ema.clone().unwrap_or_else(|| e.mlp.valid());
                Ok(FmModel::from_mlp(dim, self.cond_dim, &c.net, c.path, self.base, c.objective, mlp))
            }
        }
    }

    /// Draw step `rng`'s minibatch into the host buffers: `x₀`, `x₁`, coupling, times,
    /// latent noise, `x_t`, targets and weights (the same draws on every device).
    fn draw_batch(&mut self, rng: &mut StdRng) -> Result<()> {
        let (problem, config) = (self.problem, &self.config);
        let (dim, bsz, cond_dim, base) = (problem.dim, config.run.batch_size, self.cond_dim, self.base);
        let (lo, hi) = config.path.time_range();
        let width = dim + cond_dim;
        let b = &mut self.batch;
        let idx0 = draw(&problem.x0, dim, bsz, rng, None, &mut b.x0)?;
        let paired = config.coupling == Coupling::Paired;
        let idx1 = draw(&problem.x1, dim, bsz, rng, paired.then_some(&idx0[..]), &mut b.x1)?;
        let partner = config.coupling.partners(&b.x0, &b.x1, dim, rng)?;
        let cond = problem.cond.as_ref();
        for i in 0..bsz {
            let j = partner[i];
            let t = lo + (hi - lo) * config.time.draw(rng);
            b.ts[i] = t as f32;
            let c = config.path.coefficients(t);
            let sigma_n = noise_scale(&config.path, base, t);
            let row = &mut b.input[i * width..(i + 1) * width];
            let drop = cond_dim > 0 && config.cond_dropout > 0.0 && rng.random::<f64>() < config.cond_dropout;
            for k in 0..dim {
                let (a, x1) = (b.x0[i * dim + k] as f64, b.x1[j * dim + k] as f64);
                let z: f64 = if c.gamma != 0.0 || c.d_gamma != 0.0 { StandardNormal.sample(rng) } else { 0.0 };
                row[k] = (c.alpha * a + c.beta * x1 + c.gamma * z) as f32;
                let gauss = c.gamma * z + if base == BaseKind::Gaussian { c.alpha * a } else { 0.0 };
                b.target[i * dim + k] = match config.objective {
                    Objective::Velocity => (c.d_alpha * a + c.d_beta * x1 + c.d_gamma * z) as f32,
                    Objective::Denoiser | Objective::Score => (gauss / sigma_n) as f32,
                };
            }
            // Score: residual σ s_θ + ε, i.e. the output is scaled by σ and the target is −ε.
            b.weight[i] = if config.objective == Objective::Score { sigma_n as f32 } else { 1.0 };
            if config.objective == Objective::Score {
                b.target[i * dim..(i + 1) * dim].iter_mut().for_each(|v| *v = -*v);
            }
            if let Some(cond) = cond {
                for k in 0..cond_dim {
                    row[dim + k] = if drop { 0.0 } else { cond[[idx1[j], k]] as f32 };
                }
            }
        }
        Ok(())
    }

    /// The loss `mean (w ⊙ f_θ(x_t, c, t) − target)²` of the drawn batch and its gradient with
    /// respect to the parameters, in the fused layout (f32), without an optimizer step: the
    /// quantity the device-parity tests compare.
    ///
    /// # Errors
    /// As [`Trainer::step`].
    pub fn loss_and_grad(&mut self, rng: &mut StdRng) -> Result<(f64, Vec<f32>)> {
        self.draw_batch(rng)?;
        match &mut self.engine {
            Engine::Fused(e) => {
                let loss = fused_loss_grad(e, &self.batch, self.problem.dim);
                Ok((loss, e.grad.clone()))
            }
            Engine::Burn(e) => {
                let (loss, gp) = burn_loss_grad(e, &self.batch, self.problem.dim + self.cond_dim, self.problem.dim)?;
                Ok((loss, flat_grads(&e.mlp, &gp)?))
            }
        }
    }
}

fn grad_host<const D: usize>(gp: &GradientsParams, id: burn::module::ParamId) -> Result<Vec<f32>> {
    use crate::host::ToHost;
    gp.get::<D>(id).map(|g| g.host_vec::<f32>()).unwrap_or_else(|| Err(Error::Unsupported("a parameter without a gradient".into())))
}

/// Fused forward and VJP: the loss, with the parameter gradient in `e.grad`.
fn fused_loss_grad(e: &mut FusedEngine, b: &HostBatch, dim: usize) -> f64 {
    let bsz = b.ts.len();
    e.net.forward_cached(TimeArg::PerSample(&b.ts), &b.input, bsz, &mut e.out, &mut e.cache);
    let scale = 2.0 / (bsz * dim) as f32;
    let mut loss = 0.0f64;
    for i in 0..bsz {
        for k in 0..dim {
            let r = b.weight[i] * e.out[i * dim + k] - b.target[i * dim + k];
            loss += (r * r) as f64;
            e.cot[i * dim + k] = scale * r * b.weight[i];
        }
    }
    e.grad.iter_mut().for_each(|g| *g = 0.0);
    e.net.vjp(&mut e.cache, &e.cot, &mut e.x_bar, &mut e.grad, None);
    loss / (bsz * dim) as f64
}

/// burn forward and backward on the engine's device(s): the loss and the parameter gradients
/// (on the first device). With replicas, rows are split into contiguous shards; shard `i`
/// contributes `Σ_rows (w ⊙ f − target)² / (B · dim)`, so the shards' losses and gradients sum
/// to the full batch's.
fn burn_loss_grad(e: &BurnEngine, b: &HostBatch, width: usize, dim: usize) -> Result<(f64, GradientsParams)> {
    use crate::host::ToHost;
    let bsz = b.ts.len();
    let n_dev = 1 + e.replicas.len();
    let bounds: Vec<usize> = (0..=n_dev).map(|i| i * bsz / n_dev).collect();
    let shard_loss = |mlp: &Mlp, device: &Device, lo: usize, hi: usize| -> Tensor<1> {
        let on = (device, DType::F32);
        let n = hi - lo;
        let x = Tensor::<2>::from_data(TensorData::new(b.input[lo * width..hi * width].to_vec(), [n, width]), on);
        let times = Time::PerSample(b.ts[lo..hi].iter().map(|&t| t as f64).collect());
        let out = mlp.forward_t(&times, x);
        let w = Tensor::<2>::from_data(TensorData::new(b.weight[lo..hi].to_vec(), [n, 1]), on);
        let target = Tensor::<2>::from_data(TensorData::new(b.target[lo * dim..hi * dim].to_vec(), [n, dim]), on);
        (out * w - target).square().sum().div_scalar((bsz * dim) as f64)
    };
    let loss = shard_loss(&e.mlp, &e.device, bounds[0], bounds[1]);
    let mut value = loss.clone().host_vec::<f64>()?[0];
    let mut grads = GradientsParams::from_grads(loss.backward(), &e.mlp);
    if e.replicas.is_empty() {
        return Ok((value, grads));
    }
    // The other shards on copies of the network; their gradients summed on the host.
    let cfg = e.mlp.config();
    let flat: Vec<f32> = mlp_flat_host(&e.mlp)?;
    let mut sum = vec![0.0f64; flat.len()];
    for (i, device) in e.replicas.iter().enumerate() {
        let copy = cfg.from_flat(&flat, device, DType::F32)?;
        let loss = shard_loss(&copy, device, bounds[i + 1], bounds[i + 2]);
        value += loss.clone().host_vec::<f64>()?[0];
        let gp = GradientsParams::from_grads(loss.backward(), &copy);
        sum.iter_mut().zip(flat_grads(&copy, &gp)?).for_each(|(s, g)| *s += f64::from(g));
    }
    let mut off = 0;
    let mut add = |grads: &mut GradientsParams, id: burn::module::ParamId, shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        let extra = TensorData::new(sum[off..off + n].iter().map(|&v| v as f32).collect::<Vec<_>>(), shape.clone());
        off += n;
        if shape.len() == 2 {
            let t = Tensor::<2>::from_data(extra, (&e.device.clone().without_autodiff(), DType::F32));
            let g = grads.remove::<2>(id).map(|g| g + t.clone()).unwrap_or(t);
            grads.register::<2>(id, g);
        } else {
            let t = Tensor::<1>::from_data(extra, (&e.device.clone().without_autodiff(), DType::F32));
            let g = grads.remove::<1>(id).map(|g| g + t.clone()).unwrap_or(t);
            grads.register::<1>(id, g);
        }
    };
    for layer in &e.mlp.layers {
        add(&mut grads, layer.weight.id, layer.weight.dims().to_vec());
        if let Some(bias) = &layer.bias {
            add(&mut grads, bias.id, bias.dims().to_vec());
        }
    }
    Ok((value, grads))
}

/// The network's parameters in the fused layout, read back as f32.
fn mlp_flat_host(mlp: &Mlp) -> Result<Vec<f32>> {
    use crate::host::ToHost;
    let mut out = Vec::new();
    for layer in &mlp.layers {
        out.extend(layer.weight.val().host_vec::<f32>()?);
        if let Some(b) = &layer.bias {
            out.extend(b.val().host_vec::<f32>()?);
        }
    }
    Ok(out)
}

/// The gradients of `mlp`'s parameters in the fused layout (f32).
fn flat_grads(mlp: &Mlp, gp: &GradientsParams) -> Result<Vec<f32>> {
    let mut flat = Vec::new();
    for layer in &mlp.layers {
        flat.extend(grad_host::<2>(gp, layer.weight.id)?);
        if let Some(b) = &layer.bias {
            flat.extend(grad_host::<1>(gp, b.id)?);
        }
    }
    Ok(flat)
}

/// `ē ← d ē + (1 − d) θ` layer by layer, on the device without autodiff (the first call
/// copies `θ`).
fn ema_mlp(ema: Option<Mlp>, mlp: &Mlp, d: f64) -> Mlp {
    let current = mlp.valid();
    let Some(ema) = ema else { return current };
    let mix = |a: Tensor<2>, b: Tensor<2>| a.mul_scalar(d) + b.mul_scalar(1.0 - d);
    let mix1 = |a: Tensor<1>, b: Tensor<1>| a.mul_scalar(d) + b.mul_scalar(1.0 - d);
    let layers = ema
        .layers
        .iter()
        .zip(&current.layers)
        .map(|(e, c)| Linear {
            weight: Param::from_tensor(mix(e.weight.val(), c.weight.val())),
            bias: match (&e.bias, &c.bias) {
                (Some(eb), Some(cb)) => Some(Param::from_tensor(mix1(eb.val(), cb.val()))),
                _ => None,
            },
        })
        .collect();
    Mlp { layers, time_input: ema.time_input, activation: ema.activation }
}

impl Trainer for FmTrainer<'_> {
    fn kind(&self) -> &'static str {
        "flow matching"
    }

    fn config(&self) -> serde_json::Value {
        let TrainConfig { path, coupling, objective, time, net, cond_dropout, run: _ } = &self.config;
        serde_json::json!({
            "dim": self.problem.dim,
            "cond_dim": self.cond_dim,
            "base": self.base,
            "path": path,
            "coupling": coupling,
            "objective": objective,
            "time": time,
            "net": net,
            "cond_dropout": cond_dropout,
            "engine": if self.fused() { "fused cpu" } else { "burn" },
        })
    }

    fn step(&mut self, _step: usize, lr: f64, rng: &mut StdRng) -> Result<Vec<f64>> {
        self.draw_batch(rng)?;
        let clip = self.config.run.grad_clip;
        let (dim, width) = (self.problem.dim, self.problem.dim + self.cond_dim);
        let loss = match &mut self.engine {
            Engine::Fused(e) => {
                let loss = fused_loss_grad(e, &self.batch, dim);
                if loss.is_finite() {
                    clip_global_norm(&mut e.grad, clip);
                    let (adam, grad) = (&mut e.adam, &e.grad);
                    e.net.update_params(|p| adam.step(p, grad, lr));
                }
                loss
            }
            Engine::Burn(e) => {
                let (loss, mut gp) = burn_loss_grad(e, &self.batch, width, dim)?;
                if loss.is_finite() {
                    if let Some(c) = clip {
                        crate::train::clip_grad_norm(&e.mlp, &mut gp, c)?;
                    }
                    let mlp = std::mem::replace(&mut e.mlp, Mlp { layers: Vec::new(), time_input: true, activation: self.config.net.activation });
                    e.mlp = e.optim.step(lr, mlp, gp);
                }
                loss
            }
        };
        Ok(vec![loss])
    }

    fn supports_ema(&self) -> bool {
        true
    }

    fn update_ema(&mut self, decay: f64) -> Result<()> {
        match &mut self.engine {
            Engine::Fused(e) => match &mut e.ema {
                None => e.ema = Some(e.net.params().to_vec()),
                Some(avg) => {
                    let d = decay as f32;
                    avg.iter_mut().zip(e.net.params()).for_each(|(a, p)| *a = d * *a + (1.0 - d) * p);
                }
            },
            Engine::Burn(e) => e.ema = Some(ema_mlp(e.ema.take(), &e.mlp, decay)),
        }
        Ok(())
    }

    fn save(&self, w: &mut CheckpointWriter) -> Result<()> {
        let cfg = self.config.net.mlp(self.problem.dim, self.cond_dim);
        let cpu = Device::flex();
        match &self.engine {
            Engine::Fused(e) => {
                w.module("model", &cfg.from_flat(e.net.params(), &cpu, DType::F32)?)?;
                w.json("adam", &e.adam)?;
                if let Some(avg) = &e.ema {
                    w.module("ema", &cfg.from_flat(avg, &cpu, DType::F32)?)?;
                }
            }
            Engine::Burn(e) => {
                w.module("model", &e.mlp.valid())?;
                w.optimizer("optimizer", &e.optim)?;
                if let Some(avg) = &e.ema {
                    w.module("ema", avg)?;
                }
            }
        }
        Ok(())
    }

    fn load(&mut self, r: &CheckpointReader) -> Result<()> {
        let cfg = self.config.net.mlp(self.problem.dim, self.cond_dim);
        match &mut self.engine {
            Engine::Fused(e) => {
                let template = cfg.from_flat(e.net.params(), &Device::flex(), DType::F32)?;
                let flat: Vec<f32> = r.module("model", template.clone())?.flat_params().into_iter().map(|v| v as f32).collect();
                e.net.set_params(&flat);
                e.adam = r.json("adam")?;
                e.ema = if r.has("ema", "bpk") { Some(r.module("ema", template)?.flat_params().into_iter().map(|v| v as f32).collect()) } else { None };
            }
            Engine::Burn(e) => {
                e.mlp = r.module("model", e.mlp.clone())?;
                e.optim = r.optimizer("optimizer", std::mem::replace(&mut e.optim, crate::train::burn_adam()))?;
                e.ema = if r.has("ema", "bpk") { Some(r.module("ema", e.mlp.valid())?) } else { None };
            }
        }
        Ok(())
    }
}

/// Train a network for `problem` with `config` on `device` through [`crate::train::fit`];
/// resumes from `run.checkpoint` when it holds a checkpoint of the same settings (the step
/// count may grow). Returns the trained model (the parameter average when `config.run.ema`
/// is set) and the loop's report.
///
/// # Errors
/// `InvalidArgument` / `Shape` for bad settings or data, or for a checkpoint written with
/// other settings; `Diverged` for a non-finite loss; `Io` / `Format` for checkpoint trouble;
/// [`Error::Device`] for a device that fails.
pub fn train<'a>(problem: &'a Problem<'a>, config: &TrainConfig, device: &Device, run: &mut Run<'_, FmTrainer<'a>>) -> Result<(FmModel, FitReport)> {
    let mut trainer = FmTrainer::new(problem, config, device)?;
    if run.label == "train" {
        run.label = "fm train".into();
    }
    let report = crate::train::fit(&mut trainer, &config.run, run)?;
    Ok((trainer.model()?, report))
}

/// Load the model saved in a checkpoint directory written by [`train`] (its parameter
/// average when the run kept one), on the CPU.
///
/// # Errors
/// `Io` / `Format` for an unreadable or foreign checkpoint.
pub fn load_model(dir: &Path) -> Result<FmModel> {
    let ck = crate::train::Checkpoint::new(dir);
    let (r, state) = ck.read_state("flow matching")?;
    let fmt = |e: serde_json::Error| Error::Format { path: dir.join("state.json").display().to_string(), reason: e.to_string() };
    let c = &state.config;
    let get = |k: &str| c.get(k).cloned().unwrap_or(serde_json::Value::Null);
    let dim: usize = serde_json::from_value(get("dim")).map_err(fmt)?;
    let cond_dim: usize = serde_json::from_value(get("cond_dim")).map_err(fmt)?;
    let base: BaseKind = serde_json::from_value(get("base")).map_err(fmt)?;
    let path: ProbabilityPath = serde_json::from_value(get("path")).map_err(fmt)?;
    let objective: Objective = serde_json::from_value(get("objective")).map_err(fmt)?;
    let net: NetConfig = serde_json::from_value(get("net")).map_err(fmt)?;
    let cfg = net.mlp(dim, cond_dim);
    let template = cfg.from_flat(&vec![0.0f32; cfg.num_params()], &Device::flex(), DType::F32)?;
    let mlp = r.module(if r.has("ema", "bpk") { "ema" } else { "model" }, template)?;
    Ok(FmModel::from_mlp(dim, cond_dim, &net, path, base, objective, mlp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Clipping scales a gradient of norm 5 to norm 1 and leaves a short one alone.
    #[test]
    fn clipping_bounds_the_norm() {
        let mut g = vec![3.0f32, 4.0];
        clip_global_norm(&mut g, Some(1.0));
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
        clip_global_norm(&mut g, Some(2.0));
        assert!((g[0] - 0.6).abs() < 1e-6);
        clip_global_norm(&mut g, None);
        assert!((g[1] - 0.8).abs() < 1e-6);
    }

    /// Logit-normal times: `logit(t) ~ N(m, s²)`, so the sample mean of `logit(t)` is within
    /// 4 standard errors (4 s/√N) of m; uniform times
    /// have mean ½ within 4/√(12 N).
    #[test]
    fn time_sampling_laws() {
        let n = 20_000;
        let mut rng = StdRng::seed_from_u64(5);
        let (m, s) = (0.5, 1.2);
        let ln = TimeSampling::LogitNormal { mean: m, std: s };
        let logits: Vec<f64> = (0..n).map(|_| ln.draw(&mut rng)).map(|t| (t / (1.0 - t)).ln()).collect();
        let mean = logits.iter().sum::<f64>() / n as f64;
        assert!((mean - m).abs() < 4.0 * s / (n as f64).sqrt(), "mean logit {mean}");
        let ts: Vec<f64> = (0..n).map(|_| TimeSampling::Uniform.draw(&mut rng)).collect();
        let mean = ts.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 4.0 / (12.0 * n as f64).sqrt(), "uniform mean {mean}");
    }
}
