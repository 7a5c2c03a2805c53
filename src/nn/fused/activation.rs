//! `tanh` over slices for the fused forward pass: exp-based for `f64` (to round-off), a
//! rational approximation for `f32`, vectorised with AVX-512 / AVX2 where the CPU has it.

/// `[1/n!, 1/(n−1)!, …, 1/1!, 1/0!]` for Horner's rule (`N = n + 1` entries).
pub(super) const fn inv_factorials<const N: usize>() -> [f64; N] {
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
pub(super) const EXPM1_C: [f64; 18] = {
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
pub(super) const EXP_C: [f64; 14] = inv_factorials::<14>();

/// `tanh(x)` in f64 without branches, so that loops over it vectorise:
/// `tanh|x| = m / (m + 2)` with `m = expm1(2|x|)`; `m` by its Taylor series (degree 18, remainder
/// below 1e-16 relative) for `2|x| < 1.1`, else `exp(2|x|) − 1` with `exp` by the reduction
/// `2|x| = k ln 2 + r`, `|r| ≤ ln 2 / 2` (Cody–Waite split of ln 2) and a degree-13 Taylor
/// polynomial; `2|x|` is capped at 44, where `tanh = 1` in f64. Within 4 ulp of libm (unit test).
#[inline(always)]
pub(super) fn tanh_f64(x: f64) -> f64 {
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

/// In-place `tanh_f64` over a slice; on x86-64 a copy compiled for AVX-512 or AVX2+FMA is
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
pub(super) unsafe fn tanh_f64_slice_avx512(xs: &mut [f64]) {
    xs.iter_mut().for_each(|v| *v = tanh_f64(*v));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn tanh_f64_slice_avx2(xs: &mut [f64]) {
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
pub(super) unsafe fn tanh_f32_slice_avx512(xs: &mut [f32]) {
    tanh_f32_slice_generic::<64>(xs);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn tanh_f32_slice_avx2(xs: &mut [f32]) {
    tanh_f32_slice_generic::<32>(xs);
}

/// [`tanh_f32`] over blocks of `B` elements (four vector registers in the
/// SIMD copies), one step of the formula at a time across the block: each
/// element is a chain of ~16 dependent operations (~60 cycles), and one
/// vector at a time left the out-of-order window too few independent chains
/// to keep the FMA units and the divider busy (about 1.25× slower).
#[inline(always)]
pub(super) fn tanh_f32_slice_generic<const B: usize>(xs: &mut [f32]) {
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
pub(super) const TANH_A: [f32; 7] = [
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
pub(super) const TANH_B: [f32; 4] = [1.198_258_394_667_02e-6, 1.185_347_056_866_54e-4, 2.268_434_632_439e-3, 4.893_525_185_543_85e-3];

/// `x` clamped to ±7.9053111, where the rational reaches ±1; NaN stays NaN.
/// (`f32::clamp` compiles to one `max` and one `min`; the former
/// `if … else if …` chain became two compares, an `and` and two blends.)
#[inline(always)]
pub(super) fn tanh_f32_clamp(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    x.clamp(-CLAMP, CLAMP)
}

/// Scalar form of [`tanh_f32_slice`], same operations in the same order.
#[inline(always)]
pub(super) fn tanh_f32(x: f32) -> f32 {
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
