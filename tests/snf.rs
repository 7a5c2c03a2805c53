//! Stochastic normalizing flows (Wu, Köhler & Noé 2020): RealNVP couplings with Markov-chain
//! blocks between them, built from a `FlowConfig` against the target and trained by energy on
//! the 2D double well; references by Simpson quadrature.

use std::sync::Arc;

mod common;

use burn::tensor::Device;
use common::Gaussian;
use physflow::boltzmann::quadrature::{quadrature_2d, Grid2};
use physflow::boltzmann::{reweight, train, BgTrainer, BoltzmannGenerator, TrainConfig};
use physflow::energy::DoubleWell2D;
use physflow::energy::Energy;
use physflow::flows::{FlowConfig, Kernel, LayerConfig};
use physflow::train::Run;
use physflow::Error;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn snf_config() -> FlowConfig {
    let mut flow = FlowConfig::real_nvp(4, vec![32, 32]);
    flow.layers.insert(2, LayerConfig::Stochastic { kernel: Kernel::Langevin { step_size: 0.05, metropolize: true }, steps: 5, lambda: 0.5, mean_free: false });
    flow.layers.push(LayerConfig::Stochastic { kernel: Kernel::Metropolis { step_size: 0.5 }, steps: 5, lambda: 1.0, mean_free: false });
    flow
}

/// `(log Z estimate, its standard error, ESS/N)` from `n` path weights of `bg`.
fn weights(bg: &BoltzmannGenerator, energy: &dyn Energy, n: usize, seed: u64) -> (f64, f64, f64) {
    let w = bg.sample_weighted(energy, 1.0, n, &mut StdRng::seed_from_u64(seed)).unwrap();
    let m = w.log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e = w.log_w.mapv(|v| (v - m).exp());
    let mean = e.mean().unwrap();
    let ess = reweight::kish_ess(w.log_w.view()).unwrap() / n as f64;
    (m + mean.ln(), e.std(1.0) / (n as f64).sqrt() / mean, ess)
}

/// The path weights of a stochastic flow estimate `log Z` of the double well within 4
/// standard errors of quadrature, untrained and after training (they are unbiased for any
/// parameters).
#[test]
fn stochastic_flow_path_weights_stay_unbiased_through_training() {
    let energy = DoubleWell2D::default();
    let log_z = quadrature_2d(&energy, 1.0, &Grid2::for_double_well()).unwrap().log_z;
    let flow = snf_config();
    let mut bg = BoltzmannGenerator::with_target(&flow, Arc::new(energy), 1.0, 0).unwrap();
    let (lz0, se0, _) = weights(&bg, &energy, 4000, 1);
    assert!((lz0 - log_z).abs() < 4.0 * se0, "untrained: log Z {lz0} vs {log_z} (SE {se0})");
    let cfg = TrainConfig { flow, steps: 300, batch_size: 256, lr: 1e-3, log_every: 50, ..TrainConfig::default() };
    train(&mut bg, Some(&energy), None, &cfg, &Device::flex(), &mut Run::quiet()).unwrap();
    let (lz1, se1, _) = weights(&bg, &energy, 4000, 2);
    assert!((lz1 - log_z).abs() < 4.0 * se1, "trained: log Z {lz1} vs {log_z} (SE {se1})");
}

/// Training by reverse KL through the blocks (their VJPs) moves a stochastic flow onto a
/// shifted, stretched Gaussian target that the untrained one barely overlaps: the ESS rises
/// from below 0.01 to above 0.5 and `log Z` matches the closed form within 4 standard errors.
#[test]
fn stochastic_flow_trains_by_energy() {
    let energy = Gaussian { mu: vec![3.0, -2.0], sigma: vec![0.5, 2.0] };
    let log_z = energy.log_z();
    let flow = snf_config();
    let mut bg = BoltzmannGenerator::with_target(&flow, Arc::new(energy.clone()), 1.0, 0).unwrap();
    let (_, _, ess0) = weights(&bg, &energy, 4000, 1);
    let cfg = TrainConfig { flow, steps: 500, batch_size: 256, lr: 3e-3, log_every: 50, ..TrainConfig::default() };
    train(&mut bg, Some(&energy), None, &cfg, &Device::flex(), &mut Run::quiet()).unwrap();
    let (lz1, se1, ess1) = weights(&bg, &energy, 4000, 2);
    assert!(ess0 < 0.01 && ess1 > 0.5, "ESS/N {ess0} before, {ess1} after training");
    assert!((lz1 - log_z).abs() < 4.0 * se1, "trained: log Z {lz1} vs {log_z} (SE {se1})");
}

/// A stochastic architecture needs its target, and the device module has no stochastic
/// layers: both are refused by name.
#[test]
fn stochastic_layers_without_a_target_or_on_the_burn_path_are_refused() {
    let flow = snf_config();
    match BoltzmannGenerator::new(&flow, 2, 0) {
        Err(Error::InvalidArgument { reason, .. }) => assert!(reason.contains("layer 2 is a stochastic block"), "{reason}"),
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
    let energy = DoubleWell2D::default();
    let bg = BoltzmannGenerator::with_target(&flow, Arc::new(energy), 1.0, 0).unwrap();
    let cfg = TrainConfig { flow, ..TrainConfig::default() };
    match BgTrainer::new_burn_path(bg, Some(&energy), None, &cfg, &Device::flex()) {
        Err(Error::Unsupported(m)) => assert!(m.contains("stochastic block"), "{m}"),
        other => panic!("expected Unsupported, got {:?}", other.err().map(|e| e.to_string())),
    }
    let bad = FlowConfig { layers: vec![LayerConfig::Stochastic { kernel: Kernel::Metropolis { step_size: 0.1 }, steps: 0, lambda: 1.0, mean_free: false }] };
    assert!(bad.validate(2).unwrap_err().to_string().contains("steps"));
}
