//! Study: Darcy flow fields `(a, u)` — permeability and pressure — generated under the
//! finite-volume flux balance, and the inverse problem of recovering the permeability from a
//! few noisy pressure observations with the trained flow as the prior (PBFM's Darcy task,
//! Baldan et al. 2025; FlowDPS / D-Flow for the inverse problem).
//!
//! The family: `−∇·(a∇u) = f` on the unit square, `u = 0` on the boundary, `a` from a random
//! medium ([`Permeability`]; log-normal by default), `f ~ U(f_min, f_max)` constant. Fields are
//! `[2, n, n]` (channels `a`, `u` at the cell centres) from [`crate::sim::darcy`]. The
//! *condition* is the source `f`; the free factor is the medium, so the reference ensemble of a
//! condition is the solver's fields on random media with that `f`. Constraint: the flux balance
//! (one nonlinear row: the net boundary outflow equals the total source) or every cell's balance
//! ([`DarcyScope`]). Besides PCFM's metrics the report gives every method's relative
//! finite-volume residual over all cells — the discrete PDE, which the global balance does not
//! impose cell by cell.
//!
//! Inverse problem: a medium not in the data, `f = 1`, `k` pressure observations at random cells
//! with noise `σ = noise · std(u)`; posterior samples by gradient guidance on the observation
//! misfit (FlowDPS-style: the data-consistency step on the extrapolated endpoint) and by PCFM
//! with the observations and the flux balance as hard constraints. Reported: the relative L2
//! error of the posterior-mean permeability, and the data misfit, beside the prior mean's.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::pde_fields::{euler_sampler, sample_ensemble, simulate_members, MethodScores};
use crate::io::h5::{Attr, DatasetOptions, H5File, H5Tree};
use crate::nn::{FieldNetConfig, FnoConfig};
use crate::pde::{
    self, Anchor, Constraint, DarcyFlux, DarcyScope, FfmConfig, FfmProblem, FieldData, GpConfig, LinearConstraint, PcfmOptions, ProjectOptions, SampleConfig,
    Sampler, Stack,
};
use crate::plot::{save_heatmaps, Heatmap};
use crate::sim::darcy::{cell_residuals, DarcyProblem, Permeability};
use crate::sim::grf::Grf;
use crate::train::{progress, read_json, write_atomic, write_json};
use crate::{Error, Result};

/// The inverse problem's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InverseConfig {
    /// Pressure observations `k` (at distinct random cells).
    pub observations: usize,
    /// Observation noise relative to the standard deviation of the true pressure.
    pub noise: f64,
    /// Posterior samples per method.
    pub samples: usize,
    /// Guidance step `η ∈ (0, 2)`.
    pub eta: f64,
    /// D-Flow: optimisation steps on the initial noise (0: skipped).
    pub dflow_iterations: usize,
    /// D-Flow: Euler steps of the sampler it differentiates through.
    pub dflow_steps: usize,
    /// D-Flow: Adam step on the initial noise, in units of the per-channel data scale.
    pub dflow_lr: f64,
}

impl Default for InverseConfig {
    fn default() -> Self {
        InverseConfig { observations: 25, noise: 0.01, samples: 16, eta: 0.5, dflow_iterations: 30, dflow_steps: 10, dflow_lr: 0.05 }
    }
}

/// Configuration of the Darcy study; every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DarcyStudyConfig {
    /// Cells per side.
    pub n: usize,
    /// The random medium.
    pub medium: Permeability,
    /// The source `f ~ U(source[0], source[1])`.
    pub source: [f64; 2],
    /// Which balance constrains the samples.
    pub scope: DarcyScope,
    /// Training fields.
    pub n_train: usize,
    /// Test conditions (sources).
    pub conditions: usize,
    /// Reference and generated fields per condition.
    pub ensemble: usize,
    /// Functional flow matching.
    pub train: FfmConfig,
    /// Sampling steps (one model evaluation each).
    pub sample_steps: usize,
    /// The samplers compared.
    pub methods: Vec<Sampler>,
    /// Projection settings.
    pub project: ProjectOptions,
    /// The inverse problem (`observations = 0`: skipped).
    pub inverse: InverseConfig,
    /// Seed of the data, the conditions, the observations and the sampling noise.
    pub seed: u64,
}

