//! Solving a [`System`] with diffsol: options, trajectories, error mapping.

use diffsol::error::{DiffsolError, OdeSolverError};
use diffsol::matrix::MatrixRef;
use diffsol::VectorRef;
use diffsol::{
    DefaultDenseMatrix, DefaultSolver, DenseMatrix, FaerSparseMat, Matrix, NalgebraMat, OdeBuilder, OdeEquations, OdeSolverMethod, OdeSolverStopReason, Op,
    Vector,
};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::equations::PatternEqn;
use super::events::{crosses, locate, Action, Event, EventHit};
use super::system::{check_inputs, JacobianKind, System};
use crate::{Error, Result};

/// The diffsol integrators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Integrator {
    /// Variable-order BDF / NDF (Shampine & Reichelt 1997, as in ode15s and scipy): stiff problems.
    #[default]
    Bdf,
    /// ESDIRK3(4) (Jørgensen, Kristensen & Thomsen 2018): stiff, L-stable, one-step.
    Esdirk34,
    /// TR-BDF2 (Hosea & Shampine 1996): stiff, low order, cheap steps.
    #[cfg_attr(feature = "cli", value(name = "tr_bdf2", alias = "trbdf2", alias = "tr-bdf2"))]
    TrBdf2,
    /// Tsitouras 5(4) (Tsitouras 2011): explicit, for non-stiff problems.
    Tsit45,
}

impl Integrator {
    /// Every method; the tests loop over this list.
    pub const ALL: [Integrator; 4] = [Integrator::Bdf, Integrator::Esdirk34, Integrator::TrBdf2, Integrator::Tsit45];

    /// Whether the method solves a nonlinear system each step (and so uses the Jacobian).
    pub fn is_implicit(self) -> bool {
        self != Integrator::Tsit45
    }

    /// Parses `bdf`, `esdirk34`, `tr_bdf2` (or `trbdf2`), `tsit45`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "bdf" => Ok(Integrator::Bdf),
            "esdirk34" => Ok(Integrator::Esdirk34),
            "tr_bdf2" | "trbdf2" => Ok(Integrator::TrBdf2),
            "tsit45" | "tsit5" => Ok(Integrator::Tsit45),
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
    pub method: Integrator,
    /// Dense or sparse Jacobian (implicit methods only).
    pub jacobian: JacobianKind,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance (one value for every component, unless `atol_components` is given).
    pub atol: f64,
    /// Absolute tolerance per state component (length `D`), for states of different
    /// scales (concentrations of 1 and 1e-6 in one system); replaces `atol`.
    pub atol_components: Option<Vec<f64>>,
    /// Relative tolerance of the adjoint's parameter-gradient quadrature
    /// `dG/dp = ∫ λᵀ ∂f/∂p dt` in [`super::adjoint_gradient`]; `None` leaves the
    /// quadrature out of the backward pass's error control (its steps then follow
    /// the adjoint state alone). The adjoint state itself uses `rtol` and the
    /// absolute tolerances (diffsol's backward pass has no separate ones).
    pub quadrature_rtol: Option<f64>,
    /// Absolute tolerance of that quadrature, in the units of `dG/dp`; required
    /// with `quadrature_rtol` (the gradient starts at 0, so a purely relative
    /// test would ask for exact steps).
    pub quadrature_atol: Option<f64>,
    /// Initial time `t₀`; every output time must be `≥ t₀`.
    pub t0: f64,
    /// First step size; `None` lets diffsol choose (1.0, shrunk by the error test).
    pub h0: Option<f64>,
    /// Smallest step before the solve fails with [`Error::SolverFailed`]; `None` keeps diffsol's default (1e-13).
    pub min_step: Option<f64>,
    /// Accepted steps allowed before the solve fails with [`Error::MaxStepsReached`]; `None`: no limit.
    pub max_steps: Option<usize>,
    /// Wall-clock seconds allowed before the solve fails with [`Error::TimeLimitReached`]
    /// (checked between steps); `None`: no limit.
    pub max_wall_seconds: Option<f64>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            method: Integrator::Bdf,
            jacobian: JacobianKind::Auto,
            rtol: 1e-6,
            atol: 1e-8,
            atol_components: None,
            quadrature_rtol: None,
            quadrature_atol: None,
            t0: 0.0,
            h0: None,
            min_step: None,
            max_steps: None,
            max_wall_seconds: None,
        }
    }
}

