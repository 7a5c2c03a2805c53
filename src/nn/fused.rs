//! Fused CPU forward pass and vector–Jacobian product (VJP) for small tanh MLPs.
//!
//! This is the fast path for MLP vector fields of neural ODEs (batch ~256,
//! widths ~64, single-threaded), where the per-op overhead of a tensor
//! framework dominates. Everything works on contiguous row-major slices and
//! uses `matrixmultiply` for the large products.
//!
//! # Network and layouts
//!
//! `sizes = [s_0, s_1, ..., s_L]` describes `L` affine layers; layer `l` maps
//! width `s_l` to `s_{l+1}`:
//!
//! ```text
//! h_0 = input,   z_{l+1} = h_l @ W_l + b_l,   h_{l+1} = tanh(z_{l+1})  (l < L-1),
//! output = z_L   (the last layer is linear)
//! ```
//!
//! * `W_l` is row-major with shape `[s_l, s_{l+1}]` (burn's `Linear` layout,
//!   forward is `x @ W + b`), `b_l` has shape `[s_{l+1}]`.
//! * Flat parameter vector: for each layer in order, `W_l` (row-major,
//!   `s_l * s_{l+1}` entries) followed by `b_l` (`s_{l+1}` entries). The same
//!   layout is used for parameter cotangents.
//! * With `time_input`, the network input is `[x, t]`: `s_0 = dim + 1` and the
//!   LAST input column is the time. Callers pass the states `x: [batch, dim]`
//!   and the time separately ([`TimeArg`]); the time column enters as the
//!   rank-1 term `t ⊗ W_0[dim, :]`, so no concatenated matrix is ever built.
//! * All matrices are row-major: `x: [batch, dim]` means sample `i` occupies
//!   `x[i * dim .. (i + 1) * dim]`.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// Layers whose (effective) input width is at most this use a row-wise
/// axpy kernel instead of GEMM: for `k` this small, `matrixmultiply`'s packing
/// costs more than the arithmetic.
const SMALL_K: usize = 4;
/// Layers whose output width is at most this use dot products against the
/// transposed weights instead of GEMM (a GEMM with `n = 2` wastes most of
/// the micro-kernel on padding).
const SMALL_N: usize = 4;

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

    /// In-place `tanh` of every element. `f64` uses `f64::tanh`; `f32` uses
    /// a vectorised approximation with absolute error ≤ 2e-7 (see
    /// [`tanh_f32_slice`]).
    fn tanh_slice(xs: &mut [Self]);

    /// `z[i, :] = tanh(z[i, :] + bias)` for every row of `z: [rows, bias.len()]`.
    fn add_bias_tanh(z: &mut [Self], bias: &[Self]) {
        for row in z.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += *b;
            }
            Self::tanh_slice(row);
        }
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

    fn add_bias_tanh(z: &mut [Self], bias: &[Self]) {
        // One pass over each row (still in L1 after the GEMM wrote it) instead
        // of a bias pass followed by a tanh pass.
        for row in z.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += *b;
            }
            tanh_f32_slice(row);
        }
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

    /// Exact `f64::tanh` (libm, not vectorised): f64 networks are used for
    /// gradient checks and stiff/accurate solves, where the last digits matter
    /// more than speed.
    fn tanh_slice(xs: &mut [Self]) {
        for v in xs.iter_mut() {
            *v = v.tanh();
        }
    }

    fn add_bias_tanh(z: &mut [Self], bias: &[Self]) {
        for row in z.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v = (*v + *b).tanh();
            }
        }
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