impl Default for DarcyStudyConfig {
    /// 32 × 32 cells, log-normal medium `a = e^g`, `g ~ N(0, 9(−Δ + 9I)^{−2})`, `f ~ U(0.5, 2)`,
    /// the global flux balance, 512 training fields, an FNO of width 32 with 8 × 8 modes and 8
    /// cells of padding (the axes are not periodic), 2000 Adam steps of 16, 3 conditions × 16
    /// fields, 50 sampling steps; inverse problem with 25 observations at 1 % noise.
    fn default() -> Self {
        DarcyStudyConfig {
            n: 32,
            medium: Permeability::LogNormal { grf: Grf { sigma: 3.0, tau: 3.0, alpha: 2.0, zero_mean: false }, mean: 0.0 },
            source: [0.5, 2.0],
            scope: DarcyScope::Global,
            n_train: 512,
            conditions: 3,
            ensemble: 16,
            train: FfmConfig {
                net: FieldNetConfig::Fno(FnoConfig {
                    width: 32,
                    modes: [8, 8],
                    layers: 4,
                    padding: [8, 8],
                    time_features: 8,
                    projection: 64,
                    ..FnoConfig::default()
                }),
                gp: GpConfig { length: vec![0.1, 0.1], ..GpConfig::default() },
                ..FfmConfig::default()
            },
            sample_steps: 50,
            methods: vec![
                Sampler::Unconstrained,
                Sampler::ProjectEnd,
                Sampler::Pcfm(PcfmOptions::default()),
                Sampler::Pcfm(PcfmOptions { anchor: Anchor::Noise, newton_steps: Some(1), relax: None }),
                Sampler::Guidance { eta: 0.5 },
            ],
            project: ProjectOptions::default(),
            inverse: InverseConfig::default(),
            seed: 0,
        }
    }
}

impl DarcyStudyConfig {
    /// A seconds-long configuration for tests: 8 × 8 cells, 24 fields, a tiny FNO, 30 steps.
    pub fn smoke() -> Self {
        let mut c = DarcyStudyConfig { n: 8, n_train: 24, conditions: 2, ensemble: 4, sample_steps: 6, ..DarcyStudyConfig::default() };
        c.train.net =
            FieldNetConfig::Fno(FnoConfig { width: 8, modes: [3, 3], layers: 2, padding: [2, 2], time_features: 2, projection: 16, ..FnoConfig::default() });
        c.train.run.steps = 30;
        c.train.run.batch_size = 4;
        c.train.run.checkpoint_every = 15;
        c.inverse = InverseConfig { observations: 6, samples: 4, dflow_iterations: 3, dflow_steps: 3, ..InverseConfig::default() };
        c
    }

    /// Checks the settings before any simulation or training.
    ///
    /// # Errors
    /// `InvalidArgument` naming the setting.
    pub fn validate(&self) -> Result<()> {
        if self.n < 2 || self.n_train == 0 || self.conditions == 0 || self.ensemble < 2 || self.sample_steps == 0 {
            return Err(Error::invalid("config", "need n ≥ 2, n_train ≥ 1, conditions ≥ 1, ensemble ≥ 2, sample_steps ≥ 1"));
        }
        self.medium.validate()?;
        let [lo, hi] = self.source;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(Error::invalid("source", format!("need a finite range lo ≤ hi, got {:?}", self.source)));
        }
        let inv = &self.inverse;
        if inv.observations > self.n * self.n {
            return Err(Error::invalid(
                "inverse.observations",
                format!("{} observations do not fit in {} cells (observation locations must lie in the domain)", inv.observations, self.n * self.n),
            ));
        }
        if inv.observations > 0
            && (inv.samples < 2
                || !(inv.noise > 0.0 && inv.noise.is_finite())
                || !(inv.eta > 0.0 && inv.eta < 2.0)
                || inv.dflow_steps == 0
                || !(inv.dflow_lr > 0.0))
        {
            return Err(Error::invalid("inverse", format!("need samples ≥ 2, noise > 0 and 0 < eta < 2, got {inv:?}")));
        }
        self.train.net.check_grid(self.n, self.n)
    }
}

