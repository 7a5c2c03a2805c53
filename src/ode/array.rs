//! The batched ODE solvers with ndarray in and out, for simulation codes that hold their
//! states in arrays and write right-hand sides as plain functions: no burn type in the
//! signatures. The solve is the same [`solve`](super::solve) (same steps, same numbers) on
//! the host's f64 device; the tensor API stays for training.
//!
//! ```
//! use ndarray::array;
//! use physflow::ode::{self, Options, Solver};
//!
//! // Two harmonic oscillators, y = (x, v), x'' = -x, started at x = 1 and x = 2.
//! let y0 = array![[1.0, 0.0], [2.0, 0.0]];
//! let opts = Options { dense: true, ..Options::adaptive(Solver::Tsit5, 1e-10, 1e-10) };
//! let sol = ode::solve_array(|_t, y, mut dy| { dy[0] = y[1]; dy[1] = -y[0]; }, y0.view(), &[0.0, 1.0], &opts).unwrap();
//! assert!((sol.ys[[1, 1, 0]] - 2.0 * 1f64.cos()).abs() < 1e-8);
//! // Dense output anywhere in the span, `[batch, dim]`.
//! let mid = sol.evaluate(0.5).unwrap();
//! assert!((mid[[0, 0]] - 0.5f64.cos()).abs() < 1e-8);
//! ```

use burn::tensor::{Tensor, TensorData};
use ndarray::{Array1, Array2, Array3, ArrayView1, ArrayView2, ArrayViewMut1};

use super::dense::DenseOutput;
use super::events::{solve_events, SampleEvent};
use super::field::{Time, VectorField};
use super::solve::{solve, Solution, Stats, Status};
use super::system_field::SystemField;
use super::Options;
use crate::host::{array2_from_tensor, solution_array, tensor_from_array2, ToHost};
use crate::sim::{Event, System};
use crate::{Error, Result};

/// A solution with ndarray outputs.
#[derive(Clone, Debug)]
pub struct ArraySolution {
    /// Output times, as requested, `[n_times]`.
    pub ts: Array1<f64>,
    /// States at `ts`, `[n_times, batch, dim]` (`ys[0]` is `y0`). With per-sample step control
    /// a sample that failed holds NaN at the times it did not reach (see `status`).
    pub ys: Array3<f64>,
    /// Counters (steps, rejections, evaluations).
    pub stats: Stats,
    /// One status per sample.
    pub status: Vec<Status>,
    dense: Option<DenseOutput<2>>,
}

impl ArraySolution {
    /// The states at the last output time, `[batch, dim]`.
    pub fn last(&self) -> ArrayView2<'_, f64> {
        self.ys.index_axis(ndarray::Axis(0), self.ys.dim().0 - 1)
    }

    /// The solution at any `t` in the solved span, `[batch, dim]`, from the solver's dense
    /// output (needs `Options::dense`).
    ///
    /// # Errors
    /// `InvalidArgument` when dense output was not kept or `t` is outside the span.
    pub fn evaluate(&self, t: f64) -> Result<Array2<f64>> {
        let dense = self.dense.as_ref().ok_or_else(|| Error::invalid("t", "dense output was not kept; set Options::dense = true"))?;
        array2_from_tensor(&dense.evaluate(t)?)
    }

    fn from_solution(sol: Solution<2>) -> Result<Self> {
        Ok(Self { ts: Array1::from(sol.ts), ys: solution_array(&sol.ys)?, stats: sol.stats, status: sol.status, dense: sol.dense })
    }
}

/// A host closure `f(t, y_i, dy_i)` applied row by row.
struct RowField<F> {
    f: F,
}

impl<F: Fn(f64, ArrayView1<'_, f64>, ArrayViewMut1<'_, f64>)> VectorField<2> for RowField<F> {
    type Params = ();
    type Saved = ();

    fn eval(&self, t: &Time, y: &Tensor<2>) -> Tensor<2> {
        let [b, n] = y.dims();
        let host = y.to_vec_as::<f64>();
        let mut out = vec![0.0; b * n];
        for (i, (yi, oi)) in host.chunks_exact(n).zip(out.chunks_exact_mut(n)).enumerate() {
            (self.f)(t.of(i), ArrayView1::from(yi), ArrayViewMut1::from(oi));
        }
        Tensor::<2>::from_data(TensorData::new(out, [b, n]), (&y.device(), y.dtype()))
    }

    fn eval_saving(&self, t: &Time, y: &Tensor<2>) -> (Tensor<2>, ()) {
        (self.eval(t, y), ())
    }

