//! Study: fit a neural ODE to trajectories of a damped pendulum with the continuous adjoint.
//!
//! 1. Simulate `θ'' = −(g/L) sin θ − c θ'` from random initial states with Tsit5 at
//!    rtol = atol = 1e-10 in f64 (the reference data).
//! 2. Fit an MLP vector field `dy/dt = f_φ(y)` (2→64→64→2, tanh, f32) to the training
//!    trajectories by Adam on the mean squared error over all output times, gradients by
//!    the continuous adjoint (or another [`Gradient`]); the time horizon grows from a quarter
//!    to the full span during the first half of training (a standard curriculum for
//!    trajectory fitting).
//! 3. Measure the error on held-out initial states, draw data against model, write a report.

use std::path::Path;

use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::{Rng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::host::ToHost;
use crate::nn::{Mlp, MlpConfig};
use crate::ode::problems::DampedPendulum;
use crate::ode::{self, AdjointOptions, Gradient, Options, Solver, Stats};
use crate::plot::{save_figure, Panel, Series};
use crate::train::{write_atomic, write_json, CheckpointReader, CheckpointWriter, LrSchedule, Run, RunOptions, Trainer};
use crate::{Error, Result};

/// Configuration of the neural ODE study; every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeuralOdeConfig {
    /// The physical system.
    pub system: DampedPendulum,
    /// Training trajectories.
    pub n_train: usize,
    /// Held-out trajectories.
    pub n_test: usize,
    /// Final time (s).
    pub t_end: f64,
    /// Output times per trajectory (including t = 0).
    pub n_times: usize,
    /// Hidden widths of the MLP.
    pub hidden: Vec<usize>,
    /// Adam iterations.
    pub iterations: usize,
    /// Adam learning rate (cosine-decayed to 10 % over the run).
    pub lr: f64,
    /// Solver used in training and evaluation.
    pub solver: Solver,
    /// Its relative tolerance.
    pub rtol: f64,
    /// Its absolute tolerance.
    pub atol: f64,
    /// Gradient strategy.
    pub gradient: Gradient,
    /// Save a checkpoint every this many iterations (0: never).
    pub checkpoint_every: usize,
    /// Seed of the data, the initialisation and everything random.
    pub seed: u64,
}

impl Default for NeuralOdeConfig {
    fn default() -> Self {
        Self {
            system: DampedPendulum { g_over_l: 1.0, damping: 0.2 },
            n_train: 16,
            n_test: 8,
            t_end: 10.0,
            n_times: 41,
            hidden: vec![64, 64],
            iterations: 400,
            lr: 1e-2,
            solver: Solver::Tsit5,
            rtol: 1e-5,
            atol: 1e-6,
            gradient: Gradient::Adjoint(AdjointOptions::default()),
            checkpoint_every: 100,
            seed: 0,
        }
    }
}

/// Numbers of a finished study.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NeuralOdeReport {
    /// The configuration used.
    pub config: NeuralOdeConfig,
    /// The device trained on (`cpu`, `wgpu`, `cuda`).
    #[serde(default)]
    pub device: String,
    /// Iterations run (including resumed ones).
    pub iterations: usize,
    /// Training loss (MSE over the full horizon) at the start and the end.
    pub train_mse_initial: f64,
    /// Training loss at the end.
    pub train_mse_final: f64,
    /// MSE on held-out initial states over the full horizon.
    pub test_mse: f64,
    /// Variance of the held-out data (for scale: MSE / variance is the unexplained fraction).
    pub test_data_variance: f64,
    /// Solver counters of the last training iteration (forward).
    pub last_forward: Stats,
    /// Solver counters of the last training iteration (backward).
    pub last_backward: Stats,
    /// Wall-clock seconds of training in this run.
    pub train_seconds: f64,
    /// Files written.
    pub files: Vec<String>,
}

/// The neural ODE fit as a [`Trainer`]: the whole training set is the batch, the horizon grows
/// from a quarter of the span to all of it over the first half of the run.
struct NeuralOdeTrainer<'a> {
    cfg: &'a NeuralOdeConfig,
    mlp: Mlp,
    optim: ModuleOptimizer,
    y0: Tensor<2>,
    data: &'a [Tensor<2>],
    times: &'a [f64],
    opts: Options,
    /// Solver counters of the last step (forward, backward).
    last: (Stats, Stats),
}

