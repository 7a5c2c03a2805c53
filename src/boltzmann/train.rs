//! Training a Boltzmann generator: a flow `x = f(z)`, `z ~ N(0, I)`, fitted to
//! `p(x) ∝ exp(−β u(x))` by energy, by data, or both (Noé et al. 2019, eqs. 7–9):
//!
//! * by energy (reverse KL, no data): `L_E = E_{z}[β u(f(z)) − log|det ∂f/∂z|]`, which equals
//!   `KL(q ‖ p) − log Z` up to the constant `E[log ρ(z)]`;
//! * by data (maximum likelihood, forward KL): `L_D = E_{x ~ data}[−log ρ(f⁻¹(x)) − log|det ∂f⁻¹/∂x|]`
//!   (the negative log-likelihood);
//! * mixed: `w_D L_D + w_E L_E`.
//!
//! Energies above `energy_cut` are softened (bgflow's `linlogcut`) so that a clash of two
//! Lennard-Jones particles early in training cannot produce a gradient of 10¹²; the reported
//! KL and weights use the true energy. A non-finite loss or gradient stops training with
//! [`Error::Diverged`] naming the step: it is reported, never skipped.

use std::path::Path as FsPath;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::rngs::StdRng;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::generator::BoltzmannGenerator;
use super::reweight;
use crate::energy::Energy;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::flows::{Flow, FlowConfig, FlowModule};
use crate::host::ToHost;
use crate::train::{clip_global_norm, Adam, CheckpointReader, CheckpointWriter, Precision, Run, RunOptions, Trainer};
use crate::{Error, Result};

/// Training settings (serde, with defaults; unknown keys are refused).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The flow architecture.
    pub flow: FlowConfig,
    /// Adam steps.
    pub steps: usize,
    /// Samples per loss term per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Inverse temperature `β = 1/kT` of the target, in inverse energy units.
    pub beta: f64,
    /// Weight `w_E` of the energy (reverse KL) loss; needs an energy.
    pub weight_energy: f64,
    /// Weight `w_D` of the data (negative log-likelihood) loss; needs data.
    pub weight_data: f64,
    /// Steps over which the energy weight ramps linearly from 0 to `weight_energy` (0: none).
    /// Mixed training from data starts far from the energy's scale (quartic and r⁻¹² terms give
    /// huge early gradients), so a ramp lets maximum likelihood place the flow first, as in
    /// Noé et al. (2019), who train by data before adding the energy term.
    pub energy_ramp: usize,
    /// Global gradient-norm clip (`None`: no clipping).
    pub grad_clip: Option<f64>,
    /// Energies above this value (energy units) enter the loss as
    /// `cut + log(1 + u − cut)` (bgflow's `linlogcut`); `None`: no cut.
    pub energy_cut: Option<f64>,
    /// Seed of the network initialisation and of every step's samples.
    pub seed: u64,
    /// The float type on a burn device (`wgpu`, `cuda`). On the CPU the flow always trains in
    /// f64 (the hand-written VJPs); f64 on a device that lacks it is an `Error::Device`.
    pub precision: Precision,
    /// Log (KL, NLL, ESS/N on the step's batch) every this many steps.
    pub log_every: usize,
    /// Write the checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
}

impl Default for TrainConfig {
    /// RealNVP (8 couplings, `[64, 64]`), 2000 steps of 256, Adam 1e-3, β = 1, energy only,
    /// clip 100, no energy cut.
    fn default() -> Self {
        TrainConfig {
            flow: FlowConfig::default(),
            steps: 2000,
            batch_size: 256,
            lr: 1e-3,
            beta: 1.0,
            weight_energy: 1.0,
            weight_data: 0.0,
            energy_ramp: 0,
            grad_clip: Some(100.0),
            energy_cut: None,
            seed: 0,
            precision: Precision::F32,
            log_every: 100,
            checkpoint_every: 0,
        }
    }
}

/// One log entry, averaged over the `log_every` steps before `step`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Steps done.
    pub step: usize,
    /// Training seconds so far (resumed runs included).
    pub seconds: f64,
    /// `E[β u + log q]` on the energy batches (`KL(q‖p) − log Z`); NaN without energy term.
    pub kl: f64,
    /// Negative log-likelihood of the data batches; NaN without data term.
    pub nll: f64,
    /// Kish ESS / N of the energy batches' importance weights; NaN without energy term.
    pub ess_fraction: f64,
}

/// The outcome of [`train`].
#[derive(Clone, Debug)]
pub struct TrainReport {
    /// The log.
    pub log: Vec<LogEntry>,
    /// Wall time of the steps run in this call, seconds.
    pub seconds: f64,
    /// Steps run in this call.
    pub steps_run: usize,
    /// Steps done in total.
    pub steps: usize,
}

