//! The one checkpoint format: a directory holding the trainer's files (burn module records
//! `*.bpk`, optimizer state, JSON) and `state.json` (format, version, trainer kind,
//! configuration, run options, loop state), built under a temporary name beside the target
//! and swapped in by renames, so a crash leaves either the previous checkpoint or the new one,
//! never a mixture.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{load_module, read_json, save_module, write_atomic, write_json, RunOptions};
use crate::{Error, Result};

/// The tag and version in every `state.json`.
const FORMAT: &str = "physflow-checkpoint";
const VERSION: u32 = 1;
/// The kind recorded by [`Checkpoint::save`], whose caller's state goes in the config slot.
const HAND_LOOP: &str = "hand-written loop";

/// One entry of the loss log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Steps done.
    pub step: usize,
    /// Training seconds so far (resumed runs included).
    pub seconds: f64,
    /// Mean of each loss term over the log window ending at `step` (NaN for a term that is
    /// off; JSON has no NaN, so it is written as `null` and read back as NaN).
    #[serde(deserialize_with = "nan_from_null")]
    pub values: Vec<f64>,
}

/// Where a run stands: steps done, the loss log, training seconds, and the partial sums of
/// the current log window (so that a resumed run logs the same means).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Steps done.
    pub step: usize,
    /// The log entries so far.
    pub log: Vec<LogRecord>,
    /// Training seconds of all steps so far.
    pub seconds: f64,
    /// Sums of the loss terms over the open log window.
    #[serde(deserialize_with = "nan_from_null")]
    pub window: Vec<f64>,
    /// Steps in the open log window.
    pub window_len: usize,
}

/// Reads a list of numbers in which serde_json wrote each NaN as `null`.
fn nan_from_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<f64>, D::Error> {
    let v: Vec<Option<f64>> = Deserialize::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}

/// What `state.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StateFile {
    pub format: String,
    pub version: u32,
    /// The crate version that wrote it (informative).
    pub written_by: String,
    /// The trainer's kind (`"flow matching"`, ...).
    pub kind: String,
    /// The trainer's configuration (model, problem).
    pub config: serde_json::Value,
    /// The run options.
    pub options: RunOptions,
    /// The loop state.
    pub state: LoopState,
}

/// A checkpoint directory.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    dir: PathBuf,
}

