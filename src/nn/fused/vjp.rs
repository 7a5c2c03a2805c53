//! The vector–Jacobian product of [`FusedMlp`]: input, parameter and time cotangents
//! from the activations saved by the forward pass.

use super::*;

impl<R: Real> FusedMlp<R> {
    /// Vector–Jacobian product at the point saved by the last
    /// [`Self::forward_cached`] into `cache`, for the output cotangent
    /// `a: [batch, dim_out]`:
    ///
    /// * `x_bar: [batch, dim_in]` is overwritten with `a_i^T ∂f(t_i, x_i)/∂x_i`
    ///   for every sample `i`;
    /// * `param_bar: [num_params]` (flat layout) is ACCUMULATED (`+=`) with
    ///   `Σ_i a_i^T ∂f(t_i, x_i)/∂θ`; an empty `param_bar` skips it (the weight
    ///   products are half the work, and a sampler's VJP does not need them);
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
    pub(super) fn vjp_with(&self, isa: Isa, cache: &mut MlpCache<R>, a: &[R], x_bar: &mut [R], param_bar: &mut [R], t_bar: Option<&mut [R]>) {
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
            param_bar.is_empty() || param_bar.len() == self.num_params(),
            "FusedMlp::vjp (sizes {:?}): param_bar has {} entries, expected {} (or none)",
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
    pub(super) unsafe fn vjp_avx512(&self, cache: &mut MlpCache<R>, a: &[R], x_bar: &mut [R], param_bar: &mut [R], t_bar: Option<&mut [R]>) {
        // SAFETY: the caller checked the CPU; this copy enables the features.
        unsafe { self.vjp_impl::<x86::Zmm<R>>(cache, a, x_bar, param_bar, t_bar) }
    }

    /// [`Self::vjp_impl`] compiled for AVX2 + FMA (`f32`/`f64` only).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn vjp_avx2(&self, cache: &mut MlpCache<R>, a: &[R], x_bar: &mut [R], param_bar: &mut [R], t_bar: Option<&mut [R]>) {
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
    pub(super) unsafe fn vjp_impl<V: Simd<R>>(&self, cache: &mut MlpCache<R>, a: &[R], x_bar: &mut [R], param_bar: &mut [R], mut t_bar: Option<&mut [R]>) {
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

            if !param_bar.is_empty() {
                // b_l += Σ_i g[i, :]
                dw.resize(np);
                // SAFETY: `gl` has `batch` rows of `np`, `dw` holds `np`.
                unsafe { col_sums::<R, V>(batch, np / lanes, gl.as_ptr(), np, dw.as_mut_slice().as_mut_ptr()) };
                for (pb, s) in param_bar[b_off..b_off + n].iter_mut().zip(dw.as_slice()) {
                    *pb += *s;
                }
                // SAFETY: as above (shapes of `x` and `gl`).
                unsafe { self.weight_cotangent::<V>(l, batch, x, gl, &mut param_bar[w_off..w_off + k * n], dw) };
            }

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
    pub(super) unsafe fn weight_cotangent<V: Simd<R>>(&self, l: usize, batch: usize, x: &[R], g: &[R], wbar: &mut [R], dw: &mut AVec<R>) {
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
