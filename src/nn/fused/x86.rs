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
