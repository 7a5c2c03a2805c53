//! The [`System`] trait: a physical ODE system `dy/dt = f(t, y, p)` defined once,
//! with its Jacobian products, named parameters and initial state.

use crate::{Error, Result};

/// How the solver should store the state Jacobian `∂f/∂y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum JacobianKind {
    /// The system's own preference ([`System::jacobian_kind`]).
    #[default]
    Auto,
    /// Dense matrix, dense LU (nalgebra): small systems.
    Dense,
    /// Sparse matrix (faer), sparse LU; diffsol finds the pattern once by
    /// propagating NaN through [`System::jvp`], so `jvp` must not branch on `v`.
    /// That probe holds `dim²` numbers while it runs (8192 states: 1 GiB);
    /// [`super::ClosureSystem`] traces its own pattern in `O(nnz)` memory.
    Sparse,
}

/// A physical system `dy/dt = f(t, y, p)`, `y ∈ ℝⁿ`, `p ∈ ℝᵐ`, on the CPU in f64.
///
/// Every product is written for one state (slices of length `n` or `m`); the
/// solver calls them many times per step, so they should not allocate.
/// Products are the exact derivatives of [`System::rhs`]: the gradient tests
/// in `tests/sim_gradients.rs` check each library system against central
/// finite differences. Systems without hand-written derivatives can be built
/// from a right-hand side written once over a generic scalar with
/// [`super::ClosureSystem`] (forward-mode duals, traced sparsity), or from a burn
/// closure with [`super::AutodiffSystem`] (burn networks inside the right-hand side).
pub trait System: Send + Sync {
    /// A short name used in errors, files and reports (`"robertson"`).
    fn name(&self) -> String;
    /// State dimension `n`.
    fn dim(&self) -> usize;
    /// Parameter names, `m` of them, in the order of `p`.
    fn param_names(&self) -> Vec<String>;
    /// The system's own parameter values (the defaults documented on each system).
    fn params(&self) -> Vec<f64>;
    /// The system's own initial state `y(t₀)`, length `n`.
    fn initial_state(&self) -> Vec<f64>;

    /// `dy = f(t, y, p)`.
    fn rhs(&self, t: f64, y: &[f64], p: &[f64], dy: &mut [f64]);
    /// `out = (∂f/∂y) v`, `v` of length `n`.
    fn jvp(&self, t: f64, y: &[f64], p: &[f64], v: &[f64], out: &mut [f64]);
    /// `out = (∂f/∂y)ᵀ w`, `w` of length `n`.
    fn vjp(&self, t: f64, y: &[f64], p: &[f64], w: &[f64], out: &mut [f64]);
    /// `out = (∂f/∂p) v`, `v` of length `m`, `out` of length `n`.
    fn param_jvp(&self, t: f64, y: &[f64], p: &[f64], v: &[f64], out: &mut [f64]);
    /// `out = (∂f/∂p)ᵀ w`, `w` of length `n`, `out` of length `m`.
    fn param_vjp(&self, t: f64, y: &[f64], p: &[f64], w: &[f64], out: &mut [f64]);

    /// Rejects parameters outside the model's domain (negative diffusivity, ...)
    /// before any solve. The length and finiteness checks are done by the
    /// caller ([`check_params`]); override this for the physics.
    fn validate(&self, _p: &[f64]) -> Result<()> {
        Ok(())
    }

    /// How the state maps onto a field on a grid (method-of-lines PDEs), or `None`
    /// for a plain state vector. Dataset files use it to write `[N, T, X(, Y)]`
    /// fields with their coordinates and boundary conditions.
    fn field(&self) -> Option<FieldLayout> {
        None
    }

    /// Dense or sparse Jacobian storage when the options say [`JacobianKind::Auto`].
    fn jacobian_kind(&self) -> JacobianKind {
        JacobianKind::Dense
    }

    /// The non-zero pattern of `∂f/∂y` when the system knows it: `rows[i]` holds
    /// the columns `j` with `∂f_i/∂y_j` possibly non-zero. A sparse plain solve
    /// then skips diffsol's pattern probe (`n²` memory) and assembles the
    /// Jacobian from one [`System::jvp`] per column colour. `None` (the default):
    /// diffsol probes.
    fn jacobian_pattern(&self) -> Option<Vec<Vec<u32>>> {
        None
    }
}

/// The state of a PDE system as channels on a tensor grid: `y = [C, X]` or
/// `[C, X, Y]` flattened row-major (channel slowest, the last axis fastest).
#[derive(Clone, Debug, PartialEq)]
pub struct FieldLayout {
    /// Channel names (`["u"]`, `["u", "v"]`).
    pub channels: Vec<String>,
    /// Axis names with their grids (`[("x", grid)]`, `[("x", gx), ("y", gy)]`).
    pub axes: Vec<(String, super::grid::Grid1d)>,
}

impl FieldLayout {
    /// `[X]` or `[X, Y]`.
    pub fn grid_shape(&self) -> Vec<usize> {
        self.axes.iter().map(|(_, g)| g.n).collect()
    }
}

/// Checks `p` (count, finiteness, then [`System::validate`]) and `y0` (length, finiteness).
pub fn check_inputs(system: &dyn System, p: &[f64], y0: &[f64]) -> Result<()> {
    if system.dim() == 0 {
        return Err(Error::invalid("y0", format!("`{}` has no states", system.name())));
    }
    check_params(system, p)?;
    if y0.len() != system.dim() {
        return Err(Error::Shape { what: format!("initial state of `{}`", system.name()), expected: vec![system.dim()], got: vec![y0.len()] });
    }
    if let Some(i) = y0.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid("y0", format!("component {i} of the initial state of `{}` is {}", system.name(), y0[i])));
    }
    Ok(())
}

/// Checks the parameter count and finiteness, then the system's own [`System::validate`].
pub fn check_params<S: System + ?Sized>(system: &S, p: &[f64]) -> Result<()> {
    let names = system.param_names();
    if p.len() != names.len() {
        return Err(Error::invalid("params", format!("`{}` takes {} parameters ({}), got {}", system.name(), names.len(), names.join(", "), p.len())));
    }
    if let Some(i) = p.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid("params", format!("parameter `{}` of `{}` is {}", names[i], system.name(), p[i])));
    }
    system.validate(p)
}

/// `Err` unless `value > 0` (for diffusivities, viscosities, rates that must be positive).
pub fn positive(system: &str, name: &str, value: f64) -> Result<()> {
    if value > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid("params", format!("`{name}` of `{system}` must be positive, got {value}")))
    }
}

/// `Err` unless `value >= 0`.
pub fn non_negative(system: &str, name: &str, value: f64) -> Result<()> {
    if value >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid("params", format!("`{name}` of `{system}` must be non-negative, got {value}")))
    }
}
