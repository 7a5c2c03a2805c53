//! The monotone rational-quadratic spline of Durkan, Bekasov, Murray & Papamakarios (2019,
//! "Neural spline flows", eqs. 4–8 and appendix A), elementwise, with identity (linear) tails
//! outside `[−B, B]`, and its reverse-mode derivatives.
//!
//! A spline on `K` bins is given by `3K − 1` unconstrained numbers: `K` widths, `K` heights
//! and `K − 1` interior derivatives. Widths and heights go through a softmax, a floor
//! (`MIN_BIN_WIDTH`, `MIN_BIN_HEIGHT`) and a cumulative sum to knots `x_k`, `y_k` on
//! `[−B, B]`; derivatives are `δ = MIN_DERIVATIVE + softplus(r + c₀)` with `c₀` chosen so that
//! `r = 0` gives `δ = 1`; the boundary derivatives are 1, matching the tails. All-zero raw
//! parameters are therefore exactly the identity (nflows puts no `c₀`, so its zero is not).

/// Smallest bin width, as a fraction of `2B` (nflows' default).
pub const MIN_BIN_WIDTH: f64 = 1e-3;
/// Smallest bin height, as a fraction of `2B`.
pub const MIN_BIN_HEIGHT: f64 = 1e-3;
/// Smallest knot derivative.
pub const MIN_DERIVATIVE: f64 = 1e-3;

/// `c₀ = log(exp(1 − MIN_DERIVATIVE) − 1)`, so `MIN_DERIVATIVE + softplus(c₀) = 1`.
fn c0() -> f64 {
    (1.0 - MIN_DERIVATIVE).exp_m1().ln()
}

fn softplus(v: f64) -> f64 {
    if v > 30.0 {
        v
    } else {
        v.exp().ln_1p()
    }
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// Knots of one spline, plus the softmax values its VJP needs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Knots {
    pub xk: Vec<f64>,
    pub yk: Vec<f64>,
    pub d: Vec<f64>,
    sw: Vec<f64>,
    sh: Vec<f64>,
}

fn softmax_into(raw: &[f64], out: &mut Vec<f64>) {
    let m = raw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    out.clear();
    out.extend(raw.iter().map(|r| (r - m).exp()));
    let s: f64 = out.iter().sum();
    out.iter_mut().for_each(|v| *v /= s);
}

fn knots_from(soft: &[f64], min: f64, bound: f64, out: &mut Vec<f64>) {
    let k = soft.len();
    out.clear();
    out.push(-bound);
    let mut acc = 0.0;
    for s in &soft[..k - 1] {
        acc += min + (1.0 - min * k as f64) * s;
        out.push(-bound + 2.0 * bound * acc);
    }
    out.push(bound);
}

impl Knots {
    /// Knots from raw parameters `raw = [widths (K), heights (K), derivatives (K − 1)]`.
    pub fn compute(&mut self, raw: &[f64], bins: usize, bound: f64) {
        debug_assert_eq!(raw.len(), 3 * bins - 1);
        softmax_into(&raw[..bins], &mut self.sw);
        softmax_into(&raw[bins..2 * bins], &mut self.sh);
        knots_from(&self.sw, MIN_BIN_WIDTH, bound, &mut self.xk);
        knots_from(&self.sh, MIN_BIN_HEIGHT, bound, &mut self.yk);
        let c = c0();
        self.d.clear();
        self.d.push(1.0);
        self.d.extend(raw[2 * bins..].iter().map(|r| MIN_DERIVATIVE + softplus(r + c)));
        self.d.push(1.0);
    }

    /// Accumulate `raw_bar += ∂(knots)/∂raw ᵀ · (xk_bar, yk_bar, d_bar)`. The end knots and end
    /// derivatives are constants, so their cotangents are ignored.
    pub fn vjp(&self, raw: &[f64], bins: usize, bound: f64, xk_bar: &[f64], yk_bar: &[f64], d_bar: &[f64], raw_bar: &mut [f64]) {
        let (wb, rest) = raw_bar.split_at_mut(bins);
        let (hb, db) = rest.split_at_mut(bins);
        softmax_knots_vjp(&self.sw, MIN_BIN_WIDTH, bound, xk_bar, wb);
        softmax_knots_vjp(&self.sh, MIN_BIN_HEIGHT, bound, yk_bar, hb);
        let c = c0();
        for (i, g) in db.iter_mut().enumerate() {
            *g += d_bar[i + 1] * sigmoid(raw[2 * bins + i] + c);
        }
    }
}

