//! Hard constraints on fields: `h(u) = 0`, one row of `h` per constrained quantity, with the
//! Jacobian `J = ∂h/∂u` as sparse rows.
//!
//! Linear constraints (`h = A u − b`) are [`LinearConstraint`]s built by the constructors of
//! this module: initial condition, Dirichlet / Neumann / periodic boundaries, conserved mass.
//! The nonlinear ones have analytic Jacobians ([`MassBalance`], [`PdeResidual`]) or take it from
//! burn's autodiff ([`AutodiffConstraint`]); [`Stack`] concatenates any of them.
//!
//! All residuals are in the field's physical units (values, or mass = `Σ wᵢ uᵢ`); the
//! projection tolerance applies to them directly.

use burn::tensor::{Tensor, TensorData};

use super::grid::{AxisKind, Grid};
use crate::host::ToHost;
use crate::sim::systems::Reaction;
use crate::{Error, Result};

/// A sparse row: `(column, value)` pairs.
pub type SparseRow = Vec<(usize, f64)>;

/// `J = ∂h/∂u` as sparse rows over `n` columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Jacobian {
    /// Columns (the field size `n`).
    pub n: usize,
    /// One sparse row per residual.
    pub rows: Vec<SparseRow>,
}

impl Jacobian {
    /// `J v`, `[m]`.
    pub fn apply(&self, v: &[f64]) -> Vec<f64> {
        self.rows.iter().map(|r| r.iter().map(|&(c, a)| a * v[c]).sum()).collect()
    }

    /// `out += s Jᵀ w`.
    pub fn apply_transpose_add(&self, w: &[f64], s: f64, out: &mut [f64]) {
        for (r, &wr) in self.rows.iter().zip(w) {
            for &(c, a) in r {
                out[c] += s * a * wr;
            }
        }
    }

    /// Dense `[m, n]` row-major (for tests and small problems).
    pub fn to_dense(&self) -> Vec<f64> {
        let mut d = vec![0.0; self.rows.len() * self.n];
        for (i, r) in self.rows.iter().enumerate() {
            for &(c, a) in r {
                d[i * self.n + c] += a;
            }
        }
        d
    }
}

/// A constraint `h(u) = 0` on flat fields of size `n` (the grid's layout).
pub trait Constraint: Send + Sync {
    /// A short description used in errors and reports (`"initial condition (32 rows)"`).
    fn name(&self) -> String;
    /// Field size `n`.
    fn dim(&self) -> usize;
    /// Rows `m`.
    fn rows(&self) -> usize;
    /// `h(u)`, `[m]`.
    fn residual(&self, u: &[f64], h: &mut [f64]);
    /// `∂h/∂u` at `u`.
    fn jacobian(&self, u: &[f64]) -> Jacobian;
    /// Whether `h` is affine (its Jacobian does not depend on `u`).
    fn is_linear(&self) -> bool {
        false
    }
}

/// Checks a field's length against a constraint's.
pub(crate) fn check_dim(c: &dyn Constraint, u: &[f64]) -> Result<()> {
    if u.len() != c.dim() {
        return Err(Error::Shape { what: format!("field for constraint `{}`", c.name()), expected: vec![c.dim()], got: vec![u.len()] });
    }
    Ok(())
}

/// `h(u) = A u − b` with sparse `A`.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearConstraint {
    /// What it constrains.
    pub label: String,
    /// `A`, sparse rows over the field.
    pub a: Jacobian,
    /// `b`, `[m]`.
    pub b: Vec<f64>,
}

impl Constraint for LinearConstraint {
    fn name(&self) -> String {
        format!("{} ({} rows)", self.label, self.b.len())
    }
    fn dim(&self) -> usize {
        self.a.n
    }
    fn rows(&self) -> usize {
        self.b.len()
    }
    fn residual(&self, u: &[f64], h: &mut [f64]) {
        for ((hr, row), b) in h.iter_mut().zip(&self.a.rows).zip(&self.b) {
            *hr = row.iter().map(|&(c, a)| a * u[c]).sum::<f64>() - b;
        }
    }
    fn jacobian(&self, _u: &[f64]) -> Jacobian {
        self.a.clone()
    }
    fn is_linear(&self) -> bool {
        true
    }
}

/// Which end of the spatial axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// `x = x_0`.
    Left,
    /// `x = x_{X−1}`.
    Right,
}

