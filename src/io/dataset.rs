//! Sharded simulation datasets: trajectories of a `sim` system over sampled
//! initial states and parameters — or fields of a 2D field simulator
//! ([`crate::sim::fields`]: Navier–Stokes, Darcy) over sampled parameters and random
//! inputs — one HDF5 file per shard in PDEBench's single-file layout, joined by a JSON
//! manifest.
//!
//! Sample `i` draws its perturbations from its own random stream, seeded by
//! `(seed, i)`, so a dataset does not depend on how it is sharded or in which order
//! the shards run. Shards are written atomically and checked on restart, so an
//! interrupted [`generate`] resumes by skipping finished shards and ends with the
//! same files as an uninterrupted run. Shards are independent jobs: on a cluster,
//! run one [`generate_shard`] per array task and [`generate`] once at the end to
//! write the complete manifest.
//!
//! A shard file holds (`n` samples, `T` times, grid `X(, Y)` or state dimension `D`):
//! - the fields: `tensor [n, T, X(, Y)]` for one channel, one dataset per channel
//!   (named in the root attribute `fields`) otherwise, or `tensor [n, T, D]` for
//!   systems without a grid; `f32`, one sample per chunk, deflate + shuffle + Fletcher-32;
//! - `x-coordinate`, `y-coordinate`, `t-coordinate [T]` (`f32`, as PDEBench);
//! - `params [n, P]` and `initial_state [n, D]` (`f64`, exact), `sample_index [n]`;
//! - field simulators instead: `tensor [n, T, X, Y]` (Navier–Stokes vorticity), or
//!   `tensor [n, 1, X, Y]` and `nu [n, X, Y]` (Darcy pressure and permeability, PDEBench's
//!   names; steady, so `t_end` and `n_times` do not apply and there is no `t-coordinate`),
//!   `params`, `sample_index`, and `sample_seed [n]` (the seed of each sample's random
//!   initial vorticity or permeability, which reproduces it);
//! - root attributes, the schema: `physflow_schema`, `generator`, `system`,
//!   `param_names`, `default_params`, `channels`, per axis `boundary_x`,
//!   `length_x`, `points_x`, `seed`, `shard_index`, `shard_count`, `first_sample`,
//!   `t_end`, `method`, `rtol`, `atol`, and `spec` (the whole [`DatasetSpec`] as
//!   JSON). When parameters do not vary, each is also a scalar attribute named
//!   after it, as PDEBench stores `beta` or `Nu`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{Array2, Array3};
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::h5::{Attr, Compression, DatasetOptions, H5File, H5Tree};
use crate::sim::fields::{self as field_sims, FieldSimulator};
use crate::sim::systems::{self, ic, Grid1d};
use crate::sim::{ensemble, SimOptions, System};
use crate::train::{progress, write_json, Progress};
use crate::{Error, Result};

/// The schema tag in every file physflow writes.
pub const SCHEMA: &str = "physflow-dataset/1";
/// The manifest's `format` tag.
pub const MANIFEST_FORMAT: &str = "physflow-shards";

/// How initial states vary across samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InitialCondition {
    /// `y₀ (1 + s ξ)`, `ξ ~ N(0, I)` per component, `s = y0_spread`; sample 0 keeps the system's own.
    Scaled,
    /// 1D fields only: `u₀(x) = Σ_{k=1..modes} a_k sin(2πkx/L + φ_k)`, `a_k ~ U(−A, A)/k`,
    /// `φ_k ~ U(0, 2π)` (PDEBench's sums of sine waves), `A = amplitude`.
    RandomFourier {
        /// Number of sine modes.
        modes: usize,
        /// Amplitude bound `A`.
        amplitude: f64,
    },
}

/// What to simulate and how to shard it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatasetSpec {
    /// A [`systems::by_name`] name.
    pub system: String,
    /// Total number of trajectories `N`.
    pub samples: usize,
    /// Number of shard files `K` (shard `k` holds samples `[kN/K, (k+1)N/K)`).
    pub shards: usize,
    /// Final time; outputs are uniform on `[0, t_end]`.
    pub t_end: f64,
    /// Number of output times `T`.
    pub n_times: usize,
    /// Relative spread of initial states ([`InitialCondition::Scaled`]).
    pub y0_spread: f64,
    /// Parameters `p exp(s ξ)`; sample 0 keeps the system's own.
    pub param_spread: f64,
    /// How initial states vary.
    pub initial: InitialCondition,
    /// Seed of every sample's perturbations.
    pub seed: u64,
    /// Compression of the fields.
    pub compression: Compression,
    /// Integrator and tolerances (diffsol systems; field simulators have their own scheme).
    pub sim: SimOptions,
    /// Grid points per side of a field simulator (`None`: its default, 64); only for them.
    pub resolution: Option<usize>,
}

