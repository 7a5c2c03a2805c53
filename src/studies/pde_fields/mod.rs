//! Studies: physics-constrained generation of PDE solution fields (PCFM, Utkarsh et al. 2025).
//!
//! Each study simulates a family of 1D PDE solutions `u(x, t)` with `sim` (diffsol BDF), stores
//! them in PDEBench's layout, trains a functional-flow-matching FNO on the space-time fields,
//! and samples ensembles under a hard constraint that fixes one *condition* while the other
//! factors of the family stay free — the reference ensemble of a condition is the simulator's
//! solutions with that condition and the free factors drawn from their prior. Every sampler
//! ([`Sampler`]) is scored by MMSE/SMSE against the reference ensemble, the constraint error,
//! PDEBench's nRMSE/cRMSE/bRMSE of the ensemble mean, and time per sample.
//!
//! * [`PdeProblem::Heat`]: `u_t = D u_xx` on the periodic `[0, 2π)`, `u₀ = c + sin(x + φ)`
//!   (PCFM's heat family plus an offset so the mass is not zero), `c ~ U(0, 1)`,
//!   `φ ~ U(0, π)`, `D ~ U(1, 5)`, `t ∈ [0, 1]`. Condition `(c, φ)`: initial condition + mass
//!   conservation (linear). Free: `D`.
//! * [`PdeProblem::Burgers`]: `u_t + (u²/2)_x = ν u_xx`, `ν = 0.02`, on `[0, 1]` with Dirichlet
//!   `u(0) = u_L ~ U(0.2, 1)`, `u(1) = 0`, `u₀ = 1/(1 + e^{(x − p)/0.05})`, `p ~ U(0.2, 0.5)`
//!   (PCFM's Burgers family, viscous). Condition `u_L`: both Dirichlet values + the mass balance
//!   with the exact semi-discrete boundary flux (nonlinear). Free: `p`.
//! * [`PdeProblem::ReactionDiffusion`]: Fisher–KPP `u_t = D u_xx + r u(1 − u)`, `D = 0.05`,
//!   `r = 2`, on `[0, 1]` with Neumann data `u_x(0) = g_L ~ U(0, 0.5)`, `u_x(1) = g_R ~
//!   U(−0.5, 0)`, `u₀ = 0.05 + b(x) + q(x) − min(0, min_x (b + q))` with the bump
//!   `b = a e^{−(x−c)²/(2·0.15²)}` and the quadratic `q = αx + (β − α)x²/2` whose end slopes
//!   `α = g_L − b′(0)`, `β = g_R − b′(1)` make `u₀` satisfy the Neumann data (and `u₀ ≥ 0.05`:
//!   below 0 Fisher–KPP blows up),
//!   `a ~ U(0.3, 0.7)`, `c ~ U(0.4, 0.6)`. Condition `(g_L, g_R)`: both Neumann conditions (one-sided
//!   stencils, `t > 0`) + the mass balance with the Fisher–KPP source and the boundary inflow
//!   `D (g_R − g_L)` (nonlinear). Free: `a, c`.

mod family;
mod report;

pub use family::sample_condition;
use family::{condition_constraint, condition_indices, draw_factors, factor_names, output_times, system, training_residual, Factors};
use report::{draw_fields, draw_nfe_curves, draw_residuals, mean_abs_rows};
pub use report::{markdown, read_report, NfeCurve, PdeStudyReport};

use std::path::Path;

use burn::tensor::Device;
use ndarray::{Array2, Axis as NdAxis};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::io::h5::Attr;
use crate::nn::{FieldNetConfig, FnoConfig};
use crate::pde::{self, Anchor, Constraint, FfmConfig, FfmProblem, Fields, GpConfig, Grid, PcfmOptions, ProjectOptions, Relax, SampleConfig, Sampler};
use crate::sim::systems::Pde1d;
use crate::sim::{Integrator, SimOptions};
use crate::train::{progress, write_atomic, write_json};
use crate::{Error, Result};

/// Which PDE family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PdeProblem {
    /// Heat equation, initial condition + mass conservation.
    #[default]
    Heat,
    /// Viscous Burgers, Dirichlet boundaries + mass balance.
    Burgers,
    /// Fisher–KPP reaction–diffusion, Neumann boundaries + mass balance with source.
    ReactionDiffusion,
}

