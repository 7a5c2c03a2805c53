//! Gradients of a [`System`]'s solution: forward sensitivities and the adjoint.
//!
//! Both treat the initial state as parameters too: diffsol integrates in the
//! augmented parameter vector `q = [p, y₀]`, whose initial-state part only
//! enters through `y(t₀) = y₀`. So `∂y/∂y₀` (forward) and `∂G/∂y₀` (adjoint)
//! come out of the same machinery as the parameter derivatives.

use diffsol::error::DiffsolError;
use diffsol::matrix::MatrixRef;
use diffsol::{
    AdjointOdeSolverMethod, DefaultDenseMatrix, DefaultSolver, DenseMatrix, FaerSparseMat, Matrix, NalgebraMat, OdeSolverMethod, OdeSolverState,
    SensitivitiesOdeSolverMethod, Vector, VectorRef,
};
use ndarray::{Array2, Array3};
use serde::{Deserialize, Serialize};

use super::solve::{apply_problem_options, builder, check_stop, columns_to_rows, finish, solver_error, Integrator, SimOptions, SimStats, Trajectory};
use super::system::{check_inputs, JacobianKind, System};
use crate::{Error, Result};

/// Which derivatives the forward sensitivities carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Wrt {
    /// `∂y/∂p` only (`m` sensitivity equations).
    #[default]
    Params,
    /// `∂y/∂p` and `∂y/∂y₀` (`m + n` sensitivity equations).
    ParamsAndInitialState,
}

/// A trajectory and its forward sensitivities at the output times.
#[derive(Clone, Debug)]
pub struct Sensitivities {
    /// The solution, `[T, D]`.
    pub trajectory: Trajectory,
    /// `∂y(t_k)/∂p`, `[T, D, P]`.
    pub dy_dp: Array3<f64>,
    /// `∂y(t_k)/∂y₀`, `[T, D, D]`, when asked for with [`Wrt::ParamsAndInitialState`].
    pub dy_dy0: Option<Array3<f64>>,
}

/// Solves `system` and its forward sensitivity equations `ṡ = (∂f/∂y) s + ∂f/∂q`
/// (one per augmented parameter) together, with the options' method; the
/// sensitivities take part in the error control.
pub fn forward_sensitivities(system: &dyn System, p: &[f64], y0: &[f64], times: &[f64], opts: &SimOptions, wrt: Wrt) -> Result<Sensitivities> {
    check_inputs(system, p, y0)?;
    opts.check(times)?;
    opts.check_for(system)?;
    let with_y0 = wrt == Wrt::ParamsAndInitialState;
    let q: Vec<f64> = if with_y0 { p.iter().chain(y0).copied().collect() } else { p.to_vec() };
    if q.is_empty() {
        return Err(Error::invalid("wrt", format!("`{}` has no parameters to differentiate by", system.name())));
    }
    let (data, sens, stats) = match opts.jacobian_for(system) {
        JacobianKind::Sparse => forward::<FaerSparseMat<f64>>(system, &q, y0, with_y0, times, opts),
        _ => forward::<NalgebraMat<f64>>(system, &q, y0, with_y0, times, opts),
    }
    .map_err(|e| solver_error(system, e))?;
    let trajectory = finish(system, times, data, stats)?;
    let (nt, n, m) = (times.len(), system.dim(), p.len());
    // `sens[j]` is `[T·D]` row-major for augmented parameter j.
    let gather = |cols: std::ops::Range<usize>| {
        let w = cols.len();
        Array3::from_shape_fn((nt, n, w), |(k, i, j)| sens[cols.start + j][k * n + i])
    };
    let dy_dp = gather(0..m);
    let dy_dy0 = with_y0.then(|| gather(m..m + n));
    if dy_dp.iter().chain(dy_dy0.iter().flatten()).any(|v| !v.is_finite()) {
        return Err(Error::NonFinite { what: "sensitivities", step: stats.steps, t: *times.last().unwrap() });
    }
    Ok(Sensitivities { trajectory, dy_dp, dy_dy0 })
}

type ForwardOut = (Vec<f64>, Vec<Vec<f64>>, SimStats);

