//! Fused CPU forward pass and vector–Jacobian product (VJP) for small tanh MLPs.
//!
//! This is the fast path for MLP vector fields of neural ODEs (batch ~256,
//! widths ~64, single-threaded), where the per-op overhead of a tensor
//! framework dominates. It works on contiguous slices, uses `matrixmultiply`
//! for the products of two wide layers and hand-written loops for the thin
//! input/output layers, and needs no other crate.
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
//!   and the time separately ([`TimeArg`]); the time column enters as the
//!   rank-1 term `t ⊗ W_0[dim, :]`, so no concatenated matrix is ever built.
//! * Caller-facing matrices are row-major: `x: [batch, dim]` means sample `i`
//!   occupies `x[i * dim .. (i + 1) * dim]`.
//!
//! Internally, hidden activations are stored feature-major (`[width, batch]`):
//! `matrixmultiply` packs an operand quickly only when it is contiguous along
//! the output dimension it spans, and the batch is the output dimension of every
//! forward product, so this layout makes the forward GEMMs gather-free (about
//! twice as fast as row-major activations at batch 256, width 64). It also gives
//! the thin layers unit-stride loops of length `batch`.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};
use std::sync::Mutex;

/// A layer with input or output width at most this is computed with axpy/dot
/// loops over rows of length `batch` instead of GEMM: `matrixmultiply` pads
/// to its micro-kernel size (8 or 16) and packs both operands, which costs
/// more than the arithmetic of a layer this thin.
const THIN: usize = 4;

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
    /// zero, `C` is not read.
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
    /// vectorised approximation [`tanh_f32_slice`] (absolute error < 1e-7)
    /// for `f32`.
    fn tanh_slice(xs: &mut [Self]);

    /// `dst = src^T` for row-major `src: [rows, cols]` and `dst: [cols, rows]`
    /// (only the first `rows * cols` elements of each are used).
    fn transpose(src: &[Self], rows: usize, cols: usize, dst: &mut [Self]) {
        transpose_scalar(src, rows, cols, dst, 0, 0);
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
        matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
    }

    fn tanh_slice(xs: &mut [Self]) {
        tanh_f32_slice(xs);
    }

    fn transpose(src: &[Self], rows: usize, cols: usize, dst: &mut [Self]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx") {
                // SAFETY: the CPU supports AVX, checked just above.
                unsafe { transpose_f32_avx(src, rows, cols, dst) };
                return;
            }
        }
        transpose_scalar(src, rows, cols, dst, 0, 0);
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
        matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
    }

    /// Exact `f64::tanh` (libm, one call per element, not vectorised): f64
    /// networks serve gradient checks and accurate solves, where the last
    /// digits matter more than speed.
    fn tanh_slice(xs: &mut [Self]) {
        for v in xs.iter_mut() {
            *v = v.tanh();
        }
    }

    fn transpose(src: &[Self], rows: usize, cols: usize, dst: &mut [Self]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx") {
                // SAFETY: the CPU supports AVX, checked just above.
                unsafe { transpose_f64_avx(src, rows, cols, dst) };
                return;
            }
        }
        transpose_scalar(src, rows, cols, dst, 0, 0);
    }

    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
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
/// Written as a plain loop of fused multiply–adds and one division, so LLVM vectorises it; on
/// x86-64 with AVX2 and FMA a copy compiled for 8-wide vectors is chosen at run time (about
/// 0.6 ns per element here, against 1.7 ns for an exp-based formula).
pub fn tanh_f32_slice(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            unsafe { tanh_f32_slice_avx2(xs) };
            return;
        }
    }
    tanh_f32_slice_generic(xs);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tanh_f32_slice_avx2(xs: &mut [f32]) {
    tanh_f32_slice_generic(xs);
}

#[inline(always)]
fn tanh_f32_slice_generic(xs: &mut [f32]) {
    for v in xs.iter_mut() {
        *v = tanh_f32(*v);
    }
}