/// In-place `tanh` for `f32` slices, max absolute error ≤ 2e-7 against
/// `f64::tanh` (tested), NaN in → NaN out.
///
/// A single rational approximation of tanh on `[0, 9]` cannot meet 2e-7
/// absolute in f32: the ~5 roundings of `x·P(x²)/Q(x²)` already cost ~3e-7
/// near 1. So two branches are evaluated branch-free and selected per lane:
/// * `|x| < 0.625`: `x + x³·R(x²)` — the correction term is ≤ 0.06, so its
///   rounding is negligible and the result is accurate in *relative* terms.
/// * otherwise: `(1 − e)/(1 + e)` with `e = exp(−2|x|)` from a Cody–Waite
///   reduced polynomial; the errors of `e` are damped by `2e/(1+e)² ≤ 0.5`
///   and vanish as `|x|` grows. `|x|` is clamped at 9, where
///   `1 − tanh(9) ≈ 3e-8` is below half an f32 ulp of 1.
///
/// The loop body is plain arithmetic (no `mul_add`, no libm calls), so LLVM
/// vectorises it; on x86-64 with AVX2 a copy compiled for 8-wide vectors is
/// picked at run time. Without FMA contraction both copies produce bitwise
/// identical results.
pub fn tanh_f32_slice(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { tanh_f32_slice_avx2(xs) };
            return;
        }
    }
    tanh_f32_slice_generic(xs);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
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
    const SMALL: f32 = 0.625;
    const CLAMP: f32 = 9.0;
    // Minimax fit of (tanh(x) - x) / x³ as a polynomial in s = x² on [0, 0.625²].
    const R0: f32 = -0.333_333_29;
    const R1: f32 = 0.133_327_94;
    const R2: f32 = -0.053_854_035;
    const R3: f32 = 0.021_010_017;
    const R4: f32 = -0.006_113_178_7;
    // Minimax fit of (exp(r) - 1 - r) / r² on |r| ≤ ln2/2 (relative error 3e-9).
    const P0: f32 = 0.499_999_93;
    const P1: f32 = 0.166_665_21;
    const P2: f32 = 0.041_668_387;
    const P3: f32 = 0.008_368_699_6;
    const P4: f32 = 0.001_381_456_6;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Cephes split of ln 2: LN2_HI has few mantissa bits so n·LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_375;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to an integer (SSE2 has no vector round) and leaves
    // that integer in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;

    let a = x.abs();
    // Written as a compare-select (not f32::min) so a NaN stays NaN.
    let a = if a > CLAMP { CLAMP } else { a };

    let s = x * x;
    let r = R0 + s * (R1 + s * (R2 + s * (R3 + s * R4)));
    let small = x + (x * s) * r;

    let y = -2.0 * a;
    let tt = y * LOG2E + MAGIC;
    let nf = tt - MAGIC;
    let rr = (y - nf * LN2_HI) - nf * LN2_LO;
    let p = rr * rr * (P0 + rr * (P1 + rr * (P2 + rr * (P3 + rr * P4)))) + rr + 1.0;
    let ni = (tt.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    // ni ∈ [-26, 0], so the biased exponent stays normal.
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    let e = p * scale;
    let large = ((1.0 - e) / (1.0 + e)).copysign(x);

    if a < SMALL {
        small
    } else {
        large
    }
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

/// Dot product with eight independent accumulators: a single running sum is
/// a serial dependency chain that LLVM may not reassociate into vectors.
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
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Index one past the last element of a strided `[rows, cols]` view.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// Bounds-checked `C ← A·B + beta·C` with `C` row-major (`[m, n]`, row stride `rsc`).
#[allow(clippy::too_many_arguments)]
fn gemm<R: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: &[R],
    (rsa, csa): (usize, usize),
    b: &[R],
    (rsb, csb): (usize, usize),
    beta: R,
    c: &mut [R],
    rsc: usize,
) {
    assert!(extent(m, k, rsa, csa) <= a.len(), "gemm: A out of bounds");
    assert!(extent(k, n, rsb, csb) <= b.len(), "gemm: B out of bounds");
    assert!(extent(m, n, rsc, 1) <= c.len(), "gemm: C out of bounds");
    // SAFETY: the extents were checked above; `c` is a unique borrow, so it
    // cannot alias `a` or `b`.
    unsafe {
        R::gemm(
            m,
            k,
            n,
            R::ONE,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            1,
        )
    }
}

// ---------------------------------------------------------------------------
// public types
// ---------------------------------------------------------------------------

/// Time argument of a time-dependent network.
#[derive(Clone, Copy, Debug)]
pub enum TimeArg<'a, R> {
    /// No time input (autonomous network).
    None,
    /// One time shared by all samples.
    Shared(R),
    /// One time per sample, `[batch]`.
    PerSample(&'a [R]),
}