fn forward<M>(system: &dyn System, q: &[f64], y0: &[f64], with_y0: bool, times: &[f64], opts: &SimOptions) -> Result<ForwardOut, DiffsolError>
where
    M: Matrix<T = f64> + DefaultSolver,
    M::V: DefaultDenseMatrix,
    for<'b> &'b M::V: VectorRef<M::V>,
    for<'b> &'b M: MatrixRef<M>,
{
    let n = system.dim();
    let m = q.len() - if with_y0 { n } else { 0 };
    let mut problem = builder::<M>(opts, q)
        .rhs_sens_implicit(
            move |x: &[f64], q: &[f64], t: f64, y: &mut [f64]| system.rhs(t, x, &q[..m], y),
            move |x: &[f64], q: &[f64], t: f64, v: &[f64], y: &mut [f64]| system.jvp(t, x, &q[..m], v, y),
            move |x: &[f64], q: &[f64], t: f64, v: &[f64], y: &mut [f64]| system.param_jvp(t, x, &q[..m], &v[..m], y),
        )
        .init_sens(
            move |q: &[f64], _t: f64, y: &mut [f64]| y.copy_from_slice(if with_y0 { &q[m..] } else { y0 }),
            move |_q: &[f64], _t: f64, v: &[f64], y: &mut [f64]| {
                if with_y0 {
                    y.copy_from_slice(&v[m..]);
                } else {
                    y.fill(0.0);
                }
            },
            n,
        )
        .build()?;
    apply_problem_options(&mut problem, opts);
    macro_rules! run {
        ($s:ident) => {{
            let (ys, sens, stop) = $s.solve_dense_sensitivities(times)?;
            check_stop(&stop)?;
            Ok((columns_to_rows(&ys), sens.iter().map(columns_to_rows).collect(), SimStats::from_diffsol($s.get_statistics())))
        }};
    }
    match opts.method {
        Integrator::Bdf => {
            let mut s = problem.bdf_sens::<M::LS>()?;
            run!(s)
        }
        Integrator::Esdirk34 => {
            let mut s = problem.esdirk34_sens::<M::LS>()?;
            run!(s)
        }
        Integrator::TrBdf2 => {
            let mut s = problem.tr_bdf2_sens::<M::LS>()?;
            run!(s)
        }
        Integrator::Tsit45 => {
            let mut s = problem.tsit45_sens()?;
            run!(s)
        }
    }
}

/// The result of [`adjoint_gradient`].
#[derive(Clone, Debug)]
pub struct AdjointGradient {
    /// The loss `G` returned by the loss closure.
    pub loss: f64,
    /// The forward solution, `[T, D]`.
    pub trajectory: Trajectory,
    /// `dG/dp`, `[P]`.
    pub params: Vec<f64>,
    /// `dG/dy₀`, `[D]`.
    pub y0: Vec<f64>,
}

/// The gradient of a loss summed over output times, `G = Σ_k g_k(y(t_k))`, by
/// the continuous adjoint with checkpointing (diffsol's
/// `solve_dense_with_checkpointing` + `solve_adjoint_backwards_pass`).
///
/// `loss` receives the forward solution `[T, D]` and returns `G` and
/// `∂G/∂y(t_k)` as `[T, D]`. The backward solve uses the options' method and
/// tolerances; diffsol's adjoint closures take the negated transposed products
/// `−(∂f/∂y)ᵀ v`, `−(∂f/∂p)ᵀ v`, which this function builds from
/// [`System::vjp`] and [`System::param_vjp`].
pub fn adjoint_gradient<L>(system: &dyn System, p: &[f64], y0: &[f64], times: &[f64], opts: &SimOptions, loss: L) -> Result<AdjointGradient>
where
    L: FnOnce(&Array2<f64>) -> (f64, Array2<f64>),
{
    check_inputs(system, p, y0)?;
    opts.check(times)?;
    opts.check_for(system)?;
    let q: Vec<f64> = p.iter().chain(y0).copied().collect();
    let mut loss = Some(loss);
    let mut seen: Option<(Vec<f64>, SimStats, f64)> = None;
    let mut shape_error = None;
    // The loss runs between the forward and the backward pass, inside the solver plumbing.
    let mut on_forward = |rows: Vec<f64>, stats: SimStats| -> Option<Vec<f64>> {
        let states = Array2::from_shape_vec((times.len(), system.dim()), rows.clone()).expect("T·D values");
        let (g, dg) = (loss.take().expect("loss runs once"))(&states);
        if dg.dim() != (times.len(), system.dim()) {
            shape_error = Some(Error::Shape { what: "loss gradient dG/dy".into(), expected: vec![times.len(), system.dim()], got: dg.shape().to_vec() });
            return None;
        }
        seen = Some((rows, stats, g));
        Some(dg.iter().copied().collect())
    };
    let result = match opts.jacobian_for(system) {
        JacobianKind::Sparse => adjoint::<FaerSparseMat<f64>>(system, &q, times, opts, &mut on_forward),
        _ => adjoint::<NalgebraMat<f64>>(system, &q, times, opts, &mut on_forward),
    };
    if let Some(e) = shape_error {
        return Err(e);
    }
    let sg = result.map_err(|e| solver_error(system, e))?;
    let (rows, stats, g) = seen.expect("forward pass ran");
    let trajectory = finish(system, times, rows, stats)?;
    if let Some(i) = sg.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite { what: if i < p.len() { "adjoint gradient dG/dp" } else { "adjoint gradient dG/dy0" }, step: stats.steps, t: opts.t0 });
    }
    let (gp, gy0) = sg.split_at(p.len());
    Ok(AdjointGradient { loss: g, trajectory, params: gp.to_vec(), y0: gy0.to_vec() })
}

