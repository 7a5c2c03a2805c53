//! Reference problems of flow matching, in one place for tests, studies and benchmarks.
//!
//! * [`GaussianToGaussian`]: `N(0, I) → N(μ, s² I)` on the linear path with independent
//!   coupling, where the velocity, score, flow map and densities are closed forms.
//! * [`eight_gaussians`] and [`moons`]: torchcfm's 2D toy data (`torchcfm.utils`).

use std::f64::consts::PI;

use burn::tensor::{Tensor, TensorData};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

use crate::ode::{FnField, Time};

/// `x₀ ~ N(0, I)`, `x₁ ~ N(μ, s² I)` independent, linear path `x_t = (1 − t) x₀ + t x₁`:
/// `x_t ~ N(tμ, σ_t² I)` with `σ_t² = (1 − t)² + t² s²`, so (Lipman et al. 2023, Thm. 3 with
/// Gaussian marginals)
///
/// * velocity `b(t, x) = μ + (σ_t'/σ_t)(x − tμ)`, `σ_t σ_t' = t s² − (1 − t)`;
/// * score `s(t, x) = −(x − tμ)/σ_t²`;
/// * flow map `X₁(x₀) = μ + s x₀` (the flow of an affine field is affine, and it must map
///   `N(0, I)` to `N(μ, s² I)` preserving orientation);
/// * `log ρ₁(x) = log N(x; μ, s² I)`.
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianToGaussian {
    /// Target mean `μ`, `[d]`.
    pub mu: Vec<f64>,
    /// Target standard deviation `s > 0`.
    pub s: f64,
}

impl GaussianToGaussian {
    /// `σ_t²` and `σ_t σ_t'`.
    fn var(&self, t: f64) -> (f64, f64) {
        ((1.0 - t).powi(2) + t * t * self.s * self.s, t * self.s * self.s - (1.0 - t))
    }

    fn mu_row(&self, like: &Tensor<2>) -> Tensor<2> {
        let d = self.mu.len();
        Tensor::<2>::from_data(TensorData::new(self.mu.clone(), [1, d]), (&like.device(), like.dtype()))
    }

    /// The exact velocity as a field (burn operations, so it has a VJP).
    pub fn velocity(&self) -> FnField<impl Fn(&Time, Tensor<2>) -> Tensor<2> + '_> {
        FnField::new(move |t: &Time, x: Tensor<2>| {
            let t = t.shared().expect("GaussianToGaussian fields take a shared time");
            let (v, dv) = self.var(t);
            let mu = self.mu_row(&x);
            (x - mu.clone().mul_scalar(t)).mul_scalar(dv / v) + mu
        })
    }

    /// The exact score as a field.
    pub fn score(&self) -> FnField<impl Fn(&Time, Tensor<2>) -> Tensor<2> + '_> {
        FnField::new(move |t: &Time, x: Tensor<2>| {
            let t = t.shared().expect("GaussianToGaussian fields take a shared time");
            let (v, _) = self.var(t);
            let mu = self.mu_row(&x);
            (x - mu.mul_scalar(t)).mul_scalar(-1.0 / v)
        })
    }

    /// The exact velocity at `(t, x)` on the host (`x: [d]`).
    pub fn velocity_at(&self, t: f64, x: &[f64]) -> Vec<f64> {
        let (v, dv) = self.var(t);
        x.iter().zip(&self.mu).map(|(x, m)| m + dv / v * (x - t * m)).collect()
    }

    /// The exact score at `(t, x)` on the host.
    pub fn score_at(&self, t: f64, x: &[f64]) -> Vec<f64> {
        let (v, _) = self.var(t);
        x.iter().zip(&self.mu).map(|(x, m)| -(x - t * m) / v).collect()
    }

    /// `X₁(x₀) = μ + s x₀`.
    pub fn flow_map(&self, x0: &[f64]) -> Vec<f64> {
        x0.iter().zip(&self.mu).map(|(x, m)| m + self.s * x).collect()
    }

    /// `log N(x; μ, s² I)` per row of `x: [batch, d]`.
    pub fn target_log_density(&self, x: &[f64]) -> Vec<f64> {
        let d = self.mu.len();
        let c = -0.5 * d as f64 * (2.0 * PI * self.s * self.s).ln();
        x.chunks(d).map(|r| c - 0.5 * r.iter().zip(&self.mu).map(|(x, m)| (x - m).powi(2)).sum::<f64>() / (self.s * self.s)).collect()
    }

    /// `n` samples of the target.
    pub fn sample_target(&self, rng: &mut StdRng, n: usize) -> Array2<f64> {
        let d = self.mu.len();
        Array2::from_shape_fn((n, d), |(_, k)| {
            let e: f64 = StandardNormal.sample(rng);
            self.mu[k] + self.s * e
        })
    }
}

/// torchcfm's `sample_8gaussians(n)` (`eight_normal_sample(n, 2, scale=5, var=0.1)`): a uniform
/// mixture of 8 Gaussians centred at `5 (cos(kπ/4), sin(kπ/4))`; torchcfm builds the noise as
/// `MultivariateNormal(0, √var · I)`, so the covariance is `√0.1 · I` (standard deviation
/// `0.1^{1/4} ≈ 0.562`), not `0.1 I`; reproduced here as torchcfm samples it.
pub fn eight_gaussians(rng: &mut StdRng, n: usize) -> Array2<f64> {
    let sd = 0.1f64.sqrt().sqrt();
    let h = std::f64::consts::FRAC_1_SQRT_2;
    let centres = [(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0), (h, h), (h, -h), (-h, h), (-h, -h)];
    let mut out = Array2::zeros((n, 2));
    for i in 0..n {
        let (cx, cy) = centres[rng.random_range(0..8)];
        let (a, b): (f64, f64) = (StandardNormal.sample(rng), StandardNormal.sample(rng));
        out[[i, 0]] = 5.0 * cx + sd * a;
        out[[i, 1]] = 5.0 * cy + sd * b;
    }
    out
}

/// torchcfm's `sample_moons(n)`: its own `generate_moons(n, noise=0.2)` scaled as `3x − 1`.
/// The upper moon `(cos θ, sin θ)` has `⌊n/2⌋` points and the lower one
/// `(1 − cos θ, 1/2 − sin θ)` the rest, `θ` evenly spaced on `[0, π]`, in that order (no
/// shuffle). Unlike scikit-learn's `make_moons`, the "noise" is one `U(0, 0.2)` draw per point
/// added to both coordinates (`X += rand(n, 1) · noise`), so the data lie on two thin diagonal
/// bands; reproduced here as torchcfm samples it (two independent sets of 2048 are at
/// W₂ ≈ 0.07, against ≈ 0.19 for scikit-learn's moons).
pub fn moons(rng: &mut StdRng, n: usize) -> Array2<f64> {
    let n_out = n / 2;
    let n_in = n - n_out;
    let theta = |k: usize, m: usize| if m > 1 { PI * k as f64 / (m - 1) as f64 } else { 0.0 };
    let mut out = Array2::zeros((n, 2));
    for i in 0..n {
        let p = if i < n_out {
            let t = theta(i, n_out);
            [t.cos(), t.sin()]
        } else {
            let t = theta(i - n_out, n_in);
            [1.0 - t.cos(), 0.5 - t.sin()]
        };
        let shift = 0.2 * rng.random::<f64>();
        for k in 0..2 {
            out[[i, k]] = 3.0 * (p[k] + shift) - 1.0;
        }
    }
    out
}
