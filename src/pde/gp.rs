//! Gaussian-process noise on a grid: the base distribution of functional flow matching
//! (Kerrigan et al. 2024, "Functional Flow Matching"), whose samples are smooth fields rather
//! than white noise, so every intermediate state of the flow is itself a plausible function.
//!
//! The covariance is separable over the axes, `k((x, y), (x′, y′)) = σ² k_x(x − x′) k_y(y − y′)`,
//! each factor a unit-variance RBF or Matérn kernel with its own length scale (for the RBF the
//! product is the anisotropic RBF); periodic axes use the periodised kernel `Σ_m k(d + mL)`,
//! which stays positive definite on the circle. Channels are independent.
//!
//! Two samplers, one target covariance:
//! * [`GpMethod::Cholesky`]: `u = L_x Z L_yᵀ` with `K_a + δI = L_a L_aᵀ` per axis (faer), `Z` white.
//! * [`GpMethod::Fft`]: circulant embedding (Dietrich & Newsam 1997): a periodic axis is
//!   circulant as it is; an open axis of `n` points is embedded in a circulant of `m ≥ 2(n − 1)`
//!   points, exact when the embedding's eigenvalues are non-negative (checked, with `m` doubled
//!   up to 8 times before giving up). The 2D field is `√(m_x m_y) IFFT₂(√λ ⊙ ξ)` with complex
//!   white `ξ`: its real and imaginary parts are two independent samples.

use ndarray::Array2;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use rustfft::num_complex::Complex64;
use rustfft::FftPlanner;
use serde::{Deserialize, Serialize};

use super::grid::{AxisKind, Grid};
use crate::{Error, Result};

/// A stationary unit-variance kernel of the scaled distance `r = |d|/ℓ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Kernel {
    /// `exp(−r²/2)`.
    Rbf,
    /// Matérn ν = 1/2: `exp(−r)`.
    Matern12,
    /// Matérn ν = 3/2: `(1 + √3 r) exp(−√3 r)`.
    #[default]
    Matern32,
    /// Matérn ν = 5/2: `(1 + √5 r + 5r²/3) exp(−√5 r)`.
    Matern52,
}

impl Kernel {
    /// `k(d)` for length scale `length`.
    pub fn eval(self, d: f64, length: f64) -> f64 {
        let r = d.abs() / length;
        match self {
            Kernel::Rbf => (-0.5 * r * r).exp(),
            Kernel::Matern12 => (-r).exp(),
            Kernel::Matern32 => {
                let s = 3f64.sqrt() * r;
                (1.0 + s) * (-s).exp()
            }
            Kernel::Matern52 => {
                let s = 5f64.sqrt() * r;
                (1.0 + s + s * s / 3.0) * (-s).exp()
            }
        }
    }

    /// The periodised kernel `Σ_m k(d + mL)` on a circle of circumference `period`.
    pub fn eval_periodic(self, d: f64, length: f64, period: f64) -> f64 {
        let mut sum = self.eval(d, length);
        for m in 1..=10_000 {
            let term = self.eval(d + m as f64 * period, length) + self.eval(d - m as f64 * period, length);
            sum += term;
            if term < 1e-18 * sum.max(1e-300) {
                break;
            }
        }
        sum
    }
}

/// How GP samples are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GpMethod {
    /// Per-axis Cholesky factors.
    #[default]
    Cholesky,
    /// Circulant embedding with FFTs.
    Fft,
}

/// The base distribution of functional flow matching; every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpConfig {
    /// The kernel of every axis.
    pub kernel: Kernel,
    /// Length scale per axis, in the axis's coordinate units; one value is used for all axes.
    pub length: Vec<f64>,
    /// Marginal variance `σ²`.
    pub variance: f64,
    /// Sampler.
    pub method: GpMethod,
    /// Diagonal jitter `δ` added to each axis's covariance for the Cholesky factor, relative to
    /// its unit diagonal (smooth kernels are numerically singular on fine grids).
    pub jitter: f64,
}

