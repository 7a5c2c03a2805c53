//! Study: 8 Gaussians → two moons by flow matching (torchcfm's 2D benchmark).
//!
//! 1. Train the velocity of the linear path with independent coupling (I-CFM / rectified
//!    flow's first round) and with exact minibatch OT (OT-CFM), from fresh samples of
//!    [`eight_gaussians`] and [`moons`] each step.
//! 2. Reflow (Liu et al. 2023): sample pairs `(x₀, X₁(x₀))` from the independent model with a
//!    fine ODE solve and train a new model on those pairs.
//! 3. Mean flows (Geng et al. 2025): average velocities with the exact-OT coupling, sampled by
//!    1, 2, … jumps — a one-step generator.
//! 4. For each model: exact W₂ between `n_eval` samples and `n_eval` held-out moons at every
//!    NFE of the list (Euler steps), the straightness of its flow, and the sampling-noise floor
//!    (W₂ between two independent sets of `n_eval` moons); trajectory figures and W₂ vs NFE.
//! 5. The independent model again, its Euler steps on the grid optimised for each NFE
//!    ([`fm::StepErrors`], BOSS-style, fitted on 256 trajectories from other source samples),
//!    and with DPM-Solver++(2M) on equal steps ([`fm::dpm_solve`]: the exponential integrator
//!    of the linear path, one evaluation per step).
//! 6. The independent model with a bespoke solver ([`fm::train_bespoke`], Shaul et al. 2024)
//!    trained for each NFE of the list up to 32 on 64 of the grid's trajectories: the midpoint
//!    method (`NFE/2` steps) for even NFE, Euler for odd; its training time against the
//!    model's.

use std::path::Path;

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::fm::problems::{eight_gaussians, moons};
use crate::fm::{
    self, BespokeConfig, Coupling, DpmSolver, FmModel, MeanFlowConfig, NetConfig, OptimiseSchedule, Problem, SampleSource, Sampler, Schedule, StepErrors,
    TrainConfig,
};
use crate::host::{array2_from_tensor, tensor_from_array2};
use crate::ode::{self, Options, Solver};
use crate::plot::{save_figure, Panel, Series};
use crate::train::{write_atomic, write_json};
use crate::train::{Run, RunOptions};
use crate::{Error, Result};
use burn::tensor::Device;

/// Configuration of the moons study; every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FmMoonsConfig {
    /// Training steps of each model.
    pub steps: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// Hidden widths (tanh).
    pub hidden: Vec<usize>,
    /// Adam learning rate.
    pub lr: f64,
    /// Samples compared with held-out data.
    pub n_eval: usize,
    /// NFEs (Euler steps; DPM-Solver++ steps; mean-flow jumps) at which W₂ is measured.
    pub nfes: Vec<usize>,
    /// Pairs generated for reflow.
    pub reflow_pairs: usize,
    /// RK4 steps of the solve that generates the reflow pairs.
    pub reflow_solve_steps: usize,
    /// Trajectories drawn per model.
    pub n_trajectories: usize,
    /// Fraction of mean-flow training pairs with distinct times.
    pub mean_flow_fraction: f64,
    /// Save a training checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
    /// Seed of everything random.
    pub seed: u64,
}

impl Default for FmMoonsConfig {
    fn default() -> Self {
        Self {
            steps: 3000,
            batch_size: 256,
            hidden: vec![256, 256, 256],
            lr: 1e-3,
            n_eval: 2048,
            nfes: vec![1, 2, 4, 8, 16, 32, 100],
            reflow_pairs: 8192,
            reflow_solve_steps: 50,
            n_trajectories: 96,
            mean_flow_fraction: 0.25,
            checkpoint_every: 500,
            seed: 0,
        }
    }
}

/// One trained model's numbers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelResult {
    /// "independent", "exact OT", "reflow" or "mean flow" (NFE = jumps of its sampler).
    pub name: String,
    /// `(NFE, W₂)` for every NFE of the configuration.
    pub w2: Vec<(usize, f64)>,
    /// Straightness `∫ E|(X₁ − X₀) − b(t, X_t)|² dt` over 100 Euler steps (ODE models).
    pub straightness: Option<f64>,
    /// Training seconds, including runs resumed from.
    pub train_seconds: f64,
    /// Final training loss (mean of the last logged window).
    pub final_loss: f64,
}

/// A bespoke solver fitted to the independent model for one NFE.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BespokeRow {
    /// Evaluations per sample.
    pub nfe: usize,
    /// The base method (`midpoint` for even NFE, `euler` for odd).
    pub base: String,
    /// Endpoint RMSE against accurate trajectories (the training set) of the base method.
    pub base_rmse: f64,
    /// The same for the bespoke solver.
    pub rmse: f64,
    /// Seconds of its training, reference trajectories included.
    pub seconds: f64,
}

