//! Coupling layers (Dinh et al. 2017, "Density estimation using Real NVP"): the coordinates are
//! split by a [`Mask`] into a conditioning set `x_A`, passed through unchanged, and a
//! transformed set `x_B`, mapped elementwise by a bijection whose parameters a network computes
//! from `x_A`. The Jacobian is triangular, so `log|det|` is the sum of the elementwise
//! log-derivatives.
//!
//! Conditioners are tanh MLPs on the fused CPU path ([`crate::nn::fused`]) with PyTorch's
//! default `nn.Linear` initialisation, except the last layer, which starts at zero so that a
//! fresh layer is the identity.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rand::{RngExt, SeedableRng};

use super::{check_cotangents, check_input, spline, Flow};
use crate::nn::fused::{FusedMlp, MlpCache, TimeArg};
use crate::{Error, Result};

/// Which coordinates condition (`cond`) and which are transformed (`trans`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    /// Conditioning indices `A`.
    pub cond: Vec<usize>,
    /// Transformed indices `B`.
    pub trans: Vec<usize>,
}

impl Mask {
    /// Condition on the indices `i` with `i % 2 == parity`, transform the others (RealNVP's
    /// checkerboard in 1D). For `dim = 2` and parity 0: condition on `x₀`, transform `x₁`.
    ///
    /// # Errors
    /// `InvalidArgument` if `dim < 2` (one side would be empty).
    pub fn parity(dim: usize, parity: usize) -> Result<Self> {
        if dim < 2 {
            return Err(Error::invalid("dim", format!("a coupling layer needs dim ≥ 2, got {dim}")));
        }
        let (cond, trans) = (0..dim).partition(|i| i % 2 == parity % 2);
        Ok(Mask { cond, trans })
    }
}

/// The conditioner network and its split of the coordinates.
#[derive(Clone, Debug)]
struct Conditioner {
    dim: usize,
    mask: Mask,
    net: FusedMlp<f64>,
}

impl Conditioner {
    fn new(dim: usize, mask: Mask, hidden: &[usize], outputs_per_coord: usize, seed: u64) -> Self {
        let mut sizes = vec![mask.cond.len()];
        sizes.extend(hidden);
        sizes.push(mask.trans.len() * outputs_per_coord);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut params = Vec::with_capacity(FusedMlp::<f64>::param_count(&sizes));
        for l in 0..sizes.len() - 1 {
            let n = sizes[l] * sizes[l + 1] + sizes[l + 1];
            if l + 2 == sizes.len() {
                params.extend(std::iter::repeat_n(0.0, n));
            } else {
                let bound = 1.0 / (sizes[l] as f64).sqrt();
                params.extend((0..n).map(|_| rng.random_range(-bound..bound)));
            }
        }
        Conditioner { dim, mask, net: FusedMlp::new(sizes, false, params) }
    }

    fn gather_cond(&self, x: ArrayView2<f64>) -> Vec<f64> {
        let mut a = Vec::with_capacity(x.nrows() * self.mask.cond.len());
        for row in x.rows() {
            a.extend(self.mask.cond.iter().map(|&i| row[i]));
        }
        a
    }

    /// Network outputs `[batch, n_out]` for the conditioning part of `x`.
    fn outputs(&self, x: ArrayView2<f64>) -> Vec<f64> {
        let a = self.gather_cond(x);
        let mut out = vec![0.0; x.nrows() * self.net.dim_out()];
        self.net.forward(TimeArg::None, &a, x.nrows(), &mut out);
        out
    }

    /// Outputs, keeping the forward state for [`Self::vjp`].
    fn outputs_cached(&self, x: ArrayView2<f64>, cache: &mut MlpCache<f64>) -> Vec<f64> {
        let a = self.gather_cond(x);
        let mut out = vec![0.0; x.nrows() * self.net.dim_out()];
        self.net.forward_cached(TimeArg::None, &a, x.nrows(), &mut out, cache);
        out
    }

    /// Adds `out_barᵀ ∂out/∂x_A` into the conditioning columns of `x_bar`.
    fn vjp(&self, cache: &mut MlpCache<f64>, out_bar: &[f64], x_bar: &mut Array2<f64>, param_bar: &mut [f64]) {
        let nc = self.mask.cond.len();
        let mut a_bar = vec![0.0; x_bar.nrows() * nc];
        self.net.vjp(cache, out_bar, &mut a_bar, param_bar, None);
        for (mut row, g) in x_bar.rows_mut().into_iter().zip(a_bar.chunks(nc)) {
            for (&i, gi) in self.mask.cond.iter().zip(g) {
                row[i] += gi;
            }
        }
    }
}

