//! Solving a [`System`] with diffsol: options, trajectories, error mapping.

use diffsol::error::{DiffsolError, OdeSolverError};
use diffsol::{
    DefaultDenseMatrix, DefaultSolver, DenseMatrix, FaerSparseMat, Matrix, NalgebraMat, OdeBuilder,
    OdeSolverMethod, OdeSolverStopReason,
};
use diffsol::matrix::MatrixRef;
use diffsol::VectorRef;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::system::{check_inputs, JacobianKind, System};
use crate::{Error, Result};

/// The diffsol integrators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Variable-order BDF / NDF (Shampine & Reichelt 1997, as in ode15s and scipy): stiff problems.
    #[default]
    Bdf,
    /// ESDIRK3(4) (Jørgensen, Kristensen & Thomsen 2018): stiff, L-stable, one-step.
    Esdirk34,
    /// TR-BDF2 (Hosea & Shampine 1996): stiff, low order, cheap steps.
    TrBdf2,
    /// Tsitouras 5(4) (Tsitouras 2011): explicit, for non-stiff problems.
    Tsit45,
}

impl Method {
    /// Every method; the tests loop over this list.
    pub const ALL: [Method; 4] = [Method::Bdf, Method::Esdirk34, Method::TrBdf2, Method::Tsit45];

    /// Whether the method solves a nonlinear system each step (and so uses the Jacobian).
    pub fn is_implicit(self) -> bool {
        self != Method::Tsit45
    }

    /// Parses `bdf`, `esdirk34`, `tr_bdf2` (or `trbdf2`), `tsit45`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "bdf" => Ok(Method::Bdf),
            "esdirk34" => Ok(Method::Esdirk34),
            "tr_bdf2" | "trbdf2" => Ok(Method::TrBdf2),
            "tsit45" | "tsit5" => Ok(Method::Tsit45),
            other => Err(Error::invalid("method", format!("unknown method `{other}` (bdf, esdirk34, tr_bdf2, tsit45)"))),
        }
    }
}

/// How to integrate: method, Jacobian storage, tolerances.
///
/// The local error test is `‖e_i / (atol + rtol |y_i|)‖_rms ≤ 1` (diffsol's norm).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimOptions {
    /// The integrator.
    pub method: Method,
    /// Dense or sparse Jacobian (implicit methods only).
    pub jacobian: JacobianKind,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance (one value for every component).
    pub atol: f64,
    /// Initial time `t₀`; every output time must be `≥ t₀`.
    pub t0: f64,
    /// First step size; `None` lets diffsol choose (1.0, shrunk by the error test).
    pub h0: Option<f64>,
    /// Smallest step before the solve fails with [`Error::SolverFailed`]; `None` keeps diffsol's default (1e-13).
    pub min_step: Option<f64>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions { method: Method::Bdf, jacobian: JacobianKind::Auto, rtol: 1e-6, atol: 1e-8, t0: 0.0, h0: None, min_step: None }
    }
}

impl SimOptions {
    /// The same options with another method.
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// The same options with `rtol` and `atol` replaced.
    pub fn with_tolerances(mut self, rtol: f64, atol: f64) -> Self {
        self.rtol = rtol;
        self.atol = atol;
        self
    }

    pub(crate) fn check(&self, times: &[f64]) -> Result<()> {
        if !(self.rtol > 0.0 && self.rtol.is_finite()) {
            return Err(Error::invalid("rtol", format!("must be positive and finite, got {}", self.rtol)));
        }
        if !(self.atol > 0.0 && self.atol.is_finite()) {
            return Err(Error::invalid("atol", format!("must be positive and finite, got {}", self.atol)));
        }
        if let Some(h0) = self.h0 {
            if !(h0 > 0.0 && h0.is_finite()) {
                return Err(Error::invalid("h0", format!("must be positive and finite, got {h0}")));
            }
        }
        if times.is_empty() {
            return Err(Error::invalid("times", "no output times"));
        }
        if times.iter().any(|t| !t.is_finite()) {
            return Err(Error::invalid("times", "output times must be finite"));
        }
        if times[0] < self.t0 {
            return Err(Error::invalid("times", format!("first output time {} is before t0 = {}", times[0], self.t0)));
        }
        if times.windows(2).any(|w| w[1] <= w[0]) {
            return Err(Error::invalid("times", "output times must be strictly increasing"));
        }
        if *times.last().unwrap() <= self.t0 {
            return Err(Error::invalid("times", format!("last output time must be after t0 = {}", self.t0)));
        }
        Ok(())
    }

