//! The training loop every model uses, and its plumbing.
//!
//! * [`fit`] runs a [`Trainer`] (a model, its batch source, its loss and optimizer) for the
//!   steps of a [`RunOptions`] (steps, batch, learning-rate schedule, gradient clipping, EMA,
//!   checkpoint interval, seed, log interval), with progress, a loss log, divergence checks,
//!   [`Callback`]s (evaluate every k steps or at wall-clock times, early stop) and resumable
//!   [`Checkpoint`]s.
//! * [`Checkpoint`]: the one checkpoint format (a directory swapped in atomically: the
//!   trainer's model record and optimizer state, the loop state, the configuration).
//! * Atomic file writes, JSON I/O, the progress bar and the non-finite-loss guard.
//!
//! Randomness: step `k` draws from a generator seeded by `(seed, k)` ([`step_rng`]), so the
//! RNG state of a checkpoint is its step number and a resumed run draws exactly what the
//! uninterrupted run would have.

mod checkpoint;
mod fit;
mod options;
mod progress;

pub use checkpoint::{Checkpoint, CheckpointReader, CheckpointWriter, LogRecord, LoopState};
pub use fit::{fit, Callback, Control, EarlyStop, Every, FitReport, Run, StepInfo, Trainer};
pub use options::{LrSchedule, Precision, RunOptions};
pub use progress::{progress, Progress};

use std::path::{Path, PathBuf};

use burn::module::Module;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{Error, Result};

/// Write `bytes` to `path` atomically: a temporary name in the same directory, then rename,
/// so a crash never leaves a half-written file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path)?;
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The temporary name beside `path` that an atomic write goes through (its directory
/// created): `.{stem}.tmp{pid}.{ext}`, the extension kept last because some writers (the
/// figure encoders) choose the format by it. The caller writes it, then renames it to `path`.
pub(crate) fn temp_path(path: &Path) -> Result<PathBuf> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
    }
    let stem = path.file_stem().and_then(|n| n.to_str()).unwrap_or("file");
    let pid = std::process::id();
    Ok(match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => path.with_file_name(format!(".{stem}.tmp{pid}.{ext}")),
        None => path.with_file_name(format!(".{stem}.tmp{pid}")),
    })
}

/// Serialize `value` as pretty JSON to `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Format { path: path.display().to_string(), reason: e.to_string() })?;
    write_atomic(path, text.as_bytes())
}

/// Reads a JSON file written by [`write_json`].
///
/// # Errors
/// `Io` or `Format` naming the file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Format { path: path.display().to_string(), reason: e.to_string() })
}

/// Writes a module's parameters (burn's record bytes) to `path`, atomically.
pub fn save_module<M: Module>(path: &Path, module: &M) -> Result<()> {
    let bytes = module.clone().into_record().into_bytes().map_err(|e| Error::Format { path: path.display().to_string(), reason: format!("{e:?}") })?;
    write_atomic(path, &bytes)
}

/// Loads parameters written by [`save_module`] into `module` (built with the same architecture).
///
/// # Errors
/// `Io` when the file cannot be read, `Format` when it does not fit the module.
pub fn load_module<M: Module>(path: &Path, module: M) -> Result<M> {
    let fmt = |e: String| Error::Format { path: path.display().to_string(), reason: e };
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes)).map_err(|e| fmt(format!("{e:?}")))?;
    module.try_load_record(record).map_err(|e| fmt(format!("{e:?}")))
}

