//! physflow's side of `benches/compare/boltzmann.py`: a RealNVP Boltzmann generator (8 affine
//! couplings, `[64, 64]` tanh conditioners, scale bound 3, f64) trained by energy (reverse KL,
//! batch 256, Adam 1e-3, clip 100) on the 2D double well or DW4 (in its 6 centre-of-mass-free
//! coordinates) for a wall-clock budget; every `eval-every` seconds of training time the clock
//! pauses and ESS/N is measured on 20000 fresh samples. Prints one JSON line per evaluation.
//!
//! ```text
//! cargo run --release --example bench_boltzmann -- --system dw2d --seconds 60 --seed 0
//! ```

use physflow::boltzmann::{reweight, train, BoltzmannGenerator, TrainConfig};
use physflow::energy::Energy;
use physflow::energy::{DoubleWell2D, InternalEnergy, MultiDoubleWell};
use physflow::flows::FlowConfig;
use physflow::train::Run;
use rand::SeedableRng;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> physflow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let system: String = arg(&args, "--system", "dw2d".to_string());
    let seconds: f64 = arg(&args, "--seconds", 60.0);
    let seed: u64 = arg(&args, "--seed", 0);
    let eval_every: f64 = arg(&args, "--eval-every", seconds / 10.0);
    let energy: Box<dyn Energy> = match system.as_str() {
        "dw2d" => Box::new(DoubleWell2D::default()),
        "dw4" => Box::new(InternalEnergy::new(MultiDoubleWell::dw4())?),
        other => {
            return Err(physflow::Error::InvalidArgument { name: "--system", reason: format!("unknown system `{other}` (dw2d, dw4)") });
        }
    };
    let config = TrainConfig {
        flow: FlowConfig::real_nvp(8, vec![64, 64]),
        steps: usize::MAX / 2,
        batch_size: 256,
        lr: 1e-3,
        beta: 1.0,
        grad_clip: Some(100.0),
        seed,
        log_every: 1_000_000,
        ..TrainConfig::default()
    };
    let mut bg = BoltzmannGenerator::new(&config.flow, energy.dim(), seed)?;
    let dir = std::env::temp_dir().join(format!("physflow-bench-bg-{}-{system}-{seed}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| physflow::Error::Io { path: dir.display().to_string(), source: e })?;
    let ck = dir.join("ck");
    let mut trained = 0.0;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xE5A1);
    loop {
        // Each chunk resumes from the checkpoint, so the optimiser state carries over; the
        // reported seconds are those of the training loop only.
        let budget = (eval_every).min(seconds - trained).max(0.0);
        let mut run = Run { checkpoint: Some(ck.clone()), time_budget: Some(budget), quiet: true, ..Run::default() };
        let rep = train(&mut bg, Some(energy.as_ref()), None, &config, &burn::tensor::Device::flex(), &mut run)?;
        trained += rep.seconds;
        let steps = rep.steps;
        let w = bg.sample_weighted(energy.as_ref(), 1.0, 20000, &mut rng)?;
        let ess = reweight::kish_ess(w.log_w.view())? / 20000.0;
        let kl = -w.log_w.mean().unwrap_or(f64::NAN);
        let last = trained >= seconds - 1e-9;
        println!(
            "{{\"bench\": \"boltzmann\", \"impl\": \"physflow\", \"system\": \"{system}\", \"seed\": {seed}, \"step\": {steps}, \"train_seconds\": {trained:.3}, \"ess_fraction\": {ess:.6}, \"kl\": {kl:.6}, \"samples_per_s\": {:.1}, \"threads\": 1{}}}",
            256.0 * steps as f64 / trained.max(1e-9),
            if last { ", \"final\": true" } else { "" }
        );
        if last {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