impl PdeProblem {
    /// `heat`, `burgers`, `reaction_diffusion`.
    pub fn name(self) -> &'static str {
        match self {
            PdeProblem::Heat => "heat",
            PdeProblem::Burgers => "burgers",
            PdeProblem::ReactionDiffusion => "reaction_diffusion",
        }
    }
}

/// Configuration of a PDE-field study; [`PdeStudyConfig::for_problem`] gives each problem's
/// defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PdeStudyConfig {
    /// The family.
    pub problem: PdeProblem,
    /// Spatial unknowns of the simulation (Burgers: interior nodes; the field adds the two
    /// boundary nodes).
    pub nx: usize,
    /// Output times on `[0, 1]` (both ends included).
    pub nt: usize,
    /// Training fields.
    pub n_train: usize,
    /// Test conditions.
    pub conditions: usize,
    /// Reference and generated fields per condition.
    pub ensemble: usize,
    /// Functional flow matching.
    pub train: FfmConfig,
    /// Sampling steps (one model evaluation each).
    pub sample_steps: usize,
    /// The samplers compared (ECI is skipped for nonlinear constraints).
    pub methods: Vec<Sampler>,
    /// Model evaluations per field of the MMSE-by-NFE curves (issue 26): the unconstrained
    /// ODE by Euler (every NFE) and by the midpoint method (even NFE), and PCFM (Euler, every
    /// NFE), each scored like the methods. Empty: no curves.
    pub nfes: Vec<usize>,
    /// Projection settings.
    pub project: ProjectOptions,
    /// Relative tolerance of the reference simulations (BDF; atol = rtol/100).
    pub sim_rtol: f64,
    /// Seed of the data, the conditions and the sampling noise (training has its own).
    pub seed: u64,
}

impl Default for PdeStudyConfig {
    fn default() -> Self {
        PdeStudyConfig::for_problem(PdeProblem::Heat)
    }
}

impl PdeStudyConfig {
    /// The defaults of `problem`: a 32 × 32 space-time grid (34 × 32 for Burgers), 512 training
    /// fields, an FNO of width 32 with 8 × 8 modes, 2000 Adam steps of 16 fields, 3 conditions
    /// of 32 fields, 100 sampling steps.
    pub fn for_problem(problem: PdeProblem) -> Self {
        let padding = match problem {
            PdeProblem::Heat => [0, 4],
            _ => [4, 4],
        };
        let gp_length = match problem {
            PdeProblem::Heat => vec![1.0, 0.2],
            _ => vec![0.15, 0.2],
        };
        PdeStudyConfig {
            problem,
            nx: 32,
            nt: 32,
            n_train: 512,
            conditions: 3,
            ensemble: 32,
            train: FfmConfig {
                net: FieldNetConfig::Fno(FnoConfig { width: 32, modes: [8, 8], layers: 4, padding, time_features: 8, projection: 64, ..FnoConfig::default() }),
                gp: GpConfig { length: gp_length, ..GpConfig::default() },
                ..FfmConfig::default()
            },
            sample_steps: 100,
            methods: vec![
                Sampler::Unconstrained,
                Sampler::ProjectEnd,
                Sampler::Pcfm(PcfmOptions::default()),
                Sampler::Pcfm(PcfmOptions { anchor: Anchor::Noise, newton_steps: Some(1), relax: Some(Relax::default()) }),
                Sampler::Eci { mix: 1 },
                Sampler::Guidance { eta: 0.5 },
            ],
            nfes: vec![2, 4, 8, 16, 32, 100],
            project: ProjectOptions::default(),
            sim_rtol: 1e-8,
            seed: 0,
        }
    }

    /// A seconds-long configuration for tests: a 10 × 8 grid, 48 fields, a tiny FNO and 40
    /// steps, NFE curves at 2 and 8 (8 = `sample_steps`, so they repeat two method rows).
    /// Numbers from it show the pipeline works, not what the method achieves.
    pub fn smoke(problem: PdeProblem) -> Self {
        let mut c = PdeStudyConfig::for_problem(problem);
        c.nx = 10;
        c.nt = 8;
        c.n_train = 48;
        c.conditions = 2;
        c.ensemble = 6;
        c.sample_steps = 8;
        c.nfes = vec![2, 8];
        c.train.run.steps = 40;
        c.train.run.batch_size = 8;
        c.train.run.checkpoint_every = 20;
        c.train.net =
            FieldNetConfig::Fno(FnoConfig { width: 8, modes: [3, 3], layers: 2, padding: [2, 2], time_features: 2, projection: 16, ..FnoConfig::default() });
        c
    }
}