/// Numbers of a finished study.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FmMoonsReport {
    /// The configuration used.
    pub config: FmMoonsConfig,
    /// The device trained on (`cpu`, `wgpu`, `cuda`).
    #[serde(default)]
    pub device: String,
    /// Per model.
    pub models: Vec<ModelResult>,
    /// Bespoke solvers of the independent model, one per NFE up to 32.
    #[serde(default)]
    pub bespoke: Vec<BespokeRow>,
    /// W₂ between two independent sets of `n_eval` moons: what a perfect model would score.
    pub w2_floor: f64,
    /// W₂ between the `n_eval` source samples (8 Gaussians) and the held-out moons: where
    /// every flow starts.
    pub w2_source: f64,
    /// Files written.
    pub files: Vec<String>,
}

fn x0_sampler(rng: &mut StdRng, n: usize) -> Array2<f64> {
    eight_gaussians(rng, n)
}
fn x1_sampler(rng: &mut StdRng, n: usize) -> Array2<f64> {
    moons(rng, n)
}

/// Source samples whose trajectories the optimised grid is fitted on.
const SCHEDULE_SAMPLES: usize = 256;
/// Fewest candidate intervals of the optimised grid (more when an NFE of the list is larger).
const SCHEDULE_CANDIDATES: usize = 64;
fn euler(n: usize) -> Options {
    Options::fixed(Solver::Euler, 1.0 / n as f64)
}

