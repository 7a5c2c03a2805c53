//! The training loop: one [`fit`] for every model.

use std::path::PathBuf;
use std::time::Instant;

use rand::rngs::StdRng;

use super::checkpoint::{Checkpoint, CheckpointReader, CheckpointWriter, LogRecord, LoopState};
use super::{check_loss, progress, step_rng, RunOptions};
use crate::{Error, Result};

/// A model with its batch source, loss and optimizer: what [`fit`] trains.
///
/// The trainer owns the model and the optimizer state; the loop owns the step count, the
/// learning-rate schedule, logging, callbacks and checkpoints.
pub trait Trainer {
    /// A name for the kind of training (`"flow matching"`), stored in checkpoints so that one
    /// kind's checkpoint is never loaded into another.
    fn kind(&self) -> &'static str;

    /// The configuration a checkpoint must match to be resumed (model, problem, device
    /// precision): any serialisable value.
    fn config(&self) -> serde_json::Value;

    /// Names of the loss terms [`Trainer::step`] returns (the first is the training loss).
    fn loss_names(&self) -> Vec<String> {
        vec!["loss".into()]
    }

    /// One optimizer step at learning rate `lr`, drawing the batch from `rng` (the
    /// generator of step `step`). Returns the loss terms.
    ///
    /// # Errors
    /// Whatever the model, data or device raise.
    fn step(&mut self, step: usize, lr: f64, rng: &mut StdRng) -> Result<Vec<f64>>;

    /// Whether the trainer has converged (a deterministic optimiser that met its tolerance):
    /// the loop then stops after this step and writes its checkpoint.
    fn converged(&self) -> bool {
        false
    }

    /// Whether [`Trainer::update_ema`] is implemented.
    fn supports_ema(&self) -> bool {
        false
    }

    /// `θ̄ ← d θ̄ + (1 − d) θ` after a step (the first call sets `θ̄ = θ`).
    ///
    /// # Errors
    /// `Unsupported` unless [`Trainer::supports_ema`].
    fn update_ema(&mut self, decay: f64) -> Result<()> {
        let _ = decay;
        Err(Error::Unsupported(format!("parameter EMA for {} training", self.kind())))
    }

    /// Write the model and optimizer state (and the EMA, if any) into a checkpoint.
    ///
    /// # Errors
    /// `Io`/`Format`.
    fn save(&self, w: &mut CheckpointWriter) -> Result<()>;

    /// Restore what [`Trainer::save`] wrote.
    ///
    /// # Errors
    /// `Io`/`Format`, or a mismatch with this trainer's model.
    fn load(&mut self, r: &CheckpointReader) -> Result<()>;
}

/// Where a run is, for callbacks.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo<'a> {
    /// Steps done.
    pub step: usize,
    /// Steps of the whole run.
    pub steps: usize,
    /// The loss terms of the last step.
    pub losses: &'a [f64],
    /// The loss log so far.
    pub log: &'a [LogRecord],
    /// Training seconds so far (resumed runs included).
    pub seconds: f64,
}

/// What a callback asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop after this step (a checkpoint is written, so the run can be resumed).
    Stop,
}

/// When a callback runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Every {
    /// After every `k`-th step (and after the last).
    Steps(usize),
    /// Whenever this many training seconds have passed since its last call (and after the
    /// last step).
    Seconds(f64),
}

/// Something to run during training: an evaluation, a plot, a stopping rule.
pub trait Callback<T: ?Sized> {
    /// When to run.
    fn every(&self) -> Every;

    /// Run with read access to the trainer (its model).
    ///
    /// # Errors
    /// Any error ends the run (after a checkpoint).
    fn call(&mut self, trainer: &T, info: &StepInfo<'_>) -> Result<Control>;
}

/// A closure as a callback.
struct FnCallback<F> {
    every: Every,
    f: F,
}

impl<T: ?Sized, F: FnMut(&T, &StepInfo<'_>) -> Result<Control>> Callback<T> for FnCallback<F> {
    fn every(&self) -> Every {
        self.every
    }
    fn call(&mut self, trainer: &T, info: &StepInfo<'_>) -> Result<Control> {
        (self.f)(trainer, info)
    }
}

/// Stop when the logged training loss (first term) has not improved by `min_delta` over the
/// best so far for `patience` log entries.
#[derive(Clone, Debug)]
pub struct EarlyStop {
    /// Log entries without improvement before stopping.
    pub patience: usize,
    /// Improvement that counts.
    pub min_delta: f64,
}

impl<T: ?Sized> Callback<T> for EarlyStop {
    fn every(&self) -> Every {
        Every::Steps(1)
    }

