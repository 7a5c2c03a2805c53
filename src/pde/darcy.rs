//! The Darcy balance as a constraint on fields `(a, u)`: permeability and pressure as channels 0
//! and 1 of a `[2, n, n]` cell-centred grid on the unit square, the finite-volume scheme of
//! [`crate::sim::darcy`] (harmonic-mean face transmissibilities, Dirichlet faces half a cell
//! away).
//!
//! * [`DarcyScope::Global`]: one row, the flux balance of the whole square — the net outflow
//!   through the boundary equals the total source, `Σ_boundary faces 2a_P (u_P − g) = Σ_P f_P h²`
//!   (the interior fluxes cancel in the sum of the cell balances). Bilinear in `(a, u)`.
//! * [`DarcyScope::PerCell`]: `n²` rows, every cell's balance
//!   `Σ_faces T (u_P − u_nb) − f_P h² = 0` — the discrete PDE itself; a field meeting it is the
//!   solver's pressure for its own permeability.
//!
//! The Dirichlet data enter through the boundary faces: a cell-centred field has no values on
//! the boundary to fix, so the boundary condition is part of both balances rather than a
//! separate set of rows.

use super::constraint::{Constraint, Jacobian, SparseRow};
use super::grid::{Axis, Grid};
use crate::sim::darcy::{cell_residuals, face_value, neighbours};
use crate::{Error, Result};

/// Which balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DarcyScope {
    /// The flux balance of the whole domain (1 row).
    #[default]
    Global,
    /// Every cell's balance (`n²` rows).
    PerCell,
}

/// The Darcy balance of a field `(a, u)` on `n × n` cells.
#[derive(Clone, Debug, PartialEq)]
pub struct DarcyFlux {
    n: usize,
    f: Vec<f64>,
    g: Vec<f64>,
    scope: DarcyScope,
}

/// The `[2, n, n]` grid of Darcy fields: channels `a`, `u` at cell centres `(i + ½)/n`.
pub fn darcy_grid(n: usize) -> Grid {
    let h = 1.0 / n as f64;
    Grid { channels: vec!["a".into(), "u".into()], axes: vec![Axis::space("x", n, 0.5 * h, h, false), Axis::space("y", n, 0.5 * h, h, false)] }
}

impl DarcyFlux {
    /// The balance with source `f` (`[n²]`) and boundary face values `g` (`[4n]`: left, right,
    /// bottom, top, as [`crate::sim::darcy::DarcyProblem`]).
    ///
    /// # Errors
    /// `Shape` for wrong lengths, `InvalidArgument` for non-finite data or `n < 2`.
    pub fn new(n: usize, f: Vec<f64>, g: Vec<f64>, scope: DarcyScope) -> Result<Self> {
        if n < 2 {
            return Err(Error::invalid("n", format!("need at least 2 cells per side, got {n}")));
        }
        if f.len() != n * n || g.len() != 4 * n {
            return Err(Error::Shape { what: "Darcy source and face values".into(), expected: vec![n * n, 4 * n], got: vec![f.len(), g.len()] });
        }
        if f.iter().chain(&g).any(|v| !v.is_finite()) {
            return Err(Error::invalid("darcy", "source and face values must be finite"));
        }
        Ok(DarcyFlux { n, f, g, scope })
    }

    /// Constant source `f` and face value `g`.
    ///
    /// # Errors
    /// As [`DarcyFlux::new`].
    pub fn constant(n: usize, f: f64, g: f64, scope: DarcyScope) -> Result<Self> {
        DarcyFlux::new(n, vec![f; n * n], vec![g; 4 * n], scope)
    }

    fn split<'a>(&self, u: &'a [f64]) -> (&'a [f64], &'a [f64]) {
        u.split_at(self.n * self.n)
    }
}

