//! Fused CPU forward pass and vector–Jacobian product (VJP) for small tanh MLPs.
//!
//! This is the fast path for MLP vector fields of neural ODEs (batch ~256,
//! widths ~64, single-threaded), where the per-op overhead of a tensor
//! framework dominates. It works on contiguous slices with its own small
//! matrix kernels (no packing, bias / `tanh` / `tanh'` fused into their passes)
//! and needs no other crate at run time (`matrixmultiply` only backs
//! [`Real::gemm`]).
//!
//! # Network and layouts
//!
//! `sizes = [s_0, s_1, ..., s_L]` describes `L` affine layers; layer `l` maps
//! width `s_l` to `s_{l+1}`:
//!
//! ```text
//! h_0 = input,   h_{l+1} = tanh(h_l @ W_l + b_l)  (l < L-1),   output = h_{L-1} @ W_{L-1} + b_{L-1}
//! ```
//!
//! * `W_l` is row-major with shape `[s_l, s_{l+1}]` (burn's `Linear` layout,
//!   forward is `x @ W + b`), `b_l` has shape `[s_{l+1}]`. The last layer is linear.
//! * Flat parameter vector: for each layer in order, `W_l` (row-major,
//!   `s_l * s_{l+1}` entries) followed by `b_l` (`s_{l+1}` entries). Parameter
//!   cotangents use the same layout.
//! * With `time_input`, the network input is `[x, t]`: `s_0 = dim + 1` and the
//!   LAST input column is the time. Callers pass the states `x: [batch, dim]`
//!   and the time separately ([`TimeArg`]).
//! * Caller-facing matrices are row-major: `x: [batch, dim]` means sample `i`
//!   occupies `x[i * dim .. (i + 1) * dim]`.
//!
//! # Internal layout and kernels
//!
//! Activations and cotangents are stored sample-major like the caller's
//! matrices (`[batch, width]`), each row padded with zeros to a whole number
//! of 64-byte cache lines and every buffer 64-byte aligned; the network input
//! is copied once into such a buffer together with its time column. The
//! weights are kept in the same padded form twice, as `W_l` and as `W_lᵀ`.
//!
//! Every product then has the shape `C[i, :] = Σ_p a(i, p) · M[p, :]` with the
//! rows of `M` contiguous and aligned: a register tile of `C` is accumulated
//! from broadcasts of `a` and aligned vector loads of `M`, with no packing or
//! transposition, at close to the FMA peak (alignment matters: a 64-byte load
//! that straddles two cache lines halved the kernel's speed).
//!
//! * forward: `H_{l+1}[i, :] = tanh(Σ_j H_l[i, j] W_l[j, :] + b_l)`, the bias
//!   added as each tile is stored and the `tanh` applied to each block of rows
//!   while it is in L1;
//! * input cotangent: `D[i, :] = (Σ_o G[i, o] W_lᵀ[o, :]) ⊙ (1 − H_l[i, :]²)`,
//!   the factor applied as each tile is stored;
//! * weight cotangent: `dW_l[j, :] += Σ_i H_l[i, j] G[i, :]`, the batch being
//!   the summed index (or its transpose `dW_lᵀ[o, :] += Σ_i G[i, o] H_l[i, :]`
//!   for a thin output), over blocks of samples that fit in L1.
//!
//! A layer whose output (forward) or input (input cotangent) width is at most
//! 4 would fill only a few lanes of each vector that way, so there the result
//! is formed as per-sample dot products with a horizontal sum, using the other
//! copy of the weights.
//!
//! The kernels are generic over a SIMD vector type: AVX-512 or AVX2+FMA for
//! `f32`/`f64` on x86-64, chosen at run time, and plain arrays elsewhere.
//! Results of the SIMD paths differ from the portable one by rounding only
//! (fused multiply–adds, summation order).

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};
use std::sync::Mutex;

/// A layer with output width (forward) or input width (input cotangent) at
/// most this uses per-sample dot products ([`dot`]) instead of the
/// outer-product kernel, which would leave most vector lanes idle.
const THIN: usize = 4;

/// Samples per block of the weight-cotangent product: both operand blocks
/// (`BATCH_BLOCK` rows of the layer input and of the cotangent, 8 KiB each at
/// width 64 in `f32`) then stay in the 32 KiB L1 cache while every register
/// tile of the result streams over them (the VJP ran ~3 % faster than with one
/// pass over a batch of 256; 32 and 64 were equally good).
const BATCH_BLOCK: usize = 32;

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
fn transpose_scalar<R: Copy>(src: &[R], rows: usize, cols: usize, dst: &mut [R]) {
    let src = &src[..rows * cols];
    let dst = &mut dst[..rows * cols];
    for c in 0..cols {
        let col = &mut dst[c * rows..(c + 1) * rows];
        for (d, s) in col.iter_mut().zip(src[c..].iter().step_by(cols)) {
            *d = *s;
        }
    }
}

// ---------------------------------------------------------------------------
// f64 tanh
// ---------------------------------------------------------------------------

/// `[1/n!, 1/(n−1)!, …, 1/1!, 1/0!]` for Horner's rule (`N = n + 1` entries).
const fn inv_factorials<const N: usize>() -> [f64; N] {
    let mut out = [0.0; N];
    let mut k = 0;
    while k < N {
        // out[k] = 1/(N−1−k)!
        let n = N - 1 - k;
        let mut f = 1.0;
        let mut i = 2;
        while i <= n {
            f *= i as f64;
            i += 1;
        }
        out[k] = 1.0 / f;
        k += 1;
    }
    out
}

/// Taylor coefficients of `expm1(y)/y = Σ_{n=0}^{17} yⁿ/(n+1)!`, highest first.
const EXPM1_C: [f64; 18] = {
    let f = inv_factorials::<19>();
    let mut out = [0.0; 18];
    let mut i = 0;
    while i < 18 {
        out[i] = f[i];
        i += 1;
    }
    out
};
/// Taylor coefficients of `exp(r) = Σ_{n=0}^{13} rⁿ/n!`, highest first.
const EXP_C: [f64; 14] = inv_factorials::<14>();

/// `tanh(x)` in f64 without branches, so that loops over it vectorise:
/// `tanh|x| = m / (m + 2)` with `m = expm1(2|x|)`; `m` by its Taylor series (degree 18, remainder
/// below 1e-16 relative) for `2|x| < 1.1`, else `exp(2|x|) − 1` with `exp` by the reduction
/// `2|x| = k ln 2 + r`, `|r| ≤ ln 2 / 2` (Cody–Waite split of ln 2) and a degree-13 Taylor
/// polynomial; `2|x|` is capped at 44, where `tanh = 1` in f64. Within 4 ulp of libm (unit test).
#[inline(always)]
fn tanh_f64(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238_2e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let y = (2.0 * x.abs()).min(44.0);
    let ys = y.min(1.1);
    let mut p = EXPM1_C[0];
    for c in &EXPM1_C[1..] {
        p = p.mul_add(ys, *c);
    }
    let small = ys * p;
    let k = (y * std::f64::consts::LOG2_E).round();
    let r = (-k).mul_add(LN2_LO, (-k).mul_add(LN2_HI, y));
    let mut e = EXP_C[0];
    for c in &EXP_C[1..] {
        e = e.mul_add(r, *c);
    }
    let big = e * f64::from_bits(((k as i64 + 1023) as u64) << 52) - 1.0;
    let m = if y < 1.1 { small } else { big };
    let t = (m / (m + 2.0)).copysign(x);
    if x.is_nan() {
        x
    } else {
        t
    }
}

/// In-place [`tanh_f64`] over a slice; on x86-64 a copy compiled for AVX-512 or AVX2+FMA is
/// chosen at run time (every copy performs the same operations, so results are identical).
pub fn tanh_f64_slice(xs: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") {
            // SAFETY: the CPU supports AVX-512F/DQ, checked just above.
            unsafe { tanh_f64_slice_avx512(xs) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            unsafe { tanh_f64_slice_avx2(xs) };
            return;
        }
    }
    xs.iter_mut().for_each(|v| *v = tanh_f64(*v));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