impl Default for GpConfig {
    fn default() -> Self {
        GpConfig { kernel: Kernel::Matern32, length: vec![0.1], variance: 1.0, method: GpMethod::Cholesky, jitter: 1e-8 }
    }
}

/// One axis's factor of the covariance.
#[derive(Clone, Debug)]
enum AxisFactor {
    /// Lower-triangular `L`, `[n, n]` row-major.
    Cholesky { l: Vec<f64> },
    /// `√λ` of the circulant of size `m`; the axis's `n` points are the first `n` of `m`.
    Circulant { sqrt_eig: Vec<f64> },
}

/// A sampler of GP fields on one grid.
#[derive(Clone, Debug)]
pub struct GpSampler {
    shape: [usize; 3],
    variance: f64,
    factors: Vec<AxisFactor>,
    /// The per-axis covariance that is sampled exactly, `[n, n]` row-major (jitter included).
    axis_cov: Vec<Vec<f64>>,
}

impl GpConfig {
    /// The sampler for `grid`.
    ///
    /// # Errors
    /// `InvalidArgument` for non-positive lengths or variance, a length count that is neither 1
    /// nor the axis count, or a circulant embedding that stays indefinite.
    pub fn sampler(&self, grid: &Grid) -> Result<GpSampler> {
        grid.validate()?;
        let na = grid.axes.len();
        if !(self.length.len() == 1 || self.length.len() == na) || self.length.iter().any(|l| !(*l > 0.0 && l.is_finite())) {
            return Err(Error::invalid("gp.length", format!("need 1 or {na} positive length scales, got {:?}", self.length)));
        }
        if !(self.variance > 0.0 && self.variance.is_finite()) || !(self.jitter >= 0.0) {
            return Err(Error::invalid("gp.variance", format!("variance must be positive and jitter non-negative, got {} and {}", self.variance, self.jitter)));
        }
        let mut factors = Vec::new();
        let mut axis_cov = Vec::new();
        for (k, axis) in grid.axes.iter().enumerate() {
            let length = if self.length.len() == 1 { self.length[0] } else { self.length[k] };
            let periodic = matches!(axis.kind, AxisKind::Space { periodic: true });
            let period = axis.n as f64 * axis.step;
            let kern = |d: f64| if periodic { self.kernel.eval_periodic(d, length, period) } else { self.kernel.eval(d, length) };
            let n = axis.n;
            let (factor, cov) = match self.method {
                GpMethod::Cholesky => {
                    let mut c: Vec<f64> = (0..n * n).map(|ij| kern(((ij / n) as f64 - (ij % n) as f64) * axis.step)).collect();
                    (0..n).for_each(|i| c[i * n + i] += self.jitter * c[i * n + i]);
                    let l = cholesky(&c, n).ok_or_else(|| {
                        Error::invalid("gp", format!("the covariance of axis `{}` is not positive definite; raise `jitter` ({})", axis.name, self.jitter))
                    })?;
                    (AxisFactor::Cholesky { l }, c)
                }
                GpMethod::Fft => {
                    let sqrt_eig = if periodic {
                        let row: Vec<f64> = (0..n).map(|j| kern(j as f64 * axis.step)).collect();
                        circulant_sqrt_eig(&row)
                            .ok_or_else(|| Error::invalid("gp", format!("periodic covariance of axis `{}` has negative eigenvalues", axis.name)))?
                    } else {
                        embed_open_axis(n, axis.step, &kern).ok_or_else(|| {
                            Error::invalid(
                                "gp",
                                format!(
                                    "circulant embedding of axis `{}` stayed indefinite up to 2^8 × {} points; use method = \"cholesky\"",
                                    axis.name,
                                    2 * n
                                ),
                            )
                        })?
                    };
                    let c: Vec<f64> = (0..n * n).map(|ij| kern(((ij / n) as f64 - (ij % n) as f64) * axis.step)).collect();
                    (AxisFactor::Circulant { sqrt_eig }, c)
                }
            };
            factors.push(factor);
            axis_cov.push(cov);
        }
        Ok(GpSampler { shape: grid.shape4(), variance: self.variance, factors, axis_cov })
    }
}

