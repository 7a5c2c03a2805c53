//! Study: physics-constrained generation of 2D Navier–Stokes vorticity, PCFM's Navier–Stokes
//! task (Utkarsh et al. 2025) at a CPU-sized grid.
//!
//! The family: vorticity `ω(x, y, t)` on the periodic `[0, 1)²` from [`crate::sim::ns2d`] with
//! the FNO data's diagonal forcing (`a = 0.1`), initial vorticity `ω₀ ~ GRF` ([`Grf::default`])
//! and viscosity `ν = ν₀ e^{s ξ}`, `ξ ~ N(0, 1)`. The *condition* is the initial vorticity; the
//! free factor is `ν`, so the reference ensemble of a condition is the simulator's solutions from
//! that `ω₀` with `ν` drawn from its prior. Constraint (linear): the first frame equals `ω₀`, and
//! every frame keeps its total vorticity `h² Σ ω = h² Σ ω₀` (the advection and the forcing
//! conserve it; the periodic boundary is built into the grid).
//!
//! Layout choice: the `T` frames are the *channels* of a 2D field `[T, X, Y]`, and the model is a
//! 2D FNO over `(x, y)` with `T` channels in and out. The alternative — time as a third FNO
//! axis — would need 3D spectral layers over a short, non-periodic time axis (padding it doubles
//! the cost); the channel layout keeps the spectral cost at `modes_x · modes_y` per layer, uses
//! the grid, GP, constraint and metric code unchanged, and suits a fixed number of frames (it is
//! not resolution-free in time, which the task does not need).
//!
//! Besides PCFM's metrics (MMSE, SMSE, constraint error, nRMSE of the ensemble mean) the report
//! gives the *frame residual* of every transition `k → k+1` — `‖ω_{k+1} − S_Δt(ω_k)‖/‖ω_{k+1}‖`
//! with `S_Δt` the simulator over one frame interval at `ν₀` — for the generated fields and for
//! the reference (whose floor comes from its `ν ≠ ν₀`): a seam between the imposed first frame and
//! a model interior that does not follow it shows in the first transition.

use std::path::Path;

use burn::tensor::Device;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rustfft::num_complex::Complex64;
use serde::{Deserialize, Serialize};

use super::pde_fields::{euler_sampler, sample_ensemble, simulate_members, slug, MethodScores};
use crate::io::h5::{Attr, DatasetOptions, H5File, H5Tree};
use crate::nn::{FieldNetConfig, FnoConfig};
use crate::pde::grid::Axis;
use crate::pde::{
    self, Anchor, Constraint, FfmConfig, FfmProblem, FieldData, GpConfig, Grid, LinearConstraint, PcfmOptions, ProjectOptions, Quadrature, Sampler, Stack,
};
use crate::plot::{save_figure, save_heatmaps, Heatmap, Panel, Series};
use crate::sim::grf::Grf;
use crate::sim::ns2d::{Ns2d, Ns2dConfig};
use crate::train::{progress, read_json, write_atomic, write_json, RunOptions};
use crate::{Error, Result};

/// Configuration of the Navier–Stokes study; every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ns2dStudyConfig {
    /// Grid points per side.
    pub n: usize,
    /// Frames on `[0, t_end]` (both ends included): the field's channels.
    pub frames: usize,
    /// Final time.
    pub t_end: f64,
    /// Median viscosity `ν₀`.
    pub viscosity: f64,
    /// Log-normal spread `s` of the viscosity (the free factor).
    pub viscosity_spread: f64,
    /// Forcing amplitude `a` of `a (sin 2π(x + y) + cos 2π(x + y))`.
    pub forcing: f64,
    /// Training fields.
    pub n_train: usize,
    /// Test conditions (initial vorticities).
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
    /// Seed of the data, the conditions and the sampling noise (training has its own).
    pub seed: u64,
}

