//! Study: Boltzmann generators for particle systems, DW4 and LJ13, trained on MALA samples
//! (an equivariant continuous flow by flow matching, or a coupling flow by data and energy)
//! and checked against those samples.
//!
//! Both energies are invariant under translations, so the flow works in the `(n − 1) d`
//! centre-of-mass-free coordinates ([`InternalEnergy`], a standard normal base there, which is
//! the mean-free normal in Cartesian coordinates).
//!
//! 1. MALA ([`mala`]) from a compact start: training samples and held-out samples.
//! 2. Train an EGNN flow by equivariant flow matching ([`BgMethod::EquivariantFm`], Cartesian
//!    coordinates, mean-free base), or a coupling flow by `w_D · NLL(data) + w_E · reverse KL`
//!    at the same β ([`BgMethod::Coupling`]).
//! 3. Measure against an independent, longer MALA run (the reference, other seed and start
//!    noise): NLL of held-out samples (nats, density on the centre-of-mass-free subspace),
//!    Kish ESS/N of the flow's weights with a bootstrap error, mean energy (reference vs raw
//!    flow vs reweighted, bootstrap errors), energy-W2 to the reference of the flow (raw and
//!    reweighted) and of the training MALA run itself — the MCMC baseline with the same energy
//!    budget less the flow's `n_eval` evaluations — energy and interatomic-distance
//!    histograms, and the log-weight histogram.
//! 4. For the equivariant flow, the same samples' weights by other likelihood estimators
//!    (`compare`: Hutchinson, flow perturbation): time, ESS/N, log-weight spread, energy-W2.

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::boltzmann::eqfm::{train_eqfm, Likelihood};
use crate::boltzmann::mcmc::{mala, MalaConfig, McmcSamples};
use crate::boltzmann::reweight::{self, Estimate};
use crate::boltzmann::{train, BoltzmannGenerator};
use crate::energy::{pair_distances, Energy, InternalEnergy, MeanFree};
use crate::plot::{save_figure, Panel, Series};
use crate::train::{write_atomic, write_json, Run};
use crate::{Error, Result};

mod config;
pub use config::{particle_config, BgMethod, BgParticlesConfig, ParticleSystem};

/// One row of the likelihood-estimator comparison: the weights of `n_compare` samples.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WeightsRow {
    /// The estimator.
    pub likelihood: Likelihood,
    /// Samples drawn.
    pub samples: usize,
    /// Wall time to draw and weight them (s).
    pub seconds: f64,
    /// Kish ESS/N, bootstrap standard error.
    pub ess_fraction: Estimate,
    /// Standard deviation of the finite log weights.
    pub log_w_std: f64,
    /// Reweighted mean energy, bootstrap standard error.
    pub energy_reweighted: Estimate,
    /// Energy-W2 of the reweighted samples to the reference.
    pub energy_w2_reweighted: f64,
}

/// A Haar-random orthogonal `d × d` matrix (`d` = 2 or 3): a uniform rotation (angle, or unit
/// quaternion) times a reflection with probability ½.
fn random_orthogonal(d: usize, rng: &mut StdRng) -> Array2<f64> {
    use rand_distr::{Distribution, StandardNormal};
    let mut r = if d == 2 {
        let a = rng.random_range(0.0..std::f64::consts::TAU);
        ndarray::array![[a.cos(), -a.sin()], [a.sin(), a.cos()]]
    } else {
        let q: Vec<f64> = (0..4).map(|_| StandardNormal.sample(rng)).collect();
        let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
        let (w, x, y, z) = (q[0] / n, q[1] / n, q[2] / n, q[3] / n);
        ndarray::array![
            [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w), 2.0 * (x * z + y * w)],
            [2.0 * (x * y + z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w)],
            [2.0 * (x * z - y * w), 2.0 * (y * z + x * w), 1.0 - 2.0 * (x * x + y * y)]
        ]
    };
    if rng.random::<bool>() {
        r.row_mut(0).mapv_inplace(|v| -v);
    }
    r
}

/// Applies an independent random orthogonal map and particle relabelling to every row of
/// `x: [batch, n·d]` (particle-major).
fn symmetrize(x: &mut Array2<f64>, n: usize, d: usize, rng: &mut StdRng) {
    use rand::seq::SliceRandom;
    let mut perm: Vec<usize> = (0..n).collect();
    for mut row in x.rows_mut() {
        let r = random_orthogonal(d, rng);
        perm.shuffle(rng);
        let old = row.to_owned();
        for (i, &p) in perm.iter().enumerate() {
            for k in 0..d {
                row[i * d + k] = (0..d).map(|j| r[[k, j]] * old[p * d + j]).sum();
            }
        }
    }
}