/// Lower Cholesky factor of a symmetric `[n, n]` row-major matrix, `None` if not positive definite.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| a[i * n + j]);
    let llt = m.llt(faer::Side::Lower).ok()?;
    let l = llt.L();
    Some((0..n * n).map(|ij| if ij % n <= ij / n { l[(ij / n, ij % n)] } else { 0.0 }).collect())
}

/// `√λ` of the symmetric circulant with first row `row` (`λ = DFT(row)`, real), or `None` when
/// an eigenvalue is below `−1e-10 λ_max` (tiny negative ones are round-off and set to zero).
fn circulant_sqrt_eig(row: &[f64]) -> Option<Vec<f64>> {
    let m = row.len();
    let mut buf: Vec<Complex64> = row.iter().map(|&r| Complex64::new(r, 0.0)).collect();
    FftPlanner::new().plan_fft_forward(m).process(&mut buf);
    let max = buf.iter().fold(0.0f64, |a, z| a.max(z.re));
    if buf.iter().any(|z| z.re < -1e-10 * max) {
        return None;
    }
    Some(buf.iter().map(|z| z.re.max(0.0).sqrt()).collect())
}

/// The circulant embedding of an open axis: sizes `m = 2(n − 1)·2^k`, the first one whose
/// circulant is positive semi-definite.
fn embed_open_axis(n: usize, step: f64, kern: &dyn Fn(f64) -> f64) -> Option<Vec<f64>> {
    let mut m = (2 * n.saturating_sub(1)).max(2);
    for _ in 0..=8 {
        let row: Vec<f64> = (0..m).map(|j| kern(j.min(m - j) as f64 * step)).collect();
        if let Some(s) = circulant_sqrt_eig(&row) {
            return Some(s);
        }
        m *= 2;
    }
    None
}

impl GpSampler {
    /// Values per field `C·X·Y`.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether a field holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `batch` independent fields, `[batch, C·X·Y]` (the grid's flat layout).
    pub fn sample(&self, rng: &mut StdRng, batch: usize) -> Array2<f64> {
        let [c, nx, ny] = self.shape;
        let mut out = Array2::zeros((batch, c * nx * ny));
        let sd = self.variance.sqrt();
        match (self.factors.first(), self.factors.get(1)) {
            (Some(AxisFactor::Circulant { .. }), None | Some(AxisFactor::Circulant { .. })) => {
                // Each complex draw gives two fields.
                let mut pending: Option<Vec<f64>> = None;
                for mut row in out.rows_mut() {
                    for ch in 0..c {
                        let field = match pending.take() {
                            Some(f) => f,
                            None => {
                                let (a, b) = self.fft_pair(rng);
                                pending = Some(b);
                                a
                            }
                        };
                        for (k, v) in field.iter().enumerate() {
                            row[ch * nx * ny + k] = sd * v;
                        }
                    }
                }
            }
            _ => {
                for mut row in out.rows_mut() {
                    for ch in 0..c {
                        let z: Vec<f64> = (0..nx * ny).map(|_| StandardNormal.sample(rng)).collect();
                        let f = self.cholesky_field(&z);
                        for (k, v) in f.iter().enumerate() {
                            row[ch * nx * ny + k] = sd * v;
                        }
                    }
                }
            }
        }
        out
    }

    /// `L_x Z L_yᵀ` for white `Z: [X, Y]` (row-major).
    fn cholesky_field(&self, z: &[f64]) -> Vec<f64> {
        let [_, nx, ny] = self.shape;
        let factor = |k: usize| match &self.factors[k] {
            AxisFactor::Cholesky { l } => l.as_slice(),
            AxisFactor::Circulant { .. } => unreachable!("one method for all axes"),
        };
        let lx = factor(0);
        // T = L_x Z.
        let mut t = vec![0.0; nx * ny];
        for i in 0..nx {
            for k in 0..=i {
                let w = lx[i * nx + k];
                for j in 0..ny {
                    t[i * ny + j] += w * z[k * ny + j];
                }
            }
        }
        if self.factors.len() == 1 {
            return t;
        }
        // U = T L_yᵀ.
        let ly = factor(1);
        let mut u = vec![0.0; nx * ny];
        for i in 0..nx {
            for j in 0..ny {
                u[i * ny + j] = (0..=j).map(|l| t[i * ny + l] * ly[j * ny + l]).sum();
            }
        }
        u
    }

