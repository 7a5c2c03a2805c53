//! The Boltzmann-generator studies at a small size, with physical assertions.

use physflow::boltzmann::Likelihood;
use physflow::fm::Perturbation;
use physflow::studies::bg_double_well::{self, BgDoubleWellConfig};
use physflow::studies::bg_particles::{self, BgMethod, BgParticlesConfig, BgParticlesReport, ParticleSystem};

/// The energies written here, recomputed from their definitions (docs/boltzmann.md), not
/// through the library: DW4 `Σ_{i<j} a (d − 4)⁴ + b (d − 4)²` (a = 0.9, b = −4, 4 particles in
/// 2D); LJ `Σ_{i<j} [(1/r)¹² − 2 (1/r)⁶] + ½ Σ_i |x_i − x̄|²` (3D, ε = r_m = k = 1).
fn energy_by_definition(system: ParticleSystem, x: &[f64]) -> f64 {
    let d = if system == ParticleSystem::Dw4 { 2 } else { 3 };
    let n = x.len() / d;
    let dist = |i: usize, j: usize| (0..d).map(|k| (x[i * d + k] - x[j * d + k]).powi(2)).sum::<f64>().sqrt();
    let mut u = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            let r = dist(i, j);
            u += match system {
                ParticleSystem::Dw4 => 0.9 * (r - 4.0).powi(4) - 4.0 * (r - 4.0).powi(2),
                _ => r.powi(-12) - 2.0 * r.powi(-6),
            };
        }
    }
    if system != ParticleSystem::Dw4 {
        let mean: Vec<f64> = (0..d).map(|k| (0..n).map(|i| x[i * d + k]).sum::<f64>() / n as f64).collect();
        u += 0.5 * (0..n).map(|i| (0..d).map(|k| (x[i * d + k] - mean[k]).powi(2)).sum::<f64>()).sum::<f64>();
    }
    u
}

/// The report's ESS/N and the samples file against independent computations: the energies
/// stored with the samples equal the definition's, `log w = −β u − log q`, and Kish's
/// `(Σw)² / (N Σw²)` from the stored log weights is the reported ESS/N (skipped samples have
/// weight zero).
fn check_samples_and_ess(system: ParticleSystem, dir: &std::path::Path, r: &BgParticlesReport, beta: f64) {
    let f = physflow::io::h5::H5File::open(&dir.join(format!("bg_{}_samples.h5", system.name()))).unwrap();
    let (shape, x) = f.read_f64("samples").unwrap();
    let (u, log_q, log_w) = (f.read_f64("energies").unwrap().1, f.read_f64("log_q").unwrap().1, f.read_f64("log_w").unwrap().1);
    let (n, dim) = (shape[0], shape[1]);
    assert!(n == u.len() && n == log_w.len() && n == log_q.len());
    let mut checked = 0;
    for i in 0..n {
        if !u[i].is_finite() {
            assert_eq!(log_w[i], f64::NEG_INFINITY, "a skipped sample has weight zero");
            continue;
        }
        let exact = energy_by_definition(system, &x[i * dim..(i + 1) * dim]);
        assert!((u[i] - exact).abs() <= 1e-9 * exact.abs().max(1.0), "sample {i}: u {} vs definition {exact}", u[i]);
        assert!((log_w[i] - (-beta * u[i] - log_q[i])).abs() <= 1e-9 * log_w[i].abs().max(1.0), "sample {i}: log w");
        checked += 1;
    }
    assert!(checked > 0);
    let m = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (s1, s2) = log_w.iter().fold((0.0, 0.0), |(a, b), l| ((a + (l - m).exp()), b + (2.0 * (l - m)).exp()));
    let kish = s1 * s1 / s2 / n as f64;
    assert!((kish - r.ess_fraction).abs() <= 1e-9 * kish, "Kish ESS/N {kish} vs reported {}", r.ess_fraction);
}