/// One member: the seed of its medium and its source.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Member {
    medium_seed: u64,
    source: f64,
}

/// The field `[a, u]` (flat `[2, n, n]`) of one member.
fn simulate(cfg: &DarcyStudyConfig, m: Member) -> Result<Vec<f64>> {
    let mut a = cfg.medium.sample(cfg.n, &mut StdRng::seed_from_u64(m.medium_seed));
    let u = DarcyProblem::constant(a.clone(), m.source, 0.0)?.solve()?;
    a.extend(u);
    Ok(a)
}

/// Simulates the members (rayon) or reads them back from `path` when it holds the same ones.
fn fields_cached(cfg: &DarcyStudyConfig, members: &[Member], path: &Path, what: &str, quiet: bool) -> Result<Array2<f64>> {
    let key = serde_json::to_string(
        &serde_json::json!({"n": cfg.n, "medium": cfg.medium, "source": cfg.source, "count": members.len(), "seed": cfg.seed, "what": what}),
    )
    .expect("plain data");
    let (n, len) = (cfg.n, 2 * cfg.n * cfg.n);
    if let Ok(file) = H5File::open(path) {
        if matches!(file.attr("/", "physflow_study"), Ok(Attr::Str(s)) if s == key) {
            if let (Ok((_, a)), Ok((_, u))) = (file.read_f64("nu"), file.read_f64("tensor")) {
                if a.len() == members.len() * n * n && u.len() == a.len() {
                    let rows: Vec<f64> = (0..members.len())
                        .flat_map(|b| a[b * n * n..(b + 1) * n * n].iter().chain(&u[b * n * n..(b + 1) * n * n]).copied().collect::<Vec<_>>())
                        .collect();
                    return Array2::from_shape_vec((members.len(), len), rows).map_err(|e| Error::invalid("cache", e.to_string()));
                }
            }
        }
    }
    let rows = simulate_members(members, what, quiet, |m| simulate(cfg, *m))?;
    // PDEBench's Darcy layout: `nu [N, X, Y]` (permeability) and `tensor [N, 1, X, Y]` (pressure).
    let mut tree = H5Tree::new();
    let nn = n * n;
    tree.add_f64("nu", &[members.len(), n, n], rows.iter().flat_map(|r| r[..nn].to_vec()).collect(), &DatasetOptions::samples())?;
    tree.add_f64("tensor", &[members.len(), 1, n, n], rows.iter().flat_map(|r| r[nn..].to_vec()).collect(), &DatasetOptions::samples())?;
    let x: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect();
    tree.add_f64("x-coordinate", &[n], x.clone(), &DatasetOptions::default())?;
    tree.add_f64("y-coordinate", &[n], x, &DatasetOptions::default())?;
    tree.add_f64("source", &[members.len()], members.iter().map(|m| m.source).collect(), &DatasetOptions::default())?;
    tree.set_attr("/", "physflow_study", Attr::Str(key))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    tree.write(path)?;
    Array2::from_shape_vec((members.len(), len), rows.concat()).map_err(|e| Error::invalid("cache", e.to_string()))
}

/// The mean over fields of the relative finite-volume residual `‖r‖₂ / ‖f h²‖₂` over all cells,
/// for a constant source `f` and zero boundary values.
pub(crate) fn relative_pde_residual(n: usize, source: f64, fields: &Array2<f64>) -> f64 {
    let nn = n * n;
    let (f, g) = (vec![source; nn], vec![0.0; 4 * n]);
    let mut r = vec![0.0; nn];
    let scale = (nn as f64).sqrt() * source.abs() / nn as f64;
    let mut acc = 0.0;
    for row in fields.outer_iter() {
        let row = row.to_vec();
        cell_residuals(n, &row[..nn], &row[nn..], &f, &g, &mut r);
        acc += r.iter().map(|v| v * v).sum::<f64>().sqrt() / scale.max(1e-300);
    }
    acc / fields.nrows() as f64
}

