//! The SIMD register abstraction of the kernels ([`Simd`]), its portable implementation
//! and the run-time choice of instruction set ([`Isa`]).

use super::*;

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
pub(super) trait Simd<R: Real>: Copy {
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
pub(super) struct Lanes<R>([R; 8]);

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

/// Which [`Simd`] implementation runs the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The fastest implementation for element type `R` on this CPU: the x86
    /// kernels exist for `f32` and `f64` only.
    pub(super) fn best<R: 'static>() -> Isa {
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
