//! Method-of-lines PDEs: second-order finite differences on uniform grids.
//!
//! A [`Grid1d`] fixes the points and the boundary condition of one axis;
//! boundary values enter through ghost values outside the grid, so every
//! operator is one stencil applied to the state extended by its two ghosts.
//! Grid, boundary and initial condition are data, so the PDE-field pipelines
//! can sample them.

use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

pub use crate::sim::grid::{Boundary, Grid1d};
use crate::sim::system::{non_negative, positive, JacobianKind, System};
use crate::Result;

/// `out += w ∇²u` on a tensor grid (`u[i·ny + j]`, `i` along x), ghosts from each axis.
fn laplacian_2d(gx: &Grid1d, gy: &Grid1d, u: &[f64], w: f64, tangent: bool, out: &mut [f64]) {
    let (nx, ny) = (gx.n, gy.n);
    for j in 0..ny {
        let g = gx.line_ghosts(u, j, ny, tangent);
        gx.laplacian_line(u, j, ny, g, w, out);
    }
    for i in 0..nx {
        let g = gy.line_ghosts(u, i * ny, 1, tangent);
        gy.laplacian_line(u, i * ny, 1, g, w, out);
    }
}

/// Initial conditions on a [`Grid1d`].
pub mod ic {
    use super::*;

    /// `a sin(kπx/L)`: the `k`-th Dirichlet eigenmode (use `Boundary::Dirichlet { 0, 0 }`).
    pub fn sine(grid: &Grid1d, k: usize, a: f64) -> Vec<f64> {
        let l = grid.length;
        grid.points().iter().map(|x| a * (k as f64 * std::f64::consts::PI * x / l).sin()).collect()
    }

    /// `a exp(−(x − c)² / (2w²))`.
    pub fn gaussian(grid: &Grid1d, c: f64, w: f64, a: f64) -> Vec<f64> {
        grid.points().iter().map(|x| a * (-(x - c).powi(2) / (2.0 * w * w)).exp()).collect()
    }

    /// `Σ_{k=1..modes} a_k sin(2πkx/L + φ_k)` with `a_k ~ U(−amplitude, amplitude)/k`
    /// and `φ_k ~ U(0, 2π)` from `seed` (PDEBench draws its 1D initial states
    /// from such sums of a few sine waves).
    pub fn random_fourier(grid: &Grid1d, seed: u64, modes: usize, amplitude: f64) -> Vec<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let terms: Vec<(f64, f64)> =
            (1..=modes).map(|k| (rng.random_range(-amplitude..amplitude) / k as f64, rng.random_range(0.0..std::f64::consts::TAU))).collect();
        let l = grid.length;
        grid.points()
            .iter()
            .map(|x| terms.iter().enumerate().map(|(k, (a, ph))| a * (std::f64::consts::TAU * (k + 1) as f64 * x / l + ph).sin()).sum())
            .collect()
    }
}

/// The reaction term of a 1D reaction–diffusion equation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reaction {
    /// Fisher–KPP, `R(u) = r u (1 − u)`.
    FisherKpp,
    /// Allen–Cahn, `R(u) = r (u − u³)`.
    AllenCahn,
}

impl Reaction {
    /// `R(u)/r` and its derivative `d(R/r)/du`.
    pub fn shape(self, u: f64) -> (f64, f64) {
        match self {
            Reaction::FisherKpp => (u * (1.0 - u), 1.0 - 2.0 * u),
            Reaction::AllenCahn => (u - u * u * u, 1.0 - 3.0 * u * u),
        }
    }
}

/// Which 1D equation a [`Pde1d`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pde1dKind {
    /// Heat, `u_t = D u_xx`, `p = [D]`.
    Heat,
    /// Viscous Burgers in flux form, `u_t + (u²/2)_x = ν u_xx`, `p = [ν]`.
    /// The face flux `F_{i+½} = (u_i² + u_i u_{i+1} + u_{i+1}²)/6` is the
    /// energy-conserving (skew-symmetric) central flux, so with periodic
    /// boundaries `Σ u_i h` is conserved exactly and `Σ u_i² h` only decays by viscosity.
    Burgers,
    /// Reaction–diffusion, `u_t = D u_xx + R(u)`, `p = [D, r]`.
    ReactionDiffusion(Reaction),
}

/// A 1D method-of-lines PDE: one of [`Pde1dKind`] on a [`Grid1d`] with an initial state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pde1d {
    /// The equation.
    pub kind: Pde1dKind,
    /// Grid and boundary condition.
    pub grid: Grid1d,
    /// Parameters (see [`Pde1dKind`]).
    pub p: Vec<f64>,
    /// `u(x_i, 0)`, `[n]`.
    pub u0: Vec<f64>,
}