impl Constraint for DarcyFlux {
    fn name(&self) -> String {
        match self.scope {
            DarcyScope::Global => "Darcy flux balance (1 row)".into(),
            DarcyScope::PerCell => format!("Darcy cell balances ({} rows)", self.n * self.n),
        }
    }
    fn dim(&self) -> usize {
        2 * self.n * self.n
    }
    fn rows(&self) -> usize {
        match self.scope {
            DarcyScope::Global => 1,
            DarcyScope::PerCell => self.n * self.n,
        }
    }
    fn residual(&self, field: &[f64], h: &mut [f64]) {
        let (a, u) = self.split(field);
        let n = self.n;
        match self.scope {
            DarcyScope::PerCell => cell_residuals(n, a, u, &self.f, &self.g, h),
            DarcyScope::Global => {
                let mut s = -self.f.iter().sum::<f64>() / (n * n) as f64;
                for i in 0..n {
                    for j in 0..n {
                        let p = i * n + j;
                        for nb in neighbours(n, i, j) {
                            if let Err(side) = nb {
                                s += 2.0 * a[p] * (u[p] - face_value(n, &self.g, side, i, j));
                            }
                        }
                    }
                }
                h[0] = s;
            }
        }
    }
    fn jacobian(&self, field: &[f64]) -> Jacobian {
        let (a, u) = self.split(field);
        let n = self.n;
        let nn = n * n;
        let rows = match self.scope {
            DarcyScope::Global => {
                let mut row: SparseRow = Vec::new();
                for i in 0..n {
                    for j in 0..n {
                        let p = i * n + j;
                        let (mut da, mut du) = (0.0, 0.0);
                        for nb in neighbours(n, i, j) {
                            if let Err(side) = nb {
                                da += 2.0 * (u[p] - face_value(n, &self.g, side, i, j));
                                du += 2.0 * a[p];
                            }
                        }
                        if du != 0.0 {
                            row.push((p, da));
                            row.push((nn + p, du));
                        }
                    }
                }
                vec![row]
            }
            DarcyScope::PerCell => {
                let mut rows = Vec::with_capacity(nn);
                for i in 0..n {
                    for j in 0..n {
                        let p = i * n + j;
                        let ap = a[p];
                        let mut row: SparseRow = Vec::with_capacity(10);
                        let (mut da_p, mut du_p) = (0.0, 0.0);
                        for nb in neighbours(n, i, j) {
                            match nb {
                                Ok(q) => {
                                    let (aq, s) = (a[q], ap + a[q]);
                                    let t = 2.0 * ap * aq / s;
                                    let d = u[p] - u[q];
                                    // ∂T/∂a_P = 2a_Q²/(a_P + a_Q)², ∂T/∂a_Q = 2a_P²/(a_P + a_Q)².
                                    da_p += 2.0 * aq * aq / (s * s) * d;
                                    row.push((q, 2.0 * ap * ap / (s * s) * d));
                                    du_p += t;
                                    row.push((nn + q, -t));
                                }
                                Err(side) => {
                                    da_p += 2.0 * (u[p] - face_value(n, &self.g, side, i, j));
                                    du_p += 2.0 * ap;
                                }
                            }
                        }
                        row.push((p, da_p));
                        row.push((nn + p, du_p));
                        rows.push(row);
                    }
                }
                rows
            }
        };
        Jacobian { n: 2 * nn, rows }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::darcy::{DarcyProblem, Permeability};
    use rand::SeedableRng;

    /// The solver's pressure with its permeability meets both balances to round-off, and a
    /// perturbed pressure does not.
    #[test]
    fn solver_fields_meet_both_balances() {
        let n = 12;
        let a = Permeability::default().sample(n, &mut rand::rngs::StdRng::seed_from_u64(1));
        let u = DarcyProblem::constant(a.clone(), 1.5, 0.2).unwrap().solve().unwrap();
        let mut field = a.clone();
        field.extend(&u);
        for scope in [DarcyScope::Global, DarcyScope::PerCell] {
            let c = DarcyFlux::constant(n, 1.5, 0.2, scope).unwrap();
            let mut h = vec![0.0; c.rows()];
            c.residual(&field, &mut h);
            assert!(h.iter().all(|v| v.abs() < 1e-12), "{scope:?}: {:e}", h.iter().map(|v| v.abs()).fold(0.0, f64::max));
            let mut off = field.clone();
            off[2 * n * n - 1] += 0.1;
            c.residual(&off, &mut h);
            assert!(h.iter().any(|v| v.abs() > 1e-3), "{scope:?} misses a perturbed boundary cell");
        }
        assert_eq!(darcy_grid(n).len(), 2 * n * n);
        assert!(DarcyFlux::new(n, vec![1.0; 3], vec![0.0; 4 * n], DarcyScope::Global).is_err());
    }
}
