//! Streaming batches from HDF5 shards into training.
//!
//! A [`Loader`] reads samples (or windows of consecutive times of a sample) from
//! one or many shard files, in an order shuffled across all shards with a seed,
//! normalises them with the dataset's stored statistics, and hands out batches
//! (`[batch, ...item shape]`, `f32`) read ahead on another thread. Memory is
//! bounded by `prefetch` batches plus one index per item, whatever the dataset's
//! size: samples are read one chunk at a time, never the whole file.
//!
//! ```no_run
//! use physflow::io::loader::{Loader, LoaderConfig, DataFiles};
//! let source = DataFiles::open(std::path::Path::new("out/simulate/heat1d")).unwrap();
//! let loader = Loader::new(source, LoaderConfig { batch_size: 64, ..Default::default() }).unwrap();
//! let device = physflow::device::cpu_f64().unwrap();
//! for batch in loader.epoch(0) {
//!     let batch = batch.unwrap();
//!     let x = batch.to_tensor::<3>(&device).unwrap(); // [64, T, X]
//!     # let _ = x;
//! }
//! ```

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::dataset::{Manifest, Stats};
use super::h5::H5File;
use crate::{Error, Result};

/// How batches are made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderConfig {
    /// Items per batch.
    pub batch_size: usize,
    /// Shuffle items across all shards each epoch (seeded by `seed` and the epoch).
    pub shuffle: bool,
    /// Seed of the order.
    pub seed: u64,
    /// Items are windows of this many consecutive times of a sample (axis 1 of
    /// the dataset) instead of whole samples.
    pub window: Option<usize>,
    /// Step between window starts.
    pub stride: usize,
    /// Apply `(v − mean) / std` with the source's statistics.
    pub normalize: bool,
    /// Batches read ahead.
    pub prefetch: usize,
    /// Drop a last, smaller batch.
    pub drop_last: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig { batch_size: 32, shuffle: true, seed: 0, window: None, stride: 1, normalize: false, prefetch: 4, drop_last: false }
    }
}

/// The files and dataset a [`Loader`] reads.
#[derive(Clone, Debug, PartialEq)]
pub struct DataFiles {
    /// Shard files with their sample counts, in order.
    pub files: Vec<(PathBuf, usize)>,
    /// The dataset read from every file.
    pub dataset: String,
    /// Shape of one sample (without the sample axis).
    pub sample_shape: Vec<usize>,
    /// Statistics for normalisation, when known.
    pub stats: Option<Stats>,
}

impl DataFiles {
    /// A sharded dataset directory with a `manifest.json` (checked against the shard files).
    pub fn open(dir: &Path) -> Result<DataFiles> {
        let m = Manifest::open(dir, true)?;
        let stats = m.stats.as_ref().and_then(|s| s.get(&m.dataset).cloned());
        Ok(DataFiles { files: m.shards.iter().map(|s| (dir.join(&s.file), s.samples)).collect(), dataset: m.dataset, sample_shape: m.sample_shape, stats })
    }

    /// Any HDF5 files holding `dataset` with samples along axis 0 and one sample shape.
    pub fn from_files(files: &[PathBuf], dataset: &str) -> Result<DataFiles> {
        let mut out = Vec::new();
        let mut sample_shape: Option<Vec<usize>> = None;
        for f in files {
            let info = H5File::open(f)?.expect(dataset, None, "")?;
            if info.shape.is_empty() {
                return Err(Error::DatasetMismatch {
                    file: f.display().to_string(),
                    dataset: dataset.into(),
                    expected: "samples along axis 0".into(),
                    got: "a scalar".into(),
                });
            }
            match &sample_shape {
                Some(s) if s[..] != info.shape[1..] => {
                    return Err(Error::DatasetMismatch {
                        file: f.display().to_string(),
                        dataset: dataset.into(),
                        expected: format!("samples of shape {s:?}"),
                        got: format!("{:?}", &info.shape[1..]),
                    })
                }
                _ => sample_shape = Some(info.shape[1..].to_vec()),
            }
            out.push((f.clone(), info.shape[0]));
        }
        let sample_shape = sample_shape.ok_or_else(|| Error::invalid("files", "no files given"))?;
        Ok(DataFiles { files: out, dataset: dataset.into(), sample_shape, stats: None })
    }

