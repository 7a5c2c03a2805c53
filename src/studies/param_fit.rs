//! Parameter estimation study: recover Lotka–Volterra parameters from noisy
//! synthetic observations with adjoint gradients and L-BFGS (in log-parameters).

use std::path::Path;
use std::time::Instant;

use ndarray::Array2;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::plot::{save_figure, Panel, Series};
use crate::sim::systems::LotkaVolterra;
use crate::sim::{self, FitConfig, Observation, SimOptions, System};
use crate::train::{progress, write_atomic, write_json};
use crate::Result;

/// The study's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParamFitConfig {
    /// True parameters `[α, β, δ, γ]`.
    pub true_params: Vec<f64>,
    /// Starting guess.
    pub initial_guess: Vec<f64>,
    /// Observation times (uniform on `(0, t_end]`).
    pub n_obs: usize,
    /// Last observation time.
    pub t_end: f64,
    /// Relative (multiplicative) Gaussian noise of the observations.
    pub noise: f64,
    /// Seed of the noise.
    pub seed: u64,
    /// Horizon curriculum: fit to the observations up to these fractions of
    /// `t_end` in turn, warm-starting each stage (a long oscillatory horizon
    /// from a poor guess has many local minima; short windows do not).
    pub stages: Vec<f64>,
    /// Optimiser settings (per stage).
    pub fit: FitConfig,
}

impl Default for ParamFitConfig {
    fn default() -> Self {
        ParamFitConfig {
            true_params: vec![1.5, 1.0, 1.0, 3.0],
            initial_guess: vec![1.0, 0.6, 0.7, 2.0],
            n_obs: 40,
            t_end: 10.0,
            noise: 0.05,
            seed: 0,
            stages: vec![0.25, 0.5, 1.0],
            fit: FitConfig { log_params: true, iterations: 60, ..FitConfig::default() },
        }
    }
}

/// What the study measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ParamFitReport {
    /// Parameter names.
    pub names: Vec<String>,
    /// True values.
    pub true_params: Vec<f64>,
    /// Starting guess.
    pub initial_guess: Vec<f64>,
    /// Fitted values.
    pub fitted: Vec<f64>,
    /// `|fitted − true| / true` per parameter.
    pub relative_error: Vec<f64>,
    /// Loss at the start and the end.
    pub loss_initial: f64,
    /// Final loss.
    pub loss_final: f64,
    /// Loss with the true parameters on the same noisy data (the noise floor).
    pub loss_at_truth: f64,
    /// Iterations run.
    pub iterations: usize,
    /// Whether the gradient test was met.
    pub converged: bool,
    /// Wall time of the fit.
    pub seconds: f64,
    /// Files written.
    pub files: Vec<String>,
}