/// Where the spatial points of a non-periodic axis sit relative to its boundary, which decides
/// the one-sided derivative stencils and the mass quadrature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Points {
    /// The first and last points lie on the boundary (a node grid; `sim`'s Dirichlet problems
    /// written with their boundary values).
    Nodes,
    /// Cell centres: the boundary is half a step outside the first and last points (`sim`'s
    /// Neumann problems).
    Cells,
}

/// The quadrature weights of the spatial mass `M(t) = Σᵢ wᵢ u(xᵢ, t)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quadrature {
    /// `wᵢ = h` (periodic axes, cell centres: the mass `sim` conserves).
    Uniform,
    /// `wᵢ = h`, `w₀ = w_{X−1} = h/2` (trapezoid on nodes).
    Trapezoid,
    /// `wᵢ = h` on the interior nodes, 0 on the two boundary nodes (the mass of `sim`'s
    /// Dirichlet problems, whose unknowns are the interior nodes).
    Interior,
}

impl Quadrature {
    /// The weights for `n` points of spacing `h`.
    pub fn weights(self, n: usize, h: f64) -> Vec<f64> {
        (0..n)
            .map(|i| match self {
                Quadrature::Uniform => h,
                Quadrature::Trapezoid if i == 0 || i + 1 == n => 0.5 * h,
                Quadrature::Trapezoid => h,
                Quadrature::Interior if i == 0 || i + 1 == n => 0.0,
                Quadrature::Interior => h,
            })
            .collect()
    }
}

/// Per-time values: one for every time, or one per time index.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum TimeValues {
    /// The same value at every time.
    Constant(f64),
    /// One value per time index, `[T]`.
    PerTime(Vec<f64>),
}

impl TimeValues {
    fn at(&self, k: usize) -> f64 {
        match self {
            TimeValues::Constant(v) => *v,
            TimeValues::PerTime(v) => v[k],
        }
    }

    fn check(&self, nt: usize, what: &'static str) -> Result<()> {
        match self {
            TimeValues::PerTime(v) if v.len() != nt => Err(Error::Shape { what: what.into(), expected: vec![nt], got: vec![v.len()] }),
            _ => Ok(()),
        }
    }
}

/// Rows `u(c, i, k) − value` for the listed `(flat index, value)` pairs.
fn fixed(label: String, n: usize, entries: Vec<(usize, f64)>) -> LinearConstraint {
    let (rows, b) = entries.into_iter().map(|(i, v)| (vec![(i, 1.0)], v)).unzip();
    LinearConstraint { label, a: Jacobian { n, rows }, b }
}

impl LinearConstraint {
    /// Fixes the listed values: rows `u_i − vᵢ` (ECI's value constraints; any grid).
    ///
    /// # Errors
    /// `InvalidArgument` for an index outside the field.
    pub fn fixed_values(label: &str, grid: &Grid, entries: Vec<(usize, f64)>) -> Result<Self> {
        if let Some(&(i, _)) = entries.iter().find(|(i, _)| *i >= grid.len()) {
            return Err(Error::invalid("entries", format!("index {i} outside a field of {} values", grid.len())));
        }
        Ok(fixed(label.into(), grid.len(), entries))
    }

    /// The initial condition `u(c, x_i, t_0) = u₀(c, x_i)` on a space-time grid `[x, t]`;
    /// `u0` is `[C·X]`.
    ///
    /// # Errors
    /// `InvalidArgument` without a space-time grid; `Shape` for a wrong `u0` length.
    pub fn initial_condition(grid: &Grid, u0: &[f64]) -> Result<Self> {
        let (x, _) = grid.as_space_time("an initial condition")?;
        let c = grid.channels.len();
        if u0.len() != c * x.n {
            return Err(Error::Shape { what: "initial condition".into(), expected: vec![c * x.n], got: vec![u0.len()] });
        }
        let entries = (0..c).flat_map(|ch| (0..x.n).map(move |i| (ch, i))).map(|(ch, i)| (grid.index(ch, i, 0), u0[ch * x.n + i])).collect();
        Ok(fixed("initial condition".into(), grid.len(), entries))
    }

