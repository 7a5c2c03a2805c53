//! The PDE-field studies end to end at their smoke size (`PdeStudyConfig::smoke`: a 10 × 8
//! grid, a tiny FNO, 40 training steps): every family simulates, trains, samples with each
//! method, writes figures and reports, and every projecting sampler meets its constraint to
//! the projection tolerance while the unconstrained model does not. The numbers of such a
//! small model say nothing about the method's accuracy; the study defaults do.

use physflow::studies::pde_fields::{self, PdeProblem, PdeStudyConfig};

fn out_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("physflow-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Labels of the samplers that end with a projection to `tol = 1e-10` (ProjectOptions'
/// default): their largest residual must be at that level (1e-9 leaves room for the residual's
/// own rounding on fields of size 1).
fn projects(label: &str) -> bool {
    label.starts_with("project-end") || label.starts_with("pcfm") || label.starts_with("eci")
}

fn check(problem: PdeProblem) {
    let out = out_dir(&format!("pde-{}", problem.name()));
    let cfg = PdeStudyConfig::smoke(problem);
    let device = burn::tensor::Device::flex();
    let r = pde_fields::run(&cfg, &device, &out, true).unwrap();
    assert_eq!(r.scores[0].method, "reference (simulator)");
    let labels: Vec<&str> = r.scores.iter().map(|s| s.method.as_str()).collect();
    assert!(labels.contains(&"unconstrained") && labels.contains(&"pcfm"), "{labels:?}");
    for s in &r.scores[1..] {
        assert!(s.mmse.is_finite() && s.smse.is_finite() && s.ms_per_field > 0.0, "{s:?}");
        // One model evaluation per step for every default sampler (ECI with mix 1).
        assert_eq!(s.nfe, cfg.sample_steps, "{s:?}");
        if projects(&s.method) {
            assert!(s.constraint_max <= 1e-9, "{}: constraint max {:e}", s.method, s.constraint_max);
        }
    }
    // The NFE curves: the requested evaluations, and at NFE = sample_steps the Euler and PCFM
    // points repeat the method rows bit for bit (same sampler, same noise).
    let curve = |name: &str| r.mmse_by_nfe.iter().find(|c| c.sampler == name).unwrap_or_else(|| panic!("no curve {name}"));
    for name in ["unconstrained, euler", "unconstrained, midpoint", "pcfm"] {
        let nfes: Vec<usize> = curve(name).points.iter().map(|p| p.nfe).collect();
        assert_eq!(nfes, cfg.nfes, "{name}");
        for p in &curve(name).points {
            assert!(p.mmse.is_finite() && p.smse.is_finite(), "{name}: {p:?}");
            if name == "pcfm" {
                assert!(p.constraint_max <= 1e-9, "pcfm at {} NFE: constraint max {:e}", p.nfe, p.constraint_max);
            }
        }
    }
    assert!(cfg.nfes.contains(&cfg.sample_steps));
    for (name, method) in [("unconstrained, euler", "unconstrained"), ("pcfm", "pcfm")] {
        let p = curve(name).points.iter().find(|p| p.nfe == cfg.sample_steps).unwrap();
        let m = r.scores.iter().find(|s| s.method == method).unwrap();
        assert_eq!((p.mmse, p.smse, p.constraint_l2), (m.mmse, m.smse, m.constraint_l2), "{name} at {} NFE against the `{method}` row", p.nfe);
    }
    let unc = r.scores.iter().find(|s| s.method == "unconstrained").unwrap();
    assert!(unc.constraint_max > 1e-4, "unconstrained constraint max {:e}: the smoke model cannot be that exact", unc.constraint_max);
    for f in &r.files {
        assert!(std::path::Path::new(f).exists(), "{f}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| pcfm |"), "{md}");
    assert!(md.contains("## MMSE by NFE") && md.contains("| pcfm | 2 |"), "{md}");
    // A rerun reuses the data and the finished checkpoint and samples the same seeded noise.
    let again = pde_fields::run(&cfg, &device, &out, true).unwrap();
    for (a, b) in r.scores.iter().zip(&again.scores) {
        assert_eq!(a.method, b.method);
        assert_eq!(a.mmse, b.mmse, "{}: rerun differs", a.method);
    }
    assert_eq!(pde_fields::read_report(&out).unwrap().scores.len(), r.scores.len());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn heat_study_runs() {
    check(PdeProblem::Heat);
}

#[test]
fn burgers_study_runs() {
    check(PdeProblem::Burgers);
}

#[test]
fn reaction_diffusion_study_runs() {
    check(PdeProblem::ReactionDiffusion);
}

/// The 2D Navier–Stokes study at its smoke size (8 × 8, 4 frames): every sampler runs, the
/// projecting ones meet the initial-vorticity and total-vorticity constraint to the projection
/// tolerance, the reference meets it to round-off, the frame residuals and figures are written,
/// and a rerun reuses the data and checkpoint. Bad settings are refused before any work.
#[test]
fn ns2d_study_runs() {
    use physflow::studies::pde_ns2d::{self, Ns2dStudyConfig};
    let out = out_dir("pde-ns2d");
    let cfg = Ns2dStudyConfig::smoke();
    let device = burn::tensor::Device::flex();
    let r = pde_ns2d::run(&cfg, &device, &out, true).unwrap();
    assert_eq!(r.scores[0].common.method, "reference (simulator)");
    assert!(r.scores[0].common.constraint_max < 1e-14, "the simulator conserves total vorticity: {:e}", r.scores[0].common.constraint_max);
    assert_eq!(r.frame_residuals.len(), r.scores.len());
    for m in &r.scores[1..] {
        let s = &m.common;
        assert!(s.mmse.is_finite() && s.smse.is_finite() && s.ms_per_field > 0.0, "{s:?}");
        assert!(m.residual_first.is_finite() && m.residual_rest.is_finite(), "{m:?}");
        if projects(&s.method) {
            assert!(s.constraint_max <= 1e-9, "{}: constraint max {:e}", s.method, s.constraint_max);
        }
    }
    let unc = &r.scores.iter().find(|s| s.common.method == "unconstrained").unwrap().common;
    assert!(unc.constraint_max > 1e-4, "unconstrained constraint max {:e}", unc.constraint_max);
    for f in &r.files {
        assert!(std::path::Path::new(f).exists(), "{f}");
    }
    let again = pde_ns2d::run(&cfg, &device, &out, true).unwrap();
    for (a, b) in r.scores.iter().zip(&again.scores) {
        assert_eq!(a.common.mmse, b.common.mmse, "{}: rerun differs", a.common.method);
    }
    assert_eq!(pde_ns2d::read_report(&out).unwrap().scores.len(), r.scores.len());
    // A mode count the 8 × 8 grid cannot hold is refused before any simulation.
    let mut bad = Ns2dStudyConfig::smoke();
    bad.train.net = physflow::nn::FieldNetConfig::Fno(physflow::nn::FnoConfig { modes: [5, 5], ..physflow::nn::FnoConfig::default() });
    assert!(matches!(pde_ns2d::run(&bad, &device, &out_dir("pde-ns2d-bad"), true), Err(physflow::Error::InvalidArgument { name: "fno.modes", .. })));
    let _ = std::fs::remove_dir_all(&out);
}

/// The Darcy study at its smoke size (8 × 8 cells): the reference meets the flux balance and the
/// finite-volume equations to round-off, the projecting samplers meet the balance to the
/// projection tolerance, and the inverse problem reports every method, PCFM matching its hard
/// observations exactly. Observation counts beyond the grid are refused before any work.
#[test]
fn darcy_study_runs() {
    use physflow::studies::pde_darcy::{self, DarcyStudyConfig};
    let out = out_dir("pde-darcy");
    let cfg = DarcyStudyConfig::smoke();
    let device = burn::tensor::Device::flex();
    let r = pde_darcy::run(&cfg, &device, &out, true).unwrap();
    let reference = &r.scores[0];
    assert!(reference.common.constraint_max < 1e-12 && reference.pde_residual < 1e-10, "{reference:?}");
    for m in &r.scores[1..] {
        let s = &m.common;
        assert!(s.mmse.is_finite() && m.pde_residual.is_finite(), "{m:?}");
        if projects(&s.method) {
            assert!(s.constraint_max <= 1e-9, "{}: constraint max {:e}", s.method, s.constraint_max);
        }
    }
    assert_eq!(r.inverse.len(), 4);
    let pcfm = r.inverse.iter().find(|m| m.method.starts_with("PCFM")).unwrap();
    assert!(pcfm.misfit < 1e-9, "hard observations: misfit {:e}", pcfm.misfit);
    for m in &r.inverse {
        assert!(m.rel_l2_a.is_finite() && m.misfit.is_finite(), "{m:?}");
    }
    // D-Flow's gradient steps through the sampler lower the misfit of the prior's samples
    // (same initial noise).
    let (prior, dflow) = (&r.inverse[0], r.inverse.iter().find(|m| m.method.starts_with("D-Flow")).unwrap());
    assert!(dflow.misfit < prior.misfit, "D-Flow misfit {:e} vs prior {:e}", dflow.misfit, prior.misfit);
    for f in &r.files {
        assert!(std::path::Path::new(f).exists(), "{f}");
    }
    assert_eq!(pde_darcy::read_report(&out).unwrap().inverse.len(), 4);
    let mut bad = DarcyStudyConfig::smoke();
    bad.inverse.observations = 65;
    assert!(matches!(
        pde_darcy::run(&bad, &device, &out_dir("pde-darcy-bad"), true),
        Err(physflow::Error::InvalidArgument { name: "inverse.observations", .. })
    ));
    let _ = std::fs::remove_dir_all(&out);
}