impl Default for Ns2dStudyConfig {
    /// The CPU-sized task: 32 × 32, 16 frames on `[0, 7.5]`, `ν₀ = 10⁻³`, spread 0.5, 512 training
    /// fields, an FNO of width 64 with 8 × 8 modes over 16 channels, 3000 Adam steps of 16
    /// fields, 3 conditions × 16 fields, 50 sampling steps.
    fn default() -> Self {
        Ns2dStudyConfig {
            n: 32,
            frames: 16,
            t_end: 7.5,
            viscosity: 1e-3,
            viscosity_spread: 0.5,
            forcing: 0.1,
            n_train: 512,
            conditions: 3,
            ensemble: 16,
            train: FfmConfig {
                // Width 64: the 16 frames share the network's channels (width 32 stalls at a
                // flow-matching loss of 0.75 after 2000 steps, 64 reaches 0.26 in 3000).
                net: FieldNetConfig::Fno(FnoConfig {
                    width: 64,
                    modes: [8, 8],
                    layers: 4,
                    padding: [0, 0],
                    time_features: 8,
                    projection: 128,
                    ..FnoConfig::default()
                }),
                gp: GpConfig { length: vec![0.1, 0.1], ..GpConfig::default() },
                run: RunOptions { steps: 3000, ..FfmConfig::default().run },
                ..FfmConfig::default()
            },
            sample_steps: 50,
            methods: vec![
                Sampler::Unconstrained,
                Sampler::ProjectEnd,
                Sampler::Pcfm(PcfmOptions::default()),
                Sampler::Pcfm(PcfmOptions { anchor: Anchor::Noise, newton_steps: Some(1), relax: None }),
                Sampler::Eci { mix: 1 },
                Sampler::Guidance { eta: 0.5 },
            ],
            project: ProjectOptions::default(),
            seed: 0,
        }
    }
}

impl Ns2dStudyConfig {
    /// A seconds-long configuration for tests: 8 × 8, 4 frames, 24 fields, a tiny FNO, 30
    /// steps. Numbers from it show the pipeline works, not what the method achieves.
    pub fn smoke() -> Self {
        let mut c = Ns2dStudyConfig { n: 8, frames: 4, t_end: 0.6, n_train: 24, conditions: 2, ensemble: 4, sample_steps: 6, ..Ns2dStudyConfig::default() };
        c.train.net =
            FieldNetConfig::Fno(FnoConfig { width: 8, modes: [3, 3], layers: 2, padding: [0, 0], time_features: 2, projection: 16, ..FnoConfig::default() });
        c.train.run.steps = 30;
        c.train.run.batch_size = 4;
        c.train.run.checkpoint_every = 15;
        c
    }

    /// Checks the settings before any simulation or training.
    ///
    /// # Errors
    /// `InvalidArgument` naming the setting.
    pub fn validate(&self) -> Result<()> {
        if self.frames < 2 || self.n_train == 0 || self.conditions == 0 || self.ensemble < 2 || self.sample_steps == 0 {
            return Err(Error::invalid("config", "need frames ≥ 2, n_train ≥ 1, conditions ≥ 1, ensemble ≥ 2, sample_steps ≥ 1"));
        }
        if !(self.t_end > 0.0 && self.t_end.is_finite()) || !(self.viscosity_spread >= 0.0 && self.viscosity_spread.is_finite()) {
            return Err(Error::invalid("t_end", format!("need t_end > 0 and viscosity_spread ≥ 0 (finite), got {} and {}", self.t_end, self.viscosity_spread)));
        }
        self.solver(self.viscosity).validate()?;
        self.train.net.check_grid(self.n, self.n)
    }

    /// The solver settings at viscosity `nu`.
    pub fn solver(&self, nu: f64) -> Ns2dConfig {
        Ns2dConfig { n: self.n, viscosity: nu, forcing: crate::sim::ns2d::Forcing::Diagonal { amplitude: self.forcing }, ..Ns2dConfig::default() }
    }

    /// Frame times `t_k = k t_end/(T − 1)`.
    pub fn times(&self) -> Vec<f64> {
        (0..self.frames).map(|k| self.t_end * k as f64 / (self.frames - 1) as f64).collect()
    }

