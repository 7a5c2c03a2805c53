//! Sharded simulation datasets and the streaming loader.

use std::collections::BTreeSet;
use std::path::PathBuf;

use physflow::io::dataset::{field_inputs, generate, sample_inputs, DatasetSpec, InitialCondition, Manifest};
use physflow::io::h5::{Attr, H5File};
use physflow::io::loader::{DataFiles, Loader, LoaderConfig};
use physflow::io::pdebench::SingleFile;
use physflow::sim::darcy::DarcyProblem;
use physflow::sim::fields;
use physflow::sim::{ensemble, systems};
use physflow::Error;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("physflow-io-ds-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn spec() -> DatasetSpec {
    DatasetSpec {
        system: "heat1d".into(),
        samples: 7,
        shards: 3,
        t_end: 0.2,
        n_times: 6,
        initial: InitialCondition::RandomFourier { modes: 4, amplitude: 1.0 },
        seed: 11,
        ..Default::default()
    }
}

/// Shard contents equal a direct ensemble solve of the same sampled inputs
/// (rounded to f32), with PDEBench's layout and the schema attributes.
#[test]
fn shards_hold_the_simulated_trajectories() {
    let s = spec();
    let d = dir("content");
    let report = generate(&s, &d, None, false).unwrap();
    assert_eq!(report.written, vec![0, 1, 2]);
    #[cfg(feature = "cli")]
    {
        let preview = d.join("preview.png");
        physflow::plot::dataset_preview(&d, &report.manifest, &preview).unwrap();
        assert!(std::fs::read(&preview).unwrap().starts_with(b"\x89PNG"), "a preview figure");
    }
    let m = Manifest::open(&d, true).unwrap();
    assert!(m.complete);
    assert_eq!(m.shards.iter().map(|s| s.samples).collect::<Vec<_>>(), vec![2, 2, 3]);
    assert_eq!(m.sample_shape, vec![6, 64]);
    let sys = systems::by_name("heat1d").unwrap();
    let (params, y0s) = sample_inputs(sys.as_ref(), &s, 0, 7).unwrap();
    let want = ensemble(sys.as_ref(), Some(&params), Some(&y0s), &s.times(), &s.sim, false).unwrap();
    let mut all = Vec::new();
    for e in &m.shards {
        let f = SingleFile::read(&d.join(&e.file)).unwrap();
        assert_eq!(f.fields[0].shape, vec![e.samples, 6, 64]);
        assert_eq!(f.x.as_ref().unwrap().len(), 64);
        assert_eq!(f.attrs["physflow_schema"], Attr::Str("physflow-dataset/1".into()));
        assert_eq!(f.attrs["system"], Attr::Str("heat1d".into()));
        assert_eq!(f.attrs["first_sample"], Attr::Int(e.first_sample as i64));
        assert!(f.attrs["boundary_x"].as_str().unwrap().contains("dirichlet"));
        assert_eq!(f.attrs["diffusivity"], Attr::Float(0.1), "fixed parameters are also PDEBench-style scalar attributes");
        let h = H5File::open(&d.join(&e.file)).unwrap();
        assert_eq!(
            h.read_f64("initial_state").unwrap().1,
            y0s.slice(ndarray::s![e.first_sample..e.first_sample + e.samples, ..]).iter().copied().collect::<Vec<_>>()
        );
        all.extend(f.fields[0].data.iter().copied());
    }
    let want32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
    assert_eq!(all, want32);
    // Heat with zero Dirichlet data decays: every sample's energy falls over time.
    let st = m.stats.as_ref().unwrap()["tensor"].clone();
    assert_eq!(st.count, 7 * 6 * 64);
    let mean = all.iter().map(|&v| v as f64).sum::<f64>() / all.len() as f64;
    assert!((st.mean - mean).abs() < 1e-12 * (1.0 + mean.abs()));
}

