//! Darcy flow `−∇·(a(x)∇u) = f` on the unit square with a Dirichlet boundary, by cell-centred
//! finite volumes and a sparse Cholesky factorisation (faer).
//!
//! Cells `n × n`, `h = 1/n`, centres `x_i = (i + ½)h`, values row-major `[i][j]` (`i` along x).
//! The flux through a face between cells `P` and `Q` is `T_PQ (u_P − u_Q)` with the harmonic
//! mean `T_PQ = 2a_P a_Q/(a_P + a_Q)` (continuous normal flux across a jump of `a`), and
//! through a boundary face `2a_P (u_P − g)` (half a cell to the face, where `u = g`). Each cell
//! balances its outflow against its source: `Σ_faces T (u_P − u_nb) = f_P h²`. The matrix is
//! symmetric positive definite, so a sparse Cholesky solves it. Second order for smooth `a`
//! (the manufactured-solution test measures it).
//!
//! Permeabilities ([`Permeability`]): PDEBench's / the FNO paper's two-phase medium (a Gaussian
//! random field thresholded at zero: `a = high` where it is positive, `low` elsewhere) and a
//! log-normal medium `a = e^{μ + g}`. The field is drawn on a periodic square twice as large
//! and cropped, so it is not periodic on the unit square.

use faer::linalg::solvers::Solve;
use faer::sparse::{SparseColMat, Triplet};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::grf::Grf;
use crate::{Error, Result};

/// A random permeability law.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Permeability {
    /// `a = high` where the field `g ~ grf` is ≥ 0, `low` elsewhere (PDEBench Darcy: 12 and 3,
    /// `g ~ N(0, (−Δ + 9I)^{−2})`).
    TwoPhase {
        /// The underlying field.
        grf: Grf,
        /// Value where `g < 0`.
        low: f64,
        /// Value where `g ≥ 0`.
        high: f64,
    },
    /// `a = e^{μ + g}`, `g ~ grf`.
    LogNormal {
        /// The underlying field.
        grf: Grf,
        /// Log-mean `μ`.
        mean: f64,
    },
}

impl Default for Permeability {
    /// PDEBench's two-phase medium: 12 / 3 on `g ~ N(0, (−Δ + 9I)^{−2})` (`σ = 1`, the sign is
    /// all that matters).
    fn default() -> Self {
        Permeability::TwoPhase { grf: Grf { sigma: 1.0, tau: 3.0, alpha: 2.0, zero_mean: false }, low: 3.0, high: 12.0 }
    }
}

impl Permeability {
    /// Checks the field law and that every value is positive and finite.
    ///
    /// # Errors
    /// `InvalidArgument` naming the value.
    pub fn validate(&self) -> Result<()> {
        match self {
            Permeability::TwoPhase { grf, low, high } => {
                grf.validate()?;
                if !(*low > 0.0 && *high > 0.0 && low.is_finite() && high.is_finite()) {
                    return Err(Error::invalid("permeability", format!("two-phase values must be positive and finite, got {low} and {high}")));
                }
            }
            Permeability::LogNormal { grf, mean } => {
                grf.validate()?;
                if !mean.is_finite() {
                    return Err(Error::invalid("permeability", format!("log-mean must be finite, got {mean}")));
                }
            }
        }
        Ok(())
    }

    /// One permeability on the `n × n` cells, row-major `[i][j]`.
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Vec<f64> {
        let grf = match self {
            Permeability::TwoPhase { grf, .. } | Permeability::LogNormal { grf, .. } => grf,
        };
        // Twice the size, periodic on [0, 2)²: crop [0, 1)².
        let g = grf.sample(2 * n, 2.0, rng);
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let v = g[i * 2 * n + j];
                a[i * n + j] = match self {
                    Permeability::TwoPhase { low, high, .. } => {
                        if v >= 0.0 {
                            *high
                        } else {
                            *low
                        }
                    }
                    Permeability::LogNormal { mean, .. } => (mean + v).exp(),
                };
            }
        }
        a
    }
}