/// Numbers of a finished study.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BgParticlesReport {
    /// The configuration used.
    pub config: BgParticlesConfig,
    /// Negative log-likelihood of held-out MALA samples under the flow, nats (density on the
    /// centre-of-mass-free subspace, the same for both methods); `None` when fewer than two
    /// samples were scored (`n_nll` < 2).
    pub nll_held_out: Option<Estimate>,
    /// The first logged training loss (coupling flows: the NLL, mean over the first
    /// `log_every` data batches; equivariant FM: the flow-matching loss).
    pub first_logged_loss: f64,
    /// The last logged training loss.
    pub last_logged_loss: f64,
    /// Flow samples whose energy was not finite (weight zero, counted here).
    pub non_finite_energies: usize,
    /// Energy evaluations (with forces) spent on the flow: the training MALA run plus the
    /// flow samples' energies for reweighting (not the reference run, nor the comparisons).
    pub energy_evaluations: usize,
    /// Energy evaluations of the training MALA run alone: the MCMC baseline's budget.
    pub mcmc_energy_evaluations: usize,
    /// Kish ESS / N.
    pub ess_fraction: f64,
    /// Bootstrap standard error of `ess_fraction`.
    pub ess_fraction_std_err: f64,
    /// Wall time to draw and weight the `n_eval` flow samples (s).
    pub sampling_seconds: f64,
    /// Mean energy of the reference samples (SE by bootstrap over draws).
    pub energy_reference: Estimate,
    /// Mean energy of the training MALA samples.
    pub energy_mcmc: Estimate,
    /// Mean energy of the raw flow samples.
    pub energy_raw: Estimate,
    /// Reweighted mean energy of the flow samples.
    pub energy_reweighted: Estimate,
    /// Energy-W2 (`reweight::wasserstein2_1d` between the energies of flow samples and of the
    /// reference samples, the metric of the ASBS / iDEM tables), raw flow samples with a finite
    /// energy.
    pub energy_w2_raw: f64,
    /// The same with the flow samples reweighted by their importance weights.
    pub energy_w2_reweighted: f64,
    /// Energy-W2 of the training MALA samples to the reference: the MCMC baseline.
    pub energy_w2_mcmc: f64,
    /// The likelihood estimators compared (equivariant flow; the first row is the main
    /// samples' estimator, `eqfm.likelihood`).
    pub weights: Vec<WeightsRow>,
    /// The reference run's settings (read from the reference file where one was given) and
    /// its acceptance rate.
    pub reference_settings: MalaConfig,
    /// Acceptance rate of the reference run.
    pub reference_acceptance: f64,
    /// MALA acceptance rate and final step size.
    pub mcmc_acceptance: f64,
    /// Seconds: MALA, training.
    pub mcmc_seconds: f64,
    /// Training seconds.
    pub train_seconds: f64,
    /// The device trained on (`cpu`, `wgpu`, `cuda`).
    pub device: String,
    /// Files written.
    pub files: Vec<String>,
}

impl BgParticlesReport {
    /// One line of the main numbers, for a terminal.
    pub fn summary(&self) -> String {
        let nll = self.nll_held_out.as_ref().map_or("not computed".into(), |e| format!("{:.4} ± {:.4}", e.value, e.std_err));
        format!(
            "{}: NLL {nll}; ESS/N {:.4} ± {:.4}; <u> reference {:.3} ± {:.3}, MALA {:.3} ± {:.3}, flow raw {:.3} ± {:.3}, reweighted {:.3} ± {:.3}; \
             energy-W2 raw {:.4}, reweighted {:.4}, same-budget MALA {:.4}; MALA {:.1} s, training {:.1} s, sampling {:.1} s",
            self.config.system.name(),
            self.ess_fraction,
            self.ess_fraction_std_err,
            self.energy_reference.value,
            self.energy_reference.std_err,
            self.energy_mcmc.value,
            self.energy_mcmc.std_err,
            self.energy_raw.value,
            self.energy_raw.std_err,
            self.energy_reweighted.value,
            self.energy_reweighted.std_err,
            self.energy_w2_raw,
            self.energy_w2_reweighted,
            self.energy_w2_mcmc,
            self.mcmc_seconds,
            self.train_seconds,
            self.sampling_seconds
        )
    }
}