/// What a dataset's samples come from.
pub enum Generator {
    /// A diffsol system, integrated by [`ensemble`].
    System(Box<dyn System>),
    /// A field simulator with its own scheme and random inputs.
    Field(Box<dyn FieldSimulator>),
}

impl Default for DatasetSpec {
    fn default() -> Self {
        DatasetSpec {
            system: "heat1d".into(),
            samples: 64,
            shards: 4,
            t_end: 1.0,
            n_times: 101,
            y0_spread: 0.1,
            param_spread: 0.0,
            initial: InitialCondition::Scaled,
            seed: 0,
            compression: Compression::Deflate(4),
            sim: SimOptions::default(),
            resolution: None,
        }
    }
}

impl DatasetSpec {
    /// Checks the counts and that the system (or field simulator) and the initial condition
    /// fit together.
    pub fn validate(&self) -> Result<Generator> {
        if self.samples == 0 || self.shards == 0 || self.shards > self.samples {
            return Err(Error::invalid("shards", format!("need 1 ≤ shards ≤ samples, got {} shards for {} samples", self.shards, self.samples)));
        }
        if self.n_times < 2 || !(self.t_end > 0.0 && self.t_end.is_finite()) {
            return Err(Error::invalid(
                "n_times",
                format!("need at least two output times on [0, t_end] with t_end > 0, got {} times, t_end = {}", self.n_times, self.t_end),
            ));
        }
        if !(self.y0_spread >= 0.0 && self.param_spread >= 0.0) {
            return Err(Error::invalid("y0_spread", "spreads must be non-negative"));
        }
        if let Some(f) = field_sims::by_name(&self.system, self.resolution)? {
            if self.initial != InitialCondition::Scaled {
                return Err(Error::invalid("initial", format!("`{}` draws its own random inputs; only the default initial condition applies", self.system)));
            }
            return Ok(Generator::Field(f));
        }
        if self.resolution.is_some() {
            return Err(Error::invalid(
                "resolution",
                format!("only the field simulators ({}) take a resolution; `{}` has its own grid", field_sims::NAMES.join(", "), self.system),
            ));
        }
        let sys = systems::by_name(&self.system)?;
        if let InitialCondition::RandomFourier { modes, amplitude } = &self.initial {
            let ok = sys.field().is_some_and(|f| f.channels.len() == 1 && f.axes.len() == 1);
            if !ok {
                return Err(Error::invalid("initial", format!("random Fourier initial states need a 1D single-channel field; `{}` is not one", self.system)));
            }
            if *modes == 0 || !(*amplitude > 0.0) {
                return Err(Error::invalid("initial", "random Fourier needs modes ≥ 1 and amplitude > 0"));
            }
        }
        Ok(Generator::System(sys))
    }

    /// Samples of shard `k`: `[first, first + count)`.
    pub fn shard_range(&self, k: usize) -> (usize, usize) {
        let first = k * self.samples / self.shards;
        (first, (k + 1) * self.samples / self.shards - first)
    }

    /// Output times.
    pub fn times(&self) -> Vec<f64> {
        (0..self.n_times).map(|k| self.t_end * k as f64 / (self.n_times - 1) as f64).collect()
    }
}