/// The generator of step `step` of a run seeded with `seed`: one stream per step, so a
/// resumed run continues exactly as the uninterrupted one.
pub fn step_rng(seed: u64, step: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (step as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Fail with [`Error::Diverged`] when a loss is not finite.
pub fn check_loss(iteration: usize, loss: f64) -> Result<f64> {
    if loss.is_finite() {
        Ok(loss)
    } else {
        Err(Error::Diverged { iteration, loss })
    }
}

/// Adam (Kingma & Ba 2015) on a flat parameter vector (`f32` or `f64`), with PyTorch's
/// defaults (β₁ = 0.9, β₂ = 0.999, ε = 1e-8) and bias correction; serialisable for checkpoints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Adam<R> {
    m: Vec<R>,
    v: Vec<R>,
    t: u64,
}

macro_rules! adam_for {
    ($r:ty) => {
        impl Adam<$r> {
            pub(crate) fn new(n: usize) -> Self {
                Self { m: vec![0.0; n], v: vec![0.0; n], t: 0 }
            }

            pub(crate) fn step(&mut self, params: &mut [$r], grad: &[$r], lr: f64) {
                const B1: $r = 0.9;
                const B2: $r = 0.999;
                const EPS: $r = 1e-8;
                self.t += 1;
                let c1 = 1.0 - B1.powi(self.t as i32);
                let c2 = 1.0 - B2.powi(self.t as i32);
                let step = lr as $r / c1;
                let c2s = c2.sqrt();
                for (((p, g), m), v) in params.iter_mut().zip(grad).zip(&mut self.m).zip(&mut self.v) {
                    *m = B1 * *m + (1.0 - B1) * g;
                    *v = B2 * *v + (1.0 - B2) * g * g;
                    *p -= step * *m / (v.sqrt() / c2s + EPS);
                }
            }
        }
    };
}
adam_for!(f32);
adam_for!(f64);

/// burn's Adam with PyTorch's defaults (β = (0.9, 0.999), ε = 1e-8), as the flat [`Adam`]:
/// the optimizer of every trainer's burn path.
pub(crate) fn burn_adam() -> burn::optim::ModuleOptimizer {
    burn::optim::AdamConfig::new().with_beta_1(0.9).with_beta_2(0.999).with_epsilon(1e-8).init()
}

/// Scale `grad` so its Euclidean norm is at most `clip` (no-op for `None`).
pub(crate) fn clip_global_norm<R: Copy + Into<f64> + std::ops::MulAssign + FromF64>(grad: &mut [R], clip: Option<f64>) {
    if let Some(clip) = clip {
        let norm = grad.iter().map(|g| (*g).into().powi(2)).sum::<f64>().sqrt();
        if norm > clip {
            let s = R::from_f64(clip / norm);
            grad.iter_mut().for_each(|g| *g *= s);
        }
    }
}

/// Conversion from `f64` for the scalar types that training runs in.
pub(crate) trait FromF64 {
    fn from_f64(v: f64) -> Self;
}

impl FromF64 for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl FromF64 for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// Scale the gradients of `module`'s parameters in `grads` so that their joint Euclidean norm
/// is at most `max` (global-norm clipping, as PyTorch's `clip_grad_norm_`; burn's own
/// `GradientClipping::Norm` clips each tensor separately). The squared norms are summed on the
/// device in the gradients' precision, with one readback. Returns the norm before clipping.
///
/// # Errors
/// [`Error::Device`] when the norm cannot be read back.
pub fn clip_grad_norm<M: Module>(module: &M, grads: &mut burn::optim::GradientsParams, max: f64) -> Result<f64> {
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::Tensor;

    use crate::host::ToHost;

    struct SumSquares<'a> {
        grads: &'a burn::optim::GradientsParams,
        out: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.out.push(g.square().sum());
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut burn::optim::GradientsParams,
        s: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register::<D>(param.id, g.mul_scalar(self.s));
            }
        }
    }
    let mut sq = SumSquares { grads, out: Vec::new() };
    module.visit(&mut sq);
    if sq.out.is_empty() {
        return Ok(0.0);
    }
    let norm = Tensor::cat(sq.out, 0).sum().host_vec::<f64>()?[0].sqrt();
    if norm > max {
        module.visit(&mut Scale { grads, s: max / norm });
    }
    Ok(norm)
}