/// Affine coupling (RealNVP): `x_B = z_B ⊙ exp(s) + t`, `x_A = z_A`, with
/// `(ŝ, t) = NN(z_A)` and the scale bounded as `s = s_max · tanh(ŝ / s_max)`, so that no
/// parameter update can make `exp(s)` overflow; `log|det ∂x/∂z| = Σ s`.
///
/// The network's outputs are `[ŝ (|B| columns), t (|B| columns)]`.
#[derive(Clone, Debug)]
pub struct AffineCoupling {
    cond: Conditioner,
    scale_bound: f64,
}

impl AffineCoupling {
    /// A fresh (identity) layer on `dim = mask.cond.len() + mask.trans.len()` coordinates with
    /// conditioner hidden widths `hidden` and scale bound `s_max > 0`.
    ///
    /// # Errors
    /// `InvalidArgument` if the mask does not partition `0..dim` or `scale_bound` is not
    /// positive and finite.
    pub fn new(mask: Mask, hidden: &[usize], scale_bound: f64, seed: u64) -> Result<Self> {
        let dim = check_mask(&mask)?;
        if !(scale_bound > 0.0 && scale_bound.is_finite()) {
            return Err(Error::invalid("scale_bound", format!("must be positive and finite, got {scale_bound}")));
        }
        Ok(AffineCoupling { cond: Conditioner::new(dim, mask, hidden, 2, seed), scale_bound })
    }

    /// `(s, ŝ-derivative factor ds/dŝ)` for one raw scale.
    fn scale(&self, raw: f64) -> (f64, f64) {
        let th = (raw / self.scale_bound).tanh();
        (self.scale_bound * th, 1.0 - th * th)
    }
}

fn check_mask(mask: &Mask) -> Result<usize> {
    let dim = mask.cond.len() + mask.trans.len();
    let mut seen = vec![false; dim];
    for &i in mask.cond.iter().chain(&mask.trans) {
        if i >= dim || seen[i] {
            return Err(Error::invalid("mask", format!("{mask:?} is not a partition of 0..{dim}")));
        }
        seen[i] = true;
    }
    if mask.cond.is_empty() || mask.trans.is_empty() {
        return Err(Error::invalid("mask", format!("{mask:?} needs both sets non-empty")));
    }
    Ok(dim)
}

impl Flow for AffineCoupling {
    fn dim(&self) -> usize {
        self.cond.dim
    }

    fn name(&self) -> String {
        format!("affine_coupling(transform {:?}, hidden {:?}, s_max {})", self.cond.mask.trans, hidden(&self.cond.net), self.scale_bound)
    }

    fn num_params(&self) -> usize {
        self.cond.net.num_params()
    }

    fn params(&self) -> Vec<f64> {
        self.cond.net.params().to_vec()
    }

    fn set_params(&mut self, params: &[f64]) -> Result<()> {
        super::check_params(&self.name(), params, self.cond.net.num_params())?;
        self.cond.net.set_params(params);
        Ok(())
    }

    fn forward(&self, z: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        check_input("flow input z", z, self.dim())?;
        let out = self.cond.outputs(z);
        let nt = self.cond.mask.trans.len();
        let mut x = z.to_owned();
        let mut ld = Array1::zeros(z.nrows());
        for (b, mut row) in x.rows_mut().into_iter().enumerate() {
            let o = &out[b * 2 * nt..(b + 1) * 2 * nt];
            for (j, &i) in self.cond.mask.trans.iter().enumerate() {
                let (s, _) = self.scale(o[j]);
                row[i] = row[i] * s.exp() + o[nt + j];
                ld[b] += s;
            }
        }
        Ok((x, ld))
    }

    fn inverse(&self, x: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        check_input("flow input x", x, self.dim())?;
        let out = self.cond.outputs(x);
        let nt = self.cond.mask.trans.len();
        let mut z = x.to_owned();
        let mut ld = Array1::zeros(x.nrows());
        for (b, mut row) in z.rows_mut().into_iter().enumerate() {
            let o = &out[b * 2 * nt..(b + 1) * 2 * nt];
            for (j, &i) in self.cond.mask.trans.iter().enumerate() {
                let (s, _) = self.scale(o[j]);
                row[i] = (row[i] - o[nt + j]) * (-s).exp();
                ld[b] -= s;
            }
        }
        Ok((z, ld))
    }

