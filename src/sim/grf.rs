//! Gaussian random fields on the periodic square, sampled spectrally: the random initial
//! vorticity of [`super::ns2d`] and the random permeability of [`super::darcy`].

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rustfft::num_complex::Complex64;
use serde::{Deserialize, Serialize};

use super::fft2::Fft2;
use crate::{Error, Result};

/// A zero-mean Gaussian random field on the periodic square `[0, L)²` with covariance operator
/// `C = σ² (−Δ + τ² I)^{−α}` (Matérn-type; the initial-vorticity law of the FNO Navier–Stokes
/// data uses `τ = 7`, `α = 2.5`, `σ = τ^{α − 1}` on `L = 1`, Li et al. 2021).
///
/// Karhunen–Loève: `f(x) = Σ_k √λ_k ξ_k e^{ik·x} / L`, `λ_k = σ² (|k|² + τ²)^{−α}`,
/// `k ∈ (2π/L) ℤ²` truncated to the grid, `ξ_k` standard complex normals with `ξ_{−k} = ξ̄_k`
/// (a real field). `zero_mean` drops the constant mode (vorticity on a periodic domain
/// integrates to zero).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grf {
    /// Amplitude `σ`.
    pub sigma: f64,
    /// Inverse length scale `τ` (in units of `1/L`).
    pub tau: f64,
    /// Smoothness `α` (`> 1` for a field with finite point variance in 2D).
    pub alpha: f64,
    /// Drop the constant mode.
    pub zero_mean: bool,
}

impl Default for Grf {
    /// The FNO initial-vorticity law: `τ = 7`, `α = 2.5`, `σ = 7^{1.5}`, zero mean.
    fn default() -> Self {
        Grf { sigma: 7f64.powf(1.5), tau: 7.0, alpha: 2.5, zero_mean: true }
    }
}

impl Grf {
    /// Checks `σ ≥ 0`, `τ > 0`, `α > 1`, all finite.
    ///
    /// # Errors
    /// `InvalidArgument` naming the value.
    pub fn validate(&self) -> Result<()> {
        if !(self.sigma >= 0.0 && self.sigma.is_finite() && self.tau > 0.0 && self.tau.is_finite() && self.alpha > 1.0 && self.alpha.is_finite()) {
            return Err(Error::invalid("grf", format!("need σ ≥ 0, τ > 0 and α > 1 (finite), got σ = {}, τ = {}, α = {}", self.sigma, self.tau, self.alpha)));
        }
        Ok(())
    }

    /// One sample on the `n × n` grid `x_i = iL/n`, row-major `[i][j]` (empty for `n = 0`).
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, length: f64, rng: &mut R) -> Vec<f64> {
        if n == 0 {
            return Vec::new();
        }
        self.sample_with(&mut Fft2::new(n), length, rng)
    }

    /// [`Grf::sample`] with planned transforms (their size is the grid's).
    pub(crate) fn sample_with<R: Rng + ?Sized>(&self, fft: &mut Fft2, length: f64, rng: &mut R) -> Vec<f64> {
        let n = fft.n();
        let mut buf: Vec<Complex64> = (0..n * n).map(|_| Complex64::new(StandardNormal.sample(rng), 0.0)).collect();
        fft.forward(&mut buf);
        // White noise w has E|ŵ_k|² = n²; f = IFFT(s_k ŵ_k)/n² has Var f = Σ_k s_k²/n² and the
        // KL sum has Σ_k λ_k / L², so s_k = n √λ_k / L.
        let kscale = std::f64::consts::TAU / length;
        for a in 0..n {
            for b in 0..n {
                let (ky, kx) = (a.min(n - a) as f64 * kscale, b.min(n - b) as f64 * kscale);
                let lambda = self.sigma * self.sigma * (kx * kx + ky * ky + self.tau * self.tau).powf(-self.alpha);
                let s = if a == 0 && b == 0 && self.zero_mean { 0.0 } else { n as f64 * lambda.sqrt() / length };
                buf[a * n + b] *= s;
            }
        }
        fft.inverse(&mut buf);
        buf.iter().map(|c| c.re).collect()
    }

    /// The point variance `Σ_k λ_k / L²` of the field on an `n × n` grid (the KL sum).
    pub fn point_variance(&self, n: usize, length: f64) -> f64 {
        let kscale = std::f64::consts::TAU / length;
        let mut v = 0.0;
        for a in 0..n {
            for b in 0..n {
                if a == 0 && b == 0 && self.zero_mean {
                    continue;
                }
                let (ky, kx) = (a.min(n - a) as f64 * kscale, b.min(n - b) as f64 * kscale);
                v += self.sigma * self.sigma * (kx * kx + ky * ky + self.tau * self.tau).powf(-self.alpha);
            }
        }
        v / (length * length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The sample variance over many fields matches the Karhunen–Loève sum `Σ λ_k / L²`, and a
    /// zero-mean field averages to zero exactly.
    #[test]
    fn point_variance_matches_the_kl_sum() {
        let (n, length) = (16, 1.0);
        let g = Grf::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (mut sq, mut count) = (0.0, 0usize);
        for _ in 0..400 {
            let f = g.sample(n, length, &mut rng);
            let mean = f.iter().sum::<f64>() / f.len() as f64;
            assert!(mean.abs() < 1e-12, "zero-mean field has mean {mean}");
            sq += f.iter().map(|v| v * v).sum::<f64>();
            count += f.len();
        }
        let (est, exact) = (sq / count as f64, g.point_variance(n, length));
        // 400 fields of 256 correlated points: the estimate's relative error is a few percent.
        assert!((est / exact - 1.0).abs() < 0.1, "variance {est} vs KL sum {exact}");
    }
}
