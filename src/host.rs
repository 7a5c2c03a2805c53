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