/// The random stream of sample `i`: independent of sharding and order.
fn sample_rng(seed: u64, i: usize) -> rand::rngs::StdRng {
    // SplitMix64 of (seed, i): distinct, well-mixed seeds for neighbouring samples.
    let mut z = seed ^ (i as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    rand::rngs::StdRng::seed_from_u64(z ^ (z >> 31))
}

/// The stream of sample `i` after its parameters `p₀ exp(s ξ)` are drawn into `out` (sample 0
/// keeps `p₀`).
fn spread_params(spec: &DatasetSpec, i: usize, p0: &[f64], mut out: ndarray::ArrayViewMut1<'_, f64>) -> rand::rngs::StdRng {
    let mut rng = sample_rng(spec.seed, i);
    for (j, p) in p0.iter().enumerate() {
        let xi: f64 = StandardNormal.sample(&mut rng);
        out[j] = if i == 0 { *p } else { p * (spec.param_spread * xi).exp() };
    }
    rng
}

/// Parameters `[count, P]` and initial states `[count, D]` of samples `[first, first + count)`.
///
/// # Errors
/// `InvalidArgument` for random Fourier initial states on a system without a 1D field.
pub fn sample_inputs(sys: &dyn System, spec: &DatasetSpec, first: usize, count: usize) -> Result<(Array2<f64>, Array2<f64>)> {
    let (p0, y0) = (sys.params(), sys.initial_state());
    let mut params = Array2::zeros((count, p0.len()));
    let mut y0s = Array2::zeros((count, y0.len()));
    let grid: Option<Grid1d> = sys.field().map(|f| f.axes[0].1);
    for r in 0..count {
        let i = first + r;
        let mut rng = spread_params(spec, i, &p0, params.row_mut(r));
        match &spec.initial {
            InitialCondition::Scaled => {
                for (j, y) in y0.iter().enumerate() {
                    let xi: f64 = StandardNormal.sample(&mut rng);
                    y0s[[r, j]] = if i == 0 { *y } else { y * (1.0 + spec.y0_spread * xi) };
                }
            }
            InitialCondition::RandomFourier { modes, amplitude } => {
                let grid =
                    grid.ok_or_else(|| Error::invalid("initial", format!("random Fourier initial states need a 1D field; `{}` has none", sys.name())))?;
                let u = ic::random_fourier(&grid, rng.random::<u64>(), *modes, *amplitude);
                y0s.row_mut(r).assign(&ndarray::Array1::from(u));
            }
        }
    }
    Ok((params, y0s))
}

/// Parameters `[count, P]` (as [`sample_inputs`]) and the random-input seeds of samples
/// `[first, first + count)` of a field simulator.
pub fn field_inputs(sim: &dyn FieldSimulator, spec: &DatasetSpec, first: usize, count: usize) -> (Array2<f64>, Vec<u64>) {
    let p0 = sim.params();
    let mut params = Array2::zeros((count, p0.len()));
    let mut seeds = Vec::with_capacity(count);
    for r in 0..count {
        let mut rng = spread_params(spec, first + r, &p0, params.row_mut(r));
        seeds.push(rng.random::<u64>());
    }
    (params, seeds)
}

/// `dirichlet left=0 right=0`, `neumann left=0 right=0` or `periodic`.
fn boundary_text(g: &Grid1d) -> String {
    use crate::sim::systems::Boundary;
    match g.boundary {
        Boundary::Dirichlet { left, right } => format!("dirichlet left={left} right={right}"),
        Boundary::Neumann { left, right } => format!("neumann left={left} right={right}"),
        Boundary::Periodic => "periodic".into(),
    }
}

/// The field datasets of a system's states `[n, T, D]`: names and `[n, T, X(, Y)]` (or `[n, T, D]`).
fn fields_of(sys: &dyn System, states: &Array3<f64>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let (n, t, d) = states.dim();
    let flat = states.as_slice().expect("ensemble output is contiguous");
    match sys.field() {
        None => vec![("tensor".into(), vec![n, t, d], flat.iter().map(|&v| v as f32).collect())],
        Some(f) => {
            let grid = f.grid_shape();
            let per: usize = grid.iter().product();
            let mut shape = vec![n, t];
            shape.extend(&grid);
            field_names(sys)
                .into_iter()
                .enumerate()
                .map(|(c, name)| {
                    let mut data = Vec::with_capacity(n * t * per);
                    for row in flat.chunks_exact(d) {
                        data.extend(row[c * per..(c + 1) * per].iter().map(|&v| v as f32));
                    }
                    (name, shape.clone(), data)
                })
                .collect()
        }
    }
}

/// The names of the field datasets a system's shards hold.
pub fn field_names(sys: &dyn System) -> Vec<String> {
    match sys.field() {
        Some(f) if f.channels.len() > 1 => f.channels.clone(),
        _ => vec!["tensor".into()],
    }
}

impl Generator {
    /// The field datasets of a shard, the main one first.
    pub fn datasets(&self) -> Vec<String> {
        match self {
            Generator::System(s) => field_names(s.as_ref()),
            Generator::Field(f) => f.datasets(2).into_iter().map(|d| d.name).collect(),
        }
    }

    /// Shape of one sample of the main dataset.
    pub fn sample_shape(&self, n_times: usize) -> Vec<usize> {
        match self {
            Generator::System(sys) => {
                let mut shape = vec![n_times];
                match sys.field() {
                    Some(f) => shape.extend(f.grid_shape()),
                    None => shape.push(sys.dim()),
                }
                shape
            }
            Generator::Field(f) => f.datasets(n_times).swap_remove(0).shape,
        }
    }
}

/// Simulates shard `k` of `spec` and writes it to `dir/shard-{k:05}.h5` atomically.
pub fn generate_shard(spec: &DatasetSpec, k: usize, dir: &Path) -> Result<PathBuf> {
    let gen = spec.validate()?;
    if k >= spec.shards {
        return Err(Error::invalid("shard", format!("shard {k} does not exist (shards: {})", spec.shards)));
    }
    match &gen {
        Generator::System(sys) => write_shard(spec, sys.as_ref(), k, dir),
        Generator::Field(f) => write_field_shard(spec, f.as_ref(), k, dir, &Progress::hidden()),
    }
}

/// The attributes every shard carries: schema, generator, seed and shard bookkeeping, the spec.
fn common_attrs(tree: &mut H5Tree, spec: &DatasetSpec, name: &str, param_names: Vec<String>, params: Vec<f64>, k: usize, first: usize) -> Result<()> {
    let spec_json = serde_json::to_string(spec).map_err(|e| Error::invalid("spec", e.to_string()))?;
    let attrs = [
        ("physflow_schema", Attr::Str(SCHEMA.into())),
        ("generator", Attr::Str(format!("physflow {}", env!("CARGO_PKG_VERSION")))),
        ("system", Attr::Str(name.into())),
        ("param_names", Attr::Strs(param_names.clone())),
        ("default_params", Attr::Floats(params.clone())),
        ("seed", Attr::Int(spec.seed as i64)),
        ("shard_index", Attr::Int(k as i64)),
        ("shard_count", Attr::Int(spec.shards as i64)),
        ("first_sample", Attr::Int(first as i64)),
        ("spec", Attr::Str(spec_json)),
    ];
    for (key, v) in attrs {
        tree.set_attr("/", key, v)?;
    }
    if spec.param_spread == 0.0 {
        for (pname, v) in param_names.iter().zip(params) {
            if !tree.root.attrs.contains_key(pname) {
                tree.set_attr("/", pname, Attr::Float(v))?;
            }
        }
    }
    Ok(())
}

/// Simulates shard `k` of a field simulator (samples in parallel, rayon) and writes it.
fn write_field_shard(spec: &DatasetSpec, sim: &dyn FieldSimulator, k: usize, dir: &Path, bar: &Progress) -> Result<PathBuf> {
    use rayon::prelude::*;
    let (first, count) = spec.shard_range(k);
    let (params, seeds) = field_inputs(sim, spec, first, count);
    for r in 0..count {
        sim.validate(&params.row(r).to_vec())?;
    }
    let times = if sim.steady() { vec![0.0] } else { spec.times() };
    let outs: Vec<Vec<Vec<f64>>> = (0..count)
        .into_par_iter()
        .map(|r| {
            let out = sim.simulate(&params.row(r).to_vec(), seeds[r], &times);
            bar.inc(1);
            out
        })
        .collect::<Result<_>>()?;
    let opts = DatasetOptions { chunks: None, compression: spec.compression, shuffle: spec.compression != Compression::None, fletcher32: true };
    let mut tree = H5Tree::new();
    for (d, ds) in sim.datasets(times.len()).into_iter().enumerate() {
        let mut shape = vec![count];
        shape.extend(&ds.shape);
        let data: Vec<f32> = outs.iter().flat_map(|o| o[d].iter().map(|&v| v as f32)).collect();
        tree.add_f32(&ds.name, &shape, data, &opts)?;
    }
    for (axis, coords, boundary) in sim.axes() {
        let length = if coords.len() > 1 { (coords[1] - coords[0]) * coords.len() as f64 } else { 0.0 };
        tree.add_f32(&format!("{axis}-coordinate"), &[coords.len()], coords.iter().map(|&v| v as f32).collect(), &checked(&[coords.len()]))?;
        tree.set_attr("/", &format!("boundary_{axis}"), Attr::Str(boundary))?;
        tree.set_attr("/", &format!("length_{axis}"), Attr::Float(length))?;
        tree.set_attr("/", &format!("points_{axis}"), Attr::Int(coords.len() as i64))?;
    }
    if !sim.steady() {
        tree.add_f32("t-coordinate", &[times.len()], times.iter().map(|&v| v as f32).collect(), &checked(&[times.len()]))?;
        tree.set_attr("/", "t_end", Attr::Float(spec.t_end))?;
    }
    let p = params.ncols();
    tree.add_f64("params", &[count, p], params.into_raw_vec_and_offset().0, &checked(&[count, p]))?;
    tree.add("sample_index", &[count], super::h5::Data::I64((first..first + count).map(|i| i as i64).collect()), &checked(&[count]))?;
    // u64 seeds stored bit for bit in i64.
    tree.add("sample_seed", &[count], super::h5::Data::I64(seeds.iter().map(|&s| s as i64).collect()), &checked(&[count]))?;
    common_attrs(&mut tree, spec, &sim.name(), sim.param_names(), sim.params(), k, first)?;
    let path = dir.join(shard_file(k));
    tree.write(&path)?;
    Ok(path)
}

/// [`generate_shard`] for a validated spec and its system.
fn write_shard(spec: &DatasetSpec, sys: &dyn System, k: usize, dir: &Path) -> Result<PathBuf> {
    let (first, count) = spec.shard_range(k);
    let (params, y0s) = sample_inputs(sys, spec, first, count)?;
    let times = spec.times();
    let states = ensemble(sys, Some(&params), Some(&y0s), &times, &spec.sim, false)?;
    let opts = DatasetOptions { chunks: None, compression: spec.compression, shuffle: spec.compression != Compression::None, fletcher32: true };
    let mut tree = H5Tree::new();
    let fields = fields_of(sys, &states);
    for (name, shape, data) in &fields {
        tree.add_f32(name, shape, data.clone(), &opts)?;
    }
    if let Some(f) = sys.field() {
        for (axis, g) in &f.axes {
            tree.add_f32(&format!("{axis}-coordinate"), &[g.n], g.points().iter().map(|&v| v as f32).collect(), &checked(&[g.n]))?;
            tree.set_attr("/", &format!("boundary_{axis}"), Attr::Str(boundary_text(g)))?;
            tree.set_attr("/", &format!("length_{axis}"), Attr::Float(g.length))?;
            tree.set_attr("/", &format!("points_{axis}"), Attr::Int(g.n as i64))?;
        }
        tree.set_attr("/", "channels", Attr::Strs(f.channels.clone()))?;
        if f.channels.len() > 1 {
            tree.set_attr("/", "fields", Attr::Strs(f.channels.clone()))?;
        }
    }
    tree.add_f32("t-coordinate", &[times.len()], times.iter().map(|&v| v as f32).collect(), &checked(&[times.len()]))?;
    let p = params.ncols();
    tree.add_f64("params", &[count, p], params.into_raw_vec_and_offset().0, &checked(&[count, p]))?;
    let d = y0s.ncols();
    tree.add_f64("initial_state", &[count, d], y0s.into_raw_vec_and_offset().0, &checked(&[count, d]))?;
    tree.add("sample_index", &[count], super::h5::Data::I64((first..first + count).map(|i| i as i64).collect()), &checked(&[count]))?;
    let attrs = [
        ("t_end", Attr::Float(spec.t_end)),
        ("method", Attr::Str(format!("{:?}", spec.sim.method).to_lowercase())),
        ("rtol", Attr::Float(spec.sim.rtol)),
        ("atol", Attr::Float(spec.sim.atol)),
    ];
    for (key, v) in attrs {
        tree.set_attr("/", key, v)?;
    }
    common_attrs(&mut tree, spec, &sys.name(), sys.param_names(), sys.params(), k, first)?;
    let path = dir.join(shard_file(k));
    tree.write(&path)?;
    Ok(path)
}

/// `shard-00007.h5`.
pub fn shard_file(k: usize) -> String {
    format!("shard-{k:05}.h5")
}

/// Summary statistics of one dataset over all samples (f64 accumulation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Mean of every value.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Number of values.
    pub count: u64,
}

