//! Flow matching on the CPU, physflow side of `benches/compare/run_fm.sh` (same cases and
//! names as `benches/compare/fm.py`, torchcfm's side):
//! - "train_indep" / "train_ot": training throughput (samples/s) of the 3→256→256→256→2 tanh
//!   MLP, batch 256, Adam 1e-3, 8 Gaussians → moons sampled fresh every step, independent or
//!   exact minibatch-OT coupling; 200 untimed warm-up steps, then `--repeats` timings of
//!   `--steps-timed` steps (median reported);
//! - "sample_euler100": 2048 samples by 100 Euler steps of the ODE (median of `--repeats`);
//! - "w2_indep" / "w2_ot": exact W₂ between 2048 samples and 2048 held-out moons after
//!   `--train-steps` training steps, at NFE 2, 5, 10, 20, 50, 100 (Euler); "w2_floor": W₂
//!   between two independent sets of 2048 moons;
//! - "fewstep_indep": the independent model sampled by DPM-Solver++(2M) on equal steps
//!   ([`fm::dpm_solve`]) at NFE 4, 8, 16: time for 2048 samples (median of `--repeats`) and W₂,
//!   against torchcfm's 100-step Euler (issue 26's target: its W₂ in ≤ 0.2× its time).
//!
//! `cargo run --release --example bench_fm -- [--json] [--quick] [--repeats R] [--train-steps N]`
//!
//! Single-threaded by construction (the fused kernels use one core).

use std::time::Instant;

use burn::tensor::Tensor;
use ndarray::Array2;
use physflow::fm::problems::{eight_gaussians, moons};
use physflow::fm::{self, Coupling, DpmSolver, FmTrainer, Problem, SampleSource, Schedule, TrainConfig};
use physflow::host::{array2_from_tensor, tensor_from_array2};
use physflow::ode::{self, Options, Solver};
use physflow::train::{fit, Run};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn x0_sampler(rng: &mut StdRng, n: usize) -> Array2<f64> {
    eight_gaussians(rng, n)
}
fn x1_sampler(rng: &mut StdRng, n: usize) -> Array2<f64> {
    moons(rng, n)
}

fn problem<'a>() -> Problem<'a> {
    Problem { dim: 2, x0: SampleSource::Sampler(&x0_sampler), x1: SampleSource::Sampler(&x1_sampler), cond: None }
}

fn emit(json: bool, line: serde_json::Value) {
    if json {
        println!("{line}");
    } else {
        eprintln!("{line}");
    }
}