/// Run the study under `out`.
///
/// # Errors
/// Bad configuration, divergence, sampler or I/O errors.
pub fn run(cfg: &BgParticlesConfig, train_device: &burn::tensor::Device, out: &Path, quiet: bool) -> Result<BgParticlesReport> {
    if !(cfg.held_out > 0.0 && cfg.held_out < 1.0) || cfg.n_eval < 100 || cfg.n_boot < 2 || (!cfg.compare.is_empty() && cfg.n_compare < 2) {
        return Err(Error::InvalidArgument {
            name: "config", reason: "held_out in (0, 1), n_eval ≥ 100, n_boot ≥ 2 and n_compare ≥ 2 are needed".into()
        });
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Io { path: out.display().to_string(), source: e })?;
    let name = cfg.system.name();
    let cart = cfg.cartesian_energy();
    let (n, d) = cart.particles().expect("particle system");
    let coords = MeanFree { n_particles: n, spatial_dim: d };
    let energy = InternalEnergy::new(cfg.cartesian_energy())?;
    let beta = cfg.train.beta;
    let seed = cfg.train.seed;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9A27);

    // Reference samples (Cartesian), split by draw index into training and held-out parts.
    let clock = std::time::Instant::now();
    let mcmc = mala(cart.as_ref(), cfg.start(cfg.mcmc.chains, &mut rng).view(), &MalaConfig { beta, seed, ..cfg.mcmc.clone() })?;
    let mcmc_seconds = clock.elapsed().as_secs_f64();
    let (reference, reference_config, reference_file) = reference_samples(cfg, cart.as_ref(), out)?;
    let mut mcmc = mcmc;
    if cfg.augment {
        symmetrize(&mut mcmc.samples, n, d, &mut rng);
    }
    let total = mcmc.samples.nrows();
    let n_test = ((total as f64 * cfg.held_out) as usize).max(1);

    // Train and sample: flow samples `x_cart` (Cartesian), their energies and log weights.
    let held_rows = total - n_test..total;
    let nll_rows = held_rows.start..(held_rows.start + cfg.n_nll.min(n_test));
    let (w, x_cart, nll, curve, train_seconds, non_finite_energies, sampling_seconds, compared) = match cfg.method {
        BgMethod::Coupling => {
            let internal = coords.to_internal(mcmc.samples.view())?;
            let train_x = internal.slice(ndarray::s![..total - n_test, ..]).to_owned();
            let target: std::sync::Arc<dyn crate::energy::Energy> = std::sync::Arc::new(InternalEnergy::new(cfg.cartesian_energy())?);
            let mut bg = BoltzmannGenerator::with_target(&cfg.train.flow, target, beta, seed)?;
            let mut run = Run::for_study(out.join("checkpoint_coupling"), cfg, quiet)?;
            let rep = train(&mut bg, Some(&energy), Some(train_x.view()), &cfg.train, train_device, &mut run)?;
            let nll = if nll_rows.is_empty() { Array1::zeros(0) } else { -bg.log_prob(internal.slice(ndarray::s![nll_rows, ..]))? };
            let clock = std::time::Instant::now();
            let w = bg.sample_weighted(&energy, beta, cfg.n_eval, &mut rng)?;
            let sampling_seconds = clock.elapsed().as_secs_f64();
            let x_cart = coords.to_cartesian(w.x.view())?;
            let skipped = w.u.iter().filter(|u| !u.is_finite()).count();
            let curve: Vec<(f64, f64)> = rep.log.iter().map(|e| (e.step as f64, e.nll)).collect();
            (w, x_cart, nll, (curve, "NLL (data batches)"), rep.seconds, skipped, sampling_seconds, Vec::new())
        }
        BgMethod::EquivariantFm => {
            let mut ecfg = cfg.eqfm.clone();
            (ecfg.egnn.particles, ecfg.egnn.spatial_dim, ecfg.run.seed) = (n, d, seed);
            let train_x = mcmc.samples.slice(ndarray::s![..total - n_test, ..]);
            let (model, rep) = train_eqfm(train_x, &ecfg, train_device, &mut Run::for_study(out.join("checkpoint_eqfm"), cfg, quiet)?)?;
            let nll = if nll_rows.is_empty() { Array1::zeros(0) } else { -model.log_prob(mcmc.samples.slice(ndarray::s![nll_rows, ..]))? };
            let clock = std::time::Instant::now();
            let (w, skipped) = model.sample_weighted(cart.as_ref(), beta, cfg.n_eval, &mut rng)?;
            let sampling_seconds = clock.elapsed().as_secs_f64();
            let mut compared = vec![(ecfg.likelihood, w.clone(), sampling_seconds)];
            for &l in &cfg.compare {
                let clock = std::time::Instant::now();
                let (wl, _) = model.with_likelihood(l)?.sample_weighted(cart.as_ref(), beta, cfg.n_compare, &mut rng)?;
                compared.push((l, wl, clock.elapsed().as_secs_f64()));
            }
            let x_cart = w.x.clone();
            let curve: Vec<(f64, f64)> = rep.losses.iter().map(|&(k, l)| (k as f64, l)).collect();
            (w, x_cart, nll, (curve, "flow-matching loss"), rep.seconds, skipped, sampling_seconds, compared)
        }
    };
    let nll_held_out = (nll.len() > 1).then(|| Estimate { value: nll.mean().unwrap_or(f64::NAN), std_err: nll.std(1.0) / (nll.len() as f64).sqrt() });
    let ess = ess_fraction_estimate(w.log_w.view(), cfg.n_boot, seed);
    let ess_fraction = ess.value;
    // Energies and weights of the samples with a finite energy (the others have weight zero
    // and are counted in `non_finite_energies`).
    let keep: Vec<usize> = (0..w.u.len()).filter(|&i| w.u[i].is_finite()).collect();
    let u_ok: Array1<f64> = keep.iter().map(|&i| w.u[i]).collect();
    let lw_ok: Array1<f64> = keep.iter().map(|&i| w.log_w[i]).collect();
    let flat = Array1::zeros(u_ok.len());
    let energy_raw = reweight::reweighted_mean_bootstrap(u_ok.view(), flat.view(), cfg.n_boot, seed)?;
    let energy_reweighted = reweight::reweighted_mean_bootstrap(u_ok.view(), lw_ok.view(), cfg.n_boot, seed)?;
    let flat_m = Array1::zeros(total);
    let energy_mcmc = reweight::reweighted_mean_bootstrap(mcmc.energies.view(), flat_m.view(), cfg.n_boot, seed)?;
    let flat_r = Array1::zeros(reference.energies.len());
    let energy_reference = reweight::reweighted_mean_bootstrap(reference.energies.view(), flat_r.view(), cfg.n_boot, seed)?;
    let energy_w2_raw = reweight::wasserstein2_1d(u_ok.view(), None, reference.energies.view())?;
    let energy_w2_reweighted = reweight::wasserstein2_1d(u_ok.view(), Some(lw_ok.view()), reference.energies.view())?;
    let energy_w2_mcmc = reweight::wasserstein2_1d(mcmc.energies.view(), None, reference.energies.view())?;
    let weights = compared.iter().map(|(l, wl, secs)| weights_row(*l, wl, *secs, reference.energies.view(), cfg.n_boot, seed)).collect::<Result<Vec<_>>>()?;

    // Histograms.
    let (lo, hi) = {
        let mut e: Vec<f64> = reference.energies.to_vec();
        e.sort_by(f64::total_cmp);
        let (a, b) = (e[e.len() / 200], e[e.len() - 1 - e.len() / 200]);
        (a - 0.3 * (b - a), b + 0.3 * (b - a))
    };
    let u_edges = reweight::linspace_edges(lo, hi, 50);
    let uc: Vec<f64> = u_edges.windows(2).map(|e| 0.5 * (e[0] + e[1])).collect();
    let hm = reweight::histogram(reference.energies.view(), None, &u_edges);
    let hf = reweight::histogram(u_ok.view(), Some(lw_ok.view()), &u_edges);
    let ehist = Panel {
        title: format!("{name}: energy (ESS/N = {ess_fraction:.3})"),
        xlabel: "u".into(),
        ylabel: "density".into(),
        series: vec![
            Series::line("reference (MALA)", uc.clone(), hm.raw, 0),
            Series::points("flow, raw", uc.clone(), hf.raw, 1),
            Series::points("flow, reweighted", uc, hf.reweighted, 2),
        ],
        ..Panel::default()
    };
    let dist_m = pair_distances(reference.samples.view(), n, d);
    let dist_f = pair_distances(x_cart.view(), n, d);
    let per = dist_f.ncols();
    let d_edges = match cfg.system {
        ParticleSystem::Dw4 => reweight::linspace_edges(0.5, 8.0, 60),
        ParticleSystem::Lj13 => reweight::linspace_edges(0.7, 3.0, 60),
        ParticleSystem::Lj55 => reweight::linspace_edges(0.7, 5.0, 80),
    };
    let dc: Vec<f64> = d_edges.windows(2).map(|e| 0.5 * (e[0] + e[1])).collect();
    let flat_d: Array1<f64> = dist_m.iter().cloned().collect();
    let hdm = reweight::histogram(flat_d.view(), None, &d_edges);
    let fd: Array1<f64> = dist_f.iter().cloned().collect();
    let lw_rep: Array1<f64> = w.log_w.iter().flat_map(|&l| std::iter::repeat_n(l, per)).collect();
    let hdf = reweight::histogram(fd.view(), Some(lw_rep.view()), &d_edges);
    let dhist = Panel {
        title: format!("{name}: interatomic distances"),
        xlabel: "r".into(),
        ylabel: "density".into(),
        series: vec![
            Series::line("reference (MALA)", dc.clone(), hdm.raw, 0),
            Series::points("flow, raw", dc.clone(), hdf.raw, 1),
            Series::points("flow, reweighted", dc, hdf.reweighted, 2),
        ],
        ..Panel::default()
    };
    let ((curve_points, curve_label), first_logged_loss, last_logged_loss) = {
        let (first, last) = (curve.0.first().map_or(f64::NAN, |p| p.1), curve.0.last().map_or(f64::NAN, |p| p.1));
        (curve, first, last)
    };
    let curve = Panel {
        title: format!("{name}: training"),
        xlabel: "step".into(),
        ylabel: curve_label.into(),
        series: vec![Series::line(curve_label, curve_points.iter().map(|p| p.0).collect(), curve_points.iter().map(|p| p.1).collect(), 1)],
        ..Panel::default()
    };
    let lw_panel = log_weight_panel(name, &w.log_w, &compared);
    let samples_file = out.join(format!("bg_{name}_samples.h5"));
    write_samples(&samples_file, &x_cart, &w, cart.as_ref(), beta)?;
    let fig = out.join(format!("bg_{name}.png"));
    save_figure(&fig, &[ehist, dhist, curve, lw_panel], 2)?;

    let mcmc_evals = cfg.mcmc.chains * (cfg.mcmc.burn_in + cfg.mcmc.samples * cfg.mcmc.thin.max(1));
    let mut report = BgParticlesReport {
        config: cfg.clone(),
        nll_held_out,
        first_logged_loss,
        last_logged_loss,
        non_finite_energies,
        energy_evaluations: mcmc_evals + cfg.n_eval,
        mcmc_energy_evaluations: mcmc_evals,
        ess_fraction,
        ess_fraction_std_err: ess.std_err,
        sampling_seconds,
        energy_reference,
        energy_mcmc,
        energy_raw,
        energy_reweighted,
        energy_w2_raw,
        energy_w2_reweighted,
        energy_w2_mcmc,
        weights,
        reference_acceptance: reference.acceptance,
        reference_settings: reference_config,
        mcmc_acceptance: mcmc.acceptance,
        mcmc_seconds,
        train_seconds,
        device: crate::device::name_of(train_device),
        files: vec![fig.display().to_string(), reference_file.display().to_string(), samples_file.display().to_string()],
    };
    let json = out.join(format!("bg_{name}_report.json"));
    let md = out.join(format!("bg_{name}_report.md"));
    report.files.extend([json.display().to_string(), md.display().to_string()]);
    write_json(&json, &report)?;
    write_atomic(&md, markdown(name, &report).as_bytes())?;
    Ok(report)
}