unsafe fn tanh_f64_slice_avx512(xs: &mut [f64]) {
    xs.iter_mut().for_each(|v| *v = tanh_f64(*v));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tanh_f64_slice_avx2(xs: &mut [f64]) {
    xs.iter_mut().for_each(|v| *v = tanh_f64(*v));
}

// ---------------------------------------------------------------------------
// f32 tanh
// ---------------------------------------------------------------------------

/// In-place `tanh` for `f32` slices: the rational `x·P(x²)/Q(x²)` (degrees 13/6) with the
/// coefficients of Eigen's and XLA's f32 `tanh`, clamped at ±7.9053111 where it reaches ±1.
/// Max absolute error 2.5e-7 against `f64::tanh` on a 2⁻¹³ grid over [−20, 20] (the unit test
/// bounds it by 3e-7: five f32 ulps just below 1), relative error ≤ 2.4e-7 for |x| < 0.5; odd;
/// NaN in → NaN out.
///
/// Written as plain loops of fused multiply–adds and one division, so LLVM vectorises them;
/// on x86-64 a copy compiled for AVX-512 or for AVX2+FMA is chosen at run time. Every element
/// goes through the same operations in every copy, so all copies give identical results.
pub fn tanh_f32_slice(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            unsafe { tanh_f32_slice_avx512(xs) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            unsafe { tanh_f32_slice_avx2(xs) };
            return;
        }
    }
    tanh_f32_slice_generic::<16>(xs);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn tanh_f32_slice_avx512(xs: &mut [f32]) {
    tanh_f32_slice_generic::<64>(xs);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tanh_f32_slice_avx2(xs: &mut [f32]) {
    tanh_f32_slice_generic::<32>(xs);
}

/// [`tanh_f32`] over blocks of `B` elements (four vector registers in the
/// SIMD copies), one step of the formula at a time across the block: each
/// element is a chain of ~16 dependent operations (~60 cycles), and one
/// vector at a time left the out-of-order window too few independent chains
/// to keep the FMA units and the divider busy (about 1.25× slower).
#[inline(always)]
fn tanh_f32_slice_generic<const B: usize>(xs: &mut [f32]) {
    let mut blocks = xs.chunks_exact_mut(B);
    for block in &mut blocks {
        let block: &mut [f32; B] = block.try_into().unwrap();
        let mut x = [0.0f32; B];
        let mut x2 = [0.0f32; B];
        let mut p = [0.0f32; B];
        let mut q = [0.0f32; B];
        for l in 0..B {
            x[l] = tanh_f32_clamp(block[l]);
            x2[l] = x[l] * x[l];
        }
        for l in 0..B {
            p[l] = x2[l].mul_add(TANH_A[0], TANH_A[1]);
            q[l] = x2[l].mul_add(TANH_B[0], TANH_B[1]);
        }
        for l in 0..B {
            p[l] = x2[l].mul_add(p[l], TANH_A[2]);
            q[l] = x2[l].mul_add(q[l], TANH_B[2]);
        }
        for l in 0..B {
            p[l] = x2[l].mul_add(p[l], TANH_A[3]);
            q[l] = x2[l].mul_add(q[l], TANH_B[3]);
        }
        for a in &TANH_A[4..] {
            for l in 0..B {
                p[l] = x2[l].mul_add(p[l], *a);
            }
        }
        for l in 0..B {
            block[l] = (x[l] * p[l]) / q[l];
        }
    }
    for v in blocks.into_remainder() {
        *v = tanh_f32(*v);
    }
}

/// Numerator coefficients of [`tanh_f32`], highest power of `x²` first
/// (written as published, hence more digits than an `f32` holds).
#[allow(clippy::excessive_precision)]
const TANH_A: [f32; 7] = [
    -2.760_768_477_423_55e-16,
    2.000_187_904_824_77e-13,
    -8.604_671_522_137_35e-11,
    5.122_297_090_371_14e-8,
    1.485_722_357_179_79e-5,
    6.372_619_288_754_36e-4,
    4.893_524_558_917_86e-3,
];
/// Denominator coefficients of [`tanh_f32`], highest power of `x²` first.
#[allow(clippy::excessive_precision)]
const TANH_B: [f32; 4] = [1.198_258_394_667_02e-6, 1.185_347_056_866_54e-4, 2.268_434_632_439e-3, 4.893_525_185_543_85e-3];

/// `x` clamped to ±7.9053111, where the rational reaches ±1; NaN stays NaN.
/// (`f32::clamp` compiles to one `max` and one `min`; the former
/// `if … else if …` chain became two compares, an `and` and two blends.)
#[inline(always)]
fn tanh_f32_clamp(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    x.clamp(-CLAMP, CLAMP)
}

/// Scalar form of [`tanh_f32_slice`], same operations in the same order.
#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    let x = tanh_f32_clamp(x);
    let x2 = x * x;
    let mut p = x2.mul_add(TANH_A[0], TANH_A[1]);
    for a in &TANH_A[2..] {
        p = x2.mul_add(p, *a);
    }
    let mut q = x2.mul_add(TANH_B[0], TANH_B[1]);
    for b in &TANH_B[2..] {
        q = x2.mul_add(q, *b);
    }
    (x * p) / q
}

// ---------------------------------------------------------------------------
// aligned, padded buffers
// ---------------------------------------------------------------------------

/// Row length `w` rounded up to a whole number of 64-byte cache lines (16
/// `f32` or 8 `f64`; other element types round up to 8 elements, the portable
/// vector length). Padded entries are kept at zero, so vector loops may run
/// over whole padded rows.
#[inline(always)]
fn pad<R>(w: usize) -> usize {
    let lanes = if std::mem::size_of::<R>() == 4 { 16 } else { 8 };
    w.div_ceil(lanes) * lanes
}

/// A heap buffer whose first element is 64-byte aligned (for `f32`/`f64`):
/// a `Vec` with some slack in front. Growing it discards the contents.
struct AVec<R> {
    buf: Vec<R>,
    off: usize,
    len: usize,
}

impl<R: Real> AVec<R> {
    fn new() -> Self {
        AVec { buf: Vec::new(), off: 0, len: 0 }
    }

    /// Makes the buffer `len` elements long; when it has to grow, the new
    /// contents are all zero, otherwise they are left as they were.
    fn resize(&mut self, len: usize) {
        let slack = 64 / std::mem::size_of::<R>().max(1);
        if self.buf.len() < len + slack {
            self.buf = vec![R::ZERO; len + slack];
            self.off = align_offset(&self.buf);
        }
        self.len = len;
    }

    fn as_slice(&self) -> &[R] {
        &self.buf[self.off..self.off + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [R] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// Offset of the first 64-byte aligned element within `buf`'s first `slack`
/// elements (0 if the element size does not allow one).
fn align_offset<R>(buf: &[R]) -> usize {
    let size = std::mem::size_of::<R>().max(1);
    let mis = buf.as_ptr() as usize % 64;
    // For f32/f64 the distance to the next line is a multiple of the element
    // size (the allocation is aligned to it).
    if mis == 0 || !(64 - mis).is_multiple_of(size) {
        0
    } else {
        (64 - mis) / size
    }
}

impl<R: Clone> Clone for AVec<R> {
    /// A fresh allocation with the data moved to its own aligned offset (a
    /// derived clone would keep the offset of the original allocation).
    fn clone(&self) -> Self {
        let mut buf = self.buf.clone();
        let off = align_offset(&buf);
        if off > self.off {
            buf.rotate_right(off - self.off);
        } else {
            buf.rotate_left(self.off - off);
        }
        AVec { buf, off, len: self.len }
    }
}

// ---------------------------------------------------------------------------
// SIMD vectors
// ---------------------------------------------------------------------------

/// One SIMD register of `LANES` elements of `R`, for the matrix kernels.
///
/// Explicit vector types rather than plain loops over arrays: written as
/// plain loops, register tiles of the same kernel were vectorised for some
/// tile shapes and left scalar (100× slower) for others, at LLVM's whim.
///
/// # Safety
/// The methods may only run on a CPU with the instruction set of the
/// implementation (its caller is compiled with that `target_feature`);
/// pointers must be valid for `LANES` elements.
trait Simd<R: Real>: Copy {
    const LANES: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(v: R) -> Self;
    unsafe fn load(p: *const R) -> Self;
    unsafe fn store(p: *mut R, v: Self);
    unsafe fn add(a: Self, b: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    /// `a·b + c`, fused where the instruction set has FMA.
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
    /// `c − a·b`, fused where the instruction set has FMA.
    unsafe fn neg_mul_add(a: Self, b: Self, c: Self) -> Self;
    /// Sum of the lanes.
    unsafe fn sum(a: Self) -> R;
    /// [`outer`] with this type's register tile.
    unsafe fn outer<E, D>(k: &Outer<R>, epi: &mut E, row_done: &mut D)
    where
        E: FnMut(usize, usize, Self),
        D: FnMut(usize, usize);
}

/// Portable [`Simd`]: eight lanes as a plain array, no FMA, for CPUs (or
/// element types) without one of the x86-64 kernels.
#[derive(Clone, Copy)]
struct Lanes<R>([R; 8]);

impl<R: Real> Simd<R> for Lanes<R> {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Lanes([R::ZERO; 8])
    }
    #[inline(always)]
    unsafe fn splat(v: R) -> Self {
        Lanes([v; 8])
    }
    #[inline(always)]
    unsafe fn load(p: *const R) -> Self {
        // SAFETY: caller guarantees 8 readable elements; `[R; 8]` needs only
        // the alignment of `R`.
        Lanes(unsafe { std::ptr::read(p as *const [R; 8]) })
    }
    #[inline(always)]
    unsafe fn store(p: *mut R, v: Self) {
        // SAFETY: as in `load`.
        unsafe { std::ptr::write(p as *mut [R; 8], v.0) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        Lanes(std::array::from_fn(|l| a.0[l] + b.0[l]))
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        Lanes(std::array::from_fn(|l| a.0[l] * b.0[l]))
    }
    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Lanes(std::array::from_fn(|l| a.0[l] * b.0[l] + c.0[l]))
    }
    #[inline(always)]
    unsafe fn neg_mul_add(a: Self, b: Self, c: Self) -> Self {
        Lanes(std::array::from_fn(|l| c.0[l] - a.0[l] * b.0[l]))
    }
    #[inline(always)]
    unsafe fn sum(a: Self) -> R {
        a.0.iter().fold(R::ZERO, |s, v| s + *v)
    }
    #[inline(always)]
    unsafe fn outer<E, D>(k: &Outer<R>, epi: &mut E, row_done: &mut D)
    where
        E: FnMut(usize, usize, Self),
        D: FnMut(usize, usize),
    {
        // SAFETY: forwarded contract.
        unsafe { outer::<R, Self, 4, 2, E, D>(k, epi, row_done) }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! [`Simd`] for 512-bit (AVX-512F) and 256-bit (AVX2 + FMA) registers.
    //! One type serves `f32` and `f64`: the register is kept as `__m512` /
    //! `__m256` and reinterpreted (free) for `f64`; the branch on the element
    //! size is resolved at compile time. They are only instantiated for
    //! `R = f32` or `f64` (see [`super::Isa::best`]).

    use super::{outer, Outer, Real, Simd};
    use std::arch::x86_64::*;
    use std::marker::PhantomData;

    #[inline(always)]
    fn is_f32<R>() -> bool {
        std::mem::size_of::<R>() == 4
    }

    /// Reinterprets `v` (of type `A`) as `B`, which has the same size.
    #[inline(always)]
    unsafe fn bits<A, B>(v: A) -> B {
        // SAFETY: only used between `R` and the `f32`/`f64` it is.
        unsafe { std::mem::transmute_copy(&v) }
    }

    #[derive(Clone, Copy)]
    pub(super) struct Zmm<R>(__m512, PhantomData<R>);

    #[derive(Clone, Copy)]
    pub(super) struct Ymm<R>(__m256, PhantomData<R>);

    macro_rules! binary {
        ($ty:ident, $name:ident, $ps:ident, $pd:ident, $tops:ident, $frompd:ident) => {
            #[inline(always)]
            unsafe fn $name(a: Self, b: Self) -> Self {
                // SAFETY: the caller runs on a CPU with this instruction set.
                unsafe { $ty(if is_f32::<R>() { $ps(a.0, b.0) } else { $frompd($pd($tops(a.0), $tops(b.0))) }, PhantomData) }
            }
        };
    }
    macro_rules! ternary {
        ($ty:ident, $name:ident, $ps:ident, $pd:ident, $tops:ident, $frompd:ident) => {
            #[inline(always)]
            unsafe fn $name(a: Self, b: Self, c: Self) -> Self {
                // SAFETY: the caller runs on a CPU with this instruction set.
                unsafe { $ty(if is_f32::<R>() { $ps(a.0, b.0, c.0) } else { $frompd($pd($tops(a.0), $tops(b.0), $tops(c.0))) }, PhantomData) }
            }
        };
    }

    impl<R: Real> Simd<R> for Zmm<R> {
        const LANES: usize = 64 / std::mem::size_of::<R>();
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: AVX-512F is available to the caller.
            unsafe { Zmm(_mm512_setzero_ps(), PhantomData) }
        }
        #[inline(always)]
        unsafe fn splat(v: R) -> Self {
            // SAFETY: AVX-512F is available; `R` is f32 or f64 by size.
            unsafe { Zmm(if is_f32::<R>() { _mm512_set1_ps(bits(v)) } else { _mm512_castpd_ps(_mm512_set1_pd(bits(v))) }, PhantomData) }
        }
        #[inline(always)]
        unsafe fn load(p: *const R) -> Self {
            // SAFETY: 64 readable bytes at `p` (caller); unaligned loads are
            // allowed, the buffers are aligned for speed only.
            unsafe { Zmm(_mm512_loadu_ps(p as *const f32), PhantomData) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut R, v: Self) {
            // SAFETY: 64 writable bytes at `p` (caller).
            unsafe { _mm512_storeu_ps(p as *mut f32, v.0) }
        }
        binary!(Zmm, add, _mm512_add_ps, _mm512_add_pd, _mm512_castps_pd, _mm512_castpd_ps);
        binary!(Zmm, mul, _mm512_mul_ps, _mm512_mul_pd, _mm512_castps_pd, _mm512_castpd_ps);
        ternary!(Zmm, mul_add, _mm512_fmadd_ps, _mm512_fmadd_pd, _mm512_castps_pd, _mm512_castpd_ps);
        ternary!(Zmm, neg_mul_add, _mm512_fnmadd_ps, _mm512_fnmadd_pd, _mm512_castps_pd, _mm512_castpd_ps);
        #[inline(always)]
        unsafe fn sum(a: Self) -> R {
            // SAFETY: AVX-512F is available; `R` is f32 or f64 by size.
            unsafe {
                if is_f32::<R>() {
                    bits(_mm512_reduce_add_ps(a.0))
                } else {
                    bits(_mm512_reduce_add_pd(_mm512_castps_pd(a.0)))
                }
            }
        }
        #[inline(always)]
        unsafe fn outer<E, D>(k: &Outer<R>, epi: &mut E, row_done: &mut D)
        where
            E: FnMut(usize, usize, Self),
            D: FnMut(usize, usize),
        {
            // 16 accumulators + 4 row vectors + 1 broadcast of 32 registers;
            // per step 8 loads feed 16 FMAs, so the two FMA ports set the pace.
            // SAFETY: forwarded contract.
            unsafe { outer::<R, Self, 4, 4, E, D>(k, epi, row_done) }
        }
    }

    impl<R: Real> Simd<R> for Ymm<R> {
        const LANES: usize = 32 / std::mem::size_of::<R>();
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: AVX is available to the caller.
            unsafe { Ymm(_mm256_setzero_ps(), PhantomData) }
        }
        #[inline(always)]
        unsafe fn splat(v: R) -> Self {
            // SAFETY: AVX is available; `R` is f32 or f64 by size.
            unsafe { Ymm(if is_f32::<R>() { _mm256_set1_ps(bits(v)) } else { _mm256_castpd_ps(_mm256_set1_pd(bits(v))) }, PhantomData) }
        }
        #[inline(always)]
        unsafe fn load(p: *const R) -> Self {
            // SAFETY: 32 readable bytes at `p` (caller).
            unsafe { Ymm(_mm256_loadu_ps(p as *const f32), PhantomData) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut R, v: Self) {
            // SAFETY: 32 writable bytes at `p` (caller).
            unsafe { _mm256_storeu_ps(p as *mut f32, v.0) }
        }
        binary!(Ymm, add, _mm256_add_ps, _mm256_add_pd, _mm256_castps_pd, _mm256_castpd_ps);
        binary!(Ymm, mul, _mm256_mul_ps, _mm256_mul_pd, _mm256_castps_pd, _mm256_castpd_ps);
        ternary!(Ymm, mul_add, _mm256_fmadd_ps, _mm256_fmadd_pd, _mm256_castps_pd, _mm256_castpd_ps);
        ternary!(Ymm, neg_mul_add, _mm256_fnmadd_ps, _mm256_fnmadd_pd, _mm256_castps_pd, _mm256_castpd_ps);
        #[inline(always)]
        unsafe fn sum(a: Self) -> R {
            // SAFETY: AVX is available; `R` is f32 or f64 by size.
            unsafe {
                if is_f32::<R>() {
                    let s = _mm_add_ps(_mm256_castps256_ps128(a.0), _mm256_extractf128_ps::<1>(a.0));
                    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
                    bits(_mm_cvtss_f32(s))
                } else {
                    let v = _mm256_castps_pd(a.0);
                    let s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
                    let s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
                    bits(_mm_cvtsd_f64(s))
                }
            }
        }
        #[inline(always)]
        unsafe fn outer<E, D>(k: &Outer<R>, epi: &mut E, row_done: &mut D)
        where
            E: FnMut(usize, usize, Self),
            D: FnMut(usize, usize),
        {
            // 12 accumulators + 2 row vectors + 1 broadcast of 16 registers.
            // SAFETY: forwarded contract.
            unsafe { outer::<R, Self, 6, 2, E, D>(k, epi, row_done) }
        }
    }
}

/// Which [`Simd`] implementation runs the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The fastest implementation for element type `R` on this CPU: the x86
    /// kernels exist for `f32` and `f64` only.
    fn best<R: 'static>() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::any::TypeId;
            let native = TypeId::of::<R>() == TypeId::of::<f32>() || TypeId::of::<R>() == TypeId::of::<f64>();
            if native {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return Isa::Avx512;
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    return Isa::Avx2;
                }
            }
        }
        Isa::Portable
    }
}

// ---------------------------------------------------------------------------
// matrix kernels
// ---------------------------------------------------------------------------

/// Operands of [`outer`]: for rows `i < rows` and vectors `v < nvec`,
///
/// ```text
/// C(i, v) = Σ_{p < depth} a(i, p) · M[p·ldm + v·LANES .. (v+1)·LANES]
/// ```
///
/// with `a(i, p) = *a.add(i·a_rs + p·a_cs)` and the rows of `M` starting at
/// `m + p·ldm`. They should be 64-byte aligned (an aligned `m` and `ldm` a
/// padded width, see [`pad`]) for speed.
struct Outer<R> {
    rows: usize,
    depth: usize,
    nvec: usize,
    a: *const R,
    a_rs: usize,
    a_cs: usize,
    m: *const R,
    ldm: usize,
}

/// Outer-product matrix kernel: computes every `C(i, v)` of `k` (see
/// [`Outer`]) in register tiles of `RT` rows × `NV` vectors and hands each to
/// `epi(i, v, C(i, v))`; `row_done(i0, i1)` follows the last vector of rows
/// `i0..i1`. Per step `p`, a tile loads `NV` vectors of `M` and broadcasts
/// `RT` values of `a` for `RT·NV` fused multiply–adds: nothing is packed, and
/// `M` is read in place.
///
/// # Safety
/// The CPU must support `V`'s instruction set; every `a(i, p)` and every
/// addressed vector of `M` must be readable.
#[inline(always)]
unsafe fn outer<R, V, const RT: usize, const NV: usize, E, D>(k: &Outer<R>, epi: &mut E, row_done: &mut D)
where
    R: Real,
    V: Simd<R>,
    E: FnMut(usize, usize, V),
    D: FnMut(usize, usize),
{
    let mut i = 0;
    while i < k.rows {
        // Leftover rows (batch or width not a multiple of RT) use 2- and
        // 1-row tiles; the thin layers' weight cotangents have 2 rows only.
        let left = k.rows - i;
        // SAFETY: forwarded contract; `i + rt <= rows`.
        let rt = unsafe {
            if left >= RT {
                tile_row::<R, V, RT, NV, E>(k, i, epi);
                RT
            } else if left >= 2 {
                tile_row::<R, V, 2, NV, E>(k, i, epi);
                2
            } else {
                tile_row::<R, V, 1, NV, E>(k, i, epi);
                1
            }
        };
        row_done(i, i + rt);
        i += rt;
    }
}

/// Rows `i..i+RT` of [`outer`]: tiles of `NV` vectors, then single vectors.
///
/// # Safety
/// As for [`outer`], with `i + RT <= rows`.
#[inline(always)]
unsafe fn tile_row<R, V, const RT: usize, const NV: usize, E>(k: &Outer<R>, i: usize, epi: &mut E)
where
    R: Real,
    V: Simd<R>,
    E: FnMut(usize, usize, V),
{
    let mut v = 0;
    // SAFETY: forwarded contract; `v + NV <= nvec` resp. `v < nvec`.
    unsafe {
        while v + NV <= k.nvec {
            tile::<R, V, RT, NV, E>(k, i, v, epi);
            v += NV;
        }
        while v < k.nvec {
            tile::<R, V, RT, 1, E>(k, i, v, epi);
            v += 1;
        }
    }
}

/// One `RT × NV` register tile of [`outer`] at row `i0`, vector `v0`.
///
/// # Safety
/// As for [`outer`], with `i0 + RT <= rows` and `v0 + NV <= nvec`.
#[inline(always)]
unsafe fn tile<R, V, const RT: usize, const NV: usize, E>(k: &Outer<R>, i0: usize, v0: usize, epi: &mut E)
where
    R: Real,
    V: Simd<R>,
    E: FnMut(usize, usize, V),
{
    // SAFETY: the caller guarantees that every address formed here is
    // readable (rows i0..i0+RT, vectors v0..v0+NV, steps 0..depth).
    unsafe {
        let mut acc = [[V::zero(); NV]; RT];
        let a = k.a.add(i0 * k.a_rs);
        let m = k.m.add(v0 * V::LANES);
        for p in 0..k.depth {
            let mrow = m.add(p * k.ldm);
            let mv: [V; NV] = std::array::from_fn(|c| V::load(mrow.add(c * V::LANES)));
            let ap = a.add(p * k.a_cs);
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = V::splat(*ap.add(r * k.a_rs));
                for c in 0..NV {
                    acc_r[c] = V::mul_add(av, mv[c], acc_r[c]);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (c, acc_rc) in acc_r.iter().enumerate() {
                epi(i0 + r, v0 + c, *acc_rc);
            }
        }
    }
}

/// Dot-product kernel for thin outputs: for rows `i < rows` and outputs
/// `o < nout` (`nout <= THIN`), `epi(i, o, Σ_v x[i·ldx + v·L ..] · m[o·ldm + v·L ..])`
/// over `nvec` vectors of `L = V::LANES` elements (whole padded rows, whose
/// padding is zero in at least one operand).
///
/// # Safety
/// The CPU must support `V`'s instruction set; rows `0..rows` of `x` and
/// `0..nout` of `m` must be readable for `nvec·L` elements.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dot<R: Real, V: Simd<R>>(
    rows: usize,
    nvec: usize,
    x: *const R,
    ldx: usize,
    nout: usize,
    m: *const R,
    ldm: usize,
    epi: &mut impl FnMut(usize, usize, R),
) {
    debug_assert!(nout <= THIN);
    // A const output count keeps the accumulators in registers.
    // SAFETY: forwarded contract.
    unsafe {
        match nout {
            0 => {}
            1 => dot_n::<R, V, 1>(rows, nvec, x, ldx, m, ldm, epi),
            2 => dot_n::<R, V, 2>(rows, nvec, x, ldx, m, ldm, epi),
            3 => dot_n::<R, V, 3>(rows, nvec, x, ldx, m, ldm, epi),
            _ => dot_n::<R, V, 4>(rows, nvec, x, ldx, m, ldm, epi),
        }
    }
}

/// [`dot`] with `N` outputs.
///
/// # Safety
/// As for [`dot`] with `nout = N`.
#[inline(always)]
unsafe fn dot_n<R: Real, V: Simd<R>, const N: usize>(
    rows: usize,
    nvec: usize,
    x: *const R,
    ldx: usize,
    m: *const R,
    ldm: usize,
    epi: &mut impl FnMut(usize, usize, R),
) {
    // SAFETY: addresses as guaranteed by the caller.
    unsafe {
        for i in 0..rows {
            let xr = x.add(i * ldx);
            let mut acc = [V::zero(); N];
            for v in 0..nvec {
                let xv = V::load(xr.add(v * V::LANES));
                for (o, acc_o) in acc.iter_mut().enumerate() {
                    *acc_o = V::mul_add(xv, V::load(m.add(o * ldm + v * V::LANES)), *acc_o);
                }
            }
            for (o, acc_o) in acc.iter().enumerate() {
                epi(i, o, V::sum(*acc_o));
            }
        }
    }
}

/// `out[v·L ..] = Σ_i x[i·ldx + v·L ..]` for `v < nvec`: column sums of a
/// padded `[rows, nvec·L]` matrix (the bias cotangent).
///
/// # Safety
/// The CPU must support `V`'s instruction set; `x` readable for `rows` rows,
/// `out` writable for `nvec·L` elements.
#[inline(always)]
unsafe fn col_sums<R: Real, V: Simd<R>>(rows: usize, nvec: usize, x: *const R, ldx: usize, out: *mut R) {
    // SAFETY: addresses as guaranteed by the caller.
    unsafe {
        for v in 0..nvec {
            // Four partial sums hide the add latency.
            let mut acc = [V::zero(); 4];
            let col = x.add(v * V::LANES);
            let mut i = 0;
            while i + 4 <= rows {
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = V::add(*a, V::load(col.add((i + r) * ldx)));
                }
                i += 4;
            }
            while i < rows {
                acc[0] = V::add(acc[0], V::load(col.add(i * ldx)));
                i += 1;
            }
            let s = V::add(V::add(acc[0], acc[1]), V::add(acc[2], acc[3]));
            V::store(out.add(v * V::LANES), s);
        }
    }
}

