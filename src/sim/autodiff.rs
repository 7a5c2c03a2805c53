//! Systems whose right-hand side is written with burn tensors, Jacobian
//! products from burn autodiff: systems without hand-written derivatives, and
//! burn networks inside a stiff diffsol right-hand side (neural and hybrid ODEs).
//!
//! burn is reverse-mode only, so `J v` cannot come from one forward-mode pass.
//! [`AutodiffSystem`] builds the dense Jacobians `∂f/∂y` (`n × n`) and `∂f/∂p`
//! (`n × m`) with **one** reverse pass over a batch of `n` copies of the state
//! (row `i` seeded with the cotangent `e_i`), caches them for the last
//! `(t, y, p)`, and answers `J v` and `(∂f/∂p) v` by matrix–vector products.
//! This matches how diffsol uses `J v`: a dense Jacobian is assembled from `n`
//! products at one state per Jacobian update (then reused across Newton
//! iterations), so the `n` products cost one backward pass, not `n`. The
//! adjoint products `Jᵀw`, `(∂f/∂p)ᵀw` need one reverse pass each (both come
//! from the same pass). Meant for small states (a few dozen), where the
//! network, not the `n`-row batch, dominates the cost.

use std::sync::Mutex;

use burn::tensor::{Device, Tensor, TensorData};

use super::system::{JacobianKind, System};
use crate::host::ToHost;
use crate::{Error, Result};

/// The closure type of an [`AutodiffSystem`]: `f(t, y [B, n], p [B, m]) → [B, n]`.
pub trait BurnRhs: Fn(f64, Tensor<2>, Tensor<2>) -> Tensor<2> + Send + Sync {}
impl<F: Fn(f64, Tensor<2>, Tensor<2>) -> Tensor<2> + Send + Sync> BurnRhs for F {}

/// A system from a burn closure `f(t, y, p)` acting row by row on a batch:
/// `y` is `[B, n]`, `p` is `[B, m]` (the same parameters repeated in each row,
/// so that the closure may slice columns and the parameter Jacobian comes out
/// row by row), and the result is `[B, n]`. Rows must not interact.
pub struct AutodiffSystem<F> {
    name: String,
    param_names: Vec<String>,
    params: Vec<f64>,
    y0: Vec<f64>,
    f: F,
    device: Device,
    cache: Mutex<Option<JacobianCache>>,
    vjp_cache: Mutex<Option<(Vec<u64>, Vec<f64>, Vec<f64>)>>,
}

struct JacobianCache {
    key: Vec<u64>,
    jac: Vec<f64>,
    jac_p: Vec<f64>,
}

impl<F: BurnRhs> AutodiffSystem<F> {
    /// A system named `name` with parameters `params` (named `param_names`),
    /// initial state `y0`, and right-hand side `f`, evaluated on `device` (an
    /// f64 CPU device, [`crate::device::cpu_f64`]).
    ///
    /// # Errors
    /// `Shape` unless there is one name per parameter.
    pub fn new(name: impl Into<String>, param_names: Vec<String>, params: Vec<f64>, y0: Vec<f64>, f: F, device: Device) -> Result<Self> {
        if param_names.len() != params.len() {
            return Err(Error::Shape { what: "parameter names (one per parameter)".into(), expected: vec![params.len()], got: vec![param_names.len()] });
        }
        Ok(AutodiffSystem { name: name.into(), param_names, params, y0, f, device, cache: Mutex::new(None), vjp_cache: Mutex::new(None) })
    }

    fn rows(&self, data: &[f64], rows: usize) -> Tensor<2> {
        let cols = data.len();
        let mut v = Vec::with_capacity(rows * cols);
        for _ in 0..rows {
            v.extend_from_slice(data);
        }
        Tensor::from_data(TensorData::new(v, [rows, cols]), &self.device)
    }

    fn param_rows(&self, p: &[f64], rows: usize) -> Tensor<2> {
        if p.is_empty() {
            return Tensor::zeros([rows, 0], &self.device);
        }
        self.rows(p, rows)
    }