/// The reference samples: read from `cfg.reference_file` when it exists, otherwise an
/// independent MALA run (its own seed and start noise, derived from the training seed) that is
/// written there; a copy is always written to `out/bg_<system>_reference.h5`. Returns the
/// samples, the settings they were drawn with, and the file written under `out`.
fn reference_samples(cfg: &BgParticlesConfig, energy: &dyn Energy, out: &Path) -> Result<(McmcSamples, MalaConfig, PathBuf)> {
    let beta = cfg.train.beta;
    let seed = cfg.train.seed ^ 0x5EF3_11CE;
    let settings = MalaConfig { beta, seed, ..cfg.reference.clone() };
    let (samples, settings) = match &cfg.reference_file {
        Some(p) if p.exists() => {
            let (s, sampler, stored) = McmcSamples::read_h5(p, energy)?;
            if stored.beta != beta || sampler != "mala" {
                return Err(Error::Format {
                    path: p.display().to_string(),
                    reason: format!("reference drawn by {sampler} at β = {}, the study needs MALA at β = {beta}", stored.beta),
                });
            }
            (s, stored)
        }
        _ => {
            let mut rng = StdRng::seed_from_u64(seed);
            let s = mala(energy, cfg.start(settings.chains, &mut rng).view(), &settings)?;
            if let Some(p) = &cfg.reference_file {
                s.write_h5(p, energy, "mala", &settings)?;
            }
            (s, settings)
        }
    };
    let copy = out.join(format!("bg_{}_reference.h5", cfg.system.name()));
    samples.write_h5(&copy, energy, "mala", &settings)?;
    Ok((samples, settings, copy))
}