// ---------------------------------------------------------------------------
// public types
// ---------------------------------------------------------------------------

/// Time argument of a network call.
#[derive(Clone, Copy, Debug)]
pub enum TimeArg<'a, R> {
    /// No time (autonomous network).
    None,
    /// One time shared by all samples.
    Shared(R),
    /// One time per sample, `[batch]`.
    PerSample(&'a [R]),
}

/// State saved by [`FusedMlp::forward_cached`] for [`FusedMlp::vjp`], plus
/// reusable scratch.
///
/// Holds the network input `[x, t]` and the post-activation hidden values
/// `h_1 .. h_{L-1}`, sample-major with padded rows (module docs). Buffers are
/// kept across calls: once a cache has served a given network and batch
/// size, forward and VJP do not allocate.
#[derive(Clone)]
pub struct MlpCache<R> {
    sizes: Vec<usize>,
    time_input: bool,
    batch: usize,
    /// Layer inputs: `acts[0]` is `[x, t]` as `[batch, pad(s_0)]`, `acts[l]`
    /// is `h_l` as `[batch, pad(s_l)]` for `l = 1..L-1`.
    acts: Vec<AVec<R>>,
    // Scratch: cotangent ping-pong buffers `[batch, pad(width)]`, staging for
    // wide outputs, and the weight / bias cotangent of one layer.
    g: AVec<R>,
    d: AVec<R>,
    tmp: AVec<R>,
    dw: AVec<R>,
}