    /// A Dirichlet condition `u(c, x_side, t_k) = g(t_k)` for time indices `k ≥ from`
    /// (`from = 1` leaves the corner to an initial condition), channel `c`.
    ///
    /// # Errors
    /// `InvalidArgument` without a space-time grid or with `from` past the last time; `Shape`
    /// for per-time values of the wrong length.
    pub fn dirichlet(grid: &Grid, channel: usize, side: Side, g: &TimeValues, from: usize) -> Result<Self> {
        let (x, t) = grid.as_space_time("a Dirichlet condition")?;
        g.check(t.n, "Dirichlet values")?;
        check_channel(grid, channel)?;
        if from >= t.n {
            return Err(Error::invalid("from", format!("first time index {from} is past the last ({})", t.n - 1)));
        }
        let i = match side {
            Side::Left => 0,
            Side::Right => x.n - 1,
        };
        let entries = (from..t.n).map(|k| (grid.index(channel, i, k), g.at(k))).collect();
        Ok(fixed(format!("Dirichlet {side:?} boundary"), grid.len(), entries))
    }

    /// A Neumann condition `∂u/∂x(c, x_side, t_k) = g(t_k)`, `k ≥ from`, by the second-order
    /// one-sided stencil of the point layout (Taylor expansion at the boundary):
    /// nodes `(−3u₀ + 4u₁ − u₂)/(2h)`, cells `(−2u₀ + 3u₁ − u₂)/h` (points at `h/2, 3h/2, 5h/2`),
    /// mirrored at the right end.
    ///
    /// # Errors
    /// As [`LinearConstraint::dirichlet`], and for fewer than 3 points.
    pub fn neumann(grid: &Grid, channel: usize, side: Side, points: Points, g: &TimeValues, from: usize) -> Result<Self> {
        let (x, t) = grid.as_space_time("a Neumann condition")?;
        g.check(t.n, "Neumann values")?;
        check_channel(grid, channel)?;
        if x.n < 3 || from >= t.n {
            return Err(Error::invalid(
                "grid",
                format!("a Neumann stencil needs 3 points and a time index below {}, got {} points and from = {from}", t.n, x.n),
            ));
        }
        let h = x.step;
        let coef: [f64; 3] = match points {
            Points::Nodes => [-1.5 / h, 2.0 / h, -0.5 / h],
            Points::Cells => [-2.0 / h, 3.0 / h, -1.0 / h],
        };
        let (idx, sign): ([usize; 3], f64) = match side {
            Side::Left => ([0, 1, 2], 1.0),
            Side::Right => ([x.n - 1, x.n - 2, x.n - 3], -1.0),
        };
        let mut rows = Vec::new();
        let mut b = Vec::new();
        for k in from..t.n {
            let mut r: SparseRow = idx.iter().zip(coef).map(|(&i, a)| (grid.index(channel, i, k), sign * a)).collect();
            r.sort_by_key(|e| e.0);
            rows.push(r);
            b.push(g.at(k));
        }
        Ok(LinearConstraint { label: format!("Neumann {side:?} boundary"), a: Jacobian { n: grid.len(), rows }, b })
    }

    /// Periodicity of a node grid whose last point duplicates the first: `u(c, x_0, t) =
    /// u(c, x_{X−1}, t)` for every time (and every `y` on a 2D spatial grid).
    ///
    /// # Errors
    /// `InvalidArgument` for fewer than 2 points.
    pub fn periodic(grid: &Grid, channel: usize) -> Result<Self> {
        grid.validate()?;
        check_channel(grid, channel)?;
        let [_, nx, ny] = grid.shape4();
        if nx < 2 {
            return Err(Error::invalid("grid", "periodicity needs at least 2 points"));
        }
        let rows = (0..ny).map(|j| vec![(grid.index(channel, 0, j), 1.0), (grid.index(channel, nx - 1, j), -1.0)]).collect::<Vec<_>>();
        let m = rows.len();
        Ok(LinearConstraint { label: "periodic boundary".into(), a: Jacobian { n: grid.len(), rows }, b: vec![0.0; m] })
    }

