//! Projection onto `{u : h(u) = 0}` by Gauss–Newton (PCFM, Utkarsh et al. 2025, §3.2):
//!
//! * [`ProjectMode::Closest`] (default): the nearest point to the input `ξ`, each step the
//!   linearised problem `min ‖u − ξ‖² s.t. h(u) + J(u)(u′ − u) = 0`:
//!   `u ← ξ − Jᵀ (J Jᵀ + εI)⁻¹ (h(u) + J (ξ − u))` (PCFM's `least_squares` mode);
//! * [`ProjectMode::Root`]: the minimum-norm Newton step `u ← u − Jᵀ (J Jᵀ + εI)⁻¹ h(u)`
//!   (PCFM's `root` mode; the same point for linear constraints).
//!
//! For linear constraints one step is exact; the [`Projector`] then factors `A Aᵀ` once and
//! each projection costs two sparse products and one triangular solve pair. `J Jᵀ` is formed
//! from the sparse rows and factored densely (faer Cholesky, `m³/3`); rank-deficient stacks
//! (redundant rows, e.g. an initial condition and a Dirichlet value sharing a corner) fall back
//! to the eigendecomposition's pseudo-inverse, which still satisfies consistent redundant rows
//! exactly.

use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::constraint::{check_dim, Constraint, Jacobian};
use crate::{Error, Result};

/// Which Gauss–Newton iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProjectMode {
    /// Nearest point to the input (SQP on `‖u − ξ‖²`).
    #[default]
    Closest,
    /// Minimum-norm Newton steps from the current point.
    Root,
}

/// Settings of a projection; every field has a default.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectOptions {
    /// Converged when `max |h_r(u)| ≤ tol` (the residual's physical units).
    pub tol: f64,
    /// [`ProjectMode::Closest`] on nonlinear constraints also waits until a step moves the field
    /// by at most this much (`max |Δu|`), so the result is the nearest point (stationary:
    /// `u − ξ ∈ range(Jᵀ)`) and not just a point on the constraint set. A feasible result whose
    /// steps have not settled after `max_iter` is returned as is (its
    /// [`ProjectReport::last_step`] says how far the last step moved).
    pub step_tol: f64,
    /// Gauss–Newton iterations at most.
    pub max_iter: usize,
    /// Tikhonov term `ε` of `J Jᵀ + εI` (0: exact Gauss–Newton).
    pub eps: f64,
    /// Closest point or root.
    pub mode: ProjectMode,
}

impl Default for ProjectOptions {
    fn default() -> Self {
        ProjectOptions { tol: 1e-10, step_tol: 1e-9, max_iter: 30, eps: 0.0, mode: ProjectMode::Closest }
    }
}

/// What one projection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectReport {
    /// Gauss–Newton steps taken.
    pub iterations: usize,
    /// `max |h_r|` at the result.
    pub residual: f64,
    /// `max |h_r|` at the input.
    pub initial_residual: f64,
    /// `max |Δu|` of the last step (0 when no step was taken). Above `step_tol` in
    /// [`ProjectMode::Closest`], the result lies on the constraint set but the iteration towards
    /// the nearest point had not settled within `max_iter`.
    #[serde(default)]
    pub last_step: f64,
}

/// The linear solve with `S = J Jᵀ + εI`: Cholesky, or the pseudo-inverse when `S` is singular.
enum Normal {
    Llt(faer::linalg::solvers::Llt<f64>),
    Pinv { u: faer::Mat<f64>, inv: Vec<f64> },
}