impl<R> Debug for MlpCache<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlpCache").field("sizes", &self.sizes).field("time_input", &self.time_input).field("batch", &self.batch).finish_non_exhaustive()
    }
}

impl<R: Real> Default for MlpCache<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: Real> MlpCache<R> {
    /// An empty cache; buffers are sized on first use.
    pub fn new() -> Self {
        MlpCache { sizes: Vec::new(), time_input: false, batch: 0, acts: Vec::new(), g: AVec::new(), d: AVec::new(), tmp: AVec::new(), dw: AVec::new() }
    }

    /// Batch size of the last [`FusedMlp::forward_cached`] call (0 if none).
    pub fn batch(&self) -> usize {
        self.batch
    }
}

/// Where layer `l`'s kernel copies of its parameters start in
/// `FusedMlp::packed`: `W_l` as `[s_l, pad(s_{l+1})]`, `W_lᵀ` as
/// `[s_{l+1}, pad(s_l)]` and `b_l` as `[pad(s_{l+1})]`, zero-padded; every
/// block and row starts on a 64-byte boundary.
#[derive(Clone, Copy, Debug)]
struct Packed {
    w: usize,
    wt: usize,
    b: usize,
}

/// A tanh MLP with flat parameters, evaluated with fused CPU kernels.
///
/// See the module docs for the parameter layout. `Send + Sync`; `forward`
/// takes `&self`.
pub struct FusedMlp<R: Real> {
    sizes: Vec<usize>,
    time_input: bool,
    params: Vec<R>,
    /// `(weight offset, bias offset)` of each layer in `params`.
    offsets: Vec<(usize, usize)>,
    /// Padded, aligned copies of the parameters for the kernels ([`Packed`]).
    packed: AVec<R>,
    packed_at: Vec<Packed>,
    /// Buffers for [`Self::forward`], so that it does not allocate per call.
    /// The mutex keeps the type `Sync`; a call that finds it taken (concurrent
    /// use from several threads) works in a fresh cache rather than waiting.
    scratch: Mutex<MlpCache<R>>,
}

impl<R: Real> Clone for FusedMlp<R> {
    fn clone(&self) -> Self {
        FusedMlp {
            sizes: self.sizes.clone(),
            time_input: self.time_input,
            params: self.params.clone(),
            offsets: self.offsets.clone(),
            packed: self.packed.clone(),
            packed_at: self.packed_at.clone(),
            scratch: Mutex::new(MlpCache::new()),
        }
    }
}

impl<R: Real> Debug for FusedMlp<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedMlp")
            .field("sizes", &self.sizes)
            .field("time_input", &self.time_input)
            .field("num_params", &self.params.len())
            .finish_non_exhaustive()
    }
}

impl<R: Real> FusedMlp<R> {
    /// Number of flat parameters of an MLP with these layer sizes:
    /// `Σ_l s_l·s_{l+1} + s_{l+1}`.
    pub fn param_count(sizes: &[usize]) -> usize {
        sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }

    /// Builds the network from layer sizes `[s_0, ..., s_L]` (`s_0` includes
    /// the time column when `time_input`) and the flat parameter vector
    /// (module docs for the layout).
    ///
    /// # Panics
    /// If `sizes` has fewer than two entries or a zero width, or if
    /// `params.len() != Self::param_count(&sizes)`; the message names `sizes`.
    pub fn new(sizes: Vec<usize>, time_input: bool, params: Vec<R>) -> Self {
        assert!(sizes.len() >= 2, "FusedMlp: sizes {sizes:?} must list at least the input and output widths");
        assert!(sizes.iter().all(|&s| s > 0), "FusedMlp: sizes {sizes:?} contain a zero width");
        let expected = Self::param_count(&sizes);
        assert!(params.len() == expected, "FusedMlp: sizes {sizes:?} need {expected} parameters, got {}", params.len());
        let mut offsets = Vec::with_capacity(sizes.len() - 1);
        let mut packed_at = Vec::with_capacity(sizes.len() - 1);
        let (mut off, mut poff) = (0, 0);
        for w in sizes.windows(2) {
            let (k, n) = (w[0], w[1]);
            offsets.push((off, off + k * n));
            off += k * n + n;
            let (kp, np) = (pad::<R>(k), pad::<R>(n));
            packed_at.push(Packed { w: poff, wt: poff + k * np, b: poff + k * np + n * kp });
            poff += k * np + n * kp + np;
        }
        let mut packed = AVec::new();
        packed.resize(poff);
        let mut mlp = FusedMlp { sizes, time_input, params, offsets, packed, packed_at, scratch: Mutex::new(MlpCache::new()) };
        mlp.refresh_packed();
        mlp
    }

    /// Rewrites the kernel copies of the parameters from `params` (their
    /// padding stays zero: it is never written).
    fn refresh_packed(&mut self) {
        let packed = self.packed.as_mut_slice();
        for (l, (&(w_off, b_off), at)) in self.offsets.iter().zip(&self.packed_at).enumerate() {
            let (k, n) = (self.sizes[l], self.sizes[l + 1]);
            let (kp, np) = (pad::<R>(k), pad::<R>(n));
            let w = &self.params[w_off..w_off + k * n];
            for j in 0..k {
                packed[at.w + j * np..at.w + j * np + n].copy_from_slice(&w[j * n..(j + 1) * n]);
            }
            // Wᵀ in 16 × 16 tiles, so both the strided reads and the writes of a tile stay in
            // L1 (element by element, this copy took 13 % of a flow-matching training step).
            const TILE: usize = 16;
            let wt = &mut packed[at.wt..at.wt + n * kp];
            for jb in (0..k).step_by(TILE) {
                for ob in (0..n).step_by(TILE) {
                    for o in ob..(ob + TILE).min(n) {
                        let dst = &mut wt[o * kp + jb..o * kp + (jb + TILE).min(k)];
                        for (jj, d) in dst.iter_mut().enumerate() {
                            *d = w[(jb + jj) * n + o];
                        }
                    }
                }
            }
            packed[at.b..at.b + n].copy_from_slice(&self.params[b_off..b_off + n]);
        }
    }

    /// Replaces the flat parameters (same layout and length), e.g. after an
    /// optimiser step, without reallocating.
    ///
    /// # Panics
    /// If `params.len() != self.num_params()`.
    pub fn set_params(&mut self, params: &[R]) {
        assert!(params.len() == self.params.len(), "FusedMlp::set_params: sizes {:?} need {} parameters, got {}", self.sizes, self.params.len(), params.len());
        self.params.copy_from_slice(params);
        self.refresh_packed();
    }

    /// Changes the flat parameters in place with `f` (an optimiser step), then
    /// refreshes the kernels' copies: [`Self::set_params`] without the copy in.
    pub fn update_params(&mut self, f: impl FnOnce(&mut [R])) {
        f(&mut self.params);
        self.refresh_packed();
    }

    /// The flat parameter vector.
    pub fn params(&self) -> &[R] {
        &self.params
    }

    /// Layer sizes `[s_0, ..., s_L]` (`s_0` includes the time column).
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Whether the last input column is the time.
    pub fn time_input(&self) -> bool {
        self.time_input
    }

    /// Length of the flat parameter vector.
    pub fn num_params(&self) -> usize {
        self.params.len()
    }

    /// State dimension `dim` (input width without the time column).
    pub fn dim_in(&self) -> usize {
        self.sizes[0] - self.time_input as usize
    }

    /// Output width `s_L`.
    pub fn dim_out(&self) -> usize {
        *self.sizes.last().unwrap()
    }

    fn num_layers(&self) -> usize {
        self.sizes.len() - 1
    }

    fn check_io(&self, t: &TimeArg<R>, x: &[R], batch: usize, out: &[R]) {
        assert!(
            x.len() == batch * self.dim_in(),
            "FusedMlp (sizes {:?}): x has {} entries, expected batch {} x dim {}",
            self.sizes,
            x.len(),
            batch,
            self.dim_in()
        );
        assert!(
            out.len() == batch * self.dim_out(),
            "FusedMlp (sizes {:?}): out has {} entries, expected batch {} x {}",
            self.sizes,
            out.len(),
            batch,
            self.dim_out()
        );
        if self.time_input {
            match t {
                TimeArg::None => panic!("FusedMlp (sizes {:?}) takes a time input but got TimeArg::None", self.sizes),
                TimeArg::PerSample(ts) => assert!(ts.len() == batch, "FusedMlp (sizes {:?}): {} per-sample times for batch {}", self.sizes, ts.len(), batch),
                TimeArg::Shared(_) => {}
            }
        }
    }