/// One sampler's scores, averaged over the conditions: PCFM's metrics and the finite-volume
/// residual over all cells.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DarcyScores {
    /// MMSE, SMSE, constraint error, PDEBench errors of the mean, time per field, NFE.
    #[serde(flatten)]
    pub common: MethodScores,
    /// Mean relative finite-volume residual over all cells.
    pub pde_residual: f64,
}

/// One inverse-problem method's result.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InverseScores {
    /// The method.
    pub method: String,
    /// `‖ā − a‖₂ / ‖a‖₂` of the posterior-mean permeability.
    pub rel_l2_a: f64,
    /// `‖ū − u‖₂ / ‖u‖₂` of the posterior-mean pressure.
    pub rel_l2_u: f64,
    /// Mean over samples of `‖u_obs − y‖₂ / ‖y‖₂`.
    pub misfit: f64,
    /// The noise's own `‖ε‖₂ / ‖y‖₂` (the misfit a perfect reconstruction has).
    pub noise_level: f64,
    /// Wall seconds.
    pub seconds: f64,
}

/// Numbers of a finished study.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DarcyStudyReport {
    /// The configuration.
    pub config: DarcyStudyConfig,
    /// The device trained on.
    pub device: String,
    /// Training seconds.
    pub train_seconds: f64,
    /// Final training loss.
    pub final_loss: f64,
    /// The constraint of the first condition.
    pub constraint: String,
    /// Reference ensembles first, then one row per sampler.
    pub scores: Vec<DarcyScores>,
    /// The inverse problem: the prior mean first, then each method.
    pub inverse: Vec<InverseScores>,
    /// Files written.
    pub files: Vec<String>,
}

