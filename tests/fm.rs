//! Flow matching across modules: exact samplers and likelihoods on the Gaussian → Gaussian
//! reference (closed forms in `fm::problems`), the SDE sampler's moments, learned velocity and
//! score against the closed forms, conditioning, and exact resume.

use burn::tensor::Device;
use burn::tensor::{Tensor, TensorData};
use ndarray::Array2;
use physflow::fm::problems::GaussianToGaussian;
use physflow::fm::{
    self, BaseKind, Coupling, Diffusion, FmModel, InterpolantSde, NetConfig, Objective, ProbabilityPath, Problem, SampleSource, ScoreSource, Trace, TrainConfig,
};
use physflow::host::ToHost;
use physflow::ode::{self, Options, Solver, Time, VectorField};
use physflow::sde::{self, GridBrownian, SdeOptions, SdeSolver};
use physflow::train::{Run, RunOptions};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn reference() -> GaussianToGaussian {
    GaussianToGaussian { mu: vec![2.0, -1.0], s: 0.5 }
}

fn normals(n: usize, d: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n * d).map(|_| StandardNormal.sample(&mut rng)).collect()
}

fn normal(rng: &mut StdRng) -> f64 {
    StandardNormal.sample(rng)
}

fn tensor(v: Vec<f64>, n: usize, d: usize) -> Tensor<2> {
    // f64 with an explicit dtype: training has fixed the CPU device's default float type at f32.
    Tensor::<2>::from_data(TensorData::new(v, [n, d]), (&physflow::device::reference_cpu(), burn::tensor::DType::F64))
}

fn quiet<T>() -> Run<'static, T> {
    Run::quiet()
}

/// A flow-matching config with `hidden` tanh widths, `steps` Adam steps at rate `lr`.
fn config(hidden: Vec<usize>, steps: usize, lr: f64) -> TrainConfig {
    TrainConfig { net: NetConfig::tanh(hidden), run: RunOptions { steps, lr, ..TrainConfig::default().run }, ..TrainConfig::default() }
}

/// The ODE with the exact velocity transports every sample by the closed-form flow map
/// `x₁ = μ + s x₀` (Tsit5 at rtol 1e-10: agreement to ~1e-8).
#[test]
fn exact_velocity_sampler_matches_flow_map() {
    let g = reference();
    let x0 = normals(64, 2, 1);
    let opts = Options::adaptive(Solver::Tsit5, 1e-10, 1e-10);
    let sol = ode::solve(&g.velocity(), tensor(x0.clone(), 64, 2), &[0.0, 1.0], &opts).unwrap();
    let x1: Vec<f64> = sol.ys[1].to_vec_as();
    for (i, r) in x0.chunks(2).enumerate() {
        let want = g.flow_map(r);
        for k in 0..2 {
            assert!((x1[2 * i + k] - want[k]).abs() < 1e-8, "sample {i}: {} vs {}", x1[2 * i + k], want[k]);
        }
    }
}

/// The likelihood ODE of the exact velocity gives the closed-form target log-density, with the
/// exact trace and with Hutchinson's estimator (exact here too: the Jacobian is a multiple of
/// the identity, so `εᵀJε = tr J` for every Rademacher ε), backwards from data and forwards in
/// one pass from the base.
#[test]
fn exact_likelihood_equals_closed_form() {
    let g = reference();
    let opts = Options::adaptive(Solver::Tsit5, 1e-10, 1e-10);
    let x1 = g.sample_target(&mut StdRng::seed_from_u64(2), 32);
    let x1t = tensor(x1.iter().copied().collect(), 32, 2);
    let want = g.target_log_density(x1.as_slice().unwrap());
    for trace in [Trace::Exact, Trace::Hutchinson { probes: 1, seed: 3 }] {
        let (lp, _) = fm::log_density(&g.velocity(), &x1t, fm::standard_normal_log_density, trace, &opts).unwrap();
        for (a, b) in lp.iter().zip(&want) {
            assert!((a - b).abs() < 1e-7, "{trace:?}: {a} vs closed form {b}");
        }
    }
    let x0 = normals(32, 2, 4);
    let lp0 = fm::standard_normal_log_density(&x0, 2);
    let (x1, lp1) = fm::sample_with_log_density(&g.velocity(), &tensor(x0, 32, 2), &lp0, Trace::Exact, &opts).unwrap();
    let want = g.target_log_density(&x1);
    for (a, b) in lp1.iter().zip(&want) {
        assert!((a - b).abs() < 1e-7, "one pass: {a} vs closed form {b}");
    }
}

