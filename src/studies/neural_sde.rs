//! Study: fit a neural SDE to trajectories of overdamped Langevin dynamics in a double well.
//!
//! 1. Simulate `dX = −U'(X) dt + √(2/β) dW`, `U(x) = h (x² − 1)²`, from `X0 ~ N(μ0, s0²)` (the
//!    left well) with SRA1 (strong order 1.5 for this additive noise) at a fine step in f64: the
//!    training and held-out ensembles, observed every `t_end / (n_times − 1)`.
//! 2. Fit a neural SDE `dX = f_φ(X) dt + g_ψ ∘ dW` (drift MLP; diffusion additive, `σ(MLP(0))`,
//!    by default — with a state-dependent `σ(MLP(x))` the fit can trade the drift for a
//!    noise-induced one, see docs/sde.md; f32) started from the data's initial states, by Adam on distribution distances
//!    between model and data: the sliced squared 2-Wasserstein distance between the joint laws
//!    of consecutive observations `(x_t, x_{t+Δ})` (projections on a few directions; in one
//!    dimension `W₂²` is the mean squared difference of sorted samples, its gradient a
//!    permutation of the residuals). The two-time law is the transition kernel, which pins down
//!    drift and diffusion; marginals alone do not (a state-dependent Stratonovich noise can
//!    mimic a drift).
//!    Gradients by the reversible-Heun adjoint (exact, O(1) memory) or another
//!    [`SdeGradient`]; a fresh Brownian path every iteration.
//! 3. Compare held-out marginals (with the data-vs-data distance between the training and
//!    held-out ensembles as the sampling-noise floor), the learned drift and diffusion with the
//!    true `−U'` and `√(2/β)`, draw paths, marginals, fields and the loss.

use std::path::Path;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::host::ToHost;
use crate::nn::{Mlp, MlpConfig};
use crate::ode::{Stats, Time, VectorField};
use crate::plot::{save_figure, Panel, Series};
use crate::sde::{sdeint, sdeint_for_grad, FnSde, GridBrownian, NeuralSde, SdeGradient, SdeOptions, SdeSolver, Sigmoid, StateFree};
use crate::train::{write_atomic, write_json, CheckpointReader, CheckpointWriter, LrSchedule, Run, RunOptions, Trainer};
use crate::{Error, Result};

/// Configuration of the neural SDE study; every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeuralSdeConfig {
    /// Barrier height `h` of `U(x) = h (x² − 1)²`.
    pub barrier: f64,
    /// Inverse temperature `β`; the noise is `√(2/β)`.
    pub beta: f64,
    /// Mean of the initial states.
    pub x0_mean: f64,
    /// Standard deviation of the initial states.
    pub x0_std: f64,
    /// Training trajectories.
    pub n_train: usize,
    /// Held-out trajectories.
    pub n_test: usize,
    /// Final time.
    pub t_end: f64,
    /// Observation times (including t = 0).
    pub n_times: usize,
    /// Step of the reference simulation (SRA1).
    pub data_dt: f64,
    /// Step of the model's solver.
    pub dt: f64,
    /// Hidden widths of the drift MLP.
    pub drift_hidden: Vec<usize>,
    /// Hidden widths of the diffusion MLP.
    pub diffusion_hidden: Vec<usize>,
    /// Trajectories per training iteration.
    pub batch: usize,
    /// Adam iterations.
    pub iterations: usize,
    /// Adam learning rate (cosine-decayed to 10 % over the run).
    pub lr: f64,
    /// Additive diffusion `g = σ(c)` (a learned constant; overdamped Langevin at one temperature
    /// has constant noise) instead of a state-dependent `g(x) = σ(MLP(x))`.
    pub additive_noise: bool,
    /// Model solver (Stratonovich; the reversible adjoint needs reversible Heun).
    pub solver: SdeSolver,
    /// Gradient strategy.
    pub gradient: SdeGradient,
    /// Save a checkpoint every this many iterations (0: never).
    pub checkpoint_every: usize,
    /// Seed of the data, the initialisation and everything random.
    pub seed: u64,
}