/// Runs the study under `out` (resuming: data files with the same settings and a finished or
/// partial training checkpoint are reused).
///
/// # Errors
/// Invalid settings (checked before any work), solver or projection failures, a diverging loss,
/// unwritable files.
pub fn run(cfg: &DarcyStudyConfig, device: &Device, out: &Path, quiet: bool) -> Result<DarcyStudyReport> {
    cfg.validate()?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let n = cfg.n;
    let mut files = Vec::new();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let [lo, hi] = cfg.source;
    let draw_source = |rng: &mut StdRng| if hi > lo { rng.random_range(lo..hi) } else { lo };
    let train_members: Vec<Member> = (0..cfg.n_train).map(|_| Member { medium_seed: rng.random::<u64>(), source: draw_source(&mut rng) }).collect();
    let sources: Vec<f64> = (0..cfg.conditions).map(|_| draw_source(&mut rng)).collect();
    let ref_members: Vec<Member> =
        sources.iter().flat_map(|&f| (0..cfg.ensemble).map(|_| Member { medium_seed: rng.random::<u64>(), source: f }).collect::<Vec<_>>()).collect();
    let truth_member = Member { medium_seed: rng.random::<u64>(), source: 1.0 };
    let data_dir = out.join("data");
    // The training fields are written once, then streamed from the file row by row.
    drop(fields_cached(cfg, &train_members, &data_dir.join("train.h5"), "train", quiet)?);
    let reference = fields_cached(cfg, &ref_members, &data_dir.join("reference.h5"), "reference", quiet)?;
    files.push(data_dir.join("train.h5").display().to_string());
    files.push(data_dir.join("reference.h5").display().to_string());
    let grid = pde::darcy_grid(n);

    let problem = FfmProblem { grid: &grid, data: FieldData::files(&[data_dir.join("train.h5")], &["nu", "tensor"])?, residual: None };
    // A checkpoint made for another configuration of the study (other data, seed or model) is
    // not resumed.
    let mut run = crate::train::Run::for_study(out.join("checkpoint"), cfg, quiet)?;
    let (model, train_report) = pde::train_ffm(&problem, &cfg.train, &mut run, device)?;
    model.save(&out.join("model"))?;
    files.push(out.join("model").display().to_string());

    let constraints: Vec<DarcyFlux> = sources.iter().map(|&f| DarcyFlux::constant(n, f, 0.0, cfg.scope)).collect::<Result<_>>()?;
    let refs: Vec<_> = (0..cfg.conditions).map(|k| reference.slice(ndarray::s![k * cfg.ensemble..(k + 1) * cfg.ensemble, ..])).collect();
    let mut floor = DarcyScores { common: MethodScores { method: "reference (simulator)".into(), ..MethodScores::default() }, ..DarcyScores::default() };
    for ((c, r), &f) in constraints.iter().zip(&refs).zip(&sources) {
        let ce = pde::constraint_error(c, r)?;
        floor.common.constraint_l2 += ce.mean_l2 / cfg.conditions as f64;
        floor.common.constraint_max = floor.common.constraint_max.max(ce.max_abs);
        floor.pde_residual += relative_pde_residual(n, f, &r.to_owned()) / cfg.conditions as f64;
    }
    let mut scores = vec![floor];
    let bar = progress((cfg.methods.len() * cfg.conditions) as u64, "sampling", quiet);
    let mut first_condition: Vec<(String, Array2<f64>)> = Vec::new();
    for method in &cfg.methods {
        let mut s = DarcyScores { common: MethodScores { method: method.label(), ..MethodScores::default() }, ..DarcyScores::default() };
        for (k, c) in constraints.iter().enumerate() {
            let samples = sample_ensemble(&model, &euler_sampler(*method, cfg.sample_steps, cfg.project), c, cfg.seed, k, cfg.ensemble)?;
            let w = 1.0 / cfg.conditions as f64;
            s.common.add_condition(w, &grid, c, &samples, &refs[k])?;
            s.pde_residual += w * relative_pde_residual(n, sources[k], &samples.fields);
            if k == 0 {
                first_condition.push((method.label(), samples.fields));
            }
            bar.inc(1);
        }
        scores.push(s);
    }
    bar.finish_and_clear();
    let fig = out.join("fields.png");
    draw_fields(&fig, n, &refs[0].to_owned(), &first_condition)?;
    files.push(fig.display().to_string());

    let inverse = if cfg.inverse.observations > 0 {
        let truth = simulate(cfg, truth_member)?;
        let (rows, fig) = inverse_problem(cfg, &model, &truth, out)?;
        files.push(fig.display().to_string());
        rows
    } else {
        Vec::new()
    };
    let tail = (train_report.losses.len() / 10).max(1);
    let final_loss = train_report.losses.iter().rev().take(tail).map(|l| l.1).sum::<f64>() / tail as f64;
    let (json, md) = (out.join("report.json"), out.join("report.md"));
    files.push(json.display().to_string());
    files.push(md.display().to_string());
    let report = DarcyStudyReport {
        config: cfg.clone(),
        device: crate::device::name_of(device),
        train_seconds: train_report.seconds,
        final_loss,
        constraint: constraints[0].name(),
        scores,
        inverse,
        files,
    };
    write_json(&json, &report)?;
    write_atomic(&md, markdown(&report).as_bytes())?;
    Ok(report)
}

