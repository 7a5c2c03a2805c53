//! Device benchmarks, physflow side of `benches/gpu/run.sh` (same cases as
//! `benches/gpu/torch_gpu.py`, the torch side): on `--device cpu|wgpu|cuda`,
//! - "fm_train_b256" / "fm_train_b4096": flow-matching training throughput (samples/s) of the
//!   3→256→256→256→2 tanh MLP, Adam 1e-3, 8 Gaussians → moons drawn on the host every step,
//!   independent coupling (on the CPU: the fused path and, as "-burn", burn's CPU backend);
//! - "b5_adjoint" / "b5_direct": one forward + backward step of benchmark B5 (MLP 2→64→64→2,
//!   batch 256, Tsit5 at rtol = atol = 1e-6, f32; `benches/common/b5.rs`);
//! - "fno_step_64": one training step (forward, backward, Adam) of the PDE studies' default FNO
//!   (width 32, 8 × 8 modes, 4 layers, GELU) on a batch of 16 fields of 64 × 64.
//!
//! Each case: warm-up, then the median of `--repeats` timings. Prints JSON lines with
//! `--json`.
//!
//! `cargo run --release --features wgpu --example bench_gpu -- --device wgpu [--json] [--quick]`

#[path = "../benches/common/b5.rs"]
#[allow(dead_code)]
mod b5;

use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{DType, Device, Tensor, TensorData};
use ndarray::Array2;
use physflow::device::Backend;
use physflow::fm::problems::{eight_gaussians, moons};
use physflow::fm::{Coupling, FmTrainer, Problem, SampleSource, TrainConfig};
use physflow::host::ToHost;
use physflow::nn::{FieldNetConfig, FnoConfig};
use physflow::ode::{AdjointOptions, Gradient, Solver};
use physflow::train::{fit, Run};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn x0_sampler(rng: &mut StdRng, n: usize) -> Array2<f64> {
    eight_gaussians(rng, n)
}
fn x1_sampler(rng: &mut StdRng, n: usize) -> Array2<f64> {
    moons(rng, n)
}

fn emit(json: bool, line: serde_json::Value) {
    if json {
        println!("{line}");
    } else {
        eprintln!("{line}");
    }
}

/// Milliseconds per step of `steps` flow-matching steps at batch `batch`.
fn fm_ms(device: &Device, batch: usize, steps: usize, seed: u64, burn_path: bool) -> f64 {
    let p = Problem { dim: 2, x0: SampleSource::Sampler(&x0_sampler), x1: SampleSource::Sampler(&x1_sampler), cond: None };
    let mut cfg = TrainConfig { coupling: Coupling::Independent, ..TrainConfig::default() };
    cfg.run.batch_size = batch;
    cfg.run.steps = steps;
    cfg.run.seed = seed;
    let mut t = if burn_path { FmTrainer::new_burn_path(&p, &cfg, device) } else { FmTrainer::new(&p, &cfg, device) }.expect("trainer");
    let clock = Instant::now();
    fit(&mut t, &cfg.run, &mut Run::quiet()).expect("training");
    // The last step's parameters are read back, so queued device work is included.
    std::hint::black_box(t.model().expect("model").params().expect("readback"));
    clock.elapsed().as_secs_f64() * 1e3 / steps as f64
}

fn main() -> physflow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let repeats: usize = arg(&args, "--repeats").map(|v| v.parse().expect("--repeats N")).unwrap_or(if quick { 2 } else { 5 });
    let backend: Backend = arg(&args, "--device").as_deref().unwrap_or("cpu").parse()?;
    let device = backend.device()?;
    let name = backend.name();
    let steps = if quick { 20 } else { 100 };

    for batch in [256usize, 4096] {
        let paths: &[(bool, &str)] = if backend == Backend::Cpu { &[(false, ""), (true, "-burn")] } else { &[(false, "")] };
        for &(burn_path, suffix) in paths {
            fm_ms(&device, batch, 5, 99, burn_path);
            let ms = median((0..repeats).map(|r| fm_ms(&device, batch, steps, r as u64, burn_path)).collect());
            emit(
                json,
                serde_json::json!({"side": "physflow", "device": format!("{name}{suffix}"), "name": format!("fm_train_b{batch}"), "ms": ms, "samples_per_s": batch as f64 * 1e3 / ms, "steps": steps, "repeats": repeats}),
            );
        }
    }

    let problem = b5::B5::new(&device.clone().autodiff(), 0);
    let y0 = physflow::device::transfer(&problem.y0, &device, DType::F32)?;
    let problem = b5::B5 { y0, target: problem.target.iter().map(|t| t.clone().without_autodiff()).collect(), ..problem };
    for (case, gradient) in [("b5_adjoint", Gradient::Adjoint(AdjointOptions::default())), ("b5_direct", Gradient::Direct)] {
        let field = problem.mlp.field();
        problem.step(&field, Solver::Tsit5, gradient.clone());
        let ms = median(
            (0..repeats)
                .map(|_| {
                    let t = Instant::now();
                    let (loss, _, _) = problem.step(&field, Solver::Tsit5, gradient.clone());
                    std::hint::black_box(loss);
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        );
        emit(json, serde_json::json!({"side": "physflow", "device": name, "name": case, "ms": ms, "repeats": repeats}));
    }

    let ad = device.clone().autodiff();
    let cfg = FieldNetConfig::Fno(FnoConfig::default());
    let mut net = cfg.init(0, &ad).expect("the default FNO is valid");
    let mut optim = AdamConfig::new().init();
    let (b, n) = (16usize, 64usize);
    let mut rng = StdRng::seed_from_u64(3);
    let u: Vec<f32> = (0..b * n * n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let target: Vec<f32> = (0..b * n * n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let t: Vec<f32> = (0..b).map(|_| rng.random::<f32>()).collect();
    let on = (&ad, DType::F32);
    let u = Tensor::<4>::from_data(TensorData::new(u, [b, 1, n, n]), on);
    let target = Tensor::<4>::from_data(TensorData::new(target, [b, 1, n, n]), on);
    let t = Tensor::<1>::from_data(TensorData::new(t, [b]), on);
    let mut step = || -> physflow::Result<f64> {
        let loss = (net.forward(u.clone(), t.clone()) - target.clone()).square().mean();
        let value = loss.clone().host_vec::<f64>()?[0];
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optim.step(1e-3, net.clone(), grads);
        Ok(value)
    };
    step()?;
    let fno_steps = if quick { 3 } else { 10 };
    let mut times = Vec::new();
    for _ in 0..repeats {
        let clock = Instant::now();
        for _ in 0..fno_steps {
            std::hint::black_box(step()?);
        }
        times.push(clock.elapsed().as_secs_f64() * 1e3 / fno_steps as f64);
    }
    emit(json, serde_json::json!({"side": "physflow", "device": name, "name": "fno_step_64", "ms": median(times), "batch": b, "repeats": repeats}));
    Ok(())
}