/// The discrete Darcy problem on `n × n` cells of the unit square.
#[derive(Clone, Debug, PartialEq)]
pub struct DarcyProblem {
    /// Cells per side `n`.
    pub n: usize,
    /// Permeability per cell, `[n, n]` row-major, positive.
    pub a: Vec<f64>,
    /// Source per cell `f(x_P)`, `[n, n]`.
    pub f: Vec<f64>,
    /// Dirichlet values at the boundary face centres, `[4, n]`: left `(0, y_j)`, right
    /// `(1, y_j)`, bottom `(x_i, 0)`, top `(x_i, 1)`.
    pub g: Vec<f64>,
}

impl DarcyProblem {
    /// A constant source `f` and a constant boundary value `g` (PDEBench: `f = β`, `g = 0`).
    pub fn constant(a: Vec<f64>, f: f64, g: f64) -> Result<Self> {
        let n = (a.len() as f64).sqrt().round() as usize;
        if n * n != a.len() || n < 2 {
            return Err(Error::invalid("a", format!("a permeability on n × n cells (n ≥ 2) has a square number of values, got {}", a.len())));
        }
        Ok(DarcyProblem { n, a, f: vec![f; n * n], g: vec![g; 4 * n] })
    }

    /// Checks the sizes and that `a > 0`, `f` and `g` are finite.
    ///
    /// # Errors
    /// `Shape` or `InvalidArgument` naming the array.
    pub fn validate(&self) -> Result<()> {
        let n = self.n;
        if n < 2 {
            return Err(Error::invalid("n", format!("need at least 2 cells per side, got {n}")));
        }
        for (name, v, len) in [("permeability", &self.a, n * n), ("source", &self.f, n * n), ("boundary values", &self.g, 4 * n)] {
            if v.len() != len {
                return Err(Error::Shape { what: name.into(), expected: vec![len], got: vec![v.len()] });
            }
            if let Some(p) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::invalid("darcy", format!("{name} value {p} is {}", v[p])));
            }
        }
        if let Some(p) = self.a.iter().position(|&x| x <= 0.0) {
            return Err(Error::invalid("darcy", format!("permeability must be positive; cell ({}, {}) has {}", p / n, p % n, self.a[p])));
        }
        Ok(())
    }

    /// Solves for the pressure `u` at the cell centres, `[n, n]` row-major.
    ///
    /// # Errors
    /// As [`DarcyProblem::validate`]; `SolverFailed` if the factorisation fails.
    pub fn solve(&self) -> Result<Vec<f64>> {
        self.validate()?;
        let n = self.n;
        let h2 = 1.0 / (n * n) as f64;
        let mut trip = Vec::with_capacity(5 * n * n);
        let mut rhs = faer::Mat::<f64>::zeros(n * n, 1);
        for i in 0..n {
            for j in 0..n {
                let p = i * n + j;
                let ap = self.a[p];
                let mut diag = 0.0;
                rhs[(p, 0)] += self.f[p] * h2;
                for nb in neighbours(n, i, j) {
                    match nb {
                        Ok(q) => {
                            let t = 2.0 * ap * self.a[q] / (ap + self.a[q]);
                            diag += t;
                            trip.push(Triplet::new(p, q, -t));
                        }
                        Err(side) => {
                            diag += 2.0 * ap;
                            rhs[(p, 0)] += 2.0 * ap * face_value(n, &self.g, side, i, j);
                        }
                    }
                }
                trip.push(Triplet::new(p, p, diag));
            }
        }
        let fail = |reason: String| Error::SolverFailed { system: "darcy".into(), t: None, reason };
        let m = SparseColMat::<usize, f64>::try_new_from_triplets(n * n, n * n, &trip).map_err(|e| fail(format!("matrix assembly: {e:?}")))?;
        let llt = m.sp_cholesky(faer::Side::Lower).map_err(|e| fail(format!("sparse Cholesky: {e:?}")))?;
        llt.solve_in_place(rhs.as_mut());
        let u: Vec<f64> = (0..n * n).map(|p| rhs[(p, 0)]).collect();
        if let Some(p) = u.iter().position(|v| !v.is_finite()) {
            return Err(fail(format!("non-finite pressure in cell ({}, {})", p / n, p % n)));
        }
        Ok(u)
    }

    /// The discrete residual per cell, `r_P = Σ_faces T (u_P − u_nb) − f_P h²` (zero for the
    /// solution): the PDE as a constraint on a field `(a, u)`.
    ///
    /// # Errors
    /// `Shape` for a pressure of the wrong length, or sizes that do not match `n`.
    pub fn residual(&self, u: &[f64]) -> Result<Vec<f64>> {
        self.check_pressure(u)?;
        let mut r = vec![0.0; self.n * self.n];
        cell_residuals(self.n, &self.a, u, &self.f, &self.g, &mut r);
        Ok(r)
    }

    /// Checks the sizes (not the values) of the problem and of a pressure `u`.
    fn check_pressure(&self, u: &[f64]) -> Result<()> {
        let n = self.n;
        if self.a.len() != n * n || self.f.len() != n * n || self.g.len() != 4 * n || u.len() != n * n {
            return Err(Error::Shape {
                what: "Darcy permeability, source, face values and pressure".into(),
                expected: vec![n * n, n * n, 4 * n, n * n],
                got: vec![self.a.len(), self.f.len(), self.g.len(), u.len()],
            });
        }
        Ok(())
    }

    /// The net outflow through the boundary, `Σ_boundary faces 2a_P (u_P − g)`; the sum of the
    /// cell balances makes it equal the total source `Σ_P f_P h²` (the interior fluxes cancel).
    ///
    /// # Errors
    /// `Shape` as [`DarcyProblem::residual`].
    pub fn boundary_outflow(&self, u: &[f64]) -> Result<f64> {
        self.check_pressure(u)?;
        let n = self.n;
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                for nb in neighbours(n, i, j) {
                    if let Err(side) = nb {
                        let p = i * n + j;
                        s += 2.0 * self.a[p] * (u[p] - face_value(n, &self.g, side, i, j));
                    }
                }
            }
        }
        Ok(s)
    }
}

