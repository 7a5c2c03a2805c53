//! The flow-matching studies end to end at a small size: they train, sample, measure and write
//! their figures and reports, and their numbers show that the transport happened.

use physflow::studies::fm_double_well::{self, FmDoubleWellConfig};
use physflow::studies::fm_moons::{self, FmMoonsConfig};

fn out_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("physflow-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Double well β = 0.3 → 1 with a small network: the source has P(right well) = 0.41 and the
/// target 0.21 (quadrature); after 800 steps the model's fraction is within 0.05 of the target
/// (binomial standard error of 1024 samples: 0.013), W₂ is under half the source's, and the
/// importance weights p/q from the one-pass log-density keep ESS/N above 0.5 (an untrained flow
/// is the identity map: its ESS/N on these states is about 0.2).
#[test]
fn double_well_transport() {
    let out = out_dir("fm-dw");
    let cfg =
        FmDoubleWellConfig { n_train: 4000, n_eval: 1024, steps: 800, hidden: vec![64, 64], lr: 3e-3, solve_steps: 20, nfes: vec![2, 8], ..Default::default() };
    let r = fm_double_well::run(&cfg, &burn::tensor::Device::flex(), &out, true).unwrap();
    assert!((r.right_well_model - r.right_well_exact).abs() < 0.05, "{r:?}");
    assert!((r.right_well_source - 0.41).abs() < 0.02, "source right-well probability {}", r.right_well_source);
    assert!(r.w2 < 0.5 * r.w2_source, "W2 {} vs source {}", r.w2, r.w2_source);
    assert!(r.ess_fraction > 0.5, "ESS/N {}", r.ess_fraction);
    // Few-step samplers (issue 26's target): at 8 NFE every sampler keeps ESS/N within 10 % of
    // the 80-NFE RK4 solve's, the exact-OT flow being nearly straight (measured 0.855–0.865
    // against 0.860); every curve has its NFEs.
    let names: Vec<&str> = r.ess_by_nfe.iter().map(|c| c.sampler.as_str()).collect();
    assert_eq!(names, ["euler", "midpoint", "bespoke midpoint", "DPM-Solver++(2M)"]);
    for c in &r.ess_by_nfe {
        assert_eq!(c.ess.iter().map(|p| p.0).collect::<Vec<_>>(), [2, 8], "{c:?}");
        assert!(c.ess[1].1 >= 0.9 * r.ess_fraction, "{c:?} vs {}", r.ess_fraction);
    }
    for f in &r.files {
        assert!(std::path::Path::new(f).exists(), "{f}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// Moons with small models and sizes: at 20 Euler steps every model has closed most of the
/// distance from the 8 Gaussians to the moons (W₂ below a third of the source's), the OT
/// model's flow is straighter than the independent one's, the optimised step grid beats equal
/// steps at 2 NFE, DPM-Solver++(2M) beats Euler at 20, and the figures and reports exist.
#[test]
fn moons_study_runs() {
    let out = out_dir("fm-moons");
    let cfg = FmMoonsConfig {
        steps: 600,
        hidden: vec![64, 64],
        lr: 3e-3,
        n_eval: 256,
        nfes: vec![2, 20],
        reflow_pairs: 1024,
        reflow_solve_steps: 10,
        n_trajectories: 16,
        ..Default::default()
    };
    let r = fm_moons::run(&cfg, &burn::tensor::Device::flex(), &out, true).unwrap();
    assert_eq!(r.models.len(), 7);
    for m in &r.models {
        assert!(m.w2[1].1 < r.w2_source / 3.0, "{m:?} vs source W2 {}", r.w2_source);
    }
    assert!(r.models[1].straightness.unwrap() < r.models[0].straightness.unwrap(), "{:?}", r.models);
    // The independent model's 2 Euler steps on the optimised grid against 2 equal steps (the
    // same network; measured W₂ 1.20 vs 1.64): the grid is fitted on other source samples, so
    // this checks that it carries over to the evaluation set.
    assert_eq!(r.models[3].name, "independent, optimised grid");
    assert!(r.models[3].w2[0].1 < 0.9 * r.models[0].w2[0].1, "{:?}", r.models);
    // DPM-Solver++(2M) on the same network: at 2 NFE both its steps are first order, and a
    // first-order (DDIM) step of the linear path is an Euler step, so W₂ equals Euler's to
    // round-off; at 20 NFE it is below Euler's (measured 0.558 vs 0.569: this small model's
    // own error dominates both).
    assert_eq!(r.models[4].name, "independent, DPM-Solver++(2M)");
    assert!((r.models[4].w2[0].1 - r.models[0].w2[0].1).abs() < 1e-9, "{:?}", r.models);
    assert!(r.models[4].w2[1].1 < r.models[0].w2[1].1, "{:?}", r.models);
    // A bespoke solver per NFE: on its training trajectories it must beat its base method
    // on equal steps (it starts there and keeps the best loss; measured below).
    assert_eq!(r.models[5].name, "independent, bespoke");
    assert_eq!(r.bespoke.len(), 2);
    for b in &r.bespoke {
        assert!(b.rmse < b.base_rmse, "{b:?}");
    }
    // A bespoke solver per NFE: on its training trajectories it must beat its base method
    // on equal steps (it starts there and keeps the best loss; measured below).
    assert_eq!(r.models[5].name, "independent, bespoke");
    assert_eq!(r.bespoke.len(), 2);
    for b in &r.bespoke {
        assert!(b.rmse < b.base_rmse, "{b:?}");
    }
    for f in &r.files {
        assert!(std::path::Path::new(f).exists(), "{f}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