    /// `(∂f/∂y, ∂f/∂p)` row-major, from one reverse pass over `n` copies of the state.
    fn jacobians(&self, t: f64, y: &[f64], p: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let key: Vec<u64> = std::iter::once(t).chain(y.iter().copied()).chain(p.iter().copied()).map(f64::to_bits).collect();
        let mut cache = self.cache.lock().expect("jacobian cache poisoned");
        if let Some(c) = cache.as_ref() {
            if c.key == key {
                return (c.jac.clone(), c.jac_p.clone());
            }
        }
        let n = y.len();
        let ys = self.rows(y, n).autodiff().require_grad();
        let ps = self.param_rows(p, n).autodiff().require_grad();
        let out = (self.f)(t, ys.clone(), ps.clone());
        let eye = Tensor::<2>::eye(n, &self.device).autodiff();
        let grads = (out * eye).sum().backward();
        let jac = ys.grad(&grads).map(|g| g.to_vec_as::<f64>()).unwrap_or_else(|| vec![0.0; n * n]);
        let jac_p = if p.is_empty() { vec![] } else { ps.grad(&grads).map(|g| g.to_vec_as::<f64>()).unwrap_or_else(|| vec![0.0; n * p.len()]) };
        *cache = Some(JacobianCache { key, jac: jac.clone(), jac_p: jac_p.clone() });
        (jac, jac_p)
    }

    /// `(Jᵀw, (∂f/∂p)ᵀw)` from one reverse pass; diffsol's adjoint asks for
    /// both at the same `(t, y, w)`, so the last pair is cached.
    fn vjps(&self, t: f64, y: &[f64], p: &[f64], w: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let key: Vec<u64> = std::iter::once(t).chain(y.iter().copied()).chain(p.iter().copied()).chain(w.iter().copied()).map(f64::to_bits).collect();
        let mut cache = self.vjp_cache.lock().expect("vjp cache poisoned");
        if let Some((k, gy, gp)) = cache.as_ref() {
            if *k == key {
                return (gy.clone(), gp.clone());
            }
        }
        let ys = self.rows(y, 1).autodiff().require_grad();
        let ps = self.param_rows(p, 1).autodiff().require_grad();
        let out = (self.f)(t, ys.clone(), ps.clone());
        let wt = self.rows(w, 1).autodiff();
        let grads = (out * wt).sum().backward();
        let gy = ys.grad(&grads).map(|g| g.to_vec_as::<f64>()).unwrap_or_else(|| vec![0.0; y.len()]);
        let gp = if p.is_empty() { vec![] } else { ps.grad(&grads).map(|g| g.to_vec_as::<f64>()).unwrap_or_else(|| vec![0.0; p.len()]) };
        *cache = Some((key, gy.clone(), gp.clone()));
        (gy, gp)
    }
}

impl<F: BurnRhs> System for AutodiffSystem<F> {
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
    fn jacobian_kind(&self) -> JacobianKind {
        JacobianKind::Dense
    }
    fn rhs(&self, t: f64, y: &[f64], p: &[f64], dy: &mut [f64]) {
        let out = (self.f)(t, self.rows(y, 1), self.param_rows(p, 1));
        dy.copy_from_slice(&out.to_vec_as::<f64>());
    }
    fn jvp(&self, t: f64, y: &[f64], p: &[f64], v: &[f64], out: &mut [f64]) {
        let n = y.len();
        let (jac, _) = self.jacobians(t, y, p);
        super::systems::matvec(&jac, n, n, v, out, false);
    }
    fn vjp(&self, t: f64, y: &[f64], p: &[f64], w: &[f64], out: &mut [f64]) {
        out.copy_from_slice(&self.vjps(t, y, p, w).0);
    }
    fn param_jvp(&self, t: f64, y: &[f64], p: &[f64], v: &[f64], out: &mut [f64]) {
        let (_, jac_p) = self.jacobians(t, y, p);
        super::systems::matvec(&jac_p, y.len(), p.len(), v, out, false);
    }
    fn param_vjp(&self, t: f64, y: &[f64], p: &[f64], w: &[f64], out: &mut [f64]) {
        out.copy_from_slice(&self.vjps(t, y, p, w).1);
    }
}

/// Column `i` of a `[B, k]` tensor as `[B, 1]` (for writing right-hand sides).
pub fn col(x: &Tensor<2>, i: usize) -> Tensor<2> {
    let b = x.dims()[0];
    x.clone().slice([0..b, i..i + 1])
}