fn euler(n: usize) -> Options {
    Options::fixed(Solver::Euler, 1.0 / n as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let repeats: usize = arg(&args, "--repeats").map(|v| v.parse().expect("--repeats N")).unwrap_or(3);
    let timed: usize = arg(&args, "--steps-timed").map(|v| v.parse().expect("--steps-timed N")).unwrap_or(if quick { 200 } else { 1000 });
    let train_steps: usize = arg(&args, "--train-steps").map(|v| v.parse().expect("--train-steps N")).unwrap_or(if quick { 500 } else { 3000 });
    let cpu = burn::tensor::Device::flex();
    let with = |coupling, steps, seed| {
        let mut c = TrainConfig { coupling, ..TrainConfig::default() };
        c.run.steps = steps;
        c.run.seed = seed;
        c
    };

    // The fused CPU path (what `fm::train` picks on the CPU for tanh) and, beside it, the same
    // model and batches on burn's CPU backend (the path every other device takes).
    for (name, coupling) in [("train_indep", Coupling::Independent), ("train_ot", Coupling::ExactOt)] {
        for (side, burn_path) in [("physflow", false), ("physflow-burn", true)] {
            let p = problem();
            let make = |cfg: &TrainConfig| if burn_path { FmTrainer::new_burn_path(&p, cfg, &cpu) } else { FmTrainer::new(&p, cfg, &cpu) };
            let warm = with(coupling, if burn_path { 20 } else { 200 }, 0);
            fit(&mut make(&warm).unwrap(), &warm.run, &mut Run::quiet()).unwrap();
            let steps = if burn_path { (timed / 5).max(20) } else { timed };
            let ms: Vec<f64> = (0..repeats)
                .map(|r| {
                    let cfg = with(coupling, steps, r as u64);
                    let mut trainer = make(&cfg).unwrap();
                    let t = Instant::now();
                    fit(&mut trainer, &cfg.run, &mut Run::quiet()).unwrap();
                    t.elapsed().as_secs_f64() * 1e3 / steps as f64
                })
                .collect();
            let m = median(ms);
            emit(
                json,
                serde_json::json!({"side": side, "name": name, "act": "tanh", "ms": m, "samples_per_s": 256.0 * 1e3 / m, "repeats": repeats, "steps": steps}),
            );
        }
    }
    let device = physflow::device::reference_cpu();

    let mut rng = StdRng::seed_from_u64(1234);
    let held_out = moons(&mut rng, 2048);
    let x0 = eight_gaussians(&mut rng, 2048);
    let other = moons(&mut rng, 2048);
    let floor = fm::wasserstein2(other.as_slice().unwrap(), held_out.as_slice().unwrap(), 2).unwrap();
    emit(json, serde_json::json!({"side": "physflow", "name": "w2_floor", "w2": floor, "samples": 2048}));
    let x0t = tensor_from_array2(&x0.view(), &device, burn::tensor::DType::F64);
    for (name, coupling) in [("w2_indep", Coupling::Independent), ("w2_ot", Coupling::ExactOt)] {
        let cfg = with(coupling, train_steps, 0);
        let (model, report) = fm::train(&problem(), &cfg, &cpu, &mut Run::quiet()).unwrap();
        if name == "w2_indep" {
            let field = model.field();
            let ms: Vec<f64> = (0..repeats.max(3))
                .map(|_| {
                    let t = Instant::now();
                    let sol = ode::solve(&field, x0t.clone(), &[0.0, 1.0], &euler(100)).unwrap();
                    let _: Tensor<2> = sol.ys[1].clone();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            emit(json, serde_json::json!({"side": "physflow", "name": "sample_euler100", "act": "tanh", "ms": median(ms), "samples": 2048, "nfe": 100}));
            for nfe in [4, 8, 16] {
                let times = Schedule::Uniform.times(&model.path, 0.0, 1.0, nfe).unwrap();
                let mut last = None;
                let ms: Vec<f64> = (0..repeats.max(3))
                    .map(|_| {
                        let t = Instant::now();
                        let sol = fm::dpm_solve(&field, &model.path, x0t.clone(), &times, DpmSolver::DpmPp2M).unwrap();
                        let x1 = array2_from_tensor(&sol.x).unwrap();
                        let dt = t.elapsed().as_secs_f64() * 1e3;
                        last = Some(x1);
                        dt
                    })
                    .collect();
                let x1 = last.expect("at least one repeat");
                let w2 = fm::wasserstein2(x1.as_slice().unwrap(), held_out.as_slice().unwrap(), 2).unwrap();
                emit(
                    json,
                    serde_json::json!({"side": "physflow", "name": "fewstep_indep", "sampler": "dpmpp_2m", "act": "tanh", "ms": median(ms), "samples": 2048, "nfe": nfe, "steps": train_steps, "w2": w2}),
                );
            }
        }
        for nfe in [2, 5, 10, 20, 50, 100] {
            let sol = ode::solve(&model.field(), x0t.clone(), &[0.0, 1.0], &euler(nfe)).unwrap();
            let x1 = array2_from_tensor(&sol.ys[1]).unwrap();
            let w2 = fm::wasserstein2(x1.as_slice().unwrap(), held_out.as_slice().unwrap(), 2).unwrap();
            emit(
                json,
                serde_json::json!({"side": "physflow", "name": name, "act": "tanh", "steps": train_steps, "nfe": nfe, "w2": w2, "train_seconds": report.seconds}),
            );
        }
    }
}