    /// Conservation of the spatial mass `M(t_k) = Σᵢ wᵢ u(c, xᵢ, t_k)` on a space-time grid:
    /// rows `M(t_k) − M(t_0)`, `k ≥ 1`, or `M(t_k) − mass`, `k ≥ 0`, when the mass is given.
    /// On a grid without time, the single row `Σ wᵢⱼ u − mass` (weights the product of the
    /// axes' quadratures), which needs `mass`.
    ///
    /// # Errors
    /// `InvalidArgument` for a grid without time and without a mass.
    pub fn mass_conservation(grid: &Grid, channel: usize, quadrature: Quadrature, mass: Option<f64>) -> Result<Self> {
        grid.validate()?;
        check_channel(grid, channel)?;
        let [_, nx, ny] = grid.shape4();
        let wx = quadrature.weights(nx, grid.axes[0].step);
        if let Some(t) = grid.time_axis() {
            let first = usize::from(mass.is_none());
            let mut rows = Vec::new();
            for k in first..t.n {
                let mut r: SparseRow = Vec::new();
                for (i, &w) in wx.iter().enumerate().filter(|(_, w)| **w != 0.0) {
                    if mass.is_none() {
                        r.push((grid.index(channel, i, 0), -w));
                    }
                    r.push((grid.index(channel, i, k), w));
                }
                r.sort_by_key(|e| e.0);
                rows.push(r);
            }
            let m = rows.len();
            Ok(LinearConstraint { label: "mass conservation".into(), a: Jacobian { n: grid.len(), rows }, b: vec![mass.unwrap_or(0.0); m] })
        } else {
            let mass = mass.ok_or_else(|| Error::invalid("mass", "a field without a time axis needs the mass value"))?;
            let wy = if ny > 1 { quadrature.weights(ny, grid.axes[1].step) } else { vec![1.0] };
            let row =
                (0..nx).flat_map(|i| (0..ny).map(move |j| (i, j))).map(|(i, j)| (grid.index(channel, i, j), wx[i] * wy[j])).filter(|e| e.1 != 0.0).collect();
            Ok(LinearConstraint { label: "total mass".into(), a: Jacobian { n: grid.len(), rows: vec![row] }, b: vec![mass] })
        }
    }
}

fn check_channel(grid: &Grid, channel: usize) -> Result<()> {
    if channel >= grid.channels.len() {
        return Err(Error::invalid("channel", format!("channel {channel} of a {}-channel grid", grid.channels.len())));
    }
    Ok(())
}

/// The source term `s(u)` of a mass balance or a reaction–diffusion residual.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceTerm {
    /// `r R(u)/r` of `sim`'s reaction terms (Fisher–KPP `r u(1 − u)`, Allen–Cahn `r(u − u³)`).
    Reaction {
        /// Which reaction.
        reaction: Reaction,
        /// Rate `r`.
        rate: f64,
    },
}

impl SourceTerm {
    /// `(s(u), s′(u))`.
    pub fn eval(self, u: f64) -> (f64, f64) {
        match self {
            SourceTerm::Reaction { reaction, rate } => {
                let (v, d) = reaction.shape(u);
                (rate * v, rate * d)
            }
        }
    }
}

/// The boundary inflow `F(t)` of a mass balance `dM/dt = Σ wᵢ s(uᵢ) + F`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundaryFlux {
    /// No flux through the boundary.
    Zero,
    /// Known values per time (e.g. `D (g_R − g_L)` from Neumann data `∂u/∂x = g`).
    Known(TimeValues),
    /// Viscous Burgers on a node grid whose end nodes hold the Dirichlet values (the layout of
    /// `sim`'s Dirichlet problems written with their boundary values): the exact inflow of the
    /// semi-discrete system, `F = Φ(u₀, u₁) − Φ(u_{X−2}, u_{X−1}) + ν/h (u_{X−1} − u_{X−2} − u₁ + u₀)`,
    /// `Φ(a, b) = (a² + ab + b²)/6` (`sim`'s energy-conserving face flux).
    Burgers {
        /// Viscosity `ν`.
        viscosity: f64,
    },
}

/// The mass balance of a space-time field: rows `k = 0..T−1`,
/// `M_{k+1} − M_k − (Δt/2) (G_k + G_{k+1}) = 0`, `M_k = Σᵢ wᵢ u(xᵢ, t_k)`,
/// `G_k = Σᵢ wᵢ s(u(xᵢ, t_k)) + F_k` (the trapezoid rule in time of `dM/dt = G`).
/// Nonlinear through the source and the Burgers flux; linear otherwise.
#[derive(Clone, Debug)]
pub struct MassBalance {
    grid: Grid,
    channel: usize,
    weights: Vec<f64>,
    source: Option<SourceTerm>,
    flux: BoundaryFlux,
}