impl Trainer for NeuralOdeTrainer<'_> {
    fn kind(&self) -> &'static str {
        "neural ODE"
    }

    fn config(&self) -> serde_json::Value {
        let c = self.cfg;
        serde_json::json!({ "system": c.system, "n_train": c.n_train, "t_end": c.t_end, "n_times": c.n_times, "hidden": c.hidden, "solver": c.solver, "rtol": c.rtol, "atol": c.atol, "gradient": c.gradient })
    }

    fn step(&mut self, step: usize, lr: f64, _rng: &mut rand::rngs::StdRng) -> Result<Vec<f64>> {
        // Horizon curriculum: a quarter of the span at first, the full span from mid-training.
        let n = self.times.len();
        let frac = (0.25 + 1.5 * step as f64 / self.cfg.iterations as f64).min(1.0);
        let k = ((frac * (n - 1) as f64).round() as usize + 1).clamp(3, n);
        let field = self.mlp.field();
        let (sol, tape) = ode::solve_for_grad(&field, self.y0.clone(), &self.times[..k], &self.opts, self.cfg.gradient.clone())?;
        let (loss, cot) = mse(&sol.ys, self.data, k);
        if !loss.is_finite() {
            return Ok(vec![loss]);
        }
        let grads = tape.backward(&cot)?;
        self.last = (sol.stats, grads.stats);
        let gp = grads.params.into_gradients_params(&self.mlp);
        drop(tape);
        drop(field);
        self.mlp = self.optim.step(lr, self.mlp.clone(), gp);
        Ok(vec![loss])
    }

    fn save(&self, w: &mut CheckpointWriter) -> Result<()> {
        w.module("model", &self.mlp)?;
        w.optimizer("optimizer", &self.optim)?;
        w.json("stats", &self.last)
    }

    fn load(&mut self, r: &CheckpointReader) -> Result<()> {
        self.mlp = r.module("model", self.mlp.clone())?;
        self.optim = r.optimizer("optimizer", std::mem::replace(&mut self.optim, AdamConfig::new().init()))?;
        self.last = r.json("stats")?;
        Ok(())
    }
}

/// Trajectories `[n_times]` of `[batch, 2]` tensors in `dtype` on `device`.
fn simulate(cfg: &NeuralOdeConfig, y0: &[[f64; 2]], times: &[f64], device: &Device, dtype: DType) -> Result<Vec<Tensor<2>>> {
    // The reference is computed in f64 on the CPU whatever the training device and precision
    // (GPU backends may lack f64, and the data must not depend on the device), then moved.
    let cpu = crate::device::reference_cpu();
    let flat: Vec<f64> = y0.iter().flat_map(|r| r.iter().copied()).collect();
    let y0 = Tensor::<2>::from_data(TensorData::new(flat, [y0.len(), 2]), (&cpu, DType::F64));
    let opts = Options::adaptive(Solver::Tsit5, 1e-10, 1e-10);
    let sol = ode::solve(&cfg.system.field(), y0, times, &opts)?;
    sol.ys.iter().map(|y| crate::device::transfer(y, device, dtype)).collect()
}

/// Initial states `θ0 ~ U(−1.5, 1.5)`, `ω0 ~ U(−1, 1)`: energies `ω²/2 + (g/L)(1 − cos θ)` below
/// the separatrix for `g/L ≥ 0.5`, so every trajectory librates and held-out states lie in the
/// region the training data covers.
fn initial_states(rng: &mut impl Rng, n: usize) -> Vec<[f64; 2]> {
    (0..n).map(|_| [rng.random_range(-1.5..1.5), rng.random_range(-1.0..1.0)]).collect()
}

/// Mean squared error over the first `k` output times, and its cotangents `∂L/∂y(t_i)`.
fn mse(pred: &[Tensor<2>], data: &[Tensor<2>], k: usize) -> (f64, Vec<Tensor<2>>) {
    let n = (k * data[0].dims()[0] * data[0].dims()[1]) as f64;
    let mut loss = 0.0;
    let cot = pred
        .iter()
        .zip(data)
        .take(k)
        .map(|(p, d)| {
            let diff = p.clone() - d.clone();
            loss += diff.clone().square().sum().into_scalar::<f64>() / n;
            diff.mul_scalar(2.0 / n)
        })
        .collect();
    (loss, cot)
}

fn predict(mlp: &Mlp, y0: Tensor<2>, times: &[f64], opts: &Options) -> Result<Vec<Tensor<2>>> {
    Ok(ode::solve(&mlp.field(), y0, times, opts)?.ys)
}