    /// The field grid: channels `ω(t_k)`, periodic axes `x`, `y` with spacing `1/n`.
    pub fn grid(&self) -> Grid {
        let h = 1.0 / self.n as f64;
        Grid {
            channels: self.times().iter().map(|t| format!("w(t={t:.3})")).collect(),
            axes: vec![Axis::space("x", self.n, 0.0, h, true), Axis::space("y", self.n, 0.0, h, true)],
        }
    }
}

/// One member of the family: the seed of its initial vorticity and its viscosity.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Member {
    ic_seed: u64,
    viscosity: f64,
}

fn draw_viscosity(cfg: &Ns2dStudyConfig, rng: &mut StdRng) -> f64 {
    let xi: f64 = StandardNormal.sample(rng);
    cfg.viscosity * (cfg.viscosity_spread * xi).exp()
}

/// The initial vorticity of `seed` on the study's grid, as the simulator holds it (the GRF
/// sample without the modes outside the 2/3 band): the first frame of every field.
fn initial_vorticity(cfg: &Ns2dStudyConfig, seed: u64) -> Result<Vec<f64>> {
    let mut ns = Ns2d::new(cfg.solver(cfg.viscosity))?;
    ns.set_random_vorticity(&Grf::default(), &mut StdRng::seed_from_u64(seed))?;
    Ok(ns.vorticity())
}

/// The frames of one member, flat `[T, X, Y]`.
fn simulate(cfg: &Ns2dStudyConfig, m: Member) -> Result<Vec<f64>> {
    let mut ns = Ns2d::new(cfg.solver(m.viscosity))?;
    ns.set_random_vorticity(&Grf::default(), &mut StdRng::seed_from_u64(m.ic_seed))?;
    ns.frames(&cfg.times())
}

/// The constraint of the condition `ω₀`: the first frame is `ω₀`, every other frame has its
/// total vorticity.
///
/// # Errors
/// As the constraint constructors.
pub fn condition_constraint(grid: &Grid, w0: &[f64]) -> Result<Stack> {
    let nn = w0.len();
    let h2 = grid.axes[0].step * grid.axes[1].step;
    let total = h2 * w0.iter().sum::<f64>();
    let mut parts: Vec<Box<dyn Constraint>> =
        vec![Box::new(LinearConstraint::fixed_values("initial vorticity", grid, w0.iter().copied().enumerate().collect())?)];
    for c in 1..grid.channels.len() {
        debug_assert_eq!(grid.len() / grid.channels.len(), nn);
        parts.push(Box::new(LinearConstraint::mass_conservation(grid, c, Quadrature::Uniform, Some(total))?));
    }
    Stack::new(parts)
}