    /// Total samples.
    pub fn len(&self) -> usize {
        self.files.iter().map(|f| f.1).sum()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(file, row)` of global sample `i`.
    fn locate(&self, mut i: usize) -> (usize, usize) {
        for (k, (_, n)) in self.files.iter().enumerate() {
            if i < *n {
                return (k, i);
            }
            i -= n;
        }
        unreachable!("sample index checked against len()")
    }
}

/// One batch on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostBatch {
    /// `[batch, ...item shape]`.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
    /// `(sample, first time)` of each item (first time 0 without windows).
    pub items: Vec<(usize, usize)>,
}

impl HostBatch {
    /// The batch as a burn tensor of rank `D` (which must be `1 + item rank`).
    pub fn to_tensor<const D: usize>(&self, device: &Device) -> Result<Tensor<D>> {
        if self.shape.len() != D {
            return Err(Error::Shape { what: format!("batch as a rank-{D} tensor"), expected: vec![D], got: vec![self.shape.len()] });
        }
        Ok(Tensor::from_data(TensorData::new(self.data.clone(), self.shape.clone()), device))
    }
}

/// Batches over a [`DataFiles`].
#[derive(Clone, Debug)]
pub struct Loader {
    source: Arc<DataFiles>,
    cfg: LoaderConfig,
    item_shape: Vec<usize>,
}

impl Loader {
    /// Checks the config against the source.
    pub fn new(source: DataFiles, cfg: LoaderConfig) -> Result<Loader> {
        if cfg.batch_size == 0 || cfg.prefetch == 0 || cfg.stride == 0 {
            return Err(Error::invalid("batch_size", "batch_size, prefetch and stride must be ≥ 1"));
        }
        let mut item_shape = source.sample_shape.clone();
        if let Some(w) = cfg.window {
            if item_shape.is_empty() || w == 0 || w > item_shape[0] {
                return Err(Error::invalid("window", format!("window {w} does not fit samples of shape {:?} (time is the first axis)", source.sample_shape)));
            }
            item_shape[0] = w;
        }
        if cfg.normalize && !source.stats.as_ref().is_some_and(|s| s.std > 0.0) {
            return Err(Error::invalid("normalize", "the source has no statistics with std > 0 (a complete manifest stores them)"));
        }
        Ok(Loader { source: Arc::new(source), cfg, item_shape })
    }

    /// Shape of one item.
    pub fn item_shape(&self) -> &[usize] {
        &self.item_shape
    }

    /// Window starts per sample (1 without windows).
    fn starts(&self) -> usize {
        match self.cfg.window {
            None => 1,
            Some(w) => (self.source.sample_shape[0] - w) / self.cfg.stride + 1,
        }
    }

    /// Items per epoch.
    pub fn len(&self) -> usize {
        self.source.len() * self.starts()
    }

    /// Whether an epoch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batches per epoch.
    pub fn batches(&self) -> usize {
        let n = self.len();
        if self.cfg.drop_last {
            n / self.cfg.batch_size
        } else {
            n.div_ceil(self.cfg.batch_size)
        }
    }

    /// The items of epoch `epoch` in order: `(sample, first time)`. Every item appears once.
    pub fn order(&self, epoch: u64) -> Vec<(usize, usize)> {
        let per = self.starts();
        let mut ids: Vec<usize> = (0..self.len()).collect();
        if self.cfg.shuffle {
            let mut rng = rand::rngs::StdRng::seed_from_u64(self.cfg.seed.wrapping_add(epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
            ids.shuffle(&mut rng);
        }
        ids.into_iter().map(|id| (id / per, (id % per) * self.cfg.stride)).collect()
    }

    /// Epoch `epoch` as an iterator of batches, read on a background thread up to
    /// `prefetch` batches ahead. Dropping the iterator stops the thread.
    pub fn epoch(&self, epoch: u64) -> Batches {
        let mut order = self.order(epoch);
        if self.cfg.drop_last {
            order.truncate(order.len() / self.cfg.batch_size * self.cfg.batch_size);
        }
        let (tx, rx) = sync_channel(self.cfg.prefetch);
        let (source, cfg, item_shape) = (self.source.clone(), self.cfg.clone(), self.item_shape.clone());
        let handle = std::thread::spawn(move || {
            let mut files: Vec<Option<H5File>> = (0..source.files.len()).map(|_| None).collect();
            for chunk in order.chunks(cfg.batch_size) {
                let batch = read_batch(&source, &cfg, &item_shape, &mut files, chunk);
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return;
                }
            }
        });
        Batches { rx, _handle: handle }
    }
}

fn read_batch(source: &DataFiles, cfg: &LoaderConfig, item_shape: &[usize], files: &mut [Option<H5File>], items: &[(usize, usize)]) -> Result<HostBatch> {
    let per_item: usize = item_shape.iter().product();
    let per_time: usize = source.sample_shape.iter().skip(1).product();
    let mut data = Vec::with_capacity(items.len() * per_item);
    for &(sample, t0) in items {
        let (k, row) = source.locate(sample);
        if files[k].is_none() {
            files[k] = Some(H5File::open(&source.files[k].0)?);
        }
        let f = files[k].as_ref().expect("opened above");
        let (_, v) = f.read_f32_rows(&source.dataset, row, 1)?;
        match cfg.window {
            None => data.extend_from_slice(&v),
            Some(w) => data.extend_from_slice(&v[t0 * per_time..(t0 + w) * per_time]),
        }
    }
    if cfg.normalize {
        let s = source.stats.as_ref().expect("checked in Loader::new");
        let (m, inv) = (s.mean as f32, 1.0 / s.std as f32);
        data.iter_mut().for_each(|v| *v = (*v - m) * inv);
    }
    let mut shape = vec![items.len()];
    shape.extend_from_slice(item_shape);
    Ok(HostBatch { shape, data, items: items.to_vec() })
}

/// The batches of one epoch (see [`Loader::epoch`]).
pub struct Batches {
    rx: Receiver<Result<HostBatch>>,
    _handle: std::thread::JoinHandle<()>,
}

impl Iterator for Batches {
    type Item = Result<HostBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}
