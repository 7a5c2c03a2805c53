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
//! - "gemm_peak" / "kernel_efficiency": issue 26's kernel-efficiency measure. The machine's
//!   single-core f32 GEMM peak is the best of `matrixmultiply::sgemm` and faer's `matmul`
//!   (sequential) on square products (n = 512, 1024, 2048) and on the sampling network's
//!   largest layer (`[2048, 256] · [256, 256]`); against it, the sampling network's forward
//!   pass alone (`FmModel::predict`, batch 2048) and 100-step Euler sampling end to end
//!   (`ode::solve`), each as GFLOP/s of the network's multiply–adds (2 Σ s_l s_{l+1} per
//!   sample per evaluation; bias and tanh not counted). Interleaved rounds (`max(5, --repeats)`),
//!   medians of the per-round ratios (and the best of each measurement beside them). The GEMMs
//!   run on one thread; the forward pass and the sampling use rayon's threads
//!   (`FusedMlp::forward_par`), so `RAYON_NUM_THREADS=1` gives the single-core fractions and
//!   more threads the parallel speed-up.
//!
//! `cargo run --release --example bench_fm -- [--json] [--quick] [--repeats R] [--train-steps N] [--kernels-only]`
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

/// Seconds of one call of `f`.
fn seconds(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// Operands of a single-threaded f32 GEMM `C = A B` (`[m, k] · [k, n]`), row-major for
/// `matrixmultiply` and as faer matrices.
struct Gemm {
    m: usize,
    k: usize,
    n: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    fa: faer::Mat<f32>,
    fb: faer::Mat<f32>,
    fc: faer::Mat<f32>,
}

impl Gemm {
    fn new(m: usize, k: usize, n: usize) -> Self {
        let a: Vec<f32> = (0..m * k).map(|i| ((i % 97) as f32 - 48.0) / 97.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i % 89) as f32 - 44.0) / 89.0).collect();
        let fa = faer::Mat::<f32>::from_fn(m, k, |i, j| a[i * k + j]);
        let fb = faer::Mat::<f32>::from_fn(k, n, |i, j| b[i * n + j]);
        Gemm { m, k, n, a, b, c: vec![0.0; m * n], fa, fb, fc: faer::Mat::zeros(m, n) }
    }

    /// GFLOP/s (`2 m n k` flops) of one product by `matrixmultiply` and one by faer.
    fn gflops(&mut self) -> (f64, f64) {
        let (m, k, n) = (self.m, self.k, self.n);
        let flops = 2.0 * (m * n * k) as f64;
        let (a, b, c) = (&self.a, &self.b, &mut self.c);
        // SAFETY: the pointers and strides describe the row-major buffers of `self`, which
        // outlive the call.
        let mm = seconds(|| unsafe {
            matrixmultiply::sgemm(m, k, n, 1.0, a.as_ptr(), k as isize, 1, b.as_ptr(), n as isize, 1, 0.0, c.as_mut_ptr(), n as isize, 1)
        });
        let fe = seconds(|| faer::linalg::matmul::matmul(&mut self.fc, faer::Accum::Replace, &self.fa, &self.fb, 1.0, faer::Par::Seq));
        (flops / mm * 1e-9, flops / fe * 1e-9)
    }
}