/// Simulates the members (rayon) or reads them back from `path` when it holds the same ones.
fn fields_cached(cfg: &Ns2dStudyConfig, members: &[Member], path: &Path, what: &str, quiet: bool) -> Result<Array2<f64>> {
    #[derive(Serialize)]
    struct Key<'a> {
        n: usize,
        frames: usize,
        t_end: f64,
        viscosity: f64,
        spread: f64,
        forcing: f64,
        count: usize,
        seed: u64,
        what: &'a str,
    }
    let key = serde_json::to_string(&Key {
        n: cfg.n,
        frames: cfg.frames,
        t_end: cfg.t_end,
        viscosity: cfg.viscosity,
        spread: cfg.viscosity_spread,
        forcing: cfg.forcing,
        count: members.len(),
        seed: cfg.seed,
        what,
    })
    .expect("plain data");
    let len = cfg.frames * cfg.n * cfg.n;
    if let Ok(file) = H5File::open(path) {
        if matches!(file.attr("/", "physflow_study"), Ok(Attr::Str(s)) if s == key) {
            if let Ok((shape, v)) = file.read_f64("tensor") {
                if shape == [members.len(), cfg.frames, cfg.n, cfg.n] {
                    return Array2::from_shape_vec((members.len(), len), v).map_err(|e| Error::invalid("cache", e.to_string()));
                }
            }
        }
    }
    let rows = simulate_members(members, what, quiet, |m| simulate(cfg, *m))?;
    let mut tree = H5Tree::new();
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    tree.add_f64("tensor", &[members.len(), cfg.frames, cfg.n, cfg.n], flat.clone(), &DatasetOptions::samples())?;
    let x: Vec<f64> = (0..cfg.n).map(|i| i as f64 / cfg.n as f64).collect();
    let plain = DatasetOptions::default();
    tree.add_f64("x-coordinate", &[cfg.n], x.clone(), &plain)?;
    tree.add_f64("y-coordinate", &[cfg.n], x, &plain)?;
    tree.add_f64("t-coordinate", &[cfg.frames], cfg.times(), &plain)?;
    tree.add_f64("viscosity", &[members.len()], members.iter().map(|m| m.viscosity).collect(), &plain)?;
    tree.add("initial_seed", &[members.len()], crate::io::h5::Data::I64(members.iter().map(|m| m.ic_seed as i64).collect()), &plain)?;
    tree.set_attr("/", "physflow_study", Attr::Str(key))?;
    tree.set_attr("/", "equation", Attr::Str("ns2d vorticity, diagonal forcing".into()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    tree.write(path)?;
    Array2::from_shape_vec((members.len(), len), flat).map_err(|e| Error::invalid("cache", e.to_string()))
}

/// One sampler's scores, averaged over the conditions: PCFM's metrics and the frame residuals.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ns2dScores {
    /// MMSE, SMSE, constraint error, PDEBench errors of the mean, time per field, NFE.
    #[serde(flatten)]
    pub common: MethodScores,
    /// Frame residual of the first transition `0 → 1` (first condition).
    pub residual_first: f64,
    /// Frame residual averaged over the other transitions (first condition).
    pub residual_rest: f64,
}

/// Numbers of a finished study.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ns2dStudyReport {
    /// The configuration.
    pub config: Ns2dStudyConfig,
    /// The device trained on.
    pub device: String,
    /// Training seconds.
    pub train_seconds: f64,
    /// Final training loss (mean of the last 10 % of logged steps).
    pub final_loss: f64,
    /// Seconds spent simulating (0 when the data files were reused).
    pub simulate_seconds: f64,
    /// Reference ensembles first, then one row per sampler.
    pub scores: Vec<Ns2dScores>,
    /// Frame residuals per transition, per row of `scores` (first condition).
    pub frame_residuals: Vec<(String, Vec<f64>)>,
    /// Files written.
    pub files: Vec<String>,
}

/// Relative frame residuals `mean_b ‖ω_{k+1} − S_Δt(ω_k)‖₂ / ‖ω_{k+1}‖₂`, `k = 0..T−2`, with
/// `S_Δt` the simulator at `ν₀` over one frame interval.
///
/// # Errors
/// Simulator failures (a generated frame so rough that the step would violate the CFL limit
/// gets smaller steps; a non-finite frame is an error).
pub(crate) fn frame_residuals(cfg: &Ns2dStudyConfig, fields: &Array2<f64>) -> Result<Vec<f64>> {
    use rayon::prelude::*;
    let nn = cfg.n * cfg.n;
    let dt = cfg.t_end / (cfg.frames - 1) as f64;
    let per_field: Vec<Vec<f64>> = (0..fields.nrows())
        .into_par_iter()
        .map(|b| -> Result<Vec<f64>> {
            let row = fields.row(b).to_vec();
            let mut ns = Ns2d::new(cfg.solver(cfg.viscosity))?;
            let mut out = Vec::with_capacity(cfg.frames - 1);
            for k in 0..cfg.frames - 1 {
                ns.set_vorticity(&row[k * nn..(k + 1) * nn], 0.0)?;
                ns.advance_to(dt)?;
                let pred = ns.vorticity();
                let next = &row[(k + 1) * nn..(k + 2) * nn];
                let num = pred.iter().zip(next).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
                let den = next.iter().map(|b| b * b).sum::<f64>().sqrt().max(1e-300);
                out.push(num / den);
            }
            Ok(out)
        })
        .collect::<Result<_>>()?;
    let b = per_field.len() as f64;
    Ok((0..cfg.frames - 1).map(|k| per_field.iter().map(|r| r[k]).sum::<f64>() / b).collect())
}

