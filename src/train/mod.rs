//! Training-loop plumbing shared by the studies: atomic file writes, checkpoints that can be
//! resumed (model, optimizer state and loop state), a loss log, a progress bar, and the
//! guard that reports non-finite losses instead of hiding them.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{de::DeserializeOwned, Serialize};

use crate::{Error, Result};

/// Write `bytes` to `path` atomically: a temporary name in the same directory, then rename,
/// so a crash never leaves a half-written file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path)?;
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The temporary name beside `path` that an atomic write goes through (its directory
/// created): `.{name}.tmp{pid}`. The caller writes it, then renames it to `path`.
pub(crate) fn temp_path(path: &Path) -> Result<PathBuf> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    Ok(path.with_file_name(format!(".{name}.tmp{}", std::process::id())))
}

/// Serialize `value` as pretty JSON to `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Format {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    write_atomic(path, text.as_bytes())
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Format { path: path.display().to_string(), reason: e.to_string() })
}

/// A checkpoint directory: `model.bpk`, `optimizer.bpk` and `state.json` (the loop state, written
/// last, so a checkpoint is complete exactly when its `state.json` exists).
#[derive(Clone, Debug)]
pub struct Checkpoint {
    dir: PathBuf,
}

impl Checkpoint {
    /// A checkpoint in `dir` (created on save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Whether a complete checkpoint exists.
    pub fn exists(&self) -> bool {
        self.dir.join("state.json").exists()
    }

    /// Save the model, the optimizer and the loop state.
    pub fn save<M: Module, S: Serialize>(&self, model: &M, optim: &ModuleOptimizer, state: &S) -> Result<()> {
        let record_err = |what: &str, e: String| Error::Format { path: self.dir.join(what).display().to_string(), reason: e };
        let model_bytes = model.clone().into_record().into_bytes().map_err(|e| record_err("model.bpk", format!("{e:?}")))?;
        write_atomic(&self.dir.join("model.bpk"), &model_bytes)?;
        let optim_bytes = optim.into_bytes().map_err(|e| record_err("optimizer.bpk", format!("{e:?}")))?;
        write_atomic(&self.dir.join("optimizer.bpk"), &optim_bytes)?;
        write_json(&self.dir.join("state.json"), state)
    }

    /// Load into `model` and `optim` (built with the same architecture and optimizer config) and
    /// return the loop state.
    pub fn load<M: Module, S: DeserializeOwned>(&self, model: M, optim: ModuleOptimizer) -> Result<(M, ModuleOptimizer, S)> {
        let state: S = read_json(&self.dir.join("state.json"))?;
        let fmt = |what: &str, e: String| Error::Format { path: self.dir.join(what).display().to_string(), reason: e };
        let model_bytes = std::fs::read(self.dir.join("model.bpk")).map_err(|e| Error::io(self.dir.join("model.bpk"), e))?;
        let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(model_bytes)).map_err(|e| fmt("model.bpk", format!("{e:?}")))?;
        let model = model.try_load_record(record).map_err(|e| fmt("model.bpk", format!("{e:?}")))?;
        let optim_bytes =
            std::fs::read(self.dir.join("optimizer.bpk")).map_err(|e| Error::io(self.dir.join("optimizer.bpk"), e))?;
        let optim = optim.from_bytes(burn::tensor::Bytes::from_bytes_vec(optim_bytes)).map_err(|e| fmt("optimizer.bpk", format!("{e:?}")))?;
        Ok((model, optim, state))
    }
}

/// A progress bar for `total` iterations that shows the current loss; hidden when `quiet`.
pub fn progress(total: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} {msg} ({elapsed}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// Fail with [`Error::Diverged`] when a loss is not finite.
pub fn check_loss(iteration: usize, loss: f64) -> Result<f64> {
    if loss.is_finite() {
        Ok(loss)
    } else {
        Err(Error::Diverged { iteration, loss })
    }
}