impl Pde1d {
    /// Heat equation with diffusivity `d`.
    pub fn heat(grid: Grid1d, d: f64, u0: Vec<f64>) -> Self {
        Pde1d { kind: Pde1dKind::Heat, grid, p: vec![d], u0 }
    }

    /// Viscous Burgers with viscosity `nu`.
    pub fn burgers(grid: Grid1d, nu: f64, u0: Vec<f64>) -> Self {
        Pde1d { kind: Pde1dKind::Burgers, grid, p: vec![nu], u0 }
    }

    /// Reaction–diffusion with diffusivity `d` and rate `r`.
    pub fn reaction_diffusion(grid: Grid1d, reaction: Reaction, d: f64, r: f64, u0: Vec<f64>) -> Self {
        Pde1d { kind: Pde1dKind::ReactionDiffusion(reaction), grid, p: vec![d, r], u0 }
    }

    fn diffusivity(&self, p: &[f64]) -> f64 {
        p[0]
    }

    /// `F(a, b)` and its partial derivatives (Burgers' face flux).
    fn flux(a: f64, b: f64) -> (f64, f64, f64) {
        ((a * a + a * b + b * b) / 6.0, (2.0 * a + b) / 6.0, (a + 2.0 * b) / 6.0)
    }

    /// The state extended by its ghosts, `[n + 2]`.
    fn extend(&self, u: &[f64], tangent: bool) -> Vec<f64> {
        let (gl, gr) = if tangent { self.grid.tangent_ghosts(u) } else { self.grid.ghosts(u) };
        let mut e = Vec::with_capacity(u.len() + 2);
        e.push(gl);
        e.extend_from_slice(u);
        e.push(gr);
        e
    }
}

impl System for Pde1d {
    fn name(&self) -> String {
        match self.kind {
            Pde1dKind::Heat => "heat1d".into(),
            Pde1dKind::Burgers => "burgers1d".into(),
            Pde1dKind::ReactionDiffusion(Reaction::FisherKpp) => "fisher_kpp1d".into(),
            Pde1dKind::ReactionDiffusion(Reaction::AllenCahn) => "allen_cahn1d".into(),
        }
    }
    fn dim(&self) -> usize {
        self.grid.n
    }
    fn field(&self) -> Option<crate::sim::FieldLayout> {
        Some(crate::sim::FieldLayout { channels: vec!["u".into()], axes: vec![("x".into(), self.grid)] })
    }
    fn param_names(&self) -> Vec<String> {
        match self.kind {
            Pde1dKind::Heat => vec!["diffusivity".into()],
            Pde1dKind::Burgers => vec!["viscosity".into()],
            Pde1dKind::ReactionDiffusion(_) => vec!["diffusivity".into(), "rate".into()],
        }
    }
    fn params(&self) -> Vec<f64> {
        self.p.clone()
    }
    fn initial_state(&self) -> Vec<f64> {
        self.u0.clone()
    }
    fn validate(&self, p: &[f64]) -> Result<()> {
        let name = self.name();
        self.grid.check(&name)?;
        match self.kind {
            Pde1dKind::Heat => non_negative(&name, "diffusivity", p[0]),
            Pde1dKind::Burgers => positive(&name, "viscosity", p[0]),
            Pde1dKind::ReactionDiffusion(_) => {
                non_negative(&name, "diffusivity", p[0])?;
                non_negative(&name, "rate", p[1])
            }
        }
    }
    fn jacobian_kind(&self) -> JacobianKind {
        JacobianKind::Sparse
    }

    fn rhs(&self, _t: f64, u: &[f64], p: &[f64], du: &mut [f64]) {
        let e = self.extend(u, false);
        let h = self.grid.h();
        let d = self.diffusivity(p) / (h * h);
        for i in 0..u.len() {
            let (l, c, r) = (e[i], e[i + 1], e[i + 2]);
            let mut v = d * (l - 2.0 * c + r);
            match self.kind {
                Pde1dKind::Heat => {}
                Pde1dKind::Burgers => v -= (Self::flux(c, r).0 - Self::flux(l, c).0) / h,
                Pde1dKind::ReactionDiffusion(re) => v += p[1] * re.shape(c).0,
            }
            du[i] = v;
        }
    }