/// The SDE `dX = [b + ε s] dt + √(2ε) dW` with the exact velocity and score (and with the score
/// recovered from the velocity) reproduces the target's mean and variance. N = 4000 samples:
/// the standard error of a mean is s/√N = 0.0079 and of a variance s²√(2/N) = 0.0056; the
/// bounds are 4 standard errors plus the Euler–Maruyama bias of order dt = 1/400 (≤ 0.005 for
/// this linear SDE with ε ≤ 1).
#[test]
fn sde_sampler_reproduces_target_moments() {
    let g = reference();
    let (n, d, steps) = (4000, 2, 400);
    let path = ProbabilityPath::Linear { sigma: 0.0 };
    let velocity = g.velocity();
    let score = g.score();
    for (k, (diff, from_velocity)) in [(Diffusion::Constant { eps: 1.0 }, false), (Diffusion::NoiseScaled { eps: 1.0 }, true)].into_iter().enumerate() {
        let sde_field = InterpolantSde {
            velocity: &velocity,
            score: if from_velocity { ScoreSource::FromVelocity } else { ScoreSource::Field(&score) },
            diffusion: diff,
            path: &path,
            base: BaseKind::Gaussian,
        };
        sde_field.validate().unwrap();
        let bm = GridBrownian::new(0.0, 1.0 / steps as f64, steps, [n, d], 10 + k as u64).unwrap();
        let opts = SdeOptions::fixed(SdeSolver::EulerMaruyama, 1.0 / steps as f64);
        // Constant ε = 1 has a singular score term at t = 1 only through σ_1 = s > 0: fine.
        let ys = sde::sdeint(&sde_field, tensor(normals(n, d, 20 + k as u64), n, d), &[0.0, 1.0], &bm, &opts).unwrap();
        let x: Vec<f64> = ys[1].to_vec_as();
        for c in 0..d {
            let col: Vec<f64> = x.iter().skip(c).step_by(d).copied().collect();
            let mean = col.iter().sum::<f64>() / n as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            assert!((mean - g.mu[c]).abs() < 4.0 * 0.0079 + 0.005, "{diff:?} column {c}: mean {mean} vs {}", g.mu[c]);
            assert!((var - g.s * g.s).abs() < 4.0 * 0.0056 + 0.005, "{diff:?} column {c}: variance {var} vs {}", g.s * g.s);
        }
    }
}

fn gaussian_problem(data: &Array2<f64>) -> Problem<'_> {
    Problem { dim: 2, x0: SampleSource::Gaussian, x1: SampleSource::Data(data.view()), cond: None }
}

/// RMS of `learned − exact` relative to the RMS of `exact`, at states drawn from `x_t`'s law,
/// over t = 0.1 … 0.9.
fn relative_field_error(g: &GaussianToGaussian, field: &impl VectorField<2>, exact: impl Fn(f64, &[f64]) -> Vec<f64>) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    let mut rng = StdRng::seed_from_u64(99);
    for k in 1..10 {
        let t = k as f64 / 10.0;
        let sd = ((1.0 - t).powi(2) + t * t * g.s * g.s).sqrt();
        let x: Vec<f64> = (0..256 * 2).map(|i| t * g.mu[i % 2] + sd * normal(&mut rng)).collect();
        let v: Vec<f64> = field.eval(&Time::Shared(t), &tensor(x.clone(), 256, 2)).to_vec_as();
        for (i, r) in x.chunks(2).enumerate() {
            let e = exact(t, r);
            for c in 0..2 {
                num += (v[2 * i + c] - e[c]).powi(2);
                den += e[c].powi(2);
            }
        }
    }
    (num / den).sqrt()
}