    /// The storage actually used for `system`.
    pub fn jacobian_for(&self, system: &dyn System) -> JacobianKind {
        match self.jacobian {
            JacobianKind::Auto => match system.jacobian_kind() {
                JacobianKind::Auto => JacobianKind::Dense,
                kind => kind,
            },
            kind => kind,
        }
    }
}

/// Counters of one solve (diffsol's statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Accepted steps.
    pub steps: usize,
    /// Steps rejected by the error test.
    pub error_test_failures: usize,
    /// Newton iterations (implicit methods).
    pub newton_iterations: usize,
    /// Jacobian evaluations + LU factorisations (implicit methods).
    pub linear_solver_setups: usize,
}

impl SimStats {
    pub(crate) fn from_diffsol(s: &diffsol::ode_solver::OdeSolverStatistics) -> Self {
        SimStats {
            steps: s.number_of_steps,
            error_test_failures: s.number_of_error_test_failures,
            newton_iterations: s.number_of_nonlinear_solver_iterations,
            linear_solver_setups: s.number_of_linear_solver_setups,
        }
    }
}

/// A solution at the requested times.
#[derive(Clone, Debug)]
pub struct Trajectory {
    /// Output times, `[T]`.
    pub times: Vec<f64>,
    /// States, `[T, D]`: row `k` is `y(times[k])`.
    pub states: Array2<f64>,
    /// Solver counters.
    pub stats: SimStats,
}

/// Solves `system` with its own parameters and initial state at `times`.
///
/// ```
/// use physflow::sim::{self, systems::Robertson, SimOptions};
/// let rob = Robertson::default();
/// let traj = sim::simulate(&rob, &[0.0, 40.0], &SimOptions::default()).unwrap();
/// // y1 + y2 + y3 = 1 is conserved (Robertson 1966).
/// let sum: f64 = traj.states.row(1).sum();
/// assert!((sum - 1.0).abs() < 1e-8);
/// ```
pub fn simulate(system: &dyn System, times: &[f64], opts: &SimOptions) -> Result<Trajectory> {
    simulate_with(system, &system.params(), &system.initial_state(), times, opts)
}

/// Solves `system` with parameters `p` and initial state `y0` (at `opts.t0`) at `times`.
pub fn simulate_with(system: &dyn System, p: &[f64], y0: &[f64], times: &[f64], opts: &SimOptions) -> Result<Trajectory> {
    check_inputs(system, p, y0)?;
    opts.check(times)?;
    let (data, stats) = match opts.jacobian_for(system) {
        JacobianKind::Sparse => plain::<FaerSparseMat<f64>>(system, p, y0, times, opts),
        _ => plain::<NalgebraMat<f64>>(system, p, y0, times, opts),
    }
    .map_err(|e| solver_error(system, e))?;
    finish(system, times, data, stats)
}

/// Checks a `[T·D]` row-major result for non-finite values and wraps it.
pub(crate) fn finish(system: &dyn System, times: &[f64], data: Vec<f64>, stats: SimStats) -> Result<Trajectory> {
    let d = system.dim();
    if let Some(k) = data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite { what: "state", step: stats.steps, t: times[k / d] });
    }
    let states = Array2::from_shape_vec((times.len(), d), data).expect("solver output has T·D values");
    Ok(Trajectory { times: times.to_vec(), states, stats })
}

/// A builder with the options' tolerances and `t₀` (the closures are added by the caller).
pub(crate) fn builder<M: Matrix<T = f64>>(opts: &SimOptions, p: &[f64]) -> OdeBuilder<M> {
    let b = OdeBuilder::<M>::new().t0(opts.t0).rtol(opts.rtol).atol([opts.atol]).p(p.to_vec());
    match opts.h0 {
        Some(h0) => b.h0(h0),
        None => b,
    }
}