/// Run the study, writing figures, report and checkpoints under `out`.
///
/// # Errors
/// Solver failures, a diverging loss, or files that cannot be written.
pub fn run(cfg: &NeuralOdeConfig, device: &Device, out: &Path, resume: bool, quiet: bool) -> Result<NeuralOdeReport> {
    if cfg.n_times < 3 || cfg.n_train == 0 || cfg.n_test == 0 || cfg.t_end <= 0.0 {
        return Err(Error::invalid("config", "need n_times >= 3, n_train, n_test >= 1 and t_end > 0"));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let times: Vec<f64> = (0..cfg.n_times).map(|i| cfg.t_end * i as f64 / (cfg.n_times - 1) as f64).collect();
    let train_y0 = initial_states(&mut rng, cfg.n_train);
    let test_y0 = initial_states(&mut rng, cfg.n_test);
    let dtype = DType::F32;
    let train = simulate(cfg, &train_y0, &times, device, dtype)?;
    let test = simulate(cfg, &test_y0, &times, device, dtype)?;

    let mut sizes = vec![2];
    sizes.extend(&cfg.hidden);
    sizes.push(2);
    let mlp = MlpConfig::new(sizes).init(cfg.seed.wrapping_add(1), &device.clone().autodiff())?;
    let opts = Options::adaptive(cfg.solver, cfg.rtol, cfg.atol);
    let y0_train = train[0].clone();

    let run_opts = RunOptions {
        steps: cfg.iterations,
        batch_size: cfg.n_train,
        lr: cfg.lr,
        schedule: LrSchedule::Cosine { floor: 0.1 },
        seed: cfg.seed,
        log_every: 1,
        checkpoint_every: cfg.checkpoint_every,
        ..RunOptions::default()
    };
    let mut trainer = NeuralOdeTrainer {
        cfg,
        mlp,
        optim: AdamConfig::new().init(),
        y0: y0_train.clone(),
        data: &train,
        times: &times,
        opts: opts.clone(),
        last: Default::default(),
    };
    let ckpt = out.join("checkpoint");
    // The untrained network's error, also for a resumed run (the network is initialised from the
    // seed alone), so that a run interrupted and resumed reports what an uninterrupted one does.
    let (train_mse_initial, _) = mse(&predict(&trainer.mlp, y0_train.clone(), &times, &opts)?, &train, times.len());
    if crate::train::Checkpoint::new(&ckpt).exists() && !resume {
        std::fs::remove_dir_all(&ckpt).map_err(|e| Error::io(&ckpt, e))?;
    }
    let fit = crate::train::fit(&mut trainer, &run_opts, &mut Run { checkpoint: Some(ckpt), quiet, label: "neural ODE".into(), ..Run::default() })?;
    let train_seconds = fit.seconds;
    let (mlp, last) = (trainer.mlp, trainer.last);
    let losses: Vec<f64> = fit.losses().into_iter().map(|(_, l)| l).collect();

    let pred_train = predict(&mlp, y0_train, &times, &opts)?;
    let (train_mse_final, _) = mse(&pred_train, &train, times.len());
    let pred_test = predict(&mlp, test[0].clone(), &times, &opts)?;
    let (test_mse, _) = mse(&pred_test, &test, times.len());
    let test_data_variance = {
        let all: Vec<f64> = test.iter().flat_map(|t| t.to_vec_as::<f64>()).collect();
        let m = all.iter().sum::<f64>() / all.len() as f64;
        all.iter().map(|v| (v - m).powi(2)).sum::<f64>() / all.len() as f64
    };

    let figure = out.join("neural_ode.png");
    draw(&figure, &times, &test, &pred_test, &losses)?;
    let mut files = vec![figure.display().to_string()];
    let report = NeuralOdeReport {
        config: cfg.clone(),
        device: crate::device::name_of(device),
        iterations: fit.step,
        train_mse_initial,
        train_mse_final,
        test_mse,
        test_data_variance,
        last_forward: last.0,
        last_backward: last.1,
        train_seconds,
        files: Vec::new(),
    };
    let json = out.join("neural_ode_report.json");
    let md = out.join("neural_ode_report.md");
    files.push(json.display().to_string());
    files.push(md.display().to_string());
    let report = NeuralOdeReport { files, ..report };
    write_json(&json, &report)?;
    write_atomic(&md, markdown(&report).as_bytes())?;
    Ok(report)
}

fn columns(ys: &[Tensor<2>], sample: usize) -> (Vec<f64>, Vec<f64>) {
    ys.iter()
        .map(|y| {
            let row = y.clone().narrow(0, sample, 1).to_vec_as::<f64>();
            (row[0], row[1])
        })
        .unzip()
}

fn draw(path: &Path, times: &[f64], data: &[Tensor<2>], pred: &[Tensor<2>], losses: &[f64]) -> Result<()> {
    let n = data[0].dims()[0].min(4);
    let mut phase = Panel { title: "held-out trajectories: phase plane".into(), xlabel: "θ (rad)".into(), ylabel: "ω (rad/s)".into(), ..Panel::default() };
    let mut series_t = Panel { title: "θ(t), held-out".into(), xlabel: "t (s)".into(), ylabel: "θ (rad)".into(), ..Panel::default() };
    for i in 0..n {
        let (dth, dom) = columns(data, i);
        let (pth, pom) = columns(pred, i);
        let (ld, lp) = if i == 0 { ("data", "neural ODE") } else { ("", "") };
        phase.series.push(Series::points(ld, dth.clone(), dom, i));
        phase.series.push(Series::line(lp, pth.clone(), pom, i));
        series_t.series.push(Series::points(ld, times.to_vec(), dth, i));
        series_t.series.push(Series::line(lp, times.to_vec(), pth, i));
    }
    let loss = Panel {
        title: "training loss".into(),
        xlabel: "iteration".into(),
        ylabel: "MSE".into(),
        series: vec![Series::line("", (0..losses.len()).map(|i| i as f64).collect(), losses.to_vec(), 0)],
        log_y: true,
    };
    if losses.is_empty() {
        return save_figure(path, &[phase, series_t], 2);
    }
    save_figure(path, &[phase, series_t, loss], 3)
}

fn markdown(r: &NeuralOdeReport) -> String {
    format!(
        "# Neural ODE study: damped pendulum\n\nTrained on device `{device}`.\n\n\
         System: θ'' = −{g} sin θ − {c} θ', {ntr} training and {nte} held-out trajectories on [0, {t}] s ({nt} times).\n\
         Model: MLP 2→{hidden:?}→2 (tanh), {solver:?} at rtol {rtol:e}, gradients by {grad}.\n\n\
         | quantity | value |\n|---|---|\n\
         | iterations | {it} |\n| training MSE, initial | {a:.3e} |\n| training MSE, final | {b:.3e} |\n\
         | held-out MSE | {c2:.3e} |\n| held-out data variance | {v:.3e} |\n\
         | last iteration: forward steps / evaluations | {fs} / {fe} |\n| last iteration: backward evaluations / VJPs | {be} / {bv} |\n\
         | training time (s) | {sec:.1} |\n\nFigure: `neural_ode.png`.\n",
        device = r.device,
        g = r.config.system.g_over_l,
        c = r.config.system.damping,
        ntr = r.config.n_train,
        nte = r.config.n_test,
        t = r.config.t_end,
        nt = r.config.n_times,
        hidden = r.config.hidden,
        solver = r.config.solver,
        rtol = r.config.rtol,
        grad = r.config.gradient,
        it = r.iterations,
        a = r.train_mse_initial,
        b = r.train_mse_final,
        c2 = r.test_mse,
        v = r.test_data_variance,
        fs = r.last_forward.steps,
        fe = r.last_forward.nfe,
        be = r.last_backward.nfe,
        bv = r.last_backward.nvjp,
        sec = r.train_seconds,
    )
}

/// The neural ODE study in the study table ([`super::TABLE`]).
pub struct NeuralOdeStudy;

impl super::Study for NeuralOdeStudy {
    type Config = NeuralOdeConfig;
    type Report = NeuralOdeReport;

    fn dir(_cfg: &NeuralOdeConfig) -> String {
        "neural_ode".into()
    }

    fn seed(cfg: &mut NeuralOdeConfig) -> &mut u64 {
        &mut cfg.seed
    }

    fn steps(cfg: &mut NeuralOdeConfig) -> &mut usize {
        &mut cfg.iterations
    }

    fn run(cfg: &NeuralOdeConfig, dir: &Path, ctx: &super::Context) -> Result<NeuralOdeReport> {
        run(cfg, &(ctx.device)()?, dir, ctx.resume, ctx.quiet)
    }

    fn summary(_cfg: &NeuralOdeConfig, r: &NeuralOdeReport) -> String {
        format!(
            "neural ODE: training MSE {:.3e} -> {:.3e}, held-out MSE {:.3e} (data variance {:.3e}), {:.1} s",
            r.train_mse_initial, r.train_mse_final, r.test_mse, r.test_data_variance, r.train_seconds
        )
    }

    fn files(r: &NeuralOdeReport) -> &[String] {
        &r.files
    }
}