#[test]
fn double_well_by_energy_matches_quadrature_within_bootstrap_error() {
    let mut cfg = BgDoubleWellConfig::default();
    cfg.train.steps = 1200;
    cfg.n_eval = 30_000;
    cfg.n_boot = 100;
    let out = std::env::temp_dir().join(format!("physflow-study-bg-dw-{}", std::process::id()));
    let r = bg_double_well::run(&cfg, &burn::tensor::Device::flex(), &out, true).unwrap();
    // Reweighting is unbiased: the flow's ΔF between the wells and its log Z (importance
    // sampling and BAR) agree with quadrature within 4 bootstrap / asymptotic standard errors
    // (plus 1e-3 for the quadrature's own first-order indicator error, see quadrature.rs).
    assert!(
        (r.delta_f_reweighted.value - r.delta_f_exact).abs() < 4.0 * r.delta_f_reweighted.std_err + 1e-3,
        "ΔF {:?} vs {}",
        r.delta_f_reweighted,
        r.delta_f_exact
    );
    assert!((r.log_z_importance.value - r.log_z_exact).abs() < 4.0 * r.log_z_importance.std_err, "{:?} vs {}", r.log_z_importance, r.log_z_exact);
    assert!((r.log_z_bar.value - r.log_z_exact).abs() < 4.0 * r.log_z_bar.std_err, "{:?} vs {}", r.log_z_bar, r.log_z_exact);
    // A flow trained this long covers both wells well (measured ≈ 0.9 at these settings).
    assert!(r.ess_fraction > 0.5, "ESS/N {}", r.ess_fraction);
    for f in &r.files {
        assert!(std::path::Path::new(f).exists(), "{f}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn dw4_study_learns_from_mala_samples() {
    let mut cfg = BgParticlesConfig::for_system(ParticleSystem::Dw4);
    cfg.method = BgMethod::Coupling;
    cfg.train.steps = 300;
    cfg.mcmc.chains = 64;
    cfg.mcmc.burn_in = 500;
    cfg.mcmc.samples = 100;
    (cfg.reference.chains, cfg.reference.burn_in, cfg.reference.samples) = (64, 1000, 200);
    cfg.n_eval = 2000;
    cfg.n_boot = 20;
    let out = std::env::temp_dir().join(format!("physflow-study-bg-dw4-{}", std::process::id()));
    let r = bg_particles::run(&cfg, &burn::tensor::Device::flex(), &out, true).unwrap();
    // Held-out NLL below that of the data-initialised start (the first logged batch NLL, an
    // average over the first 50 steps, is itself an upper bound on the start).
    let first = r.first_logged_loss;
    let nll = r.nll_held_out.expect("NLL scored");
    assert!(nll.value < first, "held-out NLL {nll:?} vs first {first}");
    assert!(r.mcmc_acceptance > 0.3 && r.mcmc_acceptance < 0.9, "MALA acceptance {}", r.mcmc_acceptance);
    check_samples_and_ess(ParticleSystem::Dw4, &out, &r, cfg.train.beta);
    // Energy-W2 is a distance: finite and ≥ 0 here (DW4 energies are finite everywhere).
    assert!(
        r.energy_w2_raw.is_finite() && r.energy_w2_raw >= 0.0 && r.energy_w2_reweighted.is_finite() && r.energy_w2_reweighted >= 0.0,
        "{} {}",
        r.energy_w2_raw,
        r.energy_w2_reweighted
    );
    std::fs::remove_dir_all(&out).unwrap();
}

/// The DW4 study with the equivariant flow, at a smoke-test size (small EGNN, 300 steps, 200
/// weighted samples: exact-trace weights cost 8 VJPs per field evaluation, so they dominate the
/// test's time; the default 2000-step run reaches ESS/N 0.52, docs/boltzmann.md): the flow-matching loss falls,
/// every sample gets a finite weight (DW4 energies are finite everywhere), the compared
/// estimators each give a row, the training MALA run (the same-budget baseline) is close to
/// the independent reference, and the report and figure are written.
#[test]
fn dw4_study_with_equivariant_flow_matching() {
    let mut cfg = BgParticlesConfig::for_system(ParticleSystem::Dw4);
    cfg.method = BgMethod::EquivariantFm;
    cfg.eqfm.egnn.hidden = 32;
    cfg.eqfm.egnn.layers = 3;
    cfg.eqfm.run.steps = 300;
    cfg.eqfm.run.batch_size = 64;
    cfg.mcmc.chains = 64;
    cfg.mcmc.burn_in = 500;
    cfg.mcmc.samples = 100;
    (cfg.reference.chains, cfg.reference.burn_in, cfg.reference.samples) = (64, 1000, 200);
    cfg.n_nll = 100;
    cfg.n_eval = 200;
    cfg.n_boot = 20;
    cfg.compare = vec![Likelihood::Hutchinson { probes: 1 }, Likelihood::FlowPerturbation(Perturbation { sigma: 0.01, steps: 10 })];
    cfg.n_compare = 100;
    let out = std::env::temp_dir().join(format!("physflow-study-bg-dw4-eqfm-{}", std::process::id()));
    let r = bg_particles::run(&cfg, &burn::tensor::Device::flex(), &out, true).unwrap();
    assert!(r.last_logged_loss < r.first_logged_loss, "loss {} → {}", r.first_logged_loss, r.last_logged_loss);
    assert_eq!(r.non_finite_energies, 0);
    assert!(r.nll_held_out.expect("NLL scored").value.is_finite());
    check_samples_and_ess(ParticleSystem::Dw4, &out, &r, cfg.train.beta);
    assert!(r.energy_w2_raw.is_finite() && r.energy_w2_reweighted.is_finite());
    // Two MALA runs of the same density: their mean energies agree within 4 standard errors
    // (bootstrap over draws, which ignores the chains' autocorrelation, so this is strict).
    let (a, b) = (&r.energy_mcmc, &r.energy_reference);
    assert!((a.value - b.value).abs() < 4.0 * (a.std_err.powi(2) + b.std_err.powi(2)).sqrt() + 0.05, "MALA ⟨u⟩ {a:?} vs reference {b:?}");
    assert_eq!(r.weights.len(), 3);
    assert_eq!(r.weights[0].likelihood, Likelihood::Exact);
    assert!((r.weights[0].ess_fraction.value - r.ess_fraction).abs() < 1e-12);
    for row in &r.weights {
        assert!(row.ess_fraction.value > 0.0 && row.ess_fraction.value <= 1.0 && row.log_w_std.is_finite(), "{row:?}");
    }
    for f in &r.files {
        assert!(std::path::Path::new(f).exists(), "{f}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// LJ55 at a smoke-test size (a 2-layer EGNN of width 16, 5 steps; flow-perturbation weights,
/// the system's default): the run finishes with finite, normalised weights for every sample
/// with a finite energy; the reference file written under `reference_file` and its copy hold
/// the reference run (its mean energy is the report's); a second run reuses that file, and a
/// run at another β refuses it.
#[test]
fn lj55_study_runs_and_reuses_its_reference_file() {
    let mut cfg = BgParticlesConfig::for_system(ParticleSystem::Lj55);
    assert_eq!((cfg.eqfm.egnn.particles, cfg.eqfm.egnn.spatial_dim), (55, 3));
    (cfg.eqfm.egnn.layers, cfg.eqfm.egnn.hidden) = (2, 16);
    (cfg.eqfm.run.steps, cfg.eqfm.run.batch_size, cfg.eqfm.run.log_every) = (5, 8, 1);
    (cfg.mcmc.chains, cfg.mcmc.burn_in, cfg.mcmc.samples, cfg.mcmc.thin) = (8, 100, 10, 2);
    (cfg.reference.chains, cfg.reference.burn_in, cfg.reference.samples, cfg.reference.thin) = (8, 200, 20, 2);
    cfg.eqfm.likelihood = Likelihood::FlowPerturbation(Perturbation { sigma: 0.01, steps: 4 });
    (cfg.n_eval, cfg.n_boot) = (100, 10);
    let out = std::env::temp_dir().join(format!("physflow-study-bg-lj55-{}", std::process::id()));
    let ref_file = out.join("lj55_reference.h5");
    cfg.reference_file = Some(ref_file.clone());
    let r = bg_particles::run(&cfg, &burn::tensor::Device::flex(), &out.join("a"), true).unwrap();
    assert!(r.nll_held_out.is_none());
    assert_eq!(r.weights.len(), 1);
    check_samples_and_ess(ParticleSystem::Lj55, &out.join("a"), &r, cfg.train.beta);
    assert!(r.non_finite_energies < cfg.n_eval);
    let energy = physflow::energy::LennardJones::lj55();
    for path in [ref_file.clone(), out.join("a").join("bg_lj55_reference.h5")] {
        let (s, sampler, settings) = physflow::boltzmann::mcmc::McmcSamples::read_h5(&path, &energy).unwrap();
        assert_eq!((sampler.as_str(), settings.chains, settings.samples), ("mala", 8, 20));
        // Same numbers, summed in another order.
        assert!((s.energies.mean().unwrap() - r.energy_reference.value).abs() < 1e-10 * r.energy_reference.value.abs());
    }
    // Reused: the same reference, though the run's own reference settings now differ.
    cfg.reference.burn_in = 10;
    let again = bg_particles::run(&cfg, &burn::tensor::Device::flex(), &out.join("b"), true).unwrap();
    assert_eq!(again.energy_reference.value, r.energy_reference.value);
    assert_eq!(again.reference_settings.burn_in, 200);
    // Another β: refused, naming the file.
    cfg.train.beta = 0.5;
    let err = bg_particles::run(&cfg, &burn::tensor::Device::flex(), &out.join("c"), true).unwrap_err();
    assert!(err.to_string().contains("lj55_reference.h5"), "{err}");
    std::fs::remove_dir_all(&out).unwrap();
}