impl MassBalance {
    /// The balance on `grid` (`[x, t]`).
    ///
    /// # Errors
    /// `InvalidArgument` without a space-time grid or with a Burgers flux on fewer than 3
    /// points; `Shape` for per-time fluxes of the wrong length.
    pub fn new(grid: &Grid, channel: usize, quadrature: Quadrature, source: Option<SourceTerm>, flux: BoundaryFlux) -> Result<Self> {
        let (x, t) = grid.as_space_time("a mass balance")?;
        check_channel(grid, channel)?;
        if let BoundaryFlux::Known(v) = &flux {
            v.check(t.n, "boundary flux")?;
        }
        if matches!(flux, BoundaryFlux::Burgers { .. }) && x.n < 3 {
            return Err(Error::invalid("grid", "a Burgers boundary flux needs at least 3 nodes"));
        }
        Ok(MassBalance { grid: grid.clone(), channel, weights: quadrature.weights(x.n, x.step), source, flux })
    }

    /// `G_k` and its gradient entries `(column, ∂G_k/∂u)`.
    fn rate(&self, u: &[f64], k: usize, grad: Option<&mut SparseRow>) -> f64 {
        let (x, _) = self.grid.as_space_time("").expect("checked at construction");
        let at = |i: usize| self.grid.index(self.channel, i, k);
        let mut g = 0.0;
        let mut entries = Vec::new();
        if let Some(s) = self.source {
            for (i, &w) in self.weights.iter().enumerate().filter(|(_, w)| **w != 0.0) {
                let (v, d) = s.eval(u[at(i)]);
                g += w * v;
                entries.push((at(i), w * d));
            }
        }
        match &self.flux {
            BoundaryFlux::Zero => {}
            BoundaryFlux::Known(v) => g += v.at(k),
            BoundaryFlux::Burgers { viscosity } => {
                let n = x.n;
                let (a, b, c, d) = (u[at(0)], u[at(1)], u[at(n - 2)], u[at(n - 1)]);
                let nu_h = viscosity / x.step;
                g += (a * a + a * b + b * b) / 6.0 - (c * c + c * d + d * d) / 6.0 + nu_h * (d - c - b + a);
                entries.push((at(0), (2.0 * a + b) / 6.0 + nu_h));
                entries.push((at(1), (a + 2.0 * b) / 6.0 - nu_h));
                entries.push((at(n - 2), -(2.0 * c + d) / 6.0 - nu_h));
                entries.push((at(n - 1), -(c + 2.0 * d) / 6.0 + nu_h));
            }
        }
        if let Some(gr) = grad {
            *gr = entries;
        }
        g
    }

    fn mass(&self, u: &[f64], k: usize) -> f64 {
        self.weights.iter().enumerate().map(|(i, w)| w * u[self.grid.index(self.channel, i, k)]).sum()
    }
}

/// Sums duplicate columns of a row and sorts it.
fn compact(mut r: SparseRow) -> SparseRow {
    r.sort_by_key(|e| e.0);
    let mut out: SparseRow = Vec::with_capacity(r.len());
    for (c, v) in r {
        match out.last_mut() {
            Some(last) if last.0 == c => last.1 += v,
            _ => out.push((c, v)),
        }
    }
    out
}

impl Constraint for MassBalance {
    fn name(&self) -> String {
        format!("mass balance ({} rows)", self.rows())
    }
    fn dim(&self) -> usize {
        self.grid.len()
    }
    fn rows(&self) -> usize {
        self.grid.axes[1].n - 1
    }
    fn residual(&self, u: &[f64], h: &mut [f64]) {
        let dt = self.grid.axes[1].step;
        let mut g_prev = self.rate(u, 0, None);
        let mut m_prev = self.mass(u, 0);
        for (k, hk) in h.iter_mut().enumerate() {
            let g = self.rate(u, k + 1, None);
            let m = self.mass(u, k + 1);
            *hk = m - m_prev - 0.5 * dt * (g_prev + g);
            (g_prev, m_prev) = (g, m);
        }
    }
    fn jacobian(&self, u: &[f64]) -> Jacobian {
        let dt = self.grid.axes[1].step;
        let mut rows = Vec::with_capacity(self.rows());
        let mut grad_prev = SparseRow::new();
        self.rate(u, 0, Some(&mut grad_prev));
        for k in 0..self.rows() {
            let mut grad = SparseRow::new();
            self.rate(u, k + 1, Some(&mut grad));
            let mut r = SparseRow::new();
            for (i, &w) in self.weights.iter().enumerate().filter(|(_, w)| **w != 0.0) {
                r.push((self.grid.index(self.channel, i, k + 1), w));
                r.push((self.grid.index(self.channel, i, k), -w));
            }
            r.extend(grad_prev.iter().map(|&(c, v)| (c, -0.5 * dt * v)));
            r.extend(grad.iter().map(|&(c, v)| (c, -0.5 * dt * v)));
            rows.push(compact(r));
            grad_prev = grad;
        }
        Jacobian { n: self.grid.len(), rows }
    }
    fn is_linear(&self) -> bool {
        self.source.is_none() && !matches!(self.flux, BoundaryFlux::Burgers { .. })
    }
}