    /// Two independent fields from one complex circulant draw, each cropped to `[X, Y]`.
    fn fft_pair(&self, rng: &mut StdRng) -> (Vec<f64>, Vec<f64>) {
        let [_, nx, ny] = self.shape;
        let eig = |k: usize| match &self.factors[k] {
            AxisFactor::Circulant { sqrt_eig } => sqrt_eig.as_slice(),
            AxisFactor::Cholesky { .. } => unreachable!("mixed factors are rejected"),
        };
        let ex = eig(0);
        let ey: &[f64] = if self.factors.len() > 1 { eig(1) } else { &[1.0] };
        let (mx, my) = (ex.len(), ey.len());
        let mut buf: Vec<Complex64> = (0..mx * my)
            .map(|ij| {
                let s = ex[ij / my] * ey[ij % my];
                Complex64::new(StandardNormal.sample(rng), StandardNormal.sample(rng)) * s
            })
            .collect();
        let mut planner = FftPlanner::new();
        // Inverse DFT along y (contiguous rows), then along x (columns); rustfft's inverse is unnormalised.
        if my > 1 {
            let fy = planner.plan_fft_inverse(my);
            for row in buf.chunks_mut(my) {
                fy.process(row);
            }
        }
        let fx = planner.plan_fft_inverse(mx);
        let mut col = vec![Complex64::new(0.0, 0.0); mx];
        for j in 0..my {
            (0..mx).for_each(|i| col[i] = buf[i * my + j]);
            fx.process(&mut col);
            (0..mx).for_each(|i| buf[i * my + j] = col[i]);
        }
        // √(m_x m_y) · (1/(m_x m_y)) · Σ = the unitary inverse.
        let scale = 1.0 / ((mx * my) as f64).sqrt();
        let mut a = Vec::with_capacity(nx * ny);
        let mut b = Vec::with_capacity(nx * ny);
        for i in 0..nx {
            for j in 0..ny {
                let z = buf[i * my + j] * scale;
                a.push(z.re);
                b.push(z.im);
            }
        }
        (a, b)
    }