    fn call(&mut self, _trainer: &T, info: &StepInfo<'_>) -> Result<Control> {
        let mut best = f64::INFINITY;
        let mut since = 0;
        for r in info.log {
            let l = r.values.first().copied().unwrap_or(f64::INFINITY);
            if l < best - self.min_delta {
                best = l;
                since = 0;
            } else {
                since += 1;
            }
        }
        Ok(if since >= self.patience && !info.log.is_empty() { Control::Stop } else { Control::Continue })
    }
}

/// Where a run saves and resumes, what it shows, and what runs alongside it.
pub struct Run<'a, T: ?Sized> {
    /// Checkpoint directory; an existing checkpoint is resumed from.
    pub checkpoint: Option<PathBuf>,
    /// Hide the progress bar.
    pub quiet: bool,
    /// Stop after this many steps in this call (checkpointing there), to be resumed later.
    pub stop_after: Option<usize>,
    /// Stop once this call has trained this many seconds (checkpointing there): runs at equal
    /// wall-clock time.
    pub time_budget: Option<f64>,
    /// Label of the progress bar.
    pub label: String,
    /// Callbacks, in order.
    pub callbacks: Vec<Box<dyn Callback<T> + 'a>>,
}

impl<T: ?Sized> Default for Run<'_, T> {
    fn default() -> Self {
        Self { checkpoint: None, quiet: false, stop_after: None, time_budget: None, label: "train".into(), callbacks: Vec::new() }
    }
}

impl<'a, T: ?Sized> Run<'a, T> {
    /// No checkpoint, no progress bar.
    pub fn quiet() -> Self {
        Self { quiet: true, ..Self::default() }
    }

    /// A study's run: checkpointed in `dir`, which is resumed only when it was made for the
    /// study configuration `study` ([`super::Checkpoint::keep_if_same_study`]; otherwise the
    /// model trains afresh, and a line on stderr says so).
    ///
    /// # Errors
    /// As `keep_if_same_study`.
    pub fn for_study(dir: impl Into<PathBuf>, study: &impl serde::Serialize, quiet: bool) -> Result<Self> {
        let dir = dir.into();
        if super::Checkpoint::new(&dir).keep_if_same_study(study)? {
            // Said even when quiet (which hides progress bars only): a rerun that trains
            // from scratch where the user expected a resume must not be silent.
            eprintln!("{}: made for another configuration of the study; removed, training afresh", dir.display());
        }
        Ok(Self { checkpoint: Some(dir), quiet, ..Self::default() })
    }

    /// With a checkpoint directory.
    pub fn with_checkpoint(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(dir.into());
        self
    }