    fn forward_vjp(&self, z: ArrayView2<f64>, x_bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &mut [f64]) -> Result<Array2<f64>> {
        check_input("flow input z", z, self.dim())?;
        check_cotangents(z, x_bar, ld_bar, param_bar, self.num_params())?;
        let mut cache = MlpCache::new();
        let out = self.cond.outputs_cached(z, &mut cache);
        let nt = self.cond.mask.trans.len();
        let mut out_bar = vec![0.0; out.len()];
        let mut z_bar = x_bar.to_owned();
        for b in 0..z.nrows() {
            let o = &out[b * 2 * nt..(b + 1) * 2 * nt];
            let ob = &mut out_bar[b * 2 * nt..(b + 1) * 2 * nt];
            for (j, &i) in self.cond.mask.trans.iter().enumerate() {
                let (s, ds) = self.scale(o[j]);
                let e = s.exp();
                let xb = x_bar[[b, i]];
                z_bar[[b, i]] = xb * e;
                ob[j] = (xb * z[[b, i]] * e + ld_bar[b]) * ds;
                ob[nt + j] = xb;
            }
        }
        self.cond.vjp(&mut cache, &out_bar, &mut z_bar, param_bar);
        Ok(z_bar)
    }

    fn inverse_vjp(&self, x: ArrayView2<f64>, z_bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &mut [f64]) -> Result<Array2<f64>> {
        check_input("flow input x", x, self.dim())?;
        check_cotangents(x, z_bar, ld_bar, param_bar, self.num_params())?;
        let mut cache = MlpCache::new();
        let out = self.cond.outputs_cached(x, &mut cache);
        let nt = self.cond.mask.trans.len();
        let mut out_bar = vec![0.0; out.len()];
        let mut x_bar = z_bar.to_owned();
        for b in 0..x.nrows() {
            let o = &out[b * 2 * nt..(b + 1) * 2 * nt];
            let ob = &mut out_bar[b * 2 * nt..(b + 1) * 2 * nt];
            for (j, &i) in self.cond.mask.trans.iter().enumerate() {
                let (s, ds) = self.scale(o[j]);
                let e = (-s).exp();
                let zb = z_bar[[b, i]];
                let zi = (x[[b, i]] - o[nt + j]) * e;
                x_bar[[b, i]] = zb * e;
                ob[j] = (-zb * zi - ld_bar[b]) * ds;
                ob[nt + j] = -zb * e;
            }
        }
        self.cond.vjp(&mut cache, &out_bar, &mut x_bar, param_bar);
        Ok(x_bar)
    }
}

fn hidden(net: &FusedMlp<f64>) -> Vec<usize> {
    let s = net.sizes();
    s[1..s.len() - 1].to_vec()
}

/// Rational-quadratic spline coupling (Durkan et al. 2019, "Neural spline flows"): each
/// transformed coordinate goes through a monotone rational-quadratic spline on `K` bins over
/// `[−B, B]` with identity tails outside ([`super::spline`]), its `3K − 1` parameters computed
/// by the network from `z_A`.
///
/// The network's outputs are, per transformed coordinate in mask order, `[widths (K),
/// heights (K), interior derivatives (K − 1)]`.
#[derive(Clone, Debug)]
pub struct SplineCoupling {
    cond: Conditioner,
    bins: usize,
    bound: f64,
}

impl SplineCoupling {
    /// A fresh (identity) layer with `bins ≥ 2` bins on `[−bound, bound]`.
    ///
    /// # Errors
    /// `InvalidArgument` if the mask does not partition `0..dim`, `bins` is outside
    /// `2..1000` or `bound` is not positive and finite.
    pub fn new(mask: Mask, hidden: &[usize], bins: usize, bound: f64, seed: u64) -> Result<Self> {
        let dim = check_mask(&mask)?;
        if !(bins >= 2 && (bins as f64) * spline::MIN_BIN_WIDTH < 1.0) {
            return Err(Error::invalid("bins", format!("must be in 2..1000, got {bins}")));
        }
        if !(bound > 0.0 && bound.is_finite()) {
            return Err(Error::invalid("bound", format!("must be positive and finite, got {bound}")));
        }
        Ok(SplineCoupling { cond: Conditioner::new(dim, mask, hidden, 3 * bins - 1, seed), bins, bound })
    }