/// Radially averaged enstrophy spectrum `Z(k) = ½ Σ_{|k'| ∈ [k − ½, k + ½)} |ω̂_{k'}|² / n⁴`
/// of frame `frame`, averaged over the fields, for `k = 1..n/2`.
pub(crate) fn enstrophy_spectrum(n: usize, frames: usize, frame: usize, fields: &Array2<f64>) -> Vec<f64> {
    let nn = n * n;
    let mut fft = crate::sim::fft2::Fft2::new(n);
    let mut spec = vec![0.0; n / 2 + 1];
    let mut buf = vec![Complex64::default(); nn];
    for row in fields.outer_iter() {
        debug_assert_eq!(row.len(), frames * nn);
        for (b, v) in buf.iter_mut().zip(row.iter().skip(frame * nn).take(nn)) {
            *b = Complex64::new(*v, 0.0);
        }
        fft.forward(&mut buf);
        for a in 0..n {
            for c in 0..n {
                let (ky, kx) = (a.min(n - a) as f64, c.min(n - c) as f64);
                let k = (kx * kx + ky * ky).sqrt().round() as usize;
                if k < spec.len() {
                    spec[k] += 0.5 * buf[a * n + c].norm_sqr() / (nn * nn) as f64;
                }
            }
        }
    }
    spec.iter().skip(1).map(|s| s / fields.nrows() as f64).collect()
}