impl Default for NeuralSdeConfig {
    fn default() -> Self {
        Self {
            barrier: 1.0,
            beta: 2.5,
            x0_mean: -1.0,
            x0_std: 0.2,
            n_train: 1024,
            n_test: 1024,
            t_end: 3.0,
            n_times: 121,
            data_dt: 1e-3,
            dt: 0.025,
            drift_hidden: vec![64, 64],
            diffusion_hidden: vec![32],
            batch: 256,
            iterations: 400,
            lr: 5e-3,
            additive_noise: true,
            solver: SdeSolver::ReversibleHeun,
            gradient: SdeGradient::Reversible,
            checkpoint_every: 100,
            seed: 0,
        }
    }
}

/// Numbers of a finished study.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NeuralSdeReport {
    /// The configuration used.
    pub config: NeuralSdeConfig,
    /// The device trained on (`cpu`, `wgpu`, `cuda`).
    #[serde(default)]
    pub device: String,
    /// Iterations run (including resumed ones).
    pub iterations: usize,
    /// Training loss at the first and the last iteration.
    pub loss_initial: f64,
    /// Training loss at the last iteration.
    pub loss_final: f64,
    /// Held-out: mean over observation times of `W₂` between model and data marginals.
    pub test_w2_marginal: f64,
    /// The same for the untrained model.
    pub test_w2_marginal_untrained: f64,
    /// Sampling-noise floor: mean `W₂` between the training and held-out data marginals.
    pub data_w2_floor: f64,
    /// Fraction of held-out data in the right well (x > 0) at the final time.
    pub right_well_data: f64,
    /// The same for the model.
    pub right_well_model: f64,
    /// RMS difference of the learned drift and `−U'(x)` on `[−1.5, 1.5]`.
    pub drift_rmse: f64,
    /// RMS of `−U'(x)` on the same interval (for scale).
    pub drift_rms: f64,
    /// Mean learned diffusion on `[−1.5, 1.5]`.
    pub diffusion_mean: f64,
    /// The true diffusion `√(2/β)`.
    pub diffusion_true: f64,
    /// Backward-pass counters of the last iteration.
    pub last_backward: Stats,
    /// Wall-clock seconds of training in this run.
    pub train_seconds: f64,
    /// Files written.
    pub files: Vec<String>,
}

/// The drift and diffusion networks, one module for the optimizer and the checkpoint.
#[derive(Module, Debug)]
pub struct SdeNets {
    /// Drift `f_φ(x)`.
    pub drift: Mlp,
    /// Pre-sigmoid diffusion: `g_ψ(x) = σ(diffusion(x))`.
    pub diffusion: Mlp,
}

/// The neural SDE fit as a [`Trainer`]: a batch of training initial states per step, the
/// sliced two-time `W₂²` to the training ensemble, gradients through `sdeint_for_grad`.
struct NeuralSdeTrainer<'a> {
    cfg: &'a NeuralSdeConfig,
    nets: SdeNets,
    optim: ModuleOptimizer,
    train: &'a [Vec<f64>],
    targets: &'a Targets,
    device: Device,
    /// Solver counters of the last backward pass.
    last_backward: Stats,
}