/// `(u', du'/du)` of bgflow's linear-logarithmic cut.
fn linlogcut(u: f64, cut: Option<f64>) -> (f64, f64) {
    match cut {
        Some(c) if u > c => (c + (u - c).ln_1p(), 1.0 / (1.0 + u - c)),
        _ => (u, 1.0),
    }
}

fn validate(dim: usize, energy: Option<&dyn Energy>, data: Option<ArrayView2<f64>>, c: &TrainConfig) -> Result<()> {
    let bad = |name: &'static str, reason: &str| Err(Error::InvalidArgument { name, reason: reason.into() });
    if c.steps == 0 || c.batch_size == 0 || c.log_every == 0 {
        return bad("steps", "steps, batch_size and log_every must be ≥ 1");
    }
    if !(c.lr > 0.0) || !(c.beta > 0.0) || !c.beta.is_finite() {
        return bad("lr", "lr and beta must be positive and finite");
    }
    if !(c.weight_energy >= 0.0 && c.weight_data >= 0.0) || c.weight_energy + c.weight_data == 0.0 {
        return bad("weight_energy", "the loss weights must be ≥ 0 and not both zero");
    }
    match (c.weight_energy > 0.0, energy) {
        (true, None) => return bad("energy", "training by energy (weight_energy > 0) needs an energy"),
        (_, Some(e)) if e.dim() != dim => {
            return Err(Error::Shape { what: format!("energy `{}`", e.name()), expected: vec![dim], got: vec![e.dim()] });
        }
        _ => {}
    }
    if c.weight_data > 0.0 {
        let Some(d) = data else { return bad("data", "training by data (weight_data > 0) needs samples") };
        if d.ncols() != dim || d.nrows() == 0 {
            return Err(Error::Shape { what: "training data".into(), expected: vec![d.nrows().max(1), dim], got: vec![d.nrows(), d.ncols()] });
        }
        if let Some(r) = d.rows().into_iter().position(|r| r.iter().any(|v| !v.is_finite())) {
            return Err(Error::NonFiniteInput { what: "training data", index: r });
        }
    }
    if let Some(g) = c.grad_clip {
        if !(g > 0.0) {
            return bad("grad_clip", "must be > 0");
        }
    }
    c.flow.validate(dim)
}

/// The CPU engine: the f64 flow with hand-written VJPs and a flat Adam.
struct CpuEngine {
    params: Vec<f64>,
    adam: Adam<f64>,
    grad: Vec<f64>,
}

/// The device engine: the flow as a [`FlowModule`] (f32 or f64, [`TrainConfig::precision`])
/// on an autodiff device, burn's Adam.
struct BurnEngine {
    flow: FlowModule,
    optim: ModuleOptimizer,
    device: Device,
    dtype: DType,
}

enum Engine {
    Cpu(CpuEngine),
    Burn(Box<BurnEngine>),
}

/// Boltzmann-generator training as a [`Trainer`]: the flow (owned while training), the
/// optimizer, the energy and/or data it learns from.
///
/// On the CPU device the flow trains in f64 with the hand-written VJPs of [`crate::flows`]
/// (the fast path); on any other device as a [`FlowModule`] with burn's autodiff, in
/// [`TrainConfig::precision`] (f32 by default). The
/// energy and the base density are evaluated on the host in f64 in both cases: the device
/// computes `x = f(z)` (or `z = f⁻¹(x)`) and `log|det|`, the host their cotangents
/// `∂L/∂x = −β u'(x)·F(x)/B` and `∂L/∂log|det| = −1/B`, and the device back-propagates
/// `Σ x ⊙ x̄ + Σ ld ⊙ l̄d`, whose parameter gradient is that of the loss. Every step draws the
/// same `z` and data rows from the step's RNG on every device.
pub struct BgTrainer<'a> {
    bg: BoltzmannGenerator,
    energy: Option<&'a dyn Energy>,
    data: Option<ArrayView2<'a, f64>>,
    config: TrainConfig,
    engine: Engine,
}

/// The values and cotangents of one loss term, computed on the host.
struct Term {
    /// `∂L/∂out` for the flow's output `[B, dim]` (`x` by energy, `z` by data).
    out_bar: Array2<f64>,
    /// `∂L/∂ld` `[B]`.
    ld_bar: Array1<f64>,
}

