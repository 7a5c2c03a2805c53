//! One axis of a method-of-lines grid: its points and its boundary condition ([`Grid1d`]).
//! Boundary values enter through ghost values outside the grid, so every operator of
//! [`super::systems`] is one stencil applied to the state extended by its two ghosts.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A boundary condition at both ends of one axis.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Boundary {
    /// `u(0) = left`, `u(L) = right`. Grid points are interior: `x_i = (i+1)h`, `h = L/(n+1)`.
    Dirichlet {
        /// Value at `x = 0`.
        left: f64,
        /// Value at `x = L`.
        right: f64,
    },
    /// `∂u/∂x(0) = left`, `∂u/∂x(L) = right`. Cell centres: `x_i = (i+½)h`, `h = L/n`.
    /// Zero fluxes conserve `Σ u_i h` exactly for the heat equation.
    Neumann {
        /// Derivative at `x = 0`.
        left: f64,
        /// Derivative at `x = L`.
        right: f64,
    },
    /// `u(x + L) = u(x)`. Points `x_i = ih`, `h = L/n`.
    Periodic,
}

/// A uniform grid of `n` points on `[0, L]` with its boundary condition.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grid1d {
    /// Number of unknowns.
    pub n: usize,
    /// Domain length `L`.
    pub length: f64,
    /// Boundary condition.
    pub boundary: Boundary,
}

impl Grid1d {
    /// A grid of `n` points on `[0, length]`.
    pub fn new(n: usize, length: f64, boundary: Boundary) -> Self {
        Grid1d { n, length, boundary }
    }

    /// Spacing `h`.
    pub fn h(&self) -> f64 {
        match self.boundary {
            Boundary::Dirichlet { .. } => self.length / (self.n + 1) as f64,
            _ => self.length / self.n as f64,
        }
    }

    /// The coordinates of the unknowns, `[n]`.
    pub fn points(&self) -> Vec<f64> {
        let h = self.h();
        (0..self.n)
            .map(|i| match self.boundary {
                Boundary::Dirichlet { .. } => (i + 1) as f64 * h,
                Boundary::Neumann { .. } => (i as f64 + 0.5) * h,
                Boundary::Periodic => i as f64 * h,
            })
            .collect()
    }

    pub(crate) fn check(&self, system: &str) -> Result<()> {
        if self.n < 3 {
            return Err(Error::invalid("grid", format!("`{system}` needs at least 3 grid points, got {}", self.n)));
        }
        if !(self.length > 0.0 && self.length.is_finite()) {
            return Err(Error::invalid("grid", format!("domain length of `{system}` must be positive, got {}", self.length)));
        }
        Ok(())
    }

    /// Ghost values `(u₋₁, u_n)` from the end values of a line; for a tangent
    /// (`tangent = true`) the boundary data drop out.
    pub(crate) fn end_ghosts(&self, first: f64, last: f64, tangent: bool) -> (f64, f64) {
        let h = self.h();
        let data = if tangent { 0.0 } else { 1.0 };
        match self.boundary {
            Boundary::Dirichlet { left, right } => (data * left, data * right),
            Boundary::Neumann { left, right } => (first - data * h * left, last + data * h * right),
            Boundary::Periodic => (last, first),
        }
    }

    pub(crate) fn ghosts(&self, u: &[f64]) -> (f64, f64) {
        self.end_ghosts(u[0], u[self.n - 1], false)
    }

    pub(crate) fn tangent_ghosts(&self, v: &[f64]) -> (f64, f64) {
        self.end_ghosts(v[0], v[self.n - 1], true)
    }

    /// Adds the ghost cotangents `(a₋₁, a_n)` to the unknowns they were read from.
    pub(crate) fn fold_ghosts(&self, left: f64, right: f64, out: &mut [f64]) {
        let n = self.n;
        match self.boundary {
            Boundary::Dirichlet { .. } => {}
            Boundary::Neumann { .. } => {
                out[0] += left;
                out[n - 1] += right;
            }
            Boundary::Periodic => {
                out[n - 1] += left;
                out[0] += right;
            }
        }
    }

    /// `out_i = (u_{i−1} − 2u_i + u_{i+1}) / h²` with ghosts `(gl, gr)`, for
    /// a strided line `u[off + k·stride]`, `k < n`; `out` is added to with weight `w`.
    pub(crate) fn laplacian_line(&self, u: &[f64], off: usize, stride: usize, (gl, gr): (f64, f64), w: f64, out: &mut [f64]) {
        let n = self.n;
        let c = w / (self.h() * self.h());
        for k in 0..n {
            let at = |k: usize| u[off + k * stride];
            let l = if k == 0 { gl } else { at(k - 1) };
            let r = if k == n - 1 { gr } else { at(k + 1) };
            out[off + k * stride] += c * (l - 2.0 * at(k) + r);
        }
    }

    /// The ghosts of a strided line.
    pub(crate) fn line_ghosts(&self, u: &[f64], off: usize, stride: usize, tangent: bool) -> (f64, f64) {
        self.end_ghosts(u[off], u[off + (self.n - 1) * stride], tangent)
    }
}