/// The generator's samples with their weights, for analysis outside the study (and for the
/// tests, which recompute the report's ESS and energies from them): `samples [n, n·d]`
/// (Cartesian, particle-major), `energies [n]` (NaN where the energy is not finite), `log_q [n]`,
/// `log_w [n]` (`−β u − log q`, −∞ for a skipped sample); root attributes `energy` (its name,
/// which fixes its conventions) and `beta`.
fn write_samples(path: &Path, x_cart: &Array2<f64>, w: &crate::boltzmann::Weighted, energy: &dyn Energy, beta: f64) -> Result<()> {
    use crate::io::h5::{Attr, DatasetOptions, H5Tree};
    let (n, dim) = x_cart.dim();
    let opts = DatasetOptions::default();
    let mut tree = H5Tree::new();
    tree.add_f64("samples", &[n, dim], x_cart.iter().copied().collect(), &opts)?;
    tree.add_f64("energies", &[n], w.u.to_vec(), &opts)?;
    tree.add_f64("log_q", &[n], w.log_q.to_vec(), &opts)?;
    tree.add_f64("log_w", &[n], w.log_w.to_vec(), &opts)?;
    tree.set_attr("/", "energy", Attr::Str(energy.name()))?;
    tree.set_attr("/", "beta", Attr::Float(beta))?;
    tree.write(path)
}