/// Run the study, writing checkpoints, figures and reports under `out`; finished checkpoints
/// there are reused (delete them to retrain).
///
/// # Errors
/// Bad configuration, training divergence, solver or I/O errors.
pub fn run(cfg: &FmMoonsConfig, train_device: &Device, out: &Path, quiet: bool) -> Result<FmMoonsReport> {
    if cfg.nfes.is_empty() || cfg.n_eval < 2 || cfg.reflow_pairs == 0 || cfg.reflow_solve_steps == 0 {
        return Err(Error::invalid(
            "nfes, n_eval, reflow_pairs, reflow_solve_steps",
            "need at least one NFE, two evaluation samples, reflow pairs and solve steps",
        ));
    }
    if cfg.nfes.contains(&0) {
        return Err(Error::invalid("nfes", format!("every NFE must be at least 1, got {:?}", cfg.nfes)));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let device = crate::device::reference_cpu();
    let run_opts = RunOptions {
        batch_size: cfg.batch_size,
        steps: cfg.steps,
        lr: cfg.lr,
        seed: cfg.seed,
        checkpoint_every: cfg.checkpoint_every,
        ..TrainConfig::default().run
    };
    let base = TrainConfig { net: NetConfig::tanh(cfg.hidden.clone()), run: run_opts, ..TrainConfig::default() };
    // Checkpoints made for another configuration of the study are not resumed.
    let run_in = |name: &str| Run::for_study(out.join(format!("checkpoint_{name}")), cfg, quiet);
    let fresh = Problem { dim: 2, x0: SampleSource::Sampler(&x0_sampler), x1: SampleSource::Sampler(&x1_sampler), cond: None };

    let mut trained: Vec<(String, FmModel, f64, f64)> = Vec::new();
    for (name, file, coupling) in [("independent", "independent", Coupling::Independent), ("exact OT", "exact_ot", Coupling::ExactOt)] {
        let (model, report) = fm::train(&fresh, &TrainConfig { coupling, ..base.clone() }, train_device, &mut run_in(file)?)?;
        let loss = report.losses().last().map(|l| l.1).unwrap_or(f64::NAN);
        trained.push((name.to_string(), model.to_device(&Device::flex())?, report.total_seconds, loss));
    }
    // Reflow of the independent model: its own deterministic couplings.
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(1));
    let x0_pairs = eight_gaussians(&mut rng, cfg.reflow_pairs);
    let rk4 = Options::fixed(Solver::Rk4, 1.0 / cfg.reflow_solve_steps as f64);
    let x1_pairs = fm::reflow_targets(&trained[0].1.field(), &x0_pairs, &rk4)?;
    let paired = Problem { dim: 2, x0: SampleSource::Data(x0_pairs.view()), x1: SampleSource::Data(x1_pairs.view()), cond: None };
    let (model, report) = fm::train(&paired, &TrainConfig { coupling: Coupling::Paired, ..base.clone() }, train_device, &mut run_in("reflow")?)?;
    trained.push(("reflow".into(), model.to_device(&Device::flex())?, report.total_seconds, report.losses().last().map(|l| l.1).unwrap_or(f64::NAN)));

    // Evaluation on held-out data.
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(2));
    let held_out = moons(&mut rng, cfg.n_eval);
    let other = moons(&mut rng, cfg.n_eval);
    let x0 = eight_gaussians(&mut rng, cfg.n_eval);
    let slice = |a: &Array2<f64>| a.as_slice().expect("standard layout").to_vec();
    let w2_floor = fm::wasserstein2(&slice(&held_out), &slice(&other), 2)?;
    let w2_source = fm::wasserstein2(&slice(&x0), &slice(&held_out), 2)?;
    let x0t = tensor_from_array2(&x0.view(), &device, burn::tensor::DType::F64);
    let mut models = Vec::new();
    let mut few_step = Vec::new();
    let mut bespoke = Vec::new();
    let mut panels_traj = Vec::new();
    for (k, (name, model, seconds, loss)) in trained.iter().enumerate() {
        let field = model.field();
        let mut w2 = Vec::new();
        for &nfe in &cfg.nfes {
            let sol = ode::solve(&field, x0t.clone(), &[0.0, 1.0], &euler(nfe))?;
            w2.push((nfe, fm::wasserstein2(&slice(&array2_from_tensor(&sol.ys[1])?), &slice(&held_out), 2)?));
        }
        let (straightness, _) = fm::straightness(&field, &x0t, 100)?;
        models.push(ModelResult { name: name.clone(), w2, straightness: Some(straightness), train_seconds: *seconds, final_loss: *loss });
        if k == 0 {
            // The same model and solver on the BOSS grid (fm::schedule), optimised on
            // trajectories from source samples other than the evaluation's.
            let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(3));
            let x_ref = tensor_from_array2(&eight_gaussians(&mut rng, SCHEDULE_SAMPLES).view(), &device, burn::tensor::DType::F64);
            let candidates = cfg.nfes.iter().copied().max().unwrap_or(1).max(SCHEDULE_CANDIDATES);
            let errors =
                StepErrors::measure(&field, x_ref.clone(), 0.0, 1.0, &OptimiseSchedule { candidates, solver: Solver::Euler, ..OptimiseSchedule::default() })?;
            let optimised =
                |nfe: usize| -> Result<Sampler> { Ok(Sampler::Ode { solver: Solver::Euler, steps: nfe, schedule: errors.optimise(nfe)?.schedule() }) };
            let dpm = |nfe: usize| -> Result<Sampler> { Ok(Sampler::Dpm { solver: DpmSolver::DpmPp2M, steps: nfe, schedule: Schedule::Uniform, clip: 0.0 }) };
            let w2_by_nfe = |sampler: &dyn Fn(usize) -> Result<Sampler>| -> Result<Vec<(usize, f64)>> {
                cfg.nfes
                    .iter()
                    .map(|&nfe| {
                        let x1 = sampler(nfe)?.sample(&field, &model.path, x0t.clone())?.x;
                        Ok((nfe, fm::wasserstein2(&slice(&array2_from_tensor(&x1)?), &slice(&held_out), 2)?))
                    })
                    .collect()
            };
            let w2 = w2_by_nfe(&optimised)?;
            few_step.push(ModelResult { name: format!("{name}, optimised grid"), w2, straightness: None, train_seconds: *seconds, final_loss: *loss });
            // DPM-Solver++(2M) on equal steps: NFE = steps.
            let w2 = w2_by_nfe(&dpm)?;
            few_step.push(ModelResult { name: format!("{name}, DPM-Solver++(2M)"), w2, straightness: None, train_seconds: *seconds, final_loss: *loss });
            // Bespoke solvers, one per NFE, on trajectories from the grid's source samples.
            let x_fit = x_ref.clone().slice([0..BespokeConfig::TRAJECTORIES.min(SCHEDULE_SAMPLES), 0..2]);
            let mut w2 = Vec::new();
            for &nfe in cfg.nfes.iter().filter(|&&n| n <= BespokeConfig::MAX_NFE) {
                let (base, steps) = if nfe % 2 == 0 { (Solver::Midpoint, nfe / 2) } else { (Solver::Euler, nfe) };
                let (solver, rep) = fm::train_bespoke(&field, x_fit.clone(), &BespokeConfig { base, steps, ..BespokeConfig::default() })?;
                let x1 = Sampler::Bespoke(solver).sample(&field, &model.path, x0t.clone())?.x;
                w2.push((nfe, fm::wasserstein2(&slice(&array2_from_tensor(&x1)?), &slice(&held_out), 2)?));
                bespoke.push(BespokeRow { nfe, base: base.tableau().name.to_string(), base_rmse: rep.base_rmse, rmse: rep.rmse, seconds: rep.seconds });
            }
            few_step.push(ModelResult { name: format!("{name}, bespoke"), w2, straightness: None, train_seconds: *seconds, final_loss: *loss });
        }
        let n = cfg.n_trajectories.min(x0.nrows());
        let start = x0.slice(ndarray::s![..n, ..]).to_owned();
        let times: Vec<f64> = (0..=20).map(|k| k as f64 / 20.0).collect();
        let sol = ode::solve(&model.field(), tensor_from_array2(&start.view(), &device, burn::tensor::DType::F64), &times, &euler(100))?;
        panels_traj.push(trajectory_panel(name, &sol.ys.iter().map(array2_from_tensor).collect::<Result<Vec<_>>>()?, &held_out, k));
    }
    models.extend(few_step);
    // Mean flow: average velocities, sampled by jumps (one network call each).
    // Mean flows need the fused CPU kernels' time VJP: trained on the CPU whatever the device.
    let mf_cfg = MeanFlowConfig { base: TrainConfig { coupling: Coupling::ExactOt, ..base.clone() }, fraction_distinct: cfg.mean_flow_fraction };
    let (mf, mf_report) = fm::train_mean_flow(&fresh, &mf_cfg, &Device::flex(), &mut Run::for_study(out.join("checkpoint_mean_flow"), cfg, quiet)?)?;
    let (mf_seconds, mf_losses) = (mf_report.total_seconds, mf_report.losses());
    let mut w2 = Vec::new();
    for &nfe in &cfg.nfes {
        w2.push((nfe, fm::wasserstein2(&slice(&mf.sample(&x0, nfe)?), &slice(&held_out), 2)?));
    }
    models.push(ModelResult {
        name: "mean flow".into(),
        w2,
        straightness: None,
        train_seconds: mf_seconds,
        final_loss: mf_losses.last().map(|l| l.1).unwrap_or(f64::NAN),
    });
    let start = x0.slice(ndarray::s![..cfg.n_trajectories.min(x0.nrows()), ..]).to_owned();
    let one_jump = mf.sample(&start, 1)?;
    panels_traj.push(trajectory_panel("mean flow, one jump", &[start, one_jump], &held_out, 3));

    let fig_traj = out.join("fm_moons_trajectories.png");
    save_figure(&fig_traj, &panels_traj, 2)?;
    let fig_w2 = out.join("fm_moons_w2.png");
    let mut series: Vec<Series> = models
        .iter()
        .enumerate()
        .map(|(k, m)| Series::line(m.name.clone(), m.w2.iter().map(|p| (p.0 as f64).log2()).collect(), m.w2.iter().map(|p| p.1).collect(), k))
        .collect();
    // log₂ NFE on the x axis: the few-step end (1–8 NFE), where the samplers differ, gets as
    // much room as 8–100.
    let xs = [(cfg.nfes[0] as f64).log2(), (*cfg.nfes.last().unwrap() as f64).log2()];
    series.push(Series::dashed("data-vs-data floor", xs.to_vec(), vec![w2_floor; 2], 7));
    save_figure(&fig_w2, &[Panel { title: "W2 to held-out moons vs NFE".into(), xlabel: "log₂ NFE".into(), ylabel: "W2".into(), series, log_y: true }], 1)?;

    let json = out.join("fm_moons_report.json");
    let md = out.join("fm_moons_report.md");
    let report = FmMoonsReport {
        config: cfg.clone(),
        device: crate::device::name_of(train_device),
        models,
        bespoke,
        w2_floor,
        w2_source,
        files: [&fig_traj, &fig_w2, &json, &md].iter().map(|p| p.display().to_string()).collect(),
    };
    write_json(&json, &report)?;
    write_atomic(&md, markdown(&report).as_bytes())?;
    Ok(report)
}