/// The inverse problem on the true field `truth = [a, u]`: returns the scores (prior mean first)
/// and the figure's path.
fn inverse_problem(cfg: &DarcyStudyConfig, model: &pde::FieldModel, truth: &[f64], out: &Path) -> Result<(Vec<InverseScores>, PathBuf)> {
    let n = cfg.n;
    let nn = n * n;
    let inv = &cfg.inverse;
    let grid = pde::darcy_grid(n);
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(77));
    // k distinct cells (partial Fisher–Yates).
    let mut cells: Vec<usize> = (0..nn).collect();
    for i in 0..inv.observations {
        let j = rng.random_range(i..nn);
        cells.swap(i, j);
    }
    cells.truncate(inv.observations);
    cells.sort_unstable();
    let u_true = &truth[nn..];
    let mean_u = u_true.iter().sum::<f64>() / nn as f64;
    let sd_u = (u_true.iter().map(|v| (v - mean_u).powi(2)).sum::<f64>() / nn as f64).sqrt();
    let sigma = inv.noise * sd_u;
    let eps: Vec<f64> = cells
        .iter()
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            sigma * z
        })
        .collect();
    let y: Vec<f64> = cells.iter().zip(&eps).map(|(&c, e)| u_true[c] + e).collect();
    let y_norm = y.iter().map(|v| v * v).sum::<f64>().sqrt();
    let noise_level = eps.iter().map(|v| v * v).sum::<f64>().sqrt() / y_norm;
    let obs = LinearConstraint::fixed_values("pressure observations", &grid, cells.iter().zip(&y).map(|(&c, &v)| (nn + c, v)).collect())?;
    let both = Stack::new(vec![Box::new(obs.clone()), Box::new(DarcyFlux::constant(n, 1.0, 0.0, DarcyScope::Global)?)])?;
    let rel = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, z)| (x - z).powi(2)).sum::<f64>().sqrt() / b.iter().map(|z| z * z).sum::<f64>().sqrt();
    let score = |label: &str, fields: &Array2<f64>, seconds: f64| -> Result<InverseScores> {
        let (m, _) = pde::ensemble_moments(&fields.view())?;
        let m = m.to_vec();
        let misfit = fields.outer_iter().map(|r| cells.iter().zip(&y).map(|(&c, v)| (r[nn + c] - v).powi(2)).sum::<f64>().sqrt() / y_norm).sum::<f64>()
            / fields.nrows() as f64;
        Ok(InverseScores { method: label.into(), rel_l2_a: rel(&m[..nn], &truth[..nn]), rel_l2_u: rel(&m[nn..], u_true), misfit, noise_level, seconds })
    };
    let mut rows = Vec::new();
    let mut means: Vec<(String, Vec<f64>)> = Vec::new();
    let runs: [(&str, Option<&dyn Constraint>, Sampler); 3] = [
        ("prior (unconditional samples)", None, Sampler::Unconstrained),
        ("guidance on the observations (FlowDPS-style)", Some(&obs as &dyn Constraint), Sampler::Guidance { eta: inv.eta }),
        ("PCFM: observations + flux balance (hard)", Some(&both as &dyn Constraint), Sampler::Pcfm(PcfmOptions::default())),
    ];
    for (label, c, method) in runs {
        let mut noise_rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(4242));
        let x0 = model.noise_tensor(&mut noise_rng, inv.samples);
        let scfg = SampleConfig { method, steps: cfg.sample_steps, project: cfg.project, ..SampleConfig::default() };
        let s = pde::sample(model, &x0, c, &scfg)?;
        rows.push(score(label, &s.fields, s.stats.seconds)?);
        means.push((label.to_string(), pde::ensemble_moments(&s.fields.view())?.0.to_vec()));
    }
    if inv.dflow_iterations > 0 {
        let label = "D-Flow: noise optimised through the sampler";
        let start = std::time::Instant::now();
        let mut noise_rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(4242));
        let x0 = model.noise(&mut noise_rng, inv.samples);
        let fields = dflow(model, &x0, &cells.iter().map(|&c| nn + c).collect::<Vec<_>>(), &y, sigma, inv)?;
        rows.push(score(label, &fields, start.elapsed().as_secs_f64())?);
        means.push((label.to_string(), pde::ensemble_moments(&fields.view())?.0.to_vec()));
    }
    let fig = out.join("inverse.png");
    let mut maps = vec![cell_map("true permeability a", n, &truth[..nn]), cell_map(&format!("true pressure u ({} observations)", cells.len()), n, u_true)];
    let mut marked = vec![0.0; nn];
    for (&c, v) in cells.iter().zip(&y) {
        marked[c] = *v;
    }
    maps.push(cell_map("observations (0 elsewhere)", n, &marked));
    for (label, m) in &means {
        maps.push(cell_map(&format!("{label}: mean a"), n, &m[..nn]));
        maps.push(cell_map(&format!("{label}: |mean a − a|"), n, &m[..nn].iter().zip(&truth[..nn]).map(|(p, q)| (p - q).abs()).collect::<Vec<_>>()));
        maps.push(cell_map(&format!("{label}: mean u"), n, &m[nn..]));
    }
    save_heatmaps(&fig, &maps, 3)?;
    Ok((rows, fig))
}