/// A network trained by flow matching (velocity objective) on N(0, I) → N(μ, s²I) learns the
/// closed-form velocity: relative RMS error below 10 % over the path (a quality bar for 1500
/// Adam steps of a 2-64-64-2 network; an untrained network is at ~100 %).
#[test]
fn learned_velocity_matches_closed_form() {
    let g = reference();
    let data = g.sample_target(&mut StdRng::seed_from_u64(5), 20_000);
    let config = config(vec![64, 64], 1500, 3e-3);
    let (model, report) = fm::train(&gaussian_problem(&data), &config, &Device::flex(), &mut quiet()).unwrap();
    assert!(report.losses().last().unwrap().1.is_finite());
    let err = relative_field_error(&g, &model.field(), |t, x| g.velocity_at(t, x));
    assert!(err < 0.1, "relative velocity error {err}");
}

/// Score and denoiser objectives learn the closed-form score (relative RMS error below 15 %;
/// the score's scale varies by 1/σ_t² along the path, a harder target than the velocity, so
/// 3000 steps).
#[test]
fn learned_score_matches_closed_form() {
    let g = reference();
    let data = g.sample_target(&mut StdRng::seed_from_u64(6), 20_000);
    for objective in [Objective::Score, Objective::Denoiser] {
        let config = TrainConfig { objective, ..config(vec![64, 64], 3000, 3e-3) };
        let (model, _) = fm::train(&gaussian_problem(&data), &config, &Device::flex(), &mut quiet()).unwrap();
        let err = relative_field_error(&g, &model.field(), |t, x| g.score_at(t, x));
        eprintln!("{objective:?}: relative score error {err}");
        assert!(err < 0.15, "{objective:?}: relative score error {err}");
    }
}

/// A model conditioned on a class label (one-hot) samples the right class: class 0 is
/// N(−2, 0.3²), class 1 is N(+2, 0.3²) in 1D; conditional ODE samples have the class mean within
/// 0.1 (4 standard errors of 512 samples is 0.05, plus the model's own error), and
/// classifier-free guidance with w = 2 keeps the class (mean within 0.3).
#[test]
fn conditional_model_and_guidance() {
    let mut rng = StdRng::seed_from_u64(7);
    let n = 4000;
    let mut x1 = Array2::zeros((n, 1));
    let mut c = Array2::zeros((n, 2));
    for i in 0..n {
        let k = i % 2;
        x1[[i, 0]] = if k == 0 { -2.0 } else { 2.0 } + 0.3 * normal(&mut rng);
        c[[i, k]] = 1.0;
    }
    let problem = Problem { dim: 1, x0: SampleSource::Gaussian, x1: SampleSource::Data(x1.view()), cond: Some(c.view()) };
    let config = TrainConfig { cond_dropout: 0.2, ..config(vec![64, 64], 1500, 3e-3) };
    let (model, _) = fm::train(&problem, &config, &Device::flex(), &mut quiet()).unwrap();
    let opts = Options::fixed(Solver::Rk4, 0.02);
    for (w, tol) in [(1.0, 0.1), (2.0, 0.3)] {
        for (class, mean) in [(0usize, -2.0), (1, 2.0)] {
            let mut onehot = vec![0.0f32; 2];
            onehot[class] = 1.0;
            let field = model.conditional_field(onehot, w).unwrap();
            let sol = ode::solve(&field, tensor(normals(512, 1, 30 + class as u64), 512, 1), &[0.0, 1.0], &opts).unwrap();
            let x: Vec<f64> = sol.ys[1].to_vec_as();
            let m = x.iter().sum::<f64>() / x.len() as f64;
            assert!((m - mean).abs() < tol, "class {class}, w = {w}: mean {m} vs {mean}");
        }
    }
    assert!(model.conditional_field(vec![1.0; 3], 1.0).is_err());
}

