//! Reference samplers of our own, so that training and reference data need no download:
//! the Metropolis-adjusted Langevin algorithm (MALA) and random-walk Metropolis–Hastings for
//! `p(x) ∝ exp(−β u(x))`. All chains advance together as one batch (one energy call per step).

use ndarray::{Array1, Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::energy::Energy;
use crate::{Error, Result};

/// Settings of [`mala`] and [`metropolis`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MalaConfig {
    /// Parallel chains.
    pub chains: usize,
    /// Steps discarded at the start (the step size adapts during them).
    pub burn_in: usize,
    /// Samples kept per chain.
    pub samples: usize,
    /// Steps between kept samples.
    pub thin: usize,
    /// Initial step size `h` (MALA: `x' = x + h β f + √(2h) ξ`; Metropolis: proposal s.d.).
    pub step_size: f64,
    /// Adapt the step size during burn-in toward the optimal acceptance rate (0.574 for MALA,
    /// Roberts & Rosenthal 1998; 0.234 for random-walk Metropolis, Roberts et al. 1997).
    pub adapt: bool,
    /// Inverse temperature β.
    pub beta: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for MalaConfig {
    fn default() -> Self {
        MalaConfig { chains: 64, burn_in: 1000, samples: 1000, thin: 1, step_size: 0.01, adapt: true, beta: 1.0, seed: 0 }
    }
}

/// Samples of a chain ensemble.
#[derive(Clone, Debug)]
pub struct McmcSamples {
    /// `[samples · chains, dim]`, draw-major: rows `k·chains .. (k+1)·chains` are draw `k` of
    /// every chain.
    pub samples: Array2<f64>,
    /// `u` of each sample, `[samples · chains]`.
    pub energies: Array1<f64>,
    /// Acceptance rate after burn-in.
    pub acceptance: f64,
    /// The step size in force after burn-in.
    pub step_size: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Mala,
    Metropolis,
}

/// MALA (Roberts & Tweedie 1996): propose `x' = x + h β f(x) + √(2h) ξ` and accept with
/// probability `min(1, p(x') k(x | x') / (p(x) k(x' | x)))`, `k` the Gaussian proposal density.
/// Chains start at the rows of `x0: [chains, dim]`.
///
/// # Errors
/// `InvalidArgument` for zero chains / samples / thin or a bad step size; `Shape` for a wrong
/// width; `NonFinite` if a starting energy is not finite (naming the chain).
pub fn mala(energy: &dyn Energy, x0: ArrayView2<f64>, cfg: &MalaConfig) -> Result<McmcSamples> {
    run(energy, x0, cfg, Kind::Mala)
}

/// Random-walk Metropolis–Hastings with a Gaussian proposal of s.d. `step_size`.
///
/// # Errors
/// As [`mala`].
pub fn metropolis(energy: &dyn Energy, x0: ArrayView2<f64>, cfg: &MalaConfig) -> Result<McmcSamples> {
    run(energy, x0, cfg, Kind::Metropolis)
}

fn run(energy: &dyn Energy, x0: ArrayView2<f64>, cfg: &MalaConfig, kind: Kind) -> Result<McmcSamples> {
    if cfg.chains == 0 || cfg.samples == 0 || cfg.thin == 0 || !(cfg.step_size > 0.0) || !(cfg.beta > 0.0) {
        return Err(Error::InvalidArgument { name: "mcmc", reason: format!("chains, samples and thin must be ≥ 1, step_size and beta > 0: {cfg:?}") });
    }
    let (c, d) = (cfg.chains, energy.dim());
    if x0.dim() != (c, d) {
        return Err(Error::Shape { what: "MCMC start".into(), expected: vec![c, d], got: vec![x0.nrows(), x0.ncols()] });
    }
    let beta = cfg.beta;
    let mut x = x0.to_owned();
    let (mut u, mut f) = energy.energy_and_force(x.view());
    if let Some(i) = u.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite { what: "MCMC starting energy (step = chain index)", step: i, t: f64::NAN });
    }
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut h = cfg.step_size;
    let target = if kind == Kind::Mala { 0.574 } else { 0.234 };
    let total = cfg.burn_in + cfg.samples * cfg.thin;
    let mut samples = Array2::zeros((cfg.samples * c, d));
    let mut energies = Array1::zeros(cfg.samples * c);
    let (mut acc, mut tried) = (0usize, 0usize);
    let mut xp = Array2::zeros((c, d));
    for step in 0..total {
        let noise: Array2<f64> = Array2::from_shape_simple_fn((c, d), || StandardNormal.sample(&mut rng));
        match kind {
            Kind::Mala => xp.assign(&(&x + &(h * beta * &f) + &((2.0 * h).sqrt() * &noise))),
            Kind::Metropolis => xp.assign(&(&x + &(h * &noise))),
        }
        let (up, fp) = energy.energy_and_force(xp.view());
        let mut accepted = 0usize;
        for i in 0..c {
            let mut log_a = -beta * (up[i] - u[i]);
            if kind == Kind::Mala {
                // log k(x | x') − log k(x' | x) with k(b | a) ∝ exp(−|b − a − hβ f(a)|² / 4h).
                let (mut fwd, mut rev) = (0.0, 0.0);
                for k in 0..d {
                    let a = xp[[i, k]] - x[[i, k]] - h * beta * f[[i, k]];
                    let b = x[[i, k]] - xp[[i, k]] - h * beta * fp[[i, k]];
                    fwd += a * a;
                    rev += b * b;
                }
                log_a += (fwd - rev) / (4.0 * h);
            }
            if up[i].is_finite() && rng.random::<f64>().ln() < log_a {
                x.row_mut(i).assign(&xp.row(i));
                f.row_mut(i).assign(&fp.row(i));
                u[i] = up[i];
                accepted += 1;
            }
        }
        if step < cfg.burn_in {
            if cfg.adapt {
                // Robbins–Monro on log h with a decaying gain.
                let rate = accepted as f64 / c as f64;
                h *= ((rate - target) / (1.0 + step as f64).powf(0.6) * 2.0).exp();
            }
        } else {
            acc += accepted;
            tried += c;
            let k = step - cfg.burn_in;
            if (k + 1) % cfg.thin == 0 {
                let draw = k / cfg.thin;
                samples.slice_mut(ndarray::s![draw * c..(draw + 1) * c, ..]).assign(&x);
                energies.slice_mut(ndarray::s![draw * c..(draw + 1) * c]).assign(&u);
            }
        }
    }
    Ok(McmcSamples { samples, energies, acceptance: acc as f64 / tried.max(1) as f64, step_size: h })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boltzmann::energy::DoubleWell2D;
    use ndarray::Array2;

    /// `u = ½ |x|² / σ²`: p = N(0, σ² I).
    struct Gauss(f64);
    impl Energy for Gauss {
        fn dim(&self) -> usize {
            2
        }
        fn energy(&self, x: ArrayView2<f64>) -> Array1<f64> {
            x.rows().into_iter().map(|r| 0.5 * r.dot(&r) / (self.0 * self.0)).collect()
        }
        fn energy_and_force(&self, x: ArrayView2<f64>) -> (Array1<f64>, Array2<f64>) {
            (self.energy(x), -x.to_owned() / (self.0 * self.0))
        }
        fn name(&self) -> String {
            "gauss".into()
        }
    }

    /// Mean and standard error of `g` over samples, the SE from chain means (the chains are
    /// independent, so the spread of their means carries all autocorrelation).
    fn chain_mean(s: &McmcSamples, chains: usize, g: impl Fn(&[f64]) -> f64) -> (f64, f64) {
        let draws = s.samples.nrows() / chains;
        let means: Vec<f64> = (0..chains).map(|c| (0..draws).map(|k| g(s.samples.row(k * chains + c).as_slice().unwrap())).sum::<f64>() / draws as f64).collect();
        let m = means.iter().sum::<f64>() / chains as f64;
        let var = means.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (chains - 1) as f64;
        (m, (var / chains as f64).sqrt())
    }

    #[test]
    fn samplers_reproduce_gaussian_moments() {
        for kind in [Kind::Mala, Kind::Metropolis] {
            let cfg = MalaConfig { chains: 64, burn_in: 500, samples: 400, thin: 2, step_size: 0.1, ..MalaConfig::default() };
            let x0 = Array2::from_elem((64, 2), 1.0);
            let s = run(&Gauss(1.5), x0.view(), &cfg, kind).unwrap();
            assert!(s.acceptance > 0.1 && s.acceptance < 0.95, "acceptance {}", s.acceptance);
            let (m, se) = chain_mean(&s, 64, |x| x[0]);
            assert!(m.abs() < 4.0 * se, "mean {m} ± {se}");
            let (v, se) = chain_mean(&s, 64, |x| x[1] * x[1]);
            assert!((v - 2.25).abs() < 4.0 * se, "E[x²] {v} ± {se} vs 2.25");
        }
    }

    #[test]
    fn mala_matches_double_well_quadrature() {
        // x₁ separates; the x₀ factor exp(−β(x⁴ − 4x²)) is symmetric, so P(x₀ > 0) = ½, and
        // E[x₀²] = ∫ x² e^{−u₀} / ∫ e^{−u₀} by a trapezoid on [−4, 4] with 40 001 points.
        let u0 = |x: f64| x.powi(4) - 4.0 * x * x;
        let n = 40_001;
        let h = 8.0 / (n - 1) as f64;
        let (mut z, mut m2) = (0.0, 0.0);
        for i in 0..n {
            let x = -4.0 + h * i as f64;
            let w = if i == 0 || i == n - 1 { 0.5 } else { 1.0 } * (-u0(x)).exp();
            z += w;
            m2 += w * x * x;
        }
        let exact_m2 = m2 / z;
        let cfg = MalaConfig { chains: 128, burn_in: 1000, samples: 300, thin: 5, step_size: 0.05, seed: 3, ..MalaConfig::default() };
        let x0 = Array2::from_shape_fn((128, 2), |(i, k)| if k == 0 { if i % 2 == 0 { 1.4 } else { -1.4 } } else { 0.0 });
        let s = mala(&DoubleWell2D::default(), x0.view(), &cfg).unwrap();
        let (m, se) = chain_mean(&s, 128, |x| x[0] * x[0]);
        assert!((m - exact_m2).abs() < 4.0 * se, "E[x₀²] {m} ± {se} vs {exact_m2}");
        let (p, se) = chain_mean(&s, 128, |x| (x[0] > 0.0) as u8 as f64);
        assert!((p - 0.5).abs() < 4.0 * se, "P(x₀ > 0) {p} ± {se}");
        // Bad input.
        assert!(matches!(mala(&DoubleWell2D::default(), Array2::zeros((3, 2)).view(), &cfg), Err(Error::Shape { .. })));
        let nan = Array2::from_elem((128, 2), f64::NAN);
        assert!(matches!(mala(&DoubleWell2D::default(), nan.view(), &cfg), Err(Error::NonFinite { step: 0, .. })));
    }
}