/// Runs the study, writing data, model, figures and report under `out` (resuming: data files
/// with the same settings and a finished or partial training checkpoint are reused).
///
/// # Errors
/// Invalid settings (checked before any work), simulation or projection failures, a diverging
/// loss, unwritable files.
pub fn run(cfg: &Ns2dStudyConfig, device: &Device, out: &Path, quiet: bool) -> Result<Ns2dStudyReport> {
    cfg.validate()?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut files: Vec<String> = Vec::new();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let train_members: Vec<Member> = (0..cfg.n_train).map(|_| Member { ic_seed: rng.random::<u64>(), viscosity: draw_viscosity(cfg, &mut rng) }).collect();
    let mut cond_seeds = Vec::new();
    let mut ref_members = Vec::new();
    for _ in 0..cfg.conditions {
        let s = rng.random::<u64>();
        cond_seeds.push(s);
        for _ in 0..cfg.ensemble {
            ref_members.push(Member { ic_seed: s, viscosity: draw_viscosity(cfg, &mut rng) });
        }
    }
    let data_dir = out.join("data");
    let t_sim = std::time::Instant::now();
    // The training fields are written once, then streamed from the file row by row.
    drop(fields_cached(cfg, &train_members, &data_dir.join("train.h5"), "train", quiet)?);
    let reference = fields_cached(cfg, &ref_members, &data_dir.join("reference.h5"), "reference", quiet)?;
    let simulate_seconds = t_sim.elapsed().as_secs_f64();
    files.push(data_dir.join("train.h5").display().to_string());
    files.push(data_dir.join("reference.h5").display().to_string());
    let grid = cfg.grid();

    let problem = FfmProblem { grid: &grid, data: FieldData::files(&[data_dir.join("train.h5")], &["tensor"])?, residual: None };
    // A checkpoint made for another configuration of the study (other data, seed or model) is
    // not resumed.
    let mut run = crate::train::Run::for_study(out.join("checkpoint"), cfg, quiet)?;
    let (model, train_report) = pde::train_ffm(&problem, &cfg.train, &mut run, device)?;
    model.save(&out.join("model"))?;
    files.push(out.join("model").display().to_string());

    let constraints: Vec<Stack> = cond_seeds.iter().map(|&s| condition_constraint(&grid, &initial_vorticity(cfg, s)?)).collect::<Result<_>>()?;
    let refs: Vec<_> = (0..cfg.conditions).map(|k| reference.slice(ndarray::s![k * cfg.ensemble..(k + 1) * cfg.ensemble, ..])).collect();
    let mut floor = Ns2dScores { common: MethodScores { method: "reference (simulator)".into(), ..MethodScores::default() }, ..Ns2dScores::default() };
    for (c, r) in constraints.iter().zip(&refs) {
        let ce = pde::constraint_error(c, r)?;
        floor.common.constraint_l2 += ce.mean_l2 / cfg.conditions as f64;
        floor.common.constraint_max = floor.common.constraint_max.max(ce.max_abs);
    }
    let r0 = refs[0].to_owned();
    let ref_res = frame_residuals(cfg, &r0)?;
    floor.residual_first = ref_res[0];
    floor.residual_rest = mean(&ref_res[1..]);
    let mut scores = vec![floor];
    let mut frame_res = vec![("reference (simulator)".to_string(), ref_res)];
    let bar = progress((cfg.methods.len() * cfg.conditions) as u64, "sampling", quiet);
    let mut first_condition: Vec<(String, Array2<f64>)> = Vec::new();
    for method in &cfg.methods {
        let mut s = Ns2dScores { common: MethodScores { method: method.label(), ..MethodScores::default() }, ..Ns2dScores::default() };
        for (k, c) in constraints.iter().enumerate() {
            let samples = sample_ensemble(&model, &euler_sampler(*method, cfg.sample_steps, cfg.project), c, cfg.seed, k, cfg.ensemble)?;
            s.common.add_condition(1.0 / cfg.conditions as f64, &grid, c, &samples, &refs[k])?;
            if k == 0 {
                let res = frame_residuals(cfg, &samples.fields)?;
                s.residual_first = res[0];
                s.residual_rest = mean(&res[1..]);
                frame_res.push((method.label(), res));
                first_condition.push((method.label(), samples.fields));
            }
            bar.inc(1);
        }
        scores.push(s);
    }
    bar.finish_and_clear();
    for (label, f) in &first_condition {
        let path = out.join("samples").join(format!("{}.h5", slug(label)));
        write_samples(&path, cfg, f, label)?;
        files.push(path.display().to_string());
    }
    let figs = [out.join("vorticity.png"), out.join("spectra.png"), out.join("errors.png")];
    draw_vorticity(&figs[0], cfg, &r0, &first_condition)?;
    draw_spectra(&figs[1], cfg, &r0, &first_condition, &frame_res, &train_report.losses)?;
    draw_errors(&figs[2], cfg, &pde::ensemble_moments(&refs[0])?.0.to_vec(), &first_condition)?;
    files.extend(figs.iter().map(|f| f.display().to_string()));
    let tail = (train_report.losses.len() / 10).max(1);
    let final_loss = train_report.losses.iter().rev().take(tail).map(|l| l.1).sum::<f64>() / tail as f64;
    let (json, md) = (out.join("report.json"), out.join("report.md"));
    files.push(json.display().to_string());
    files.push(md.display().to_string());
    let report = Ns2dStudyReport {
        config: cfg.clone(),
        device: crate::device::name_of(device),
        train_seconds: train_report.seconds,
        final_loss,
        simulate_seconds,
        scores,
        frame_residuals: frame_res,
        files,
    };
    write_json(&json, &report)?;
    write_atomic(&md, markdown(&report).as_bytes())?;
    Ok(report)
}

