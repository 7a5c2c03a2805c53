//! Stiff hybrid model study: Robertson's kinetics with the fast rate law
//! `r₂ = k₂ y₂²` (k₂ = 3·10⁷) replaced by a small MLP, integrated by BDF with
//! Jacobian products from burn autodiff, trained through diffsol's adjoint.
//!
//! The hybrid right-hand side keeps the known physics (`r₁ = k₁y₁`,
//! `r₃ = k₃y₂y₃`, mass conservation by construction) and learns
//! `r₂ = 0.1 · x · NN(x)`, `x = 10⁴ y₂` (a rate that vanishes at zero
//! concentration; the truth is `NN(x) = 3x`).

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::host::ToHost;
use crate::nn::MlpConfig;
use crate::ode::Time;
use crate::plot::{save_figure, Panel, Series};
use crate::sim::systems::Robertson;
use crate::sim::{self, col, AutodiffSystem, BurnRhs, FitConfig, Observation, Optimizer, SimOptions};
use crate::train::{progress, write_atomic, write_json};
use crate::Result;

/// The study's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StiffHybridConfig {
    /// MLP widths (input 1, output 1).
    pub hidden: Vec<usize>,
    /// Initial states of the training trajectories.
    pub train_y0: Vec<[f64; 3]>,
    /// Initial state of the held-out trajectory.
    pub test_y0: [f64; 3],
    /// Observation times (log-spaced from `t_first` to `t_last`).
    pub n_obs: usize,
    /// First observation time.
    pub t_first: f64,
    /// Last observation time.
    pub t_last: f64,
    /// Seed of the network initialisation.
    pub seed: u64,
    /// Optimiser settings (the parameters are the network weights).
    pub fit: FitConfig,
}

impl Default for StiffHybridConfig {
    fn default() -> Self {
        StiffHybridConfig {
            hidden: vec![8],
            train_y0: vec![[1.0, 0.0, 0.0], [0.8, 0.0, 0.2]],
            test_y0: [0.9, 0.0, 0.1],
            n_obs: 12,
            t_first: 1e-2,
            t_last: 100.0,
            seed: 0,
            fit: FitConfig {
                optimizer: Optimizer::Lbfgs,
                iterations: 40,
                sim: SimOptions { rtol: 1e-7, atol: 1e-11, ..SimOptions::default() },
                ..FitConfig::default()
            },
        }
    }
}

impl StiffHybridConfig {
    /// The network: 1 → hidden → 1, tanh, its weights the system's parameters.
    ///
    /// # Errors
    /// `InvalidArgument` for a zero hidden width.
    pub fn mlp(&self) -> Result<MlpConfig> {
        let mut sizes = vec![1];
        sizes.extend(&self.hidden);
        sizes.push(1);
        let mlp = MlpConfig::new(sizes);
        mlp.validate()?;
        Ok(mlp)
    }

    /// Observation times.
    pub fn times(&self) -> Vec<f64> {
        let (a, b) = (self.t_first.log10(), self.t_last.log10());
        (0..self.n_obs).map(|k| 10f64.powf(a + (b - a) * k as f64 / (self.n_obs - 1) as f64)).collect()
    }
}

/// The hybrid Robertson system: known `k₁ = 0.04`, `k₃ = 10⁴`; `r₂` from `mlp`
/// with parameters `params` (the system's parameters are the network's).
///
/// # Errors
/// As [`AutodiffSystem::new`].
pub fn hybrid_robertson(mlp: MlpConfig, params: Vec<f64>, device: &Device) -> Result<AutodiffSystem<impl BurnRhs>> {
    let names = mlp.param_names();
    let net = mlp.clone();
    let rhs = move |_t: f64, y: Tensor<2>, p: Tensor<2>| {
        let (y1, y2, y3) = (col(&y, 0), col(&y, 1), col(&y, 2));
        let x = y2.clone().mul_scalar(1e4);
        let r1 = y1.mul_scalar(0.04);
        let r2 = net.forward_rows(&Time::Shared(0.0), x.clone(), &p).mul(x).mul_scalar(0.1);
        let r3 = y2.mul(y3).mul_scalar(1e4);
        Tensor::cat(vec![r3.clone() - r1.clone(), r1 - r2.clone() - r3, r2], 1)
    };
    AutodiffSystem::new("hybrid_robertson", names, params, vec![1.0, 0.0, 0.0], rhs, device.clone())
}