fn adjoint<M>(
    system: &dyn System,
    q: &[f64],
    times: &[f64],
    opts: &SimOptions,
    on_forward: &mut dyn FnMut(Vec<f64>, SimStats) -> Option<Vec<f64>>,
) -> Result<Vec<f64>, DiffsolError>
where
    M: Matrix<T = f64> + DefaultSolver,
    M::V: DefaultDenseMatrix,
    for<'b> &'b M::V: VectorRef<M::V>,
    for<'b> &'b M: MatrixRef<M>,
{
    let n = system.dim();
    let m = q.len() - n;
    let mut builder = builder::<M>(opts, q);
    if let (Some(rtol), Some(atol)) = (opts.quadrature_rtol, opts.quadrature_atol) {
        builder = builder.param_rtol(rtol).param_atol([atol]);
    }
    let mut problem = builder
        .rhs_adjoint_implicit(
            move |x: &[f64], q: &[f64], t: f64, y: &mut [f64]| system.rhs(t, x, &q[..m], y),
            move |x: &[f64], q: &[f64], t: f64, v: &[f64], y: &mut [f64]| system.jvp(t, x, &q[..m], v, y),
            move |x: &[f64], q: &[f64], t: f64, v: &[f64], y: &mut [f64]| {
                system.vjp(t, x, &q[..m], v, y);
                y.iter_mut().for_each(|a| *a = -*a);
            },
            move |x: &[f64], q: &[f64], t: f64, v: &[f64], y: &mut [f64]| {
                system.param_vjp(t, x, &q[..m], v, &mut y[..m]);
                y[..m].iter_mut().for_each(|a| *a = -*a);
                y[m..].fill(0.0);
            },
        )
        .init_adjoint(
            move |q: &[f64], _t: f64, y: &mut [f64]| y.copy_from_slice(&q[m..]),
            // −(∂y₀/∂q)ᵀ v: zero on p, −v on the y₀ slots.
            move |_q: &[f64], _t: f64, v: &[f64], y: &mut [f64]| {
                y[..m].fill(0.0);
                for (a, b) in y[m..].iter_mut().zip(v) {
                    *a = -*b;
                }
            },
            n,
        )
        .build()?;
    apply_problem_options(&mut problem, opts);
    let ctx = problem.context().clone();
    macro_rules! run {
        ($s:ident, $adj:ident $(, $ls:ty)?) => {{
            let (chk, ys, stop) = $s.solve_dense_with_checkpointing(times, None)?;
            check_stop(&stop)?;
            let rows = columns_to_rows(&ys);
            let Some(dg) = on_forward(rows, SimStats::from_diffsol($s.get_statistics())) else {
                return Err(DiffsolError::Other("loss gradient has the wrong shape".into()));
            };
            let dgdu = <M::V as DefaultDenseMatrix>::M::from_vec(n, times.len(), dg, ctx);
            let adj = problem.$adj::<$($ls,)? _>(chk, Some($s), Some(1))?;
            let (state, _) = adj.solve_adjoint_backwards_pass(times, &[&dgdu])?;
            Ok(state.as_ref().sg.clone_as_vec())
        }};
    }
    match opts.method {
        Integrator::Bdf => {
            let mut s = problem.bdf::<M::LS>()?;
            run!(s, bdf_solver_adjoint, M::LS)
        }
        Integrator::Esdirk34 => {
            let mut s = problem.esdirk34::<M::LS>()?;
            run!(s, esdirk34_solver_adjoint, M::LS)
        }
        Integrator::TrBdf2 => {
            let mut s = problem.tr_bdf2::<M::LS>()?;
            run!(s, tr_bdf2_solver_adjoint, M::LS)
        }
        Integrator::Tsit45 => {
            let mut s = problem.tsit45()?;
            run!(s, tsit45_solver_adjoint)
        }
    }
}
