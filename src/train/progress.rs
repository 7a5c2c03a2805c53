//! The progress bar of long runs (training, ensembles, dataset generation).
//!
//! With the `cli` feature (on by default) it is an indicatif bar on stderr, drawn only when
//! stderr is a terminal. A library build without the feature keeps the same type and calls,
//! and draws nothing: a simulation code that links physflow does not compile indicatif.

/// A progress counter: an indicatif bar with the `cli` feature, nothing without it.
#[derive(Clone, Debug)]
pub struct Progress {
    #[cfg(feature = "cli")]
    bar: indicatif::ProgressBar,
}

/// A progress bar for `total` iterations labelled `what` that shows a message (the current
/// loss); hidden when `quiet`.
pub fn progress(total: u64, what: &str, quiet: bool) -> Progress {
    if quiet {
        return Progress::hidden();
    }
    #[cfg(feature = "cli")]
    {
        let bar = indicatif::ProgressBar::new(total);
        // The template is a constant that parses; `default_bar` is the fallback should it not.
        let style = indicatif::ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} {msg} ({elapsed}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(what.to_string());
        Progress { bar }
    }
    #[cfg(not(feature = "cli"))]
    {
        let _ = (total, what);
        Progress::hidden()
    }
}

impl Progress {
    /// A bar that draws nothing.
    pub fn hidden() -> Self {
        Progress {
            #[cfg(feature = "cli")]
            bar: indicatif::ProgressBar::hidden(),
        }
    }

    /// Whether nothing is drawn (quiet, stderr not a terminal, or no `cli` feature): callers
    /// then print plain log lines instead.
    pub fn is_hidden(&self) -> bool {
        #[cfg(feature = "cli")]
        return self.bar.is_hidden();
        #[cfg(not(feature = "cli"))]
        true
    }

    /// Advance by `n`.
    pub fn inc(&self, n: u64) {
        #[cfg(feature = "cli")]
        self.bar.inc(n);
        #[cfg(not(feature = "cli"))]
        let _ = n;
    }

    /// Set the position to `pos` (a resumed run starts where it stopped).
    pub fn set_position(&self, pos: u64) {
        #[cfg(feature = "cli")]
        self.bar.set_position(pos);
        #[cfg(not(feature = "cli"))]
        let _ = pos;
    }

    /// Show `msg` after the counter.
    pub fn set_message(&self, msg: String) {
        #[cfg(feature = "cli")]
        self.bar.set_message(msg);
        #[cfg(not(feature = "cli"))]
        let _ = msg;
    }

    /// Remove the bar (the run finished).
    pub fn finish_and_clear(&self) {
        #[cfg(feature = "cli")]
        self.bar.finish_and_clear();
    }

    /// Leave the bar where it stopped (the run failed).
    pub fn abandon(&self) {
        #[cfg(feature = "cli")]
        self.bar.abandon();
    }
}