impl<R: Real> TimeArg<'_, R> {
    #[inline(always)]
    fn at(&self, i: usize) -> R {
        match self {
            TimeArg::None => R::ZERO,
            TimeArg::Shared(t) => *t,
            TimeArg::PerSample(ts) => ts[i],
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum CachedTime<R> {
    None,
    Shared(R),
    /// Values live in `MlpCache::t`.
    PerSample,
}

/// What [`FusedMlp::vjp`] needs from a forward pass, plus reusable scratch.
///
/// Filled by [`FusedMlp::forward_cached`]: a copy of the input `x: [batch, dim]`,
/// the time, and the post-activation hidden values `h_1 .. h_{L-1}`
/// (`[batch, s_l]` each). Buffers are kept across calls, so a cache reused
/// for the same batch size makes forward + VJP allocation-free apart from
/// `matrixmultiply`'s internal packing buffers.
#[derive(Clone, Debug)]
pub struct MlpCache<R> {
    sizes: Vec<usize>,
    time_input: bool,
    batch: usize,
    x: Vec<R>,
    time: CachedTime<R>,
    t: Vec<R>,
    hidden: Vec<Vec<R>>,
    // VJP scratch: cotangent ping-pong buffers and a transposed weight gradient.
    g: Vec<R>,
    d: Vec<R>,
    wtmp: Vec<R>,
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
            time: CachedTime::None,
            t: Vec::new(),
            hidden: Vec::new(),
            g: Vec::new(),
            d: Vec::new(),
            wtmp: Vec::new(),
        }
    }

    /// Batch size of the last [`FusedMlp::forward_cached`] call (0 if none).
    pub fn batch(&self) -> usize {
        self.batch
    }
}

/// A tanh MLP with flat parameters, evaluated with fused CPU kernels.
///
/// See the module docs for the parameter layout. Cheap to clone (owns its
/// parameters and a transposed copy of the weights).
#[derive(Clone, Debug)]
pub struct FusedMlp<R: Real> {
    sizes: Vec<usize>,
    time_input: bool,
    params: Vec<R>,
    /// `(weight offset, bias offset)` of each layer in `params`.
    offsets: Vec<(usize, usize)>,
    /// `W_l^T` (`[s_{l+1}, s_l]`) at the same offsets as `W_l` in `params`
    /// (bias slots unused): the small-width kernels need contiguous columns.
    wt: Vec<R>,
}

impl<R: Real> FusedMlp<R> {
    /// Number of flat parameters of an MLP with these layer sizes:
    /// `Σ_l s_l·s_{l+1} + s_{l+1}`.
    pub fn param_count(sizes: &[usize]) -> usize {
        sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }

    /// Builds the network from layer sizes `[s_0, ..., s_L]` (`s_0` includes the
    /// time column when `time_input`) and the flat parameter vector
    /// (module docs for the layout).
    ///
    /// # Panics
    /// If `sizes` has fewer than two entries or a zero width, if
    /// `time_input` and `s_0 == 0`, or if `params.len()` is not
    /// [`Self::param_count`]`(&sizes)`; the message names `sizes`.
    pub fn new(sizes: Vec<usize>, time_input: bool, params: Vec<R>) -> Self {
        assert!(
            sizes.len() >= 2,
            "FusedMlp: sizes {sizes:?} must list at least input and output widths"
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
        };
        mlp.refresh_transpose();
        mlp
    }