/// What the study measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StiffHybridReport {
    /// Number of network parameters.
    pub n_params: usize,
    /// Training loss before and after.
    pub train_loss_initial: f64,
    /// Training loss after.
    pub train_loss_final: f64,
    /// Held-out loss (same weighting) before training.
    pub test_loss_initial: f64,
    /// Held-out loss after training.
    pub test_loss_final: f64,
    /// RMS error of the learned `r₂` against `3·10⁷ y₂²` over the observed range of `y₂`, relative to its RMS.
    pub rate_relative_rmse: f64,
    /// BDF steps of the held-out solve with the trained model.
    pub test_bdf_steps: usize,
    /// Wall time of training.
    pub seconds: f64,
    /// Files written.
    pub files: Vec<String>,
}

fn observations(cfg: &StiffHybridConfig, y0s: &[[f64; 3]]) -> Result<Vec<Observation>> {
    let rob = Robertson::default();
    let times = cfg.times();
    let tight = SimOptions { rtol: 1e-10, atol: 1e-14, ..SimOptions::default() };
    y0s.iter()
        .map(|y0| {
            let t = sim::simulate_with(&rob, &rob.p, y0, &times, &tight)?;
            Ok(Observation { times: times.clone(), y0: y0.to_vec(), data: t.states })
        })
        .collect()
}

/// The learned `r₂(y₂)` at the given concentrations.
pub fn learned_rate(mlp: &MlpConfig, params: &[f64], y2: &[f64], device: &Device) -> Vec<f64> {
    let n = y2.len();
    let x = Tensor::<2>::from_data(burn::tensor::TensorData::new(y2.iter().map(|v| v * 1e4).collect::<Vec<_>>(), [n, 1]), device);
    let mut prow = Vec::with_capacity(n * params.len());
    for _ in 0..n {
        prow.extend_from_slice(params);
    }
    let p = Tensor::<2>::from_data(burn::tensor::TensorData::new(prow, [n, params.len()]), device);
    mlp.forward_rows(&Time::Shared(0.0), x.clone(), &p).mul(x).mul_scalar(0.1).to_vec_as::<f64>()
}