/// The semi-discrete operator `f(u)` of a [`PdeResidual`] along x at one time, the same
/// second-order finite differences `sim` integrates.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Operator {
    /// Viscous Burgers in flux form, `f = ν u_xx − (u²/2)_x` with `sim`'s central flux
    /// `Φ(a, b) = (a² + ab + b²)/6`, on a node grid whose end nodes are Dirichlet values (rows on
    /// the interior nodes only).
    Burgers {
        /// Viscosity `ν`.
        viscosity: f64,
    },
    /// Reaction–diffusion `f = D u_xx + s(u)` on cell centres with Neumann data `∂u/∂x = g` at
    /// both ends (ghosts `u₋₁ = u₀ − h g_L`, `u_X = u_{X−1} + h g_R`), or on a periodic axis
    /// when `neumann` is `None`.
    ReactionDiffusion {
        /// Diffusivity `D`.
        diffusivity: f64,
        /// Source term (`None`: the heat equation).
        source: Option<SourceTerm>,
        /// `(g_L, g_R)`, or `None` for a periodic axis.
        neumann: Option<(f64, f64)>,
    },
}

/// The discretised PDE as a constraint: rows
/// `(u^{k+1}_i − u^k_i)/Δt − θ f_i(u^{k+1}) − (1 − θ) f_i(u^k) = 0` for `k = 0..T−1` and every
/// point the operator updates (θ = ½: Crank–Nicolson, second order in time; θ = 0: the explicit
/// flux-form update).
#[derive(Clone, Debug)]
pub struct PdeResidual {
    grid: Grid,
    op: Operator,
    theta: f64,
}

impl PdeResidual {
    /// The residual of `op` on a space-time grid.
    ///
    /// # Errors
    /// `InvalidArgument` without a space-time grid, for θ outside `[0, 1]`, a periodic operator
    /// on a non-periodic axis, or fewer than 3 points.
    pub fn new(grid: &Grid, op: Operator, theta: f64) -> Result<Self> {
        let (x, _) = grid.as_space_time("a PDE residual")?;
        if !(0.0..=1.0).contains(&theta) || x.n < 3 || grid.channels.len() != 1 {
            return Err(Error::invalid(
                "theta",
                format!("need θ in [0, 1], at least 3 points and one channel, got θ = {theta}, {} points, {} channels", x.n, grid.channels.len()),
            ));
        }
        let periodic = matches!(x.kind, AxisKind::Space { periodic: true });
        if let Operator::ReactionDiffusion { neumann: None, .. } = op {
            if !periodic {
                return Err(Error::invalid("op", "a reaction–diffusion residual without Neumann data needs a periodic x axis"));
            }
        }
        Ok(PdeResidual { grid: grid.clone(), op, theta })
    }

    fn nx(&self) -> usize {
        self.grid.axes[0].n
    }

    /// The points the operator updates.
    fn updated(&self) -> std::ops::Range<usize> {
        match self.op {
            Operator::Burgers { .. } => 1..self.nx() - 1,
            Operator::ReactionDiffusion { .. } => 0..self.nx(),
        }
    }

