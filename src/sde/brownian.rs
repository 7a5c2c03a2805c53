//! Brownian motion `W: [t0, t1] → R^{batch × noise_dim}` that can be queried at any time, in any
//! order, and always returns the same values.
//!
//! - [`VirtualBrownianTree`] (Li, Wong, Chen & Duvenaud, "Scalable gradients for stochastic
//!   differential equations", AISTATS 2020; Kidger et al. 2021): `W(t)` is found by bisecting
//!   `[t0, t1]` down to a tolerance, sampling each midpoint from the Brownian bridge between its
//!   ends with a seed derived from the node's position in the tree. Nothing is stored, so a
//!   backward pass can revisit any time and see the forward path exactly.
//! - [`GridBrownian`]: increments pre-sampled on a fixed grid, for fixed-step solves.
//!
//! Normals come from a counter-based generator (SplitMix64 of the seed, the node and the element
//! index, then Box–Muller), so the value of a node never depends on the order of queries.

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::{Error, Result};

/// A Brownian path `[batch, noise_dim]` on a time span.
pub trait BrownianPath {
    /// `[batch, noise_dim]`.
    fn shape(&self) -> [usize; 2];

    /// The span `(t0, t1)` the path is defined on.
    fn span(&self) -> (f64, f64);

    /// `W(t) − W(s)` as a row-major host vector `[batch · noise_dim]` (negative of the forward
    /// increment when `t < s`).
    ///
    /// # Errors
    /// `InvalidArgument` when a time lies outside the span (or, for grid paths, off the grid).
    fn increment_host(&self, s: f64, t: f64) -> Result<Vec<f64>>;

    /// `W(t) − W(s)` as a tensor `[batch, noise_dim]` in `dtype` on `device`.
    fn increment(&self, s: f64, t: f64, device: &Device, dtype: DType) -> Result<Tensor<2>> {
        let [b, m] = self.shape();
        let v = self.increment_host(s, t)?;
        Ok(Tensor::<2>::from_data(TensorData::new(v, [b, m]), (device, dtype)))
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a bijective mixer of 64-bit counters.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` standard normals determined by `(seed, node)` alone: Box–Muller on uniforms from
/// SplitMix64 of a per-node stream.
fn normals(seed: u64, node: u64, n: usize) -> Vec<f64> {
    let base = splitmix64(seed ^ splitmix64(node.wrapping_mul(0xD1B5_4A32_D192_ED03)));
    let mut out = Vec::with_capacity(n + 1);
    let mut i = 0u64;
    while out.len() < n {
        // 53-bit uniforms in (0, 1]: never 0, so ln is finite.
        let u1 = ((splitmix64(base.wrapping_add(2 * i)) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = ((splitmix64(base.wrapping_add(2 * i + 1)) >> 11) as f64) / (1u64 << 53) as f64;
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        out.push(r * c);
        out.push(r * s);
        i += 1;
    }
    out.truncate(n);
    out
}

/// A virtual Brownian tree on `[t0, t1]` with resolution `tol`: `W(t)` is exact in law at the
/// dyadic points of the tree down to spacing `≤ tol`, and linearly interpolated below it.
#[derive(Clone, Debug)]
pub struct VirtualBrownianTree {
    t0: f64,
    t1: f64,
    tol: f64,
    shape: [usize; 2],
    seed: u64,
    /// `W(t1) − W(t0)`.
    w_end: Vec<f64>,
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
        let sd = (t1 - t0).sqrt();
        let w_end = normals(seed, 0, n).into_iter().map(|z| sd * z).collect();
        Ok(Self { t0, t1, tol, shape, seed, w_end })
    }

    /// `W(t) − W(t0)`.
    fn value(&self, t: f64) -> Vec<f64> {
        let n = self.w_end.len();
        let (mut a, mut b) = (self.t0, self.t1);
        let mut wa = vec![0.0; n];
        let mut wb = self.w_end.clone();
        if t <= a {
            return wa;
        }
        if t >= b {
            return wb;
        }
        // Heap numbering: root 1, children 2k and 2k + 1.
        let mut node: u64 = 1;
        while b - a > self.tol {
            let m = 0.5 * (a + b);
            if t == m {
                return self.midpoint(node, a, b, &wa, &wb);
            }
            let wm = self.midpoint(node, a, b, &wa, &wb);
            if t < m {
                b = m;
                wb = wm;
                node *= 2;
            } else {
                a = m;
                wa = wm;
                node = 2 * node + 1;
            }
        }
        let w = (t - a) / (b - a);
        wa.iter().zip(&wb).map(|(x, y)| x + w * (y - x)).collect()
    }

    /// Brownian bridge midpoint: `(W(a) + W(b))/2 + √((b − a)/4) z`.
    fn midpoint(&self, node: u64, a: f64, b: f64, wa: &[f64], wb: &[f64]) -> Vec<f64> {
        let sd = (0.25 * (b - a)).sqrt();
        let z = normals(self.seed, node, wa.len());
        wa.iter().zip(wb).zip(z).map(|((x, y), z)| 0.5 * (x + y) + sd * z).collect()
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
        self.check(s)?;
        self.check(t)?;
        let ws = self.value(s);
        let wt = self.value(t);
        Ok(wt.iter().zip(&ws).map(|(a, b)| a - b).collect())
    }
}

/// Increments pre-sampled on the grid `t0 + k·dt`, `k = 0..=n`: exact in law, cheap, and
/// queryable only at grid times.
#[derive(Clone, Debug)]
pub struct GridBrownian {
    t0: f64,
    dt: f64,
    shape: [usize; 2],
    /// `W(t0 + k dt) − W(t0)` for `k = 0..=n`, each `[batch · noise_dim]`.
    cumulative: Vec<Vec<f64>>,
}

impl GridBrownian {
    /// `n` steps of size `dt` from `t0`.
    ///
    /// # Errors
    /// `InvalidArgument` for `n = 0` or a non-positive `dt`.
    pub fn new(t0: f64, dt: f64, n: usize, shape: [usize; 2], seed: u64) -> Result<Self> {
        if n == 0 || !(dt > 0.0 && dt.is_finite()) || !t0.is_finite() {
            return Err(Error::invalid("dt, n", format!("need dt > 0 and n >= 1, got dt = {dt}, n = {n}")));
        }
        let m = shape[0] * shape[1];
        let sd = dt.sqrt();
        let mut cumulative = vec![vec![0.0; m]];
        for k in 0..n {
            let z = normals(seed, k as u64 + 1, m);
            let prev = &cumulative[k];
            let next: Vec<f64> = prev.iter().zip(z).map(|(w, z)| w + sd * z).collect();
            cumulative.push(next);
        }
        Ok(Self { t0, dt, shape, cumulative })
    }

    fn index(&self, t: f64) -> Result<usize> {
        let k = ((t - self.t0) / self.dt).round();
        let n = self.cumulative.len() - 1;
        if k < 0.0 || k > n as f64 || (t - (self.t0 + k * self.dt)).abs() > 1e-9 * self.dt.max(t.abs()) {
            return Err(Error::invalid(
                "t",
                format!("{t} is not on the grid t0 + k·dt (t0 = {}, dt = {}, k ≤ {n})", self.t0, self.dt),
            ));
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