impl Trainer for NeuralSdeTrainer<'_> {
    fn kind(&self) -> &'static str {
        "neural SDE"
    }

    fn config(&self) -> serde_json::Value {
        let mut c = serde_json::to_value(self.cfg).unwrap_or_default();
        if let Some(o) = c.as_object_mut() {
            for k in ["iterations", "checkpoint_every", "lr", "seed", "batch"] {
                o.remove(k);
            }
        }
        c
    }

    fn step(&mut self, it: usize, lr: f64, rng: &mut rand::rngs::StdRng) -> Result<Vec<f64>> {
        let cfg = self.cfg;
        let times = cfg.times();
        let steps = step_count(cfg);
        let h = cfg.t_end / steps as f64;
        let opts = SdeOptions::fixed(cfg.solver, h);
        // Batch of training initial states; the model's marginals are compared with the whole
        // training ensemble's (same initial law).
        let idx: Vec<usize> = (0..cfg.batch).map(|_| rng.random_range(0..cfg.n_train)).collect();
        let x0: Vec<f64> = idx.iter().map(|&i| self.train[0][i]).collect();
        let sde = model_sde(&self.nets, cfg);
        let w = GridBrownian::new(0.0, h, steps, [cfg.batch, 1], cfg.seed.wrapping_add(1000 + it as u64))?;
        // Horizon curriculum: the first tenth of the span at first, all of it from mid-training
        // (early observations fix the diffusion and the restoring drift before the slow
        // well-to-well transport is fitted).
        let frac = (0.1 + 1.8 * it as f64 / cfg.iterations as f64).min(1.0);
        let k = ((frac * (times.len() - 1) as f64).round() as usize + 1).clamp(3, times.len());
        let (ys, tape) = sdeint_for_grad(&sde, column(&x0, &self.device), &times[..k], &w, &opts, cfg.gradient)?;
        let model: Vec<Vec<f64>> = ys.iter().map(|y| y.host_vec::<f64>()).collect::<Result<_>>()?;
        let (loss, cot) = self.targets.loss(&model);
        if !loss.is_finite() {
            return Ok(vec![loss]);
        }
        let cot: Vec<Tensor<2>> = cot.iter().map(|c| column(c, &self.device)).collect();
        let grads = tape.backward(&cot)?;
        self.last_backward = grads.stats;
        let mut gp = GradientsParams::new();
        grads.params.drift.register_into(&self.nets.drift, &mut gp);
        grads.params.diffusion.register_into(&self.nets.diffusion, &mut gp);
        drop(tape);
        drop(sde);
        self.nets = self.optim.step(lr, self.nets.clone(), gp);
        Ok(vec![loss])
    }

    fn save(&self, w: &mut CheckpointWriter) -> Result<()> {
        w.module("model", &self.nets)?;
        w.optimizer("optimizer", &self.optim)?;
        w.json("stats", &self.last_backward)
    }

    fn load(&mut self, r: &CheckpointReader) -> Result<()> {
        self.nets = r.module("model", self.nets.clone())?;
        self.optim = r.optimizer("optimizer", std::mem::replace(&mut self.optim, AdamConfig::new().init()))?;
        self.last_backward = r.json("stats")?;
        Ok(())
    }
}

impl NeuralSdeConfig {
    fn check(&self) -> Result<()> {
        let bad = |name: &'static str, reason: &str| Err(Error::invalid(name, reason.to_string()));
        if self.n_times < 3 || self.t_end <= 0.0 {
            return bad("n_times, t_end", "need n_times >= 3 and t_end > 0");
        }
        if self.n_train < 2 || self.n_test < 2 || self.batch < 2 || self.batch > self.n_train {
            return bad("n_train, n_test, batch", "need at least 2 trajectories each and batch <= n_train");
        }
        if !(self.beta > 0.0 && self.dt > 0.0 && self.data_dt > 0.0 && self.dt <= self.t_end / (self.n_times - 1) as f64) {
            return bad("beta, dt, data_dt", "need positive beta and steps, and dt no larger than the observation interval");
        }
        Ok(())
    }

    fn times(&self) -> Vec<f64> {
        (0..self.n_times).map(|i| self.t_end * i as f64 / (self.n_times - 1) as f64).collect()
    }
}

