//! Space-time fields from `sim`'s method-of-lines PDEs: the solution `u(x_i, t_k)` of a
//! [`Pde1d`] as a field on axes `[x, t]`.
//!
//! The x axis follows the system's grid: periodic points `x_i = ih`; Neumann cell centres
//! `x_i = (i + ½)h`; Dirichlet problems, whose unknowns are the interior nodes, are written
//! with their two boundary values as extra end nodes `x_0 = 0`, `x_{n+1} = L` — so a Dirichlet
//! condition is a set of field values and `sim`'s conserved mass is the interior sum
//! ([`super::Quadrature::Interior`]).

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::grid::{Axis, Grid};
use crate::sim::systems::{Boundary, Grid1d, Pde1d};
use crate::sim::{simulate_with, SimOptions, System};
use crate::{Error, Result};

/// The field x axis of a `sim` grid.
pub fn space_axis(g: &Grid1d) -> Axis {
    let h = g.h();
    match g.boundary {
        Boundary::Periodic => Axis::space("x", g.n, 0.0, h, true),
        Boundary::Neumann { .. } => Axis::space("x", g.n, 0.5 * h, h, false),
        Boundary::Dirichlet { .. } => Axis::space("x", g.n + 2, 0.0, h, false),
    }
}

/// The space-time grid of solutions on `grid` at uniform `times`.
///
/// # Errors
/// `InvalidArgument` for fewer than two times or non-uniform times (the constraints take one
/// `Δt`; tolerance `1e-9 Δt`).
pub fn space_time_grid(grid: &Grid1d, times: &[f64]) -> Result<Grid> {
    if times.len() < 2 {
        return Err(Error::invalid("times", "a space-time field needs at least two times"));
    }
    let dt = (times[times.len() - 1] - times[0]) / (times.len() - 1) as f64;
    if let Some(k) = times.windows(2).position(|w| ((w[1] - w[0]) - dt).abs() > 1e-9 * dt.abs()) {
        return Err(Error::invalid("times", format!("output times must be uniform; step {k} is {} instead of {dt}", times[k + 1] - times[k])));
    }
    Ok(Grid::space_time(space_axis(grid), Axis::time(times.len(), times[0], times[times.len() - 1])))
}

/// The field `[X, T]` (flat, row-major) of states `[T, n]` on `grid`.
pub fn space_time_field(grid: &Grid1d, states: &ArrayView2<'_, f64>) -> Vec<f64> {
    let (nt, n) = states.dim();
    let (left, right, pad) = match grid.boundary {
        Boundary::Dirichlet { left, right } => (left, right, 1),
        _ => (0.0, 0.0, 0),
    };
    let nx = n + 2 * pad;
    let mut f = vec![0.0; nx * nt];
    for k in 0..nt {
        for i in 0..n {
            f[(i + pad) * nt + k] = states[[k, i]];
        }
        if pad == 1 {
            f[k] = left;
            f[(nx - 1) * nt + k] = right;
        }
    }
    f
}

/// Solves each system at `times` (rayon, one independent diffsol solve per system) and stacks
/// the solutions as space-time fields `[N, X·T]`. All systems must share the grid size and
/// boundary kind. With `progress`, a progress bar ([`crate::train::Progress`]) counts finished solves.
///
/// # Errors
/// `InvalidArgument` for no systems, mixed grids or non-uniform times; the first failing
/// solve's error.
pub fn simulate_fields(systems: &[Pde1d], times: &[f64], opts: &SimOptions, progress: bool) -> Result<(Grid, Array2<f64>)> {
    let first = systems.first().ok_or_else(|| Error::invalid("systems", "no systems to simulate"))?;
    let grid = space_time_grid(&first.grid, times)?;
    if let Some(s) = systems.iter().find(|s| space_axis(&s.grid) != space_axis(&first.grid)) {
        return Err(Error::invalid("systems", format!("`{}` has another grid than the first system", s.name())));
    }
    let bar = crate::train::progress(systems.len() as u64, "simulate", !progress);
    let fields: Vec<Result<Vec<f64>>> = systems
        .par_iter()
        .map(|s| {
            let out = simulate_with(s, &s.p, &s.u0, times, opts).map(|t| space_time_field(&s.grid, &t.states.view()));
            bar.inc(1);
            out
        })
        .collect();
    bar.finish_and_clear();
    let mut out = Array2::zeros((systems.len(), grid.len()));
    for (k, f) in fields.into_iter().enumerate() {
        out.row_mut(k).assign(&ndarray::Array1::from(f?));
    }
    Ok((grid, out))
}