impl<'a> BgTrainer<'a> {
    /// Train `bg` on `device` by the losses `config` weights. With data and a fresh start,
    /// data-dependent layers (ActNorm) are initialised from it (a resumed run then loads its
    /// parameters).
    ///
    /// # Errors
    /// `InvalidArgument` / `Shape` / `NonFinite` for bad settings or data, naming them.
    pub fn new(
        bg: BoltzmannGenerator,
        energy: Option<&'a dyn Energy>,
        data: Option<ArrayView2<'a, f64>>,
        config: &TrainConfig,
        device: &Device,
    ) -> Result<Self> {
        Self::build(bg, energy, data, config, device, false)
    }

    /// The same trainer on the burn path even on the CPU device: for the tests and benchmarks
    /// that compare the two paths (a user picks a device, never a path).
    #[doc(hidden)]
    pub fn new_burn_path(
        bg: BoltzmannGenerator,
        energy: Option<&'a dyn Energy>,
        data: Option<ArrayView2<'a, f64>>,
        config: &TrainConfig,
        device: &Device,
    ) -> Result<Self> {
        Self::build(bg, energy, data, config, device, true)
    }

    fn build(
        bg: BoltzmannGenerator,
        energy: Option<&'a dyn Energy>,
        data: Option<ArrayView2<'a, f64>>,
        config: &TrainConfig,
        device: &Device,
        force_burn: bool,
    ) -> Result<Self> {
        let mut bg = bg;
        validate(bg.dim(), energy, data, config)?;
        if bg.config != config.flow {
            return Err(Error::InvalidArgument { name: "flow", reason: "the generator was built from another architecture than config.flow".into() });
        }
        if let (Some(d), true) = (data, config.weight_data > 0.0) {
            bg.flow.data_init(d)?;
        }
        let params = bg.flow.params();
        let engine = if device.clone().without_autodiff() == Device::flex() && !force_burn {
            let n = params.len();
            Engine::Cpu(CpuEngine { params, adam: Adam::<f64>::new(n), grad: vec![0.0; n] })
        } else {
            let dtype = config.precision.dtype_on(device)?;
            let ad = device.clone().autodiff();
            let flow = FlowModule::new(&bg.config, bg.dim(), bg.seed, &params, &ad, dtype)?;
            Engine::Burn(Box::new(BurnEngine { flow, optim: crate::train::burn_adam(), device: ad, dtype }))
        };
        Ok(Self { bg, energy, data, config: config.clone(), engine })
    }

    /// Whether this run trains on the CPU engine (f64, hand-written VJPs).
    pub fn cpu_engine(&self) -> bool {
        matches!(self.engine, Engine::Cpu(_))
    }

    /// The generator as it stands (its f64 CPU flow with the trained parameters).
    ///
    /// # Errors
    /// [`Error::Device`] when the device parameters cannot be read back.
    pub fn into_generator(self) -> Result<BoltzmannGenerator> {
        let mut bg = self.bg;
        if let Engine::Burn(e) = &self.engine {
            bg.flow.set_params(&e.flow.flat_params()?)?;
        }
        Ok(bg)
    }

    /// The loop options of this configuration (Adam at a constant rate, global-norm clip).
    pub fn run_options(config: &TrainConfig) -> RunOptions {
        RunOptions {
            steps: config.steps,
            batch_size: config.batch_size,
            lr: config.lr,
            grad_clip: config.grad_clip,
            seed: config.seed,
            log_every: config.log_every,
            checkpoint_every: config.checkpoint_every,
            ..RunOptions::default()
        }
    }

    /// The energy weight at `step` (after the ramp).
    fn energy_weight(&self, step: usize) -> f64 {
        let c = &self.config;
        if c.energy_ramp > 0 {
            c.weight_energy * (step as f64 / c.energy_ramp as f64).min(1.0)
        } else {
            c.weight_energy
        }
    }

    /// Host cotangents of the energy loss at `x = f(z)` with `log|det| = ld` and base
    /// log-density `lp`: the term, `E[βu + log q]` and the Kish ESS/N of the batch.
    fn energy_term(&self, x: &Array2<f64>, ld: &Array1<f64>, lp: &Array1<f64>) -> Result<(Term, f64, f64)> {
        let (config, energy) = (&self.config, self.energy.expect("validated"));
        let bsz = x.nrows();
        let (u, f) = crate::energy::evaluate(energy, x.view())?;
        let log_q = lp - ld;
        let log_w = reweight::log_weights(config.beta, u.view(), log_q.view())?;
        let kl = (-&log_w).mean().unwrap_or(f64::NAN);
        let ess = reweight::kish_ess(log_w.view()).map(|e| e / bsz as f64).unwrap_or(f64::NAN);
        let mut x_bar = Array2::zeros(x.dim());
        for (b, (mut row, frow)) in x_bar.rows_mut().into_iter().zip(f.rows()).enumerate() {
            let (_, du) = linlogcut(u[b], config.energy_cut);
            let s = -config.beta * du / bsz as f64;
            row.zip_mut_with(&frow, |g, fi| *g = s * fi);
        }
        Ok((Term { out_bar: x_bar, ld_bar: Array1::from_elem(bsz, -1.0 / bsz as f64) }, kl, ess))
    }