/// Reads a finished study's report.
///
/// # Errors
/// `Io`/`Format` when it is missing or unreadable.
pub fn read_report(out: &Path) -> Result<Ns2dStudyReport> {
    read_json(&out.join("report.json"))
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Generated fields in PDEBench's 2D layout, `tensor [B, T, X, Y]`.
fn write_samples(path: &Path, cfg: &Ns2dStudyConfig, f: &Array2<f64>, label: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut tree = H5Tree::new();
    tree.add_f64("tensor", &[f.nrows(), cfg.frames, cfg.n, cfg.n], f.iter().copied().collect(), &DatasetOptions::samples())?;
    tree.add_f64("t-coordinate", &[cfg.frames], cfg.times(), &DatasetOptions::default())?;
    tree.set_attr("/", "method", Attr::Str(label.into()))?;
    tree.write(path)
}

/// Frame `k` of field `row` as a heatmap (x across, y up).
fn frame_map(title: String, cfg: &Ns2dStudyConfig, row: &[f64], k: usize) -> Heatmap {
    let n = cfg.n;
    let xs: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
    let values = (0..n).flat_map(|j| (0..n).map(move |i| (i, j))).map(|(i, j)| row[k * n * n + i * n + j]).collect();
    Heatmap { title, xlabel: "x".into(), ylabel: "y".into(), xs: xs.clone(), ys: xs, values }
}

fn draw_vorticity(path: &Path, cfg: &Ns2dStudyConfig, reference: &Array2<f64>, generated: &[(String, Array2<f64>)]) -> Result<()> {
    let times = cfg.times();
    let ks = [0, cfg.frames / 2, cfg.frames - 1];
    let mut maps = Vec::new();
    let mut add = |label: &str, row: Vec<f64>| {
        for &k in &ks {
            maps.push(frame_map(format!("{label}: t = {:.2}", times[k]), cfg, &row, k));
        }
    };
    add("reference", reference.row(0).to_vec());
    for (label, g) in generated {
        add(label, g.row(0).to_vec());
    }
    save_heatmaps(path, &maps, 3)
}

fn draw_errors(path: &Path, cfg: &Ns2dStudyConfig, ref_mean: &[f64], generated: &[(String, Array2<f64>)]) -> Result<()> {
    let k = cfg.frames - 1;
    let maps = generated
        .iter()
        .map(|(label, g)| {
            let (gm, _) = pde::ensemble_moments(&g.view())?;
            let err: Vec<f64> = gm.iter().zip(ref_mean).map(|(a, b)| (a - b).abs()).collect();
            Ok(frame_map(format!("{label}: |mean − reference mean| at t = {:.2}", cfg.t_end), cfg, &err, k))
        })
        .collect::<Result<Vec<_>>>()?;
    save_heatmaps(path, &maps, 3)
}

fn draw_spectra(
    path: &Path,
    cfg: &Ns2dStudyConfig,
    reference: &Array2<f64>,
    generated: &[(String, Array2<f64>)],
    residuals: &[(String, Vec<f64>)],
    losses: &[(usize, f64, f64)],
) -> Result<()> {
    let k = cfg.frames - 1;
    let ks: Vec<f64> = (1..=cfg.n / 2).map(|k| (k as f64).log10()).collect();
    let mut spec = Panel {
        title: format!("enstrophy spectrum at t = {:.2} (log10 k)", cfg.t_end),
        xlabel: "log10 k".into(),
        ylabel: "Z(k)".into(),
        log_y: true,
        ..Panel::default()
    };
    let mut add = |label: &str, f: &Array2<f64>, color: usize| {
        let z: Vec<f64> = enstrophy_spectrum(cfg.n, cfg.frames, k, f).into_iter().map(|v| v.max(1e-30)).collect();
        spec.series.push(Series::line(label, ks.clone(), z, color));
    };
    add("reference", reference, 0);
    for (i, (label, g)) in generated.iter().enumerate() {
        add(label, g, i + 1);
    }
    let mut res = Panel {
        title: "frame residual |w(k+1) − S(w(k))| / |w(k+1)|".into(),
        xlabel: "transition k → k+1".into(),
        ylabel: "relative L2".into(),
        log_y: true,
        ..Panel::default()
    };
    for (i, (label, r)) in residuals.iter().enumerate() {
        res.series.push(Series::line(label.clone(), (0..r.len()).map(|k| k as f64).collect(), r.iter().map(|v| v.max(1e-17)).collect(), i));
    }
    let loss = Panel {
        title: "training loss (flow matching)".into(),
        xlabel: "step".into(),
        ylabel: "MSE".into(),
        log_y: true,
        series: vec![Series::line("", losses.iter().map(|l| l.0 as f64).collect(), losses.iter().map(|l| l.1).collect(), 0)],
    };
    save_figure(path, &[spec, res, loss], 3)
}

/// The report as Markdown.
pub fn markdown(r: &Ns2dStudyReport) -> String {
    let c = &r.config;
    let mut s = format!(
        "# PDE-field study: 2D Navier–Stokes vorticity\n\nTrained on device `{}`.\n\n\
         Fields [T, X, Y] = [{}, {}, {}] on t ∈ [0, {}], ν = {} · e^(s ξ) (s = {}), forcing a = {}; {} training fields ({:.0} s to simulate), \
         {} conditions × {} fields, {} sampling steps, FFM {} steps ({:.0} s, final loss {:.4}).\n\
         Constraint: the first frame is the condition's ω₀, and every frame keeps its total vorticity.\n\n\
         | method | MMSE | SMSE | CE ‖h‖₂ | max \\|h\\| | nRMSE (mean) | frame residual 0→1 | frame residual, rest | ms / field | of which projection | NFE |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        r.device,
        c.frames,
        c.n,
        c.n,
        c.t_end,
        c.viscosity,
        c.viscosity_spread,
        c.forcing,
        c.n_train,
        r.simulate_seconds,
        c.conditions,
        c.ensemble,
        c.sample_steps,
        c.train.run.steps,
        r.train_seconds,
        r.final_loss
    );
    for m in &r.scores {
        let c = &m.common;
        if c.method.starts_with("reference") {
            s += &format!(
                "| {} | — | — | {:.2e} | {:.2e} | — | {:.3e} | {:.3e} | — | — | — |\n",
                c.method, c.constraint_l2, c.constraint_max, m.residual_first, m.residual_rest
            );
        } else {
            s += &format!(
                "| {} | {:.3e} | {:.3e} | {:.2e} | {:.2e} | {:.3e} | {:.3e} | {:.3e} | {:.2} | {:.2} | {} |\n",
                c.method,
                c.mmse,
                c.smse,
                c.constraint_l2,
                c.constraint_max,
                c.nrmse_mean,
                m.residual_first,
                m.residual_rest,
                c.ms_per_field,
                c.projection_ms_per_field,
                c.nfe
            );
        }
    }
    s += "\nThe frame residual is ‖ω(t_{k+1}) − S(ω(t_k))‖ / ‖ω(t_{k+1})‖ with S the simulator over one frame interval at ν₀ (first condition); \
          the reference's own value is its floor (its fields have ν ≠ ν₀).\n\n\
          Figures: `vorticity.png` (one field per method at the first, middle and last frame), `spectra.png` (enstrophy spectra at the last frame, \
          frame residuals, training loss), `errors.png` (|ensemble mean − reference mean| at the last frame).\n";
    s
}

/// The Navier–Stokes field study in the study table ([`super::TABLE`]).
pub struct PdeNs2dStudy;

impl super::Study for PdeNs2dStudy {
    type Config = Ns2dStudyConfig;
    type Report = Ns2dStudyReport;

    fn dir(_cfg: &Ns2dStudyConfig) -> String {
        "pde_ns2d".into()
    }

    fn seed(cfg: &mut Ns2dStudyConfig) -> &mut u64 {
        &mut cfg.seed
    }

    fn steps(cfg: &mut Ns2dStudyConfig) -> &mut usize {
        &mut cfg.train.run.steps
    }

    fn run(cfg: &Ns2dStudyConfig, dir: &Path, ctx: &super::Context) -> Result<Ns2dStudyReport> {
        run(cfg, &(ctx.device)()?, dir, ctx.quiet)
    }

    fn summary(_cfg: &Ns2dStudyConfig, r: &Ns2dStudyReport) -> String {
        markdown(r)
    }

    fn files(r: &Ns2dStudyReport) -> &[String] {
        &r.files
    }
}