impl Checkpoint {
    /// A checkpoint in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps this checkpoint only if it was made for the study configuration `study` (a
    /// study's whole config: data, seeds, model, training), recorded beside it as
    /// `<dir>.study.json`; otherwise removes it, so that a study run with other data or
    /// settings trains afresh instead of resuming a model made for them (the loop's own check
    /// covers only the trainer's settings). Records `study` for the run that follows. Returns
    /// whether a checkpoint was discarded.
    ///
    /// # Errors
    /// `Io` when the directory cannot be removed or the record written.
    pub fn keep_if_same_study<T: Serialize>(&self, study: &T) -> Result<bool> {
        let record = self.dir.with_extension("study.json");
        let now = serde_json::to_value(study).map_err(|e| Error::Format { path: record.display().to_string(), reason: e.to_string() })?;
        let before: Option<serde_json::Value> = std::fs::read(&record).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let discard = (self.dir.exists() || self.exists()) && before.as_ref() != Some(&now);
        if discard {
            // The directory and any copy a crashed writer left beside it.
            for d in std::iter::once(self.dir.clone()).chain(self.stale_siblings()) {
                if d.exists() {
                    std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))?;
                }
            }
        }
        if let Some(parent) = record.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        write_json(&record, &now)?;
        Ok(discard)
    }

    /// Whether a complete checkpoint exists (also one left beside the directory by a crash
    /// between the two renames of a write).
    pub fn exists(&self) -> bool {
        self.complete_dir().is_some()
    }

    fn sibling(&self, tag: &str) -> PathBuf {
        let name = self.dir.file_name().and_then(|n| n.to_str()).unwrap_or("checkpoint");
        self.dir.with_file_name(format!(".{name}.{tag}{}", std::process::id()))
    }

    /// `.{name}.old*` directories beside the checkpoint.
    fn stale_siblings(&self) -> Vec<PathBuf> {
        let Some(name) = self.dir.file_name().and_then(|n| n.to_str()).map(|n| format!(".{n}.old")) else { return Vec::new() };
        let parent = self.dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        match std::fs::read_dir(parent) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&name)))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The directory holding the latest complete checkpoint.
    fn complete_dir(&self) -> Option<PathBuf> {
        if self.dir.join("state.json").is_file() {
            return Some(self.dir.clone());
        }
        // A crash between `dir → old` and `staging → dir` leaves the previous checkpoint as
        // `.{name}.old{pid}` of the crashed process.
        self.stale_siblings().into_iter().find(|p| p.join("state.json").is_file())
    }

    /// Write a checkpoint: `fill` writes the trainer's files into a staging directory, then
    /// the staging directory replaces `dir`.
    ///
    /// # Errors
    /// `Io`/`Format` naming the file that failed.
    pub fn write(&self, fill: impl FnOnce(&mut CheckpointWriter) -> Result<()>) -> Result<()> {
        let staging = self.sibling("tmp");
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        let mut w = CheckpointWriter { dir: staging.clone() };
        fill(&mut w)?;
        let old = self.sibling("old");
        if self.dir.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
            }
            std::fs::rename(&self.dir, &old).map_err(|e| Error::io(&self.dir, e))?;
        }
        std::fs::rename(&staging, &self.dir).map_err(|e| Error::io(&self.dir, e))?;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        // Previous checkpoints left aside by crashed processes are superseded now.
        for stale in self.stale_siblings() {
            let _ = std::fs::remove_dir_all(stale);
        }
        Ok(())
    }

    /// Open the latest complete checkpoint for reading.
    ///
    /// # Errors
    /// `Io` when there is none.
    pub fn read(&self) -> Result<CheckpointReader> {
        match self.complete_dir() {
            Some(dir) => Ok(CheckpointReader { dir }),
            None => Err(Error::io(self.dir.join("state.json"), std::io::Error::new(std::io::ErrorKind::NotFound, "no complete checkpoint here"))),
        }
    }

    /// Save a burn model, its optimizer and a serialisable loop state (for loops written
    /// out by hand; [`super::fit`] writes its own state).
    ///
    /// # Errors
    /// `Io`/`Format` naming the file.
    pub fn save<M: Module, S: Serialize>(&self, model: &M, optim: &ModuleOptimizer, state: &S) -> Result<()> {
        let value =
            serde_json::to_value(state).map_err(|e| Error::Format { path: self.dir.join("state.json").display().to_string(), reason: e.to_string() })?;
        self.write(|w| {
            w.module("model", model)?;
            w.optimizer("optimizer", optim)?;
            w.json("state", &Self::state_file(HAND_LOOP, value, &RunOptions::default(), &LoopState::default()))
        })
    }

    /// Load what [`Checkpoint::save`] wrote into `model` and `optim` (built with the same
    /// architecture and optimizer) and return the loop state.
    ///
    /// # Errors
    /// `Io`/`Format` naming the file.
    pub fn load<M: Module, S: DeserializeOwned>(&self, model: M, optim: ModuleOptimizer) -> Result<(M, ModuleOptimizer, S)> {
        let (r, file) = self.read_state(HAND_LOOP)?;
        let state = serde_json::from_value(file.config)
            .map_err(|e| Error::Format { path: self.dir.join("state.json").display().to_string(), reason: e.to_string() })?;
        Ok((r.module("model", model)?, r.optimizer("optimizer", optim)?, state))
    }

    /// Read `state.json` and check that it is this format and was written by a `kind` trainer.
    pub(crate) fn read_state(&self, kind: &str) -> Result<(CheckpointReader, StateFile)> {
        let r = self.read()?;
        let path = r.dir.join("state.json");
        let fmt = |reason: String| Error::Format { path: path.display().to_string(), reason };
        let raw: serde_json::Value = read_json(&path)?;
        if raw.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(fmt(format!("not a {FORMAT} file (an older checkpoint layout?); remove the directory to start afresh")));
        }
        let state: StateFile = serde_json::from_value(raw).map_err(|e| fmt(e.to_string()))?;
        if state.version != VERSION {
            return Err(fmt(format!("checkpoint format version {} (this build reads version {VERSION})", state.version)));
        }
        if state.kind != kind {
            return Err(fmt(format!("written by a `{}` run, not `{kind}`", state.kind)));
        }
        Ok((r, state))
    }

    pub(crate) fn state_file(kind: &str, config: serde_json::Value, options: &RunOptions, state: &LoopState) -> StateFile {
        StateFile {
            format: FORMAT.into(),
            version: VERSION,
            written_by: format!("physflow {}", env!("CARGO_PKG_VERSION")),
            kind: kind.into(),
            config,
            options: options.clone(),
            state: state.clone(),
        }
    }
}

/// Writes the files of one checkpoint (into its staging directory).
pub struct CheckpointWriter {
    dir: PathBuf,
}