/// Knot `k = 1..K−1` is `−B + 2B Σ_{i<k} (m + (1 − mK) s_i)` with `s = softmax(r)`.
fn softmax_knots_vjp(soft: &[f64], min: f64, bound: f64, knot_bar: &[f64], raw_bar: &mut [f64]) {
    let k = soft.len();
    // s_bar_i = 2B (1 − mK) Σ_{k' = i+1}^{K−1} knot_bar[k'] (suffix sums over interior knots).
    let mut s_bar = vec![0.0; k];
    let mut acc = 0.0;
    for i in (0..k - 1).rev() {
        acc += knot_bar[i + 1];
        s_bar[i] = 2.0 * bound * (1.0 - min * k as f64) * acc;
    }
    let dot: f64 = soft.iter().zip(&s_bar).map(|(s, g)| s * g).sum();
    for i in 0..k {
        raw_bar[i] += soft[i] * (s_bar[i] - dot);
    }
}

/// The bin `k` with `knots[k] ≤ v < knots[k+1]`, `v` clipped into the knot range first.
pub(crate) fn find_bin(knots: &[f64], v: f64) -> usize {
    let k = knots.len() - 1;
    let v = v.clamp(knots[0], knots[k]);
    // Binary search for the last knot ≤ v among knots[0..k].
    let (mut lo, mut hi) = (0usize, k);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if knots[mid] <= v {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// One bin's data: `(x_k, x_{k+1}, y_k, y_{k+1}, δ_k, δ_{k+1})`.
pub(crate) type Bin = [f64; 6];

pub(crate) fn bin(kn: &Knots, k: usize) -> Bin {
    [kn.xk[k], kn.xk[k + 1], kn.yk[k], kn.yk[k + 1], kn.d[k], kn.d[k + 1]]
}

/// `(y, log dy/dx)` of the rational-quadratic segment on one bin (Durkan et al. 2019, eqs. 4, 5):
/// with `w = x_{k+1} − x_k`, `h = y_{k+1} − y_k`, `s = h/w`, `ξ = (x − x_k)/w`,
/// `y = y_k + h(s ξ² + δ_k ξ(1−ξ)) / (s + (δ_k + δ_{k+1} − 2s) ξ(1−ξ))` and
/// `dy/dx = s² (δ_{k+1} ξ² + 2 s ξ(1−ξ) + δ_k (1−ξ)²) / (s + (δ_k + δ_{k+1} − 2s) ξ(1−ξ))²`.
pub(crate) fn rq_eval(x: f64, b: &Bin) -> (f64, f64) {
    let g = Segment::new(x, b);
    (b[2] + g.num / g.den, 2.0 * g.s.ln() + g.p.ln() - 2.0 * g.den.ln())
}

/// The intermediate values of [`rq_eval`] that its VJP reuses (`p` is the bracket of `dy/dx`).
struct Segment {
    w: f64,
    h: f64,
    s: f64,
    xi: f64,
    q: f64,
    num: f64,
    den: f64,
    p: f64,
}

impl Segment {
    fn new(x: f64, b: &Bin) -> Self {
        let [x0, x1, y0, y1, d0, d1] = *b;
        let w = x1 - x0;
        let h = y1 - y0;
        let s = h / w;
        let xi = ((x - x0) / w).clamp(0.0, 1.0);
        let q = xi * (1.0 - xi);
        let num = h * (s * xi * xi + d0 * q);
        let den = s + (d0 + d1 - 2.0 * s) * q;
        let p = d1 * xi * xi + 2.0 * s * q + d0 * (1.0 - xi) * (1.0 - xi);
        Segment { w, h, s, xi, q, num, den, p }
    }
}

/// Reverse mode of [`rq_eval`]: cotangents `(y_bar, ld_bar)` to `(x_bar, bin_bar)`.
pub(crate) fn rq_eval_vjp(x: f64, b: &Bin, y_bar: f64, ld_bar: f64) -> (f64, Bin) {
    let (d0, d1) = (b[4], b[5]);
    let Segment { w, h, s, xi, q, num, den, p } = Segment::new(x, b);

    let num_bar = y_bar / den;
    let den_bar = -y_bar * num / (den * den) - 2.0 * ld_bar / den;
    let p_bar = ld_bar / p;
    let mut s_bar = 2.0 * ld_bar / s;
    let (mut h_bar, mut xi_bar, mut q_bar, mut d0_bar, mut d1_bar) = (0.0, 0.0, 0.0, 0.0, 0.0);
    // p = δ1 ξ² + 2 s q + δ0 (1 − ξ)²
    d1_bar += p_bar * xi * xi;
    s_bar += p_bar * 2.0 * q;
    q_bar += p_bar * 2.0 * s;
    d0_bar += p_bar * (1.0 - xi) * (1.0 - xi);
    xi_bar += p_bar * (2.0 * d1 * xi - 2.0 * d0 * (1.0 - xi));
    // num = h (s ξ² + δ0 q)
    h_bar += num_bar * (s * xi * xi + d0 * q);
    s_bar += num_bar * h * xi * xi;
    xi_bar += num_bar * h * 2.0 * s * xi;
    d0_bar += num_bar * h * q;
    q_bar += num_bar * h * d0;
    // den = s + (δ0 + δ1 − 2s) q
    s_bar += den_bar * (1.0 - 2.0 * q);
    d0_bar += den_bar * q;
    d1_bar += den_bar * q;
    q_bar += den_bar * (d0 + d1 - 2.0 * s);
    // q = ξ − ξ²
    xi_bar += q_bar * (1.0 - 2.0 * xi);
    // ξ = (x − x0) / w, s = h / w
    let x_bar = xi_bar / w;
    let mut x0_bar = -xi_bar / w;
    let w_bar = -xi_bar * xi / w - s_bar * s / w;
    h_bar += s_bar / w;
    // h = y1 − y0 and w = x1 − x0; y = y0 + num/den adds y_bar to y0.
    let x1_bar = w_bar;
    x0_bar -= w_bar;
    (x_bar, [x0_bar, x1_bar, y_bar - h_bar, h_bar, d0_bar, d1_bar])
}

/// Inverse of one segment: `x` with `rq_eval(x).0 = y`, from the quadratic of Durkan et al.
/// (2019, appendix A) in its cancellation-free form `ξ = 2c / (−b − √(b² − 4ac))`; the
/// discriminant is floored at 0 and `ξ` clipped to `[0, 1]`, so round-off never yields NaN.
pub(crate) fn rq_invert(y: f64, b: &Bin) -> f64 {
    let [x0, x1, y0, y1, d0, d1] = *b;
    let w = x1 - x0;
    let h = y1 - y0;
    let s = h / w;
    let dy = (y - y0).clamp(0.0, h);
    let e = d0 + d1 - 2.0 * s;
    let a = dy * e + h * (s - d0);
    let bq = h * d0 - dy * e;
    let c = -s * dy;
    let disc = (bq * bq - 4.0 * a * c).max(0.0);
    let denom = -bq - disc.sqrt();
    let xi = if denom == 0.0 { 0.0 } else { (2.0 * c / denom).clamp(0.0, 1.0) };
    x0 + xi * w
}

/// An elementwise spline with tails: the forward map `(y, log dy/dx)` of `x` under the spline
/// with knots `kn` on `[−bound, bound]`, identity outside.
pub(crate) fn forward(x: f64, kn: &Knots, bound: f64) -> (f64, f64) {
    if x < -bound || x > bound {
        return (x, 0.0);
    }
    let k = find_bin(&kn.xk, x);
    rq_eval(x, &bin(kn, k))
}

/// The inverse map `(x, log dx/dy)` of [`forward`].
pub(crate) fn inverse(y: f64, kn: &Knots, bound: f64) -> (f64, f64) {
    if y < -bound || y > bound {
        return (y, 0.0);
    }
    let k = find_bin(&kn.yk, y);
    let b = bin(kn, k);
    let x = rq_invert(y, &b);
    (x, -rq_eval(x, &b).1)
}

/// Reverse mode of [`forward`] at `x`: returns `x_bar` and accumulates `raw_bar`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_vjp(
    x: f64,
    raw: &[f64],
    kn: &Knots,
    bins: usize,
    bound: f64,
    y_bar: f64,
    ld_bar: f64,
    raw_bar: &mut [f64],
    scratch: &mut [Vec<f64>; 3],
) -> f64 {
    if x < -bound || x > bound {
        return y_bar;
    }
    let k = find_bin(&kn.xk, x);
    let (x_bar, bb) = rq_eval_vjp(x, &bin(kn, k), y_bar, ld_bar);
    scatter_bin_vjp(raw, kn, bins, bound, k, &bb, raw_bar, scratch);
    x_bar
}

/// Reverse mode of [`inverse`] at `y` for cotangents `(x_bar, ld_bar)` of `(x, log dx/dy)`:
/// returns `y_bar` and accumulates `raw_bar`.
///
/// By the implicit function theorem, with `f` the forward segment and `g = log f'`:
/// `∂x/∂y = 1/f'`, `∂x/∂θ = −f_θ/f'`, and `log dx/dy = −g(x(y, θ), θ)`. With
/// `A = x_bar − ld_bar ∂g/∂x`, `y_bar = A/f'` and `θ_bar = −(A/f') f_θ − ld_bar g_θ`, which is
/// one call of the forward segment's VJP with cotangents `(−A/f', −ld_bar)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn inverse_vjp(
    y: f64,
    raw: &[f64],
    kn: &Knots,
    bins: usize,
    bound: f64,
    x_bar: f64,
    ld_bar: f64,
    raw_bar: &mut [f64],
    scratch: &mut [Vec<f64>; 3],
) -> f64 {
    if y < -bound || y > bound {
        return x_bar;
    }
    let k = find_bin(&kn.yk, y);
    let b = bin(kn, k);
    let x = rq_invert(y, &b);
    let (_, ld) = rq_eval(x, &b);
    let fprime = ld.exp();
    let (gx, _) = rq_eval_vjp(x, &b, 0.0, 1.0);
    let a = x_bar - ld_bar * gx;
    let (_, bb) = rq_eval_vjp(x, &b, -a / fprime, -ld_bar);
    scatter_bin_vjp(raw, kn, bins, bound, k, &bb, raw_bar, scratch);
    a / fprime
}