/// Trajectories (`states[k]` is `[n, 2]` at the k-th time) over the held-out data.
fn trajectory_panel(name: &str, states: &[Array2<f64>], data: &Array2<f64>, color: usize) -> Panel {
    let start = &states[0];
    let n = start.nrows();
    let mut series = vec![
        Series::points("data", data.column(0).to_vec(), data.column(1).to_vec(), 7),
        Series::points("x0", start.column(0).to_vec(), start.column(1).to_vec(), 1),
        Series::points("x1", states.last().unwrap().column(0).to_vec(), states.last().unwrap().column(1).to_vec(), 2),
    ];
    for i in 0..n {
        series.push(Series::line("", states.iter().map(|s| s[[i, 0]]).collect(), states.iter().map(|s| s[[i, 1]]).collect(), color.max(3)));
    }
    Panel { title: format!("{name}: trajectories"), xlabel: "x".into(), ylabel: "y".into(), series, log_y: false }
}

fn markdown(r: &FmMoonsReport) -> String {
    let mut s = format!("# Flow matching: 8 Gaussians → moons\n\nTrained on device `{}`.\n\n", r.device);
    s.push_str(&format!(
        "{} training steps per model, batch {}, hidden {:?} (tanh), Adam {}; W₂ between {} samples and {} held-out moons (exact assignment), Euler steps; the last three ODE rows sample the independent model on the optimised Euler grid, with DPM-Solver++(2M) on equal steps, and with a bespoke solver trained for each NFE up to 32; the mean flow by jumps.\n\n",
        r.config.steps, r.config.batch_size, r.config.hidden, r.config.lr, r.config.n_eval, r.config.n_eval
    ));
    s.push_str("| model |");
    for (nfe, _) in &r.models[0].w2 {
        s.push_str(&format!(" W₂ @ {nfe} |"));
    }
    s.push_str(" straightness | train s |\n|---|");
    s.push_str(&"---|".repeat(r.models[0].w2.len() + 2));
    s.push('\n');
    for m in &r.models {
        s.push_str(&format!("| {} |", m.name));
        for (nfe, _) in &r.models[0].w2 {
            match m.w2.iter().find(|p| p.0 == *nfe) {
                Some((_, w)) => s.push_str(&format!(" {w:.3} |")),
                None => s.push_str(" – |"),
            }
        }
        let st = m.straightness.map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into());
        s.push_str(&format!(" {st} | {:.1} |\n", m.train_seconds));
    }
    if !r.bespoke.is_empty() {
        s.push_str("\nBespoke solvers of the independent model (endpoint RMSE against accurate trajectories of the model, on the 64 training trajectories):\n\n| NFE | base | base RMSE | bespoke RMSE | training s | of model training |\n|---|---|---|---|---|---|\n");
        for b in &r.bespoke {
            s.push_str(&format!(
                "| {} | {} | {:.4} | {:.4} | {:.2} | {:.1} % |\n",
                b.nfe,
                b.base,
                b.base_rmse,
                b.rmse,
                b.seconds,
                100.0 * b.seconds / r.models[0].train_seconds
            ));
        }
    }
    s.push_str(&format!(
        "\nData-vs-data floor (two independent sets of {} moons): W₂ = {:.3}; the source (8 Gaussians) is at W₂ = {:.3}.\n",
        r.config.n_eval, r.w2_floor, r.w2_source
    ));
    s
}