    fn per_coord(&self) -> usize {
        3 * self.bins - 1
    }

    /// Applies `f(value, raw, knots) → (new value, log-derivative)` to the transformed columns.
    fn map(&self, input: ArrayView2<f64>, f: impl Fn(f64, &spline::Knots) -> (f64, f64)) -> (Array2<f64>, Array1<f64>) {
        let out = self.cond.outputs(input);
        let (nt, pc) = (self.cond.mask.trans.len(), self.per_coord());
        let mut res = input.to_owned();
        let mut ld = Array1::zeros(input.nrows());
        let mut kn = spline::Knots::default();
        for (b, mut row) in res.rows_mut().into_iter().enumerate() {
            for (j, &i) in self.cond.mask.trans.iter().enumerate() {
                let raw = &out[(b * nt + j) * pc..(b * nt + j + 1) * pc];
                kn.compute(raw, self.bins, self.bound);
                let (v, l) = f(row[i], &kn);
                row[i] = v;
                ld[b] += l;
            }
        }
        (res, ld)
    }

    #[allow(clippy::type_complexity)]
    fn map_vjp(
        &self,
        input: ArrayView2<f64>,
        bar: ArrayView2<f64>,
        ld_bar: ArrayView1<f64>,
        param_bar: &mut [f64],
        f: impl Fn(f64, &[f64], &spline::Knots, f64, f64, &mut [f64], &mut [Vec<f64>; 3]) -> f64,
    ) -> Result<Array2<f64>> {
        check_cotangents(input, bar, ld_bar, param_bar, self.num_params())?;
        let mut cache = MlpCache::new();
        let out = self.cond.outputs_cached(input, &mut cache);
        let (nt, pc) = (self.cond.mask.trans.len(), self.per_coord());
        let mut out_bar = vec![0.0; out.len()];
        let mut in_bar = bar.to_owned();
        let mut kn = spline::Knots::default();
        let mut scratch = Default::default();
        for b in 0..input.nrows() {
            for (j, &i) in self.cond.mask.trans.iter().enumerate() {
                let r = (b * nt + j) * pc..(b * nt + j + 1) * pc;
                kn.compute(&out[r.clone()], self.bins, self.bound);
                in_bar[[b, i]] = f(input[[b, i]], &out[r.clone()], &kn, bar[[b, i]], ld_bar[b], &mut out_bar[r], &mut scratch);
            }
        }
        self.cond.vjp(&mut cache, &out_bar, &mut in_bar, param_bar);
        Ok(in_bar)
    }
}

impl Flow for SplineCoupling {
    fn dim(&self) -> usize {
        self.cond.dim
    }

    fn name(&self) -> String {
        format!("spline_coupling(transform {:?}, hidden {:?}, {} bins on [-{b}, {b}])", self.cond.mask.trans, hidden(&self.cond.net), self.bins, b = self.bound)
    }

    fn num_params(&self) -> usize {
        self.cond.net.num_params()
    }

    fn params(&self) -> Vec<f64> {
        self.cond.net.params().to_vec()
    }

    fn set_params(&mut self, params: &[f64]) -> Result<()> {
        super::check_params(&self.name(), params, self.cond.net.num_params())?;
        self.cond.net.set_params(params);
        Ok(())
    }

    fn forward(&self, z: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        check_input("flow input z", z, self.dim())?;
        Ok(self.map(z, |v, kn| spline::forward(v, kn, self.bound)))
    }

    fn inverse(&self, x: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        check_input("flow input x", x, self.dim())?;
        Ok(self.map(x, |v, kn| spline::inverse(v, kn, self.bound)))
    }

    fn forward_vjp(&self, z: ArrayView2<f64>, x_bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &mut [f64]) -> Result<Array2<f64>> {
        check_input("flow input z", z, self.dim())?;
        self.map_vjp(z, x_bar, ld_bar, param_bar, |v, raw, kn, vb, lb, rb, sc| spline::forward_vjp(v, raw, kn, self.bins, self.bound, vb, lb, rb, sc))
    }

    fn inverse_vjp(&self, x: ArrayView2<f64>, z_bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &mut [f64]) -> Result<Array2<f64>> {
        check_input("flow input x", x, self.dim())?;
        self.map_vjp(x, z_bar, ld_bar, param_bar, |v, raw, kn, vb, lb, rb, sc| spline::inverse_vjp(v, raw, kn, self.bins, self.bound, vb, lb, rb, sc))
    }
}