/// Kish ESS/N of `log_w` with its bootstrap standard error (0 where every weight is zero).
fn ess_fraction_estimate(log_w: ndarray::ArrayView1<'_, f64>, n_boot: usize, seed: u64) -> Estimate {
    reweight::bootstrap(log_w.len(), n_boot, seed, |idx| {
        let l: Array1<f64> = idx.iter().map(|&i| log_w[i]).collect();
        reweight::kish_ess(l.view()).unwrap_or(0.0) / idx.len() as f64
    })
}

fn weights_row(
    likelihood: Likelihood,
    w: &crate::boltzmann::Weighted,
    seconds: f64,
    reference: ndarray::ArrayView1<'_, f64>,
    n_boot: usize,
    seed: u64,
) -> Result<WeightsRow> {
    let keep: Vec<usize> = (0..w.u.len()).filter(|&i| w.u[i].is_finite() && w.log_w[i].is_finite()).collect();
    let u: Array1<f64> = keep.iter().map(|&i| w.u[i]).collect();
    let lw: Array1<f64> = keep.iter().map(|&i| w.log_w[i]).collect();
    let log_w_std = if lw.len() > 1 { lw.std(1.0) } else { f64::NAN };
    Ok(WeightsRow {
        likelihood,
        samples: w.u.len(),
        seconds,
        ess_fraction: ess_fraction_estimate(w.log_w.view(), n_boot, seed),
        log_w_std,
        energy_reweighted: reweight::reweighted_mean_bootstrap(u.view(), lw.view(), n_boot, seed)?,
        energy_w2_reweighted: reweight::wasserstein2_1d(u.view(), Some(lw.view()), reference)?,
    })
}

/// A short name of a likelihood estimator for legends and tables.
fn likelihood_label(l: &Likelihood) -> String {
    match l {
        Likelihood::Exact => "exact trace".into(),
        Likelihood::Hutchinson { probes } => format!("Hutchinson ({probes} probe{})", if *probes == 1 { "" } else { "s" }),
        Likelihood::FlowPerturbation(p) => format!("flow perturbation (σ = {}, {} steps)", p.sigma, p.steps),
    }
}

/// Histograms of `log w − max log w` of the main samples and of each compared estimator.
fn log_weight_panel(name: &str, main: &Array1<f64>, compared: &[(Likelihood, crate::boltzmann::Weighted, f64)]) -> Panel {
    let shifted = |lw: &Array1<f64>| -> Array1<f64> {
        let m = lw.iter().copied().filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
        lw.iter().copied().filter(|v| v.is_finite()).map(|v| v - m).collect()
    };
    let edges = reweight::linspace_edges(-12.0, 0.0, 48);
    let centres: Vec<f64> = edges.windows(2).map(|e| 0.5 * (e[0] + e[1])).collect();
    let mut series = Vec::new();
    if compared.is_empty() {
        series.push(Series::line("flow", centres.clone(), reweight::histogram(shifted(main).view(), None, &edges).raw, 0));
    }
    for (k, (l, w, _)) in compared.iter().enumerate() {
        series.push(Series::line(likelihood_label(l), centres.clone(), reweight::histogram(shifted(&w.log_w).view(), None, &edges).raw, k));
    }
    Panel { title: format!("{name}: log weights"), xlabel: "log w − max log w".into(), ylabel: "density".into(), series, ..Panel::default() }
}

