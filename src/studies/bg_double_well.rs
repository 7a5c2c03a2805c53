//! Study: a Boltzmann generator for the 2D double well trained by energy only, checked against
//! exact quadrature.
//!
//! `u(x) = a x₀ + b x₀² + c x₀⁴ + ½ x₁²` (a = 0, b = −4, c = 1: two wells at `x₀ = ±√2`
//! separated by a barrier of 4 kT at β = 1). The flow never sees a sample of the target:
//!
//! 1. Train by reverse KL, `E_z[β u(f(z)) − log|det ∂f/∂z|]`.
//! 2. Draw `n_eval` samples with `log q`, form `log w = −β u − log q`, Kish ESS/N.
//! 3. Free energy difference between the wells `ΔF = −kT ln(P(x₀ > 0) / P(x₀ < 0))` from the
//!    raw and the reweighted samples (bootstrap errors) vs quadrature; `log Z` by importance
//!    sampling (exponential averaging over flow samples) and by BAR (flow samples + MALA
//!    samples of the target) vs quadrature.
//! 4. Figures: the x₀ marginal (exact, raw, reweighted), the energy histogram (MALA reference,
//!    raw, reweighted), the free-energy profile along x₀, and the training curve.

use std::path::Path;

use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::boltzmann::mcmc::{mala, MalaConfig};
use crate::boltzmann::quadrature::{quadrature_2d, Grid2};
use crate::boltzmann::reweight::{self, Estimate};
use crate::boltzmann::{train, BoltzmannGenerator, TrainConfig};
use crate::energy::DoubleWell2D;
use crate::flows::FlowConfig;
use crate::plot::{save_figure, Panel, Series};
use crate::train::Run;
use crate::train::{write_atomic, write_json};
use crate::{Error, Result};

/// Configuration; every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BgDoubleWellConfig {
    /// The energy (`a`, `b`, `c`).
    pub energy: DoubleWell2D,
    /// Training settings (flow, steps, batch, β, …); the data weight must be 0.
    pub train: TrainConfig,
    /// Flow samples evaluated.
    pub n_eval: usize,
    /// Bootstrap resamples for error bars.
    pub n_boot: usize,
    /// MALA chains for the BAR reference samples (independent chains: BAR's standard error
    /// assumes uncorrelated samples).
    pub mcmc_chains: usize,
    /// MALA samples kept per chain.
    pub mcmc_samples: usize,
}

impl Default for BgDoubleWellConfig {
    fn default() -> Self {
        BgDoubleWellConfig {
            energy: DoubleWell2D::default(),
            train: TrainConfig {
                flow: FlowConfig::neural_spline(4, vec![64, 64], 8, 4.0),
                steps: 3000,
                checkpoint_every: 500,
                batch_size: 256,
                lr: 1e-3,
                log_every: 50,
                ..TrainConfig::default()
            },
            n_eval: 100_000,
            n_boot: 200,
            // Many short chains: BAR's asymptotic error assumes independent samples, and 100
            // chains × 200 draws (thinned by 20) left BAR 2.9 of its SEs from quadrature, where
            // 2000 × 10 agreed (−0.4 SE).
            mcmc_chains: 1000,
            mcmc_samples: 20,
        }
    }
}

/// Numbers of a finished study.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BgDoubleWellReport {
    /// The configuration used.
    pub config: BgDoubleWellConfig,
    /// Kish ESS / N of the flow samples' weights.
    pub ess_fraction: f64,
    /// ΔF between the wells by quadrature (energy units).
    pub delta_f_exact: f64,
    /// ΔF from the raw (unweighted) flow samples.
    pub delta_f_raw: Estimate,
    /// ΔF from the reweighted flow samples.
    pub delta_f_reweighted: Estimate,
    /// `log Z` by quadrature.
    pub log_z_exact: f64,
    /// `log Z` by exponential averaging of the flow's weights.
    pub log_z_importance: Estimate,
    /// `log Z` by BAR between the flow and MALA samples of the target.
    pub log_z_bar: Estimate,
    /// MALA acceptance rate.
    pub mcmc_acceptance: f64,
    /// Training seconds.
    pub train_seconds: f64,
    /// The device trained on (`cpu`, `wgpu`, `cuda`).
    pub device: String,
    /// Files written.
    pub files: Vec<String>,
}

