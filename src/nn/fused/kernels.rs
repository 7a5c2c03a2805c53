//! The matrix kernels: register-tiled outer products `C[i, :] = Σ_p a(i, p) · M[p, :]` with
//! fused epilogues, per-sample dot products for thin layers, and column sums.

use super::*;

/// Operands of [`outer`]: for rows `i < rows` and vectors `v < nvec`,
///
/// ```text
/// C(i, v) = Σ_{p < depth} a(i, p) · M[p·ldm + v·LANES .. (v+1)·LANES]
/// ```
///
/// with `a(i, p) = *a.add(i·a_rs + p·a_cs)` and the rows of `M` starting at
/// `m + p·ldm`. They should be 64-byte aligned (an aligned `m` and `ldm` a
/// padded width, see [`pad`]) for speed.
pub(super) struct Outer<R> {
    pub(super) rows: usize,
    pub(super) depth: usize,
    pub(super) nvec: usize,
    pub(super) a: *const R,
    pub(super) a_rs: usize,
    pub(super) a_cs: usize,
    pub(super) m: *const R,
    pub(super) ldm: usize,
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
pub(super) unsafe fn outer<R, V, const RT: usize, const NV: usize, E, D>(k: &Outer<R>, epi: &mut E, row_done: &mut D)
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
pub(super) unsafe fn tile_row<R, V, const RT: usize, const NV: usize, E>(k: &Outer<R>, i: usize, epi: &mut E)
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
pub(super) unsafe fn tile<R, V, const RT: usize, const NV: usize, E>(k: &Outer<R>, i0: usize, v0: usize, epi: &mut E)
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
pub(super) unsafe fn dot<R: Real, V: Simd<R>>(
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
pub(super) unsafe fn dot_n<R: Real, V: Simd<R>, const N: usize>(
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
pub(super) unsafe fn col_sums<R: Real, V: Simd<R>>(rows: usize, nvec: usize, x: *const R, ldx: usize, out: *mut R) {
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