/// Trains the hybrid model, writes `stiff_hybrid.png`, `report.json`, `report.md` under `out`.
pub fn run(cfg: &StiffHybridConfig, device: &Device, out: &Path, quiet: bool) -> Result<StiffHybridReport> {
    std::fs::create_dir_all(out).map_err(|e| crate::Error::io(out, e))?;
    let mlp = cfg.mlp()?;
    let p0 = mlp.glorot_flat(cfg.seed)?;
    let sys = hybrid_robertson(mlp.clone(), p0.clone(), device)?;
    let train = observations(cfg, &cfg.train_y0)?;
    let test = observations(cfg, &[cfg.test_y0])?;
    let weights = sim::default_weights(&train, 3);
    let test_loss = |p: &[f64]| sim::loss_and_gradient(&sys, p, &test, &weights, &cfg.fit.sim).map(|r| r.0);
    let test_loss_initial = test_loss(&p0)?;

    let bar = progress(cfg.fit.iterations as u64, "hybrid", quiet);
    let start = Instant::now();
    let fit_cfg = FitConfig { weights: weights.clone(), ..cfg.fit.clone() };
    let res = sim::fit(&sys, &p0, &train, &fit_cfg, |_, l| {
        bar.inc(1);
        bar.set_message(format!("loss {l:.3e}"));
    })?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let test_loss_final = test_loss(&res.params)?;

    // Learned rate law vs the truth over the observed y₂ range.
    let y2max = train.iter().map(|o| o.data.column(1).fold(0.0f64, |a, b| a.max(*b))).fold(0.0, f64::max);
    let y2s: Vec<f64> = (0..=50).map(|k| y2max * k as f64 / 50.0).collect();
    let truth: Vec<f64> = y2s.iter().map(|v| 3e7 * v * v).collect();
    let (r_init, r_fit) = (learned_rate(&mlp, &p0, &y2s, device), learned_rate(&mlp, &res.params, &y2s, device));
    let rms = |v: &[f64]| (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
    let diff: Vec<f64> = r_fit.iter().zip(&truth).map(|(a, b)| a - b).collect();
    let rate_relative_rmse = rms(&diff) / rms(&truth);

    // Held-out trajectories on a fine log grid.
    let fine: Vec<f64> = (0..=120).map(|k| 10f64.powf(cfg.t_first.log10() + (cfg.t_last / cfg.t_first).log10() * k as f64 / 120.0)).collect();
    let rob = Robertson::default();
    let tight = SimOptions { rtol: 1e-10, atol: 1e-14, ..SimOptions::default() };
    let truth_traj = sim::simulate_with(&rob, &rob.p, &cfg.test_y0, &fine, &tight)?;
    let init_traj = sim::simulate_with(&sys, &p0, &cfg.test_y0, &fine, &cfg.fit.sim)?;
    let fit_traj = sim::simulate_with(&sys, &res.params, &cfg.test_y0, &fine, &cfg.fit.sim)?;
    let lt: Vec<f64> = fine.iter().map(|t| t.log10()).collect();
    let mut panels = Vec::new();
    for (i, (label, scale)) in [("y1", 1.0), ("y2 × 1e4", 1e4), ("y3", 1.0)].iter().enumerate() {
        let c = |s: &ndarray::Array2<f64>| s.column(i).iter().map(|v| v * scale).collect::<Vec<f64>>();
        panels.push(Panel {
            title: format!("held-out {label}"),
            xlabel: "log10 t".into(),
            ylabel: label.to_string(),
            series: vec![
                Series::line("truth", lt.clone(), c(&truth_traj.states), 0),
                Series::dashed("hybrid, untrained", lt.clone(), c(&init_traj.states), 1),
                Series::line("hybrid, trained", lt.clone(), c(&fit_traj.states), 2),
            ],
            log_y: false,
        });
    }
    let y2_scaled: Vec<f64> = y2s.iter().map(|v| v * 1e4).collect();
    panels.push(Panel {
        title: "rate law r2(y2)".into(),
        xlabel: "y2 × 1e4".into(),
        ylabel: "r2".into(),
        series: vec![
            Series::line("3e7 y2² (truth)", y2_scaled.clone(), truth, 0),
            Series::dashed("MLP, untrained", y2_scaled.clone(), r_init, 1),
            Series::line("MLP, trained", y2_scaled, r_fit, 2),
        ],
        log_y: false,
    });
    let it: Vec<f64> = (0..res.loss_history.len()).map(|k| k as f64).collect();
    panels.push(Panel {
        title: "training loss (BDF + diffsol adjoint)".into(),
        xlabel: "iteration".into(),
        ylabel: "loss".into(),
        series: vec![Series::line("train", it, res.loss_history.clone(), 0)],
        log_y: true,
    });
    let figure = out.join("stiff_hybrid.png");
    save_figure(&figure, &panels, 3)?;
    let (json, md) = (out.join("report.json"), out.join("report.md"));
    let report = StiffHybridReport {
        n_params: mlp.num_params(),
        train_loss_initial: res.loss_history[0],
        train_loss_final: *res.loss_history.last().unwrap(),
        test_loss_initial,
        test_loss_final,
        rate_relative_rmse,
        test_bdf_steps: fit_traj.stats.steps,
        seconds,
        files: [&figure, &json, &md].iter().map(|p| p.display().to_string()).collect(),
    };
    write_json(&json, &report)?;
    let text = format!(
        "# Stiff hybrid Robertson model\n\nr2 = 0.1·x·MLP(x), x = 1e4·y2, MLP {:?} ({} parameters), BDF (rtol {:e}) with burn-autodiff Jacobians, diffsol adjoint gradients, {:?}, {} iterations, {:.1} s.\n\n| | before | after |\n|---|---|---|\n| training loss | {:.3e} | {:.3e} |\n| held-out loss | {:.3e} | {:.3e} |\n\nlearned rate law vs 3e7·y2²: relative RMS error {:.3e}; held-out BDF steps {}.\n",
        mlp.sizes, report.n_params, cfg.fit.sim.rtol, cfg.fit.optimizer, res.loss_history.len() - 1, seconds,
        report.train_loss_initial, report.train_loss_final, report.test_loss_initial, report.test_loss_final, rate_relative_rmse, report.test_bdf_steps
    );
    write_atomic(&md, text.as_bytes())?;
    Ok(report)
}

/// The stiff hybrid-model study in the study table ([`super::TABLE`]).
pub struct StiffHybridStudy;

impl super::Study for StiffHybridStudy {
    type Config = StiffHybridConfig;
    type Report = StiffHybridReport;

    fn dir(_cfg: &StiffHybridConfig) -> String {
        "stiff_hybrid".into()
    }

    fn seed(cfg: &mut StiffHybridConfig) -> &mut u64 {
        &mut cfg.seed
    }

    fn steps(cfg: &mut StiffHybridConfig) -> &mut usize {
        &mut cfg.fit.iterations
    }

    fn run(cfg: &StiffHybridConfig, dir: &Path, ctx: &super::Context) -> Result<StiffHybridReport> {
        run(cfg, &crate::device::cpu_f64()?, dir, ctx.quiet)
    }

    fn summary(_cfg: &StiffHybridConfig, r: &StiffHybridReport) -> String {
        format!(
            "stiff hybrid: train loss {:.3e} -> {:.3e}, held-out {:.3e} -> {:.3e}, rate-law relative RMSE {:.3e}, {:.1} s",
            r.train_loss_initial, r.train_loss_final, r.test_loss_initial, r.test_loss_final, r.rate_relative_rmse, r.seconds
        )
    }

    fn files(r: &StiffHybridReport) -> &[String] {
        &r.files
    }
}