    /// `out = f(t, x)` for `x: [batch, dim_in]`, `out: [batch, dim_out]`
    /// (overwritten).
    ///
    /// `t` is ignored when the network has no time input, so solvers may
    /// always pass the current time. Works in buffers kept inside `self`
    /// (allocation-free after the first call at a given batch size).
    ///
    /// # Panics
    /// On a length mismatch, or if the network takes a time and `t` is
    /// `TimeArg::None` or has `len != batch`.
    pub fn forward(&self, t: TimeArg<R>, x: &[R], batch: usize, out: &mut [R]) {
        match self.scratch.try_lock() {
            Ok(mut cache) => self.forward_cached(t, x, batch, out, &mut cache),
            Err(std::sync::TryLockError::Poisoned(p)) => {
                // A panic (e.g. a shape assertion) left it poisoned; its
                // buffers are overwritten before use, so they are still fine.
                self.forward_cached(t, x, batch, out, &mut p.into_inner())
            }
            Err(std::sync::TryLockError::WouldBlock) => self.forward_cached(t, x, batch, out, &mut MlpCache::new()),
        }
    }

    /// Same as [`Self::forward`], and keeps in `cache` what [`Self::vjp`]
    /// needs (the input with its time column, post-activation hidden values).
    /// Allocation-free once `cache` has served this network at this batch size.
    pub fn forward_cached(&self, t: TimeArg<R>, x: &[R], batch: usize, out: &mut [R], cache: &mut MlpCache<R>) {
        self.forward_with(Isa::best::<R>(), t, x, batch, out, cache);
    }

    /// [`Self::forward_cached`] with the kernels of `isa` (which the CPU must
    /// support; [`Isa::best`] checks).
    fn forward_with(&self, isa: Isa, t: TimeArg<R>, x: &[R], batch: usize, out: &mut [R], cache: &mut MlpCache<R>) {
        self.check_io(&t, x, batch, out);
        self.load_input(t, x, batch, cache);
        // SAFETY: `isa` is supported by this CPU (caller); `load_input` sized
        // every buffer that the kernels address.
        unsafe {
            match isa {
                Isa::Portable => self.forward_impl::<Lanes<R>>(cache, out),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => self.forward_avx2(cache, out),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => self.forward_avx512(cache, out),
            }
        }
    }

    /// Records the call in `cache`, sizes its activation buffers and copies
    /// `[x, t]` into `acts[0]` (`[batch, pad(s_0)]`, zero padding).
    fn load_input(&self, t: TimeArg<R>, x: &[R], batch: usize, cache: &mut MlpCache<R>) {
        let nl = self.num_layers();
        let dim = self.dim_in();
        cache.sizes.clone_from(&self.sizes);
        cache.time_input = self.time_input;
        cache.batch = batch;
        cache.acts.resize_with(nl, AVec::new);
        for (l, h) in cache.acts.iter_mut().enumerate() {
            h.resize(batch * pad::<R>(self.sizes[l]));
        }
        let kp = pad::<R>(self.sizes[0]);
        let x0 = cache.acts[0].as_mut_slice();
        for (i, row) in x0.chunks_exact_mut(kp).enumerate() {
            row[..dim].copy_from_slice(&x[i * dim..(i + 1) * dim]);
            let mut rest = dim;
            if self.time_input {
                row[dim] = match t {
                    TimeArg::Shared(v) => v,
                    TimeArg::PerSample(ts) => ts[i],
                    TimeArg::None => unreachable!("checked by check_io"),
                };
                rest += 1;
            }
            row[rest..].fill(R::ZERO);
        }
    }