/// One shard in a [`Manifest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// Shard number `k`.
    pub index: usize,
    /// File name relative to the manifest.
    pub file: String,
    /// Samples in the shard.
    pub samples: usize,
    /// Global index of its first sample.
    pub first_sample: usize,
    /// The dataset seed (sample `i` uses the stream of `(seed, i)`).
    pub seed: u64,
}

/// `manifest.json` of a sharded dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// The main field dataset in every shard.
    pub dataset: String,
    /// Every field dataset.
    #[serde(default)]
    pub datasets: Vec<String>,
    /// Shape of one sample of `dataset` (without the sample axis).
    pub sample_shape: Vec<usize>,
    /// Sum of the shards' samples.
    pub total_samples: usize,
    /// Number of shards.
    pub shard_count: usize,
    /// The shards, by index.
    pub shards: Vec<ShardEntry>,
    /// Per-dataset statistics, once every shard exists.
    pub stats: Option<BTreeMap<String, Stats>>,
    /// Who wrote it.
    pub generator: String,
    /// How it was made, when physflow made it.
    #[serde(default)]
    pub spec: Option<DatasetSpec>,
    /// Whether every shard was written.
    #[serde(default = "yes")]
    pub complete: bool,
}

fn yes() -> bool {
    true
}

impl Manifest {
    /// Reads `dir/manifest.json` and checks it against itself and the shard files
    /// on disk (existence; the samples of each shard's `dataset` when `check_files`).
    pub fn open(dir: &Path, check_files: bool) -> Result<Manifest> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let merr = |reason: String| Error::Manifest { manifest: path.display().to_string(), reason };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| merr(format!("not a physflow manifest: {e}")))?;
        if m.format != MANIFEST_FORMAT {
            return Err(merr(format!("format is `{}`, expected `{MANIFEST_FORMAT}`", m.format)));
        }
        if m.shards.len() != m.shard_count {
            return Err(merr(format!("lists {} shards but says shard_count = {}", m.shards.len(), m.shard_count)));
        }
        let sum: usize = m.shards.iter().map(|s| s.samples).sum();
        if sum != m.total_samples {
            return Err(merr(format!("shards hold {sum} samples but total_samples = {}", m.total_samples)));
        }
        if check_files {
            for s in &m.shards {
                let f = dir.join(&s.file);
                if !f.exists() {
                    return Err(merr(format!("shard {} file `{}` is missing", s.index, s.file)));
                }
                let info = H5File::open(&f)?.expect(&m.dataset, Some(m.sample_shape.len() + 1), "[samples, ...sample_shape]")?;
                if info.shape[0] != s.samples || info.shape[1..] != m.sample_shape[..] {
                    return Err(merr(format!(
                        "shard {} `{}` holds {:?} in `{}`, the manifest says {} samples of {:?}",
                        s.index, s.file, info.shape, m.dataset, s.samples, m.sample_shape
                    )));
                }
            }
        }
        Ok(m)
    }
}