/// Simulates, adds noise, fits (horizon curriculum), writes `param_fit.png`, `report.json`, `report.md` under `out`.
pub fn run(cfg: &ParamFitConfig, out: &Path, quiet: bool) -> Result<ParamFitReport> {
    std::fs::create_dir_all(out).map_err(|e| crate::Error::io(out, e))?;
    let sys = LotkaVolterra::default();
    let times: Vec<f64> = (1..=cfg.n_obs).map(|k| cfg.t_end * k as f64 / cfg.n_obs as f64).collect();
    let exact = sim::simulate_with(&sys, &cfg.true_params, &sys.y0, &times, &SimOptions { rtol: 1e-10, atol: 1e-12, ..SimOptions::default() })?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let data: Array2<f64> = exact.states.mapv(|v| {
        let z: f64 = StandardNormal.sample(&mut rng);
        v * (1.0 + cfg.noise * z)
    });
    let obs = vec![Observation { times: times.clone(), y0: sys.y0.to_vec(), data: data.clone() }];
    // One weighting for every stage: that of the full data.
    let weights = sim::default_weights(&obs, 2);
    let fit_cfg = FitConfig { weights: weights.clone(), ..cfg.fit.clone() };
    let bar = progress((cfg.fit.iterations * cfg.stages.len()) as u64, "fit", quiet);
    let start = Instant::now();
    let mut p = cfg.initial_guess.clone();
    let mut res = None;
    for &frac in &cfg.stages {
        let k = times.iter().filter(|t| **t <= frac * cfg.t_end + 1e-12).count().max(2);
        let window = vec![Observation { times: times[..k].to_vec(), y0: sys.y0.to_vec(), data: data.slice(ndarray::s![..k, ..]).to_owned() }];
        let r = sim::fit(&sys, &p, &window, &fit_cfg, |_, l| {
            bar.inc(1);
            bar.set_message(format!("window {frac}: loss {l:.3e}"));
        })?;
        p = r.params.clone();
        res = Some(r);
    }
    bar.finish_and_clear();
    // The final stage is on the full data; its history is the one reported.
    let res = res.ok_or_else(|| crate::Error::invalid("stages", "no fitting stage"))?;
    let seconds = start.elapsed().as_secs_f64();
    let loss_at_truth = sim::loss_and_gradient(&sys, &cfg.true_params, &obs, &weights, &cfg.fit.sim)?.0;

    // Figure: data, truth, initial guess and fit on a fine grid; loss curve.
    let fine: Vec<f64> = (1..=400).map(|k| cfg.t_end * k as f64 / 400.0).collect();
    let curve = |p: &[f64]| sim::simulate_with(&sys, p, &sys.y0, &fine, &SimOptions::default()).map(|t| t.states);
    let (truth, guess, fitted) = (curve(&cfg.true_params)?, curve(&cfg.initial_guess)?, curve(&res.params)?);
    let mut panels = Vec::new();
    for (i, label) in ["prey x", "predator z"].iter().enumerate() {
        panels.push(Panel {
            title: format!("Lotka–Volterra {label}"),
            xlabel: "t".into(),
            ylabel: label.to_string(),
            series: vec![
                Series::points("noisy data", times.clone(), data.column(i).to_vec(), 0),
                Series::line("truth", fine.clone(), truth.column(i).to_vec(), 1),
                Series::dashed("initial guess", fine.clone(), guess.column(i).to_vec(), 2),
                Series::line("fitted", fine.clone(), fitted.column(i).to_vec(), 3),
            ],
            log_y: false,
        });
    }
    let it: Vec<f64> = (0..res.loss_history.len()).map(|k| k as f64).collect();
    panels.push(Panel {
        title: "loss, full-horizon stage (L-BFGS, adjoint)".into(),
        xlabel: "iteration".into(),
        ylabel: "loss".into(),
        series: vec![
            Series::line("loss", it.clone(), res.loss_history.clone(), 0),
            Series::dashed("loss at true parameters", it, vec![loss_at_truth; res.loss_history.len()], 1),
        ],
        log_y: true,
    });
    let figure = out.join("param_fit.png");
    save_figure(&figure, &panels, 3)?;

    let rel: Vec<f64> = res.params.iter().zip(&cfg.true_params).map(|(a, b)| (a - b).abs() / b.abs()).collect();
    let loss_initial = sim::loss_and_gradient(&sys, &cfg.initial_guess, &obs, &weights, &cfg.fit.sim)?.0;
    let (json, md) = (out.join("report.json"), out.join("report.md"));
    let report = ParamFitReport {
        names: sys.param_names(),
        true_params: cfg.true_params.clone(),
        initial_guess: cfg.initial_guess.clone(),
        fitted: res.params.clone(),
        relative_error: rel,
        loss_initial,
        loss_final: *res.loss_history.last().unwrap(),
        loss_at_truth,
        iterations: res.loss_history.len() - 1,
        converged: res.converged,
        seconds,
        files: [&figure, &json, &md].iter().map(|p| p.display().to_string()).collect(),
    };
    write_json(&json, &report)?;
    let mut text = format!(
        "# Lotka–Volterra parameter estimation\n\n{} noisy observations ({}% multiplicative noise, seed {}), L-BFGS on ln p with adjoint gradients, horizon stages {:?}, {} iterations in the last stage, {:.2} s.\n\n| parameter | true | initial | fitted | relative error |\n|---|---|---|---|---|\n",
        cfg.n_obs, cfg.noise * 100.0, cfg.seed, cfg.stages, report.iterations, seconds
    );
    for i in 0..report.names.len() {
        text += &format!(
            "| {} | {} | {} | {:.4} | {:.2e} |\n",
            report.names[i], report.true_params[i], report.initial_guess[i], report.fitted[i], report.relative_error[i]
        );
    }
    text += &format!("\nloss {:.4e} → {:.4e} (at the true parameters: {:.4e})\n", report.loss_initial, report.loss_final, report.loss_at_truth);
    write_atomic(&md, text.as_bytes())?;
    Ok(report)
}

/// The parameter-fitting study in the study table ([`super::TABLE`]).
pub struct ParamFitStudy;

impl super::Study for ParamFitStudy {
    type Config = ParamFitConfig;
    type Report = ParamFitReport;

    fn dir(_cfg: &ParamFitConfig) -> String {
        "param_fit".into()
    }

    fn seed(cfg: &mut ParamFitConfig) -> &mut u64 {
        &mut cfg.seed
    }

    fn steps(cfg: &mut ParamFitConfig) -> &mut usize {
        &mut cfg.fit.iterations
    }

    fn run(cfg: &ParamFitConfig, dir: &Path, ctx: &super::Context) -> Result<ParamFitReport> {
        run(cfg, dir, ctx.quiet)
    }

    fn summary(_cfg: &ParamFitConfig, r: &ParamFitReport) -> String {
        {
            let mut s = String::new();
            for i in 0..r.names.len() {
                s += &format!("{:>6}: true {:<8} fitted {:<10.5} (relative error {:.2e})\n", r.names[i], r.true_params[i], r.fitted[i], r.relative_error[i]);
            }
            s + &format!(
                "loss {:.3e} -> {:.3e} (at the truth {:.3e}), {} iterations, {:.2} s",
                r.loss_initial, r.loss_final, r.loss_at_truth, r.iterations, r.seconds
            )
        }
    }

    fn files(r: &ParamFitReport) -> &[String] {
        &r.files
    }
}