/// Applies the options that diffsol keeps on the problem rather than the builder.
pub(crate) fn apply_problem_options<Eqn: diffsol::OdeEquations<T = f64>>(
    problem: &mut diffsol::OdeSolverProblem<Eqn>,
    opts: &SimOptions,
) {
    if let Some(h) = opts.min_step {
        problem.ode_options.min_timestep = h;
    }
}

/// Copies a diffsol `[D, T]` column-per-time matrix into `[T, D]` row-major values.
pub(crate) fn columns_to_rows<DM: DenseMatrix<T = f64>>(m: &DM) -> Vec<f64> {
    let (d, t) = (m.nrows(), m.ncols());
    let mut out = Vec::with_capacity(d * t);
    for j in 0..t {
        for i in 0..d {
            out.push(m.get_index(i, j));
        }
    }
    out
}

/// Runs `$body` with `$s` bound to a fresh solver of `$method` for `$problem`.
macro_rules! with_solver {
    ($problem:expr, $method:expr, $ls:ty, |$s:ident| $body:expr) => {
        match $method {
            Method::Bdf => {
                let mut $s = $problem.bdf::<$ls>()?;
                $body
            }
            Method::Esdirk34 => {
                let mut $s = $problem.esdirk34::<$ls>()?;
                $body
            }
            Method::TrBdf2 => {
                let mut $s = $problem.tr_bdf2::<$ls>()?;
                $body
            }
            Method::Tsit45 => {
                let mut $s = $problem.tsit45()?;
                $body
            }
        }
    };
}

fn plain<M>(system: &dyn System, p: &[f64], y0: &[f64], times: &[f64], opts: &SimOptions) -> Result<(Vec<f64>, SimStats), DiffsolError>
where
    M: Matrix<T = f64> + DefaultSolver,
    M::V: DefaultDenseMatrix,
    for<'b> &'b M::V: VectorRef<M::V>,
    for<'b> &'b M: MatrixRef<M>,
{
    let n = system.dim();
    let mut problem = builder::<M>(opts, p)
        .rhs_implicit(
            |x: &[f64], p: &[f64], t: f64, y: &mut [f64]| system.rhs(t, x, p, y),
            |x: &[f64], p: &[f64], t: f64, v: &[f64], y: &mut [f64]| system.jvp(t, x, p, v, y),
        )
        .init(|_p: &[f64], _t: f64, y: &mut [f64]| y.copy_from_slice(y0), n)
        .build()?;
    apply_problem_options(&mut problem, opts);
    with_solver!(problem, opts.method, M::LS, |s| {
        let (ys, stop) = s.solve_dense(times)?;
        check_stop(&stop)?;
        Ok((columns_to_rows(&ys), SimStats::from_diffsol(s.get_statistics())))
    })
}

/// A root-finding stop cannot happen (no roots are given); anything else is a failure.
pub(crate) fn check_stop(stop: &OdeSolverStopReason<f64>) -> Result<(), DiffsolError> {
    match stop {
        OdeSolverStopReason::TstopReached | OdeSolverStopReason::InternalTimestep => Ok(()),
        OdeSolverStopReason::RootFound(t, _) => Err(DiffsolError::Other(format!("unexpected root at t = {t}"))),
    }
}

/// Maps a diffsol error to [`Error::SolverFailed`] with the system's name and the time.
pub(crate) fn solver_error(system: &dyn System, e: DiffsolError) -> Error {
    let t = match &e {
        DiffsolError::OdeSolverError(
            OdeSolverError::StepSizeTooSmall { time }
            | OdeSolverError::TooManyErrorTestFailures { time, .. }
            | OdeSolverError::TooManyNonlinearSolverFailures { time, .. },
        ) => Some(*time),
        _ => None,
    };
    Error::SolverFailed { system: system.name(), t, reason: e.to_string() }
}