#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    const A1: f32 = 4.893_524_558_917_86e-3;
    const A3: f32 = 6.372_619_288_754_36e-4;
    const A5: f32 = 1.485_722_357_179_79e-5;
    const A7: f32 = 5.122_297_090_371_14e-8;
    const A9: f32 = -8.604_671_522_137_35e-11;
    const A11: f32 = 2.000_187_904_824_77e-13;
    const A13: f32 = -2.760_768_477_423_55e-16;
    const B0: f32 = 4.893_525_185_543_85e-3;
    const B2: f32 = 2.268_434_632_439e-3;
    const B4: f32 = 1.185_347_056_866_54e-4;
    const B6: f32 = 1.198_258_394_667_02e-6;
    const CLAMP: f32 = 7.905_311;
    // Compare-selects rather than clamp(), so that NaN stays NaN.
    let x = if x > CLAMP {
        CLAMP
    } else if x < -CLAMP {
        -CLAMP
    } else {
        x
    };
    let x2 = x * x;
    let mut p = x2.mul_add(A13, A11);
    p = x2.mul_add(p, A9);
    p = x2.mul_add(p, A7);
    p = x2.mul_add(p, A5);
    p = x2.mul_add(p, A3);
    p = x2.mul_add(p, A1);
    let mut q = x2.mul_add(B6, B4);
    q = x2.mul_add(q, B2);
    q = x2.mul_add(q, B0);
    (x * p) / q
}

// ---------------------------------------------------------------------------
// small dense helpers
// ---------------------------------------------------------------------------

/// `y += alpha * x`.
#[inline(always)]
fn axpy<R: Real>(y: &mut [R], alpha: R, x: &[R]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * *xi;
    }
}

/// `y += Σ_j coef(j) · row(j)` over `terms` rows, four rows per pass so that
/// `y` is loaded and stored a quarter as often as with one axpy per row.
#[inline(always)]
fn add_rows<'a, R: Real>(
    y: &mut [R],
    terms: usize,
    coef: impl Fn(usize) -> R,
    row: impl Fn(usize) -> &'a [R],
) {
    let len = y.len();
    let mut j = 0;
    while j + 4 <= terms {
        let (a0, a1, a2, a3) = (coef(j), coef(j + 1), coef(j + 2), coef(j + 3));
        let (x0, x1, x2, x3) = (&row(j)[..len], &row(j + 1)[..len], &row(j + 2)[..len], &row(j + 3)[..len]);
        for i in 0..len {
            y[i] += (a0 * x0[i] + a1 * x1[i]) + (a2 * x2[i] + a3 * x3[i]);
        }
        j += 4;
    }
    if j + 2 <= terms {
        let (a0, a1) = (coef(j), coef(j + 1));
        let (x0, x1) = (&row(j)[..len], &row(j + 1)[..len]);
        for i in 0..len {
            y[i] += a0 * x0[i] + a1 * x1[i];
        }
        j += 2;
    }
    if j < terms {
        axpy(y, coef(j), row(j));
    }
}