/// D-Flow (Ben-Hamu et al. 2024): minimise over the initial noise `x₀` the observation misfit
/// of the sampled endpoint, `L(x₀) = Σ_b Σ_i (u₁,b[c_i] − y_i)² / (2σ²) + ½ Σ_b ‖(x₀,b − μ)/s‖² / n`,
/// `u₁ = Φ(x₀)` the model's flow by `dflow_steps` Euler steps, with gradients through the
/// sampler from the ODE engine's discrete adjoint ([`crate::ode::solve_for_grad`]) and Adam on
/// `x₀` (steps scaled per channel by the data scale `s`). The second term (the base's log
/// density up to its correlation, over the field size) keeps `x₀` near typical noise. Returns
/// the endpoints `[B, n]`.
///
/// # Errors
/// Solver failures (a non-finite state).
fn dflow(model: &pde::FieldModel, x0: &Array2<f64>, obs: &[usize], y: &[f64], sigma: f64, inv: &InverseConfig) -> Result<Array2<f64>> {
    use crate::host::ToHost;
    use crate::ode::{solve_for_grad, Gradient, Options, Solver};
    use burn::tensor::{Tensor, TensorData};
    let (b, n) = x0.dim();
    let per = n / model.meta.mean.len();
    let opts = Options::fixed(Solver::Euler, 1.0 / inv.dflow_steps as f64);
    let on = (model.device(), model.dtype());
    let to_tensor = |x: &Array2<f64>| Tensor::<2>::from_data(TensorData::new(x.iter().copied().collect::<Vec<f64>>(), [b, n]), (&on.0, on.1));
    let mut x = x0.clone();
    let (mut m, mut v) = (vec![0.0; b * n], vec![0.0; b * n]);
    let (b1, b2) = (0.9f64, 0.999f64);
    for it in 1..=inv.dflow_iterations {
        let (sol, tape) = solve_for_grad(model, to_tensor(&x), &[0.0, 1.0], &opts, Gradient::Direct)?;
        let u1 = sol.ys[1].host_vec::<f64>()?;
        let mut cot = vec![0.0; b * n];
        for r in 0..b {
            for (&c, yi) in obs.iter().zip(y) {
                cot[r * n + c] = (u1[r * n + c] - yi) / (sigma * sigma);
            }
        }
        let cot1 = Tensor::<2>::from_data(TensorData::new(cot, [b, n]), (&on.0, on.1));
        let grads = tape.backward(&[cot1.zeros_like(), cot1])?;
        let g = grads.y0.host_vec::<f64>()?;
        for k in 0..b * n {
            let c = (k % n) / per;
            let (mu, s) = (model.meta.mean[c], model.meta.std[c]);
            let gk = g[k] + (x[[k / n, k % n]] - mu) / (s * s * n as f64);
            m[k] = b1 * m[k] + (1.0 - b1) * gk;
            v[k] = b2 * v[k] + (1.0 - b2) * gk * gk;
            let (mh, vh) = (m[k] / (1.0 - b1.powi(it as i32)), v[k] / (1.0 - b2.powi(it as i32)));
            x[[k / n, k % n]] -= inv.dflow_lr * s * mh / (vh.sqrt() + 1e-12);
        }
    }
    let sol = crate::ode::solve(model, to_tensor(&x), &[0.0, 1.0], &opts)?;
    let u1 = sol.ys[1].host_vec::<f64>()?;
    Array2::from_shape_vec((b, n), u1).map_err(|e| Error::invalid("dflow", e.to_string()))
}

/// A cell field `[i][j]` as a heatmap (x across, y up).
fn cell_map(title: &str, n: usize, v: &[f64]) -> Heatmap {
    let xs: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect();
    let values = (0..n).flat_map(|j| (0..n).map(move |i| (i, j))).map(|(i, j)| v[i * n + j]).collect();
    Heatmap { title: title.into(), xlabel: "x".into(), ylabel: "y".into(), xs: xs.clone(), ys: xs, values }
}

fn draw_fields(path: &Path, n: usize, reference: &Array2<f64>, generated: &[(String, Array2<f64>)]) -> Result<()> {
    let nn = n * n;
    let mut maps = Vec::new();
    let mut add = |label: &str, row: Vec<f64>| {
        maps.push(cell_map(&format!("{label}: a"), n, &row[..nn]));
        maps.push(cell_map(&format!("{label}: u"), n, &row[nn..]));
        let mut r = vec![0.0; nn];
        cell_residuals(n, &row[..nn], &row[nn..], &vec![0.0; nn], &vec![0.0; 4 * n], &mut r);
        // The residual with f = 0 is the cell outflow; shown as is (its sum is the balance).
        maps.push(cell_map(&format!("{label}: cell outflow"), n, &r));
    };
    add("reference", reference.row(0).to_vec());
    for (label, g) in generated {
        add(label, g.row(0).to_vec());
    }
    save_heatmaps(path, &maps, 3)
}