/// Run the study under `out`.
///
/// # Errors
/// Bad configuration, divergence, sampler or I/O errors.
pub fn run(cfg: &BgDoubleWellConfig, train_device: &burn::tensor::Device, out: &Path, quiet: bool) -> Result<BgDoubleWellReport> {
    if cfg.train.weight_data != 0.0 || cfg.n_eval < 100 || cfg.n_boot < 2 || cfg.mcmc_chains == 0 || cfg.mcmc_samples == 0 {
        return Err(Error::InvalidArgument {
            name: "config",
            reason: "training must be by energy only (weight_data = 0), n_eval ≥ 100, n_boot ≥ 2, MCMC sizes ≥ 1".into(),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Io { path: out.display().to_string(), source: e })?;
    let energy = &cfg.energy;
    let beta = cfg.train.beta;
    let seed = cfg.train.seed;

    // Exact references.
    let quad = quadrature_2d(energy, beta, &Grid2::for_double_well())?;
    let delta_f_exact = quad.free_energy_difference(|x| x[0] < 0.0, |x| x[0] > 0.0);

    // Train by energy only.
    // With the target, so that the architecture may hold stochastic blocks.
    let mut bg = BoltzmannGenerator::with_target(&cfg.train.flow, std::sync::Arc::new(cfg.energy), beta, seed)?;
    // Checkpointed, and resumed when the study's configuration is the same.
    let rep = train(&mut bg, Some(energy), None, &cfg.train, train_device, &mut Run::for_study(out.join("checkpoint"), cfg, quiet)?)?;

    // Reweighting.
    let mut rng = StdRng::seed_from_u64(seed ^ 0xB0_17);
    let w = bg.sample_weighted(energy, beta, cfg.n_eval, &mut rng)?;
    let ess_fraction = reweight::kish_ess(w.log_w.view())? / cfg.n_eval as f64;
    let in_a: Vec<bool> = w.x.column(0).iter().map(|&v| v < 0.0).collect();
    let in_b: Vec<bool> = in_a.iter().map(|a| !a).collect();
    let flat = Array1::zeros(cfg.n_eval);
    let delta_f_raw = reweight::free_energy_difference(flat.view(), &in_a, &in_b, beta, cfg.n_boot, seed)?;
    let delta_f_reweighted = reweight::free_energy_difference(w.log_w.view(), &in_a, &in_b, beta, cfg.n_boot, seed)?;
    let log_z_importance = reweight::log_partition(w.log_w.view(), cfg.n_boot, seed)?;

    // BAR between q (reduced potential −log q, normalised) and p (reduced potential β u):
    // Δf = f_p − f_q = −log Z. Forward works on flow samples, reverse works on MALA samples.
    let mcmc_cfg =
        MalaConfig { chains: cfg.mcmc_chains, burn_in: 1000, samples: cfg.mcmc_samples, thin: 20, step_size: 0.05, beta, seed, ..MalaConfig::default() };
    let x0 = Array2::from_shape_fn((cfg.mcmc_chains, 2), |(i, k)| {
        if k == 0 {
            if i % 2 == 0 {
                1.4
            } else {
                -1.4
            }
        } else {
            0.0
        }
    });
    let ref_samples = mala(energy, x0.view(), &mcmc_cfg)?;
    let work_f = -&w.log_w;
    let log_q_ref = bg.log_prob(ref_samples.samples.view())?;
    let work_r = -&log_q_ref - &(beta * &ref_samples.energies);
    let bar = reweight::bar(work_f.view(), work_r.view())?;
    let log_z_bar = Estimate { value: -bar.value, std_err: bar.std_err };

    // Figures.
    let (mx, my) = quad.marginal(0);
    let edges = reweight::linspace_edges(-2.6, 2.6, 60);
    let h0 = reweight::histogram(w.x.column(0), Some(w.log_w.view()), &edges);
    let centres: Vec<f64> = edges.windows(2).map(|e| 0.5 * (e[0] + e[1])).collect();
    let marg = Panel {
        title: format!("x₀ marginal (ESS/N = {ess_fraction:.3})"),
        xlabel: "x₀".into(),
        ylabel: "density".into(),
        series: vec![
            Series::line("exact (quadrature)", mx.to_vec(), my.to_vec(), 0),
            Series::points("flow, raw", centres.clone(), h0.raw.clone(), 1),
            Series::points("flow, reweighted", centres.clone(), h0.reweighted.clone(), 2),
        ],
        ..Panel::default()
    };
    let u_lo = w.u.iter().cloned().fold(f64::INFINITY, f64::min).max(-4.5);
    let u_edges = reweight::linspace_edges(u_lo, u_lo + 10.0, 50);
    let hu = reweight::histogram(w.u.view(), Some(w.log_w.view()), &u_edges);
    let hr = reweight::histogram(ref_samples.energies.view(), None, &u_edges);
    let uc: Vec<f64> = u_edges.windows(2).map(|e| 0.5 * (e[0] + e[1])).collect();
    let ehist = Panel {
        title: "energy histogram".into(),
        xlabel: "u".into(),
        ylabel: "density".into(),
        series: vec![
            Series::line("MALA reference", uc.clone(), hr.raw.clone(), 0),
            Series::points("flow, raw", uc.clone(), hu.raw.clone(), 1),
            Series::points("flow, reweighted", uc.clone(), hu.reweighted.clone(), 2),
        ],
        ..Panel::default()
    };
    let prof = reweight::free_energy_profile(w.x.column(0), w.log_w.view(), &edges, beta, cfg.n_boot, seed)?;
    let exact_f: Vec<f64> = {
        let f: Vec<f64> = my.iter().map(|p| -p.max(1e-300).ln() / beta).collect();
        let m = f.iter().cloned().fold(f64::INFINITY, f64::min);
        f.iter().map(|v| v - m).collect()
    };
    let (pc, pf): (Vec<f64>, Vec<f64>) = prof.centres.iter().zip(&prof.f).filter(|(_, f)| f.is_finite()).map(|(c, f)| (*c, *f)).unzip();
    let profile = Panel {
        title: "free energy along x₀".into(),
        xlabel: "x₀".into(),
        ylabel: "F(x₀) − min [energy]".into(),
        series: vec![
            {
                let (x, f): (Vec<f64>, Vec<f64>) = mx.iter().zip(&exact_f).filter(|(x, _)| x.abs() <= 2.6).map(|(x, f)| (*x, *f)).unzip();
                Series::line("exact", x, f, 0)
            },
            Series::points("flow, reweighted", pc, pf, 2),
        ],
        ..Panel::default()
    };
    let steps: Vec<f64> = rep.log.iter().map(|e| e.step as f64).collect();
    let curve = Panel {
        title: "training (reverse KL)".into(),
        xlabel: "step".into(),
        ylabel: "ESS/N of the batch; KL + log Z".into(),
        series: vec![
            Series::line("ESS/N", steps.clone(), rep.log.iter().map(|e| e.ess_fraction).collect(), 2),
            Series::line("KL(q‖p)", steps, rep.log.iter().map(|e| e.kl + quad.log_z).collect(), 1),
        ],
        ..Panel::default()
    };
    let fig = out.join("bg_double_well.png");
    save_figure(&fig, &[marg, ehist, profile, curve], 2)?;

    let report = BgDoubleWellReport {
        config: cfg.clone(),
        ess_fraction,
        delta_f_exact,
        delta_f_raw,
        delta_f_reweighted,
        log_z_exact: quad.log_z,
        log_z_importance,
        log_z_bar,
        mcmc_acceptance: ref_samples.acceptance,
        train_seconds: rep.seconds,
        device: crate::device::name_of(train_device),
        files: vec![fig.display().to_string()],
    };
    let json = out.join("bg_double_well_report.json");
    let md = out.join("bg_double_well_report.md");
    let mut report = report;
    report.files.extend([json.display().to_string(), md.display().to_string()]);
    write_json(&json, &report)?;
    write_atomic(&md, markdown(&report).as_bytes())?;
    Ok(report)
}

fn markdown(r: &BgDoubleWellReport) -> String {
    let e = |x: &Estimate| format!("{:.4} ± {:.4}", x.value, x.std_err);
    let z = |x: &Estimate, exact: f64| if x.std_err > 0.0 { format!("{:.1}", (x.value - exact) / x.std_err) } else { "–".into() };
    format!(
        "# Boltzmann generator, 2D double well (energy training only)\n\n\
         u = {a} x₀ + {b} x₀² + {c} x₀⁴ + ½ x₁², β = {beta}; flow: {layers} layers, {steps} steps of {batch} \
         ({secs:.1} s on `{dev}`); {n} evaluation samples, {boot} bootstrap resamples.\n\n\
         | quantity | flow | exact (quadrature) | error / SE |\n|---|---|---|---|\n\
         | ESS/N | {ess:.4} | 1 | |\n\
         | ΔF(left → right well), raw | {dfr} | {dfe:.4} | {zr} |\n\
         | ΔF(left → right well), reweighted | {dfw} | {dfe:.4} | {zw} |\n\
         | log Z, importance sampling | {lzi} | {lze:.5} | {zi} |\n\
         | log Z, BAR (flow + MALA, acceptance {acc:.2}) | {lzb} | {lze:.5} | {zb} |\n",
        a = r.config.energy.a,
        b = r.config.energy.b,
        c = r.config.energy.c,
        beta = r.config.train.beta,
        layers = r.config.train.flow.layers.len(),
        steps = r.config.train.steps,
        batch = r.config.train.batch_size,
        secs = r.train_seconds,
        dev = r.device,
        n = r.config.n_eval,
        boot = r.config.n_boot,
        ess = r.ess_fraction,
        dfr = e(&r.delta_f_raw),
        dfw = e(&r.delta_f_reweighted),
        dfe = r.delta_f_exact,
        zr = z(&r.delta_f_raw, r.delta_f_exact),
        zw = z(&r.delta_f_reweighted, r.delta_f_exact),
        lzi = e(&r.log_z_importance),
        lzb = e(&r.log_z_bar),
        lze = r.log_z_exact,
        zi = z(&r.log_z_importance, r.log_z_exact),
        zb = z(&r.log_z_bar, r.log_z_exact),
        acc = r.mcmc_acceptance,
    )
}

/// The double-well Boltzmann-generator study in the study table ([`super::TABLE`]).
pub struct BgDoubleWellStudy;

impl super::Study for BgDoubleWellStudy {
    type Config = BgDoubleWellConfig;
    type Report = BgDoubleWellReport;

    fn dir(_cfg: &BgDoubleWellConfig) -> String {
        "bg_double_well".into()
    }

    fn seed(cfg: &mut BgDoubleWellConfig) -> &mut u64 {
        &mut cfg.train.seed
    }

    fn steps(cfg: &mut BgDoubleWellConfig) -> &mut usize {
        &mut cfg.train.steps
    }

    fn run(cfg: &BgDoubleWellConfig, dir: &Path, ctx: &super::Context) -> Result<BgDoubleWellReport> {
        run(cfg, &(ctx.device)()?, dir, ctx.quiet)
    }

    fn summary(_cfg: &BgDoubleWellConfig, r: &BgDoubleWellReport) -> String {
        format!(
            "double well by energy: ESS/N {:.4}; ΔF {:.4} ± {:.4} (raw {:.4} ± {:.4}, exact {:.4}); log Z IS {:.4} ± {:.4}, BAR {:.4} ± {:.4} (exact {:.4}); {:.1} s",
            r.ess_fraction,
            r.delta_f_reweighted.value,
            r.delta_f_reweighted.std_err,
            r.delta_f_raw.value,
            r.delta_f_raw.std_err,
            r.delta_f_exact,
            r.log_z_importance.value,
            r.log_z_importance.std_err,
            r.log_z_bar.value,
            r.log_z_bar.std_err,
            r.log_z_exact,
            r.train_seconds
        )
    }

    fn files(r: &BgDoubleWellReport) -> &[String] {
        &r.files
    }
}