    fn has_vjp(&self) -> bool {
        false
    }
    fn vjp_saved(&self, _: &(), _: &Tensor<2>, _: Option<(&mut (), f64)>) -> Tensor<2> {
        unreachable!("RowField is private to solve_array, whose solve takes no vector-Jacobian product")
    }

    fn zero_params(&self) {}
}

fn host_y0(y0: ArrayView2<'_, f64>) -> Result<Tensor<2>> {
    let (b, n) = y0.dim();
    if b == 0 || n == 0 {
        return Err(Error::Shape { what: "y0 [batch, dim]".into(), expected: vec![1, 1], got: vec![b, n] });
    }
    let device = crate::device::cpu_f64()?;
    Ok(tensor_from_array2(&y0, &device, burn::tensor::DType::F64))
}

/// Solve `dy/dt = f(t, y)` for every row of `y0: [batch, dim]` (independent initial
/// states) and return the states at `times` (strictly monotone). `f(t, y, dy)` writes the
/// derivative of one row into `dy`; a single trajectory is a batch of one
/// (`y0.insert_axis(Axis(0))`).
///
/// Gradients need derivatives of `f`: write it once over a generic scalar as a
/// [`ClosureSystem`](crate::sim::ClosureSystem) and use [`solve_system`] or
/// [`SystemField`] with [`solve_for_grad`](super::solve_for_grad).
///
/// # Errors
/// As [`solve`](super::solve); `Shape` for an empty `y0`.
pub fn solve_array<F>(f: F, y0: ArrayView2<'_, f64>, times: &[f64], opts: &Options) -> Result<ArraySolution>
where
    F: Fn(f64, ArrayView1<'_, f64>, ArrayViewMut1<'_, f64>),
{
    let y0 = host_y0(y0)?;
    ArraySolution::from_solution(solve(&RowField { f }, y0, times, opts)?)
}

/// Solve a [`System`] at its own parameters with the batched explicit solvers, one
/// trajectory per row of `y0: [batch, n]` — the non-stiff counterpart of
/// [`sim::simulate`](crate::sim::simulate) on the same definition.
///
/// # Errors
/// As [`SystemField::new`] and [`solve`](super::solve); `Shape` when the rows of `y0` are
/// not `n` wide.
pub fn solve_system<S: System + ?Sized>(system: &S, y0: ArrayView2<'_, f64>, times: &[f64], opts: &Options) -> Result<ArraySolution> {
    let field = SystemField::new(system)?;
    let y0 = host_y0(y0)?;
    ArraySolution::from_solution(solve(&field, y0, times, opts)?)
}

/// A batched solve with events, ndarray out.
#[derive(Clone, Debug)]
pub struct ArrayEvents {
    /// States at the output times; a stopped sample holds its stop state after its stop.
    pub solution: ArraySolution,
    /// Every crossing, in the order found (time order per sample).
    pub hits: Vec<SampleEvent>,
    /// Per sample, the time of its terminal event, or `None` if it ran to the end.
    pub stop_times: Vec<Option<f64>>,
}

/// [`solve_array`] with events: every row's crossings of every event function `g(t, y_i, p)`
/// (`p` empty) are recorded, and a terminal event stops its row alone (see
/// [`super::solve_events`]).
///
/// ```
/// use ndarray::array;
/// use physflow::ode::{self, Options, Solver};
/// use physflow::sim::{Direction, Event};
///
/// // Balls dropped from 1 m and 4 m (y = (height, velocity)) stop at the ground.
/// let y0 = array![[1.0, 0.0], [4.0, 0.0]];
/// let ground = Event::new("ground", |_t, y, _p| y[0]).direction(Direction::Falling).terminal();
/// let opts = Options::adaptive(Solver::Tsit5, 1e-10, 1e-10);
/// let out = ode::solve_array_events(|_t, y, mut dy| { dy[0] = y[1]; dy[1] = -9.81; }, y0.view(), &[0.0, 2.0], &[ground], &opts).unwrap();
/// let t1 = out.stop_times[1].unwrap();
/// assert!((t1 - (2.0 * 4.0 / 9.81f64).sqrt()).abs() < 1e-9);
/// ```
///
/// # Errors
/// As [`super::solve_events`]; `Shape` for an empty `y0`.
pub fn solve_array_events<F>(f: F, y0: ArrayView2<'_, f64>, times: &[f64], events: &[Event<'_>], opts: &Options) -> Result<ArrayEvents>
where
    F: Fn(f64, ArrayView1<'_, f64>, ArrayViewMut1<'_, f64>),
{
    let y0 = host_y0(y0)?;
    let out = solve_events(&RowField { f }, y0, times, events, opts)?;
    Ok(ArrayEvents { solution: ArraySolution::from_solution(out.solution)?, hits: out.hits, stop_times: out.stop_times })
}