    fn refresh_transpose(&mut self) {
        for (l, &(w_off, _)) in self.offsets.iter().enumerate() {
            let (k, n) = (self.sizes[l], self.sizes[l + 1]);
            let w = &self.params[w_off..w_off + k * n];
            let wt = &mut self.wt[w_off..w_off + k * n];
            for j in 0..k {
                for o in 0..n {
                    wt[o * k + j] = w[j * n + o];
                }
            }
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

    /// State dimension `dim` (input width excluding the time column).
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

    /// Widest hidden layer (0 for a single affine layer).
    fn max_hidden(&self) -> usize {
        let l = self.sizes.len();
        self.sizes[1..l - 1].iter().copied().max().unwrap_or(0)
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
                    "FusedMlp (sizes {:?}) has a time input but got TimeArg::None",
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

    /// `out = f(t, x)`: `x: [batch, dim_in]`, `out: [batch, dim_out]` (overwritten).
    ///
    /// `t` is ignored when the network has no time input, so solvers may always
    /// pass the current time. Allocates two `[batch, max hidden width]` buffers
    /// per call; hot loops should use [`Self::forward_cached`] with a reused
    /// cache instead.
    ///
    /// # Panics
    /// On shape mismatch, or if the network takes time and `t` is
    /// `TimeArg::None` / has `len != batch`.
    pub fn forward(&self, t: TimeArg<R>, x: &[R], batch: usize, out: &mut [R]) {
        self.check_io(&t, x, batch, out);
        let stride = batch * self.max_hidden();
        let mut buf = vec![R::ZERO; 2 * stride];
        let (mut prev, mut next) = buf.split_at_mut(stride);
        let nl = self.num_layers();
        for l in 0..nl {
            let input: &[R] = if l == 0 { x } else { &prev[..batch * self.sizes[l]] };
            if l + 1 == nl {
                self.layer_forward(l, input, t, batch, out);
            } else {
                self.layer_forward(l, input, t, batch, &mut next[..batch * self.sizes[l + 1]]);
                std::mem::swap(&mut prev, &mut next);
            }
        }
    }

    /// Same as [`Self::forward`], and stores in `cache` what [`Self::vjp`]
    /// needs (copies of `x` and `t`, post-activation hidden values). Allocation-free
    /// once `cache` has served a batch at least this large.
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
        cache.sizes.clone_from(&self.sizes);
        cache.time_input = self.time_input;
        cache.batch = batch;
        cache.x.clear();
        cache.x.extend_from_slice(x);
        cache.time = CachedTime::None;
        if self.time_input {
            match t {
                TimeArg::None => unreachable!(),
                TimeArg::Shared(v) => cache.time = CachedTime::Shared(v),
                TimeArg::PerSample(ts) => {
                    cache.t.clear();
                    cache.t.extend_from_slice(ts);
                    cache.time = CachedTime::PerSample;
                }
            }
        }
        cache.hidden.resize_with(nl - 1, Vec::new);
        for (l, h) in cache.hidden.iter_mut().enumerate() {
            h.resize(batch * self.sizes[l + 1], R::ZERO);
        }
        for l in 0..nl {
            let (done, rest) = cache.hidden.split_at_mut(l);
            let input: &[R] = if l == 0 { &cache.x } else { &done[l - 1] };
            let output: &mut [R] = if l + 1 == nl { &mut *out } else { &mut rest[0] };
            self.layer_forward(l, input, t, batch, output);
        }
    }

    /// One affine layer (+ tanh unless it is the last): `out = act(input @ W_l + b_l)`
    /// with `input: [batch, k_eff]`, where for layer 0 `k_eff = dim_in` and the
    /// time column is added as a rank-1 term.
    fn layer_forward(&self, l: usize, input: &[R], t: TimeArg<R>, batch: usize, out: &mut [R]) {
        let (k, n) = (self.sizes[l], self.sizes[l + 1]);
        let timed = l == 0 && self.time_input;
        let k_eff = if timed { k - 1 } else { k };
        let activate = l + 1 < self.num_layers();
        let (w_off, b_off) = self.offsets[l];
        let w = &self.params[w_off..w_off + k * n];
        let b = &self.params[b_off..b_off + n];
        let w_time = &w[k_eff * n..]; // row `dim` of W_0 when timed, else empty
        debug_assert_eq!(input.len(), batch * k_eff);
        debug_assert_eq!(out.len(), batch * n);

        if k_eff <= SMALL_K {
            for (i, row) in out.chunks_exact_mut(n).enumerate() {
                row.copy_from_slice(b);
                if timed {
                    axpy(row, t.at(i), w_time);
                }
                for j in 0..k_eff {
                    axpy(row, input[i * k_eff + j], &w[j * n..(j + 1) * n]);
                }
            }
            if activate {
                R::tanh_slice(out);
            }
        } else if n <= SMALL_N {
            let wt = &self.wt[w_off..w_off + k * n];
            for (i, (row, xi)) in out.chunks_exact_mut(n).zip(input.chunks_exact(k_eff)).enumerate() {
                let ti = t.at(i);
                for (o, v) in row.iter_mut().enumerate() {
                    let col = &wt[o * k..(o + 1) * k];
                    let mut z = b[o] + dot(xi, &col[..k_eff]);
                    if timed {
                        z += ti * col[k_eff];
                    }
                    *v = z;
                }
            }
            if activate {
                R::tanh_slice(out);
            }
        } else if timed {
            // Per-row offsets b + t_i·W_0[dim, :] are written first and the GEMM
            // accumulates onto them (beta = 1).
            for (i, row) in out.chunks_exact_mut(n).enumerate() {
                row.copy_from_slice(b);
                axpy(row, t.at(i), w_time);
            }
            gemm(batch, k_eff, n, input, (k_eff, 1), w, (n, 1), R::ONE, out, n);
            if activate {
                R::tanh_slice(out);
            }
        } else {
            gemm(batch, k_eff, n, input, (k_eff, 1), w, (n, 1), R::ZERO, out, n);
            if activate {
                R::add_bias_tanh(out, b);
            } else {
                for row in out.chunks_exact_mut(n) {
                    for (v, bo) in row.iter_mut().zip(b) {
                        *v += *bo;
                    }
                }
            }
        }
    }

    /// Vector–Jacobian product at the point stored by the last
    /// [`Self::forward_cached`] into `cache`, for the output cotangent
    /// `a: [batch, dim_out]`:
    ///
    /// * `x_bar: [batch, dim_in]` is overwritten with `a_i^T ∂f(t_i, x_i)/∂x_i` per sample;
    /// * `param_bar: [num_params]` (flat layout) is ACCUMULATED (`+=`) with
    ///   `Σ_i a_i^T ∂f(t_i, x_i)/∂θ`;
    /// * `t_bar: [batch]`, if given, is overwritten with `a_i^T ∂f(t_i, x_i)/∂t`
    ///   per sample (also for `TimeArg::Shared`; sum it for the shared-time
    ///   cotangent), or zeros when the network has no time input.
    ///
    /// `cache` is `&mut` only for its scratch buffers; the forward state is not
    /// modified, so `vjp` may be called repeatedly with different `a`.
    ///
    /// # Panics
    /// If `cache` was not filled by a network with the same sizes/time flag,
    /// or on any length mismatch.
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
        let nl = self.num_layers();
        let dim = self.dim_in();
        let n_out = self.dim_out();
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

        let MlpCache { x, time, t, hidden, g, d, wtmp, .. } = cache;
        let time: TimeArg<R> = match *time {
            CachedTime::None => TimeArg::None,
            CachedTime::Shared(v) => TimeArg::Shared(v),
            CachedTime::PerSample => TimeArg::PerSample(&t[..]),
        };
        let widest = self.sizes.iter().copied().max().unwrap();
        g.resize(batch * widest, R::ZERO);
        d.resize(batch * widest, R::ZERO);

        // g holds the cotangent of the current layer's pre-activation output.
        g[..batch * n_out].copy_from_slice(a);
        let mut t_bar = t_bar;

        for l in (0..nl).rev() {
            let (k, n) = (self.sizes[l], self.sizes[l + 1]);
            let timed = l == 0 && self.time_input;
            let k_eff = if timed { k - 1 } else { k };
            let (w_off, b_off) = self.offsets[l];
            let w = &self.params[w_off..w_off + k * n];
            let wt = &self.wt[w_off..w_off + k * n];
            let input: &[R] = if l == 0 { &x[..] } else { &hidden[l - 1] };
            let gl = &g[..batch * n];

            // --- parameter cotangents: W_l += input^T g, b_l += Σ_i g_i -------
            {
                let (wb, bb) = param_bar[w_off..b_off + n].split_at_mut(k * n);
                if k_eff <= SMALL_K {
                    for (xi, gi) in input.chunks_exact(k_eff.max(1)).zip(gl.chunks_exact(n)) {
                        for j in 0..k_eff {
                            axpy(&mut wb[j * n..(j + 1) * n], xi[j], gi);
                        }
                    }
                } else if n <= SMALL_N {
                    // Accumulate W^T (rows of length k_eff vectorise) and add it
                    // transposed; a GEMM with n this small is mostly padding.
                    wtmp.clear();
                    wtmp.resize(n * k_eff, R::ZERO);
                    for (xi, gi) in input.chunks_exact(k_eff).zip(gl.chunks_exact(n)) {
                        for o in 0..n {
                            axpy(&mut wtmp[o * k_eff..(o + 1) * k_eff], gi[o], xi);
                        }
                    }
                    for j in 0..k_eff {
                        for o in 0..n {
                            wb[j * n + o] += wtmp[o * k_eff + j];
                        }
                    }
                } else {
                    // input^T as a strided view: (row stride 1, column stride k_eff).
                    gemm(k_eff, batch, n, input, (1, k_eff), gl, (n, 1), R::ONE, &mut wb[..k_eff * n], n);
                }
                if timed {
                    let wtb = &mut wb[k_eff * n..];
                    for (i, gi) in gl.chunks_exact(n).enumerate() {
                        axpy(wtb, time.at(i), gi);
                    }
                }
                for gi in gl.chunks_exact(n) {
                    for (bo, go) in bb.iter_mut().zip(gi) {
                        *bo += *go;
                    }
                }
            }

            // --- input cotangent: g @ W^T (restricted to the state rows) -------
            if l > 0 {
                // Hidden layer input h = tanh(z): chain through 1 - h².
                let dl = &mut d[..batch * k];
                if n <= SMALL_N {
                    for ((di, gi), hi) in dl.chunks_exact_mut(k).zip(gl.chunks_exact(n)).zip(input.chunks_exact(k)) {
                        di.fill(R::ZERO);
                        for o in 0..n {
                            axpy(di, gi[o], &wt[o * k..(o + 1) * k]);
                        }
                        for (dv, hv) in di.iter_mut().zip(hi) {
                            *dv *= R::ONE - *hv * *hv;
                        }
                    }
                } else if k <= SMALL_K {
                    for ((di, gi), hi) in dl.chunks_exact_mut(k).zip(gl.chunks_exact(n)).zip(input.chunks_exact(k)) {
                        for j in 0..k {
                            di[j] = dot(gi, &w[j * n..(j + 1) * n]) * (R::ONE - hi[j] * hi[j]);
                        }
                    }
                } else {
                    // W^T as a strided view of W: (row stride 1, column stride n).
                    gemm(batch, n, k, gl, (n, 1), w, (1, n), R::ZERO, dl, k);
                    for (dv, hv) in dl.iter_mut().zip(input) {
                        *dv *= R::ONE - *hv * *hv;
                    }
                }
                std::mem::swap(g, d);
            } else {
                if n <= SMALL_N {
                    for (xb, gi) in x_bar.chunks_exact_mut(k_eff.max(1)).zip(gl.chunks_exact(n)) {
                        for (j, v) in xb.iter_mut().enumerate().take(k_eff) {
                            let mut s = R::ZERO;
                            for o in 0..n {
                                s += gi[o] * wt[o * k + j];
                            }
                            *v = s;
                        }
                    }
                } else if k_eff <= SMALL_K {
                    for (xb, gi) in x_bar.chunks_exact_mut(k_eff.max(1)).zip(gl.chunks_exact(n)) {
                        for (j, v) in xb.iter_mut().enumerate().take(k_eff) {
                            *v = dot(gi, &w[j * n..(j + 1) * n]);
                        }
                    }
                } else {
                    gemm(batch, n, k_eff, gl, (n, 1), w, (1, n), R::ZERO, x_bar, k_eff);
                }
                if let Some(tb) = t_bar.as_deref_mut() {
                    if timed {
                        let w_time = &w[k_eff * n..];
                        for (tv, gi) in tb.iter_mut().zip(gl.chunks_exact(n)) {
                            *tv = dot(gi, w_time);
                        }
                    } else {
                        tb.fill(R::ZERO);
                    }
                }
            }
        }
    }
}