impl Normal {
    fn new(j: &Jacobian, eps: f64) -> Result<Self> {
        let m = j.rows.len();
        let mut s = faer::Mat::<f64>::zeros(m, m);
        // Column-wise accumulation: S_ab = Σ_c J_ac J_bc over the rows touching column c.
        let mut cols: Vec<Vec<(usize, f64)>> = vec![Vec::new(); j.n];
        for (r, row) in j.rows.iter().enumerate() {
            for &(c, v) in row {
                cols[c].push((r, v));
            }
        }
        for col in &cols {
            for &(a, va) in col {
                for &(b, vb) in col {
                    s[(a, b)] += va * vb;
                }
            }
        }
        for a in 0..m {
            s[(a, a)] += eps;
        }
        if let Ok(llt) = s.llt(faer::Side::Lower) {
            // Accept the factor only when it is well conditioned enough to be exact: a pivot
            // below 1e-12 of the largest means redundant rows.
            let l = llt.L();
            let (lo, hi) = (0..m).fold((f64::INFINITY, 0.0f64), |(lo, hi), a| (lo.min(l[(a, a)].abs()), hi.max(l[(a, a)].abs())));
            if m == 0 || lo > 1e-6 * hi {
                return Ok(Normal::Llt(llt));
            }
        }
        let evd = s.self_adjoint_eigen(faer::Side::Lower).map_err(|e| Error::Unsupported(format!("eigendecomposition of J Jᵀ failed: {e:?}")))?;
        let vals: Vec<f64> = (0..m).map(|a| evd.S()[a]).collect();
        let max = vals.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let cut = max * 1e-12 * m as f64;
        let inv = vals.iter().map(|&v| if v > cut { 1.0 / v } else { 0.0 }).collect();
        Ok(Normal::Pinv { u: evd.U().to_owned(), inv })
    }

    fn solve(&self, rhs: &[f64]) -> Vec<f64> {
        let m = rhs.len();
        match self {
            Normal::Llt(llt) => {
                use faer::linalg::solvers::Solve;
                let mut x = faer::Mat::<f64>::from_fn(m, 1, |a, _| rhs[a]);
                llt.solve_in_place(x.as_mut());
                (0..m).map(|a| x[(a, 0)]).collect()
            }
            Normal::Pinv { u, inv } => {
                let c: Vec<f64> = (0..m).map(|k| inv[k] * (0..m).map(|a| u[(a, k)] * rhs[a]).sum::<f64>()).collect();
                (0..m).map(|a| (0..m).map(|k| u[(a, k)] * c[k]).sum()).collect()
            }
        }
    }
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// Projects fields onto one constraint set.
pub struct Projector<'a> {
    constraint: &'a dyn Constraint,
    opts: ProjectOptions,
    /// The factored `A Aᵀ + εI` of a linear constraint, computed once.
    linear: Option<(Jacobian, Normal)>,
}

impl<'a> Projector<'a> {
    /// A projector for `constraint`; linear constraints are factored here.
    ///
    /// # Errors
    /// `InvalidArgument` for a non-positive tolerance or zero iterations; `Unsupported` when the
    /// factorisation fails.
    pub fn new(constraint: &'a dyn Constraint, opts: ProjectOptions) -> Result<Self> {
        if !(opts.tol > 0.0) || !(opts.step_tol > 0.0) || opts.max_iter == 0 || !(opts.eps >= 0.0) {
            return Err(Error::invalid("project", format!("need tol > 0, step_tol > 0, max_iter ≥ 1 and eps ≥ 0, got {opts:?}")));
        }
        let linear = if constraint.is_linear() {
            let j = constraint.jacobian(&vec![0.0; constraint.dim()]);
            let normal = Normal::new(&j, opts.eps)?;
            Some((j, normal))
        } else {
            None
        };
        Ok(Projector { constraint, opts, linear })
    }

    /// The constraint.
    pub fn constraint(&self) -> &dyn Constraint {
        self.constraint
    }

    /// `max |h_r(u)|`.
    pub fn residual(&self, u: &[f64]) -> f64 {
        let mut h = vec![0.0; self.constraint.rows()];
        self.constraint.residual(u, &mut h);
        max_abs(&h)
    }

    /// Projects `u` in place to tolerance.
    ///
    /// # Errors
    /// `Shape` for a wrong length, `NonFinite` for a non-finite input, `ProjectionFailed` with
    /// the residual and iterations when the tolerance is not reached.
    pub fn project(&self, u: &mut [f64]) -> Result<ProjectReport> {
        self.project_steps(u, None)
    }

