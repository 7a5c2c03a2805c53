//! The crate's error type: every fallible public call returns `Result<T, Error>`,
//! and each variant carries the facts a user needs to change something.

use thiserror::Error;

/// Errors raised by physflow.
#[derive(Debug, Error)]
pub enum Error {
    /// An argument is outside its domain (`rtol <= 0`, `t1 == t0`, non-monotone times, ...).
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// The argument's name as it appears in the API.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A state, derivative or gradient contained NaN or ±inf.
    #[error("non-finite value in {what} at step {step} (t = {t}); the field may blow up, try a smaller step or tolerance")]
    NonFinite {
        /// Which quantity was non-finite (`"y0"`, `"state"`, `"adjoint state"`, ...).
        what: &'static str,
        /// Accepted steps taken before it was found.
        step: usize,
        /// Time at which it was found.
        t: f64,
    },
    /// Input data (training fields, samples, weights, energies given to a call) held NaN or
    /// ±inf: the values came in that way, unlike [`Error::NonFinite`], a numerical blow-up.
    #[error("non-finite value in {what} at index {index}; check the data")]
    NonFiniteInput {
        /// Which input (`"training data"`, `"log weights"`, ...).
        what: &'static str,
        /// Row, sample or entry where it was found.
        index: usize,
    },
    /// The adaptive step size fell below the resolution of the time variable.
    #[error("step size underflow at t = {t} (h = {h:e}); the problem may be stiff or singular there")]
    StepSizeUnderflow {
        /// Time at which it happened.
        t: f64,
        /// The rejected step size.
        h: f64,
    },
    /// The solver used up its step budget before reaching the final time.
    #[error("maximum number of steps ({max_steps}) reached at t = {t}; increase `max_steps` or loosen the tolerances")]
    MaxStepsReached {
        /// The budget in force.
        max_steps: usize,
        /// Time reached.
        t: f64,
    },
    /// The solve ran past its wall-clock budget (`max_wall_seconds`).
    #[error("time limit of {seconds} s reached at t = {t} after {steps} steps; raise `max_wall_seconds` or loosen the tolerances")]
    TimeLimitReached {
        /// The budget in force, seconds.
        seconds: f64,
        /// Time reached.
        t: f64,
        /// Accepted steps taken.
        steps: usize,
    },
    /// A feature combination that is not implemented.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A shape did not match what the call needs.
    #[error("shape mismatch in {what}: expected {expected:?}, got {got:?}")]
    Shape {
        /// Which argument.
        what: String,
        /// Expected shape.
        expected: Vec<usize>,
        /// Shape found.
        got: Vec<usize>,
    },
    /// A device could not be created, configured or read back, or a command does not run on it.
    #[error("device `{device}`: {reason}")]
    Device {
        /// The device as the user named it (`cpu`, `wgpu`, `cuda`) or as burn prints it.
        device: String,
        /// What failed, and what to do about it.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file concerned.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file's contents could not be parsed.
    #[error("format error in {path}: {reason}")]
    Format {
        /// The file concerned.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// An HDF5 file could not be opened or an object in it could not be read or
    /// written (truncated or corrupt file, unsupported layout, filter failure).
    #[error("HDF5 error in {file}, object `{object}`: {reason}")]
    Hdf5 {
        /// The file concerned.
        file: String,
        /// The group or dataset path inside the file (`/` for the file itself).
        object: String,
        /// What went wrong, as the backend reports it.
        reason: String,
    },
    /// A dataset a layout needs is not in the file.
    #[error("{file}: dataset `{dataset}` is missing{}", hint_text(.hint))]
    MissingDataset {
        /// The file concerned.
        file: String,
        /// The dataset path that was looked for.
        dataset: String,
        /// What the file has instead, when that helps.
        hint: String,
    },
    /// A dataset has the wrong rank, extent or element type for its layout.
    #[error("{file}: dataset `{dataset}` is {got}, expected {expected}")]
    DatasetMismatch {
        /// The file concerned.
        file: String,
        /// The dataset path.
        dataset: String,
        /// What the layout needs (`rank 3 [N, T, X]`, `float`, `[16]`).
        expected: String,
        /// What the file holds.
        got: String,
    },
    /// A sharded dataset's manifest disagrees with the request or with its shards.
    #[error("manifest {manifest}: {reason}")]
    Manifest {
        /// The manifest file.
        manifest: String,
        /// What disagrees.
        reason: String,
    },
    /// Training produced a non-finite loss or gradient.
    #[error("training diverged at iteration {iteration}: loss = {loss}")]
    Diverged {
        /// Iteration at which it happened.
        iteration: usize,
        /// The loss value seen.
        loss: f64,
    },
    /// A diffsol integration of a physical system failed (step size too small,
    /// too many error-test or Newton failures, a sensitivity solve failed).
    #[error("integration of `{system}` failed{}: {reason}", at_time(*.t))]
    SolverFailed {
        /// The system's name.
        system: String,
        /// The time at which it failed, when the solver says.
        t: Option<f64>,
        /// The solver's reason.
        reason: String,
    },
    /// A constraint projection did not reach its tolerance.
    #[error("projection onto `{constraint}` did not converge: residual {residual:e} after {iterations} Gauss–Newton iterations; raise `max_iter`, loosen `tol`, or check that the constraints are consistent")]
    ProjectionFailed {
        /// The constraint's name.
        constraint: String,
        /// `max |h_r|` reached.
        residual: f64,
        /// Iterations taken.
        iterations: usize,
    },
    /// A time step violates the stability limit of an explicit scheme (the CFL condition of an
    /// advection term), checked before the step is taken.
    #[error("time step of `{system}` at t = {t} violates the CFL condition: Courant number {courant:.3} > {limit}; take a smaller step (or a smaller `cfl`)")]
    Unstable {
        /// The solver's name.
        system: String,
        /// Time at which the step starts.
        t: f64,
        /// `Δt (|u|_max + |v|_max) / h` of the step.
        courant: f64,
        /// The largest Courant number the scheme accepts.
        limit: f64,
    },
    /// A plot could not be drawn (only the `cli` feature's `plot` module draws).
    #[cfg(feature = "cli")]
    #[error("plot error: {0}")]
    Plot(String),
}

fn hint_text(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(" ({hint})")
    }
}

fn at_time(t: Option<f64>) -> String {
    t.map(|t| format!(" at t = {t}")).unwrap_or_default()
}

/// `Result` with the crate's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument { name, reason: reason.into() }
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}
