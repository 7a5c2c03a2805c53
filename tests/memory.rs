//! Memory that must not grow with the length of a run. A binary of its own with one test, so
//! the resident set it reads (`/proc/self/statm`, Linux only) is not shared with other tests.

use burn::tensor::Tensor;
use ndarray::Array2;
use physflow::boltzmann::eqfm::{EqFmConfig, EqFmTrainer, Likelihood};
use physflow::energy::{Autodiff, Energy, TensorEnergy};
use physflow::fm::Perturbation;
use physflow::nn::EgnnConfig;
use physflow::train::RunOptions;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Resident set size in bytes (`/proc/self/statm`, second field, in pages of 4 KiB).
fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Flow-perturbation sampling evaluates the field forward only (two solves per step, no
/// backward pass). A forward pass on parameters that track gradients registers autodiff graph
/// nodes that only a backward pass frees, so each step used to keep its whole graph: 100 steps
/// × 1000 DW4 samples went past 23 GB. Now the resident set after 40 steps stays within 64 MiB
/// of the one after 5 steps. With the leak, 100 samples went from 10 to 80 steps with 5.9 GiB
/// more (measured), so this configuration (50 samples, 35 more steps) would grow by ~1.5 GiB.
#[test]
fn forward_only_evaluations_do_not_keep_autodiff_graphs() {
    let Some(_) = rss_bytes() else {
        eprintln!("skipped: /proc/self/statm is not readable on this system (the check is Linux-only)");
        return;
    };
    let device = physflow::device::cpu_f64().unwrap();
    let cfg = EqFmConfig {
        egnn: EgnnConfig { particles: 4, spatial_dim: 2, layers: 2, hidden: 32, coord_init_scale: 1.0 },
        chunk: 50,
        run: RunOptions { steps: 1, batch_size: 8, log_every: 1, ..EqFmConfig::default().run },
        ..EqFmConfig::default()
    };
    let data = Array2::from_shape_fn((8, 8), |(i, k)| ((i * 8 + k) as f64 * 0.37).sin());
    let model = EqFmTrainer::new(data.view(), &cfg, &device).unwrap().model();
    let run = |steps: usize| {
        let m = model.with_likelihood(Likelihood::FlowPerturbation(Perturbation { sigma: 0.01, steps })).unwrap();
        let (x, lq) = m.sample(50, &mut StdRng::seed_from_u64(1)).unwrap();
        assert!(x.iter().chain(lq.iter()).all(|v| v.is_finite()));
    };
    run(5);
    let before = rss_bytes().unwrap();
    run(40);
    let after = rss_bytes().unwrap();
    let grown = after.saturating_sub(before) as f64 / (1 << 20) as f64;
    assert!(grown < 64.0, "the resident set grew by {grown:.0} MiB over 40 flow-perturbation steps");

    // Energies alone from a user's tensor energy (forces by autodiff): same rule, no backward
    // pass follows, so nothing may be tracked. With tracking, 400 batches of 1000 rows kept
    // their graphs (measured: 51 MiB), so these 1000 batches would grow by ~130 MiB.
    let energy = Autodiff(Quartic);
    let x = Array2::from_shape_fn((1000, 8), |(i, k)| ((i * 8 + k) as f64 * 0.11).cos());
    let u0 = energy.energy(x.view());
    let before = rss_bytes().unwrap();
    for _ in 0..1000 {
        assert_eq!(energy.energy(x.view()), u0);
    }
    let grown = rss_bytes().unwrap().saturating_sub(before) as f64 / (1 << 20) as f64;
    assert!(grown < 32.0, "the resident set grew by {grown:.0} MiB over 1000 energy evaluations");
}

/// `u(x) = Σ_k x_k⁴ − x_k²` written on tensors.
struct Quartic;

impl TensorEnergy for Quartic {
    fn dim(&self) -> usize {
        8
    }
    fn energy(&self, x: Tensor<2>) -> Tensor<1> {
        let x2 = x.clone() * x;
        (x2.clone() * x2.clone() - x2).sum_dim(1).squeeze_dim(1)
    }
    fn name(&self) -> String {
        "quartic".into()
    }
}