/// Stopping after one new shard and resuming ends with byte-identical files to
/// an uninterrupted run; a different spec in the same directory is refused.
#[test]
fn interrupted_generation_resumes_to_the_same_dataset() {
    let s = spec();
    let (a, b) = (dir("full"), dir("resumed"));
    generate(&s, &a, None, false).unwrap();
    let first = generate(&s, &b, Some(1), false).unwrap();
    assert_eq!(first.written, vec![0]);
    assert!(!Manifest::open(&b, false).unwrap().complete);
    // A half-written temporary file from a killed writer must not count as a shard.
    std::fs::write(b.join("shard-00001.h5"), b"partial").unwrap();
    let second = generate(&s, &b, None, false).unwrap();
    assert_eq!((second.skipped, second.written), (vec![0], vec![1, 2]));
    for k in 0..3 {
        let name = format!("shard-{k:05}.h5");
        assert_eq!(std::fs::read(a.join(&name)).unwrap(), std::fs::read(b.join(&name)).unwrap(), "{name}");
    }
    assert_eq!(Manifest::open(&a, true).unwrap(), Manifest::open(&b, true).unwrap());
    let again = generate(&s, &b, None, false).unwrap();
    assert_eq!(again.skipped, vec![0, 1, 2]);
    // A shard cut short (a copy interrupted) and one with a flipped bit in its data are found
    // by the resume and simulated again, to the same bytes.
    let name = |k: usize| format!("shard-{k:05}.h5");
    let good: Vec<Vec<u8>> = (0..3).map(|k| std::fs::read(a.join(name(k))).unwrap()).collect();
    std::fs::write(b.join(name(0)), &good[0][..good[0].len() - 100]).unwrap();
    // The flip lands in the x coordinates' stored values (found by their bytes), a small dataset
    // that is checksummed like the rest.
    let x: Vec<u8> =
        physflow::io::h5::H5File::open(&a.join(name(2))).unwrap().read_f32("x-coordinate").unwrap().1.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut flipped = good[2].clone();
    let at = flipped.windows(x.len()).position(|w| w == &x[..]).expect("x coordinates stored uncompressed") + x.len() / 2;
    flipped[at] ^= 0x10;
    std::fs::write(b.join(name(2)), &flipped).unwrap();
    let repaired = generate(&s, &b, None, false).unwrap();
    assert_eq!((repaired.skipped, repaired.written), (vec![1], vec![0, 2]));
    for k in 0..3 {
        assert_eq!(std::fs::read(b.join(name(k))).unwrap(), good[k], "{}", name(k));
    }
    let other = DatasetSpec { seed: 12, ..s };
    assert!(matches!(generate(&other, &b, None, false), Err(Error::Manifest { .. })));
}

#[test]
fn manifest_mismatches_are_errors() {
    let s = DatasetSpec { samples: 4, shards: 2, ..spec() };
    let d = dir("mismatch");
    generate(&s, &d, None, false).unwrap();
    let path = d.join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let edit = |from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        Manifest::open(&d, true)
    };
    assert!(matches!(edit("\"shard_count\": 2", "\"shard_count\": 3"), Err(Error::Manifest { ref reason, .. }) if reason.contains("shard_count")));
    assert!(matches!(edit("\"total_samples\": 4", "\"total_samples\": 5"), Err(Error::Manifest { ref reason, .. }) if reason.contains("total_samples")));
    let bad = text.replacen("\"samples\": 2", "\"samples\": 3", 1).replacen("\"total_samples\": 4", "\"total_samples\": 5", 1);
    std::fs::write(&path, bad).unwrap();
    assert!(matches!(Manifest::open(&d, true), Err(Error::Manifest { ref reason, .. }) if reason.contains("shard 0")));
    std::fs::write(&path, &text).unwrap();
    std::fs::remove_file(d.join("shard-00001.h5")).unwrap();
    assert!(matches!(DataFiles::open(&d), Err(Error::Manifest { ref reason, .. }) if reason.contains("missing")));
    assert!(matches!(generate(&DatasetSpec { shards: 5, ..s.clone() }, &dir("x"), None, false), Err(Error::InvalidArgument { .. })));
    let scaled_2d = DatasetSpec { system: "heat2d".into(), ..s };
    assert!(matches!(scaled_2d.validate(), Err(Error::InvalidArgument { name: "initial", .. })));
}

/// Navier–Stokes shards hold the solver's frames for each sample's parameters and seed
/// (recomputed directly here), in PDEBench's 2D layout, and do not depend on the sharding.
#[test]
fn ns2d_shards_hold_the_solver_frames_whatever_the_sharding() {
    let s = DatasetSpec {
        system: "ns2d".into(),
        samples: 3,
        shards: 2,
        t_end: 0.5,
        n_times: 3,
        param_spread: 0.2,
        resolution: Some(16),
        seed: 4,
        ..Default::default()
    };
    let (a, b) = (dir("ns2d_a"), dir("ns2d_b"));
    generate(&s, &a, None, false).unwrap();
    generate(&DatasetSpec { shards: 1, ..s.clone() }, &b, None, false).unwrap();
    let m = Manifest::open(&a, true).unwrap();
    assert_eq!((m.dataset.as_str(), m.sample_shape.clone()), ("tensor", vec![3, 16, 16]));
    let sim = fields::by_name("ns2d", Some(16)).unwrap().unwrap();
    let (params, seeds) = field_inputs(sim.as_ref(), &s, 0, 3);
    assert_eq!(params[[0, 0]], 1e-3, "sample 0 keeps the default viscosity");
    assert!(params[[1, 0]] != 1e-3, "the others are spread");
    let (mut sharded, mut single) = (Vec::new(), Vec::new());
    for e in &m.shards {
        let f = SingleFile::read(&a.join(&e.file)).unwrap();
        assert_eq!(f.fields[0].shape, vec![e.samples, 3, 16, 16]);
        assert_eq!(f.attrs["boundary_x"], Attr::Str("periodic".into()));
        sharded.extend(f.fields[0].data.iter().copied());
    }
    single.extend(SingleFile::read(&b.join("shard-00000.h5")).unwrap().fields[0].data.iter().copied());
    assert_eq!(sharded, single, "sharding does not change a sample");
    let mut want = Vec::new();
    for r in 0..3 {
        let w = sim.simulate(params.row(r).as_slice().unwrap(), seeds[r], &s.times()).unwrap();
        want.extend(w[0].iter().map(|&v| v as f32));
    }
    assert_eq!(sharded, want);
    let h = H5File::open(&a.join("shard-00000.h5")).unwrap();
    assert!(h.has_dataset("sample_seed") && h.has_dataset("t-coordinate"));
}