    /// `f_i(u^k)` and, when asked, its gradient entries.
    fn f(&self, u: &[f64], k: usize, i: usize, grad: Option<&mut SparseRow>) -> f64 {
        let n = self.nx();
        let h = self.grid.axes[0].step;
        let at = |i: usize| self.grid.index(0, i, k);
        match &self.op {
            Operator::Burgers { viscosity } => {
                let (l, c, r) = (u[at(i - 1)], u[at(i)], u[at(i + 1)]);
                let phi = |a: f64, b: f64| (a * a + a * b + b * b) / 6.0;
                let d = viscosity / (h * h);
                let v = d * (l - 2.0 * c + r) - (phi(c, r) - phi(l, c)) / h;
                if let Some(g) = grad {
                    // ∂Φ(a,b)/∂a = (2a + b)/6, ∂Φ/∂b = (a + 2b)/6.
                    g.push((at(i - 1), d + (2.0 * l + c) / 6.0 / h));
                    g.push((at(i), -2.0 * d - ((2.0 * c + r) - (l + 2.0 * c)) / 6.0 / h));
                    g.push((at(i + 1), d - (c + 2.0 * r) / 6.0 / h));
                }
                v
            }
            Operator::ReactionDiffusion { diffusivity, source, neumann } => {
                let d = diffusivity / (h * h);
                let c = u[at(i)];
                // Neighbour values (ghosts at the ends) as `value + Σ coef · u[col]`.
                let side = |j: isize| -> (f64, Vec<(usize, f64)>) {
                    match neumann {
                        _ if (0..n as isize).contains(&j) => (0.0, vec![(at(j as usize), 1.0)]),
                        None => (0.0, vec![(at(j.rem_euclid(n as isize) as usize), 1.0)]),
                        Some((gl, _)) if j < 0 => (-h * gl, vec![(at(0), 1.0)]),
                        Some((_, gr)) => (h * gr, vec![(at(n - 1), 1.0)]),
                    }
                };
                let (ol, el) = side(i as isize - 1);
                let (or, er) = side(i as isize + 1);
                let val = |o: f64, e: &[(usize, f64)]| o + e.iter().map(|&(col, a)| a * u[col]).sum::<f64>();
                let mut v = d * (val(ol, &el) - 2.0 * c + val(or, &er));
                let mut ds = 0.0;
                if let Some(s) = source {
                    let (sv, sd) = s.eval(c);
                    v += sv;
                    ds = sd;
                }
                if let Some(g) = grad {
                    g.extend(el.iter().map(|&(col, a)| (col, d * a)));
                    g.extend(er.iter().map(|&(col, a)| (col, d * a)));
                    g.push((at(i), -2.0 * d + ds));
                }
                v
            }
        }
    }
}

impl Constraint for PdeResidual {
    fn name(&self) -> String {
        let what = match self.op {
            Operator::Burgers { .. } => "Burgers",
            Operator::ReactionDiffusion { source: None, .. } => "heat",
            Operator::ReactionDiffusion { .. } => "reaction-diffusion",
        };
        format!("{what} residual θ = {} ({} rows)", self.theta, self.rows())
    }
    fn dim(&self) -> usize {
        self.grid.len()
    }
    fn rows(&self) -> usize {
        (self.grid.axes[1].n - 1) * self.updated().len()
    }
    fn residual(&self, u: &[f64], h: &mut [f64]) {
        let dt = self.grid.axes[1].step;
        let mut r = 0;
        for k in 0..self.grid.axes[1].n - 1 {
            for i in self.updated() {
                let du = (u[self.grid.index(0, i, k + 1)] - u[self.grid.index(0, i, k)]) / dt;
                let f1 = if self.theta > 0.0 { self.f(u, k + 1, i, None) } else { 0.0 };
                let f0 = if self.theta < 1.0 { self.f(u, k, i, None) } else { 0.0 };
                h[r] = du - self.theta * f1 - (1.0 - self.theta) * f0;
                r += 1;
            }
        }
    }
    fn jacobian(&self, u: &[f64]) -> Jacobian {
        let dt = self.grid.axes[1].step;
        let mut rows = Vec::with_capacity(self.rows());
        for k in 0..self.grid.axes[1].n - 1 {
            for i in self.updated() {
                let mut r: SparseRow = vec![(self.grid.index(0, i, k + 1), 1.0 / dt), (self.grid.index(0, i, k), -1.0 / dt)];
                for (kk, w) in [(k + 1, self.theta), (k, 1.0 - self.theta)] {
                    if w > 0.0 {
                        let mut g = SparseRow::new();
                        self.f(u, kk, i, Some(&mut g));
                        r.extend(g.into_iter().map(|(c, v)| (c, -w * v)));
                    }
                }
                rows.push(compact(r));
            }
        }
        Jacobian { n: self.grid.len(), rows }
    }
    fn is_linear(&self) -> bool {
        matches!(self.op, Operator::ReactionDiffusion { source: None, .. })
    }
}

