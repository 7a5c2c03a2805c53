//! The element type of the fused kernels: [`Real`], implemented for `f32` and `f64`.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

use super::*;

/// Floating-point element type of a [`FusedMlp`]: implemented for `f32` and `f64`.
pub trait Real:
    Copy
    + Default
    + Debug
    + Send
    + Sync
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + 'static
{
    const ZERO: Self;
    const ONE: Self;

    /// `C ← alpha·A·B + beta·C` with `A: [m, k]`, `B: [k, n]`, `C: [m, n]`
    /// given by base pointers and element strides (row stride `rs*`, column
    /// stride `cs*`), i.e. `matrixmultiply::sgemm` / `dgemm`. When `beta` is
    /// zero, `C` is not read. (Not used by [`FusedMlp`] itself.)
    ///
    /// # Safety
    /// Every addressed element of `A`, `B` and `C` must be in bounds of its
    /// allocation, `C` must be valid for writes and must not alias `A` or `B`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// In-place `tanh` of every element: `f64::tanh` for `f64`, the
    /// vectorised approximation [`tanh_f32_slice`] (absolute error < 3e-7)
    /// for `f32`.
    fn tanh_slice(xs: &mut [Self]);

    /// `dst = src^T` for row-major `src: [rows, cols]` and `dst: [cols, rows]`
    /// (only the first `rows * cols` elements of each are used).
    fn transpose(src: &[Self], rows: usize, cols: usize, dst: &mut [Self]) {
        transpose_scalar(src, rows, cols, dst);
    }

    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;

    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }

    fn tanh_slice(xs: &mut [Self]) {
        tanh_f32_slice(xs);
    }

    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;

    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }

    /// [`tanh_f64_slice`]: within 4 ulp of libm's `tanh`, vectorised.
    fn tanh_slice(xs: &mut [Self]) {
        tanh_f64_slice(xs);
    }

    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// Default [`Real::transpose`]: column by column, so `dst` is written
/// contiguously while the strided reads of a column reuse the cache lines of
/// the previous one.
pub(super) fn transpose_scalar<R: Copy>(src: &[R], rows: usize, cols: usize, dst: &mut [R]) {
    let src = &src[..rows * cols];
    let dst = &mut dst[..rows * cols];
    for c in 0..cols {
        let col = &mut dst[c * rows..(c + 1) * rows];
        for (d, s) in col.iter_mut().zip(src[c..].iter().step_by(cols)) {
            *d = *s;
        }
    }
}