impl SimOptions {
    /// The same options with another method.
    pub fn with_method(mut self, method: Integrator) -> Self {
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
        for (name, v) in [("quadrature_rtol", self.quadrature_rtol), ("quadrature_atol", self.quadrature_atol)] {
            if let Some(v) = v {
                if !(v > 0.0 && v.is_finite()) {
                    return Err(Error::invalid(name, format!("must be positive and finite, got {v}")));
                }
            }
        }
        if self.quadrature_rtol.is_some() != self.quadrature_atol.is_some() {
            return Err(Error::invalid("quadrature_atol", "give both quadrature_rtol and quadrature_atol, or neither"));
        }
        if let Some(h) = self.min_step {
            if !(h > 0.0 && h.is_finite()) {
                return Err(Error::invalid("min_step", format!("must be positive and finite, got {h}")));
            }
        }
        if self.max_steps == Some(0) {
            return Err(Error::invalid("max_steps", "must be at least 1"));
        }
        if let Some(w) = self.max_wall_seconds {
            if !(w > 0.0 && w.is_finite()) {
                return Err(Error::invalid("max_wall_seconds", format!("must be positive and finite, got {w}")));
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

    /// Checks what depends on the system: the length and values of `atol_components`.
    pub(crate) fn check_for(&self, system: &dyn System) -> Result<()> {
        if let Some(a) = &self.atol_components {
            if a.len() != system.dim() {
                return Err(Error::Shape { what: format!("atol_components of `{}`", system.name()), expected: vec![system.dim()], got: vec![a.len()] });
            }
            if let Some(i) = a.iter().position(|v| !(*v > 0.0 && v.is_finite())) {
                return Err(Error::invalid("atol_components", format!("component {i} is {}; each must be positive and finite", a[i])));
            }
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
    /// Evaluations of the right-hand side `f` (plain solves; 0 where not counted).
    #[serde(default)]
    pub rhs_evaluations: usize,
    /// Jacobian–vector products `J v` (dense Jacobians are assembled from them).
    #[serde(default)]
    pub jacobian_products: usize,
}

impl SimStats {
    pub(crate) fn from_diffsol(s: &diffsol::ode_solver::OdeSolverStatistics) -> Self {
        SimStats {
            steps: s.number_of_steps,
            error_test_failures: s.number_of_error_test_failures,
            newton_iterations: s.number_of_nonlinear_solver_iterations,
            linear_solver_setups: s.number_of_linear_solver_setups,
            rhs_evaluations: 0,
            jacobian_products: 0,
        }
    }

    /// The solver's counters and the right-hand side's evaluation counts.
    fn from_solver<'a, Eqn: OdeEquations<T = f64> + 'a, S: OdeSolverMethod<'a, Eqn>>(s: &S) -> Self {
        let rhs = s.problem().eqn.rhs().statistics();
        SimStats { rhs_evaluations: rhs.number_of_calls, jacobian_products: rhs.number_of_jac_muls, ..SimStats::from_diffsol(s.get_statistics()) }
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
    Ok(simulate_events(system, p, y0, times, &[], opts)?.trajectory)
}

/// A solve with events: the trajectory up to where it ended, and the crossings.
#[derive(Clone, Debug)]
pub struct EventTrajectory {
    /// The states at the output times reached (all of them unless a terminal
    /// event stopped the solve first).
    pub trajectory: Trajectory,
    /// Every crossing, in time order.
    pub events: Vec<EventHit>,
    /// The time of the terminal event that ended the solve, if one did.
    pub stopped_at: Option<f64>,
}

/// Solves `system` with parameters `p` and initial state `y0` at `times`,
/// locating the zero crossings of each event's `g(t, y, p)` on the way
/// (module [`super::events`]): crossings are recorded, a terminal event ends
/// the solve (output times after it are not returned), a reset restarts the
/// integrator from the reset state.
///
/// ```
/// use physflow::prelude::*;
/// use physflow::sim::{Direction, Event};
///
/// /// A ball under gravity, state [height, velocity].
/// struct Fall;
/// impl Rhs for Fall {
///     fn eval<S: Scalar>(&self, _t: f64, y: &[S], p: &[S], dy: &mut [S]) {
///         dy[0] = y[1];
///         dy[1] = -p[0];
///     }
/// }
/// let ball = ClosureSystem::new("ball", Fall, vec![1.0, 0.0]).param("g", 9.81);
/// let ground = Event::new("ground", |_t, y, _p| y[0]).direction(Direction::Falling).terminal();
/// let opts = SimOptions { method: Integrator::Tsit45, rtol: 1e-10, atol: 1e-12, ..SimOptions::default() };
/// let out = sim::simulate_events(&ball, &[9.81], &[1.0, 0.0], &[0.1, 1.0], &[ground], &opts)?;
/// let t_hit = (2.0f64 / 9.81).sqrt();
/// assert!((out.stopped_at.unwrap() - t_hit).abs() < 1e-9);
/// assert_eq!(out.trajectory.times, vec![0.1]);
/// # Ok::<(), physflow::Error>(())
/// ```
pub fn simulate_events(system: &dyn System, p: &[f64], y0: &[f64], times: &[f64], events: &[Event<'_>], opts: &SimOptions) -> Result<EventTrajectory> {
    check_inputs(system, p, y0)?;
    opts.check(times)?;
    opts.check_for(system)?;
    let driven = match opts.jacobian_for(system) {
        JacobianKind::Sparse => match system.jacobian_pattern() {
            Some(rows) => with_pattern::<FaerSparseMat<f64>>(system, p, y0, &rows, times, events, opts),
            None => plain::<FaerSparseMat<f64>>(system, p, y0, times, events, opts),
        },
        _ => plain::<NalgebraMat<f64>>(system, p, y0, times, events, opts),
    }
    .map_err(|f| match f {
        Fail::Solver(e) => solver_error(system, e),
        Fail::Ours(e) => e,
    })?;
    let reached = &times[..driven.data.len() / system.dim()];
    let trajectory = finish(system, reached, driven.data, driven.stats)?;
    Ok(EventTrajectory { trajectory, events: driven.hits, stopped_at: driven.stopped_at })
}

/// Checks a `[T·D]` row-major result for non-finite values and wraps it.
pub(crate) fn finish(system: &dyn System, times: &[f64], data: Vec<f64>, stats: SimStats) -> Result<Trajectory> {
    let d = system.dim();
    if let Some(k) = data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite { what: "state", step: stats.steps, t: times[k / d] });
    }
    let states = Array2::from_shape_vec((times.len(), d), data).map_err(|e| Error::invalid("times", format!("solver output does not fill [T, D]: {e}")))?;
    Ok(Trajectory { times: times.to_vec(), states, stats })
}

/// A builder with the options' tolerances and `t₀` (the closures are added by the caller).
pub(crate) fn builder<M: Matrix<T = f64>>(opts: &SimOptions, p: &[f64]) -> OdeBuilder<M> {
    let atol = opts.atol_components.clone().unwrap_or_else(|| vec![opts.atol]);
    let b = OdeBuilder::<M>::new().t0(opts.t0).rtol(opts.rtol).atol(atol).p(p.to_vec());
    match opts.h0 {
        Some(h0) => b.h0(h0),
        None => b,
    }
}

/// Applies the options that diffsol keeps on the problem rather than the builder.
pub(crate) fn apply_problem_options<Eqn: diffsol::OdeEquations<T = f64>>(problem: &mut diffsol::OdeSolverProblem<Eqn>, opts: &SimOptions) {
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
            Integrator::Bdf => {
                let mut $s = $problem.bdf::<$ls>()?;
                $body
            }
            Integrator::Esdirk34 => {
                let mut $s = $problem.esdirk34::<$ls>()?;
                $body
            }
            Integrator::TrBdf2 => {
                let mut $s = $problem.tr_bdf2::<$ls>()?;
                $body
            }
            Integrator::Tsit45 => {
                let mut $s = $problem.tsit45()?;
                $body
            }
        }
    };
}

/// A failure inside a solve: diffsol's (mapped to [`Error::SolverFailed`] by
/// the caller, who knows the system) or one of ours (budgets, events).
pub(crate) enum Fail {
    Solver(DiffsolError),
    Ours(Error),
}

impl From<DiffsolError> for Fail {
    fn from(e: DiffsolError) -> Self {
        Fail::Solver(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Ours(e)
    }
}

/// What a driven solve produced: `[T', D]` rows for the output times reached.
struct Driven {
    data: Vec<f64>,
    stats: SimStats,
    hits: Vec<EventHit>,
    stopped_at: Option<f64>,
}

fn plain<M>(system: &dyn System, p: &[f64], y0: &[f64], times: &[f64], events: &[Event<'_>], opts: &SimOptions) -> Result<Driven, Fail>
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
    with_solver!(problem, opts.method, M::LS, |s| drive(&mut s, system, p, times, events, opts))
}

/// [`plain`] for a system that gives its Jacobian pattern: no probe, coloured assembly.
fn with_pattern<M>(
    system: &dyn System,
    p: &[f64],
    y0: &[f64],
    rows: &[Vec<u32>],
    times: &[f64],
    events: &[Event<'_>],
    opts: &SimOptions,
) -> Result<Driven, Fail>
where
    M: Matrix<T = f64> + DefaultSolver,
    M::V: DefaultDenseMatrix,
    for<'b> &'b M::V: VectorRef<M::V>,
    for<'b> &'b M: MatrixRef<M>,
{
    let eqn = PatternEqn::<M>::new(system, p, y0, rows, M::C::default())?;
    let mut problem = builder::<M>(opts, p).build_from_eqn(eqn)?;
    apply_problem_options(&mut problem, opts);
    with_solver!(problem, opts.method, M::LS, |s| drive(&mut s, system, p, times, events, opts))
}

/// Steps `s` to the last output time, writing the states at `times` from the
/// dense output, handling event crossings, and enforcing the step and
/// wall-clock budgets between steps.
fn drive<'a, Eqn, S>(s: &mut S, system: &dyn System, p: &[f64], times: &[f64], events: &[Event<'_>], opts: &SimOptions) -> Result<Driven, Fail>
where
    Eqn: OdeEquations<T = f64> + 'a,
    S: OdeSolverMethod<'a, Eqn>,
{
    let n = system.dim();
    let t_end = times[times.len() - 1];
    s.set_stop_time(t_end)?;
    let started = std::time::Instant::now();
    let mut data = Vec::with_capacity(times.len() * n);
    let mut col = 0;
    let mut hits = Vec::new();
    let eval_g = |k: usize, t: f64, y: &[f64]| -> Result<f64, Fail> {
        let v = (events[k].g)(t, y, p);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(Error::invalid("events", format!("event `{}` is {v} at t = {t}", events[k].name)).into())
        }
    };
    let all_g = |t: f64, y: &[f64]| (0..events.len()).map(|k| eval_g(k, t, y)).collect::<Result<Vec<f64>, Fail>>();
    let mut t_prev = s.state().t;
    let mut g_prev = all_g(t_prev, &s.state().y.clone_as_vec())?;
    let mut steps = 0usize;
    loop {
        if let Some(max_steps) = opts.max_steps {
            if steps >= max_steps {
                return Err(Error::MaxStepsReached { max_steps, t: t_prev }.into());
            }
        }
        if let Some(limit) = opts.max_wall_seconds {
            if started.elapsed().as_secs_f64() > limit {
                return Err(Error::TimeLimitReached { seconds: limit, t: t_prev, steps }.into());
            }
        }
        let reason = s.step()?;
        steps += 1;
        let t_now = s.state().t;
        if !events.is_empty() {
            let g_now = all_g(t_now, &s.state().y.clone_as_vec())?;
            let mut found = Vec::new();
            for (k, e) in events.iter().enumerate() {
                let mut g_at = |t: f64| -> Result<f64> {
                    let y = s.interpolate(t).map_err(|e| solver_error(system, e))?.clone_as_vec();
                    Ok((e.g)(t, &y, p))
                };
                // Starting on the surface (after a reset onto it), the sign that
                // counts is the one just after the start, as in SUNDIALS: a step
                // that leaves zero upwards and comes back down is a crossing.
                let (mut ta, mut ga) = (t_prev, g_prev[k]);
                if ga == 0.0 && t_now > t_prev {
                    ta = t_prev + 1e-8 * (t_now - t_prev) + 100.0 * f64::EPSILON * t_prev.abs();
                    ga = g_at(ta.min(t_now))?;
                }
                if crosses(ga, g_now[k], e.direction) {
                    found.push((locate(ta, ga, t_now, g_now[k], &mut g_at)?, k));
                }
            }
            found.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut restarted = false;
            for (t_hit, k) in found {
                write_until(s, times, t_hit, &mut col, &mut data)?;
                let state = s.interpolate(t_hit)?.clone_as_vec();
                hits.push(EventHit { event: k, t: t_hit, state: state.clone() });
                match &events[k].action {
                    Action::Record => {}
                    Action::Stop => {
                        return Ok(Driven { data, stats: SimStats::from_solver(s), hits, stopped_at: Some(t_hit) });
                    }
                    Action::Reset(reset) => {
                        s.state_mut_back(t_hit)?;
                        let mut y = state;
                        reset(t_hit, &mut y, p);
                        if y.iter().any(|v| !v.is_finite()) {
                            return Err(Error::NonFinite { what: "state after an event reset", step: steps, t: t_hit }.into());
                        }
                        let mut dy = vec![0.0; n];
                        system.rhs(t_hit, &y, p, &mut dy);
                        let st = s.state_mut();
                        for i in 0..n {
                            st.y.set_index(i, y[i]);
                            st.dy.set_index(i, dy[i]);
                        }
                        s.set_stop_time(t_end)?;
                        t_prev = t_hit;
                        g_prev = all_g(t_hit, &y)?;
                        restarted = true;
                        break;
                    }
                }
            }
            if restarted {
                continue;
            }
            g_prev = g_now;
        }
        t_prev = t_now;
        match reason {
            OdeSolverStopReason::InternalTimestep => write_until(s, times, t_now, &mut col, &mut data)?,
            OdeSolverStopReason::TstopReached => {
                write_until(s, times, t_end, &mut col, &mut data)?;
                break;
            }
            OdeSolverStopReason::RootFound(t, _) => return Err(DiffsolError::Other(format!("unexpected root at t = {t}")).into()),
        }
    }
    Ok(Driven { data, stats: SimStats::from_solver(s), hits, stopped_at: None })
}

/// Appends the dense-output states at the output times `≤ t` not written yet.
fn write_until<'a, Eqn, S>(s: &S, times: &[f64], t: f64, col: &mut usize, data: &mut Vec<f64>) -> Result<(), DiffsolError>
where
    Eqn: OdeEquations<T = f64> + 'a,
    S: OdeSolverMethod<'a, Eqn>,
{
    while *col < times.len() && times[*col] <= t {
        data.extend(s.interpolate(times[*col])?.clone_as_vec());
        *col += 1;
    }
    Ok(())
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