/// One sampler's scores, averaged over the conditions.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MethodScores {
    /// The sampler's label (`"reference (simulator)"` for the reference ensembles).
    pub method: String,
    /// Mean squared error of the pointwise mean.
    pub mmse: f64,
    /// Mean squared error of the pointwise standard deviation.
    pub smse: f64,
    /// Mean `‖h‖₂` over fields.
    pub constraint_l2: f64,
    /// Largest `|h_r|` over fields and conditions.
    pub constraint_max: f64,
    /// PDEBench nRMSE of the ensemble mean against the reference mean.
    pub nrmse_mean: f64,
    /// PDEBench cRMSE of the ensemble mean.
    pub crmse_mean: f64,
    /// PDEBench bRMSE of the ensemble mean.
    pub brmse_mean: f64,
    /// Wall time per field, milliseconds.
    pub ms_per_field: f64,
    /// Of which in projections / constraint gradients, milliseconds.
    pub projection_ms_per_field: f64,
    /// Model evaluations per ensemble.
    pub nfe: usize,
    /// Largest Gauss–Newton iteration count of one projection.
    pub max_gn_iterations: usize,
}

impl MethodScores {
    /// Adds one condition's scores with weight `w`: `samples` of `method` against the
    /// condition's `reference` ensemble on `grid` under constraint `c`.
    ///
    /// # Errors
    /// `Shape` when the ensembles do not fit the grid.
    pub(crate) fn add_condition(
        &mut self,
        w: f64,
        grid: &Grid,
        c: &dyn Constraint,
        samples: &pde::Samples,
        reference: &ndarray::ArrayView2<'_, f64>,
    ) -> Result<()> {
        let g = samples.fields.view();
        let (mmse, smse) = pde::mmse_smse(&g, reference)?;
        let ce = pde::constraint_error(c, &g)?;
        let (gm, _) = pde::ensemble_moments(&g)?;
        let (rm, _) = pde::ensemble_moments(reference)?;
        let pe = pde::pdebench_errors(grid, &gm.insert_axis(NdAxis(0)).view(), &rm.insert_axis(NdAxis(0)).view())?;
        let b = g.nrows() as f64;
        self.mmse += w * mmse;
        self.smse += w * smse;
        self.constraint_l2 += w * ce.mean_l2;
        self.constraint_max = self.constraint_max.max(ce.max_abs);
        self.nrmse_mean += w * pe.nrmse;
        self.crmse_mean += w * pe.crmse;
        self.brmse_mean += w * pe.brmse;
        self.ms_per_field += w * 1e3 * samples.stats.seconds / b;
        self.projection_ms_per_field += w * 1e3 * samples.stats.projection_seconds / b;
        self.nfe = samples.stats.nfe;
        self.max_gn_iterations = self.max_gn_iterations.max(samples.stats.max_gn_iterations);
        Ok(())
    }
}

/// Runs `simulate` on every member in parallel (rayon) with a progress bar named `what`.
///
/// # Errors
/// The first failing member's error.
pub(crate) fn simulate_members<M: Sync>(members: &[M], what: &str, quiet: bool, simulate: impl Fn(&M) -> Result<Vec<f64>> + Sync) -> Result<Vec<Vec<f64>>> {
    use rayon::prelude::*;
    let bar = progress(members.len() as u64, &format!("simulate {what}"), quiet);
    let rows = members
        .par_iter()
        .map(|m| {
            let r = simulate(m);
            bar.inc(1);
            r
        })
        .collect::<Result<_>>();
    bar.finish_and_clear();
    rows
}

/// Samples an ensemble of `count` fields of condition `k` with the sampler `scfg`: the noise is
/// seeded by `(seed, k)`, so every sampler of a study starts from the same noise for a
/// condition.
///
/// # Errors
/// As [`pde::sample`].
pub(crate) fn sample_ensemble(model: &pde::FieldModel, scfg: &SampleConfig, c: &dyn Constraint, seed: u64, k: usize, count: usize) -> Result<pde::Samples> {
    let mut noise_rng = StdRng::seed_from_u64(seed.wrapping_add(1000 + k as u64));
    let x0 = model.noise_tensor(&mut noise_rng, count);
    pde::sample(model, &x0, Some(c), scfg)
}

