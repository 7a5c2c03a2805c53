//! Functional flow matching on the default (f32) CPU device: training reduces the loss, resumes
//! exactly, saves and loads, and a trained f32 model samples under f64 projections.
//! This binary never configures f64.

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::Array2;
use physflow::host::ToHost;
use physflow::nn::{Activation, FieldNetConfig, FnoConfig};
use physflow::ode::{Time, VectorField};
use physflow::pde::{self, FfmConfig, FfmProblem, FieldModel, GpConfig, Grid, LinearConstraint, PcfmOptions, Quadrature, SampleConfig, Sampler, Stack};
use physflow::sim::systems::{ic, Boundary, Grid1d, Pde1d};
use physflow::sim::SimOptions;
use physflow::train::{Run, RunOptions};
use rand::SeedableRng;

/// 48 heat solutions on a periodic 16-point axis at 8 times, random Fourier initial states
/// plus an offset, diffusivities in [0.02, 0.08].
fn heat_data() -> (Grid, Array2<f64>) {
    let g = Grid1d::new(16, 1.0, Boundary::Periodic);
    let systems: Vec<Pde1d> = (0..48)
        .map(|k| {
            let u0 = ic::random_fourier(&g, k, 2, 1.0).iter().map(|v| v + 1.0).collect();
            Pde1d::heat(g, 0.02 + 0.06 * (k % 7) as f64 / 6.0, u0)
        })
        .collect();
    let times: Vec<f64> = (0..8).map(|k| 0.5 * k as f64 / 7.0).collect();
    pde::simulate_fields(&systems, &times, &SimOptions::default(), false).unwrap()
}