/// Darcy shards hold the permeability `nu` and the pressure `tensor` (PDEBench's names), and
/// the stored pressure solves the stored medium's finite-volume equations (to the f32 rounding
/// of the files).
#[test]
fn darcy_shards_hold_medium_and_pressure() {
    let s = DatasetSpec { system: "darcy".into(), samples: 2, shards: 1, resolution: Some(16), seed: 2, ..Default::default() };
    let d = dir("darcy");
    generate(&s, &d, None, false).unwrap();
    let m = Manifest::open(&d, true).unwrap();
    assert_eq!(m.datasets, vec!["tensor".to_string(), "nu".into()]);
    assert_eq!(m.sample_shape, vec![1, 16, 16]);
    let h = H5File::open(&d.join("shard-00000.h5")).unwrap();
    let (ushape, u) = h.read_f64("tensor").unwrap();
    let (ashape, a) = h.read_f64("nu").unwrap();
    assert_eq!((ushape, ashape), (vec![2, 1, 16, 16], vec![2, 16, 16]));
    assert!(!h.has_dataset("t-coordinate"), "a steady problem has no time axis");
    for r in 0..2 {
        let prob = DarcyProblem::constant(a[r * 256..(r + 1) * 256].to_vec(), 1.0, 0.0).unwrap();
        let res = prob.residual(&u[r * 256..(r + 1) * 256]).unwrap();
        // r = Σ T (u_P − u_nb) − f h²: f32 pressures of size ~0.02 with T ≤ 24 round to ~1e-8.
        let worst = res.iter().map(|v| v.abs()).fold(0.0, f64::max);
        assert!(worst < 2e-6, "sample {r}: residual {worst} (f h² = {})", 1.0 / 256.0);
    }
    let wrong = DatasetSpec { system: "heat1d".into(), resolution: Some(16), ..s.clone() };
    assert!(matches!(wrong.validate(), Err(Error::InvalidArgument { name: "resolution", .. })));
    let fourier = DatasetSpec { initial: InitialCondition::RandomFourier { modes: 2, amplitude: 1.0 }, ..s };
    assert!(matches!(fourier.validate(), Err(Error::InvalidArgument { name: "initial", .. })));
}

/// The loader tests' dataset, generated once per process: two tests run in parallel and a
/// second `dir` call would delete the directory under the first one's reader.
fn loader_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = dir("loader");
        generate(&spec(), &d, None, false).unwrap();
        d
    })
    .clone()
}