    fn jvp(&self, _t: f64, u: &[f64], p: &[f64], v: &[f64], out: &mut [f64]) {
        let e = self.extend(u, false);
        let ev = self.extend(v, true);
        let h = self.grid.h();
        let d = self.diffusivity(p) / (h * h);
        for i in 0..u.len() {
            let mut o = d * (ev[i] - 2.0 * ev[i + 1] + ev[i + 2]);
            match self.kind {
                Pde1dKind::Heat => {}
                Pde1dKind::Burgers => {
                    let (_, fr_a, fr_b) = Self::flux(e[i + 1], e[i + 2]);
                    let (_, fl_a, fl_b) = Self::flux(e[i], e[i + 1]);
                    o -= (fr_a * ev[i + 1] + fr_b * ev[i + 2] - fl_a * ev[i] - fl_b * ev[i + 1]) / h;
                }
                Pde1dKind::ReactionDiffusion(re) => o += p[1] * re.shape(e[i + 1]).1 * ev[i + 1],
            }
            out[i] = o;
        }
    }

    fn vjp(&self, _t: f64, u: &[f64], p: &[f64], w: &[f64], out: &mut [f64]) {
        let n = u.len();
        let e = self.extend(u, false);
        let h = self.grid.h();
        let d = self.diffusivity(p) / (h * h);
        // Cotangent of the extended state.
        let mut ce = vec![0.0; n + 2];
        for i in 0..n {
            let wi = w[i];
            ce[i] += d * wi;
            ce[i + 1] -= 2.0 * d * wi;
            ce[i + 2] += d * wi;
            match self.kind {
                Pde1dKind::Heat => {}
                Pde1dKind::Burgers => {
                    let (_, fr_a, fr_b) = Self::flux(e[i + 1], e[i + 2]);
                    let (_, fl_a, fl_b) = Self::flux(e[i], e[i + 1]);
                    ce[i + 1] -= (fr_a - fl_b) * wi / h;
                    ce[i + 2] -= fr_b * wi / h;
                    ce[i] += fl_a * wi / h;
                }
                Pde1dKind::ReactionDiffusion(re) => ce[i + 1] += p[1] * re.shape(e[i + 1]).1 * wi,
            }
        }
        out.copy_from_slice(&ce[1..=n]);
        self.grid.fold_ghosts(ce[0], ce[n + 1], out);
    }

    fn param_jvp(&self, _t: f64, u: &[f64], _p: &[f64], v: &[f64], out: &mut [f64]) {
        let cols = self.param_columns(u);
        for i in 0..u.len() {
            out[i] = cols.iter().zip(v).map(|(c, vk)| c[i] * vk).sum();
        }
    }

    fn param_vjp(&self, _t: f64, u: &[f64], _p: &[f64], w: &[f64], out: &mut [f64]) {
        let cols = self.param_columns(u);
        for (o, c) in out.iter_mut().zip(&cols) {
            *o = c.iter().zip(w).map(|(a, b)| a * b).sum();
        }
    }
}

impl Pde1d {
    /// `∂f/∂p_k` as one column per parameter.
    fn param_columns(&self, u: &[f64]) -> Vec<Vec<f64>> {
        let e = self.extend(u, false);
        let h2 = self.grid.h() * self.grid.h();
        let lap: Vec<f64> = (0..u.len()).map(|i| (e[i] - 2.0 * e[i + 1] + e[i + 2]) / h2).collect();
        match self.kind {
            Pde1dKind::Heat | Pde1dKind::Burgers => vec![lap],
            Pde1dKind::ReactionDiffusion(re) => vec![lap, u.iter().map(|&c| re.shape(c).0).collect()],
        }
    }
}

/// Heat equation on a rectangle, `u_t = D ∇²u`, `p = [D]`, state `u[i·ny + j]`
/// (`i` along x); each axis has its own [`Grid1d`] (points and boundary).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heat2d {
    /// Grid along x.
    pub gx: Grid1d,
    /// Grid along y.
    pub gy: Grid1d,
    /// Diffusivity.
    pub d: f64,
    /// `u(x_i, y_j, 0)`, `[nx·ny]`.
    pub u0: Vec<f64>,
}

impl Heat2d {
    /// `sin(kπx/Lx) sin(lπy/Ly)` on Dirichlet-zero grids: an eigenmode of the
    /// discrete Laplacian with eigenvalue `−Σ_axis (4/h²) sin²(kπh/(2L))`.
    pub fn sine_mode(gx: Grid1d, gy: Grid1d, d: f64, k: usize, l: usize) -> Self {
        let sx = ic::sine(&gx, k, 1.0);
        let sy = ic::sine(&gy, l, 1.0);
        let u0 = sx.iter().flat_map(|a| sy.iter().map(move |b| a * b)).collect();
        Heat2d { gx, gy, d, u0 }
    }
}