    /// The covariance the sampler draws from exactly, `[X·Y, X·Y]` for one channel
    /// (`σ² (K_x + δI) ⊗ (K_y + δI)`; `δ = 0` for the FFT sampler).
    pub fn covariance(&self) -> Array2<f64> {
        let [_, nx, ny] = self.shape;
        let cx = &self.axis_cov[0];
        let one = vec![1.0];
        let cy = self.axis_cov.get(1).unwrap_or(&one);
        Array2::from_shape_fn((nx * ny, nx * ny), |(p, q)| {
            let (i, j, k, l) = (p / ny, p % ny, q / ny, q % ny);
            self.variance * cx[i * nx + k] * cy[j * ny + l]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pde::grid::Axis;
    use rand::SeedableRng;

    /// The empirical covariance of `N` draws matches the target entry by entry within 5
    /// standard errors, `se(Ĉ_ij) = √((C_ii C_jj + C_ij²)/N)` (Wishart moments of a Gaussian
    /// sample covariance with known zero mean), for both samplers, open and periodic axes, 1D
    /// and 2D. The target is checked against the kernel itself (periodised on periodic axes).
    #[test]
    fn empirical_covariance_matches_the_kernel() {
        let cases = [
            (
                Grid { channels: vec!["u".into()], axes: vec![Axis::space("x", 12, 0.0, 0.1, false)] },
                GpConfig { kernel: Kernel::Rbf, length: vec![0.25], ..GpConfig::default() },
            ),
            (
                Grid { channels: vec!["u".into()], axes: vec![Axis::space("x", 6, 0.0, 0.2, true), Axis::time(5, 0.0, 1.0)] },
                GpConfig { kernel: Kernel::Matern32, length: vec![0.3, 0.5], variance: 2.0, ..GpConfig::default() },
            ),
        ];
        let n_samples = 20_000;
        for (grid, cfg) in cases {
            for method in [GpMethod::Cholesky, GpMethod::Fft] {
                let cfg = GpConfig { method, jitter: if method == GpMethod::Cholesky { 1e-10 } else { 0.0 }, ..cfg.clone() };
                let s = cfg.sampler(&grid).unwrap();
                let target = s.covariance();
                // The target is the kernel: entry (p, q) = σ² Π_a k_a(d_a).
                let n = grid.len();
                let ny = grid.shape4()[2];
                for p in 0..n {
                    for q in 0..n {
                        let mut k = cfg.variance;
                        for (a, axis) in grid.axes.iter().enumerate() {
                            let (ip, iq) = if a == 0 { (p / ny, q / ny) } else { (p % ny, q % ny) };
                            let d = (ip as f64 - iq as f64) * axis.step;
                            let l = cfg.length[a.min(cfg.length.len() - 1)];
                            k *= match axis.kind {
                                AxisKind::Space { periodic: true } => cfg.kernel.eval_periodic(d, l, axis.n as f64 * axis.step),
                                _ => cfg.kernel.eval(d, l),
                            };
                            // The Cholesky sampler's jitter scales each axis's diagonal by 1 + δ.
                            if ip == iq {
                                k *= 1.0 + cfg.jitter;
                            }
                        }
                        assert!((target[[p, q]] - k).abs() < 1e-12 * cfg.variance, "target covariance differs from the kernel at ({p}, {q})");
                    }
                }
                let mut rng = StdRng::seed_from_u64(7);
                let x = s.sample(&mut rng, n_samples);
                let emp = x.t().dot(&x) / n_samples as f64;
                let mut worst: f64 = 0.0;
                for p in 0..n {
                    for q in 0..n {
                        let se = ((target[[p, p]] * target[[q, q]] + target[[p, q]].powi(2)) / n_samples as f64).sqrt();
                        worst = worst.max((emp[[p, q]] - target[[p, q]]).abs() / se);
                    }
                }
                assert!(worst < 5.0, "{method:?} on {:?}: worst entry {worst:.2} standard errors off", grid.shape());
            }
        }
    }

    /// The periodised exponential kernel has a closed form (a geometric series over images):
    /// `Σ_m exp(−|d + mL|/ℓ) = cosh((L/2 − |d|)/ℓ) / sinh(L/(2ℓ))` for `|d| ≤ L`.
    #[test]
    fn periodised_kernel_matches_the_closed_form() {
        let (l, period): (f64, f64) = (0.4, 1.0);
        for d in [0.0f64, 0.1, 0.37, 0.5, 0.9] {
            let exact = ((period / 2.0 - d) / l).cosh() / (period / (2.0 * l)).sinh();
            let got = Kernel::Matern12.eval_periodic(d, l, period);
            assert!((got - exact).abs() < 1e-14 * exact, "d = {d}: {got} vs {exact}");
        }
    }

    /// Bad configurations are errors that name the field.
    #[test]
    fn bad_configs_are_rejected() {
        let grid = Grid { channels: vec!["u".into()], axes: vec![Axis::space("x", 8, 0.0, 0.1, false)] };
        assert!(GpConfig { length: vec![0.0], ..GpConfig::default() }.sampler(&grid).is_err());
        assert!(GpConfig { length: vec![0.1, 0.2, 0.3], ..GpConfig::default() }.sampler(&grid).is_err());
        assert!(GpConfig { variance: -1.0, ..GpConfig::default() }.sampler(&grid).is_err());
    }
}
