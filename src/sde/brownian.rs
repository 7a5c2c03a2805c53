//! Brownian motion `W: [t0, t1] → R^{batch × noise_dim}` that can be queried at any time, in any
//! order, and always returns the same values, with its space-time Lévy area.
//!
//! - [`VirtualBrownianTree`] (Li, Wong, Chen & Duvenaud, "Scalable gradients for stochastic
//!   differential equations", AISTATS 2020; Kidger et al. 2021): `W(t)` is found by bisecting
//!   `[t0, t1]` down to a tolerance, sampling each split from the law of the two halves given
//!   the whole with a seed derived from the node's position in the tree. Nothing needs to be
//!   stored, so a backward pass can revisit any time and see the forward path exactly; the
//!   last descent is cached so that sequential queries cost a level or two each.
//! - [`GridBrownian`]: increments pre-sampled on a fixed grid, for fixed-step solves.
//!
//! Both carry the space-time Lévy area `H_{s,t} = (1/h) ∫_s^t (W_u − W_s) du − ½ W_{s,t}`,
//! `h = t − s`, which is `N(0, h/12)` and independent of `W_{s,t}` (Foster, Lyons & Oberhauser,
//! "An optimal polynomial approximation of Brownian motion", SIAM J. Numer. Anal. 2020). Solvers
//! for additive noise of strong order 1.5 (SRA1) need it. Both paths keep, at any time, the pair
//! `(W(t) − W(t0), ∫_{t0}^t (W_u − W(t0)) du)`, from which `W_{s,t}` and `H_{s,t}` follow for any
//! `s, t`.
//!
//! Normals come from a stream seeded by the seed and the node alone (SplitMix64, then
//! Xoshiro256++ and the ziggurat), so the value of a node never depends on the order of queries.

use std::sync::Mutex;

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::{Error, Result};

/// A Brownian path `[batch, noise_dim]` on a time span.
pub trait BrownianPath {
    /// `[batch, noise_dim]`.
    fn shape(&self) -> [usize; 2];

    /// The span `(t0, t1)` the path is defined on.
    fn span(&self) -> (f64, f64);

    /// `W(t) − W(s)` as a row-major host vector `[batch · noise_dim]` (the negative of the
    /// forward increment when `t < s`).
    ///
    /// # Errors
    /// `InvalidArgument` when a time lies outside the span (or, for grid paths, off the grid).
    fn increment_host(&self, s: f64, t: f64) -> Result<Vec<f64>>;

    /// `(W_{s,t}, H_{s,t})` over the interval between `s` and `t`: the increment `W(t) − W(s)`
    /// (negated when `t < s`, as [`increment_host`](Self::increment_host)) and the space-time
    /// Lévy area of the interval `[min, max]`, `H = (1/h) ∫ (W_u − W_min) du − ½ (W_max − W_min)`.
    ///
    /// # Errors
    /// As [`increment_host`](Self::increment_host); `InvalidArgument` for `s = t`;
    /// `Unsupported` for a path built without Lévy area.
    fn levy_host(&self, s: f64, t: f64) -> Result<(Vec<f64>, Vec<f64>)>;

    /// `W(t) − W(s)` as a tensor `[batch, noise_dim]` in `dtype` on `device`.
    ///
    /// # Errors
    /// As [`increment_host`](Self::increment_host).
    fn increment(&self, s: f64, t: f64, device: &Device, dtype: DType) -> Result<Tensor<2>> {
        let [b, m] = self.shape();
        let v = self.increment_host(s, t)?;
        Ok(Tensor::<2>::from_data(TensorData::new(v, [b, m]), (device, dtype)))
    }

    /// `(W_{s,t}, H_{s,t})` as tensors `[batch, noise_dim]` (see [`levy_host`](Self::levy_host)).
    ///
    /// # Errors
    /// As [`levy_host`](Self::levy_host).
    fn levy(&self, s: f64, t: f64, device: &Device, dtype: DType) -> Result<(Tensor<2>, Tensor<2>)> {
        let [b, m] = self.shape();
        let (w, h) = self.levy_host(s, t)?;
        Ok((Tensor::<2>::from_data(TensorData::new(w, [b, m]), (device, dtype)), Tensor::<2>::from_data(TensorData::new(h, [b, m]), (device, dtype))))
    }
}