/// What [`generate`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateReport {
    /// Shards simulated in this call.
    pub written: Vec<usize>,
    /// Shards found finished and skipped.
    pub skipped: Vec<usize>,
    /// The manifest as written.
    pub manifest: Manifest,
}

/// Options of the small datasets of a shard (coordinates, parameters, indices): one chunk
/// holding the whole dataset, with a Fletcher-32 checksum, so that every dataset physflow
/// writes is checked when read (and by the resume's verification). Empty datasets stay
/// contiguous (a chunk cannot have a zero extent).
fn checked(shape: &[usize]) -> DatasetOptions {
    if shape.is_empty() || shape.contains(&0) {
        return DatasetOptions::default();
    }
    DatasetOptions { chunks: Some(shape.to_vec()), fletcher32: true, ..DatasetOptions::default() }
}

/// Whether `path` is a finished shard `k` of `spec`: it opens (not shorter than its superblock
/// says), has the same spec and the full extent, and every numeric dataset reads back with its
/// Fletcher-32 checksums verified. A shard that fails any of these is simulated again.
fn shard_done(path: &Path, spec_json: &str, k: usize, count: usize, dataset: &str) -> bool {
    let Ok(f) = H5File::open(path) else { return false };
    let same = matches!(f.attr("/", "spec"), Ok(Attr::Str(s)) if s == spec_json) && matches!(f.attr("/", "shard_index"), Ok(Attr::Int(i)) if i == k as i64);
    if !(same && f.info(dataset).is_ok_and(|i| i.shape.first() == Some(&count))) {
        return false;
    }
    let Ok(tree) = f.tree() else { return false };
    tree.iter().all(|node| match node {
        crate::io::h5::Node::Dataset { info, .. } if info.dtype.is_numeric() => f.read_f32(&info.path).is_ok(),
        _ => true,
    })
}

