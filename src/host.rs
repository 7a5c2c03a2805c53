//! Moving tensors to host vectors (the library's boundary with ndarray and plain slices).

use burn::tensor::{Element, Tensor};

use crate::{Error, Result};

/// Read a tensor back to the host as a flat row-major vector.
pub trait ToHost {
    /// The elements converted to `E`.
    ///
    /// # Errors
    /// [`Error::Device`] naming the device when the backend cannot read the tensor back.
    fn host_vec<E: Element>(&self) -> Result<Vec<E>>;

    /// The elements converted to `E`, inside infallible interfaces (a vector field's `eval`)
    /// whose tensors live on the CPU device, where a readback cannot fail.
    ///
    /// # Panics
    /// If the backend cannot read the tensor back (a device failure); public entry points read
    /// their results with [`ToHost::host_vec`] instead.
    fn to_vec_as<E: Element>(&self) -> Vec<E>;
}

impl<const D: usize> ToHost for Tensor<D> {
    fn host_vec<E: Element>(&self) -> Result<Vec<E>> {
        self.try_to_vec_as::<E>().map_err(|e| Error::Device { device: format!("{:?}", self.device()), reason: format!("tensor readback failed: {e}") })
    }

    fn to_vec_as<E: Element>(&self) -> Vec<E> {
        self.try_to_vec_as::<E>().unwrap_or_else(|e| panic!("tensor readback failed on {:?}: {e}", self.device()))
    }
}

/// A `[rows, cols]` tensor from an ndarray matrix, in `dtype` on `device` (the boundary for
/// simulation codes that hold their states in ndarray).
pub fn tensor_from_array2(a: &ndarray::ArrayView2<'_, f64>, device: &burn::tensor::Device, dtype: burn::tensor::DType) -> Tensor<2> {
    let (r, c) = a.dim();
    let data: Vec<f64> = a.iter().copied().collect();
    Tensor::<2>::from_data(burn::tensor::TensorData::new(data, [r, c]), (device, dtype))
}

/// An ndarray matrix `[rows, cols]` (f64) from a rank-2 tensor.
///
/// # Errors
/// [`Error::Device`] when the tensor cannot be read back.
pub fn array2_from_tensor(t: &Tensor<2>) -> Result<ndarray::Array2<f64>> {
    let [r, c] = t.dims();
    let data = t.host_vec::<f64>()?;
    ndarray::Array2::from_shape_vec((r, c), data)
        .map_err(|e| Error::Device { device: format!("{:?}", t.device()), reason: format!("readback of {r}×{c} tensor: {e}") })
}

/// The states of a solution as one array `[n_times, batch, dim]`.
///
/// # Errors
/// `Shape` when the states differ in shape, [`Error::Device`] when one cannot be read back.
pub fn solution_array(ys: &[Tensor<2>]) -> Result<ndarray::Array3<f64>> {
    let (b, d) = ys.first().map(|y| (y.dims()[0], y.dims()[1])).unwrap_or((0, 0));
    let mut data = Vec::with_capacity(ys.len() * b * d);
    for y in ys {
        if y.dims() != [b, d] {
            return Err(Error::Shape { what: "solution state".into(), expected: vec![b, d], got: y.dims().to_vec() });
        }
        data.extend(y.host_vec::<f64>()?);
    }
    Ok(ndarray::Array3::from_shape_vec((ys.len(), b, d), data).expect("length is n_times · batch · dim by construction"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ndarray → tensor → ndarray is the identity, and a solution stacks to `[T, batch, dim]`.
    #[test]
    fn ndarray_round_trip() {
        let device = crate::device::cpu_f64().unwrap();
        let a = ndarray::array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let t = tensor_from_array2(&a.view(), &device, burn::tensor::DType::F64);
        assert_eq!(t.dims(), [2, 3]);
        assert_eq!(array2_from_tensor(&t).unwrap(), a);
        let s = solution_array(&[t.clone(), t.clone().mul_scalar(2.0)]).unwrap();
        assert_eq!(s.dim(), (2, 2, 3));
        assert_eq!(s[[1, 1, 2]], 12.0);
        // States of different shapes are an error, not a panic.
        let other = tensor_from_array2(&ndarray::array![[1.0, 2.0]].view(), &device, burn::tensor::DType::F64);
        assert!(matches!(solution_array(&[t, other]), Err(Error::Shape { .. })));
    }
}
