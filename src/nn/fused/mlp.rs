//! [`FusedMlp`]: parameters in their packed kernel layout, the forward pass and its cache.

use std::fmt::Debug;
use std::sync::Mutex;

use super::*;

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
    pub(super) sizes: Vec<usize>,
    pub(super) time_input: bool,
    pub(super) batch: usize,
    /// Layer inputs: `acts[0]` is `[x, t]` as `[batch, pad(s_0)]`, `acts[l]`
    /// is `h_l` as `[batch, pad(s_l)]` for `l = 1..L-1`.
    pub(super) acts: Vec<AVec<R>>,
    // Scratch: cotangent ping-pong buffers `[batch, pad(width)]`, staging for
    // wide outputs, and the weight / bias cotangent of one layer.
    pub(super) g: AVec<R>,
    pub(super) d: AVec<R>,
    pub(super) tmp: AVec<R>,
    pub(super) dw: AVec<R>,
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
pub(super) struct Packed {
    pub(super) w: usize,
    pub(super) wt: usize,
    pub(super) b: usize,
}

/// A tanh MLP with flat parameters, evaluated with fused CPU kernels.
///
/// See the module docs for the parameter layout. `Send + Sync`; `forward`
/// takes `&self`.
pub struct FusedMlp<R: Real> {
    pub(super) sizes: Vec<usize>,
    pub(super) time_input: bool,
    pub(super) params: Vec<R>,
    /// `(weight offset, bias offset)` of each layer in `params`.
    pub(super) offsets: Vec<(usize, usize)>,
    /// Padded, aligned copies of the parameters for the kernels ([`Packed`]).
    pub(super) packed: AVec<R>,
    pub(super) packed_at: Vec<Packed>,
    /// Buffers for [`Self::forward`], so that it does not allocate per call.
    /// The mutex keeps the type `Sync`; a call that finds it taken (concurrent
    /// use from several threads) works in a fresh cache rather than waiting.
    pub(super) scratch: Mutex<MlpCache<R>>,
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
    pub(super) fn refresh_packed(&mut self) {
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

    pub(super) fn num_layers(&self) -> usize {
        self.sizes.len() - 1
    }

    pub(super) fn check_io(&self, t: &TimeArg<R>, x: &[R], batch: usize, out: &[R]) {
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

    /// [`Self::forward`] over blocks of [`PAR_BLOCK`] samples in parallel (rayon), when the
    /// batch has at least two blocks and rayon has more than one thread; otherwise `forward`.
    /// Every sample's output is computed by the same operations in the same order whatever
    /// the block it falls in, so the result equals `forward`'s bit for bit. For sampling,
    /// where the batch is large and no VJP follows.
    ///
    /// # Panics
    /// As [`Self::forward`].
    pub fn forward_par(&self, t: TimeArg<R>, x: &[R], batch: usize, out: &mut [R]) {
        use rayon::prelude::*;
        let (w_in, w_out) = (self.dim_in(), self.dim_out());
        // A time-only network (no state columns) has no input rows to split.
        if batch < 2 * PAR_BLOCK || rayon::current_num_threads() < 2 || w_in == 0 {
            return self.forward(t, x, batch, out);
        }
        self.check_io(&t, x, batch, out);
        out.par_chunks_mut(PAR_BLOCK * w_out).zip(x.par_chunks(PAR_BLOCK * w_in)).enumerate().for_each(|(k, (o, xk))| {
            let rows = o.len() / w_out;
            let tk = match t {
                TimeArg::PerSample(ts) => TimeArg::PerSample(&ts[k * PAR_BLOCK..k * PAR_BLOCK + rows]),
                other => other,
            };
            // One block takes the network's scratch, the others their own buffers.
            self.forward(tk, xk, rows, o);
        });
    }

    /// Same as [`Self::forward`], and keeps in `cache` what [`Self::vjp`]
    /// needs (the input with its time column, post-activation hidden values).
    /// Allocation-free once `cache` has served this network at this batch size.
    pub fn forward_cached(&self, t: TimeArg<R>, x: &[R], batch: usize, out: &mut [R], cache: &mut MlpCache<R>) {
        self.forward_with(Isa::best::<R>(), t, x, batch, out, cache);
    }

    /// [`Self::forward_cached`] with the kernels of `isa` (which the CPU must
    /// support; [`Isa::best`] checks).
    pub(super) fn forward_with(&self, isa: Isa, t: TimeArg<R>, x: &[R], batch: usize, out: &mut [R], cache: &mut MlpCache<R>) {
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
    pub(super) fn load_input(&self, t: TimeArg<R>, x: &[R], batch: usize, cache: &mut MlpCache<R>) {
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
    pub(super) unsafe fn forward_avx512(&self, cache: &mut MlpCache<R>, out: &mut [R]) {
        // SAFETY: the caller checked the CPU; this copy enables the features.
        unsafe { self.forward_impl::<x86::Zmm<R>>(cache, out) }
    }

    /// [`Self::forward_impl`] compiled for AVX2 + FMA (`f32`/`f64` only).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward_avx2(&self, cache: &mut MlpCache<R>, out: &mut [R]) {
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
    pub(super) unsafe fn forward_impl<V: Simd<R>>(&self, cache: &mut MlpCache<R>, out: &mut [R]) {
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
}