/// Several constraints as one: their rows concatenated in order.
pub struct Stack {
    parts: Vec<Box<dyn Constraint>>,
}

impl Stack {
    /// The stack of `parts`.
    ///
    /// # Errors
    /// `Shape` when the parts disagree on the field size; `InvalidArgument` when empty.
    pub fn new(parts: Vec<Box<dyn Constraint>>) -> Result<Self> {
        let n = parts.first().map(|p| p.dim()).ok_or_else(|| Error::invalid("parts", "an empty stack"))?;
        if let Some(p) = parts.iter().find(|p| p.dim() != n) {
            return Err(Error::Shape { what: format!("constraint `{}` in a stack", p.name()), expected: vec![n], got: vec![p.dim()] });
        }
        Ok(Stack { parts })
    }

    /// The parts.
    pub fn parts(&self) -> &[Box<dyn Constraint>] {
        &self.parts
    }
}

impl Constraint for Stack {
    fn name(&self) -> String {
        self.parts.iter().map(|p| p.name()).collect::<Vec<_>>().join(" + ")
    }
    fn dim(&self) -> usize {
        self.parts[0].dim()
    }
    fn rows(&self) -> usize {
        self.parts.iter().map(|p| p.rows()).sum()
    }
    fn residual(&self, u: &[f64], h: &mut [f64]) {
        let mut off = 0;
        for p in &self.parts {
            let m = p.rows();
            p.residual(u, &mut h[off..off + m]);
            off += m;
        }
    }
    fn jacobian(&self, u: &[f64]) -> Jacobian {
        let rows = self.parts.iter().flat_map(|p| p.jacobian(u).rows).collect();
        Jacobian { n: self.dim(), rows }
    }
    fn is_linear(&self) -> bool {
        self.parts.iter().all(|p| p.is_linear())
    }
}

/// A constraint written as burn tensor operations, `h: [batch, n] → [batch, m]`, with its
/// Jacobian from one reverse-mode pass: the point is replicated `m` times and the cotangent is
/// the identity, so row `r` of the input gradient is `∇h_r` (dense rows, f64 on the CPU).
pub struct AutodiffConstraint<F> {
    label: String,
    n: usize,
    m: usize,
    h: F,
}

impl<F> AutodiffConstraint<F>
where
    F: Fn(Tensor<2>) -> Tensor<2> + Send + Sync,
{
    /// Wraps `h` on fields of size `n` with `m` rows.
    pub fn new(label: &str, n: usize, m: usize, h: F) -> Self {
        AutodiffConstraint { label: label.into(), n, m, h }
    }

    fn point(&self, u: &[f64], copies: usize, autodiff: bool) -> Tensor<2> {
        let device = crate::device::cpu_f64().unwrap();
        let device = if autodiff { device.autodiff() } else { device };
        let data: Vec<f64> = (0..copies).flat_map(|_| u.iter().copied()).collect();
        Tensor::<2>::from_data(TensorData::new(data, [copies, self.n]), &device)
    }
}

impl<F> Constraint for AutodiffConstraint<F>
where
    F: Fn(Tensor<2>) -> Tensor<2> + Send + Sync,
{
    fn name(&self) -> String {
        format!("{} ({} rows, autodiff)", self.label, self.m)
    }
    fn dim(&self) -> usize {
        self.n
    }
    fn rows(&self) -> usize {
        self.m
    }
    fn residual(&self, u: &[f64], h: &mut [f64]) {
        let out = (self.h)(self.point(u, 1, false)).to_vec_as::<f64>();
        h.copy_from_slice(&out);
    }
    fn jacobian(&self, u: &[f64]) -> Jacobian {
        let x = self.point(u, self.m, true).require_grad();
        let out = (self.h)(x.clone());
        let eye = Tensor::<2>::eye(self.m, &out.device());
        let grads = (out * eye).sum().backward();
        let g = x.grad(&grads).map(|g| g.to_vec_as::<f64>()).unwrap_or_else(|| vec![0.0; self.m * self.n]);
        let rows = g.chunks(self.n).map(|r| r.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(c, v)| (c, *v)).collect()).collect();
        Jacobian { n: self.n, rows }
    }
}