/// Dot product with eight independent accumulators: LLVM may not reassociate
/// a single floating-point running sum into vector lanes.
#[inline(always)]
fn dot<R: Real>(a: &[R], b: &[R]) -> R {
    let b = &b[..a.len()];
    let mut acc = [R::ZERO; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let mut tail = R::ZERO;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += *x * *y;
    }
    for (x, y) in ca.zip(cb) {
        // Fixed-size views let LLVM drop the per-lane bounds checks and map
        // `acc` onto one vector register.
        let x: &[R; 8] = x.try_into().unwrap();
        let y: &[R; 8] = y.try_into().unwrap();
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    // A sequential final sum: a tree order here makes LLVM split `acc`
    // into 2-lane pieces with shuffles inside the hot loop.
    acc.iter().fold(tail, |s, v| s + *v)
}

/// Sum of a slice, eight accumulators as in [`dot`].
#[inline(always)]
fn sum<R: Real>(a: &[R]) -> R {
    let mut acc = [R::ZERO; 8];
    let ca = a.chunks_exact(8);
    let mut tail = R::ZERO;
    for x in ca.remainder() {
        tail += *x;
    }
    for x in ca {
        let x: &[R; 8] = x.try_into().unwrap();
        for j in 0..8 {
            acc[j] += x[j];
        }
    }
    acc.iter().fold(tail, |s, v| s + *v)
}

/// Portable [`Real::transpose`], also used for the edges that the SIMD
/// versions leave: transposes the part of `src` outside its leading
/// `[rb, cb]` block (everything when `rb = cb = 0`). Column by column, so
/// `dst` is written contiguously while the strided reads of a column reuse
/// the same few KiB of cache lines as the previous column.
fn transpose_scalar<R: Copy>(src: &[R], rows: usize, cols: usize, dst: &mut [R], rb: usize, cb: usize) {
    let src = &src[..rows * cols];
    let dst = &mut dst[..rows * cols];
    for c in 0..cols {
        // Rows 0..rb of this column belong to the leading block iff c < cb.
        let r_start = if c < cb { rb } else { 0 };
        if r_start == rows {
            continue;
        }
        let col = &mut dst[c * rows + r_start..(c + 1) * rows];
        for (d, s) in col.iter_mut().zip(src[r_start * cols + c..].iter().step_by(cols)) {
            *d = *s;
        }
    }
}

/// [`Real::transpose`] for f32 with AVX 8×8 register transposes: the
/// backward pass transposes two `[64, batch]` blocks per hidden layer, and
/// the scalar loop costs about as much as the GEMM it feeds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_f32_avx(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let src = &src[..rows * cols];
    let dst = &mut dst[..rows * cols];
    let (rb, cb) = (rows - rows % 8, cols - cols % 8);
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for r0 in (0..rb).step_by(8) {
        for c0 in (0..cb).step_by(8) {
            // SAFETY: rows r0..r0+8 and columns c0..c0+8 lie inside the
            // `rows × cols` slices (r0 + 8 ≤ rb ≤ rows, c0 + 8 ≤ cb ≤ cols).
            unsafe {
                let s = sp.add(r0 * cols + c0);
                // v[i] = [row i, row i+4] of columns c0..c0+4 (i < 4), then of
                // c0+4..c0+8: pairing rows across 128-bit lanes at load time
                // saves the 8 lane-crossing permutes of the textbook version
                // (shuffles share one port and bound this loop).
                // A macro rather than a closure, so that the AVX intrinsics are
                // certainly compiled inside this `target_feature` function.
                macro_rules! half {
                    ($row:expr, $col:expr) => {
                        _mm256_insertf128_ps::<1>(
                            _mm256_castps128_ps256(_mm_loadu_ps(s.add($row * cols + $col))),
                            _mm_loadu_ps(s.add(($row + 4) * cols + $col)),
                        )
                    };
                }
                let d = dp.add(c0 * rows + r0);
                for c in [0, 4] {
                    let (v0, v1, v2, v3) = (half!(0, c), half!(1, c), half!(2, c), half!(3, c));
                    let t0 = _mm256_unpacklo_ps(v0, v1);
                    let t1 = _mm256_unpackhi_ps(v0, v1);
                    let t2 = _mm256_unpacklo_ps(v2, v3);
                    let t3 = _mm256_unpackhi_ps(v2, v3);
                    _mm256_storeu_ps(d.add(c * rows), _mm256_shuffle_ps::<0x44>(t0, t2));
                    _mm256_storeu_ps(d.add((c + 1) * rows), _mm256_shuffle_ps::<0xEE>(t0, t2));
                    _mm256_storeu_ps(d.add((c + 2) * rows), _mm256_shuffle_ps::<0x44>(t1, t3));
                    _mm256_storeu_ps(d.add((c + 3) * rows), _mm256_shuffle_ps::<0xEE>(t1, t3));
                }
            }
        }
    }
    transpose_scalar(src, rows, cols, dst, rb, cb);
}

/// [`Real::transpose`] for f64 with AVX 4×4 register transposes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_f64_avx(src: &[f64], rows: usize, cols: usize, dst: &mut [f64]) {
    use std::arch::x86_64::*;
    let src = &src[..rows * cols];
    let dst = &mut dst[..rows * cols];
    let (rb, cb) = (rows - rows % 4, cols - cols % 4);
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for r0 in (0..rb).step_by(4) {
        for c0 in (0..cb).step_by(4) {
            // SAFETY: as in `transpose_f32_avx`, with 4×4 blocks.
            unsafe {
                let s = sp.add(r0 * cols + c0);
                let r0v = _mm256_loadu_pd(s);
                let r1v = _mm256_loadu_pd(s.add(cols));
                let r2v = _mm256_loadu_pd(s.add(2 * cols));
                let r3v = _mm256_loadu_pd(s.add(3 * cols));
                let t0 = _mm256_unpacklo_pd(r0v, r1v);
                let t1 = _mm256_unpackhi_pd(r0v, r1v);
                let t2 = _mm256_unpacklo_pd(r2v, r3v);
                let t3 = _mm256_unpackhi_pd(r2v, r3v);
                let d = dp.add(c0 * rows + r0);
                _mm256_storeu_pd(d, _mm256_permute2f128_pd::<0x20>(t0, t2));
                _mm256_storeu_pd(d.add(rows), _mm256_permute2f128_pd::<0x20>(t1, t3));
                _mm256_storeu_pd(d.add(2 * rows), _mm256_permute2f128_pd::<0x31>(t0, t2));
                _mm256_storeu_pd(d.add(3 * rows), _mm256_permute2f128_pd::<0x31>(t1, t3));
            }
        }
    }
    transpose_scalar(src, rows, cols, dst, rb, cb);
}