    /// Host cotangents of the data loss at `z = f⁻¹(x)` with `log|det ∂z/∂x| = ld`: the term
    /// and the negative log-likelihood of the batch.
    fn data_term(&self, z: &Array2<f64>, ld: &Array1<f64>) -> Result<(Term, f64)> {
        let bsz = z.nrows();
        let lp = self.bg.base.log_prob(z.view())?;
        let nll = -(lp + ld).mean().unwrap_or(f64::NAN);
        let z_bar = -self.bg.base.grad_log_prob(z.view()) / bsz as f64;
        Ok((Term { out_bar: z_bar, ld_bar: Array1::from_elem(bsz, -1.0 / bsz as f64) }, nll))
    }

    /// The step's loss terms and the parameter gradient (in the engine's form), without the
    /// optimizer step: `[total, KL, NLL, ESS/N]`.
    fn losses_and_grads(&mut self, step: usize, rng: &mut StdRng) -> Result<(Vec<f64>, Grads)> {
        let bsz = self.config.batch_size;
        let (we, wd) = (self.energy_weight(step), self.config.weight_data);
        let (mut kl, mut nll, mut ess, mut total) = (f64::NAN, f64::NAN, f64::NAN, 0.0);
        // The same draws in the same order on every engine: z, then the data rows.
        let z = (self.config.weight_energy > 0.0).then(|| self.bg.base.sample(bsz, rng));
        let xd = if wd > 0.0 {
            let d = self.data.expect("validated");
            let idx: Vec<usize> = (0..bsz).map(|_| rng.random_range(0..d.nrows())).collect();
            Some(d.select(Axis(0), &idx))
        } else {
            None
        };
        match &self.engine {
            Engine::Cpu(_) => {
                let n_params = self.bg.flow.num_params();
                let mut grad = vec![0.0; n_params];
                if let Some(z) = &z {
                    let lp = self.bg.base.log_prob(z.view())?;
                    let mut stats = (0.0, 0.0);
                    let mut e_grad = vec![0.0; n_params];
                    self.bg.flow.forward_and_vjp(
                        z.view(),
                        |x, ld| {
                            let (t, k, e) = self.energy_term(x, ld, &lp)?;
                            stats = (k, e);
                            Ok((t.out_bar, t.ld_bar))
                        },
                        &mut e_grad,
                    )?;
                    (kl, ess) = stats;
                    crate::train::check_loss(step, kl)?;
                    if we > 0.0 {
                        grad.iter_mut().zip(&e_grad).for_each(|(g, e)| *g += we * e);
                    }
                    total += we * kl;
                }
                if let Some(x) = &xd {
                    let mut value = 0.0;
                    let mut d_grad = vec![0.0; n_params];
                    self.bg.flow.inverse_and_vjp(
                        x.view(),
                        |z, ld| {
                            let (t, v) = self.data_term(z, ld)?;
                            value = v;
                            Ok((t.out_bar, t.ld_bar))
                        },
                        &mut d_grad,
                    )?;
                    nll = value;
                    crate::train::check_loss(step, nll)?;
                    grad.iter_mut().zip(&d_grad).for_each(|(g, e)| *g += wd * e);
                    total += wd * nll;
                }
                Ok((vec![total, kl, nll, ess], Grads::Flat(grad)))
            }
            Engine::Burn(e) => {
                let on = (&e.device, e.dtype);
                let upload = |a: &Array2<f64>| crate::host::tensor_from_array2(&a.view(), &e.device, e.dtype);
                let column = |a: &Array1<f64>| Tensor::<1>::from_data(TensorData::new(a.to_vec(), [a.len()]), on);
                let mut surrogate: Option<Tensor<1>> = None;
                let mut add = |t: Tensor<1>| {
                    surrogate = Some(match surrogate.take() {
                        Some(s) => s + t,
                        None => t,
                    })
                };
                if let Some(z) = &z {
                    let lp = self.bg.base.log_prob(z.view())?;
                    let (x, ld) = e.flow.forward(upload(z))?;
                    let (xh, ldh) = (crate::host::array2_from_tensor(&x)?, Array1::from(ld.host_vec::<f64>()?));
                    let (t, k, es) = self.energy_term(&xh, &ldh, &lp)?;
                    (kl, ess) = (k, es);
                    crate::train::check_loss(step, kl)?;
                    total += we * kl;
                    if we > 0.0 {
                        add(((x * upload(&t.out_bar)).sum() + (ld * column(&t.ld_bar)).sum()).mul_scalar(we));
                    }
                }
                if let Some(x) = &xd {
                    let (zt, ld) = e.flow.inverse(upload(x))?;
                    let (zh, ldh) = (crate::host::array2_from_tensor(&zt)?, Array1::from(ld.host_vec::<f64>()?));
                    let (t, v) = self.data_term(&zh, &ldh)?;
                    nll = v;
                    crate::train::check_loss(step, nll)?;
                    total += wd * nll;
                    add(((zt * upload(&t.out_bar)).sum() + (ld * column(&t.ld_bar)).sum()).mul_scalar(wd));
                }
                let grads = match surrogate {
                    Some(s) => GradientsParams::from_grads(s.backward(), &e.flow),
                    None => GradientsParams::new(),
                };
                Ok((vec![total, kl, nll, ess], Grads::Burn(grads)))
            }
        }
    }