/// The settings of one sampler of a study: `method` with `steps` Euler steps.
pub(crate) fn euler_sampler(method: Sampler, steps: usize, project: ProjectOptions) -> SampleConfig {
    SampleConfig { method, steps, project, ..SampleConfig::default() }
}

/// The MMSE-by-NFE curves of `cfg.nfes` (see [`PdeStudyConfig::nfes`]): every sampler on every
/// condition from the same noise as the methods.
///
/// # Errors
/// As [`pde::sample`].
fn nfe_curves(
    cfg: &PdeStudyConfig,
    model: &pde::FieldModel,
    grid: &Grid,
    constraints: &[Box<dyn Constraint>],
    refs: &[ndarray::ArrayView2<'_, f64>],
    quiet: bool,
) -> Result<Vec<NfeCurve>> {
    use crate::ode::Solver;
    type Setting = fn(usize, ProjectOptions) -> Option<SampleConfig>;
    let curves: [(&str, Setting); 3] = [
        ("unconstrained, euler", |nfe, project| Some(euler_sampler(Sampler::Unconstrained, nfe, project))),
        ("unconstrained, midpoint", |nfe, project| {
            (nfe % 2 == 0).then(|| SampleConfig { solver: Solver::Midpoint, ..euler_sampler(Sampler::Unconstrained, nfe / 2, project) })
        }),
        ("pcfm", |nfe, project| Some(euler_sampler(Sampler::Pcfm(PcfmOptions::default()), nfe, project))),
    ];
    let bar = progress((curves.len() * cfg.nfes.len() * cfg.conditions) as u64, "sampling by NFE", quiet);
    let mut out = Vec::with_capacity(curves.len());
    for (name, setting) in curves {
        let mut points = Vec::new();
        for &nfe in &cfg.nfes {
            let Some(scfg) = setting(nfe, cfg.project) else { continue };
            let mut s = MethodScores { method: format!("{name}, {nfe} NFE"), ..MethodScores::default() };
            for (k, c) in constraints.iter().enumerate() {
                let samples = sample_ensemble(model, &scfg, c.as_ref(), cfg.seed, k, cfg.ensemble)?;
                s.add_condition(1.0 / cfg.conditions as f64, grid, c.as_ref(), &samples, &refs[k])?;
                bar.inc(1);
            }
            points.push(s);
        }
        out.push(NfeCurve { sampler: name.to_string(), points });
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Data-relevant settings: a data file is reused only when it was written with these.
#[derive(Serialize)]
struct DataKey<'a> {
    problem: PdeProblem,
    nx: usize,
    nt: usize,
    n: usize,
    seed: u64,
    sim_rtol: f64,
    what: &'a str,
}

/// Simulates fields of the given factor sets, or reads them back from `path` when it holds
/// the same ones (the key attribute matches).
fn fields_cached(cfg: &PdeStudyConfig, factors: &[Factors], path: &Path, what: &str, quiet: bool) -> Result<Fields> {
    let key = serde_json::to_string(&DataKey { problem: cfg.problem, nx: cfg.nx, nt: cfg.nt, n: factors.len(), seed: cfg.seed, sim_rtol: cfg.sim_rtol, what })
        .expect("plain data");
    if path.exists() {
        if let Ok(file) = crate::io::h5::H5File::open(path) {
            if file.attr("/", "physflow_study").ok().and_then(|a| a.as_str().map(|s| s == key)).unwrap_or(false) {
                return Ok(pde::read_fields(path)?.0);
            }
        }
    }
    let systems: Vec<Pde1d> = factors.iter().map(|f| system(cfg.problem, cfg.nx, f)).collect();
    let times = output_times(cfg);
    let opts = SimOptions { method: Integrator::Bdf, rtol: cfg.sim_rtol, atol: cfg.sim_rtol * 1e-2, ..SimOptions::default() };
    let (grid, values) = pde::simulate_fields(&systems, &times, &opts, !quiet)?;
    let fields = Fields::from_flat(grid, values)?;
    let names = factor_names(cfg.problem);
    let p = Array2::from_shape_fn((factors.len(), names.len()), |(i, j)| factors[i][j]);
    pde::write_fields(path, &fields, Some((&names, p.view())), &[("physflow_study", Attr::Str(key)), ("equation", Attr::Str(cfg.problem.name().into()))])?;
    Ok(fields)
}

/// A file-name-safe version of a label.
pub(crate) fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// Runs the study, writing data, model, figures and report under `out` (resuming: data files
/// with the same settings and a finished or partial training checkpoint are reused).
///
/// # Errors
/// Invalid settings, simulation or projection failures, a diverging loss, unwritable files.
pub fn run(cfg: &PdeStudyConfig, device: &Device, out: &Path, quiet: bool) -> Result<PdeStudyReport> {
    if cfg.nx < 4 || cfg.nt < 3 || cfg.n_train == 0 || cfg.conditions == 0 || cfg.ensemble < 2 || cfg.sample_steps == 0 {
        return Err(Error::invalid("config", "need nx ≥ 4, nt ≥ 3, n_train ≥ 1, conditions ≥ 1, ensemble ≥ 2, sample_steps ≥ 1"));
    }
    if let Some(bad) = cfg.nfes.iter().find(|&&n| n == 0) {
        return Err(Error::invalid("nfes", format!("every NFE must be at least 1, got {bad}")));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut files: Vec<String> = Vec::new();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    // Training data from the prior; conditions from the prior, each with its own ensemble.
    let train_factors: Vec<Factors> = (0..cfg.n_train).map(|_| draw_factors(cfg.problem, &mut rng)).collect();
    let cond_idx = condition_indices(cfg.problem);
    let mut conditions: Vec<Factors> = Vec::new();
    let mut ref_factors: Vec<Factors> = Vec::new();
    for _ in 0..cfg.conditions {
        let c = draw_factors(cfg.problem, &mut rng);
        for _ in 0..cfg.ensemble {
            let mut f = draw_factors(cfg.problem, &mut rng);
            for &i in cond_idx {
                f[i] = c[i];
            }
            ref_factors.push(f);
        }
        conditions.push(c);
    }
    let data_dir = out.join("data");
    let train = fields_cached(cfg, &train_factors, &data_dir.join("train.h5"), "train", quiet)?;
    let reference = fields_cached(cfg, &ref_factors, &data_dir.join("reference.h5"), "reference", quiet)?;
    files.push(data_dir.join("train.h5").display().to_string());
    files.push(data_dir.join("reference.h5").display().to_string());
    let grid = train.grid.clone();

    // Training (resumed from the checkpoint when there is one).
    let residual = if cfg.train.residual_weight > 0.0 { training_residual(cfg.problem, &grid)? } else { None };
    let problem = FfmProblem { grid: &grid, data: train.values.view().into(), residual: residual.as_deref() };
    // A checkpoint made for another configuration of the study (other data, seed or model) is
    // not resumed.
    let mut run = crate::train::Run::for_study(out.join("checkpoint"), cfg, quiet)?;
    let (model, train_report) = pde::train_ffm(&problem, &cfg.train, &mut run, device)?;
    model.save(&out.join("model"))?;
    files.push(out.join("model").display().to_string());

    // Sampling: every method on every condition from the same noise.
    let constraints: Vec<Box<dyn Constraint>> = conditions.iter().map(|c| condition_constraint(cfg.problem, &grid, cfg.nx, c)).collect::<Result<_>>()?;
    let linear = constraints[0].is_linear();
    let methods: Vec<Sampler> = cfg.methods.iter().copied().filter(|m| linear || !matches!(m, Sampler::Eci { .. })).collect();
    let mut scores: Vec<MethodScores> = Vec::new();
    // Each condition's reference ensemble and its mean, shared by every method.
    let refs: Vec<_> = (0..cfg.conditions).map(|k| reference.values.slice(ndarray::s![k * cfg.ensemble..(k + 1) * cfg.ensemble, ..])).collect();
    // The reference ensembles against themselves: the constraint error floor of the data.
    let mut floor = MethodScores { method: "reference (simulator)".into(), ..MethodScores::default() };
    for (c, r) in constraints.iter().zip(&refs) {
        let ce = pde::constraint_error(c.as_ref(), r)?;
        floor.constraint_l2 += ce.mean_l2 / cfg.conditions as f64;
        floor.constraint_max = floor.constraint_max.max(ce.max_abs);
    }
    scores.push(floor);
    let bar = progress((methods.len() * cfg.conditions) as u64, "sampling", quiet);
    let mut first_condition: Vec<(String, Array2<f64>)> = Vec::new();
    let mut residual_rows: Vec<(String, Vec<f64>)> = Vec::new();
    for method in &methods {
        let mut s = MethodScores { method: method.label(), ..MethodScores::default() };
        for (k, c) in constraints.iter().enumerate() {
            let samples = sample_ensemble(&model, &euler_sampler(*method, cfg.sample_steps, cfg.project), c.as_ref(), cfg.seed, k, cfg.ensemble)?;
            s.add_condition(1.0 / cfg.conditions as f64, &grid, c.as_ref(), &samples, &refs[k])?;
            if k == 0 {
                residual_rows.push((method.label(), mean_abs_rows(c.as_ref(), &samples.fields)));
                first_condition.push((method.label(), samples.fields));
            }
            bar.inc(1);
        }
        scores.push(s);
    }
    bar.finish_and_clear();
    let mmse_by_nfe = nfe_curves(cfg, &model, &grid, &constraints, &refs, quiet)?;
    // Generated fields of the first condition, one file per method.
    for (label, f) in &first_condition {
        let path = out.join("samples").join(format!("{}.h5", slug(label)));
        pde::write_fields(&path, &Fields::from_flat(grid.clone(), f.clone())?, None, &[("method", Attr::Str(label.clone()))])?;
        files.push(path.display().to_string());
    }
    let r0 = refs[0].to_owned();
    residual_rows.insert(0, ("reference (simulator)".into(), mean_abs_rows(constraints[0].as_ref(), &r0)));
    let fig_fields = out.join("fields.png");
    draw_fields(&fig_fields, &grid, &r0, &first_condition)?;
    let fig_res = out.join("residuals.png");
    draw_residuals(&fig_res, &residual_rows, &train_report.losses)?;
    files.push(fig_fields.display().to_string());
    files.push(fig_res.display().to_string());
    if mmse_by_nfe.iter().any(|c| !c.points.is_empty()) {
        let fig_nfe = out.join("mmse_by_nfe.png");
        draw_nfe_curves(&fig_nfe, &mmse_by_nfe)?;
        files.push(fig_nfe.display().to_string());
    }
    let tail = (train_report.losses.len() / 10).max(1);
    let final_loss = train_report.losses.iter().rev().take(tail).map(|l| l.1).sum::<f64>() / tail as f64;
    let json = out.join("report.json");
    let md = out.join("report.md");
    files.push(json.display().to_string());
    files.push(md.display().to_string());
    let report = PdeStudyReport {
        config: cfg.clone(),
        device: crate::device::name_of(device),
        field_shape: grid.shape(),
        constraint: constraints[0].name(),
        train_seconds: train_report.seconds,
        final_loss,
        scores,
        mmse_by_nfe,
        files,
    };
    write_json(&json, &report)?;
    write_atomic(&md, markdown(&report).as_bytes())?;
    Ok(report)
}

/// The `physflow pde <problem>` row of the study table: `problem`'s defaults, the file merged
/// over them (it must not name another problem), then the flags.
///
/// # Errors
/// `InvalidArgument` when the file sets another problem; as [`run`].
pub fn run_entry(problem: PdeProblem, o: &super::Overrides, ctx: &super::Context) -> Result<super::Outcome> {
    super::registry::refuse_particle_flags(o)?;
    let cfg = super::configure::<PdeFieldsStudy>(PdeStudyConfig::for_problem(problem), o)?;
    if cfg.problem != problem {
        return Err(Error::invalid("config", format!("the file sets problem `{}` but the command asks for `{}`", cfg.problem.name(), problem.name())));
    }
    super::finish::<PdeFieldsStudy>(cfg, ctx)
}

/// The 1D PDE-field study in the study table ([`super::TABLE`]).
pub struct PdeFieldsStudy;

impl super::Study for PdeFieldsStudy {
    type Config = PdeStudyConfig;
    type Report = PdeStudyReport;

    fn dir(cfg: &PdeStudyConfig) -> String {
        format!("pde_{}", cfg.problem.name())
    }

    fn seed(cfg: &mut PdeStudyConfig) -> &mut u64 {
        &mut cfg.seed
    }

    fn steps(cfg: &mut PdeStudyConfig) -> &mut usize {
        &mut cfg.train.run.steps
    }

    fn run(cfg: &PdeStudyConfig, dir: &Path, ctx: &super::Context) -> Result<PdeStudyReport> {
        run(cfg, &(ctx.device)()?, dir, ctx.quiet)
    }

    fn summary(_cfg: &PdeStudyConfig, r: &PdeStudyReport) -> String {
        markdown(r)
    }

    fn files(r: &PdeStudyReport) -> &[String] {
        &r.files
    }
}