fn markdown(name: &str, r: &BgParticlesReport) -> String {
    let e = |x: &Estimate| format!("{:.4} ± {:.4}", x.value, x.std_err);
    let c = &r.config;
    let model = match c.method {
        BgMethod::Coupling => format!(
            "Flow: {} coupling/mixing layers in the centre-of-mass-free coordinates; {} steps of {}, loss = {} · NLL + {} · reverse KL at β = {}",
            c.train.flow.layers.len(),
            c.train.steps,
            c.train.batch_size,
            c.train.weight_data,
            c.train.weight_energy,
            c.train.beta
        ),
        BgMethod::EquivariantFm => format!(
            "Flow: EGNN continuous flow ({} layers × {}) on the mean-free normal, equivariant flow matching with {:?} pairs, σ = {}; {} steps of {}; \
             sampling by {:?} ({}); weights by {}",
            c.eqfm.egnn.layers,
            c.eqfm.egnn.hidden,
            c.eqfm.coupling,
            c.eqfm.sigma,
            c.eqfm.run.steps,
            c.eqfm.run.batch_size,
            c.eqfm.sampling.solver,
            c.eqfm.sampling.step,
            likelihood_label(&c.eqfm.likelihood)
        ),
    };
    let mut table = format!(
        "# Boltzmann generator, {name}\n\n\
         {model} ({secs:.1} s of training on `{dev}`). Training data: MALA, {chains} chains × \
         {samples} samples (thin {thin}), acceptance {acc:.2}, {ms:.1} s; {ho:.0} % held out. \
         Reference: an independent MALA run, {rchains} chains × {rsamples} samples (burn-in {rburn}, thin {rthin}). \
         Energy evaluations (with forces) spent on the flow: {evals} (the training MALA run's {mevals} plus \
         {neval} for the weights); the MCMC baseline is that training run itself.\n\n\
         | quantity | value |\n|---|---|\n\
         | NLL of held-out MALA samples (nats, {nnll} samples) | {nll} |\n\
         | ESS/N ({neval} flow samples, {lik}; bootstrap s.e.) | {ess:.4} ± {esse:.4} |\n\
         | sampling with weights ({lik}) | {sps:.1} samples/s |\n\
         | flow samples with non-finite energy (weight 0) | {bad} |\n\
         | ⟨u⟩ reference | {uref} |\n\
         | ⟨u⟩ training MALA (same-budget MCMC) | {um} |\n\
         | ⟨u⟩ flow, raw | {ur} |\n\
         | ⟨u⟩ flow, reweighted | {uw} |\n\
         | energy-W2 to the reference: flow, raw | {w2r:.4} |\n\
         | energy-W2 to the reference: flow, reweighted | {w2w:.4} |\n\
         | energy-W2 to the reference: same-budget MCMC | {w2m:.4} |\n",
        secs = r.train_seconds,
        dev = r.device,
        chains = c.mcmc.chains,
        samples = c.mcmc.samples,
        thin = c.mcmc.thin,
        acc = r.mcmc_acceptance,
        ms = r.mcmc_seconds,
        ho = 100.0 * c.held_out,
        rchains = r.reference_settings.chains,
        rsamples = r.reference_settings.samples,
        rburn = r.reference_settings.burn_in,
        rthin = r.reference_settings.thin,
        evals = r.energy_evaluations,
        mevals = r.mcmc_energy_evaluations,
        nnll = c.n_nll,
        nll = r.nll_held_out.as_ref().map_or("not computed (n_nll < 2)".into(), e),
        lik = match c.method {
            BgMethod::Coupling => "exact (coupling flow)".into(),
            BgMethod::EquivariantFm => likelihood_label(&c.eqfm.likelihood),
        },
        neval = c.n_eval,
        ess = r.ess_fraction,
        esse = r.ess_fraction_std_err,
        sps = c.n_eval as f64 / r.sampling_seconds.max(1e-9),
        bad = r.non_finite_energies,
        uref = e(&r.energy_reference),
        um = e(&r.energy_mcmc),
        ur = e(&r.energy_raw),
        uw = e(&r.energy_reweighted),
        w2r = r.energy_w2_raw,
        w2w = r.energy_w2_reweighted,
        w2m = r.energy_w2_mcmc,
    );
    if !r.weights.is_empty() {
        table.push_str(
            "\nLikelihood estimators for the weights (fresh samples each; Hutchinson's weights are biased, \
             flow perturbation's unbiased and carry its noise):\n\n\
             | estimator | samples | seconds | samples/s | ESS/N | std log w | ⟨u⟩ reweighted | energy-W2 reweighted |\n|---|---|---|---|---|---|---|---|\n",
        );
        for row in &r.weights {
            table.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {:.4} ± {:.4} | {:.3} | {} | {:.4} |\n",
                likelihood_label(&row.likelihood),
                row.samples,
                row.seconds,
                row.samples as f64 / row.seconds.max(1e-9),
                row.ess_fraction.value,
                row.ess_fraction.std_err,
                row.log_w_std,
                e(&row.energy_reweighted),
                row.energy_w2_reweighted
            ));
        }
    }
    table
}