impl CheckpointWriter {
    /// A burn module's record as `{name}.bpk`.
    ///
    /// # Errors
    /// `Io`/`Format` naming the file.
    pub fn module<M: Module>(&mut self, name: &str, module: &M) -> Result<()> {
        save_module(&self.dir.join(format!("{name}.bpk")), module)
    }

    /// A burn optimizer's state as `{name}.bpk`.
    ///
    /// # Errors
    /// `Io`/`Format` naming the file.
    pub fn optimizer(&mut self, name: &str, optim: &ModuleOptimizer) -> Result<()> {
        let path = self.dir.join(format!("{name}.bpk"));
        let bytes = optim.into_bytes().map_err(|e| Error::Format { path: path.display().to_string(), reason: format!("{e:?}") })?;
        write_atomic(&path, &bytes)
    }

    /// A serialisable value as `{name}.json` (f64 values round-trip exactly).
    ///
    /// # Errors
    /// `Io`/`Format` naming the file.
    pub fn json<T: Serialize>(&mut self, name: &str, value: &T) -> Result<()> {
        write_json(&self.dir.join(format!("{name}.json")), value)
    }
}

/// Reads the files of one checkpoint.
pub struct CheckpointReader {
    dir: PathBuf,
}

impl CheckpointReader {
    /// Load `{name}.bpk` into `module` (same architecture).
    ///
    /// # Errors
    /// `Io`, or `Format` when the record does not fit the module.
    pub fn module<M: Module>(&self, name: &str, module: M) -> Result<M> {
        load_module(&self.module_file(name), module)
    }

    /// The file `{name}.bpk` of this checkpoint, for a module with its own loader (one that
    /// also reads earlier record layouts, as [`crate::nn::FieldNet::load`]).
    pub fn module_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.bpk"))
    }

    /// Load `{name}.bpk` into `optim` (same optimizer configuration).
    ///
    /// # Errors
    /// `Io`, or `Format` when the state does not fit.
    pub fn optimizer(&self, name: &str, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
        let path = self.dir.join(format!("{name}.bpk"));
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        optim.from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes)).map_err(|e| Error::Format { path: path.display().to_string(), reason: format!("{e:?}") })
    }

    /// Read `{name}.json`.
    ///
    /// # Errors
    /// `Io`/`Format` naming the file.
    pub fn json<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        read_json(&self.dir.join(format!("{name}.json")))
    }

    /// Whether `{name}.{ext}` is in the checkpoint.
    pub fn has(&self, name: &str, ext: &str) -> bool {
        self.dir.join(format!("{name}.{ext}")).is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write replaces the previous checkpoint whole; a crash after the first rename (the
    /// previous checkpoint moved aside, the new one not yet in place) still finds the
    /// previous one.
    #[test]
    fn swap_and_crash_recovery() {
        let root = std::env::temp_dir().join(format!("physflow-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let ck = Checkpoint::new(root.join("ck"));
        assert!(!ck.exists());
        ck.write(|w| w.json("a", &1)).unwrap();
        ck.write(|w| w.json("b", &2)).unwrap();
        // `fill` writes no state.json here, so `exists` is false but the files are swapped.
        assert!(!root.join("ck/a.json").exists() && root.join("ck/b.json").exists());
        let st = Checkpoint::state_file("test", serde_json::json!({}), &RunOptions::default(), &LoopState { step: 3, ..Default::default() });
        ck.write(|w| w.json("state", &st)).unwrap();
        assert!(ck.exists());
        // Simulate the crash: the complete checkpoint renamed aside, nothing in place.
        std::fs::rename(root.join("ck"), root.join(".ck.old999")).unwrap();
        assert!(ck.exists());
        let (_, s) = ck.read_state("test").unwrap();
        assert_eq!(s.state.step, 3);
        // The next write puts a checkpoint in place again and clears the one left aside.
        ck.write(|w| w.json("state", &st)).unwrap();
        assert!(root.join("ck/state.json").exists() && !root.join(".ck.old999").exists());
        assert!(matches!(ck.read_state("other"), Err(Error::Format { .. })));
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A loss term that is off logs NaN; the state file must read it back (JSON writes NaN
    /// as `null`).
    #[test]
    fn nan_log_values_round_trip() {
        let st = LoopState {
            step: 2,
            log: vec![LogRecord { step: 2, seconds: 0.5, values: vec![1.0, f64::NAN] }],
            seconds: 0.5,
            window: vec![f64::NAN, 3.0],
            window_len: 1,
        };
        let back: LoopState = serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
        assert_eq!(back.log[0].values[0], 1.0);
        assert!(back.log[0].values[1].is_nan() && back.window[0].is_nan() && back.window[1] == 3.0);
    }
}