/// `n` trajectories of the double-well Langevin SDE at `times`, `[n_times][n]`, simulated with
/// SRA1 at `data_dt` (rounded so that observation times fall on the step grid) in f64.
fn simulate(cfg: &NeuralSdeConfig, n: usize, seed: u64) -> Result<Vec<Vec<f64>>> {
    let times = cfg.times();
    let interval = times[1] - times[0];
    let per = (interval / cfg.data_dt).ceil() as usize;
    let dt = interval / per as f64;
    let steps = per * (cfg.n_times - 1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let x0: Vec<f64> = (0..n).map(|_| cfg.x0_mean + cfg.x0_std * rng.sample::<f64, _>(rand_distr::StandardNormal)).collect();
    let (h, sigma) = (cfg.barrier, (2.0 / cfg.beta).sqrt());
    let sde = FnSde::new(move |_t, x: Tensor<2>| (x.clone().powi_scalar(3) - x).mul_scalar(-4.0 * h), move |_t, x: Tensor<2>| x.ones_like().mul_scalar(sigma))
        .additive();
    let w = GridBrownian::with_levy_area(0.0, dt, steps, [n, 1], seed ^ 0x5DE)?;
    // The reference runs in f64 on the CPU whatever the training device (GPU backends may lack
    // f64, and the data must not depend on the device).
    let cpu = crate::device::reference_cpu();
    let y0 = Tensor::<2>::from_data(TensorData::new(x0, [n, 1]), (&cpu, DType::F64));
    let ys = sdeint(&sde, y0, &times, &w, &SdeOptions::fixed(SdeSolver::Sra1, dt))?;
    ys.iter().map(|y| y.host_vec::<f64>()).collect()
}

/// `W₂²` between the empirical law of `x` (any length) and of `reference` (sorted), with the
/// gradient with respect to every `x_i`: `x` sorted against the reference quantiles at
/// `(j + ½)/n`, linearly interpolated.
fn w2_squared(x: &[f64], reference_sorted: &[f64]) -> (f64, Vec<f64>) {
    let n = x.len();
    let m = reference_sorted.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut grad = vec![0.0; n];
    let mut loss = 0.0;
    for (j, &i) in order.iter().enumerate() {
        let pos = ((j as f64 + 0.5) / n as f64 * m as f64 - 0.5).clamp(0.0, (m - 1) as f64);
        let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
        let q = if lo + 1 < m { reference_sorted[lo] * (1.0 - frac) + reference_sorted[lo + 1] * frac } else { reference_sorted[lo] };
        let d = x[i] - q;
        loss += d * d / n as f64;
        grad[i] = 2.0 * d / n as f64;
    }
    (loss, grad)
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Directions `θ_j = jπ/K` of the sliced distance between two-time joint laws.
const SLICES: usize = 6;

/// Projections `cos θ x_t + sin θ x_{t+1}` of consecutive observations, for every slice.
fn project(a: &[f64], b: &[f64], theta: f64) -> Vec<f64> {
    let (c, s) = (theta.cos(), theta.sin());
    a.iter().zip(b).map(|(x, y)| c * x + s * y).collect()
}

fn theta(j: usize) -> f64 {
    std::f64::consts::PI * j as f64 / SLICES as f64
}

/// The data side of the loss: for every pair of consecutive observation times, the sorted
/// projections of the joint law of `(x_t, x_{t+Δ})` on [`SLICES`] directions.
struct Targets {
    marginals: Vec<Vec<f64>>,
    slices: Vec<Vec<Vec<f64>>>,
}

impl Targets {
    fn new(paths: &[Vec<f64>]) -> Self {
        let marginals = paths.iter().map(|p| sorted(p.clone())).collect();
        let slices = paths.windows(2).map(|w| (0..SLICES).map(|j| sorted(project(&w[0], &w[1], theta(j)))).collect()).collect();
        Self { marginals, slices }
    }

    /// Mean over consecutive time pairs of the sliced `W₂²` between the model's and the data's
    /// two-time joint laws (directions `jπ/K`: `j = 0` is the marginal at `t`, the others mix in
    /// `x_{t+Δ}`; the joint law of consecutive observations is the transition kernel, which
    /// pins down drift and diffusion where marginals alone do not), with cotangents per time.
    fn loss(&self, model: &[Vec<f64>]) -> (f64, Vec<Vec<f64>>) {
        let k = model.len();
        let mut cot = vec![vec![0.0; model[0].len()]; k];
        let mut total = 0.0;
        let weight = 1.0 / ((k - 1) * SLICES) as f64;
        for t in 0..k - 1 {
            for j in 0..SLICES {
                let th = theta(j);
                let (l, g) = w2_squared(&project(&model[t], &model[t + 1], th), &self.slices[t][j]);
                total += weight * l;
                let (c, s) = (th.cos(), th.sin());
                for i in 0..g.len() {
                    cot[t][i] += weight * c * g[i];
                    cot[t + 1][i] += weight * s * g[i];
                }
            }
        }
        (total, cot)
    }
}

fn column(v: &[f64], device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(TensorData::new(v.iter().map(|x| *x as f32).collect::<Vec<_>>(), [v.len(), 1]), (device, DType::F32))
}

/// The model SDE: drift network, diffusion `σ(net(x))` or, additive, `σ(net(0))`.
fn model_sde<'a>(nets: &'a SdeNets, cfg: &NeuralSdeConfig) -> crate::sde::NeuralSde<crate::nn::MlpField<'a>, Diffusion<'a>> {
    let g = if cfg.additive_noise {
        Diffusion::Additive(Sigmoid::new(StateFree::new(nets.diffusion.field())))
    } else {
        Diffusion::State(Sigmoid::new(nets.diffusion.field()))
    };
    let sde = NeuralSde::new(nets.drift.field(), g);
    if cfg.additive_noise {
        sde.additive()
    } else {
        sde
    }
}

/// The study's two diffusion models as one field type.
enum Diffusion<'a> {
    State(Sigmoid<crate::nn::MlpField<'a>>),
    Additive(Sigmoid<StateFree<crate::nn::MlpField<'a>>>),
}

impl VectorField<2> for Diffusion<'_> {
    type Params = crate::nn::MlpGrads;
    type Saved = (crate::nn::MlpSaved, Tensor<2>);

    fn eval(&self, t: &Time, y: &Tensor<2>) -> Tensor<2> {
        match self {
            Diffusion::State(g) => g.eval(t, y),
            Diffusion::Additive(g) => g.eval(t, y),
        }
    }
    fn eval_saving(&self, t: &Time, y: &Tensor<2>) -> (Tensor<2>, Self::Saved) {
        match self {
            Diffusion::State(g) => g.eval_saving(t, y),
            Diffusion::Additive(g) => g.eval_saving(t, y),
        }
    }
    fn vjp_saved(&self, saved: &Self::Saved, a: &Tensor<2>, params: Option<(&mut Self::Params, f64)>) -> Tensor<2> {
        match self {
            Diffusion::State(g) => g.vjp_saved(saved, a, params),
            Diffusion::Additive(g) => g.vjp_saved(saved, a, params),
        }
    }
    fn zero_params(&self) -> Self::Params {
        match self {
            Diffusion::State(g) => g.zero_params(),
            Diffusion::Additive(g) => g.zero_params(),
        }
    }
}

/// Model trajectories `[n_times][n]` from initial states `x0`.
fn sample(nets: &SdeNets, cfg: &NeuralSdeConfig, x0: &[f64], seed: u64, device: &Device) -> Result<Vec<Vec<f64>>> {
    let sde = model_sde(nets, cfg);
    let times = cfg.times();
    let steps = step_count(cfg);
    let w = GridBrownian::new(0.0, cfg.t_end / steps as f64, steps, [x0.len(), 1], seed)?;
    let ys = sdeint(&sde, column(x0, device), &times, &w, &SdeOptions::fixed(cfg.solver, cfg.t_end / steps as f64))?;
    Ok(ys.iter().map(|y| y.to_vec_as::<f64>()).collect())
}

/// Model steps: a whole number per observation interval, of at most `dt`.
fn step_count(cfg: &NeuralSdeConfig) -> usize {
    let interval = cfg.t_end / (cfg.n_times - 1) as f64;
    (interval / cfg.dt - 1e-9).ceil().max(1.0) as usize * (cfg.n_times - 1)
}

fn mean_w2(a: &[Vec<f64>], b: &Targets) -> f64 {
    (1..a.len()).map(|t| w2_squared(&a[t], &b.marginals[t]).0.sqrt()).sum::<f64>() / (a.len() - 1) as f64
}

/// Run the study, writing figures, report and checkpoints under `out`.
///
/// # Errors
/// Invalid configuration, solver failures, a diverging loss, or files that cannot be written.
pub fn run(cfg: &NeuralSdeConfig, device: &Device, out: &Path, resume: bool, quiet: bool) -> Result<NeuralSdeReport> {
    cfg.check()?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let train = simulate(cfg, cfg.n_train, cfg.seed.wrapping_mul(2).wrapping_add(11))?;
    let test = simulate(cfg, cfg.n_test, cfg.seed.wrapping_mul(2).wrapping_add(12))?;
    let train_targets = Targets::new(&train);
    let test_targets = Targets::new(&test);
    let data_w2_floor = mean_w2(&train, &test_targets);

    let ad = device.clone().autodiff();
    let mut sizes = vec![1];
    sizes.extend(&cfg.drift_hidden);
    sizes.push(1);
    let drift = MlpConfig::new(sizes).init(cfg.seed.wrapping_add(1), &ad)?;
    let mut sizes = vec![1];
    sizes.extend(&cfg.diffusion_hidden);
    sizes.push(1);
    let diffusion = MlpConfig::new(sizes).init(cfg.seed.wrapping_add(2), &ad)?;
    let mut trainer = NeuralSdeTrainer {
        cfg,
        nets: SdeNets { drift, diffusion },
        optim: AdamConfig::new().init(),
        train: &train,
        targets: &train_targets,
        device: device.clone(),
        last_backward: Stats::default(),
    };
    let ckpt = out.join("checkpoint");
    // The untrained networks' error, also for a resumed run (they are initialised from the seed
    // alone; `fit` loads the checkpoint), so that an interrupted and resumed run reports what an
    // uninterrupted one does.
    let test_w2_marginal_untrained = mean_w2(&sample(&trainer.nets, cfg, &test[0], cfg.seed ^ 0xE7A1, device)?, &test_targets);
    if crate::train::Checkpoint::new(&ckpt).exists() && !resume {
        std::fs::remove_dir_all(&ckpt).map_err(|e| Error::io(&ckpt, e))?;
    }
    let run_opts = RunOptions {
        steps: cfg.iterations,
        batch_size: cfg.batch,
        lr: cfg.lr,
        schedule: LrSchedule::Cosine { floor: 0.1 },
        seed: cfg.seed ^ 0xBA7C,
        log_every: 1,
        checkpoint_every: cfg.checkpoint_every,
        ..RunOptions::default()
    };
    let fit = crate::train::fit(&mut trainer, &run_opts, &mut Run { checkpoint: Some(ckpt), quiet, label: "neural SDE".into(), ..Run::default() })?;
    let train_seconds = fit.seconds;
    let losses: Vec<f64> = fit.losses().into_iter().map(|(_, l)| l).collect();
    let (nets, last_backward) = (trainer.nets, trainer.last_backward);

    let model_test = sample(&nets, cfg, &test[0], cfg.seed ^ 0xE7A1, device)?;
    let test_w2_marginal = mean_w2(&model_test, &test_targets);
    let right = |v: &[f64]| v.iter().filter(|x| **x > 0.0).count() as f64 / v.len() as f64;
    let last = cfg.n_times - 1;
    let (right_well_data, right_well_model) = (right(&test[last]), right(&model_test[last]));
    let xs: Vec<f64> = (0..=60).map(|i| -1.5 + 3.0 * i as f64 / 60.0).collect();
    let true_drift: Vec<f64> = xs.iter().map(|x| -4.0 * cfg.barrier * x * (x * x - 1.0)).collect();
    let (drift_fit, diffusion_fit) = fields(&nets, cfg, &xs, device);
    let drift_rmse = (drift_fit.iter().zip(&true_drift).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
    let drift_rms = (true_drift.iter().map(|a| a * a).sum::<f64>() / xs.len() as f64).sqrt();
    let diffusion_mean = diffusion_fit.iter().sum::<f64>() / xs.len() as f64;
    let diffusion_true = (2.0 / cfg.beta).sqrt();

    let figure = out.join("neural_sde.png");
    draw(&figure, cfg, &test, &model_test, &xs, (&true_drift, &drift_fit), (diffusion_true, &diffusion_fit), &losses)?;
    let json = out.join("neural_sde_report.json");
    let md = out.join("neural_sde_report.md");
    let report = NeuralSdeReport {
        config: cfg.clone(),
        device: crate::device::name_of(device),
        iterations: fit.step,
        loss_initial: losses.first().copied().unwrap_or(f64::NAN),
        loss_final: losses.last().copied().unwrap_or(f64::NAN),
        test_w2_marginal,
        test_w2_marginal_untrained,
        data_w2_floor,
        right_well_data,
        right_well_model,
        drift_rmse,
        drift_rms,
        diffusion_mean,
        diffusion_true,
        last_backward,
        train_seconds,
        files: [&figure, &json, &md].iter().map(|p| p.display().to_string()).collect(),
    };
    write_json(&json, &report)?;
    write_atomic(&md, markdown(&report).as_bytes())?;
    Ok(report)
}

/// The learned drift and diffusion at the points `xs`.
fn fields(nets: &SdeNets, cfg: &NeuralSdeConfig, xs: &[f64], device: &Device) -> (Vec<f64>, Vec<f64>) {
    use crate::sde::SdeField;
    let x = column(xs, device);
    let sde = model_sde(nets, cfg);
    (sde.drift(0.0, &x).to_vec_as::<f64>(), sde.diffusion(0.0, &x).to_vec_as::<f64>())
}

/// Histogram density of `v` on `bins` equal bins over `[lo, hi]`, as (centres, densities).
fn density(v: &[f64], lo: f64, hi: f64, bins: usize) -> (Vec<f64>, Vec<f64>) {
    let w = (hi - lo) / bins as f64;
    let mut counts = vec![0.0; bins];
    for x in v {
        let b = ((x - lo) / w).floor();
        if b >= 0.0 && (b as usize) < bins {
            counts[b as usize] += 1.0;
        }
    }
    let centres = (0..bins).map(|i| lo + (i as f64 + 0.5) * w).collect();
    (centres, counts.iter().map(|c| c / (v.len() as f64 * w)).collect())
}

#[allow(clippy::too_many_arguments)]
fn draw(
    path: &Path,
    cfg: &NeuralSdeConfig,
    data: &[Vec<f64>],
    model: &[Vec<f64>],
    xs: &[f64],
    drift: (&[f64], &[f64]),
    diffusion: (f64, &[f64]),
    losses: &[f64],
) -> Result<()> {
    let times = cfg.times();
    let path_of = |ens: &[Vec<f64>], i: usize| ens.iter().map(|t| t[i]).collect::<Vec<f64>>();
    let mut paths = Panel { title: "sample paths (held-out x0)".into(), xlabel: "t".into(), ylabel: "x".into(), ..Panel::default() };
    for i in 0..6 {
        let (ld, lm) = if i == 0 { ("data", "neural SDE") } else { ("", "") };
        paths.series.push(Series::line(ld, times.clone(), path_of(data, i), 0));
        paths.series.push(Series::dashed(lm, times.clone(), path_of(model, i), 1));
    }
    let mut marg = Panel { title: "marginal densities".into(), xlabel: "x".into(), ylabel: "p(x, t)".into(), ..Panel::default() };
    let picks = [(cfg.n_times - 1) / 6, (cfg.n_times - 1) / 2, cfg.n_times - 1];
    for (c, &k) in picks.iter().enumerate() {
        let (xd, pd) = density(&data[k], -2.2, 2.2, 44);
        let (xm, pm) = density(&model[k], -2.2, 2.2, 44);
        marg.series.push(Series::line(format!("data t = {:.1}", times[k]), xd, pd, c + 2));
        marg.series.push(Series::dashed(format!("model t = {:.1}", times[k]), xm, pm, c + 2));
    }
    let f = Panel {
        title: "drift and diffusion".into(),
        xlabel: "x".into(),
        ylabel: "f(x), g(x)".into(),
        series: vec![
            Series::line("−U'(x)", xs.to_vec(), drift.0.to_vec(), 0),
            Series::dashed("learned drift", xs.to_vec(), drift.1.to_vec(), 1),
            Series::line("√(2/β)", xs.to_vec(), vec![diffusion.0; xs.len()], 2),
            Series::dashed("learned diffusion", xs.to_vec(), diffusion.1.to_vec(), 3),
        ],
        log_y: false,
    };
    let mut panels = vec![paths, marg, f];
    if !losses.is_empty() {
        panels.push(Panel {
            title: "training loss".into(),
            xlabel: "iteration".into(),
            ylabel: "sliced W₂² of (x_t, x_t+Δ)".into(),
            series: vec![Series::line("", (0..losses.len()).map(|i| i as f64).collect(), losses.to_vec(), 0)],
            log_y: true,
        });
    }
    save_figure(path, &panels, 2)
}

fn markdown(r: &NeuralSdeReport) -> String {
    let c = &r.config;
    format!(
        "# Neural SDE study: overdamped Langevin in a double well\n\nTrained on device `{device}`.\n\n\
         System: dX = −U'(X) dt + √(2/β) dW, U(x) = {h}(x² − 1)², β = {beta}, X0 ~ N({m}, {s}²); \
         {ntr} training and {nte} held-out trajectories on [0, {t}] observed at {nt} times (SRA1, dt = {ddt}).\n\
         Model: drift MLP 1→{dh:?}→1, diffusion {gk} (MLP 1→{gh:?}→1), {solver:?} at dt ≤ {dt}, gradients by {grad}; \
         loss = sliced W₂² of the joint laws of consecutive observations.\n\n\
         | quantity | value |\n|---|---|\n\
         | iterations | {it} |\n| training loss, first / last iteration | {l0:.3e} / {l1:.3e} |\n\
         | held-out mean W₂ of marginals, trained | {w:.4} |\n| same, untrained | {wu:.4} |\n\
         | data-vs-data W₂ (sampling floor) | {fl:.4} |\n\
         | fraction in right well at t = {t}: data / model | {rd:.3} / {rm:.3} |\n\
         | drift RMSE vs −U' on [−1.5, 1.5] (RMS of −U': {dr:.3}) | {de:.3} |\n\
         | mean learned diffusion (true √(2/β)) | {gm:.3} ({gt:.3}) |\n\
         | last iteration backward: steps / evaluations / VJPs | {bs} / {be} / {bv} |\n\
         | training time (s) | {sec:.1} |\n\nFigure: `neural_sde.png`.\n",
        device = r.device,
        h = c.barrier,
        beta = c.beta,
        m = c.x0_mean,
        s = c.x0_std,
        ntr = c.n_train,
        nte = c.n_test,
        t = c.t_end,
        nt = c.n_times,
        ddt = c.data_dt,
        dh = c.drift_hidden,
        gh = c.diffusion_hidden,
        gk = if c.additive_noise { "additive σ(MLP(0))" } else { "σ(MLP(x))" },
        solver = c.solver,
        dt = c.dt,
        grad = c.gradient,
        it = r.iterations,
        l0 = r.loss_initial,
        l1 = r.loss_final,
        w = r.test_w2_marginal,
        wu = r.test_w2_marginal_untrained,
        fl = r.data_w2_floor,
        rd = r.right_well_data,
        rm = r.right_well_model,
        dr = r.drift_rms,
        de = r.drift_rmse,
        gm = r.diffusion_mean,
        gt = r.diffusion_true,
        bs = r.last_backward.steps,
        be = r.last_backward.nfe,
        bv = r.last_backward.nvjp,
        sec = r.train_seconds,
    )
}

/// The neural SDE study in the study table ([`super::TABLE`]).
pub struct NeuralSdeStudy;

impl super::Study for NeuralSdeStudy {
    type Config = NeuralSdeConfig;
    type Report = NeuralSdeReport;

    fn dir(_cfg: &NeuralSdeConfig) -> String {
        "neural_sde".into()
    }

    fn seed(cfg: &mut NeuralSdeConfig) -> &mut u64 {
        &mut cfg.seed
    }

    fn steps(cfg: &mut NeuralSdeConfig) -> &mut usize {
        &mut cfg.iterations
    }

    fn run(cfg: &NeuralSdeConfig, dir: &Path, ctx: &super::Context) -> Result<NeuralSdeReport> {
        run(cfg, &(ctx.device)()?, dir, ctx.resume, ctx.quiet)
    }

    fn summary(cfg: &NeuralSdeConfig, r: &NeuralSdeReport) -> String {
        format!(
            "neural SDE: held-out marginal W2 {:.4} (untrained {:.4}, data-vs-data floor {:.4}); right well at t = {}: data {:.3}, model {:.3}; diffusion {:.3} (true {:.3}); {:.1} s",
            r.test_w2_marginal, r.test_w2_marginal_untrained, r.data_w2_floor, cfg.t_end, r.right_well_data, r.right_well_model, r.diffusion_mean, r.diffusion_true, r.train_seconds
        )
    }

    fn files(r: &NeuralSdeReport) -> &[String] {
        &r.files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `W₂²` of two equal-size samples is the mean squared difference of the sorted samples
    /// (exact for empirical laws in one dimension); the gradient matches central differences.
    #[test]
    fn w2_of_sorted_samples() {
        let x = [0.3, -1.0, 2.0, 0.5];
        let r = sorted(vec![1.0, 0.0, -0.5, 2.5]);
        let (l, g) = w2_squared(&x, &r);
        let xs = sorted(x.to_vec());
        let want = xs.iter().zip(&r).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / 4.0;
        assert!((l - want).abs() < 1e-15, "{l} vs {want}");
        for i in 0..4 {
            let (mut a, mut b) = (x, x);
            a[i] += 1e-6;
            b[i] -= 1e-6;
            let fd = (w2_squared(&a, &r).0 - w2_squared(&b, &r).0) / 2e-6;
            assert!((fd - g[i]).abs() < 1e-8, "{i}: {fd} vs {}", g[i]);
        }
    }
}