/// `(W_{s,t}, H_{s,t})` from the path's values `(W, ∫W)` at the two ends.
fn levy_from_points(s: f64, t: f64, point: impl Fn(f64) -> Result<(Vec<f64>, Vec<f64>)>) -> Result<(Vec<f64>, Vec<f64>)> {
    if s == t {
        return Err(Error::invalid("s, t", format!("the Lévy area needs an interval of positive length, got s = t = {s}")));
    }
    let (lo, hi) = if s < t { (s, t) } else { (t, s) };
    let (wl, il) = point(lo)?;
    let (wh, ih) = point(hi)?;
    let h = hi - lo;
    let sign = if s < t { 1.0 } else { -1.0 };
    let mut w = Vec::with_capacity(wl.len());
    let mut area = Vec::with_capacity(wl.len());
    for k in 0..wl.len() {
        let dw = wh[k] - wl[k];
        w.push(sign * dw);
        area.push((ih[k] - il[k]) / h - wl[k] - 0.5 * dw);
    }
    Ok((w, area))
}

/// SplitMix64 (Steele, Lea & Flood 2014): a bijective mixer of 64-bit counters.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` standard normals determined by `(seed, node)` alone: a Xoshiro256++ stream seeded from
/// SplitMix64 of both, sampled by the ziggurat method (rand_distr's `StandardNormal`; several
/// times faster than Box–Muller, which needs a logarithm and a sine and cosine per pair).
fn normals(seed: u64, node: u64, n: usize) -> Vec<f64> {
    use rand::{RngExt, SeedableRng};
    let stream = splitmix64(seed ^ splitmix64(node.wrapping_mul(0xD1B5_4A32_D192_ED03)));
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(stream);
    (0..n).map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal)).collect()
}

/// One node of the tree: the interval `[a, b]`, its heap number, the path's values at `a`
/// (`W(a) − W(t0)` and `∫_{t0}^a (W − W(t0))`), and the node's own increment `w = W_{a,b}` and
/// space-time Lévy area `h = H_{a,b}`.
#[derive(Clone, Debug)]
struct Node {
    a: f64,
    b: f64,
    id: u64,
    wa: Vec<f64>,
    ia: Vec<f64>,
    w: Vec<f64>,
    h: Vec<f64>,
}

impl Node {
    /// The two halves given the whole. With `a = w₁ − w₂`, `s = H₁ + H₂`, `d = H₁ − H₂` for the
    /// halves' increments and areas, `w = w₁ + w₂` and `H = s/2 + a/4`; conditioning the
    /// independent Gaussians `a ~ N(0, L)`, `s, d ~ N(0, L/12)` on `H` gives
    /// `a = 3H + (√L/2) z₁`, `s = H/2 − (√L/4) z₁`, `d = √(L/12) z₂` (`L = b − a`; derived in
    /// docs/sde.md, and the same law as Foster's thesis, Thm 6.1.6).
    fn split(&self, seed: u64) -> (Node, Node) {
        let n = self.w.len();
        let len = self.b - self.a;
        let m = 0.5 * (self.a + self.b);
        let half = 0.5 * len;
        let z = normals(seed, self.id, 2 * n);
        let (c1, c2) = (0.5 * len.sqrt(), (len / 12.0).sqrt());
        let mut left = Node { a: self.a, b: m, id: 2 * self.id, wa: self.wa.clone(), ia: self.ia.clone(), w: vec![0.0; n], h: vec![0.0; n] };
        let mut right = Node { a: m, b: self.b, id: 2 * self.id + 1, wa: vec![0.0; n], ia: vec![0.0; n], w: vec![0.0; n], h: vec![0.0; n] };
        for k in 0..n {
            let (w, h) = (self.w[k], self.h[k]);
            let diff = 3.0 * h + c1 * z[k];
            let sum = 0.5 * h - 0.5 * c1 * z[k];
            let d = c2 * z[n + k];
            let (w1, w2) = (0.5 * (w + diff), 0.5 * (w - diff));
            let (h1, h2) = (0.5 * (sum + d), 0.5 * (sum - d));
            left.w[k] = w1;
            left.h[k] = h1;
            right.w[k] = w2;
            right.h[k] = h2;
            right.wa[k] = self.wa[k] + w1;
            right.ia[k] = self.ia[k] + half * (self.wa[k] + h1 + 0.5 * w1);
        }
        (left, right)
    }

