//! Systems from a right-hand side written once, with every derivative the
//! solvers need derived automatically: `J v` and `(∂f/∂p) v` by forward-mode
//! dual numbers (one evaluation each, exact), `Jᵀ w` and `(∂f/∂p)ᵀ w` from the
//! Jacobians assembled with column colouring (as many evaluations as colours:
//! 3 for a 1D three-point stencil, whatever the size), and the sparsity pattern
//! by tracing dependency sets through one evaluation (memory in proportion to
//! the non-zeros, never `n²`).
//!
//! ```
//! use physflow::prelude::*;
//!
//! /// Robertson's kinetics, written once for every scalar type.
//! struct Kinetics;
//! impl Rhs for Kinetics {
//!     fn eval<S: Scalar>(&self, _t: f64, y: &[S], p: &[S], dy: &mut [S]) {
//!         let (r1, r2, r3) = (p[0] * y[0], p[1] * y[1] * y[1], p[2] * y[1] * y[2]);
//!         dy[0] = r3 - r1;
//!         dy[1] = r1 - r2 - r3;
//!         dy[2] = r2;
//!     }
//! }
//!
//! let rob = ClosureSystem::new("robertson", Kinetics, vec![1.0, 0.0, 0.0])
//!     .param("k1", 0.04)
//!     .param("k2", 3e7)
//!     .param("k3", 1e4);
//! let traj = sim::simulate(&rob, &[0.0, 40.0], &SimOptions::default())?;
//! assert!((traj.states.row(1).sum() - 1.0).abs() < 1e-8);
//! # Ok::<(), physflow::Error>(())
//! ```

use std::cell::RefCell;
use std::sync::{Mutex, OnceLock};

use super::scalar::{trace_pattern, Dual, Scalar};
use super::system::{FieldLayout, JacobianKind, System};
use crate::Result;

/// A right-hand side `dy = f(t, y, p)` written over a generic [`Scalar`]
/// (`y`, `dy` of length `n`, `p` of length `m`). It must write every `dy[i]`.
pub trait Rhs: Send + Sync {
    /// `dy = f(t, y, p)`.
    fn eval<S: Scalar>(&self, t: f64, y: &[S], p: &[S], dy: &mut [S]);
}

/// Below this many states the Jacobian is dense whatever its pattern: a dense
/// LU of a 32 × 32 matrix costs less than the sparse machinery around it.
pub const SPARSE_MIN_DIM: usize = 32;

/// The Jacobian is sparse when at most this fraction of its entries can be non-zero.
pub const SPARSE_MAX_DENSITY: f64 = 0.1;

/// A [`System`] from a [`Rhs`]: name, initial state and named parameters
/// given here, all four Jacobian products derived (module docs).
///
/// The Jacobian storage defaults to [`JacobianKind::Auto`]: sparse when the
/// traced pattern has at most [`SPARSE_MAX_DENSITY`] non-zeros and the system
/// has at least [`SPARSE_MIN_DIM`] states, dense otherwise. The pattern is
/// traced once, at the initial state and parameters (time 0).
pub struct ClosureSystem<F> {
    name: String,
    f: F,
    y0: Vec<f64>,
    param_names: Vec<String>,
    params: Vec<f64>,
    jacobian: JacobianKind,
    field: Option<FieldLayout>,
    validate: Option<Box<dyn Fn(&[f64]) -> Result<()> + Send + Sync>>,
    pattern: OnceLock<Pattern>,
    cache: Mutex<Option<Jacobians>>,
}

/// The structure of `∂f/∂y`: the inputs of each output and a column colouring
/// (no two columns of one colour share a row), or dense.
#[derive(Debug)]
struct Pattern {
    /// `rows[i]`: the inputs output `i` reads, sorted; `None`: dense.
    rows: Option<Vec<Vec<u32>>>,
    /// Colour of each column (dense: the column itself).
    colour: Vec<u32>,
    ncolours: usize,
    nnz: usize,
}

/// `∂f/∂y` (values in the order of the pattern's rows, or `n × n` row-major
/// when dense) and `∂f/∂p` (`n × m` row-major) at one `(t, y, p)`.
struct Jacobians {
    key: Vec<u64>,
    jac: Vec<f64>,
    jac_p: Vec<f64>,
}