/// The "gemm_peak" and "kernel_efficiency" rows (module docs). The three measurements run
/// interleaved in `rounds` rounds (a GEMM of every shape by both libraries, 100 forward passes,
/// one 100-step sampling), so that a slow spell of the machine hits all of them; each round's
/// peak is its best GEMM, and the reported fractions are the medians of the rounds' ratios.
fn kernel_efficiency(json: bool, rounds: usize) {
    let mut gemms: Vec<Gemm> =
        [(512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048), (2048, 256, 256)].into_iter().map(|(m, k, n)| Gemm::new(m, k, n)).collect();
    let model = fm::FmModel::new(2, 0, &fm::NetConfig::default(), fm::ProbabilityPath::default(), fm::BaseKind::Gaussian, fm::Objective::Velocity, 0).unwrap();
    let sizes = model.sizes();
    let batch = 2048;
    let evals = 100;
    let flops = 2.0 * (batch * evals) as f64 * sizes.windows(2).map(|w| (w[0] * w[1]) as f64).sum::<f64>();
    let mut rng = StdRng::seed_from_u64(7);
    let x0 = eight_gaussians(&mut rng, batch);
    let x: Vec<f32> = x0.iter().map(|v| *v as f32).collect();
    let ts = vec![0.5f32; batch];
    let mut out = vec![0.0f32; batch * 2];
    let x0t = tensor_from_array2(&x0.view(), &physflow::device::reference_cpu(), burn::tensor::DType::F64);
    let field = model.field();
    let mut forward =
        || flops / seconds(|| (0..evals).for_each(|_| model.predict(physflow::nn::fused::TimeArg::PerSample(&ts), &x, None, batch, &mut out))) * 1e-9;
    let sampling = || {
        flops
            / seconds(|| {
                let sol = ode::solve(&field, x0t.clone(), &[0.0, 1.0], &euler(evals)).unwrap();
                let _: Tensor<2> = sol.ys[1].clone();
            })
            * 1e-9
    };
    // Warm-up: page in every buffer and the caches of the network.
    gemms.iter_mut().for_each(|g| {
        g.gflops();
    });
    forward();
    let (mut peaks, mut fwd, mut smp) = (Vec::new(), Vec::new(), Vec::new());
    let mut by_shape = vec![(0.0f64, 0.0f64); gemms.len()];
    for _ in 0..rounds.max(1) {
        let mut peak = 0.0f64;
        for (g, best) in gemms.iter_mut().zip(&mut by_shape) {
            let (mm, fe) = g.gflops();
            *best = (best.0.max(mm), best.1.max(fe));
            peak = peak.max(mm).max(fe);
        }
        peaks.push(peak);
        fwd.push(forward());
        smp.push(sampling());
        eprintln!("[kernel_efficiency] GFLOP/s: GEMM peak {peak:.1} forward {:.1} sampling {:.1}", fwd.last().unwrap(), smp.last().unwrap());
    }
    for (g, (mm, fe)) in gemms.iter().zip(&by_shape) {
        emit(
            json,
            serde_json::json!({"side": "physflow", "name": "gemm_peak", "m": g.m, "k": g.k, "n": g.n, "matrixmultiply_gflops": mm, "faer_gflops": fe, "rounds": rounds}),
        );
    }
    let ratio = |v: &[f64]| median(v.iter().zip(&peaks).map(|(a, p)| a / p).collect());
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    emit(
        json,
        serde_json::json!({"side": "physflow", "name": "kernel_efficiency", "sizes": sizes, "batch": batch, "evals": evals, "gflop": flops * 1e-9, "rounds": rounds,
            "threads": rayon::current_num_threads(),
            "peak_gflops": median(peaks.clone()), "forward_gflops": median(fwd.clone()), "forward_fraction": ratio(&fwd),
            "sampling_gflops": median(smp.clone()), "sampling_fraction": ratio(&smp),
            "best_peak_gflops": best(&peaks), "best_forward_gflops": best(&fwd), "best_sampling_gflops": best(&smp)}),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let repeats: usize = arg(&args, "--repeats").map(|v| v.parse().expect("--repeats N")).unwrap_or(3);
    let timed: usize = arg(&args, "--steps-timed").map(|v| v.parse().expect("--steps-timed N")).unwrap_or(if quick { 200 } else { 1000 });
    let train_steps: usize = arg(&args, "--train-steps").map(|v| v.parse().expect("--train-steps N")).unwrap_or(if quick { 500 } else { 3000 });
    kernel_efficiency(json, repeats.max(5));
    if args.iter().any(|a| a == "--kernels-only") {
        return;
    }
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
