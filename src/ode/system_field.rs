//! A [`sim::System`](crate::sim::System) as a batched [`VectorField`]: one definition of a
//! right-hand side (hand-written, or a [`ClosureSystem`](crate::sim::ClosureSystem) written
//! once over a generic scalar) serves the stiff diffsol solvers of `sim` and the batched
//! explicit solvers of `ode`, with their three gradient strategies.
//!
//! Each row of the state `y: [batch, n]` is one copy of the system at the same parameters
//! `p` (`m` of them). The vector–Jacobian products are the system's own `(∂f/∂y)ᵀ w` and
//! `(∂f/∂p)ᵀ w`, summed over rows for the parameter cotangent (`Params = Vec<f64>`, length
//! `m`), so `ode::solve_for_grad` differentiates with respect to `y0` and `p`.
//!
//! The reverse bridge, a burn-tensor right-hand side as a `System` for the stiff solvers, is
//! [`AutodiffSystem`](crate::sim::AutodiffSystem).

use burn::tensor::{Tensor, TensorData};

use super::field::{Time, VectorField};
use crate::host::ToHost;
use crate::sim::{check_params, System};
use crate::{Error, Result};

/// A [`System`] at fixed parameters, as a vector field on `[batch, n]`.
pub struct SystemField<'a, S: ?Sized> {
    system: &'a S,
    params: Vec<f64>,
}

impl<'a, S: System + ?Sized> SystemField<'a, S> {
    /// The system at its own parameters ([`System::params`]).
    ///
    /// # Errors
    /// As [`SystemField::with_params`].
    pub fn new(system: &'a S) -> Result<Self> {
        let p = system.params();
        Self::with_params(system, &p)
    }

    /// The system at parameters `p` (length `m`).
    ///
    /// # Errors
    /// `InvalidArgument` for a system without states, a wrong parameter count, a non-finite
    /// parameter or one the system's own validation rejects.
    pub fn with_params(system: &'a S, p: &[f64]) -> Result<Self> {
        if system.dim() == 0 {
            return Err(Error::invalid("y0", format!("`{}` has no states", system.name())));
        }
        check_params(system, p)?;
        Ok(Self { system, params: p.to_vec() })
    }

    /// The parameters the field is evaluated at.
    pub fn params(&self) -> &[f64] {
        &self.params
    }

    /// Row-wise `op(t_i, y_i, out_i)` over a host copy of `y`, returned as a tensor like `y`.
    fn rows(&self, t: &Time, y: &Tensor<2>, op: impl Fn(f64, &[f64], &mut [f64])) -> Tensor<2> {
        let [b, n] = y.dims();
        let host = y.to_vec_as::<f64>();
        let mut out = vec![0.0; b * n];
        for (i, (yi, oi)) in host.chunks_exact(n).zip(out.chunks_exact_mut(n)).enumerate() {
            op(t.of(i), yi, oi);
        }
        Tensor::<2>::from_data(TensorData::new(out, [b, n]), (&y.device(), y.dtype()))
    }
}

/// What a [`SystemField`] keeps for its VJP: the evaluation point.
pub struct SystemSaved {
    t: Time,
    y: Tensor<2>,
}

impl<S: System + ?Sized> VectorField<2> for SystemField<'_, S> {
    type Params = Vec<f64>;
    type Saved = SystemSaved;

    fn check_state(&self, y0: &Tensor<2>) -> Result<()> {
        let n = self.system.dim();
        if y0.dims()[1] != n {
            return Err(Error::Shape {
                what: format!("state of `{}` (rows of y0)", self.system.name()),
                expected: vec![y0.dims()[0], n],
                got: y0.dims().to_vec(),
            });
        }
        Ok(())
    }

    fn eval(&self, t: &Time, y: &Tensor<2>) -> Tensor<2> {
        self.rows(t, y, |ti, yi, dy| self.system.rhs(ti, yi, &self.params, dy))
    }

    fn eval_saving(&self, t: &Time, y: &Tensor<2>) -> (Tensor<2>, Self::Saved) {
        (self.eval(t, y), SystemSaved { t: t.clone(), y: y.clone() })
    }

    fn vjp_saved(&self, saved: &Self::Saved, a: &Tensor<2>, params: Option<(&mut Self::Params, f64)>) -> Tensor<2> {
        let [b, n] = saved.y.dims();
        let ys = saved.y.to_vec_as::<f64>();
        let aa = a.to_vec_as::<f64>();
        let mut out = vec![0.0; b * n];
        for i in 0..b {
            let r = i * n..(i + 1) * n;
            self.system.vjp(saved.t.of(i), &ys[r.clone()], &self.params, &aa[r.clone()], &mut out[r]);
        }
        if let Some((acc, w)) = params {
            let m = self.params.len();
            let mut row = vec![0.0; m];
            for i in 0..b {
                let r = i * n..(i + 1) * n;
                self.system.param_vjp(saved.t.of(i), &ys[r.clone()], &self.params, &aa[r], &mut row);
                for (a, g) in acc.iter_mut().zip(&row) {
                    *a += w * g;
                }
            }
        }
        Tensor::<2>::from_data(TensorData::new(out, [b, n]), (&a.device(), a.dtype()))
    }

    fn zero_params(&self) -> Self::Params {
        vec![0.0; self.params.len()]
    }
}