/// Reads a finished study's report.
///
/// # Errors
/// `Io`/`Format` when it is missing or unreadable.
pub fn read_report(out: &Path) -> Result<DarcyStudyReport> {
    read_json(&out.join("report.json"))
}

/// The report as Markdown.
pub fn markdown(r: &DarcyStudyReport) -> String {
    let c = &r.config;
    let mut s = format!(
        "# PDE-field study: Darcy flow (permeability, pressure)\n\nTrained on device `{}`.\n\n\
         Fields [a, u] on {} × {} cells, source f ~ U({}, {}), {} training fields, {} conditions × {} fields, {} sampling steps, FFM {} steps ({:.0} s, final loss {:.4}).\n\
         Constraint: {}.\n\n\
         | method | MMSE | SMSE | CE ‖h‖₂ | max \\|h\\| | nRMSE (mean) | FV residual (all cells, rel.) | ms / field | of which projection | NFE |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        r.device, c.n, c.n, c.source[0], c.source[1], c.n_train, c.conditions, c.ensemble, c.sample_steps, c.train.run.steps, r.train_seconds, r.final_loss, r.constraint
    );
    for m in &r.scores {
        let c = &m.common;
        if c.method.starts_with("reference") {
            s += &format!("| {} | — | — | {:.2e} | {:.2e} | — | {:.2e} | — | — | — |\n", c.method, c.constraint_l2, c.constraint_max, m.pde_residual);
        } else {
            s += &format!(
                "| {} | {:.3e} | {:.3e} | {:.2e} | {:.2e} | {:.3e} | {:.3e} | {:.2} | {:.2} | {} |\n",
                c.method, c.mmse, c.smse, c.constraint_l2, c.constraint_max, c.nrmse_mean, m.pde_residual, c.ms_per_field, c.projection_ms_per_field, c.nfe
            );
        }
    }
    if !r.inverse.is_empty() {
        s += &format!(
            "\n## Inverse problem: permeability from {} noisy pressure observations ({} % noise), {} posterior samples\n\n\
             | method | rel. L2 of mean a | rel. L2 of mean u | data misfit | noise level | seconds |\n|---|---:|---:|---:|---:|---:|\n",
            c.inverse.observations,
            100.0 * c.inverse.noise,
            c.inverse.samples
        );
        for m in &r.inverse {
            s += &format!("| {} | {:.3} | {:.3} | {:.3e} | {:.3e} | {:.1} |\n", m.method, m.rel_l2_a, m.rel_l2_u, m.misfit, m.noise_level, m.seconds);
        }
    }
    s += "\nFigures: `fields.png` (one field per method: permeability, pressure, cell outflow), `inverse.png` (truth, observations, posterior means and errors).\n";
    s
}

/// The Darcy field study in the study table ([`super::TABLE`]).
pub struct PdeDarcyStudy;

impl super::Study for PdeDarcyStudy {
    type Config = DarcyStudyConfig;
    type Report = DarcyStudyReport;

    fn dir(_cfg: &DarcyStudyConfig) -> String {
        "pde_darcy".into()
    }

    fn seed(cfg: &mut DarcyStudyConfig) -> &mut u64 {
        &mut cfg.seed
    }

    fn steps(cfg: &mut DarcyStudyConfig) -> &mut usize {
        &mut cfg.train.run.steps
    }

    fn run(cfg: &DarcyStudyConfig, dir: &Path, ctx: &super::Context) -> Result<DarcyStudyReport> {
        run(cfg, &(ctx.device)()?, dir, ctx.quiet)
    }

    fn summary(_cfg: &DarcyStudyConfig, r: &DarcyStudyReport) -> String {
        markdown(r)
    }

    fn files(r: &DarcyStudyReport) -> &[String] {
        &r.files
    }
}