/// A run interrupted after 20 steps and resumed from its checkpoint ends with the same
/// parameters, bit for bit, as an uninterrupted 40-step run (every step's randomness comes
/// from (seed, step)); a checkpoint from other settings is refused.
#[test]
fn resume_is_exact() {
    let g = reference();
    let data = g.sample_target(&mut StdRng::seed_from_u64(8), 1000);
    let dir = std::env::temp_dir().join(format!("physflow-fm-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = dir.join("ck");
    let _ = std::fs::remove_dir_all(&ck);
    let cpu = Device::flex();
    for coupling in [Coupling::Independent, Coupling::ExactOt] {
        let mut base = TrainConfig { coupling, ..config(vec![16], 40, 1e-3) };
        base.run.batch_size = 32;
        let (full, _) = fm::train(&gaussian_problem(&data), &base, &cpu, &mut quiet()).unwrap();
        let mut half = base.clone();
        half.run.steps = 20;
        fm::train(&gaussian_problem(&data), &half, &cpu, &mut Run::quiet().with_checkpoint(&ck)).unwrap();
        let (resumed, report) = fm::train(&gaussian_problem(&data), &base, &cpu, &mut Run::quiet().with_checkpoint(&ck)).unwrap();
        assert_eq!(report.steps_run, 20);
        assert_eq!(full.params().unwrap(), resumed.params().unwrap(), "{coupling:?}");
        assert_eq!(fm::load_model(&ck).unwrap().params().unwrap(), full.params().unwrap());
        let mut other = base.clone();
        other.run.lr = 1e-2;
        assert!(fm::train(&gaussian_problem(&data), &other, &cpu, &mut Run::quiet().with_checkpoint(&ck)).is_err());
        std::fs::remove_dir_all(&ck).unwrap();
    }
}

/// The burn path (what every non-CPU device trains on) resumes exactly too, here on burn's CPU
/// backend: 12 steps, then 12 more from the checkpoint, against 24 uninterrupted steps, with an
/// EMA of the parameters.
#[test]
fn burn_path_resume_is_exact() {
    use physflow::fm::FmTrainer;
    use physflow::train::fit;
    let g = reference();
    let data = g.sample_target(&mut StdRng::seed_from_u64(8), 500);
    let dir = std::env::temp_dir().join(format!("physflow-fm-burn-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cpu = Device::flex();
    let mut cfg = config(vec![16], 24, 1e-3);
    cfg.run.batch_size = 32;
    cfg.run.ema = Some(0.9);
    cfg.run.grad_clip = Some(0.5);
    let p = gaussian_problem(&data);
    let mut full = FmTrainer::new_burn_path(&p, &cfg, &cpu).unwrap();
    fit(&mut full, &cfg.run, &mut quiet()).unwrap();
    let mut first = FmTrainer::new_burn_path(&p, &cfg, &cpu).unwrap();
    fit(&mut first, &cfg.run, &mut Run { stop_after: Some(12), ..Run::quiet().with_checkpoint(&dir) }).unwrap();
    let mut second = FmTrainer::new_burn_path(&p, &cfg, &cpu).unwrap();
    let r = fit(&mut second, &cfg.run, &mut Run::quiet().with_checkpoint(&dir)).unwrap();
    assert_eq!(r.steps_run, 12);
    assert_eq!(second.model().unwrap().params().unwrap(), full.model().unwrap().params().unwrap());
    // A checkpoint of the burn path is not taken for the fused path's (the optimizer states
    // differ): the error names the engine.
    let mut fused = FmTrainer::new(&p, &cfg, &cpu).unwrap();
    match fit(&mut fused, &cfg.run, &mut Run::quiet().with_checkpoint(&dir)) {
        Err(physflow::Error::InvalidArgument { reason, .. }) => assert!(reason.contains("engine"), "{reason}"),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Data parallelism: a batch split over two devices (here two handles of the CPU device;
/// `tests/device_parity.rs` pairs the CPU with wgpu) gives the single-device loss and
/// gradient up to f32 summation order (1e-5 relative), and 10 Adam steps stay together
/// (2e-4, as the fused/burn comparison: Adam's normalised update amplifies round-off).
#[test]
fn data_parallel_step_equals_the_single_device_step() {
    use physflow::fm::FmTrainer;
    use physflow::train::{fit, step_rng};
    let g = reference();
    let data = g.sample_target(&mut StdRng::seed_from_u64(8), 500);
    let cpu = Device::flex();
    let mut cfg = config(vec![32, 32], 10, 1e-3);
    cfg.run.batch_size = 65; // not divisible by the device count
    let p = gaussian_problem(&data);
    let mut one = FmTrainer::new_burn_path(&p, &cfg, &cpu).unwrap();
    let mut two = FmTrainer::new_data_parallel(&p, &cfg, &[cpu.clone(), cpu.clone()]).unwrap();
    let (l1, g1) = one.loss_and_grad(&mut step_rng(3, 0)).unwrap();
    let (l2, g2) = two.loss_and_grad(&mut step_rng(3, 0)).unwrap();
    let rel = |a: &[f32], b: &[f32]| {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / scale
    };
    assert!((l1 - l2).abs() <= 1e-5 * l1.abs(), "loss {l1} vs {l2}");
    assert!(rel(&g2, &g1) < 1e-5, "gradient differs by {}", rel(&g2, &g1));
    let mut one = FmTrainer::new_burn_path(&p, &cfg, &cpu).unwrap();
    let mut two = FmTrainer::new_data_parallel(&p, &cfg, &[cpu.clone(), cpu.clone()]).unwrap();
    fit(&mut one, &cfg.run, &mut quiet()).unwrap();
    fit(&mut two, &cfg.run, &mut quiet()).unwrap();
    let (a, b) = (two.model().unwrap().params().unwrap(), one.model().unwrap().params().unwrap());
    assert!(rel(&a, &b) < 2e-4, "after 10 steps: {}", rel(&a, &b));
    assert!(FmTrainer::new_data_parallel(&p, &cfg, &[]).is_err());
}

/// Bad input is an error that names the problem: non-finite data diverges at step 0, wrong
/// widths, a score objective without noise, paired coupling of unpaired data, unknown options.
#[test]
fn bad_input_is_reported() {
    let mut data = Array2::<f64>::zeros((10, 2));
    data[[3, 1]] = f64::NAN;
    let mut cfg = config(vec![8], 5, 1e-3);
    cfg.run.batch_size = 64;
    let cpu = Device::flex();
    let err = fm::train(&gaussian_problem(&data), &cfg, &cpu, &mut quiet()).unwrap_err();
    assert!(matches!(err, physflow::Error::Diverged { iteration: 0, .. }), "{err}");
    let wide = Array2::<f64>::zeros((10, 3));
    assert!(fm::train(&gaussian_problem(&wide), &cfg, &cpu, &mut quiet()).is_err());
    let ok = Array2::<f64>::zeros((10, 2));
    let p = Problem { dim: 2, x0: SampleSource::Data(ok.view()), x1: SampleSource::Data(ok.view()), cond: None };
    assert!(fm::train(&p, &TrainConfig { objective: Objective::Score, ..cfg.clone() }, &cpu, &mut quiet()).is_err());
    let short = Array2::<f64>::zeros((5, 2));
    let p = Problem { dim: 2, x0: SampleSource::Data(ok.view()), x1: SampleSource::Data(short.view()), cond: None };
    assert!(fm::train(&p, &TrainConfig { coupling: Coupling::Paired, ..cfg.clone() }, &cpu, &mut quiet()).is_err());
    let parsed: Result<TrainConfig, _> = toml::from_str("[run]\nsteps = 10\nlearning_rate = 0.1\n");
    assert!(parsed.unwrap_err().to_string().contains("learning_rate"));
    let path = ProbabilityPath::SchrodingerBridge { sigma: 0.5 };
    let g = reference();
    let velocity = g.velocity();
    let sde_field = InterpolantSde {
        velocity: &velocity,
        score: ScoreSource::<fm::ModelField>::FromVelocity,
        diffusion: Diffusion::Constant { eps: 1.0 },
        path: &path,
        base: BaseKind::Data,
    };
    assert!(sde_field.validate().is_err());
}

/// Mean flows on N(0, I) → N(μ, s²I): the learned average velocity over the whole path,
/// `u(x, 0, 1)`, approaches the exact jump `X₁(x) − x = μ + (s − 1) x` (relative RMS error
/// below 10 % over x ~ N(0, I), a quality bar for 3000 steps; the untrained network is at
/// ~100 %), and one-step samples have the target's mean and standard deviation within 0.1.
#[test]
fn mean_flow_one_step() {
    let g = reference();
    let data = g.sample_target(&mut StdRng::seed_from_u64(11), 20_000);
    let cfg = fm::MeanFlowConfig { base: config(vec![64, 64], 3000, 3e-3), fraction_distinct: 0.5 };
    let (mf, _) = fm::train_mean_flow(&gaussian_problem(&data), &cfg, &Device::flex(), &mut quiet()).unwrap();
    let n = 4000;
    let x0 = Array2::from_shape_vec((n, 2), normals(n, 2, 12)).unwrap();
    let x32: Vec<f32> = x0.iter().map(|&v| v as f32).collect();
    let u = mf.average_velocity(&x32, 0.0, 1.0, n);
    let (mut num, mut den) = (0.0, 0.0);
    for (i, r) in x0.rows().into_iter().enumerate() {
        let exact = g.flow_map(r.as_slice().unwrap());
        for c in 0..2 {
            let jump = exact[c] - r[c];
            num += (f64::from(u[2 * i + c]) - jump).powi(2);
            den += jump * jump;
        }
    }
    let err = (num / den).sqrt();
    eprintln!("mean flow: relative error of u(x, 0, 1) {err}");
    assert!(err < 0.1, "relative error of u(x, 0, 1): {err}");
    let x1 = mf.sample(&x0, 1).unwrap();
    for c in 0..2 {
        let col = x1.column(c);
        let mean = col.sum() / n as f64;
        let sd = (col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        assert!((mean - g.mu[c]).abs() < 0.1 && (sd - g.s).abs() < 0.1, "column {c}: mean {mean}, sd {sd}");
    }
}

/// `fm::sample_checkpoint` (the library side of `physflow fm sample`): a model trained with a
/// Gaussian base and saved with a sampler is sampled with that sampler, its evaluations
/// counted, with the same numbers as the loaded model sampled directly (the same base draws:
/// `N(0, I)` from the seed) and log-densities from the one-pass likelihood; bad requests are
/// refused with the setting named.
#[test]
fn checkpoints_sample_with_their_saved_sampler() {
    let dir = std::env::temp_dir().join(format!("physflow-fm-sample-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let target = reference().sample_target(&mut StdRng::seed_from_u64(5), 256);
    let problem = Problem { dim: 2, x0: SampleSource::Gaussian, x1: SampleSource::Data(target.view()), cond: None };
    let mut run = Run::for_study(&dir, &"fm-sample-test", true).unwrap();
    fm::train(&problem, &config(vec![16], 10, 1e-2), &Device::flex(), &mut run).unwrap();
    let sampler = fm::Sampler::Ode { solver: Solver::Rk4, steps: 4, schedule: fm::Schedule::Uniform };
    sampler.save(&dir).unwrap();
    let out = fm::sample_checkpoint(&dir, None, fm::BaseSamples::Gaussian { n: 8, seed: 1 }, true).unwrap();
    assert_eq!((out.sampler.clone(), out.nfe, out.x1.dim()), (sampler.clone(), 16, (8, 2)));
    let model = fm::load_model(&dir).unwrap();
    let x0 = normals(8, 2, 1);
    let direct: Vec<f64> = sampler.sample(&model.field(), &model.path, tensor(x0.clone(), 8, 2)).unwrap().x.to_vec_as();
    let via: Vec<f64> = out.x1.iter().copied().collect();
    assert!(direct.iter().zip(&via).all(|(a, b)| (a - b).abs() < 1e-12), "{direct:?} vs {via:?}");
    let lp0 = fm::standard_normal_log_density(&x0, 2);
    let (_, lq, _) = sampler.sample_with_log_density(&model.field(), &model.path, &tensor(x0, 8, 2), &lp0, Trace::Exact).unwrap();
    assert_eq!(out.log_density.unwrap(), lq);
    // A sampler given by the caller wins over the saved one.
    let euler = fm::Sampler::Ode { solver: Solver::Euler, steps: 3, schedule: fm::Schedule::Uniform };
    assert_eq!(fm::sample_checkpoint(&dir, Some(euler), fm::BaseSamples::Gaussian { n: 2, seed: 0 }, false).unwrap().nfe, 3);
    let given = Array2::<f64>::zeros((3, 2));
    // A DPM-Solver carries the log-density too: the same as its direct call.
    let dpm = fm::Sampler::Dpm { solver: fm::DpmSolver::DpmPp2M, steps: 4, schedule: fm::Schedule::Uniform, clip: 0.0 };
    let out = fm::sample_checkpoint(&dir, Some(dpm.clone()), fm::BaseSamples::Gaussian { n: 8, seed: 1 }, true).unwrap();
    let lp0 = fm::standard_normal_log_density(&normals(8, 2, 1), 2);
    let (_, lq, _) = dpm.sample_with_log_density(&model.field(), &model.path, &tensor(normals(8, 2, 1), 8, 2), &lp0, Trace::Exact).unwrap();
    assert_eq!((out.nfe, out.log_density.unwrap()), (4, lq));
    for (sampler, base, log_density) in [
        (None, fm::BaseSamples::Given(given.clone()), true),
        (None, fm::BaseSamples::Given(Array2::zeros((3, 5))), false),
        (None, fm::BaseSamples::Gaussian { n: 0, seed: 0 }, false),
    ] {
        let e = fm::sample_checkpoint(&dir, sampler, base, log_density).unwrap_err();
        assert!(matches!(e, physflow::Error::InvalidArgument { .. } | physflow::Error::Shape { .. }), "{e}");
    }
    assert!(fm::sample_checkpoint(&dir.join("missing"), None, fm::BaseSamples::Given(given), false).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The fused model's time VJP: `aᵢᵀ ∂fᵢ/∂t` against a central difference of the field in `t`
/// (step 1e-2 on a smooth tanh network in f32: truncation ~1e-5, round-off ~1e-5 relative),
/// and the state part equal to `vjp_saved` bit for bit; with guidance (two network terms)
/// the terms' weights carry over. A denoiser (output scale depends on `t`) says `None`.
#[test]
fn fused_model_time_vjp_matches_differences() {
    let (n, d) = (5, 2);
    let y = tensor(normals(n, d, 3), n, d);
    let a = tensor(normals(n, d, 4), n, d);
    let t = 0.37;
    let h = 1e-2;
    let net = NetConfig::tanh(vec![16, 16]);
    let plain = FmModel::new(d, 0, &net, ProbabilityPath::default(), BaseKind::Gaussian, Objective::Velocity, 5).unwrap();
    let guided = FmModel::new(d, 3, &net, ProbabilityPath::default(), BaseKind::Gaussian, Objective::Velocity, 6).unwrap();
    let check = |field: &dyn Fn(&Time, &Tensor<2>) -> Tensor<2>, saved_vjp: &dyn Fn() -> (Option<(Tensor<2>, Vec<f64>)>, Tensor<2>)| {
        let (with_time, x_only) = saved_vjp();
        let (x_bar, t_bar) = with_time.expect("a fused velocity model forms the time VJP");
        assert_eq!(x_bar.to_vec_as::<f64>(), x_only.to_vec_as::<f64>());
        let up = field(&Time::Shared(t + h), &y).to_vec_as::<f64>();
        let down = field(&Time::Shared(t - h), &y).to_vec_as::<f64>();
        let av = a.to_vec_as::<f64>();
        for i in 0..n {
            let fd: f64 = (0..d).map(|j| av[i * d + j] * (up[i * d + j] - down[i * d + j]) / (2.0 * h)).sum();
            assert!((t_bar[i] - fd).abs() <= 1e-3 * fd.abs().max(0.1), "sample {i}: {} vs {fd}", t_bar[i]);
        }
    };
    let f = plain.field();
    check(&|t, y| f.eval(t, y), &|| {
        let (_, s) = f.eval_saving(&Time::Shared(t), &y);
        (f.vjp_with_time_saved(&s, &a), f.vjp_saved(&s, &a, None))
    });
    let g = guided.conditional_field(vec![0.0, 1.0, 0.0], 2.5).unwrap();
    check(&|t, y| g.eval(t, y), &|| {
        let (_, s) = g.eval_saving(&Time::Shared(t), &y);
        (g.vjp_with_time_saved(&s, &a), g.vjp_saved(&s, &a, None))
    });
    let denoiser = FmModel::new(d, 0, &net, ProbabilityPath::default(), BaseKind::Gaussian, Objective::Denoiser, 7).unwrap();
    let df = denoiser.field();
    let (_, s) = df.eval_saving(&Time::Shared(t), &y);
    assert!(df.vjp_with_time_saved(&s, &a).is_none());
}