/// The `physflow bg particles` row of the study table ([`particle_config`], then the run).
///
/// # Errors
/// As [`particle_config`] and [`run`].
pub fn run_entry(o: &super::Overrides, ctx: &super::Context) -> Result<super::Outcome> {
    super::finish::<BgParticlesStudy>(particle_config(o)?, ctx)
}

/// The particle-system Boltzmann-generator study in the study table ([`super::TABLE`]).
pub struct BgParticlesStudy;

impl super::Study for BgParticlesStudy {
    type Config = BgParticlesConfig;
    type Report = BgParticlesReport;

    fn dir(cfg: &BgParticlesConfig) -> String {
        format!("bg_{}", cfg.system.name())
    }

    fn seed(cfg: &mut BgParticlesConfig) -> &mut u64 {
        &mut cfg.train.seed
    }

    fn steps(cfg: &mut BgParticlesConfig) -> &mut usize {
        cfg.steps_mut()
    }

    fn run(cfg: &BgParticlesConfig, dir: &Path, ctx: &super::Context) -> Result<BgParticlesReport> {
        run(cfg, &(ctx.device)()?, dir, ctx.quiet)
    }

    fn summary(_cfg: &BgParticlesConfig, r: &BgParticlesReport) -> String {
        r.summary()
    }

    fn files(r: &BgParticlesReport) -> &[String] {
        &r.files
    }
}

#[cfg(test)]
mod tests {
    use super::config::fcc_cluster;
    use super::*;
    use crate::energy::LennardJones;

    /// The FCC starts are the closed-shell clusters: centred, shells at distances 1, √2, √3, 2
    /// (12, 6, 24, 12 sites; Conway & Sloane's FCC theta series), nearest pairs at r_m = 1, and
    /// a finite Lennard-Jones energy below that of the same count of isolated pairs.
    #[test]
    fn fcc_starts_are_closed_shell_clusters() {
        for (n, shells) in [(13, vec![(1.0, 12)]), (55, vec![(1.0, 12), (2f64.sqrt(), 6), (3f64.sqrt(), 24), (2.0, 12)])] {
            let p = fcc_cluster(n);
            assert_eq!(p.len(), 3 * n);
            for k in 0..3 {
                assert!((0..n).map(|i| p[3 * i + k]).sum::<f64>().abs() < 1e-12);
            }
            let r: Vec<f64> = (0..n).map(|i| (0..3).map(|k| p[3 * i + k].powi(2)).sum::<f64>().sqrt()).collect();
            assert!(r[0] < 1e-12);
            let mut at = 1;
            for (radius, count) in shells {
                assert!(r[at..at + count].iter().all(|v| (v - radius).abs() < 1e-12), "n = {n}: shell {radius}");
                at += count;
            }
            let x = Array2::from_shape_vec((1, 3 * n), p).unwrap();
            let dmin = pair_distances(x.view(), n, 3).iter().copied().fold(f64::INFINITY, f64::min);
            assert!((dmin - 1.0).abs() < 1e-12);
            let u = LennardJones::cluster(n).energy(x.view())[0];
            // Every nearest-neighbour pair sits at the minimum −ε; there are more than n of them.
            assert!(u.is_finite() && u < -(n as f64), "n = {n}: u = {u}");
        }
    }

    #[test]
    fn systems_parse_by_name() {
        for s in ParticleSystem::ALL {
            assert_eq!(s.name().parse::<ParticleSystem>().unwrap(), s);
        }
        assert!(matches!("lj38".parse::<ParticleSystem>(), Err(Error::InvalidArgument { .. })));
    }
}