    /// The losses `[total, KL, NLL, ESS/N]` of step `step`'s draws from `rng` and the gradient
    /// of the total in the flat layout of [`crate::flows::Flow::params`], without an optimizer
    /// step: what the engine-parity tests compare.
    ///
    /// # Errors
    /// As [`Trainer::step`].
    pub fn loss_and_grad(&mut self, step: usize, rng: &mut StdRng) -> Result<(Vec<f64>, Vec<f64>)> {
        let (values, grads) = self.losses_and_grads(step, rng)?;
        let flat = match (&self.engine, grads) {
            (_, Grads::Flat(g)) => g,
            (Engine::Burn(e), Grads::Burn(g)) => e.flow.flat_grads(&g)?,
            (Engine::Cpu(_), Grads::Burn(_)) => unreachable!("the CPU engine returns flat gradients"),
        };
        Ok((values, flat))
    }
}

/// A step's gradient: flat f64 (CPU engine) or burn's per-parameter gradients.
enum Grads {
    Flat(Vec<f64>),
    Burn(GradientsParams),
}

impl Trainer for BgTrainer<'_> {
    fn kind(&self) -> &'static str {
        "Boltzmann generator"
    }

    fn config(&self) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "dim": self.bg.dim(),
            "build_seed": self.bg.seed,
            "flow": c.flow,
            "beta": c.beta,
            "weight_energy": c.weight_energy,
            "weight_data": c.weight_data,
            "energy_ramp": c.energy_ramp,
            "energy_cut": c.energy_cut,
            "engine": match &self.engine {
                Engine::Cpu(_) => "cpu f64".to_string(),
                Engine::Burn(e) => format!("burn {:?}", e.dtype).to_lowercase(),
            },
        })
    }

    /// `[total loss, KL, NLL, ESS/N]` (NaN for a term that is off).
    fn loss_names(&self) -> Vec<String> {
        vec!["loss".into(), "kl".into(), "nll".into(), "ess_fraction".into()]
    }

    fn step(&mut self, step: usize, lr: f64, rng: &mut StdRng) -> Result<Vec<f64>> {
        let (values, grads) = self.losses_and_grads(step, rng)?;
        let clip = self.config.grad_clip;
        match (&mut self.engine, grads) {
            (Engine::Cpu(e), Grads::Flat(mut grad)) => {
                if let Some(bad) = grad.iter().find(|g| !g.is_finite()) {
                    return Err(Error::Diverged { iteration: step, loss: *bad });
                }
                clip_global_norm(&mut grad, clip);
                e.grad = grad;
                e.adam.step(&mut e.params, &e.grad, lr);
                self.bg.flow.set_params(&e.params)?;
            }
            (Engine::Burn(e), Grads::Burn(mut gp)) => {
                let norm = crate::train::clip_grad_norm(&e.flow, &mut gp, clip.unwrap_or(f64::INFINITY))?;
                if !norm.is_finite() {
                    return Err(Error::Diverged { iteration: step, loss: norm });
                }
                let flow = std::mem::replace(&mut e.flow, FlowModule::empty(self.bg.dim()));
                e.flow = e.optim.step(lr, flow, gp);
            }
            _ => unreachable!("each engine returns its own gradient form"),
        }
        Ok(values)
    }

    fn save(&self, w: &mut CheckpointWriter) -> Result<()> {
        match &self.engine {
            Engine::Cpu(e) => {
                w.json("params", &e.params)?;
                w.json("adam", &e.adam)
            }
            Engine::Burn(e) => {
                // The flat parameters as well, so `load_generator` reads either engine's file.
                w.json("params", &e.flow.flat_params()?)?;
                w.module("model", &burn::module::Module::valid(&e.flow))?;
                w.optimizer("optimizer", &e.optim)
            }
        }
    }

    fn load(&mut self, r: &CheckpointReader) -> Result<()> {
        match &mut self.engine {
            Engine::Cpu(e) => {
                let params: Vec<f64> = r.json("params")?;
                if params.len() != e.params.len() {
                    return Err(Error::Shape { what: "checkpoint parameters".into(), expected: vec![e.params.len()], got: vec![params.len()] });
                }
                e.params = params;
                self.bg.flow.set_params(&e.params)?;
                e.adam = r.json("adam")?;
            }
            Engine::Burn(e) => {
                e.flow = r.module("model", e.flow.clone())?;
                e.optim = r.optimizer("optimizer", std::mem::replace(&mut e.optim, crate::train::burn_adam()))?;
            }
        }
        Ok(())
    }
}