    /// The path at `t ∈ [a, b]` from the node alone: exact at `a` and `b`, the conditional mean
    /// given `(w, H)` inside, `E[W_u − W_a] = r w + 6r(1 − r) H` with `r = (u − a)/L`, and its
    /// integral `L (r² w/2 + (3r² − 2r³) H)`.
    fn at(&self, t: f64) -> (Vec<f64>, Vec<f64>) {
        let len = self.b - self.a;
        let r = ((t - self.a) / len).clamp(0.0, 1.0);
        let (cw, ch) = (r, 6.0 * r * (1.0 - r));
        let (iw, ih) = (len * 0.5 * r * r, len * (3.0 * r * r - 2.0 * r * r * r));
        let dt = t - self.a;
        let n = self.w.len();
        let mut w = Vec::with_capacity(n);
        let mut i = Vec::with_capacity(n);
        for k in 0..n {
            w.push(self.wa[k] + cw * self.w[k] + ch * self.h[k]);
            i.push(self.ia[k] + dt * self.wa[k] + iw * self.w[k] + ih * self.h[k]);
        }
        (w, i)
    }
}

/// A virtual Brownian tree on `[t0, t1]` with resolution `tol`: `(W, H)` is exact in law at the
/// dyadic points of the tree down to spacing `≤ tol`, and the conditional mean given the leaf's
/// `(W, H)` below it.
#[derive(Debug)]
pub struct VirtualBrownianTree {
    t0: f64,
    t1: f64,
    tol: f64,
    shape: [usize; 2],
    seed: u64,
    /// The last descent, root first (a cache: values never depend on it).
    path: Mutex<Vec<Node>>,
}

impl Clone for VirtualBrownianTree {
    fn clone(&self) -> Self {
        let path = self.path.lock().map(|p| p[..1].to_vec()).unwrap_or_else(|p| p.into_inner()[..1].to_vec());
        Self { t0: self.t0, t1: self.t1, tol: self.tol, shape: self.shape, seed: self.seed, path: Mutex::new(path) }
    }
}

impl VirtualBrownianTree {
    /// A path of shape `[batch, noise_dim]` on `[t0, t1]` with resolution `tol`.
    ///
    /// # Errors
    /// `InvalidArgument` unless `t0 < t1` (finite) and `0 < tol`.
    pub fn new(t0: f64, t1: f64, tol: f64, shape: [usize; 2], seed: u64) -> Result<Self> {
        if !(t0.is_finite() && t1.is_finite() && t0 < t1) {
            return Err(Error::invalid("t0, t1", format!("need finite t0 < t1, got [{t0}, {t1}]")));
        }
        if !(tol > 0.0 && tol.is_finite()) {
            return Err(Error::invalid("tol", format!("must be positive, got {tol}")));
        }
        let n = shape[0] * shape[1];
        let len = t1 - t0;
        let z = normals(seed, 0, 2 * n);
        let (sw, sh) = (len.sqrt(), (len / 12.0).sqrt());
        let root = Node {
            a: t0,
            b: t1,
            id: 1,
            wa: vec![0.0; n],
            ia: vec![0.0; n],
            w: z[..n].iter().map(|z| sw * z).collect(),
            h: z[n..].iter().map(|z| sh * z).collect(),
        };
        Ok(Self { t0, t1, tol, shape, seed, path: Mutex::new(vec![root]) })
    }

    fn value(&self, t: f64) -> (Vec<f64>, Vec<f64>) {
        let mut path = match self.path.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        // Keep the longest cached prefix whose intervals contain t, half-open: a descent sends a
        // midpoint to the right child, whose `at(a)` is exact, so a cached node ending at t
        // must not answer (its `at(b)` rounds differently).
        let keep = path.iter().take_while(|n| n.a <= t && t < n.b).count().max(1);
        path.truncate(keep);
        let t = t.clamp(self.t0, self.t1);
        loop {
            let node = path.last().expect("the root is always cached");
            if t == node.a || t == node.b || node.b - node.a <= self.tol {
                return node.at(t);
            }
            let (left, right) = node.split(self.seed);
            path.push(if t < left.b { left } else { right });
        }
    }

