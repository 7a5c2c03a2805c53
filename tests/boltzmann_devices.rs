//! Boltzmann generators on burn devices: the burn engine (`flows::FlowModule`, autodiff)
//! against the CPU engine (f64, hand-written VJPs), in f32 and f64, and its training and
//! resume. A binary of its own: it makes f32 tensors on the CPU device, which the library's
//! unit tests (some configure f64) must not share a process with. CPU against wgpu is in
//! `tests/device_parity.rs`.

mod common;

use burn::tensor::Device;
use common::Gaussian;
use ndarray::Array2;
use physflow::boltzmann::{train, BgTrainer, BoltzmannGenerator, TrainConfig};
use physflow::flows::{Flow, FlowConfig};
use physflow::train::{Precision, Run, Trainer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn cpu() -> Device {
    Device::flex()
}

fn target() -> Gaussian {
    Gaussian { mu: vec![1.0, -2.0], sigma: vec![0.5, 2.0] }
}

fn config(steps: usize) -> TrainConfig {
    TrainConfig { flow: FlowConfig::real_nvp(4, vec![32, 32]), steps, batch_size: 256, lr: 3e-3, log_every: 50, ..TrainConfig::default() }
}

/// The burn engine (f32 `FlowModule`, autodiff) against the CPU engine (f64, hand-written
/// VJPs) on the same draws: a neural spline flow with LU layers, trained by energy and
/// data at once. In f32, agreement to round-off: losses to 1e-5 relative, the gradient to
/// 1e-4 of its largest entry; in f64 (`precision = f64`), to 1e-12 and 1e-10.
#[test]
fn burn_engine_matches_the_cpu_engine() {
    let g = target();
    let data = Array2::from_shape_fn((64, 2), |(b, k)| (b as f64 * 0.37 + k as f64).sin() * 2.0);
    let c = TrainConfig { flow: FlowConfig::neural_spline(2, vec![16], 5, 3.0), weight_data: 0.5, batch_size: 64, ..config(5) };
    let mut bg = BoltzmannGenerator::new(&c.flow, 2, 3).unwrap();
    // Parameters away from the identity, so every spline bin and the LU factors matter.
    let mut rng = StdRng::seed_from_u64(9);
    let p: Vec<f64> = (0..bg.flow.num_params()).map(|_| rng.random_range(-0.4..0.4)).collect();
    bg.flow.set_params(&p).unwrap();
    let clone = |bg: &BoltzmannGenerator| {
        let mut b = BoltzmannGenerator::new(&bg.config, 2, bg.seed).unwrap();
        b.flow.set_params(&bg.flow.params()).unwrap();
        b
    };
    let mut cpu_t = BgTrainer::new(clone(&bg), Some(&g), Some(data.view()), &c, &cpu()).unwrap();
    let (lc, gc) = cpu_t.loss_and_grad(3, &mut StdRng::seed_from_u64(1)).unwrap();
    assert!(cpu_t.cpu_engine());
    // f32: round-off; f64: the same arithmetic up to summation order.
    for (precision, tol_loss, tol_grad) in [(Precision::F32, 1e-5, 1e-4), (Precision::F64, 1e-12, 1e-10)] {
        let cp = TrainConfig { precision, ..c.clone() };
        let mut burn_t = BgTrainer::new_burn_path(clone(&bg), Some(&g), Some(data.view()), &cp, &cpu()).unwrap();
        assert!(!burn_t.cpu_engine());
        let (lb, gb) = burn_t.loss_and_grad(3, &mut StdRng::seed_from_u64(1)).unwrap();
        for (a, b) in lc.iter().zip(&lb) {
            assert!((a - b).abs() <= tol_loss * a.abs().max(1.0), "{precision:?}: losses {lc:?} vs {lb:?}");
        }
        let scale = gc.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let diff = gc.iter().zip(&gb).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(scale > 1e-3 && diff <= tol_grad * scale, "{precision:?}: gradient differs by {diff} (largest entry {scale})");
        // An optimizer step runs in that precision too.
        burn_t.step(4, 1e-3, &mut StdRng::seed_from_u64(2)).unwrap();
    }
}

/// The burn engine trains (the Gaussian target's KL estimate reaches −log Z, as on the
/// CPU engine) and resumes bit for bit; its checkpoint names its engine, so the CPU engine
/// refuses it, and `load_generator` reads it.
#[test]
fn burn_engine_trains_and_resumes_exactly() {
    let g = target();
    let dir = std::env::temp_dir().join(format!("physflow-bg-burn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ck = dir.join("bg");
    let c = TrainConfig { batch_size: 128, checkpoint_every: 150, ..config(300) };
    let fit = |steps: usize, ck: Option<&std::path::Path>| {
        let cfg = TrainConfig { steps, ..c.clone() };
        let mut t = BgTrainer::new_burn_path(BoltzmannGenerator::new(&c.flow, 2, 0).unwrap(), Some(&g), None, &cfg, &cpu()).unwrap();
        let mut run = Run::quiet();
        if let Some(ck) = ck {
            run = run.with_checkpoint(ck);
        }
        let rep = physflow::train::fit(&mut t, &BgTrainer::run_options(&cfg), &mut run).unwrap();
        (t.into_generator().unwrap(), rep)
    };
    let (full, rep) = fit(300, None);
    let kl = rep.log.last().unwrap().values[1];
    // As the CPU test: E[βu + log q] → −log Z from above (300 steps of 128: within 0.1).
    assert!(kl > -g.log_z() - 0.02 && kl < -g.log_z() + 0.1, "KL {kl} vs −log Z {}", -g.log_z());
    fit(150, Some(&ck));
    let (resumed, rep2) = fit(300, Some(&ck));
    assert_eq!(rep2.steps_run, 150);
    assert!(resumed.flow.params() == full.flow.params(), "resumed parameters differ");
    assert!(physflow::boltzmann::load_generator(&ck).unwrap().flow.params() == full.flow.params(), "loaded parameters differ");
    let err = train(&mut BoltzmannGenerator::new(&c.flow, 2, 0).unwrap(), Some(&g), None, &c, &cpu(), &mut Run::quiet().with_checkpoint(&ck));
    assert!(matches!(err, Err(physflow::Error::InvalidArgument { name: "checkpoint", .. })), "{err:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