/// Index one past the last element of a strided `[rows, cols]` view.
fn extent(rows: usize, cols: usize, (rs, cs): (usize, usize)) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// Bounds-checked `C ← A·B + beta·C`, `A: [m, k]`, `B: [k, n]`, `C: [m, n]`,
/// each given as a slice with (row stride, column stride).
#[allow(clippy::too_many_arguments)]
fn gemm<R: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: &[R],
    sa: (usize, usize),
    b: &[R],
    sb: (usize, usize),
    beta: R,
    c: &mut [R],
    sc: (usize, usize),
) {
    assert!(extent(m, k, sa) <= a.len(), "gemm: A out of bounds");
    assert!(extent(k, n, sb) <= b.len(), "gemm: B out of bounds");
    assert!(extent(m, n, sc) <= c.len(), "gemm: C out of bounds");
    // SAFETY: the extents were checked above; `c` is a unique borrow, so it
    // cannot alias `a` or `b`.
    unsafe {
        R::gemm(
            m,
            k,
            n,
            R::ONE,
            a.as_ptr(),
            sa.0 as isize,
            sa.1 as isize,
            b.as_ptr(),
            sb.0 as isize,
            sb.1 as isize,
            beta,
            c.as_mut_ptr(),
            sc.0 as isize,
            sc.1 as isize,
        )
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

#[derive(Clone, Copy, Debug)]
enum CachedTime<R> {
    None,
    Shared(R),
    /// Values live in `MlpCache::t`.
    PerSample,
}

/// State saved by [`FusedMlp::forward_cached`] for [`FusedMlp::vjp`], plus
/// reusable scratch.
///
/// Holds copies of the input `x` (`[batch, dim]` and transposed) and of the
/// time, and the post-activation hidden values `h_1 .. h_{L-1}`. Buffers are
/// kept across calls: once a cache has served a given network and batch
/// size, forward and VJP do not allocate apart from `matrixmultiply`'s
/// internal packing buffers.
#[derive(Clone)]
pub struct MlpCache<R> {
    sizes: Vec<usize>,
    time_input: bool,
    batch: usize,
    /// Input `[batch, dim]` (the layer-0 weight cotangent GEMM wants it row-major).
    x: Vec<R>,
    /// Input transposed, `[dim, batch]`.
    xt: Vec<R>,
    time: CachedTime<R>,
    t: Vec<R>,
    /// Post-activation hidden values, feature-major `[s_l, batch]`, l = 1..L-1.
    hidden: Vec<Vec<R>>,
    // Scratch: cotangent ping-pong buffers (feature-major), row-major copies
    // for the weight-cotangent GEMM, and a small staging buffer.
    g: Vec<R>,
    d: Vec<R>,
    h_rm: Vec<R>,
    g_rm: Vec<R>,
    tmp: Vec<R>,
}

impl<R> Debug for MlpCache<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlpCache")
            .field("sizes", &self.sizes)
            .field("time_input", &self.time_input)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
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
        MlpCache {
            sizes: Vec::new(),
            time_input: false,
            batch: 0,
            x: Vec::new(),
            xt: Vec::new(),
            time: CachedTime::None,
            t: Vec::new(),
            hidden: Vec::new(),
            g: Vec::new(),
            d: Vec::new(),
            h_rm: Vec::new(),
            g_rm: Vec::new(),
            tmp: Vec::new(),
        }
    }

    /// Batch size of the last [`FusedMlp::forward_cached`] call (0 if none).
    pub fn batch(&self) -> usize {
        self.batch
    }
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
    /// `W_l^T` (`[s_{l+1}, s_l]`) at the same offsets as `W_l` in `params`
    /// (bias slots unused): the input-cotangent GEMM packs its `B` operand
    /// quickly only from this layout.
    wt: Vec<R>,
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
            wt: self.wt.clone(),
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
        assert!(
            sizes.len() >= 2,
            "FusedMlp: sizes {sizes:?} must list at least the input and output widths"
        );
        assert!(
            sizes.iter().all(|&s| s > 0),
            "FusedMlp: sizes {sizes:?} contain a zero width"
        );
        let expected = Self::param_count(&sizes);
        assert!(
            params.len() == expected,
            "FusedMlp: sizes {sizes:?} need {expected} parameters, got {}",
            params.len()
        );
        let mut offsets = Vec::with_capacity(sizes.len() - 1);
        let mut off = 0;
        for w in sizes.windows(2) {
            offsets.push((off, off + w[0] * w[1]));
            off += w[0] * w[1] + w[1];
        }
        let mut mlp = FusedMlp {
            sizes,
            time_input,
            params,
            offsets,
            wt: vec![R::ZERO; expected],
            scratch: Mutex::new(MlpCache::new()),
        };
        mlp.refresh_transpose();
        mlp
    }

    fn refresh_transpose(&mut self) {
        for (l, &(w_off, _)) in self.offsets.iter().enumerate() {
            let (k, n) = (self.sizes[l], self.sizes[l + 1]);
            let range = w_off..w_off + k * n;
            R::transpose(&self.params[range.clone()], k, n, &mut self.wt[range]);
        }
    }

    /// Replaces the flat parameters (same layout and length), e.g. after an
    /// optimiser step, without reallocating.
    ///
    /// # Panics
    /// If `params.len() != self.num_params()`.
    pub fn set_params(&mut self, params: &[R]) {
        assert!(
            params.len() == self.params.len(),
            "FusedMlp::set_params: sizes {:?} need {} parameters, got {}",
            self.sizes,
            self.params.len(),
            params.len()
        );
        self.params.copy_from_slice(params);
        self.refresh_transpose();
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
                TimeArg::None => panic!(
                    "FusedMlp (sizes {:?}) takes a time input but got TimeArg::None",
                    self.sizes
                ),
                TimeArg::PerSample(ts) => assert!(
                    ts.len() == batch,
                    "FusedMlp (sizes {:?}): {} per-sample times for batch {}",
                    self.sizes,
                    ts.len(),
                    batch
                ),
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
            Err(std::sync::TryLockError::WouldBlock) => {
                self.forward_cached(t, x, batch, out, &mut MlpCache::new())
            }
        }
    }

    /// Same as [`Self::forward`], and keeps in `cache` what [`Self::vjp`]
    /// needs (copies of `x` and `t`, post-activation hidden values).
    /// Allocation-free once `cache` has served this network at this batch size.
    pub fn forward_cached(
        &self,
        t: TimeArg<R>,
        x: &[R],
        batch: usize,
        out: &mut [R],
        cache: &mut MlpCache<R>,
    ) {
        self.check_io(&t, x, batch, out);
        let nl = self.num_layers();
        let dim = self.dim_in();
        cache.sizes.clone_from(&self.sizes);
        cache.time_input = self.time_input;
        cache.batch = batch;
        cache.x.clear();
        cache.x.extend_from_slice(x);
        cache.xt.resize(dim * batch, R::ZERO);
        R::transpose(x, batch, dim, &mut cache.xt);
        cache.time = CachedTime::None;
        let t = if self.time_input { t } else { TimeArg::None };
        match t {
            TimeArg::None => {}
            TimeArg::Shared(v) => cache.time = CachedTime::Shared(v),
            TimeArg::PerSample(ts) => {
                cache.t.clear();
                cache.t.extend_from_slice(ts);
                cache.time = CachedTime::PerSample;
            }
        }
        cache.hidden.resize_with(nl - 1, Vec::new);
        for (l, h) in cache.hidden.iter_mut().enumerate() {
            h.resize(self.sizes[l + 1] * batch, R::ZERO);
        }
        let MlpCache { xt, hidden, tmp, .. } = cache;
        for l in 0..nl {
            let (done, rest) = hidden.split_at_mut(l);
            let input: &[R] = if l == 0 { xt } else { &done[l - 1] };
            if l + 1 == nl {
                self.layer_forward(l, input, t, batch, out, true, tmp);
            } else {
                self.layer_forward(l, input, t, batch, &mut rest[0], false, tmp);
            }
        }
    }

    /// One layer: `out = act(input^T @ W_l + b_l)` for the feature-major
    /// `input: [k_eff, batch]` (`k_eff = dim_in` for layer 0, whose time
    /// column is added as a rank-1 term). `out` is `[n, batch]`
    /// (feature-major), or `[batch, n]` when `out_row_major` (the output layer).
    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        l: usize,
        input: &[R],
        t: TimeArg<R>,
        batch: usize,
        out: &mut [R],
        out_row_major: bool,
        tmp: &mut Vec<R>,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe { self.layer_forward_avx2(l, input, t, batch, out, out_row_major, tmp) };
                return;
            }
        }
        self.layer_forward_impl(l, input, t, batch, out, out_row_major, tmp);
    }

    /// The same code compiled for AVX2, so that the loops written here use
    /// 8-wide vectors without `-C target-cpu` (`matrixmultiply` and
    /// [`tanh_f32_slice`] dispatch on their own). No FMA is enabled, so the
    /// results are bitwise identical to the portable build.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn layer_forward_avx2(
        &self,
        l: usize,
        input: &[R],
        t: TimeArg<R>,
        batch: usize,
        out: &mut [R],
        out_row_major: bool,
        tmp: &mut Vec<R>,
    ) {
        self.layer_forward_impl(l, input, t, batch, out, out_row_major, tmp);
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn layer_forward_impl(
        &self,
        l: usize,
        input: &[R],
        t: TimeArg<R>,
        batch: usize,
        out: &mut [R],
        out_row_major: bool,
        tmp: &mut Vec<R>,
    ) {
        let (k, n) = (self.sizes[l], self.sizes[l + 1]);
        let timed = l == 0 && self.time_input;
        let k_eff = if timed { k - 1 } else { k };
        let activate = l + 1 < self.num_layers();
        let (w_off, b_off) = self.offsets[l];
        let w = &self.params[w_off..w_off + k * n];
        let b = &self.params[b_off..b_off + n];
        // Row `dim` of W_0 (the time weights) when timed, else empty.
        let w_time = &w[k_eff * n..];
        let (shared_t, per_sample_t) = match (timed, t) {
            (true, TimeArg::Shared(v)) => (Some(v), None),
            (true, TimeArg::PerSample(ts)) => (None, Some(ts)),
            _ => (None, None),
        };
        // Per-output constant: the bias plus a shared time's contribution.
        let shift = |o: usize| match shared_t {
            Some(tv) => b[o] + tv * w_time[o],
            None => b[o],
        };
        debug_assert_eq!(input.len(), k_eff * batch);
        debug_assert_eq!(out.len(), n * batch);

        if k_eff <= THIN || n <= THIN {
            // z^T[o, :] = shift_o + Σ_j W[j, o]·input[j, :], one row of
            // length `batch` at a time, activated while it is in L1.
            let zt: &mut [R] = if out_row_major {
                tmp.resize(n * batch, R::ZERO);
                &mut tmp[..n * batch]
            } else {
                &mut *out
            };
            for (o, z) in zt.chunks_exact_mut(batch.max(1)).enumerate().take(n) {
                z.fill(shift(o));
                if let Some(ts) = per_sample_t {
                    axpy(z, w_time[o], ts);
                }
                add_rows(z, k_eff, |j| w[j * n + o], |j| &input[j * batch..(j + 1) * batch]);
                if activate {
                    R::tanh_slice(z);
                }
            }
            if out_row_major {
                R::transpose(&tmp[..n * batch], n, batch, out);
            }
        } else if out_row_major {
            // A = input^T read through strides (1, batch): contiguous along the
            // batch, which is what matrixmultiply packs quickly.
            gemm(batch, k_eff, n, input, (1, batch), w, (n, 1), R::ZERO, out, (n, 1));
            tmp.clear();
            tmp.extend((0..n).map(shift));
            for (i, row) in out.chunks_exact_mut(n).enumerate() {
                for (v, c) in row.iter_mut().zip(tmp.iter()) {
                    *v += *c;
                }
                if let Some(ts) = per_sample_t {
                    axpy(row, ts[i], w_time);
                }
            }
            if activate {
                R::tanh_slice(out);
            }
        } else {
            gemm(batch, k_eff, n, input, (1, batch), w, (n, 1), R::ZERO, out, (1, batch));
            for (o, z) in out.chunks_exact_mut(batch.max(1)).enumerate().take(n) {
                let c = shift(o);
                match per_sample_t {
                    Some(ts) => {
                        let wo = w_time[o];
                        for (v, tv) in z.iter_mut().zip(ts) {
                            *v += c + wo * *tv;
                        }
                    }
                    None => {
                        for v in z.iter_mut() {
                            *v += c;
                        }
                    }
                }
                if activate {
                    R::tanh_slice(z);
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
    pub fn vjp(
        &self,
        cache: &mut MlpCache<R>,
        a: &[R],
        x_bar: &mut [R],
        param_bar: &mut [R],
        t_bar: Option<&mut [R]>,
    ) {
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
        assert!(
            a.len() == batch * n_out,
            "FusedMlp::vjp (sizes {:?}): a has {} entries, expected batch {} x {}",
            self.sizes,
            a.len(),
            batch,
            n_out
        );
        assert!(
            x_bar.len() == batch * dim,
            "FusedMlp::vjp (sizes {:?}): x_bar has {} entries, expected batch {} x {}",
            self.sizes,
            x_bar.len(),
            batch,
            dim
        );
        assert!(
            param_bar.len() == self.num_params(),
            "FusedMlp::vjp (sizes {:?}): param_bar has {} entries, expected {}",
            self.sizes,
            param_bar.len(),
            self.num_params()
        );
        if let Some(tb) = &t_bar {
            assert!(
                tb.len() == batch,
                "FusedMlp::vjp (sizes {:?}): t_bar has {} entries, expected batch {}",
                self.sizes,
                tb.len(),
                batch
            );
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe { self.vjp_avx2(cache, a, x_bar, param_bar, t_bar) };
                return;
            }
        }
        self.vjp_impl(cache, a, x_bar, param_bar, t_bar);
    }

    /// See [`Self::layer_forward_avx2`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn vjp_avx2(
        &self,
        cache: &mut MlpCache<R>,
        a: &[R],
        x_bar: &mut [R],
        param_bar: &mut [R],
        t_bar: Option<&mut [R]>,
    ) {
        self.vjp_impl(cache, a, x_bar, param_bar, t_bar);
    }

    /// Body of [`Self::vjp`] after the shape checks. `g` holds the cotangent
    /// of the current layer's pre-activation output, feature-major `[n, batch]`.
    #[inline(always)]
    fn vjp_impl(
        &self,
        cache: &mut MlpCache<R>,
        a: &[R],
        x_bar: &mut [R],
        param_bar: &mut [R],
        mut t_bar: Option<&mut [R]>,
    ) {
        let batch = cache.batch;
        let nl = self.num_layers();
        let n_out = self.dim_out();
        let MlpCache {
            x,
            xt,
            time,
            t,
            hidden,
            g,
            d,
            h_rm,
            g_rm,
            ..
        } = cache;
        let (shared_t, per_sample_t): (Option<R>, Option<&[R]>) = match *time {
            CachedTime::None => (None, None),
            CachedTime::Shared(v) => (Some(v), None),
            CachedTime::PerSample => (None, Some(&t[..])),
        };
        let widest = self.sizes.iter().copied().max().unwrap();
        g.resize(widest * batch, R::ZERO);
        d.resize(widest * batch, R::ZERO);
        R::transpose(a, batch, n_out, &mut g[..n_out * batch]);

        for l in (0..nl).rev() {
            let (k, n) = (self.sizes[l], self.sizes[l + 1]);
            let timed = l == 0 && self.time_input;
            let k_eff = if timed { k - 1 } else { k };
            let thin = k_eff <= THIN || n <= THIN;
            let (w_off, b_off) = self.offsets[l];
            let w = &self.params[w_off..w_off + k * n];
            let wt = &self.wt[w_off..w_off + k * n];
            let input: &[R] = if l == 0 { xt } else { &hidden[l - 1] };
            let gl = &g[..n * batch];
            let g_row = |o: usize| &gl[o * batch..(o + 1) * batch];

            // Parameter cotangents: W_l += input · g^T, b_l += Σ_i g[:, i].
            let (wb, bb) = param_bar[w_off..b_off + n].split_at_mut(k * n);
            if thin {
                for j in 0..k_eff {
                    let hj = &input[j * batch..(j + 1) * batch];
                    for o in 0..n {
                        wb[j * n + o] += dot(hj, g_row(o));
                    }
                }
            } else {
                // The batch is the contraction here, so matrixmultiply packs
                // both operands quickly only from row-major copies; explicit
                // (SIMD) transposes cost a fraction of its strided gather.
                let in_rm: &[R] = if l == 0 {
                    x
                } else {
                    h_rm.resize(k * batch, R::ZERO);
                    R::transpose(input, k, batch, h_rm);
                    h_rm
                };
                let g_rm: &[R] = if l + 1 == nl {
                    a
                } else {
                    g_rm.resize(n * batch, R::ZERO);
                    R::transpose(gl, n, batch, g_rm);
                    g_rm
                };
                gemm(k_eff, batch, n, in_rm, (1, k_eff), g_rm, (n, 1), R::ONE, &mut wb[..k_eff * n], (n, 1));
            }
            for (o, bo) in bb.iter_mut().enumerate() {
                let s = sum(g_row(o));
                *bo += s;
                if timed {
                    wb[k_eff * n + o] += match (shared_t, per_sample_t) {
                        (Some(tv), _) => tv * s,
                        (None, Some(ts)) => dot(ts, g_row(o)),
                        _ => R::ZERO,
                    };
                }
            }

            if l > 0 {
                // Input cotangent through the tanh that produced `input`:
                // d[j, :] = (Σ_o W[j, o]·g[o, :]) ⊙ (1 − h[j, :]²).
                let dl = &mut d[..k * batch];
                if thin {
                    for (j, dj) in dl.chunks_exact_mut(batch.max(1)).enumerate().take(k) {
                        dj.fill(R::ZERO);
                        add_rows(dj, n, |o| w[j * n + o], g_row);
                        for (dv, hv) in dj.iter_mut().zip(&input[j * batch..(j + 1) * batch]) {
                            *dv *= R::ONE - *hv * *hv;
                        }
                    }
                } else {
                    // C[batch, k] = g^T · W^T, written feature-major; W^T comes from
                    // `wt` so that B is contiguous along its columns.
                    gemm(batch, n, k, gl, (1, batch), wt, (k, 1), R::ZERO, dl, (1, batch));
                    for (dv, hv) in dl.iter_mut().zip(input) {
                        *dv *= R::ONE - *hv * *hv;
                    }
                }
                std::mem::swap(g, d);
            } else {
                let dim = k_eff;
                if dim > 0 {
                    if thin {
                        let xt_bar = &mut d[..dim * batch];
                        for (j, xj) in xt_bar.chunks_exact_mut(batch.max(1)).enumerate().take(dim) {
                            xj.fill(R::ZERO);
                            add_rows(xj, n, |o| w[j * n + o], g_row);
                        }
                        R::transpose(xt_bar, dim, batch, x_bar);
                    } else {
                        gemm(batch, n, dim, gl, (1, batch), wt, (k, 1), R::ZERO, x_bar, (dim, 1));
                    }
                }
                if let Some(tb) = t_bar.as_deref_mut() {
                    tb.fill(R::ZERO);
                    if timed {
                        add_rows(tb, n, |o| w[dim * n + o], g_row);
                    }
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

    /// Shapes chosen to hit every kernel branch (THIN = 4): thin-layer loops
    /// and dot kernels, GEMM with and without the time row, a single linear
    /// layer and a time-only input (dim 0).
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
                // Batches above and below the 8×8 transpose tile, with remainders.
                let batch = [5, 3, 19, 11, 6, 4, 13, 9, 7][c % 9];
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
            let m32 = FusedMlp::new(
                m64.sizes().to_vec(),
                m64.time_input(),
                m64.params().iter().map(|&v| v as f32).collect(),
            );
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

        // The runtime-dispatched (AVX2) copy must agree bitwise with the portable one.
        let mut portable = xs.clone();
        tanh_f32_slice_generic(&mut portable);
        assert!(portable.iter().zip(&ys).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn set_params_refreshes_everything() {
        // The VJP reads a transposed copy of the weights: a stale copy would
        // still pass forward checks but give wrong cotangents.
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

    #[test]
    fn portable_vjp_matches_dispatched() {
        // The AVX2 copy must not change results (no FMA contraction); this also
        // runs the portable code on machines that have AVX2.
        let mut rng = Rng(23);
        for case in cases(6) {
            let mlp = &case.mlp;
            let a: Vec<f32> = rng.vec(case.batch * mlp.dim_out(), 1.0).iter().map(|&v| v as f32).collect();
            let m32 = FusedMlp::new(
                mlp.sizes().to_vec(),
                mlp.time_input(),
                mlp.params().iter().map(|&v| v as f32).collect(),
            );
            let x: Vec<f32> = case.x.iter().map(|&v| v as f32).collect();
            let ts: Vec<f32> = case.ts.iter().map(|&v| v as f32).collect();
            let t = match case.kind {
                TimeKind::None => TimeArg::None,
                TimeKind::Shared => TimeArg::Shared(ts[0]),
                TimeKind::PerSample => TimeArg::PerSample(&ts[..]),
            };
            let mut cache = MlpCache::new();
            let mut out = vec![0f32; case.batch * mlp.dim_out()];
            m32.forward_cached(t, &x, case.batch, &mut out, &mut cache);
            let run = |portable: bool, cache: &mut MlpCache<f32>| {
                let mut xb = vec![0f32; x.len()];
                let mut pb = vec![0f32; m32.num_params()];
                let mut tb = vec![0f32; case.batch];
                if portable {
                    m32.vjp_impl(cache, &a, &mut xb, &mut pb, Some(&mut tb));
                } else {
                    m32.vjp(cache, &a, &mut xb, &mut pb, Some(&mut tb));
                }
                (xb, pb, tb)
            };
            assert_eq!(run(true, &mut cache), run(false, &mut cache), "sizes {:?}", mlp.sizes());
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