    /// `(W(t) − W(t0), ∫_{t0}^t (W_u − W(t0)) du)`, each a row-major host vector
    /// `[batch · noise_dim]`.
    ///
    /// # Errors
    /// `InvalidArgument` when `t` lies outside the span.
    pub fn point_host(&self, t: f64) -> Result<(Vec<f64>, Vec<f64>)> {
        self.check(t)?;
        Ok(self.value(t))
    }

    fn check(&self, t: f64) -> Result<()> {
        let slack = 1e-12 * (self.t1 - self.t0);
        if !(t >= self.t0 - slack && t <= self.t1 + slack) {
            return Err(Error::invalid("t", format!("{t} is outside the Brownian path's span [{}, {}]", self.t0, self.t1)));
        }
        Ok(())
    }
}

impl BrownianPath for VirtualBrownianTree {
    fn shape(&self) -> [usize; 2] {
        self.shape
    }
    fn span(&self) -> (f64, f64) {
        (self.t0, self.t1)
    }
    fn increment_host(&self, s: f64, t: f64) -> Result<Vec<f64>> {
        let (ws, _) = self.point_host(s)?;
        let (wt, _) = self.point_host(t)?;
        Ok(wt.iter().zip(&ws).map(|(a, b)| a - b).collect())
    }
    fn levy_host(&self, s: f64, t: f64) -> Result<(Vec<f64>, Vec<f64>)> {
        levy_from_points(s, t, |t| self.point_host(t))
    }
}

/// Increments (and, if asked for, space-time Lévy areas) pre-sampled on the grid
/// `t0 + k·dt`, `k = 0..=n`: exact in law, cheap, and queryable only at grid times.
#[derive(Clone, Debug)]
pub struct GridBrownian {
    t0: f64,
    dt: f64,
    shape: [usize; 2],
    /// `W(t0 + k dt) − W(t0)` for `k = 0..=n`, each `[batch · noise_dim]`.
    cumulative: Vec<Vec<f64>>,
    /// `∫_{t0}^{t0 + k dt} (W − W(t0))` for `k = 0..=n`, when built with Lévy area.
    integral: Option<Vec<Vec<f64>>>,
}

impl GridBrownian {
    /// `n` steps of size `dt` from `t0`, increments only.
    ///
    /// # Errors
    /// `InvalidArgument` for `n = 0` or a non-positive `dt`.
    pub fn new(t0: f64, dt: f64, n: usize, shape: [usize; 2], seed: u64) -> Result<Self> {
        Self::build(t0, dt, n, shape, seed, false)
    }

    /// `n` steps of size `dt` from `t0`, with the space-time Lévy area of every cell (for SRA1;
    /// twice the normals of [`new`](Self::new)).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_levy_area(t0: f64, dt: f64, n: usize, shape: [usize; 2], seed: u64) -> Result<Self> {
        Self::build(t0, dt, n, shape, seed, true)
    }

    fn build(t0: f64, dt: f64, n: usize, shape: [usize; 2], seed: u64, levy: bool) -> Result<Self> {
        if n == 0 || !(dt > 0.0 && dt.is_finite()) || !t0.is_finite() {
            return Err(Error::invalid("dt, n", format!("need dt > 0 and n >= 1, got dt = {dt}, n = {n}")));
        }
        let m = shape[0] * shape[1];
        let (sw, sh) = (dt.sqrt(), (dt / 12.0).sqrt());
        let mut cumulative = Vec::with_capacity(n + 1);
        cumulative.push(vec![0.0; m]);
        let mut integral = if levy { Some(vec![vec![0.0; m]]) } else { None };
        for k in 0..n {
            let z = normals(seed, k as u64 + 1, if levy { 2 * m } else { m });
            let w = &cumulative[k];
            let wn: Vec<f64> = w.iter().zip(&z).map(|(w, z)| w + sw * z).collect();
            if let Some(integral) = &mut integral {
                let i = &integral[k];
                let inn = (0..m).map(|j| i[j] + dt * (w[j] + sh * z[m + j] + 0.5 * sw * z[j])).collect();
                integral.push(inn);
            }
            cumulative.push(wn);
        }
        Ok(Self { t0, dt, shape, cumulative, integral })
    }

    fn index(&self, t: f64) -> Result<usize> {
        let k = ((t - self.t0) / self.dt).round();
        let n = self.cumulative.len() - 1;
        if k < 0.0 || k > n as f64 || (t - (self.t0 + k * self.dt)).abs() > 1e-9 * self.dt.max(t.abs()) {
            return Err(Error::invalid("t", format!("{t} is not on the grid t0 + k·dt (t0 = {}, dt = {}, k ≤ {n})", self.t0, self.dt)));
        }
        Ok(k as usize)
    }
}