    /// Projects `u` in place with at most `steps` Gauss–Newton steps (`None`: until the
    /// tolerance, an error if it is not reached; `Some(k)`: exactly up to `k` steps, no error).
    ///
    /// # Errors
    /// As [`Projector::project`].
    pub fn project_steps(&self, u: &mut [f64], steps: Option<usize>) -> Result<ProjectReport> {
        check_dim(self.constraint, u)?;
        if let Some(i) = u.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteInput { what: "field entering a projection", index: i });
        }
        let m = self.constraint.rows();
        let mut h = vec![0.0; m];
        self.constraint.residual(u, &mut h);
        let initial = max_abs(&h);
        let mut report = ProjectReport { iterations: 0, residual: initial, initial_residual: initial, last_step: 0.0 };
        if initial <= self.opts.tol {
            return Ok(report);
        }
        let xi = u.to_vec();
        let budget = steps.unwrap_or(self.opts.max_iter);
        let mut before = u.to_vec();
        for it in 0..budget {
            before.copy_from_slice(u);
            let owned;
            let (j, normal) = match &self.linear {
                Some((j, n)) => (j, n),
                None => {
                    let j = self.constraint.jacobian(u);
                    let n = Normal::new(&j, self.opts.eps)?;
                    owned = (j, n);
                    (&owned.0, &owned.1)
                }
            };
            match self.opts.mode {
                ProjectMode::Root => {
                    let lambda = normal.solve(&h);
                    j.apply_transpose_add(&lambda, -1.0, u);
                }
                ProjectMode::Closest => {
                    let delta: Vec<f64> = xi.iter().zip(u.iter()).map(|(a, b)| a - b).collect();
                    let jd = j.apply(&delta);
                    let rhs: Vec<f64> = h.iter().zip(&jd).map(|(a, b)| a + b).collect();
                    let lambda = normal.solve(&rhs);
                    u.copy_from_slice(&xi);
                    j.apply_transpose_add(&lambda, -1.0, u);
                }
            }
            self.constraint.residual(u, &mut h);
            report.iterations = it + 1;
            report.residual = max_abs(&h);
            if !report.residual.is_finite() {
                return Err(Error::ProjectionFailed { constraint: self.constraint.name(), residual: report.residual, iterations: it + 1 });
            }
            let moved = u.iter().zip(&before).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            report.last_step = moved;
            let stationary = self.linear.is_some() || self.opts.mode == ProjectMode::Root || moved <= self.opts.step_tol;
            if report.residual <= self.opts.tol && stationary {
                return Ok(report);
            }
        }
        // A feasible point whose nearest-point refinement has not settled is still a valid
        // projection onto the constraint set; `last_step` tells the caller how far it was.
        if steps.is_some() || report.residual <= self.opts.tol {
            return Ok(report);
        }
        Err(Error::ProjectionFailed { constraint: self.constraint.name(), residual: report.residual, iterations: report.iterations })
    }

    /// Projects every row of `u: [batch, n]` in parallel (rayon); the reports in row order.
    ///
    /// # Errors
    /// The first row's error, as [`Projector::project_steps`].
    pub fn project_batch(&self, u: &mut Array2<f64>, steps: Option<usize>) -> Result<Vec<ProjectReport>> {
        let n = self.constraint.dim();
        if u.ncols() != n {
            return Err(Error::Shape {
                what: format!("fields for constraint `{}`", self.constraint.name()),
                expected: vec![u.nrows(), n],
                got: u.shape().to_vec(),
            });
        }
        let slice = u.as_slice_mut().ok_or_else(|| Error::Unsupported("projection needs a contiguous [batch, n] array".into()))?;
        slice.par_chunks_mut(n).map(|row| self.project_steps(row, steps)).collect()
    }
}

/// Projects `u` onto `constraint` with default settings (a [`Projector`] for one call).
///
/// # Errors
/// As [`Projector::project`].
pub fn project(constraint: &dyn Constraint, u: &mut [f64], opts: &ProjectOptions) -> Result<ProjectReport> {
    Projector::new(constraint, *opts)?.project(u)
}