/// Trains `bg` (in place) on `device` by the losses that `config` weights, from `energy`
/// and/or `data` (`[n, dim]` samples of the target at the same `β`), through
/// [`crate::train::fit`]. On the CPU device the flow trains in f64 with hand-written VJPs, on
/// others as a [`FlowModule`] in f32 ([`BgTrainer`]); either way `bg` ends with the trained
/// parameters in its f64 flow. Each step draws its randomness from `(seed, step)`, so a run
/// resumed from `run.checkpoint` continues exactly as if uninterrupted. With data and a fresh
/// start, data-dependent layers (ActNorm) are initialised from it.
///
/// # Errors
/// `InvalidArgument` / `Shape` / `NonFinite` for bad settings or data, naming them;
/// `Diverged` at the first non-finite loss or gradient; a checkpoint written with other
/// settings (another engine included) is refused; I/O errors of the checkpoint;
/// [`Error::Device`] for a device that fails.
pub fn train<'a>(
    bg: &mut BoltzmannGenerator,
    energy: Option<&'a dyn Energy>,
    data: Option<ArrayView2<'a, f64>>,
    config: &TrainConfig,
    device: &Device,
    run: &mut Run<'_, BgTrainer<'a>>,
) -> Result<TrainReport> {
    // The trainer trains a copy (same architecture, seed and parameters): `bg` is untouched
    // when the settings are refused, and receives the parameters once training ran.
    let copy = bg.duplicate()?;
    let mut trainer = BgTrainer::new(copy, energy, data, config, device)?;
    if run.label == "train" {
        run.label = "bg train".into();
    }
    let result = crate::train::fit(&mut trainer, &BgTrainer::run_options(config), run);
    *bg = trainer.into_generator()?;
    let fit = result?;
    let log = fit.log.iter().map(|r| LogEntry { step: r.step, seconds: r.seconds, kl: r.values[1], nll: r.values[2], ess_fraction: r.values[3] }).collect();
    Ok(TrainReport { log, seconds: fit.seconds, steps_run: fit.steps_run, steps: fit.step })
}