impl System for Heat2d {
    fn name(&self) -> String {
        "heat2d".into()
    }
    fn dim(&self) -> usize {
        self.gx.n * self.gy.n
    }
    fn field(&self) -> Option<crate::sim::FieldLayout> {
        Some(crate::sim::FieldLayout { channels: vec!["u".into()], axes: vec![("x".into(), self.gx), ("y".into(), self.gy)] })
    }
    fn param_names(&self) -> Vec<String> {
        vec!["diffusivity".into()]
    }
    fn params(&self) -> Vec<f64> {
        vec![self.d]
    }
    fn initial_state(&self) -> Vec<f64> {
        self.u0.clone()
    }
    fn validate(&self, p: &[f64]) -> Result<()> {
        self.gx.check("heat2d")?;
        self.gy.check("heat2d")?;
        non_negative("heat2d", "diffusivity", p[0])
    }
    fn jacobian_kind(&self) -> JacobianKind {
        JacobianKind::Sparse
    }
    fn rhs(&self, _t: f64, u: &[f64], p: &[f64], du: &mut [f64]) {
        du.fill(0.0);
        laplacian_2d(&self.gx, &self.gy, u, p[0], false, du);
    }
    fn jvp(&self, _t: f64, _u: &[f64], p: &[f64], v: &[f64], out: &mut [f64]) {
        out.fill(0.0);
        laplacian_2d(&self.gx, &self.gy, v, p[0], true, out);
    }
    // The homogeneous 5-point Laplacian is symmetric for all three boundary kinds.
    fn vjp(&self, t: f64, u: &[f64], p: &[f64], w: &[f64], out: &mut [f64]) {
        self.jvp(t, u, p, w, out);
    }
    fn param_jvp(&self, _t: f64, u: &[f64], _p: &[f64], v: &[f64], out: &mut [f64]) {
        out.fill(0.0);
        laplacian_2d(&self.gx, &self.gy, u, v[0], false, out);
    }
    fn param_vjp(&self, _t: f64, u: &[f64], _p: &[f64], w: &[f64], out: &mut [f64]) {
        let mut lap = vec![0.0; u.len()];
        laplacian_2d(&self.gx, &self.gy, u, 1.0, false, &mut lap);
        out[0] = lap.iter().zip(w).map(|(a, b)| a * b).sum();
    }
}

/// The 2D Brusselator on the periodic unit square (Hairer & Wanner II, §IV.10,
/// BRUSS-2D without its forcing term):
/// `u_t = A + u²v − (B+1)u + α∇²u`, `v_t = Bu − u²v + α∇²v`,
/// `p = [A, B, α] = [1, 3.4, 0.1]`, `N × N` points `x_i = i/N`, state `[u (N²), v (N²)]`,
/// `u₀ = 22 y(1−y)^{3/2}`, `v₀ = 27 x(1−x)^{3/2}`. Sparse Jacobian by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Brusselator2d {
    /// Points per axis.
    pub n: usize,
    /// `[A, B, α]`.
    pub p: [f64; 3],
}

impl Brusselator2d {
    /// The `n × n` problem with the default parameters.
    pub fn new(n: usize) -> Self {
        Brusselator2d { n, p: [1.0, 3.4, 0.1] }
    }

    fn grid(&self) -> Grid1d {
        Grid1d::new(self.n, 1.0, Boundary::Periodic)
    }
}