fn small_config(steps: usize) -> FfmConfig {
    FfmConfig {
        net: FieldNetConfig::Fno(FnoConfig {
            width: 8,
            modes: [4, 3],
            layers: 2,
            time_features: 2,
            projection: 16,
            activation: Activation::Gelu,
            ..FnoConfig::default()
        }),
        gp: GpConfig { length: vec![0.2, 0.2], ..GpConfig::default() },
        run: RunOptions { batch_size: 8, steps, lr: 3e-3, log_every: 1, checkpoint_every: 0, ..FfmConfig::default().run },
        ..FfmConfig::default()
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("physflow-pde-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn probe(model: &FieldModel) -> Vec<f32> {
    let n = model.meta.grid.len();
    let y = Tensor::<2>::from_data(TensorData::new((0..2 * n).map(|i| (i % 5) as f32 * 0.3).collect::<Vec<f32>>(), [2, n]), &Device::flex());
    model.eval(&Time::PerSample(vec![0.3, 0.8]), &y).to_vec_as::<f32>()
}

/// After 200 steps the model beats every predictor that ignores its input: on 256 fresh draws
/// (data row, GP noise, time) its flow-matching loss in normalised units is below
/// `E|z₁ − (1 − σ_min) z₀|² = 1 + (1 − σ_min)²` — the loss of the best input-independent
/// prediction, 0, since normalised data and base have zero mean and unit variance — by more
/// than 5 standard errors of the evaluation.
#[test]
fn training_beats_every_input_independent_predictor() {
    let (grid, data) = heat_data();
    let problem = FfmProblem { grid: &grid, data: data.view().into(), residual: None };
    let cfg = small_config(200);
    let (model, report) = pde::train_ffm(&problem, &cfg, &mut Run::quiet(), &Device::flex()).unwrap();
    assert_eq!(report.losses.len(), 200);
    let (mu, sd) = (model.meta.mean[0], model.meta.std[0]);
    let s = 1.0 - cfg.sigma_min;
    let n = grid.len();
    let draws = 256;
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let x0 = model.noise(&mut rng, draws);
    let mut xt = Vec::with_capacity(draws * n);
    let mut target = Vec::with_capacity(draws * n);
    let mut ts = Vec::with_capacity(draws);
    for k in 0..draws {
        let t = (k as f64 + 0.5) / draws as f64;
        let row = (k * 7) % data.nrows();
        for p in 0..n {
            let (z0, z1) = ((x0[[k, p]] - mu) / sd, (data[[row, p]] - mu) / sd);
            xt.push(mu + sd * ((1.0 - s * t) * z0 + t * z1));
            target.push(z1 - s * z0);
        }
        ts.push(t);
    }
    let y = Tensor::<2>::from_data(TensorData::new(xt, [draws, n]), &Device::flex());
    let v = model.eval(&Time::PerSample(ts), &y).to_vec_as::<f64>();
    let per: Vec<f64> = (0..draws).map(|k| (0..n).map(|p| (v[k * n + p] / sd - target[k * n + p]).powi(2)).sum::<f64>() / n as f64).collect();
    let mean = per.iter().sum::<f64>() / draws as f64;
    let se = (per.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (draws - 1) as f64 / draws as f64).sqrt();
    let baseline = 1.0 + s * s;
    assert!(mean + 5.0 * se < baseline, "trained loss {mean:.3} ± {se:.3} vs input-independent {baseline:.3}");
}

/// Stopping after 5 of 12 steps and resuming from the checkpoint gives the same losses and the
/// same network, bit for bit, as the uninterrupted run; a checkpoint of another configuration is
/// refused; the saved model loads back to the same outputs.
#[test]
fn resume_is_exact_and_models_round_trip() {
    let (grid, data) = heat_data();
    let problem = FfmProblem { grid: &grid, data: data.view().into(), residual: None };
    let cfg = small_config(12);
    let device = Device::flex();
    let (straight, rep_a) = pde::train_ffm(&problem, &cfg, &mut Run::quiet(), &device).unwrap();
    let dir = temp_dir("resume");
    let run = |stop| Run { stop_after: stop, ..Run::quiet().with_checkpoint(dir.join("ckpt")) };
    let (_, part) = pde::train_ffm(&problem, &cfg, &mut run(Some(5)), &device).unwrap();
    assert_eq!(part.steps_run, 5);
    let (resumed, rep_b) = pde::train_ffm(&problem, &cfg, &mut run(None), &device).unwrap();
    assert_eq!(rep_b.steps_run, 7);
    assert_eq!(rep_a.losses, rep_b.losses);
    assert_eq!(probe(&straight), probe(&resumed));
    let mut other = cfg.clone();
    other.run.lr = 1e-4;
    assert!(pde::train_ffm(&problem, &other, &mut run(None), &device).is_err());
    resumed.save(&dir.join("model")).unwrap();
    let loaded = FieldModel::load(&dir.join("model"), &device).unwrap();
    assert_eq!(probe(&loaded), probe(&resumed));
    assert_eq!(loaded.meta, resumed.meta);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A trained f32 model sampled with PCFM under an initial condition and mass conservation:
/// the f64 projections put every field on the constraint set to 1e-10 even though the model
/// runs in f32. With the PDE-residual (PBFM) term the run reports a non-zero residual loss.
#[test]
fn f32_model_samples_satisfy_constraints_to_f64_tolerance() {
    let (grid, data) = heat_data();
    let mass = LinearConstraint::mass_conservation(&grid, 0, Quadrature::Uniform, None).unwrap();
    let problem = FfmProblem { grid: &grid, data: data.view().into(), residual: Some(&mass) };
    let cfg = FfmConfig { residual_weight: 1.0, ..small_config(30) };
    let (model, report) = pde::train_ffm(&problem, &cfg, &mut Run::quiet(), &Device::flex()).unwrap();
    assert!(report.losses.iter().any(|e| e.2 > 0.0), "no residual term recorded");
    let nx = grid.axes[0].n;
    let u0: Vec<f64> = (0..nx).map(|i| data[[3, grid.index(0, i, 0)]]).collect();
    let c = Stack::new(vec![Box::new(LinearConstraint::initial_condition(&grid, &u0).unwrap()), Box::new(mass)]).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let x0 = model.noise_tensor(&mut rng, 6);
    assert_eq!(x0.dtype(), burn::tensor::DType::F32);
    let out =
        pde::sample(&model, &x0, Some(&c), &SampleConfig { method: Sampler::Pcfm(PcfmOptions::default()), steps: 10, ..SampleConfig::default() }).unwrap();
    assert!(out.stats.final_residual <= 1e-10, "residual {:.2e}", out.stats.final_residual);
    for (i, v) in u0.iter().enumerate() {
        assert!((out.fields[[0, grid.index(0, i, 0)]] - v).abs() < 1e-10);
    }
}

/// Streaming the training fields from HDF5 files (split over two files, each field the rows of
/// two datasets) trains exactly as the same fields in memory: the same per-step losses and the
/// same model, bit for bit. A file without one of the datasets is an error naming it.
#[test]
fn streamed_fields_train_exactly_as_in_memory() {
    use physflow::io::h5::{DatasetOptions, H5Tree};
    let (grid, data) = heat_data();
    let n = grid.len();
    let dir = temp_dir("streamed");
    std::fs::create_dir_all(&dir).unwrap();
    // Rows 0..20 in one file and 20..48 in another; each row split as [first 40 | last n − 40].
    let mut paths = Vec::new();
    for (k, (lo, hi)) in [(0, 20), (20, 48)].into_iter().enumerate() {
        let mut tree = H5Tree::new();
        let rows = data.slice(ndarray::s![lo..hi, ..]);
        tree.add_f64("head", &[hi - lo, 40], rows.slice(ndarray::s![.., ..40]).iter().copied().collect(), &DatasetOptions::samples()).unwrap();
        tree.add_f64("tail", &[hi - lo, n - 40], rows.slice(ndarray::s![.., 40..]).iter().copied().collect(), &DatasetOptions::samples()).unwrap();
        let p = dir.join(format!("part{k}.h5"));
        tree.write(&p).unwrap();
        paths.push(p);
    }
    let cfg = small_config(20);
    let memory = FfmProblem { grid: &grid, data: data.view().into(), residual: None };
    let streamed = FfmProblem { grid: &grid, data: pde::FieldData::files(&paths, &["head", "tail"]).unwrap(), residual: None };
    assert_eq!(streamed.data.rows(), 48);
    let (m1, r1) = pde::train_ffm(&memory, &cfg, &mut Run::quiet(), &Device::flex()).unwrap();
    let (m2, r2) = pde::train_ffm(&streamed, &cfg, &mut Run::quiet(), &Device::flex()).unwrap();
    assert_eq!(r1.losses, r2.losses);
    assert_eq!((m1.meta.mean.clone(), m1.meta.std.clone()), (m2.meta.mean.clone(), m2.meta.std.clone()));
    assert_eq!(probe(&m1), probe(&m2));
    assert!(matches!(pde::FieldData::files(&paths, &["head", "missing"]), Err(physflow::Error::MissingDataset { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}