#[allow(clippy::too_many_arguments)]
fn scatter_bin_vjp(raw: &[f64], kn: &Knots, bins: usize, bound: f64, k: usize, bb: &Bin, raw_bar: &mut [f64], scratch: &mut [Vec<f64>; 3]) {
    for v in scratch.iter_mut() {
        v.clear();
        v.resize(bins + 1, 0.0);
    }
    let [xb, yb, db] = scratch;
    xb[k] = bb[0];
    xb[k + 1] = bb[1];
    yb[k] = bb[2];
    yb[k + 1] = bb[3];
    db[k] = bb[4];
    db[k + 1] = bb[5];
    kn.vjp(raw, bins, bound, xb, yb, db, raw_bar);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knots(raw: &[f64], bins: usize, bound: f64) -> Knots {
        let mut kn = Knots::default();
        kn.compute(raw, bins, bound);
        kn
    }

    fn raw(bins: usize, seed: u64) -> Vec<f64> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..3 * bins - 1).map(|_| rng.random_range(-1.5..1.5)).collect()
    }

    #[test]
    fn zero_parameters_are_the_identity() {
        // Uniform bins, δ = 1 everywhere: every segment is the line y = x (eq. 4 with s = δ = 1).
        let kn = knots(&[0.0; 3 * 5 - 1], 5, 2.0);
        for x in [-2.0, -1.3, 0.0, 0.41, 1.99, 2.0] {
            let (y, ld) = forward(x, &kn, 2.0);
            assert!((y - x).abs() < 1e-14 && ld.abs() < 1e-14, "x = {x}: y = {y}, ld = {ld}");
        }
    }

    #[test]
    fn inverse_inverts_and_is_finite_at_and_beyond_the_bounds() {
        let (bins, bound) = (8, 3.0);
        let r = raw(bins, 1);
        let kn = knots(&r, bins, bound);
        for i in 0..=600 {
            let x = -3.0 + 6.0 * i as f64 / 600.0;
            let (y, ld) = forward(x, &kn, bound);
            let (x2, ld2) = inverse(y, &kn, bound);
            assert!((x2 - x).abs() < 1e-11, "x = {x}: inverse gives {x2}");
            assert!((ld + ld2).abs() < 1e-10);
        }
        // At the boundaries exactly, just inside, beyond, and at extreme values: finite.
        for y in [-3.0, 3.0, -3.0 + 1e-15, 3.0 - 1e-15, -3.0 - 1e-12, 3.0 + 1e-12, 1e300, -1e300, f64::MAX] {
            let (x, ld) = inverse(y, &kn, bound);
            assert!(x.is_finite() && ld.is_finite(), "y = {y}: x = {x}, ld = {ld}");
        }
        // Round-off in the knots: a y a hair above the top knot of its bin still inverts into it.
        for k in 0..bins {
            let b = bin(&kn, k);
            let x = rq_invert(b[3] + 1e-15, &b);
            assert!(x.is_finite() && x <= b[1] + 1e-12);
        }
    }

    #[test]
    fn log_derivative_matches_finite_differences() {
        let (bins, bound) = (6, 2.0);
        let kn = knots(&raw(bins, 2), bins, bound);
        let h = 1e-6;
        for i in 1..200 {
            let x = -2.0 + 4.0 * i as f64 / 200.0;
            let fd = (forward(x + h, &kn, bound).0 - forward(x - h, &kn, bound).0) / (2.0 * h);
            let ld = forward(x, &kn, bound).1;
            assert!((ld.exp() - fd).abs() < 1e-7 * fd.max(1.0), "x = {x}: {} vs FD {fd}", ld.exp());
        }
    }

    #[test]
    fn vjps_match_finite_differences() {
        // Directional derivatives of (y, ld) w.r.t. x and raw, central differences (h = 1e-6,
        // truncation error O(h²) ≈ 1e-12 relative): the VJP with random cotangents must agree.
        let (bins, bound) = (5, 2.0);
        let r = raw(bins, 3);
        let (yb, lb) = (0.7, -1.3);
        let h = 1e-6;
        for &x in &[-1.7, -0.4, 0.05, 0.9, 1.95, 2.5] {
            let kn = knots(&r, bins, bound);
            let mut scratch = Default::default();
            for inverse_dir in [false, true] {
                let f = |x: f64, r: &[f64]| {
                    let kn = knots(r, bins, bound);
                    if inverse_dir {
                        inverse(x, &kn, bound)
                    } else {
                        forward(x, &kn, bound)
                    }
                };
                let mut rb = vec![0.0; r.len()];
                let xb = if inverse_dir {
                    inverse_vjp(x, &r, &kn, bins, bound, yb, lb, &mut rb, &mut scratch)
                } else {
                    forward_vjp(x, &r, &kn, bins, bound, yb, lb, &mut rb, &mut scratch)
                };
                let obj = |x: f64, r: &[f64]| {
                    let (y, l) = f(x, r);
                    yb * y + lb * l
                };
                let fd_x = (obj(x + h, &r) - obj(x - h, &r)) / (2.0 * h);
                assert!((xb - fd_x).abs() < 1e-6, "inverse {inverse_dir}, x = {x}: x_bar {xb} vs FD {fd_x}");
                for j in 0..r.len() {
                    let (mut rp, mut rm) = (r.clone(), r.clone());
                    rp[j] += h;
                    rm[j] -= h;
                    let fd = (obj(x, &rp) - obj(x, &rm)) / (2.0 * h);
                    assert!((rb[j] - fd).abs() < 1e-6, "inverse {inverse_dir}, x = {x}, raw[{j}]: {} vs FD {fd}", rb[j]);
                }
            }
        }
    }
}