/// The flow-matching moons study in the study table ([`super::TABLE`]).
pub struct FmMoonsStudy;

impl super::Study for FmMoonsStudy {
    type Config = FmMoonsConfig;
    type Report = FmMoonsReport;

    fn dir(_cfg: &FmMoonsConfig) -> String {
        "fm_moons".into()
    }

    fn seed(cfg: &mut FmMoonsConfig) -> &mut u64 {
        &mut cfg.seed
    }

    fn steps(cfg: &mut FmMoonsConfig) -> &mut usize {
        &mut cfg.steps
    }

    fn run(cfg: &FmMoonsConfig, dir: &Path, ctx: &super::Context) -> Result<FmMoonsReport> {
        run(cfg, &(ctx.device)()?, dir, ctx.quiet)
    }

    fn summary(_cfg: &FmMoonsConfig, r: &FmMoonsReport) -> String {
        {
            let mut s = String::new();
            for m in &r.models {
                let w2: Vec<String> = m.w2.iter().map(|(n, w)| format!("{n}:{w:.3}")).collect();
                let st = m.straightness.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
                s += &format!("{:>12}: W2 by NFE {}  straightness {st}  ({:.1} s)\n", m.name, w2.join(" "), m.train_seconds);
            }
            for b in &r.bespoke {
                s += &format!(
                    "bespoke {} NFE ({}): RMSE {:.4} -> {:.4}, trained in {:.2} s ({:.1} % of the model's)\n",
                    b.nfe,
                    b.base,
                    b.base_rmse,
                    b.rmse,
                    b.seconds,
                    100.0 * b.seconds / r.models[0].train_seconds
                );
            }
            s + &format!("data-vs-data W2 floor {:.3}; source (8 Gaussians) W2 {:.3}", r.w2_floor, r.w2_source)
        }
    }

    fn files(r: &FmMoonsReport) -> &[String] {
        &r.files
    }
}