    /// [`Self::forward_impl`] compiled for AVX-512 (`f32`/`f64` only).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn forward_avx512(&self, cache: &mut MlpCache<R>, out: &mut [R]) {
        // SAFETY: the caller checked the CPU; this copy enables the features.
        unsafe { self.forward_impl::<x86::Zmm<R>>(cache, out) }
    }

    /// [`Self::forward_impl`] compiled for AVX2 + FMA (`f32`/`f64` only).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn forward_avx2(&self, cache: &mut MlpCache<R>, out: &mut [R]) {
        // SAFETY: as above.
        unsafe { self.forward_impl::<x86::Ymm<R>>(cache, out) }
    }

    /// All layers, from `cache.acts[0]` (filled by [`Self::load_input`]) to
    /// `out: [batch, dim_out]`, storing `h_1 .. h_{L-1}` in `cache.acts`.
    ///
    /// # Safety
    /// The CPU must support `V`'s instruction set; `cache` prepared by
    /// [`Self::load_input`] for this network.
    #[inline(always)]
    unsafe fn forward_impl<V: Simd<R>>(&self, cache: &mut MlpCache<R>, out: &mut [R]) {
        let batch = cache.batch;
        let nl = self.num_layers();
        let lanes = V::LANES;
        let packed = self.packed.as_slice();
        let MlpCache { acts, tmp, .. } = cache;
        for l in 0..nl {
            let (k, n) = (self.sizes[l], self.sizes[l + 1]);
            let (kp, np) = (pad::<R>(k), pad::<R>(n));
            let at = self.packed_at[l];
            let w = &packed[at.w..at.w + k * np];
            let wt = &packed[at.wt..at.wt + n * kp];
            let b = &packed[at.b..at.b + np];
            let (done, rest) = acts.split_at_mut(l + 1);
            let x = done[l].as_slice();
            assert_eq!(x.len(), batch * kp);
            let last = l + 1 == nl;
            if n <= THIN {
                // z[i, o] = x[i, :] · Wᵀ[o, :] + b[o], written straight into
                // `out` for the output layer.
                let (dst, ld) = if last { (&mut *out, n) } else { (rest[0].as_mut_slice(), np) };
                assert!(dst.len() >= batch * ld);
                let dp = dst.as_mut_ptr();
                // SAFETY: rows of `x` and `wt` hold `kp` elements; the epilogue
                // writes `(i, o)` with `i < batch`, `o < n <= ld`.
                unsafe {
                    dot::<R, V>(batch, kp / lanes, x.as_ptr(), kp, n, wt.as_ptr(), kp, &mut |i, o, s| {
                        *dp.add(i * ld + o) = s + b[o];
                    });
                }
                if !last {
                    for row in dst.chunks_exact_mut(np) {
                        row[n..].fill(R::ZERO);
                    }
                    R::tanh_slice(dst);
                }
            } else {
                let dst: &mut [R] = if last {
                    tmp.resize(batch * np);
                    tmp.as_mut_slice()
                } else {
                    rest[0].as_mut_slice()
                };
                assert_eq!(dst.len(), batch * np);
                let dp = dst.as_mut_ptr();
                let bp = b.as_ptr();
                let op = Outer { rows: batch, depth: k, nvec: np / lanes, a: x.as_ptr(), a_rs: kp, a_cs: 1, m: w.as_ptr(), ldm: np };
                // SAFETY: `a(i, p) = x[i·kp + p]` with `p < k`, `M` rows of
                // `w` hold `np` elements; the epilogue writes row `i` of `dst`
                // (`np` elements), and `tanh` sees rows already complete.
                unsafe {
                    V::outer(
                        &op,
                        &mut |i, v, acc| {
                            V::store(dp.add(i * np + v * lanes), V::add(acc, V::load(bp.add(v * lanes))));
                        },
                        &mut |i0, i1| {
                            if !last {
                                // Activate the rows of this tile while they are in L1.
                                R::tanh_slice(std::slice::from_raw_parts_mut(dp.add(i0 * np), (i1 - i0) * np));
                            }
                        },
                    );
                }
                if last {
                    for (o_row, t_row) in out.chunks_exact_mut(n).zip(dst.chunks_exact(np)) {
                        o_row.copy_from_slice(&t_row[..n]);
                    }
                }
            }
        }
    }

    /// Vector–Jacobian product at the point saved by the last
    /// [`Self::forward_cached`] into `cache`, for the output cotangent
    /// `a: [batch, dim_out]`:
    ///
    /// * `x_bar: [batch, dim_in]` is overwritten with `a_i^T ∂f(t_i, x_i)/∂x_i`
    ///   for every sample `i`;
    /// * `param_bar: [num_params]` (flat layout) is ACCUMULATED (`+=`) with
    ///   `Σ_i a_i^T ∂f(t_i, x_i)/∂θ`;
    /// * `t_bar: [batch]`, if given, is overwritten with `a_i^T ∂f(t_i, x_i)/∂t`
    ///   per sample, also for `TimeArg::Shared` (sum it to get the cotangent
    ///   of the shared time); zeros if the network has no time input.
    ///
    /// `cache` is `&mut` only for its scratch buffers: the saved forward
    /// state is left intact, so `vjp` may be called again with another `a`.
    ///
    /// # Panics
    /// If `cache` was not filled by a network with the same sizes and time
    /// flag, or on a length mismatch.
    pub fn vjp(&self, cache: &mut MlpCache<R>, a: &[R], x_bar: &mut [R], param_bar: &mut [R], t_bar: Option<&mut [R]>) {
        self.vjp_with(Isa::best::<R>(), cache, a, x_bar, param_bar, t_bar);
    }

    /// [`Self::vjp`] with the kernels of `isa` (which the CPU must support).
    fn vjp_with(&self, isa: Isa, cache: &mut MlpCache<R>, a: &[R], x_bar: &mut [R], param_bar: &mut [R], t_bar: Option<&mut [R]>) {
        assert!(
            cache.sizes == self.sizes && cache.time_input == self.time_input,
            "FusedMlp::vjp (sizes {:?}, time_input {}): cache was filled by sizes {:?}, time_input {}",
            self.sizes,
            self.time_input,
            cache.sizes,
            cache.time_input
        );
        let batch = cache.batch;
        let (dim, n_out) = (self.dim_in(), self.dim_out());
        assert!(a.len() == batch * n_out, "FusedMlp::vjp (sizes {:?}): a has {} entries, expected batch {} x {}", self.sizes, a.len(), batch, n_out);
        assert!(x_bar.len() == batch * dim, "FusedMlp::vjp (sizes {:?}): x_bar has {} entries, expected batch {} x {}", self.sizes, x_bar.len(), batch, dim);
        assert!(
            param_bar.len() == self.num_params(),
            "FusedMlp::vjp (sizes {:?}): param_bar has {} entries, expected {}",
            self.sizes,
            param_bar.len(),
            self.num_params()
        );
        if let Some(tb) = &t_bar {
            assert!(tb.len() == batch, "FusedMlp::vjp (sizes {:?}): t_bar has {} entries, expected batch {}", self.sizes, tb.len(), batch);
        }
        for (l, h) in cache.acts.iter().enumerate() {
            assert_eq!(h.as_slice().len(), batch * pad::<R>(self.sizes[l]), "FusedMlp::vjp: corrupt cache");
        }
        // SAFETY: `isa` is supported (caller); shapes checked above.
        unsafe {
            match isa {
                Isa::Portable => self.vjp_impl::<Lanes<R>>(cache, a, x_bar, param_bar, t_bar),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => self.vjp_avx2(cache, a, x_bar, param_bar, t_bar),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => self.vjp_avx512(cache, a, x_bar, param_bar, t_bar),
            }
        }
    }

    /// [`Self::vjp_impl`] compiled for AVX-512 (`f32`/`f64` only).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn vjp_avx512(&self, cache: &mut MlpCache<R>, a: &[R], x_bar: &mut [R], param_bar: &mut [R], t_bar: Option<&mut [R]>) {
        // SAFETY: the caller checked the CPU; this copy enables the features.
        unsafe { self.vjp_impl::<x86::Zmm<R>>(cache, a, x_bar, param_bar, t_bar) }
    }

    /// [`Self::vjp_impl`] compiled for AVX2 + FMA (`f32`/`f64` only).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn vjp_avx2(&self, cache: &mut MlpCache<R>, a: &[R], x_bar: &mut [R], param_bar: &mut [R], t_bar: Option<&mut [R]>) {
        // SAFETY: as above.
        unsafe { self.vjp_impl::<x86::Ymm<R>>(cache, a, x_bar, param_bar, t_bar) }
    }

    /// Body of [`Self::vjp`] after the shape checks. `g` holds the cotangent
    /// of the current layer's pre-activation output, `[batch, pad(n)]`.
    ///
    /// # Safety
    /// The CPU must support `V`'s instruction set; shapes checked by
    /// [`Self::vjp_with`].
    #[inline(always)]
    unsafe fn vjp_impl<V: Simd<R>>(&self, cache: &mut MlpCache<R>, a: &[R], x_bar: &mut [R], param_bar: &mut [R], mut t_bar: Option<&mut [R]>) {
        let batch = cache.batch;
        let nl = self.num_layers();
        let n_out = self.dim_out();
        let lanes = V::LANES;
        let packed = self.packed.as_slice();
        let MlpCache { acts, g, d, tmp, dw, .. } = cache;
        let widest = self.sizes.iter().map(|&s| pad::<R>(s)).max().unwrap();
        g.resize(batch * widest);
        d.resize(batch * widest);
        let npo = pad::<R>(n_out);
        for (g_row, a_row) in g.as_mut_slice().chunks_exact_mut(npo).zip(a.chunks_exact(n_out)) {
            g_row[..n_out].copy_from_slice(a_row);
            g_row[n_out..].fill(R::ZERO);
        }

        for l in (0..nl).rev() {
            let (k, n) = (self.sizes[l], self.sizes[l + 1]);
            let (kp, np) = (pad::<R>(k), pad::<R>(n));
            let at = self.packed_at[l];
            let w = &packed[at.w..at.w + k * np];
            let wt = &packed[at.wt..at.wt + n * kp];
            let (w_off, b_off) = self.offsets[l];
            let x = acts[l].as_slice();
            let gl = &g.as_slice()[..batch * np];

            // b_l += Σ_i g[i, :]
            dw.resize(np);
            // SAFETY: `gl` has `batch` rows of `np`, `dw` holds `np`.
            unsafe { col_sums::<R, V>(batch, np / lanes, gl.as_ptr(), np, dw.as_mut_slice().as_mut_ptr()) };
            for (pb, s) in param_bar[b_off..b_off + n].iter_mut().zip(dw.as_slice()) {
                *pb += *s;
            }
            // SAFETY: as above (shapes of `x` and `gl`).
            unsafe { self.weight_cotangent::<V>(l, batch, x, gl, &mut param_bar[w_off..w_off + k * n], dw) };

            let timed = l == 0 && self.time_input;
            let dim = k - timed as usize;
            if l > 0 {
                // Input cotangent through the tanh that produced `x`:
                // d[i, j] = (Σ_o g[i, o]·W[j, o]) · (1 − x[i, j]²).
                let dl = &mut d.as_mut_slice()[..batch * kp];
                let dp = dl.as_mut_ptr();
                let xp = x.as_ptr();
                if k <= THIN {
                    // SAFETY: rows of `gl` and `w` hold `np` elements; writes
                    // `(i, j)` with `j < k <= kp`.
                    unsafe {
                        dot::<R, V>(batch, np / lanes, gl.as_ptr(), np, k, w.as_ptr(), np, &mut |i, j, s| {
                            let h = *xp.add(i * kp + j);
                            *dp.add(i * kp + j) = s * (R::ONE - h * h);
                        });
                    }
                    for row in dl.chunks_exact_mut(kp) {
                        row[k..].fill(R::ZERO);
                    }
                } else {
                    let op = Outer { rows: batch, depth: n, nvec: kp / lanes, a: gl.as_ptr(), a_rs: np, a_cs: 1, m: wt.as_ptr(), ldm: kp };
                    // SAFETY: `a(i, o) = g[i·np + o]`, `o < n`; rows of `wt`
                    // and `x` hold `kp`; writes row `i` of `dl`.
                    unsafe {
                        let one = V::splat(R::ONE);
                        V::outer(
                            &op,
                            &mut |i, v, acc| {
                                let h = V::load(xp.add(i * kp + v * lanes));
                                V::store(dp.add(i * kp + v * lanes), V::mul(acc, V::neg_mul_add(h, h, one)));
                            },
                            &mut |_, _| {},
                        );
                    }
                }
                std::mem::swap(g, d);
            } else {
                // Input cotangent of [x, t]: columns 0..dim go to x_bar, the
                // time column to t_bar.
                if dim > 0 || (timed && t_bar.is_some()) {
                    if k <= THIN {
                        // SAFETY: as in the thin branch above.
                        unsafe {
                            dot::<R, V>(batch, np / lanes, gl.as_ptr(), np, k, w.as_ptr(), np, &mut |i, j, s| {
                                if j < dim {
                                    x_bar[i * dim + j] = s;
                                } else if let Some(tb) = t_bar.as_deref_mut() {
                                    tb[i] = s;
                                }
                            });
                        }
                    } else {
                        tmp.resize(batch * kp);
                        let tp = tmp.as_mut_slice().as_mut_ptr();
                        let op = Outer { rows: batch, depth: n, nvec: kp / lanes, a: gl.as_ptr(), a_rs: np, a_cs: 1, m: wt.as_ptr(), ldm: kp };
                        // SAFETY: as in the wide branch above; writes row `i` of `tmp`.
                        unsafe {
                            V::outer(&op, &mut |i, v, acc| V::store(tp.add(i * kp + v * lanes), acc), &mut |_, _| {});
                        }
                        for (i, row) in tmp.as_slice().chunks_exact(kp).enumerate() {
                            x_bar[i * dim..(i + 1) * dim].copy_from_slice(&row[..dim]);
                            if timed {
                                if let Some(tb) = t_bar.as_deref_mut() {
                                    tb[i] = row[dim];
                                }
                            }
                        }
                    }
                }
                if !timed {
                    if let Some(tb) = t_bar.as_deref_mut() {
                        tb.fill(R::ZERO);
                    }
                }
            }
        }
    }

    /// `wbar += x_lᵀ · g` for layer `l` (`wbar: [s_l, s_{l+1}]` row-major),
    /// from the layer input `x: [batch, pad(s_l)]` and the output cotangent
    /// `g: [batch, pad(s_{l+1})]`, via the aligned scratch `dw`.
    ///
    /// The batch is the summed index, so [`outer`] takes one operand through
    /// its broadcasts: the product is formed as `dW[j, :] = Σ_i x[i, j]·g[i, :]`
    /// (vectors along the outputs), or transposed as `dWᵀ[o, :] = Σ_i g[i, o]·x[i, :]`
    /// when the output width is thin. It runs over blocks of [`BATCH_BLOCK`]
    /// samples, adding each block's tiles into `dw`.
    ///
    /// # Safety
    /// The CPU must support `V`'s instruction set; `x` and `g` have `batch`
    /// padded rows.
    #[inline(always)]
    unsafe fn weight_cotangent<V: Simd<R>>(&self, l: usize, batch: usize, x: &[R], g: &[R], wbar: &mut [R], dw: &mut AVec<R>) {
        let (k, n) = (self.sizes[l], self.sizes[l + 1]);
        let (kp, np) = (pad::<R>(k), pad::<R>(n));
        let lanes = V::LANES;
        assert!(x.len() >= batch * kp && g.len() >= batch * np);
        // (rows, padded row length) of the result held in `dw`.
        let wide = n > THIN;
        let (rows, ld) = if wide { (k, np) } else { (n, kp) };
        dw.resize(rows * ld);
        dw.as_mut_slice().fill(R::ZERO);
        let dwp = dw.as_mut_slice().as_mut_ptr();
        for i0 in (0..batch).step_by(BATCH_BLOCK) {
            let len = BATCH_BLOCK.min(batch - i0);
            // SAFETY: row `i0 + p < batch` of `x` / `g`, columns below `k` / `n`.
            let (xs, gs) = unsafe { (x.as_ptr().add(i0 * kp), g.as_ptr().add(i0 * np)) };
            let op = if wide {
                Outer { rows, depth: len, nvec: np / lanes, a: xs, a_rs: 1, a_cs: kp, m: gs, ldm: np }
            } else {
                Outer { rows, depth: len, nvec: kp / lanes, a: gs, a_rs: 1, a_cs: np, m: xs, ldm: kp }
            };
            // SAFETY: operands as above; the epilogue updates row `r < rows`
            // of `dw` (`ld` elements).
            unsafe {
                V::outer(
                    &op,
                    &mut |r, v, acc| {
                        let p = dwp.add(r * ld + v * lanes);
                        V::store(p, V::add(V::load(p), acc));
                    },
                    &mut |_, _| {},
                );
            }
        }
        let dws = dw.as_slice();
        for (j, wrow) in wbar.chunks_exact_mut(n).enumerate() {
            if wide {
                for (wv, dv) in wrow.iter_mut().zip(&dws[j * np..]) {
                    *wv += *dv;
                }
            } else {
                for (o, wv) in wrow.iter_mut().enumerate() {
                    *wv += dws[o * kp + j];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: tiny deterministic generator so tests need no `rand`.
    struct Rng(u64);
    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in [-scale, scale).
        fn sym(&mut self, scale: f64) -> f64 {
            let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            (2.0 * u - 1.0) * scale
        }
        fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
            (0..n).map(|_| self.sym(scale)).collect()
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum TimeKind {
        None,
        Shared,
        PerSample,
    }

    /// Shapes chosen to hit every kernel branch (THIN = 4): thin layers
    /// (dot kernel) as hidden, output and input layers, wide layers with and
    /// without the time column, a single linear layer and a time-only input
    /// (dim 0); the last two have widths beyond one register tile (64 `f32`
    /// lanes), with remainder vectors, so full and partial tiles both run.
    fn configs() -> Vec<(Vec<usize>, TimeKind)> {
        vec![
            (vec![2, 16, 16, 2], TimeKind::None),
            (vec![4, 7, 9, 5], TimeKind::Shared),
            (vec![7, 3, 8, 1], TimeKind::PerSample),
            (vec![10, 12, 6], TimeKind::PerSample),
            (vec![10, 12, 6], TimeKind::Shared),
            (vec![5, 11], TimeKind::None),
            (vec![6, 5], TimeKind::Shared),
            (vec![6, 5], TimeKind::PerSample),
            (vec![1, 5, 1], TimeKind::PerSample),
            (vec![3, 70, 37, 6], TimeKind::PerSample),
            (vec![2, 64, 64, 2], TimeKind::None),
        ]
    }

    /// Weights scaled by 1.5/sqrt(fan_in) keep the tanh units out of saturation
    /// so gradients are O(1).
    fn random_params(rng: &mut Rng, sizes: &[usize]) -> Vec<f64> {
        let mut p = Vec::new();
        for w in sizes.windows(2) {
            p.extend(rng.vec(w[0] * w[1], 1.5 / (w[0] as f64).sqrt()));
            p.extend(rng.vec(w[1], 0.5));
        }
        p
    }

    struct Case {
        mlp: FusedMlp<f64>,
        x: Vec<f64>,
        ts: Vec<f64>,
        kind: TimeKind,
        batch: usize,
    }

    impl Case {
        fn time(&self) -> TimeArg<'_, f64> {
            match self.kind {
                TimeKind::None => TimeArg::None,
                TimeKind::Shared => TimeArg::Shared(self.ts[0]),
                TimeKind::PerSample => TimeArg::PerSample(&self.ts),
            }
        }
    }

    fn cases(seed: u64) -> Vec<Case> {
        let mut rng = Rng(seed);
        configs()
            .into_iter()
            .enumerate()
            .map(|(c, (sizes, kind))| {
                // Batches above and below the register tiles (4 or 6 rows),
                // with remainders.
                let batch = [5, 3, 19, 11, 6, 4, 13, 9, 7, 23, 10][c % 11];
                let time_input = kind != TimeKind::None;
                let params = random_params(&mut rng, &sizes);
                let mlp = FusedMlp::new(sizes, time_input, params);
                let x = rng.vec(batch * mlp.dim_in(), 1.5);
                let ts = rng.vec(batch, 2.0);
                Case { mlp, x, ts, kind, batch }
            })
            .collect()
    }

    /// Textbook evaluation on the explicitly concatenated input `[x, t]`.
    fn naive_forward(case: &Case, x: &[f64], ts: &[f64]) -> Vec<f64> {
        let sizes = case.mlp.sizes();
        let p = case.mlp.params();
        let dim = case.mlp.dim_in();
        let mut out = Vec::new();
        for i in 0..case.batch {
            let mut h: Vec<f64> = x[i * dim..(i + 1) * dim].to_vec();
            match case.kind {
                TimeKind::None => {}
                TimeKind::Shared => h.push(ts[0]),
                TimeKind::PerSample => h.push(ts[i]),
            }
            let mut off = 0;
            for l in 0..sizes.len() - 1 {
                let (k, n) = (sizes[l], sizes[l + 1]);
                let mut z = vec![0.0; n];
                for o in 0..n {
                    let mut s = p[off + k * n + o];
                    for j in 0..k {
                        s += h[j] * p[off + j * n + o];
                    }
                    z[o] = if l + 2 < sizes.len() { s.tanh() } else { s };
                }
                off += k * n + n;
                h = z;
            }
            out.extend(h);
        }
        out
    }

    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    }

    fn rel_l2(approx: &[f64], exact: &[f64]) -> f64 {
        let num: f64 = approx.iter().zip(exact).map(|(a, e)| (a - e) * (a - e)).sum();
        let den: f64 = exact.iter().map(|e| e * e).sum();
        (num / den.max(1e-300)).sqrt()
    }

    #[test]
    fn forward_matches_naive() {
        for case in cases(1) {
            let n = case.batch * case.mlp.dim_out();
            let reference = naive_forward(&case, &case.x, &case.ts);
            let mut out = vec![f64::NAN; n];
            case.mlp.forward(case.time(), &case.x, case.batch, &mut out);
            let err = max_abs_diff(&out, &reference);
            assert!(err <= 1e-12, "sizes {:?} {:?}: forward err {err:e}", case.mlp.sizes(), case.kind);
            let mut cache = MlpCache::new();
            let mut out2 = vec![f64::NAN; n];
            case.mlp.forward_cached(case.time(), &case.x, case.batch, &mut out2, &mut cache);
            assert_eq!(out, out2, "forward_cached differs from forward");
        }
    }

    /// Central differences of L = Σ a ⊙ f(t, x) against the VJP.
    ///
    /// Step h = 1e-5 balances truncation (h²/6·|L'''| ≈ 1e-11) against
    /// cancellation (ε·|L|/h ≈ 1e-10) for these O(1) tanh networks, so the
    /// expected relative error is ~1e-9; the 1e-6 tolerance is the spec's
    /// acceptance bound and leaves three orders of magnitude of margin.
    #[test]
    fn vjp_matches_finite_differences() {
        const H: f64 = 1e-5;
        const TOL: f64 = 1e-6;
        let mut rng = Rng(7);
        for case in cases(2) {
            let mlp = &case.mlp;
            let (batch, dim, dout) = (case.batch, mlp.dim_in(), mlp.dim_out());
            let a = rng.vec(batch * dout, 1.0);
            let loss = |m: &FusedMlp<f64>, x: &[f64], ts: &[f64]| -> f64 {
                let mut out = vec![0.0; batch * dout];
                let t = match case.kind {
                    TimeKind::None => TimeArg::None,
                    TimeKind::Shared => TimeArg::Shared(ts[0]),
                    TimeKind::PerSample => TimeArg::PerSample(ts),
                };
                m.forward(t, x, batch, &mut out);
                out.iter().zip(&a).map(|(y, w)| y * w).sum()
            };

            let mut cache = MlpCache::new();
            let mut out = vec![0.0; batch * dout];
            mlp.forward_cached(case.time(), &case.x, batch, &mut out, &mut cache);
            let mut x_bar = vec![f64::NAN; batch * dim];
            let mut p_bar = vec![0.0; mlp.num_params()];
            let mut t_bar = vec![f64::NAN; batch];
            mlp.vjp(&mut cache, &a, &mut x_bar, &mut p_bar, Some(&mut t_bar));

            let ctx = format!("sizes {:?} {:?}", mlp.sizes(), case.kind);
            if dim > 0 {
                let fd: Vec<f64> = (0..x_bar.len())
                    .map(|i| {
                        let (mut xp, mut xm) = (case.x.clone(), case.x.clone());
                        xp[i] += H;
                        xm[i] -= H;
                        (loss(mlp, &xp, &case.ts) - loss(mlp, &xm, &case.ts)) / (2.0 * H)
                    })
                    .collect();
                let e = rel_l2(&x_bar, &fd);
                assert!(e <= TOL, "{ctx}: x_bar rel err {e:e}");
            }

            let fd: Vec<f64> = (0..p_bar.len())
                .map(|i| {
                    let (mut pp, mut pm) = (mlp.params().to_vec(), mlp.params().to_vec());
                    pp[i] += H;
                    pm[i] -= H;
                    let mp = FusedMlp::new(mlp.sizes().to_vec(), mlp.time_input(), pp);
                    let mm = FusedMlp::new(mlp.sizes().to_vec(), mlp.time_input(), pm);
                    (loss(&mp, &case.x, &case.ts) - loss(&mm, &case.x, &case.ts)) / (2.0 * H)
                })
                .collect();
            let e = rel_l2(&p_bar, &fd);
            assert!(e <= TOL, "{ctx}: param_bar rel err {e:e}");

            match case.kind {
                TimeKind::None => assert!(t_bar.iter().all(|&v| v == 0.0), "{ctx}: t_bar not zero"),
                TimeKind::Shared => {
                    // A shared time feeds every sample: its derivative is Σ_i t_bar_i.
                    let (mut tp, mut tm) = (case.ts.clone(), case.ts.clone());
                    tp[0] += H;
                    tm[0] -= H;
                    let fd = (loss(mlp, &case.x, &tp) - loss(mlp, &case.x, &tm)) / (2.0 * H);
                    let sum: f64 = t_bar.iter().sum();
                    let e = rel_l2(&[sum], &[fd]);
                    assert!(e <= TOL, "{ctx}: shared t_bar rel err {e:e}");
                }
                TimeKind::PerSample => {
                    let fd: Vec<f64> = (0..batch)
                        .map(|i| {
                            let (mut tp, mut tm) = (case.ts.clone(), case.ts.clone());
                            tp[i] += H;
                            tm[i] -= H;
                            (loss(mlp, &case.x, &tp) - loss(mlp, &case.x, &tm)) / (2.0 * H)
                        })
                        .collect();
                    let e = rel_l2(&t_bar, &fd);
                    assert!(e <= TOL, "{ctx}: t_bar rel err {e:e}");
                }
            }
        }
    }

    #[test]
    fn vjp_accumulates_param_cotangent() {
        let mut rng = Rng(3);
        for case in cases(4) {
            let mlp = &case.mlp;
            let (batch, dim) = (case.batch, mlp.dim_in());
            let a = rng.vec(batch * mlp.dim_out(), 1.0);
            let mut cache = MlpCache::new();
            let mut out = vec![0.0; batch * mlp.dim_out()];
            mlp.forward_cached(case.time(), &case.x, batch, &mut out, &mut cache);

            let mut x1 = vec![0.0; batch * dim];
            let mut t1 = vec![0.0; batch];
            let mut once = vec![0.0; mlp.num_params()];
            mlp.vjp(&mut cache, &a, &mut x1, &mut once, Some(&mut t1));

            // Stale values in x_bar / t_bar must be overwritten, param_bar accumulated.
            let mut x2 = vec![123.0; batch * dim];
            let mut t2 = vec![123.0; batch];
            let mut twice = vec![0.0; mlp.num_params()];
            mlp.vjp(&mut cache, &a, &mut x2, &mut twice, None);
            mlp.vjp(&mut cache, &a, &mut x2, &mut twice, Some(&mut t2));

            let doubled: Vec<f64> = once.iter().map(|v| 2.0 * v).collect();
            let scale = doubled.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            assert!(max_abs_diff(&twice, &doubled) <= 1e-13 * scale, "sizes {:?}", mlp.sizes());
            assert_eq!(x1, x2);
            assert_eq!(t1, t2);
        }
    }

    #[test]
    fn f32_matches_f64() {
        let mut rng = Rng(11);
        for case in cases(5) {
            let m64 = &case.mlp;
            let m32 = FusedMlp::new(m64.sizes().to_vec(), m64.time_input(), m64.params().iter().map(|&v| v as f32).collect());
            let batch = case.batch;
            let to32 = |v: &[f64]| v.iter().map(|&u| u as f32).collect::<Vec<f32>>();
            let up = |v: &[f32]| v.iter().map(|&u| u as f64).collect::<Vec<f64>>();
            // Evaluate f64 on the f32-rounded inputs so only the arithmetic differs.
            let x32 = to32(&case.x);
            let ts32 = to32(&case.ts);
            let x64 = up(&x32);
            let ts64 = up(&ts32);
            let (t32, t64) = match case.kind {
                TimeKind::None => (TimeArg::None, TimeArg::None),
                TimeKind::Shared => (TimeArg::Shared(ts32[0]), TimeArg::Shared(ts64[0])),
                TimeKind::PerSample => (TimeArg::PerSample(&ts32[..]), TimeArg::PerSample(&ts64[..])),
            };
            let params64 = up(&to32(m64.params()));
            let m64 = FusedMlp::new(m64.sizes().to_vec(), m64.time_input(), params64);

            let n = batch * m64.dim_out();
            let (mut y32, mut y64) = (vec![0f32; n], vec![0f64; n]);
            let (mut c32, mut c64) = (MlpCache::new(), MlpCache::new());
            m32.forward_cached(t32, &x32, batch, &mut y32, &mut c32);
            m64.forward_cached(t64, &x64, batch, &mut y64, &mut c64);
            let scale = y64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = max_abs_diff(&up(&y32), &y64) / scale;
            assert!(err <= 1e-5, "sizes {:?}: f32 forward rel err {err:e}", m64.sizes());

            // The f32 VJP should agree to f32 accuracy as well (looser: more roundings).
            let a64 = up(&to32(&rng.vec(n, 1.0)));
            let a32 = to32(&a64);
            let dim = m64.dim_in();
            let (mut xb32, mut xb64) = (vec![0f32; batch * dim], vec![0f64; batch * dim]);
            let (mut pb32, mut pb64) = (vec![0f32; m64.num_params()], vec![0f64; m64.num_params()]);
            m32.vjp(&mut c32, &a32, &mut xb32, &mut pb32, None);
            m64.vjp(&mut c64, &a64, &mut xb64, &mut pb64, None);
            if dim > 0 {
                assert!(rel_l2(&up(&xb32), &xb64) <= 1e-5, "sizes {:?}: f32 x_bar", m64.sizes());
            }
            assert!(rel_l2(&up(&pb32), &pb64) <= 1e-5, "sizes {:?}: f32 param_bar", m64.sizes());
        }
    }

    #[test]
    fn tanh_f64_accuracy() {
        // Against libm's tanh on a 2⁻¹² grid over [−24, 24], at tiny and huge arguments, and
        // at the branch point 2|x| = 1.1: within 4 ulp (relative 4·2⁻⁵², or absolute near 0).
        let mut xs: Vec<f64> = (-(24 << 12)..=(24 << 12)).map(|i| i as f64 / 4096.0).collect();
        xs.extend([1e-300, -1e-300, 5e-324, 1e-8, 0.55, 0.55 - 1e-16, 0.55 + 1e-16, 22.0, 1e5, f64::MAX, -f64::MAX, f64::INFINITY, f64::NEG_INFINITY]);
        let mut ys = xs.clone();
        tanh_f64_slice(&mut ys);
        for (x, y) in xs.iter().zip(&ys) {
            let e = x.tanh();
            assert!((y - e).abs() <= 4.0 * f64::EPSILON * e.abs().max(f64::MIN_POSITIVE), "tanh({x}) = {y}, libm {e}");
        }
        let mut nan = [f64::NAN];
        tanh_f64_slice(&mut nan);
        assert!(nan[0].is_nan());
    }

    #[test]
    fn tanh_f32_accuracy() {
        // Every multiple of 2^-13 in [-20, 20] (exact in f32), compared with
        // f64 tanh of the same f32 input; plus 64 floats either side of the
        // reduction step at ln2/4, the formula switch at 0.55 and the clamp at 9.
        let mut xs: Vec<f32> = (-(20 << 13)..=(20 << 13)).map(|i| i as f32 / 8192.0).collect();
        for c in [std::f32::consts::LN_2 / 4.0, 0.55, 9.0] {
            let mut v = c;
            for _ in 0..64 {
                xs.extend([v, -v]);
                v = f32::from_bits(v.to_bits() - 1);
            }
            let mut v = c;
            for _ in 0..64 {
                xs.extend([v, -v]);
                v = f32::from_bits(v.to_bits() + 1);
            }
        }
        xs.extend([1e-30, 1e-7, 3e-4, 1e3, 1e30, f32::MAX, f32::INFINITY, f32::MIN_POSITIVE]);
        let n = xs.len();
        xs.extend_from_slice(&xs.clone().iter().map(|v| -v).collect::<Vec<_>>());

        let mut ys = xs.clone();
        tanh_f32_slice(&mut ys);
        let mut max_err = 0.0f64;
        for (&x, &y) in xs.iter().zip(&ys) {
            let err = (y as f64 - (x as f64).tanh()).abs();
            max_err = max_err.max(err);
            assert!(y.abs() <= 1.0, "tanh({x}) = {y} outside [-1, 1]");
        }
        assert!(max_err <= 3e-7, "max abs err {max_err:e}");
        // Small arguments are accurate in relative terms too (1 − e is formed
        // without cancellation).
        for &x in &xs[n - 8..n - 5] {
            let mut y = [x];
            tanh_f32_slice(&mut y);
            assert!(((y[0] as f64) / (x as f64).tanh() - 1.0).abs() < 1e-6, "tanh({x})");
        }
        let mut nan = [f32::NAN];
        tanh_f32_slice(&mut nan);
        assert!(nan[0].is_nan());

        // The runtime-dispatched (SIMD) copy, and the AVX2 one where it is not
        // the dispatched one, agree with the portable code.
        let mut portable = xs.clone();
        tanh_f32_slice_generic::<16>(&mut portable);
        let mut copies = vec![ys.clone()];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            let mut v = xs.clone();
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            unsafe { tanh_f32_slice_avx2(&mut v) };
            copies.push(v);
        }
        for copy in &copies {
            for (&p, &y) in portable.iter().zip(copy) {
                assert!((p - y).abs() <= 1e-6 * p.abs().max(1e-30) || (p.is_nan() && y.is_nan()));
            }
        }
    }

    #[test]
    fn set_params_refreshes_everything() {
        // The kernels read padded copies of W, Wᵀ and b: a stale W or Wᵀ could
        // pass the forward checks but give wrong cotangents, or the reverse.
        let mut rng = Rng(17);
        let sizes = vec![4, 9, 8, 3];
        let mut mlp = FusedMlp::new(sizes.clone(), true, random_params(&mut rng, &sizes));
        let fresh_params = random_params(&mut rng, &sizes);
        mlp.set_params(&fresh_params);
        let fresh = FusedMlp::new(sizes, true, fresh_params);
        let batch = 10;
        let x = rng.vec(batch * 3, 1.0);
        let a = rng.vec(batch * 3, 1.0);
        let ts = rng.vec(batch, 1.0);
        let run = |m: &FusedMlp<f64>| {
            let mut cache = MlpCache::new();
            let mut out = vec![0.0; batch * 3];
            m.forward_cached(TimeArg::PerSample(&ts), &x, batch, &mut out, &mut cache);
            let mut xb = vec![0.0; batch * 3];
            let mut pb = vec![0.0; m.num_params()];
            m.vjp(&mut cache, &a, &mut xb, &mut pb, None);
            (out, xb, pb)
        };
        assert_eq!(run(&mlp), run(&fresh));
    }

    /// Every kernel set this CPU supports (besides the portable one).
    fn simd_isas() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut isas = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                isas.push(Isa::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                isas.push(Isa::Avx512);
            }
        }
        isas
    }

    #[test]
    fn portable_matches_simd() {
        // The SIMD copies differ from the portable code only by rounding
        // (FMA, summation order); this also runs the portable code on
        // machines that have SIMD, in f32 and f64.
        fn check<R: Real>(case: &Case, a: &[f64], tol: f64) {
            let conv = |v: &[f64]| v.iter().map(|&u| R::from_f64(u)).collect::<Vec<R>>();
            let up = |v: &[R]| v.iter().map(|u| u.to_f64()).collect::<Vec<f64>>();
            let mlp = &case.mlp;
            let m = FusedMlp::new(mlp.sizes().to_vec(), mlp.time_input(), conv(mlp.params()));
            let (x, ts, a) = (conv(&case.x), conv(&case.ts), conv(a));
            let t = match case.kind {
                TimeKind::None => TimeArg::None,
                TimeKind::Shared => TimeArg::Shared(ts[0]),
                TimeKind::PerSample => TimeArg::PerSample(&ts[..]),
            };
            let run = |isa: Isa| {
                let mut cache = MlpCache::new();
                let mut out = vec![R::ZERO; case.batch * mlp.dim_out()];
                m.forward_with(isa, t, &x, case.batch, &mut out, &mut cache);
                let mut xb = vec![R::ZERO; x.len()];
                let mut pb = vec![R::ZERO; m.num_params()];
                let mut tb = vec![R::ZERO; case.batch];
                m.vjp_with(isa, &mut cache, &a, &mut xb, &mut pb, Some(&mut tb));
                [up(&out), up(&xb), up(&pb), up(&tb)]
            };
            let reference = run(Isa::Portable);
            for isa in simd_isas() {
                for (got, want) in run(isa).iter().zip(&reference) {
                    if !want.is_empty() && want.iter().any(|&v| v != 0.0) {
                        let e = rel_l2(got, want);
                        assert!(e <= tol, "sizes {:?} {isa:?}: rel err {e:e}", mlp.sizes());
                    } else {
                        assert!(got.iter().all(|&v| v == 0.0));
                    }
                }
            }
        }
        let mut rng = Rng(23);
        for case in cases(6) {
            let a = rng.vec(case.batch * case.mlp.dim_out(), 1.0);
            check::<f32>(&case, &a, 1e-6);
            check::<f64>(&case, &a, 1e-13);
        }
    }

    #[test]
    fn empty_batch() {
        let mut rng = Rng(19);
        let sizes = vec![3, 6, 6, 2];
        let mlp = FusedMlp::new(sizes.clone(), true, random_params(&mut rng, &sizes));
        let mut cache = MlpCache::new();
        mlp.forward_cached(TimeArg::PerSample(&[]), &[], 0, &mut [], &mut cache);
        let mut p_bar = vec![0.0; mlp.num_params()];
        mlp.vjp(&mut cache, &[], &mut [], &mut p_bar, Some(&mut []));
        assert!(p_bar.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn transpose_matches_definition() {
        for rows in 1..=19 {
            for cols in 1..=19 {
                let src: Vec<f64> = (0..rows * cols).map(|i| i as f64).collect();
                let src32: Vec<f32> = src.iter().map(|&v| v as f32).collect();
                let mut d64 = vec![f64::NAN; rows * cols];
                let mut d32 = vec![f32::NAN; rows * cols];
                <f64 as Real>::transpose(&src, rows, cols, &mut d64);
                <f32 as Real>::transpose(&src32, rows, cols, &mut d32);
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(d64[c * rows + r], src[r * cols + c], "f64 {rows}x{cols}");
                        assert_eq!(d32[c * rows + r], src32[r * cols + c], "f32 {rows}x{cols}");
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "sizes [2, 3, 1]")]
    fn wrong_param_count_names_sizes() {
        let _ = FusedMlp::<f64>::new(vec![2, 3, 1], false, vec![0.0; 5]);
    }
}