impl System for Brusselator2d {
    fn name(&self) -> String {
        "brusselator2d".into()
    }
    fn dim(&self) -> usize {
        2 * self.n * self.n
    }
    fn field(&self) -> Option<crate::sim::FieldLayout> {
        Some(crate::sim::FieldLayout { channels: vec!["u".into(), "v".into()], axes: vec![("x".into(), self.grid()), ("y".into(), self.grid())] })
    }
    fn param_names(&self) -> Vec<String> {
        vec!["a".into(), "b".into(), "alpha".into()]
    }
    fn params(&self) -> Vec<f64> {
        self.p.to_vec()
    }
    fn initial_state(&self) -> Vec<f64> {
        let g = self.grid().points();
        let mut y = vec![0.0; self.dim()];
        let nn = self.n * self.n;
        for (i, x) in g.iter().enumerate() {
            for (j, yy) in g.iter().enumerate() {
                y[i * self.n + j] = 22.0 * yy * (1.0 - yy).powf(1.5);
                y[nn + i * self.n + j] = 27.0 * x * (1.0 - x).powf(1.5);
            }
        }
        y
    }
    fn validate(&self, p: &[f64]) -> Result<()> {
        self.grid().check("brusselator2d")?;
        non_negative("brusselator2d", "alpha", p[2])
    }
    fn jacobian_kind(&self) -> JacobianKind {
        JacobianKind::Sparse
    }
    /// Each species at a point reads its five-point periodic stencil and the
    /// other species at the same point.
    fn jacobian_pattern(&self) -> Option<Vec<Vec<u32>>> {
        let n = self.n;
        let nn = n * n;
        let mut rows = Vec::with_capacity(2 * nn);
        for c in 0..2 {
            for i in 0..n {
                for j in 0..n {
                    let at = |s: usize, a: usize, b: usize| (s * nn + a * n + b) as u32;
                    let mut row =
                        vec![at(c, i, j), at(c, (i + 1) % n, j), at(c, (i + n - 1) % n, j), at(c, i, (j + 1) % n), at(c, i, (j + n - 1) % n), at(1 - c, i, j)];
                    row.sort_unstable();
                    row.dedup();
                    rows.push(row);
                }
            }
        }
        Some(rows)
    }
    fn rhs(&self, _t: f64, y: &[f64], p: &[f64], dy: &mut [f64]) {
        let g = self.grid();
        let nn = self.n * self.n;
        let (u, v) = y.split_at(nn);
        for k in 0..nn {
            let uuv = u[k] * u[k] * v[k];
            dy[k] = p[0] + uuv - (p[1] + 1.0) * u[k];
            dy[nn + k] = p[1] * u[k] - uuv;
        }
        let (du, dv) = dy.split_at_mut(nn);
        laplacian_2d(&g, &g, u, p[2], false, du);
        laplacian_2d(&g, &g, v, p[2], false, dv);
    }
    fn jvp(&self, _t: f64, y: &[f64], p: &[f64], w: &[f64], out: &mut [f64]) {
        let g = self.grid();
        let nn = self.n * self.n;
        let (u, v) = y.split_at(nn);
        let (wu, wv) = w.split_at(nn);
        for k in 0..nn {
            let (uv2, uu) = (2.0 * u[k] * v[k], u[k] * u[k]);
            out[k] = (uv2 - p[1] - 1.0) * wu[k] + uu * wv[k];
            out[nn + k] = (p[1] - uv2) * wu[k] - uu * wv[k];
        }
        let (ou, ov) = out.split_at_mut(nn);
        laplacian_2d(&g, &g, wu, p[2], true, ou);
        laplacian_2d(&g, &g, wv, p[2], true, ov);
    }
    fn vjp(&self, _t: f64, y: &[f64], p: &[f64], w: &[f64], out: &mut [f64]) {
        let g = self.grid();
        let nn = self.n * self.n;
        let (u, v) = y.split_at(nn);
        let (wu, wv) = w.split_at(nn);
        for k in 0..nn {
            let (uv2, uu) = (2.0 * u[k] * v[k], u[k] * u[k]);
            out[k] = (uv2 - p[1] - 1.0) * wu[k] + (p[1] - uv2) * wv[k];
            out[nn + k] = uu * wu[k] - uu * wv[k];
        }
        let (ou, ov) = out.split_at_mut(nn);
        laplacian_2d(&g, &g, wu, p[2], true, ou);
        laplacian_2d(&g, &g, wv, p[2], true, ov);
    }
    fn param_jvp(&self, _t: f64, y: &[f64], _p: &[f64], v: &[f64], out: &mut [f64]) {
        let g = self.grid();
        let nn = self.n * self.n;
        let (u, vv) = y.split_at(nn);
        for k in 0..nn {
            out[k] = v[0] - v[1] * u[k];
            out[nn + k] = v[1] * u[k];
        }
        let (ou, ov) = out.split_at_mut(nn);
        laplacian_2d(&g, &g, u, v[2], false, ou);
        laplacian_2d(&g, &g, vv, v[2], false, ov);
    }
    fn param_vjp(&self, _t: f64, y: &[f64], _p: &[f64], w: &[f64], out: &mut [f64]) {
        let g = self.grid();
        let nn = self.n * self.n;
        let (u, _) = y.split_at(nn);
        let (wu, wv) = w.split_at(nn);
        out[0] = wu.iter().sum();
        out[1] = (0..nn).map(|k| u[k] * (wv[k] - wu[k])).sum();
        let mut lap = vec![0.0; 2 * nn];
        let (lu, lv) = lap.split_at_mut(nn);
        laplacian_2d(&g, &g, u, 1.0, false, lu);
        laplacian_2d(&g, &g, &y[nn..], 1.0, false, lv);
        out[2] = lap.iter().zip(w).map(|(a, b)| a * b).sum();
    }
}