/// Loads the generator of a checkpoint directory written by [`train`].
///
/// # Errors
/// `Io` / `Format` for an unreadable or foreign checkpoint; `InvalidArgument` for a bad
/// architecture in it.
pub fn load_generator(dir: &FsPath) -> Result<BoltzmannGenerator> {
    let (r, state) = crate::train::Checkpoint::new(dir).read_state("Boltzmann generator")?;
    let fmt = |e: String| Error::Format { path: dir.join("state.json").display().to_string(), reason: e };
    let c = &state.config;
    let flow: FlowConfig = serde_json::from_value(c.get("flow").cloned().unwrap_or_default()).map_err(|e| fmt(e.to_string()))?;
    let dim = c.get("dim").and_then(|v| v.as_u64()).ok_or_else(|| fmt("no `dim`".into()))? as usize;
    let seed = c.get("build_seed").and_then(|v| v.as_u64()).ok_or_else(|| fmt("no `build_seed`".into()))?;
    let mut bg = BoltzmannGenerator::new(&flow, dim, seed)?;
    let params: Vec<f64> = r.json("params")?;
    if params.len() != bg.flow.num_params() {
        return Err(fmt(format!("{} parameters for an architecture of {}", params.len(), bg.flow.num_params())));
    }
    bg.flow.set_params(&params)?;
    Ok(bg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::Base;
    use rand::SeedableRng;

    fn cpu() -> Device {
        Device::flex()
    }

    /// `u = ½ Σ_k (x_k − μ_k)² / σ_k²`: at β = 1, `p = N(μ, diag σ²)`, `log Z = (d/2) log 2π + Σ log σ_k`.
    struct Gaussian {
        mu: Vec<f64>,
        sigma: Vec<f64>,
        nan_after: Option<f64>,
    }

    impl Energy for Gaussian {
        fn dim(&self) -> usize {
            self.mu.len()
        }
        fn energy(&self, x: ArrayView2<f64>) -> Array1<f64> {
            self.energy_and_force(x).0
        }
        fn energy_and_force(&self, x: ArrayView2<f64>) -> (Array1<f64>, Array2<f64>) {
            let mut f = Array2::zeros(x.dim());
            let mut u = Array1::zeros(x.nrows());
            for b in 0..x.nrows() {
                for k in 0..self.dim() {
                    let r = (x[[b, k]] - self.mu[k]) / self.sigma[k];
                    u[b] += 0.5 * r * r;
                    f[[b, k]] = -r / self.sigma[k];
                }
                if self.nan_after.is_some_and(|c| x[[b, 0]] > c) {
                    u[b] = f64::NAN;
                }
            }
            (u, f)
        }
        fn name(&self) -> String {
            "gaussian".into()
        }
    }

    fn target() -> Gaussian {
        Gaussian { mu: vec![1.0, -2.0], sigma: vec![0.5, 2.0], nan_after: None }
    }

    fn log_z(g: &Gaussian) -> f64 {
        0.5 * g.dim() as f64 * (2.0 * std::f64::consts::PI).ln() + g.sigma.iter().map(|s| s.ln()).sum::<f64>()
    }

    fn config(steps: usize) -> TrainConfig {
        TrainConfig { flow: FlowConfig::real_nvp(4, vec![32, 32]), steps, batch_size: 256, lr: 3e-3, log_every: 50, ..TrainConfig::default() }
    }

    #[test]
    fn energy_training_learns_a_gaussian_and_reweighting_recovers_log_z() {
        let g = target();
        let c = config(800);
        let mut bg = BoltzmannGenerator::new(&c.flow, 2, c.seed).unwrap();
        let rep = train(&mut bg, Some(&g), None, &c, &cpu(), &mut Run::quiet()).unwrap();
        assert_eq!(rep.steps, 800);
        let w = bg.sample_weighted(&g, 1.0, 20000, &mut StdRng::seed_from_u64(1)).unwrap();
        let ess = reweight::kish_ess(w.log_w.view()).unwrap() / 20000.0;
        // An affine map suffices here, so a trained flow is near exact: ESS/N well above 0.9.
        assert!(ess > 0.95, "ESS/N {ess}");
        // log Z = log E_q[w]; delta-method SE = std(w) / (mean(w) √n).
        let m = w.log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let ws: Vec<f64> = w.log_w.iter().map(|l| (l - m).exp()).collect();
        let mean = ws.iter().sum::<f64>() / ws.len() as f64;
        let sd = (ws.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (ws.len() - 1) as f64).sqrt();
        let est = m + mean.ln();
        let se = sd / mean / (ws.len() as f64).sqrt();
        assert!((est - log_z(&g)).abs() < 4.0 * se + 1e-3, "log Z {est} ± {se} vs {}", log_z(&g));
        // The logged KL estimate E[βu + log q] tends to −log Z from above.
        let last = rep.log.last().unwrap();
        assert!(last.kl > -log_z(&g) - 0.01 && last.kl < -log_z(&g) + 0.05, "KL {} vs −log Z {}", last.kl, -log_z(&g));
    }

    #[test]
    fn data_training_reaches_the_entropy_on_held_out_samples() {
        let g = target();
        let mut rng = StdRng::seed_from_u64(5);
        let draw = |rng: &mut StdRng, n: usize| {
            let z = Base::StandardNormal { dim: 2 }.sample(n, rng);
            Array2::from_shape_fn((n, 2), |(b, k)| g.mu[k] + g.sigma[k] * z[[b, k]])
        };
        let train_x = draw(&mut rng, 4000);
        let test_x = draw(&mut rng, 4000);
        let c = TrainConfig { weight_energy: 0.0, weight_data: 1.0, ..config(600) };
        let mut bg = BoltzmannGenerator::new(&c.flow, 2, 0).unwrap();
        train(&mut bg, None, Some(train_x.view()), &c, &cpu(), &mut Run::quiet()).unwrap();
        let nll = -bg.log_prob(test_x.view()).unwrap();
        // Entropy of N(μ, diag σ²): (d/2)(1 + log 2π) + Σ log σ = log Z + 1 here. The held-out mean
        // has SE sd(nll)/√4000; allow 0.02 nats of model error on top.
        let h = log_z(&g) + 1.0;
        let se = nll.std(1.0) / (4000f64).sqrt();
        let m = nll.mean().unwrap();
        assert!((m - h).abs() < 4.0 * se + 0.02, "NLL {m} ± {se} vs entropy {h}");
    }

    #[test]
    fn resume_is_exact_and_bad_runs_are_errors() {
        let g = target();
        let dir = std::env::temp_dir().join(format!("physflow-bg-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = dir.join("bg");
        let _ = std::fs::remove_dir_all(&ck);
        let c = TrainConfig { checkpoint_every: 10, weight_data: 0.5, ..config(20) };
        let data = Array2::from_shape_fn((64, 2), |(b, k)| (b as f64 * 0.37 + k as f64).sin());
        let mut full = BoltzmannGenerator::new(&c.flow, 2, 0).unwrap();
        train(&mut full, Some(&g), Some(data.view()), &c, &cpu(), &mut Run::quiet()).unwrap();
        let mut first = BoltzmannGenerator::new(&c.flow, 2, 0).unwrap();
        train(&mut first, Some(&g), Some(data.view()), &TrainConfig { steps: 10, ..c.clone() }, &cpu(), &mut Run::quiet().with_checkpoint(&ck)).unwrap();
        let mut second = BoltzmannGenerator::new(&c.flow, 2, 0).unwrap();
        let rep = train(&mut second, Some(&g), Some(data.view()), &c, &cpu(), &mut Run::quiet().with_checkpoint(&ck)).unwrap();
        assert_eq!(rep.steps_run, 10);
        // Bit-exact (compared without printing thousands of numbers on failure).
        assert!(second.flow.params() == full.flow.params(), "resumed parameters differ");
        assert!(load_generator(&ck).unwrap().flow.params() == full.flow.params(), "loaded parameters differ");
        // Other settings refuse the checkpoint.
        let other = TrainConfig { lr: 1e-4, ..c.clone() };
        let err =
            train(&mut BoltzmannGenerator::new(&c.flow, 2, 0).unwrap(), Some(&g), Some(data.view()), &other, &cpu(), &mut Run::quiet().with_checkpoint(&ck));
        assert!(matches!(err, Err(Error::InvalidArgument { name: "checkpoint", .. })));
        // Trained by energy alone: the data term is logged as NaN (JSON null), and the
        // checkpoint still resumes and loads.
        let ck = dir.join("bg-energy");
        let c = TrainConfig { checkpoint_every: 10, weight_data: 0.0, ..config(20) };
        let mut full = BoltzmannGenerator::new(&c.flow, 2, 0).unwrap();
        train(&mut full, Some(&g), None, &c, &cpu(), &mut Run::quiet()).unwrap();
        let mut first = BoltzmannGenerator::new(&c.flow, 2, 0).unwrap();
        train(&mut first, Some(&g), None, &TrainConfig { steps: 10, ..c.clone() }, &cpu(), &mut Run::quiet().with_checkpoint(&ck)).unwrap();
        let mut second = BoltzmannGenerator::new(&c.flow, 2, 0).unwrap();
        let rep = train(&mut second, Some(&g), None, &c, &cpu(), &mut Run::quiet().with_checkpoint(&ck)).unwrap();
        assert_eq!(rep.steps_run, 10);
        assert!(second.flow.params() == full.flow.params(), "energy-only: resumed parameters differ");
        assert!(load_generator(&ck).unwrap().flow.params() == full.flow.params(), "energy-only: loaded parameters differ");
        std::fs::remove_dir_all(&dir).unwrap();

        // A NaN energy is reported as divergence at the step it happened.
        let bad = Gaussian { nan_after: Some(2.0), ..target() };
        let err = train(&mut BoltzmannGenerator::new(&c.flow, 2, 0).unwrap(), Some(&bad), None, &config(5), &cpu(), &mut Run::quiet());
        assert!(matches!(err, Err(Error::Diverged { iteration: 0, .. })), "{err:?}");
        // Refused settings leave a trained generator as it was.
        let before = full.flow.params();
        assert!(train(&mut full, None, None, &config(5), &cpu(), &mut Run::quiet()).is_err());
        assert!(full.flow.params() == before, "a refused run changed the generator");
        // Missing inputs and wrong widths name the problem.
        let mut bg = BoltzmannGenerator::new(&c.flow, 2, 0).unwrap();
        assert!(matches!(train(&mut bg, None, None, &config(5), &cpu(), &mut Run::quiet()), Err(Error::InvalidArgument { name: "energy", .. })));
        let d3 = Array2::<f64>::zeros((4, 3));
        let cd = TrainConfig { weight_energy: 0.0, weight_data: 1.0, ..config(5) };
        assert!(matches!(train(&mut bg, None, Some(d3.view()), &cd, &cpu(), &mut Run::quiet()), Err(Error::Shape { .. })));
        assert!(toml::from_str::<TrainConfig>("steps = 5\nbatch = 3\n").is_err());
    }
}