impl BrownianPath for GridBrownian {
    fn shape(&self) -> [usize; 2] {
        self.shape
    }
    fn span(&self) -> (f64, f64) {
        (self.t0, self.t0 + self.dt * (self.cumulative.len() - 1) as f64)
    }
    fn increment_host(&self, s: f64, t: f64) -> Result<Vec<f64>> {
        let (i, j) = (self.index(s)?, self.index(t)?);
        Ok(self.cumulative[j].iter().zip(&self.cumulative[i]).map(|(a, b)| a - b).collect())
    }
    fn levy_host(&self, s: f64, t: f64) -> Result<(Vec<f64>, Vec<f64>)> {
        let integral =
            self.integral.as_ref().ok_or_else(|| Error::Unsupported("this grid path was built without Lévy area; use GridBrownian::with_levy_area".into()))?;
        levy_from_points(s, t, |t| {
            let k = self.index(t)?;
            Ok((self.cumulative[k].clone(), integral[k].clone()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> VirtualBrownianTree {
        VirtualBrownianTree::new(0.0, 1.0, 1e-6, [256, 8], 42).unwrap()
    }

    #[test]
    fn same_query_same_values_in_any_order() {
        let w = tree();
        let ts = [0.1, 0.37, 0.5, 0.83, 1.0];
        let fwd: Vec<Vec<f64>> = ts.windows(2).map(|p| w.increment_host(p[0], p[1]).unwrap()).collect();
        let again: Vec<Vec<f64>> = ts.windows(2).map(|p| w.increment_host(p[0], p[1]).unwrap()).collect();
        assert_eq!(fwd, again);
        // Backwards: the increments of the reversed sequence are the negatives, to the bit.
        for (k, p) in ts.windows(2).enumerate().rev() {
            let back = w.increment_host(p[1], p[0]).unwrap();
            assert!(back.iter().zip(&fwd[k]).all(|(b, f)| *b == -*f));
        }
        // Additivity: W(0.1→0.83) = W(0.1→0.5) + W(0.5→0.83) up to round-off.
        let whole = w.increment_host(0.1, 0.83).unwrap();
        let a = w.increment_host(0.1, 0.5).unwrap();
        let b = w.increment_host(0.5, 0.83).unwrap();
        assert!(whole.iter().zip(a.iter().zip(&b)).all(|(w, (x, y))| (w - x - y).abs() < 1e-14));
    }

    /// Increments over disjoint intervals: sample variance / Δt within 4 standard errors of 1
    /// (the mean of N squared standard normals has standard deviation √(2/N)), and sample
    /// correlation between two intervals within 4/√N of 0 (4σ: two-sided p ≈ 6e-5 per check).
    #[test]
    fn increments_have_the_right_law() {
        let w = tree();
        let cuts = [0.0, 0.013, 0.2, 0.2001, 0.6, 1.0];
        let incs: Vec<Vec<f64>> = cuts.windows(2).map(|p| w.increment_host(p[0], p[1]).unwrap()).collect();
        let n = incs[0].len() as f64;
        for (k, inc) in incs.iter().enumerate() {
            let dt = cuts[k + 1] - cuts[k];
            let var = inc.iter().map(|x| x * x).sum::<f64>() / n / dt;
            assert!((var - 1.0).abs() < 4.0 * (2.0 / n).sqrt(), "interval {k}: variance ratio {var}");
        }
        for i in 0..incs.len() {
            for j in (i + 1)..incs.len() {
                let (a, b) = (&incs[i], &incs[j]);
                let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
                let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
                let r = dot / (na * nb);
                assert!(r.abs() < 4.0 / n.sqrt(), "intervals {i}, {j}: correlation {r}");
            }
        }
    }

    fn corr(a: &[f64], b: &[f64]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
        dot / (na * nb)
    }

    /// Space-time Lévy area `H_{s,t} ~ N(0, h/12)`, independent of `W_{s,t}` and of the area of a
    /// disjoint interval (Foster et al. 2020). On the root interval, on dyadic halves (made by
    /// the split formula), and on intervals with non-dyadic ends: variance ratio within 4
    /// standard errors (√(2/N)) of 1, correlations within 4/√N of 0 — for the tree and the grid.
    #[test]
    fn levy_area_has_the_right_law() {
        let w = tree();
        let g = GridBrownian::with_levy_area(0.0, 1.0 / 64.0, 64, [256, 8], 11).unwrap();
        let tree_cuts = [(0.0, 1.0), (0.0, 0.5), (0.5, 1.0), (0.25, 0.375), (0.13, 0.61), (0.61, 0.9)];
        let grid_cuts = [(0.0, 1.0), (0.0, 0.5), (0.5, 1.0), (0.25, 0.375), (0.125, 0.609375), (0.609375, 0.90625)];
        let paths: [(&dyn BrownianPath, &[(f64, f64)]); 2] = [(&w, &tree_cuts), (&g, &grid_cuts)];
        for (path, cuts) in paths {
            let mut areas = Vec::new();
            for &(s, t) in cuts {
                let (inc, area) = path.levy_host(s, t).unwrap();
                let n = area.len() as f64;
                let var = area.iter().map(|x| x * x).sum::<f64>() / n / ((t - s) / 12.0);
                assert!((var - 1.0).abs() < 4.0 * (2.0 / n).sqrt(), "[{s}, {t}]: variance ratio {var}");
                let r = corr(&inc, &area);
                assert!(r.abs() < 4.0 / n.sqrt(), "[{s}, {t}]: corr(W, H) = {r}");
                // The increment agrees with `increment_host`, and reversing the interval negates
                // W and keeps H.
                let direct = path.increment_host(s, t).unwrap();
                assert!(inc.iter().zip(&direct).all(|(a, b)| (a - b).abs() < 1e-13));
                let (inc_back, area_back) = path.levy_host(t, s).unwrap();
                assert!(inc_back.iter().zip(&inc).all(|(a, b)| *a == -*b));
                assert_eq!(area_back, area);
                areas.push(area);
            }
            let n = areas[0].len() as f64;
            for (i, j) in [(1, 2), (4, 5)] {
                let r = corr(&areas[i], &areas[j]);
                assert!(r.abs() < 4.0 / n.sqrt(), "disjoint intervals {i}, {j}: corr(H, H) = {r}");
            }
        }
    }

    /// The caching of the last descent never changes a value: querying in scrambled order and
    /// on a fresh tree gives bit-identical points.
    #[test]
    fn the_descent_cache_is_invisible() {
        let ts = [0.9, 0.1, 0.500001, 0.5, 0.3333, 0.0, 1.0, 0.77];
        let a = tree();
        let first: Vec<_> = ts.iter().map(|&t| a.point_host(t).unwrap()).collect();
        for (k, &t) in ts.iter().enumerate().rev() {
            assert_eq!(tree().point_host(t).unwrap(), first[k]);
            assert_eq!(a.point_host(t).unwrap(), first[k]);
        }
    }

    #[test]
    fn grid_path_matches_its_grid_and_rejects_other_times() {
        let g = GridBrownian::new(0.0, 0.01, 100, [64, 4], 7).unwrap();
        let a = g.increment_host(0.0, 0.5).unwrap();
        let b = g.increment_host(0.5, 1.0).unwrap();
        let c = g.increment_host(0.0, 1.0).unwrap();
        assert!(c.iter().zip(a.iter().zip(&b)).all(|(c, (a, b))| (c - a - b).abs() < 1e-14));
        assert!(g.increment_host(0.0, 0.005).is_err());
        assert!(g.increment_host(0.0, 1.5).is_err());
        let var = c.iter().map(|x| x * x).sum::<f64>() / c.len() as f64;
        assert!((var - 1.0).abs() < 4.0 * (2.0 / c.len() as f64).sqrt(), "{var}");
    }

    #[test]
    fn bad_spans_are_errors() {
        assert!(VirtualBrownianTree::new(1.0, 1.0, 1e-3, [1, 1], 0).is_err());
        assert!(VirtualBrownianTree::new(0.0, 1.0, 0.0, [1, 1], 0).is_err());
        assert!(tree().increment_host(0.0, 1.5).is_err());
        assert!(GridBrownian::new(0.0, -1.0, 3, [1, 1], 0).is_err());
    }
}
