//! Energies written once, on burn tensors, with forces by automatic differentiation; and a
//! checker of any energy's forces against finite differences.
//!
//! A [`TensorEnergy`] computes `u(x)` for a batch `x: [batch, dim]` with tensor operations;
//! [`Autodiff`] makes it an [`Energy`]: values in f64 on the CPU, forces `f = −∇ₓu` by one
//! reverse pass over the whole batch (rows are independent, so `∂(Σ_b u_b)/∂x_b = ∇u_b`). The
//! batch is evaluated as one tensor program, so it runs in parallel wherever the backend does.

use burn::tensor::{DType, Tensor};
use ndarray::{Array1, Array2, ArrayView2};

use super::Energy;
use crate::host::{array2_from_tensor, tensor_from_array2, ToHost};
use crate::{Error, Result};

/// A potential energy on burn tensors.
///
/// `energy` receives `x: [batch, dim]` (f64, on an autodiff CPU device) and returns
/// `u: [batch]`. Constants must be made like `x` (`x.zeros_like()`, `x.full_like(v)`, or with
/// `(&x.device(), x.dtype())`), never with a device's default float type.
pub trait TensorEnergy: Send + Sync {
    /// Configuration dimension.
    fn dim(&self) -> usize;
    /// `u(x)` per row.
    fn energy(&self, x: Tensor<2>) -> Tensor<1>;
    /// `(n_particles, d)` for particle systems.
    fn particles(&self) -> Option<(usize, usize)> {
        None
    }
    /// A short name for reports.
    fn name(&self) -> String;
}

/// A [`TensorEnergy`] as an [`Energy`], its forces by reverse-mode autodiff (module docs).
pub struct Autodiff<E>(pub E);

impl<E: TensorEnergy> Autodiff<E> {
    /// `x` on the CPU (f64) and `u(x)`, shapes checked; on the autodiff device with `x`
    /// tracked when `grad` (a tracked evaluation keeps its graph until a backward pass frees
    /// it, so energies alone are evaluated untracked).
    fn evaluate(&self, x: ArrayView2<f64>, grad: bool) -> Result<(Tensor<2>, Tensor<1>)> {
        if x.ncols() != self.0.dim() {
            return Err(Error::Shape {
                what: format!("configurations for energy `{}`", self.0.name()),
                expected: vec![x.nrows(), self.0.dim()],
                got: vec![x.nrows(), x.ncols()],
            });
        }
        let xt = if grad {
            tensor_from_array2(&x, &crate::device::reference_cpu().autodiff(), DType::F64).require_grad()
        } else {
            tensor_from_array2(&x, &crate::device::reference_cpu(), DType::F64)
        };
        let u = self.0.energy(xt.clone());
        if u.dims() != [x.nrows()] {
            return Err(Error::Shape { what: format!("energies returned by `{}`", self.0.name()), expected: vec![x.nrows()], got: u.dims().to_vec() });
        }
        Ok((xt, u))
    }

    /// `u(x)` per row.
    fn values(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        Ok(Array1::from(self.evaluate(x, false)?.1.host_vec::<f64>()?))
    }

    /// `u(x)` and `f = −∇ₓu` per row, by one reverse pass.
    fn values_and_forces(&self, x: ArrayView2<f64>) -> Result<(Array1<f64>, Array2<f64>)> {
        let (xt, u) = self.evaluate(x, true)?;
        let values = Array1::from(u.host_vec::<f64>()?);
        let grads = u.sum().backward();
        let g = xt.grad(&grads).ok_or_else(|| Error::invalid("energy", format!("`{}` does not depend on x", self.0.name())))?;
        Ok((values, -array2_from_tensor(&g)?))
    }
}

impl<E: TensorEnergy> Energy for Autodiff<E> {
    fn dim(&self) -> usize {
        self.0.dim()
    }

    /// # Panics
    /// On a batch of the wrong width or an energy of the wrong shape (the [`Energy`] trait is
    /// infallible; trainers check widths before they call it).
    fn energy(&self, x: ArrayView2<f64>) -> Array1<f64> {
        self.values(x).unwrap_or_else(|e| panic!("{e}"))
    }

    /// # Panics
    /// As [`Self::energy`].
    fn energy_and_force(&self, x: ArrayView2<f64>) -> (Array1<f64>, Array2<f64>) {
        self.values_and_forces(x).unwrap_or_else(|e| panic!("{e}"))
    }

    fn particles(&self) -> Option<(usize, usize)> {
        self.0.particles()
    }

    fn name(&self) -> String {
        self.0.name()
    }
}

/// The largest deviation of `energy`'s forces from central differences of its energy,
/// `max_{b,k} |f_bk + (u(x_b + h e_k) − u(x_b − h e_k)) / 2h|`, relative to `max |f|` (at least
/// 1): a check for hand-written forces. Truncation error is `O(h²)`, round-off `O(ε|u|/h)`;
/// `h ≈ 1e-5` suits energies of order one.
///
/// # Errors
/// `Shape` for a batch of the wrong width; `InvalidArgument` for `h ≤ 0`.
pub fn check_forces(energy: &dyn Energy, x: ArrayView2<f64>, h: f64) -> Result<f64> {
    if x.ncols() != energy.dim() {
        return Err(Error::Shape {
            what: format!("configurations for energy `{}`", energy.name()),
            expected: vec![x.nrows(), energy.dim()],
            got: vec![x.nrows(), x.ncols()],
        });
    }
    if !(h > 0.0 && h.is_finite()) {
        return Err(Error::invalid("h", format!("need a finite step > 0, got {h}")));
    }
    let (_, f) = energy.energy_and_force(x);
    let (b, d) = x.dim();
    // All perturbed copies in one batch: rows (b, k, ±).
    let mut shifted = Array2::zeros((2 * b * d, d));
    for i in 0..b {
        for k in 0..d {
            for (s, sign) in [(0, 1.0), (1, -1.0)] {
                let mut row = shifted.row_mut(2 * (i * d + k) + s);
                row.assign(&x.row(i));
                row[k] += sign * h;
            }
        }
    }
    let u = energy.energy(shifted.view());
    let scale = f.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let mut worst = 0.0f64;
    for i in 0..b {
        for k in 0..d {
            let fd = -(u[2 * (i * d + k)] - u[2 * (i * d + k) + 1]) / (2.0 * h);
            worst = worst.max((f[[i, k]] - fd).abs());
        }
    }
    Ok(worst / scale)
}