#[test]
fn loader_sees_every_sample_once_per_epoch_in_a_seeded_order() {
    let d = loader_dir();
    let src = DataFiles::open(&d).unwrap();
    let files: Vec<PathBuf> = src.files.iter().map(|f| f.0.clone()).collect();
    let loader = Loader::new(src.clone(), LoaderConfig { batch_size: 3, seed: 5, ..Default::default() }).unwrap();
    assert_eq!((loader.len(), loader.batches()), (7, 3));
    let read = |l: &Loader, e: u64| -> Vec<(usize, usize)> { l.epoch(e).flat_map(|b| b.unwrap().items).collect() };
    let e0 = read(&loader, 0);
    assert_eq!(e0.iter().map(|i| i.0).collect::<BTreeSet<_>>().len(), 7, "each sample exactly once: {e0:?}");
    assert_eq!(e0.len(), 7);
    assert_eq!(e0, read(&loader, 0), "same seed, same order");
    assert_ne!(e0, read(&loader, 1), "another epoch, another order");
    let other = Loader::new(src.clone(), LoaderConfig { batch_size: 3, seed: 6, ..Default::default() }).unwrap();
    assert_ne!(e0, read(&other, 0));
    // Values: each item equals its sample in the files (global index = shard offset + row).
    let whole: Vec<Vec<f32>> = files
        .iter()
        .flat_map(|f| {
            let s = SingleFile::read(f).unwrap();
            s.fields[0].data.chunks(6 * 64).map(|c| c.to_vec()).collect::<Vec<_>>()
        })
        .collect();
    for b in loader.epoch(0) {
        let b = b.unwrap();
        for (k, (i, _)) in b.items.iter().enumerate() {
            assert_eq!(&b.data[k * 384..(k + 1) * 384], &whole[*i][..]);
        }
        let device = physflow::device::cpu_f64().unwrap();
        assert_eq!(b.to_tensor::<3>(&device).unwrap().dims()[1..], [6, 64]);
        assert!(b.to_tensor::<2>(&device).is_err());
    }
    // From a list of files without a manifest: same samples.
    let plain = DataFiles::from_files(&files, "tensor").unwrap();
    assert_eq!((plain.len(), plain.sample_shape.clone()), (7, vec![6, 64]));
}

#[test]
fn loader_windows_normalisation_and_drop_last() {
    let d = loader_dir();
    let src = DataFiles::open(&d).unwrap();
    let st = src.stats.clone().unwrap();
    let cfg = LoaderConfig { batch_size: 4, window: Some(2), stride: 2, normalize: true, drop_last: true, shuffle: true, seed: 1, prefetch: 1 };
    let loader = Loader::new(src.clone(), cfg).unwrap();
    // Windows start at t = 0, 2, 4 of 6 times: 3 per sample, 21 items, 5 full batches.
    assert_eq!((loader.len(), loader.batches(), loader.item_shape().to_vec()), (21, 5, vec![2, 64]));
    let raw = DataFiles::from_files(&src.files.iter().map(|f| f.0.clone()).collect::<Vec<_>>(), "tensor").unwrap();
    let plain = Loader::new(raw, LoaderConfig { batch_size: 1, shuffle: false, ..Default::default() }).unwrap();
    let samples: Vec<Vec<f32>> = plain.epoch(0).map(|b| b.unwrap().data).collect();
    let mut seen = BTreeSet::new();
    let mut n = 0;
    for b in loader.epoch(3) {
        let b = b.unwrap();
        assert_eq!(b.shape, vec![4, 2, 64]);
        for (k, &(i, t0)) in b.items.iter().enumerate() {
            seen.insert((i, t0));
            for j in 0..128 {
                let want = (samples[i][t0 * 64 + j] - st.mean as f32) / st.std as f32;
                assert!((b.data[k * 128 + j] - want).abs() <= 1e-6 * (1.0 + want.abs()));
            }
        }
        n += 1;
    }
    assert_eq!((n, seen.len()), (5, 20), "drop_last keeps 20 of 21 windows, none twice");
    assert!(Loader::new(src.clone(), LoaderConfig { window: Some(7), ..Default::default() }).is_err());
    let no_stats = DataFiles { stats: None, ..src };
    assert!(matches!(Loader::new(no_stats, LoaderConfig { normalize: true, ..Default::default() }), Err(Error::InvalidArgument { name: "normalize", .. })));
}

/// A shard whose chunk data went bad after the source was opened (a disk failing
/// mid-run) gives an error batch, not data. The file holds only the field, so
/// the corrupted middle third lies in its Fletcher-32-checked chunks.
#[test]
fn loader_reports_a_corrupt_shard() {
    use physflow::io::h5::{DatasetOptions, H5Tree};
    let d = dir("corrupt");
    let f = d.join("only.h5");
    let mut tree = H5Tree::new();
    let vals: Vec<f32> = (0..5 * 32 * 32).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    tree.add_f32("tensor", &[5, 32, 32], vals, &DatasetOptions::samples()).unwrap();
    tree.write(&f).unwrap();
    let src = DataFiles::from_files(std::slice::from_ref(&f), "tensor").unwrap();
    let mut bytes = std::fs::read(&f).unwrap();
    let (a, b) = (bytes.len() / 3, 2 * bytes.len() / 3);
    for x in &mut bytes[a..b] {
        *x ^= 0xA5;
    }
    std::fs::write(&f, &bytes).unwrap();
    let loader = Loader::new(src, LoaderConfig { batch_size: 1, shuffle: false, ..Default::default() }).unwrap();
    let results: Vec<_> = loader.epoch(0).collect();
    assert!(results.iter().any(|r| r.is_err()), "a corrupt shard is an error, not data");
    assert!(results.last().unwrap().is_err(), "the epoch stops at the error");
}
