//! Step-size control for adaptive Runge–Kutta methods.

use serde::{Deserialize, Serialize};

/// Proportional–integral step-size controller (Söderlind; Hairer & Wanner,
/// Solving ODEs II, §IV.2):
/// `h_{n+1} = h_n · safety · ε_n^{−β₁/k} · ε_{n−1}^{β₂/k}`, with `k` one more than
/// the order of the error estimator and `ε` the scaled RMS error norm;
/// the factor is clipped to `[min_factor, max_factor]`.
/// `β₁ = 1, β₂ = 0` is the classical I controller.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PiController {
    /// Integral gain `β₁`.
    pub beta1: f64,
    /// Proportional gain `β₂`.
    pub beta2: f64,
    /// Safety factor (< 1).
    pub safety: f64,
    /// Smallest step-size factor per step.
    pub min_factor: f64,
    /// Largest step-size factor per step.
    pub max_factor: f64,
}

impl Default for PiController {
    /// The I controller (`β₁ = 1, β₂ = 0`), the default of diffrax, torchdiffeq and scipy:
    /// on smooth non-stiff problems it grows the step fastest and takes the fewest steps.
    fn default() -> Self {
        Self { beta1: 1.0, beta2: 0.0, safety: 0.9, min_factor: 0.2, max_factor: 10.0 }
    }
}

impl PiController {
    /// The PI gains of Hairer's DOPRI5 (`expo1 = 0.17`, `β = 0.04` for an order-5 pair, i.e.
    /// `β₁ = 0.85`, `β₂ = 0.2` here): smoother step sequences where the step size is limited by
    /// stability rather than accuracy.
    pub fn hairer() -> Self {
        Self { beta1: 0.85, beta2: 0.2, ..Self::default() }
    }
}

impl PiController {
    /// The factor by which to multiply `h` after a step with error norm `err`
    /// (previous accepted error `err_prev`), for an estimator of order `q`.
    /// A rejected step (`err > 1`) never grows the step.
    pub fn factor(&self, err: f64, err_prev: f64, q: u32) -> f64 {
        let k = (q + 1) as f64;
        if !err.is_finite() {
            return self.min_factor;
        }
        if err == 0.0 {
            return self.max_factor;
        }
        let mut f = self.safety * err.powf(-self.beta1 / k);
        if err <= 1.0 && self.beta2 != 0.0 {
            f *= err_prev.max(1e-10).powf(self.beta2 / k);
        }
        let f = f.clamp(self.min_factor, self.max_factor);
        if err > 1.0 {
            f.min(1.0)
        } else {
            f
        }
    }
}