thread_local! {
    /// Dual inputs and outputs, reused so that products do not allocate.
    static DUALS: RefCell<(Vec<Dual>, Vec<Dual>, Vec<Dual>)> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

impl<F: Rhs> ClosureSystem<F> {
    /// A system `name` with right-hand side `f` and initial state `y0` (which
    /// fixes the dimension `n`), no parameters.
    pub fn new(name: impl Into<String>, f: F, y0: Vec<f64>) -> Self {
        ClosureSystem {
            name: name.into(),
            f,
            y0,
            param_names: Vec::new(),
            params: Vec::new(),
            jacobian: JacobianKind::Auto,
            field: None,
            validate: None,
            pattern: OnceLock::new(),
            cache: Mutex::new(None),
        }
    }

    /// Appends a parameter `name` with default value `value` (`p[k]` in the order added).
    pub fn param(mut self, name: impl Into<String>, value: f64) -> Self {
        self.param_names.push(name.into());
        self.params.push(value);
        self.pattern = OnceLock::new();
        self
    }

    /// Forces dense or sparse Jacobian storage (default [`JacobianKind::Auto`]).
    pub fn jacobian(mut self, kind: JacobianKind) -> Self {
        self.jacobian = kind;
        self
    }

    /// Declares the state a field on a grid (datasets then write it as `[N, T, X(, Y)]`).
    pub fn field(mut self, layout: FieldLayout) -> Self {
        self.field = Some(layout);
        self
    }

    /// A domain check on the parameters run before every solve (the count and
    /// finiteness are checked already), e.g. with [`crate::prelude::positive`].
    pub fn validate(mut self, check: impl Fn(&[f64]) -> Result<()> + Send + Sync + 'static) -> Self {
        self.validate = Some(Box::new(check));
        self
    }

    /// The non-zero pattern of `∂f/∂y` traced from `f`: `Some(rows)` with the
    /// sorted inputs of each output, or `None` when it is treated as dense
    /// (some output reads more than a quarter of the state).
    pub fn sparsity(&self) -> Option<&[Vec<u32>]> {
        self.pattern().rows.as_deref()
    }

    /// The number of colours of the Jacobian's columns: the evaluations of `f`
    /// one Jacobian assembly costs (`n` when dense).
    pub fn colours(&self) -> usize {
        self.pattern().ncolours
    }

    fn pattern(&self) -> &Pattern {
        self.pattern.get_or_init(|| {
            let n = self.y0.len();
            let cap = (n / 4).max(8);
            let rows = trace_pattern(&self.y0, n, cap, |y, dy| {
                let p: Vec<_> = self.params.iter().map(|&v| Scalar::cst(v)).collect();
                self.f.eval(0.0, y, &p, dy)
            });
            match rows {
                Some(rows) => {
                    let nnz = rows.iter().map(Vec::len).sum();
                    let (colour, ncolours) = colour_columns(&rows, n);
                    Pattern { rows: Some(rows), colour, ncolours, nnz }
                }
                None => Pattern { rows: None, colour: (0..n as u32).collect(), ncolours: n, nnz: n * n },
            }
        })
    }

    /// Evaluates `f` on duals `y + vy ε`, `p + vp ε` (`None`: zero tangent) and
    /// hands the outputs to `read`.
    fn dual_eval<R>(&self, t: f64, y: &[f64], p: &[f64], vy: impl Fn(usize) -> f64, vp: impl Fn(usize) -> f64, read: impl FnOnce(&[Dual]) -> R) -> R {
        DUALS.with(|cell| {
            let mut bufs = cell.borrow_mut();
            let (dy, dp, out) = &mut *bufs;
            dy.clear();
            dy.extend(y.iter().enumerate().map(|(i, &v)| Dual::new(v, vy(i))));
            dp.clear();
            dp.extend(p.iter().enumerate().map(|(k, &v)| Dual::new(v, vp(k))));
            out.clear();
            out.resize(y.len(), Dual::default());
            self.f.eval(t, dy, dp, out);
            read(out)
        })
    }

    /// `∂f/∂y` (pattern order) and `∂f/∂p` at `(t, y, p)`, from the cache when
    /// the point is the last one asked for.
    fn with_jacobians<R>(&self, t: f64, y: &[f64], p: &[f64], use_: impl FnOnce(&Pattern, &Jacobians) -> R) -> R {
        let pattern = self.pattern();
        let key: Vec<u64> = std::iter::once(t).chain(y.iter().copied()).chain(p.iter().copied()).map(f64::to_bits).collect();
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.as_ref().is_none_or(|c| c.key != key) {
            *cache = Some(self.assemble(pattern, key, t, y, p));
        }
        use_(pattern, cache.as_ref().expect("filled above"))
    }

    fn assemble(&self, pattern: &Pattern, key: Vec<u64>, t: f64, y: &[f64], p: &[f64]) -> Jacobians {
        let (n, m) = (y.len(), p.len());
        let mut jac = vec![0.0; pattern.nnz];
        for c in 0..pattern.ncolours as u32 {
            let seed = |j: usize| if pattern.colour[j] == c { 1.0 } else { 0.0 };
            self.dual_eval(
                t,
                y,
                p,
                seed,
                |_| 0.0,
                |out| match &pattern.rows {
                    // Dense: colour c is column c alone.
                    None => (0..n).for_each(|i| jac[i * n + c as usize] = out[i].eps),
                    Some(rows) => {
                        let mut at = 0;
                        for (i, row) in rows.iter().enumerate() {
                            for (k, &j) in row.iter().enumerate() {
                                if pattern.colour[j as usize] == c {
                                    jac[at + k] = out[i].eps;
                                }
                            }
                            at += row.len();
                        }
                    }
                },
            );
        }
        let mut jac_p = vec![0.0; n * m];
        for k in 0..m {
            self.dual_eval(t, y, p, |_| 0.0, |l| if l == k { 1.0 } else { 0.0 }, |out| (0..n).for_each(|i| jac_p[i * m + k] = out[i].eps));
        }
        Jacobians { key, jac, jac_p }
    }
}

/// Greedy distance-2 colouring of the columns of a pattern given by rows:
/// columns that share a row get different colours, so one evaluation per
/// colour recovers every entry. Returns each column's colour and the count.
fn colour_columns(rows: &[Vec<u32>], ncols: usize) -> (Vec<u32>, usize) {
    let mut cols: Vec<Vec<u32>> = vec![Vec::new(); ncols];
    for (i, row) in rows.iter().enumerate() {
        for &j in row {
            cols[j as usize].push(i as u32);
        }
    }
    let mut colour = vec![u32::MAX; ncols];
    // `mark[c] == j` means colour c is taken by a neighbour of column j.
    let mut mark: Vec<usize> = Vec::new();
    let mut ncolours = 0;
    for j in 0..ncols {
        for &i in &cols[j] {
            for &k in &rows[i as usize] {
                let c = colour[k as usize];
                if c != u32::MAX {
                    mark[c as usize] = j;
                }
            }
        }
        let c = (0..ncolours).find(|&c| mark[c] != j).unwrap_or(ncolours);
        if c == ncolours {
            ncolours += 1;
            mark.push(usize::MAX);
        }
        colour[j] = c as u32;
    }
    (colour, ncolours.max(1))
}

impl<F: Rhs> System for ClosureSystem<F> {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn dim(&self) -> usize {
        self.y0.len()
    }
    fn param_names(&self) -> Vec<String> {
        self.param_names.clone()
    }
    fn params(&self) -> Vec<f64> {
        self.params.clone()
    }
    fn initial_state(&self) -> Vec<f64> {
        self.y0.clone()
    }
    fn validate(&self, p: &[f64]) -> Result<()> {
        match &self.validate {
            Some(check) => check(p),
            None => Ok(()),
        }
    }
    fn field(&self) -> Option<FieldLayout> {
        self.field.clone()
    }
    fn jacobian_kind(&self) -> JacobianKind {
        match self.jacobian {
            JacobianKind::Auto => {
                let n = self.dim();
                let pattern = self.pattern();
                let sparse = pattern.rows.is_some() && n >= SPARSE_MIN_DIM && (pattern.nnz as f64) <= SPARSE_MAX_DENSITY * (n * n) as f64;
                if sparse {
                    JacobianKind::Sparse
                } else {
                    JacobianKind::Dense
                }
            }
            kind => kind,
        }
    }

    fn jacobian_pattern(&self) -> Option<Vec<Vec<u32>>> {
        self.pattern().rows.clone()
    }

    fn rhs(&self, t: f64, y: &[f64], p: &[f64], dy: &mut [f64]) {
        self.f.eval(t, y, p, dy);
    }
    fn jvp(&self, t: f64, y: &[f64], p: &[f64], v: &[f64], out: &mut [f64]) {
        self.dual_eval(t, y, p, |i| v[i], |_| 0.0, |d| out.iter_mut().zip(d).for_each(|(o, d)| *o = d.eps));
    }
    fn param_jvp(&self, t: f64, y: &[f64], p: &[f64], v: &[f64], out: &mut [f64]) {
        self.dual_eval(t, y, p, |_| 0.0, |k| v[k], |d| out.iter_mut().zip(d).for_each(|(o, d)| *o = d.eps));
    }
    fn vjp(&self, t: f64, y: &[f64], p: &[f64], w: &[f64], out: &mut [f64]) {
        let n = y.len();
        self.with_jacobians(t, y, p, |pattern, j| {
            out[..n].fill(0.0);
            match &pattern.rows {
                None => {
                    for i in 0..n {
                        for (o, a) in out.iter_mut().zip(&j.jac[i * n..(i + 1) * n]) {
                            *o += a * w[i];
                        }
                    }
                }
                Some(rows) => {
                    let mut at = 0;
                    for (i, row) in rows.iter().enumerate() {
                        for (&col, a) in row.iter().zip(&j.jac[at..at + row.len()]) {
                            out[col as usize] += a * w[i];
                        }
                        at += row.len();
                    }
                }
            }
        });
    }
    fn param_vjp(&self, t: f64, y: &[f64], p: &[f64], w: &[f64], out: &mut [f64]) {
        let (n, m) = (y.len(), p.len());
        self.with_jacobians(t, y, p, |_, j| super::systems::matvec(&j.jac_p, n, m, w, out, true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1D diffusion–reaction chain: output i reads i − 1, i, i + 1.
    struct Chain;
    impl Rhs for Chain {
        fn eval<S: Scalar>(&self, _t: f64, y: &[S], p: &[S], dy: &mut [S]) {
            let n = y.len();
            for i in 0..n {
                let left = if i > 0 { y[i - 1] } else { S::cst(0.0) };
                let right = if i + 1 < n { y[i + 1] } else { S::cst(0.0) };
                dy[i] = p[0] * (left + right - y[i] * 2.0) - y[i] * y[i] * p[1];
            }
        }
    }

    #[test]
    fn a_three_point_stencil_is_traced_coloured_with_three_colours_and_sparse() {
        let sys = ClosureSystem::new("chain", Chain, vec![0.5; 100]).param("d", 1.0).param("k", 0.3);
        let rows = sys.sparsity().expect("sparse");
        assert_eq!(rows[0], vec![0, 1]);
        assert_eq!(rows[50], vec![49, 50, 51]);
        assert_eq!(rows.iter().map(Vec::len).sum::<usize>(), 3 * 100 - 2);
        assert_eq!(sys.colours(), 3);
        assert_eq!(sys.jacobian_kind(), JacobianKind::Sparse);
        let small = ClosureSystem::new("chain", Chain, vec![0.5; 8]).param("d", 1.0).param("k", 0.3);
        assert_eq!(small.jacobian_kind(), JacobianKind::Dense, "below SPARSE_MIN_DIM");
    }

    #[test]
    fn vjp_is_the_transpose_of_jvp() {
        // ⟨w, J v⟩ = ⟨Jᵀ w, v⟩ for every v, w; exact up to round-off.
        let n = 40;
        let sys = ClosureSystem::new("chain", Chain, vec![0.5; n]).param("d", 1.3).param("k", 0.7);
        let y: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
        let p = [1.3, 0.7];
        let v: Vec<f64> = (0..n).map(|i| (i as f64 * 1.1).cos()).collect();
        let w: Vec<f64> = (0..n).map(|i| (i as f64 * 0.9 + 0.2).sin()).collect();
        let (mut jv, mut jtw) = (vec![0.0; n], vec![0.0; n]);
        sys.jvp(0.0, &y, &p, &v, &mut jv);
        sys.vjp(0.0, &y, &p, &w, &mut jtw);
        let a: f64 = w.iter().zip(&jv).map(|(a, b)| a * b).sum();
        let b: f64 = jtw.iter().zip(&v).map(|(a, b)| a * b).sum();
        assert!((a - b).abs() < 1e-12 * a.abs().max(1.0), "{a} vs {b}");
        let (mut pv, mut ptw) = (vec![0.0; n], vec![0.0; 2]);
        sys.param_jvp(0.0, &y, &p, &[0.4, -1.2], &mut pv);
        sys.param_vjp(0.0, &y, &p, &w, &mut ptw);
        let a: f64 = w.iter().zip(&pv).map(|(a, b)| a * b).sum();
        let b = ptw[0] * 0.4 - ptw[1] * 1.2;
        assert!((a - b).abs() < 1e-12 * a.abs().max(1.0), "{a} vs {b}");
    }
}