    /// Add a closure run at `every`.
    pub fn on(mut self, every: Every, f: impl FnMut(&T, &StepInfo<'_>) -> Result<Control> + 'a) -> Self {
        self.callbacks.push(Box::new(FnCallback { every, f }));
        self
    }

    /// Add a callback.
    pub fn with(mut self, callback: impl Callback<T> + 'a) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }
}

/// The outcome of [`fit`].
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FitReport {
    /// Names of the loss terms.
    pub loss_names: Vec<String>,
    /// The loss log, resumed runs included.
    pub log: Vec<LogRecord>,
    /// Steps done in all.
    pub step: usize,
    /// Steps run in this call.
    pub steps_run: usize,
    /// Wall time of this call's steps, seconds.
    pub seconds: f64,
    /// Training seconds of all steps so far, resumed runs included.
    pub total_seconds: f64,
    /// Whether a callback, `stop_after`, the time budget or the trainer's convergence ended
    /// the run before `steps`.
    pub stopped_early: bool,
    /// Whether the trainer reported convergence ([`Trainer::converged`]).
    #[serde(default)]
    pub converged: bool,
}

impl FitReport {
    /// The log of the first loss term: `(step, mean)`.
    pub fn losses(&self) -> Vec<(usize, f64)> {
        self.log.iter().map(|r| (r.step, r.values.first().copied().unwrap_or(f64::NAN))).collect()
    }
}

/// Train `trainer` for `opts.steps` steps, resuming from `run.checkpoint` when it holds a
/// checkpoint of the same kind, configuration and options (`steps` may grow).
///
/// Step `k` draws from [`super::step_rng`]`(opts.seed, k)` and uses the rate
/// `opts.lr_at(k)`. Every `opts.log_every` steps the mean of each loss term is logged.
/// Checkpoints are written every `opts.checkpoint_every` steps, at the end, and when a
/// callback or `stop_after` stops the run.
///
/// # Errors
/// `InvalidArgument` for bad options or a checkpoint written under other settings (naming
/// what differs); `Format` for a checkpoint of another kind or format; `Diverged` for a
/// non-finite loss; whatever the trainer and callbacks raise.
pub fn fit<T: Trainer>(trainer: &mut T, opts: &RunOptions, run: &mut Run<'_, T>) -> Result<FitReport> {
    opts.validate()?;
    if opts.ema.is_some() && !trainer.supports_ema() {
        return Err(Error::Unsupported(format!("parameter EMA (`ema`) for {} training", trainer.kind())));
    }
    let mut names = trainer.loss_names();
    if names.is_empty() {
        names.push("loss".into());
    }
    let ckpt = run.checkpoint.as_ref().map(Checkpoint::new);
    let mut state = LoopState { window: vec![0.0; names.len()], ..LoopState::default() };
    if let Some(c) = ckpt.as_ref().filter(|c| c.exists()) {
        let (reader, file) = c.read_state(trainer.kind())?;
        let config = trainer.config();
        if file.config != config {
            return Err(Error::invalid(
                "checkpoint",
                format!(
                    "{} was written with another configuration ({}); remove it or restore that configuration",
                    c.dir().display(),
                    differences(&file.config, &config)
                ),
            ));
        }
        if file.options.fingerprint() != opts.fingerprint() {
            let (a, b) = (serde_json::to_value(file.options.fingerprint()).unwrap_or_default(), serde_json::to_value(opts.fingerprint()).unwrap_or_default());
            return Err(Error::invalid(
                "checkpoint",
                format!(
                    "{} was written with other run options ({}); only `steps`, `checkpoint_every` and `log_every` may change on resume",
                    c.dir().display(),
                    differences(&a, &b)
                ),
            ));
        }
        trainer.load(&reader)?;
        state = file.state;
        if state.window.len() != names.len() {
            state.window = vec![0.0; names.len()];
            state.window_len = 0;
        }
    }

    let save = |trainer: &T, state: &LoopState| -> Result<()> {
        match &ckpt {
            Some(c) => c.write(|w| {
                trainer.save(w)?;
                w.json("state", &Checkpoint::state_file(trainer.kind(), trainer.config(), opts, state))
            }),
            None => Ok(()),
        }
    };

    let bar = progress(opts.steps as u64, &run.label, run.quiet);
    bar.set_position(state.step as u64);
    // indicatif draws nothing when stderr is not a terminal (a background run, a CI log):
    // there the log lines are printed instead.
    let plain_log = !run.quiet && bar.is_hidden();
    let clock = Instant::now();
    let seconds_before = state.seconds;
    let mut last_call = vec![0.0f64; run.callbacks.len()];
    let mut steps_run = 0;
    let mut stopped = false;
    while state.step < opts.steps {
        if run.stop_after.is_some_and(|k| steps_run >= k) || run.time_budget.is_some_and(|b| clock.elapsed().as_secs_f64() >= b) {
            save(trainer, &state)?;
            stopped = true;
            break;
        }
        let step = state.step;
        let mut rng = step_rng(opts.seed, step);
        let losses = trainer.step(step, opts.lr_at(step), &mut rng)?;
        // The training loss is checked here; trainers check any other terms that must be
        // finite (some report NaN for a term that is off).
        check_loss(step, losses.first().copied().unwrap_or(f64::NAN))?;
        if let Some(d) = opts.ema {
            trainer.update_ema(d)?;
        }
        state.step += 1;
        steps_run += 1;
        for (w, l) in state.window.iter_mut().zip(&losses) {
            *w += l;
        }
        state.window_len += 1;
        state.seconds = seconds_before + clock.elapsed().as_secs_f64();
        if state.step.is_multiple_of(opts.log_every) || state.step == opts.steps {
            let n = state.window_len.max(1) as f64;
            let means: Vec<f64> = state.window.iter().map(|s| s / n).collect();
            bar.set_message(format!("{} {:.4e}", names[0], means[0]));
            if plain_log {
                eprintln!("{}: step {}/{}, {} {:.4e}, {:.0} s", run.label, state.step, opts.steps, names[0], means[0], state.seconds);
            }
            state.log.push(LogRecord { step: state.step, seconds: state.seconds, values: means });
            state.window.iter_mut().for_each(|w| *w = 0.0);
            state.window_len = 0;
        }
        bar.set_position(state.step as u64);

        let last = state.step == opts.steps;
        let mut control = Control::Continue;
        for (cb, t_last) in run.callbacks.iter_mut().zip(last_call.iter_mut()) {
            let due = last
                || match cb.every() {
                    Every::Steps(k) => k > 0 && state.step.is_multiple_of(k),
                    Every::Seconds(s) => state.seconds - *t_last >= s,
                };
            if due {
                *t_last = state.seconds;
                let info = StepInfo { step: state.step, steps: opts.steps, losses: &losses, log: &state.log, seconds: state.seconds };
                match cb.call(trainer, &info) {
                    Ok(Control::Stop) => control = Control::Stop,
                    Ok(Control::Continue) => {}
                    Err(e) => {
                        save(trainer, &state)?;
                        return Err(e);
                    }
                }
            }
        }
        let cadence = opts.checkpoint_every > 0 && state.step.is_multiple_of(opts.checkpoint_every);
        if trainer.converged() && !last {
            control = Control::Stop;
        }
        if control == Control::Stop {
            save(trainer, &state)?;
            stopped = true;
            break;
        }
        if cadence && !last {
            save(trainer, &state)?;
        }
    }
    bar.finish_and_clear();
    if !stopped {
        save(trainer, &state)?;
    }
    Ok(FitReport {
        loss_names: names,
        log: state.log,
        step: state.step,
        steps_run,
        seconds: clock.elapsed().as_secs_f64(),
        total_seconds: state.seconds,
        stopped_early: stopped,
        converged: trainer.converged(),
    })
}

/// The top-level keys in which two JSON objects differ, for error messages.
fn differences(a: &serde_json::Value, b: &serde_json::Value) -> String {
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            let diff: Vec<String> = keys
                .into_iter()
                .filter(|k| x.get(*k) != y.get(*k))
                .map(|k| {
                    format!(
                        "`{k}`: checkpoint {} vs now {}",
                        x.get(k).map(|v| v.to_string()).unwrap_or("-".into()),
                        y.get(k).map(|v| v.to_string()).unwrap_or("-".into())
                    )
                })
                .collect();
            diff.join("; ")
        }
        _ => format!("checkpoint {a} vs now {b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    /// Gradient descent on `L(θ) = ½|θ − c|²` with noisy targets: a trainer small enough to
    /// check the loop's bookkeeping exactly.
    struct Quadratic {
        theta: Vec<f64>,
        ema: Option<Vec<f64>>,
    }

    impl Trainer for Quadratic {
        fn kind(&self) -> &'static str {
            "quadratic"
        }
        fn config(&self) -> serde_json::Value {
            serde_json::json!({ "dim": self.theta.len() })
        }
        fn step(&mut self, _step: usize, lr: f64, rng: &mut StdRng) -> Result<Vec<f64>> {
            let mut loss = 0.0;
            for th in &mut self.theta {
                let c = 1.0 + 0.1 * rng.random::<f64>();
                loss += 0.5 * (*th - c) * (*th - c);
                *th -= lr * (*th - c);
            }
            Ok(vec![loss])
        }
        fn supports_ema(&self) -> bool {
            true
        }
        fn update_ema(&mut self, d: f64) -> Result<()> {
            match &mut self.ema {
                None => self.ema = Some(self.theta.clone()),
                Some(e) => e.iter_mut().zip(&self.theta).for_each(|(e, t)| *e = d * *e + (1.0 - d) * t),
            }
            Ok(())
        }
        fn save(&self, w: &mut CheckpointWriter) -> Result<()> {
            w.json("theta", &(&self.theta, &self.ema))
        }
        fn load(&mut self, r: &CheckpointReader) -> Result<()> {
            (self.theta, self.ema) = r.json("theta")?;
            Ok(())
        }
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("physflow-fit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Stopping at step 7 and resuming reproduces the uninterrupted run bit for bit
    /// (parameters, EMA and the loss log, whose windows straddle the stop).
    #[test]
    fn resume_is_bit_identical() {
        let opts = RunOptions {
            steps: 20,
            log_every: 3,
            lr: 0.1,
            schedule: super::super::LrSchedule::Cosine { floor: 0.1 },
            ema: Some(0.9),
            seed: 4,
            ..RunOptions::default()
        };
        let mut full = Quadratic { theta: vec![0.0, 2.0], ema: None };
        let rf = fit(&mut full, &opts, &mut Run::quiet()).unwrap();
        let dir = temp("resume");
        let mut first = Quadratic { theta: vec![0.0, 2.0], ema: None };
        let r1 = fit(&mut first, &opts, &mut Run { stop_after: Some(7), ..Run::quiet().with_checkpoint(&dir) }).unwrap();
        assert!(r1.stopped_early && r1.step == 7);
        let mut second = Quadratic { theta: vec![9.0, 9.0], ema: None };
        let r2 = fit(&mut second, &opts, &mut Run::quiet().with_checkpoint(&dir)).unwrap();
        assert_eq!(r2.steps_run, 13);
        assert_eq!(second.theta, full.theta);
        assert_eq!(second.ema, full.ema);
        let values = |r: &FitReport| r.log.iter().map(|e| (e.step, e.values.clone())).collect::<Vec<_>>();
        assert_eq!(values(&r2), values(&rf));
        // Other options: refused, naming the option.
        let other = RunOptions { lr: 0.2, ..opts.clone() };
        match fit(&mut Quadratic { theta: vec![0.0, 2.0], ema: None }, &other, &mut Run::quiet().with_checkpoint(&dir)) {
            Err(Error::InvalidArgument { reason, .. }) => assert!(reason.contains("`lr`"), "{reason}"),
            o => panic!("{o:?}"),
        }
        // Another configuration: refused, naming the key.
        match fit(&mut Quadratic { theta: vec![0.0; 3], ema: None }, &opts, &mut Run::quiet().with_checkpoint(&dir)) {
            Err(Error::InvalidArgument { reason, .. }) => assert!(reason.contains("`dim`"), "{reason}"),
            o => panic!("{o:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Callbacks run on their cadence, can stop the run, and early stopping ends a run whose
    /// loss has stopped improving.
    #[test]
    fn callbacks_and_early_stop() {
        let opts = RunOptions { steps: 50, log_every: 1, lr: 0.5, ..RunOptions::default() };
        let mut seen = Vec::new();
        let mut t = Quadratic { theta: vec![0.0], ema: None };
        let r = fit(
            &mut t,
            &opts,
            &mut Run::quiet().on(Every::Steps(10), |_: &Quadratic, i| {
                seen.push(i.step);
                Ok(if i.step >= 30 { Control::Stop } else { Control::Continue })
            }),
        )
        .unwrap();
        assert_eq!(seen, vec![10, 20, 30]);
        assert!(r.stopped_early && r.step == 30);
        // The loss plateaus at the noise floor (variance of U(0, 0.1)/2 ≈ 4e-4): no improvement
        // by 1.0 ever, so the run stops after `patience` entries.
        let mut t = Quadratic { theta: vec![1.0], ema: None };
        let r = fit(&mut t, &opts, &mut Run::quiet().with(EarlyStop { patience: 5, min_delta: 1.0 })).unwrap();
        assert_eq!(r.step, 6);
    }

    /// A non-finite loss is reported as divergence at its step, and EMA on a trainer without
    /// it is refused before the first step.
    #[test]
    fn divergence_and_unsupported_ema() {
        struct Blows;
        impl Trainer for Blows {
            fn kind(&self) -> &'static str {
                "blows"
            }
            fn config(&self) -> serde_json::Value {
                serde_json::Value::Null
            }
            fn step(&mut self, step: usize, _lr: f64, _rng: &mut StdRng) -> Result<Vec<f64>> {
                Ok(vec![if step == 3 { f64::NAN } else { 1.0 }])
            }
            fn save(&self, _w: &mut CheckpointWriter) -> Result<()> {
                Ok(())
            }
            fn load(&mut self, _r: &CheckpointReader) -> Result<()> {
                Ok(())
            }
        }
        assert!(matches!(fit(&mut Blows, &RunOptions::default(), &mut Run::quiet()), Err(Error::Diverged { iteration: 3, .. })));
        assert!(matches!(fit(&mut Blows, &RunOptions { ema: Some(0.9), ..Default::default() }, &mut Run::quiet()), Err(Error::Unsupported(_))));
    }

    /// A trainer that reports convergence stops the loop after that step.
    #[test]
    fn convergence_stops_the_loop() {
        struct Converges(usize);
        impl Trainer for Converges {
            fn kind(&self) -> &'static str {
                "converges"
            }
            fn config(&self) -> serde_json::Value {
                serde_json::Value::Null
            }
            fn step(&mut self, _step: usize, _lr: f64, _rng: &mut StdRng) -> Result<Vec<f64>> {
                self.0 += 1;
                Ok(vec![1.0 / self.0 as f64])
            }
            fn converged(&self) -> bool {
                self.0 >= 4
            }
            fn save(&self, _w: &mut CheckpointWriter) -> Result<()> {
                Ok(())
            }
            fn load(&mut self, _r: &CheckpointReader) -> Result<()> {
                Ok(())
            }
        }
        let r = fit(&mut Converges(0), &RunOptions { steps: 10, log_every: 1, ..Default::default() }, &mut Run::quiet()).unwrap();
        assert_eq!((r.step, r.converged, r.stopped_early, r.log.len()), (4, true, true, 4));
    }
}