/// The Dirichlet value of the boundary face of cell `(i, j)` on `side` (0 left, 1 right,
/// 2 bottom, 3 top) from the `[4, n]` face values `g`.
pub(crate) fn face_value(n: usize, g: &[f64], side: usize, i: usize, j: usize) -> f64 {
    match side {
        0 | 1 => g[side * n + j],
        _ => g[side * n + i],
    }
}

/// The four neighbours of cell `(i, j)` of an `n × n` grid: `Ok(q)` for a cell, `Err(side)` for
/// a boundary face.
pub(crate) fn neighbours(n: usize, i: usize, j: usize) -> [std::result::Result<usize, usize>; 4] {
    [
        if i > 0 { Ok((i - 1) * n + j) } else { Err(0) },
        if i + 1 < n { Ok((i + 1) * n + j) } else { Err(1) },
        if j > 0 { Ok(i * n + j - 1) } else { Err(2) },
        if j + 1 < n { Ok(i * n + j + 1) } else { Err(3) },
    ]
}

/// `r_P = Σ_faces T (u_P − u_nb) − f_P h²` for every cell into `r` (`[n²]`), for permeability
/// `a`, pressure `u`, source `f` (all `[n²]`) and face values `g` (`[4n]`).
pub(crate) fn cell_residuals(n: usize, a: &[f64], u: &[f64], f: &[f64], g: &[f64], r: &mut [f64]) {
    let h2 = 1.0 / (n * n) as f64;
    for i in 0..n {
        for j in 0..n {
            let p = i * n + j;
            let ap = a[p];
            let mut s = -f[p] * h2;
            for nb in neighbours(n, i, j) {
                s += match nb {
                    Ok(q) => 2.0 * ap * a[q] / (ap + a[q]) * (u[p] - u[q]),
                    Err(side) => 2.0 * ap * (u[p] - face_value(n, g, side, i, j)),
                };
            }
            r[p] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::f64::consts::PI;

    /// Manufactured solution `u = sin(πx) sin(πy) + xy` with `a = 2 + sin(2πx) cos(2πy)`,
    /// `f = −(a Δu + a_x u_x + a_y u_y)` and `g = xy` on the boundary: the max error at the
    /// cell centres falls at second order (observed order > 1.9 between n = 16, 32, 64).
    #[test]
    fn manufactured_solution_converges_at_second_order() {
        let u = |x: f64, y: f64| (PI * x).sin() * (PI * y).sin() + x * y;
        let a = |x: f64, y: f64| 2.0 + (2.0 * PI * x).sin() * (2.0 * PI * y).cos();
        let f = |x: f64, y: f64| {
            let (ux, uy) = (PI * (PI * x).cos() * (PI * y).sin() + y, PI * (PI * x).sin() * (PI * y).cos() + x);
            let lap = -2.0 * PI * PI * (PI * x).sin() * (PI * y).sin();
            let (ax, ay) = (2.0 * PI * (2.0 * PI * x).cos() * (2.0 * PI * y).cos(), -2.0 * PI * (2.0 * PI * x).sin() * (2.0 * PI * y).sin());
            -(a(x, y) * lap + ax * ux + ay * uy)
        };
        let err = |n: usize| {
            let h = 1.0 / n as f64;
            let c: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) * h).collect();
            let cells = |fun: &dyn Fn(f64, f64) -> f64| (0..n * n).map(|p| fun(c[p / n], c[p % n])).collect::<Vec<_>>();
            let mut g = Vec::with_capacity(4 * n);
            g.extend(c.iter().map(|&y| u(0.0, y)));
            g.extend(c.iter().map(|&y| u(1.0, y)));
            g.extend(c.iter().map(|&x| u(x, 0.0)));
            g.extend(c.iter().map(|&x| u(x, 1.0)));
            let prob = DarcyProblem { n, a: cells(&a), f: cells(&f), g };
            let sol = prob.solve().unwrap();
            // The solve satisfies its own discrete balance to round-off.
            let r = prob.residual(&sol).unwrap().iter().map(|v| v.abs()).fold(0.0, f64::max);
            assert!(r < 1e-11, "n = {n}: discrete residual {r}");
            sol.iter().zip(cells(&u)).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
        };
        let (e16, e32, e64) = (err(16), err(32), err(64));
        let (o1, o2) = ((e16 / e32).log2(), (e32 / e64).log2());
        assert!(o1 > 1.9 && o2 > 1.9, "orders {o1}, {o2} (errors {e16:e}, {e32:e}, {e64:e})");
    }

    /// On a two-phase medium the boundary outflow equals the total source (global balance).
    #[test]
    fn outflow_balances_the_source() {
        let n = 24;
        let a = Permeability::default().sample(n, &mut rand::rngs::StdRng::seed_from_u64(5));
        assert!(a.contains(&3.0) && a.contains(&12.0), "both phases present");
        let prob = DarcyProblem::constant(a, 1.0, 0.0).unwrap();
        let u = prob.solve().unwrap();
        let out = prob.boundary_outflow(&u).unwrap();
        assert!((out - 1.0).abs() < 1e-12, "outflow {out} vs source 1");
        assert!(u.iter().all(|&v| v > 0.0), "a positive source with u = 0 on the boundary gives u > 0 inside");
    }

    #[test]
    fn bad_problems_are_errors() {
        let mut p = DarcyProblem::constant(vec![1.0; 16], 1.0, 0.0).unwrap();
        p.a[5] = 0.0;
        assert!(matches!(p.solve(), Err(Error::InvalidArgument { .. })));
        p.a[5] = 1.0;
        p.f.pop();
        assert!(matches!(p.solve(), Err(Error::Shape { .. })));
        assert!(DarcyProblem::constant(vec![1.0; 15], 1.0, 0.0).is_err());
    }
}
