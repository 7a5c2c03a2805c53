//! Moving tensors to host vectors (the library's boundary with ndarray and plain slices).

use burn::tensor::{Element, Tensor};

/// Read a tensor back to the host as a flat row-major vector.
pub trait ToHost {
    /// The elements converted to `E`.
    ///
    /// # Panics
    /// If the backend cannot read the tensor back (a device failure).
    fn to_vec_as<E: Element>(&self) -> Vec<E>;
}

impl<const D: usize> ToHost for Tensor<D> {
    fn to_vec_as<E: Element>(&self) -> Vec<E> {
        self.try_to_vec_as::<E>().unwrap_or_else(|e| panic!("tensor readback failed: {e}"))
    }
}

/// A `[rows, cols]` tensor from an ndarray matrix, in `dtype` on `device` (the boundary for
/// simulation codes that hold their states in ndarray).
pub fn tensor_from_array2(
    a: &ndarray::ArrayView2<'_, f64>,
    device: &burn::tensor::Device,
    dtype: burn::tensor::DType,
) -> Tensor<2> {
    let (r, c) = a.dim();
    let data: Vec<f64> = a.iter().copied().collect();
    Tensor::<2>::from_data(burn::tensor::TensorData::new(data, [r, c]), (device, dtype))
}

/// An ndarray matrix `[rows, cols]` (f64) from a rank-2 tensor.
pub fn array2_from_tensor(t: &Tensor<2>) -> ndarray::Array2<f64> {
    let [r, c] = t.dims();
    ndarray::Array2::from_shape_vec((r, c), t.to_vec_as::<f64>()).expect("shape matches the data")
}

/// The states of a solution as one array `[n_times, batch, dim]`.
pub fn solution_array(ys: &[Tensor<2>]) -> ndarray::Array3<f64> {
    let (b, d) = ys.first().map(|y| (y.dims()[0], y.dims()[1])).unwrap_or((0, 0));
    let mut data = Vec::with_capacity(ys.len() * b * d);
    for y in ys {
        data.extend(y.to_vec_as::<f64>());
    }
    ndarray::Array3::from_shape_vec((ys.len(), b, d), data).expect("all outputs share one shape")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ndarray → tensor → ndarray is the identity, and a solution stacks to `[T, batch, dim]`.
    #[test]
    fn ndarray_round_trip() {
        let device = crate::device::cpu_f64();
        let a = ndarray::array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let t = tensor_from_array2(&a.view(), &device, burn::tensor::DType::F64);
        assert_eq!(t.dims(), [2, 3]);
        assert_eq!(array2_from_tensor(&t), a);
        let s = solution_array(&[t.clone(), t.mul_scalar(2.0)]);
        assert_eq!(s.dim(), (2, 2, 3));
        assert_eq!(s[[1, 1, 2]], 12.0);
    }
}