fn stats_of(dir: &Path, m: &Manifest) -> Result<BTreeMap<String, Stats>> {
    let mut out = BTreeMap::new();
    for name in &m.datasets {
        let (mut sum, mut sq, mut min, mut max, mut count) = (0.0f64, 0.0f64, f64::INFINITY, f64::NEG_INFINITY, 0u64);
        for s in &m.shards {
            let f = H5File::open(&dir.join(&s.file))?;
            for r in 0..s.samples {
                let (_, v) = f.read_f32_rows(name, r, 1)?;
                for &x in &v {
                    let x = f64::from(x);
                    sum += x;
                    sq += x * x;
                    min = min.min(x);
                    max = max.max(x);
                }
                count += v.len() as u64;
            }
        }
        let mean = sum / count as f64;
        let std = (sq / count as f64 - mean * mean).max(0.0).sqrt();
        out.insert(name.clone(), Stats { mean, std, min, max, count });
    }
    Ok(out)
}

/// Generates (or resumes) the sharded dataset of `spec` under `dir`: writes the
/// manifest first (incomplete), each missing shard atomically, then the complete
/// manifest with statistics. `max_new_shards` stops after that many new shards
/// (a partial run, as an interrupted job would leave). A manifest from a different
/// spec is an error, never overwritten.
pub fn generate(spec: &DatasetSpec, dir: &Path, max_new_shards: Option<usize>, show_progress: bool) -> Result<GenerateReport> {
    let gen = spec.validate()?;
    let spec_json = serde_json::to_string(spec).map_err(|e| Error::invalid("spec", e.to_string()))?;
    let mpath = dir.join("manifest.json");
    if mpath.exists() {
        let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(&mpath, e))?;
        let old: Manifest = serde_json::from_str(&text).map_err(|e| Error::Manifest { manifest: mpath.display().to_string(), reason: e.to_string() })?;
        if old.spec.as_ref() != Some(spec) {
            let was = old.spec.map(|s| serde_json::to_string(&s).unwrap_or_default()).unwrap_or_else(|| "no spec".into());
            return Err(Error::Manifest {
                manifest: mpath.display().to_string(),
                reason: format!("the directory holds a dataset made with a different spec ({was}); use another directory or remove it"),
            });
        }
    }
    let datasets = gen.datasets();
    let sample_shape = gen.sample_shape(spec.n_times);
    let shards: Vec<ShardEntry> = (0..spec.shards)
        .map(|k| {
            let (first, samples) = spec.shard_range(k);
            ShardEntry { index: k, file: shard_file(k), samples, first_sample: first, seed: spec.seed }
        })
        .collect();
    let mut manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        version: 1,
        dataset: datasets[0].clone(),
        datasets,
        sample_shape,
        total_samples: spec.samples,
        shard_count: spec.shards,
        shards,
        stats: None,
        generator: format!("physflow {}", env!("CARGO_PKG_VERSION")),
        spec: Some(spec.clone()),
        complete: false,
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_json(&mpath, &manifest)?;
    let bar = progress(spec.samples as u64, &format!("{} shards", spec.shards), !show_progress);
    let (mut written, mut skipped) = (Vec::new(), Vec::new());
    for k in 0..spec.shards {
        let (_, count) = spec.shard_range(k);
        if shard_done(&dir.join(shard_file(k)), &spec_json, k, count, &manifest.dataset) {
            skipped.push(k);
        } else {
            if max_new_shards.is_some_and(|m| written.len() >= m) {
                bar.abandon();
                return Ok(GenerateReport { written, skipped, manifest });
            }
            match &gen {
                Generator::System(sys) => {
                    write_shard(spec, sys.as_ref(), k, dir)?;
                    bar.inc(count as u64);
                }
                Generator::Field(f) => {
                    write_field_shard(spec, f.as_ref(), k, dir, &bar)?;
                }
            }
            written.push(k);
            continue;
        }
        bar.inc(count as u64);
    }
    bar.finish_and_clear();
    manifest.stats = Some(stats_of(dir, &manifest)?);
    manifest.complete = true;
    write_json(&mpath, &manifest)?;
    Ok(GenerateReport { written, skipped, manifest })
}
