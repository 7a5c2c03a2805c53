//! Continuous normalizing flows (Chen et al. 2018, "Neural ODEs"; Grathwohl et al. 2019,
//! "FFJORD"): `x = z(1)` for `dz/dt = b(t, z)`, `z(0) = z`, with
//! `log|det ∂x/∂z| = ∫₀¹ ∇·b(t, z(t)) dt` integrated alongside by [`crate::ode::solve`].

use burn::tensor::{Tensor, TensorData};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use super::{check_input, Flow};
use crate::fm::{log_density, sample_with_log_density, Trace};
use crate::ode::{self, VectorField};
use crate::{Error, Result};

/// A continuous flow over any [`VectorField`] (for example a flow-matching model's
/// [`crate::fm::FmModel::field`]), with the divergence by the exact trace or Hutchinson's
/// estimator ([`Trace`]) and any solver ([`ode::Options`]).
///
/// Its VJPs return `Unsupported`: differentiating the log-determinant needs second derivatives
/// of `b`. Train the field by flow matching ([`crate::fm::train()`]) and use this type to sample,
/// score and reweight.
pub struct ContinuousFlow<F> {
    /// The vector field `b(t, z)` on `[batch, dim]`.
    pub field: F,
    /// The state dimension.
    pub dim: usize,
    /// How `∇·b` is computed.
    pub trace: Trace,
    /// Solver settings for both directions.
    pub options: ode::Options,
}

fn to_tensor(x: ArrayView2<f64>) -> Tensor<2> {
    let device = crate::device::reference_cpu();
    let data: Vec<f64> = x.iter().cloned().collect();
    Tensor::from_data(TensorData::new(data, [x.nrows(), x.ncols()]), (&device, burn::tensor::DType::F64))
}

impl<F: VectorField<2> + Send + Sync> Flow for ContinuousFlow<F> {
    fn dim(&self) -> usize {
        self.dim
    }

    fn name(&self) -> String {
        format!("continuous({:?}, {:?})", self.trace, self.options.solver)
    }

    fn forward(&self, z: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        check_input("flow input z", z, self.dim)?;
        // ℓ(1) = ℓ(0) − ∫ ∇·b with ℓ(0) = 0, so log|det ∂x/∂z| = −ℓ(1).
        let (x, l1) = sample_with_log_density(&self.field, &to_tensor(z), &vec![0.0; z.nrows()], self.trace, &self.options)?;
        Ok((Array2::from_shape_vec(z.dim(), x).expect("solver keeps the shape"), l1.iter().map(|l| -l).collect()))
    }

    fn inverse(&self, x: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        check_input("flow input x", x, self.dim)?;
        // With a zero base log-density, log_density returns −∫₀¹ ∇·b = log|det ∂z/∂x|.
        let (l0, z) = log_density(&self.field, &to_tensor(x), |z0, d| vec![0.0; z0.len() / d], self.trace, &self.options)?;
        Ok((Array2::from_shape_vec(x.dim(), z).expect("solver keeps the shape"), Array1::from(l0)))
    }

    fn forward_vjp(&self, _: ArrayView2<f64>, _: ArrayView2<f64>, _: ArrayView1<f64>, _: &mut [f64]) -> Result<Array2<f64>> {
        Err(Error::Unsupported("gradients through a continuous flow's log-determinant (train it by flow matching, fm::train)".into()))
    }

    fn inverse_vjp(&self, _: ArrayView2<f64>, _: ArrayView2<f64>, _: ArrayView1<f64>, _: &mut [f64]) -> Result<Array2<f64>> {
        Err(Error::Unsupported("gradients through a continuous flow's log-determinant (train it by flow matching, fm::train)".into()))
    }
}
