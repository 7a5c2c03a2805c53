//! Interpolants `x_t = α(t) x₀ + β(t) x₁ + γ(t) z` between a base sample `x₀`, a data
//! sample `x₁` and an independent standard normal `z` (Albergo, Boffi & Vanden-Eijnden 2023,
//! "Stochastic interpolants: a unifying framework for flows and diffusions", §2–3; Lipman et
//! al. 2023; Liu et al. 2023; Tong et al. 2024).
//!
//! Boundary values: `α(0) = β(1) = 1`, `α(1) = β(0) = 0`, `γ(0) = γ(1) = 0`, so `x_0 = x₀`
//! and `x_1 = x₁` exactly.

use serde::{Deserialize, Serialize};
use std::f64::consts::FRAC_PI_2;

/// The coefficients of an interpolant and their time derivatives at one time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coefficients {
    /// `α(t)`, weight of the base sample `x₀`.
    pub alpha: f64,
    /// `β(t)`, weight of the data sample `x₁`.
    pub beta: f64,
    /// `γ(t)`, scale of the latent noise `z`.
    pub gamma: f64,
    /// `α'(t)`.
    pub d_alpha: f64,
    /// `β'(t)`.
    pub d_beta: f64,
    /// `γ'(t)`.
    pub d_gamma: f64,
}

/// A path `x_t = α(t) x₀ + β(t) x₁ + γ(t) z` on `t ∈ [0, 1]`, with `∂ₜx_t = α' x₀ + β' x₁ + γ' z`.
pub trait Interpolant: Send + Sync {
    /// `α, β, γ` and their derivatives at `t`.
    fn coefficients(&self, t: f64) -> Coefficients;

    /// The times training draws from: `[0, 1]` unless a derivative is singular at an end
    /// (then a slightly smaller interval, stated by the path).
    fn time_range(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
}

/// Built-in paths (serde names in snake case).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProbabilityPath {
    /// Straight line `x_t = (1 − t) x₀ + t x₁ + σ z` with constant noise `σ`: rectified flow
    /// (Liu et al. 2023) and OT-CFM (Tong et al. 2024) at `σ = 0`, torchcfm's
    /// `ConditionalFlowMatcher(sigma)` otherwise (its `γ = σ` does not vanish at the ends, so
    /// the boundary values hold only up to `σ z`).
    Linear {
        /// Constant noise scale `σ ≥ 0`.
        #[serde(default)]
        sigma: f64,
    },
    /// Trigonometric `x_t = cos(πt/2) x₀ + sin(πt/2) x₁` (Albergo et al. 2023, Table 1).
    Trigonometric,
    /// Variance preserving `x_t = √(1 − t²) x₀ + t x₁` (Albergo et al. 2023, Table 1, the
    /// "SBDM-VP" interpolant: score-based diffusion's VP process in another clock; with
    /// `x₀, x₁` of unit variance every `x_t` has unit variance). `α'` is singular at `t = 1`,
    /// so training draws `t ≤ 1 − 10⁻³`.
    VariancePreserving,
    /// Schrödinger-bridge noise: `x_t = (1 − t) x₀ + t x₁ + σ √(t(1 − t)) z` (Tong et al.
    /// 2024, SB-CFM; the Brownian bridge between `x₀` and `x₁` with diffusion `σ²`). `γ'` is
    /// singular at both ends, so training draws `t ∈ [10⁻³, 1 − 10⁻³]`.
    SchrodingerBridge {
        /// Bridge noise `σ > 0`.
        sigma: f64,
    },
}

impl Default for ProbabilityPath {
    fn default() -> Self {
        ProbabilityPath::Linear { sigma: 0.0 }
    }
}

/// Distance from a singular end of the time interval that training keeps.
const SINGULAR_END: f64 = 1e-3;

impl Interpolant for ProbabilityPath {
    fn coefficients(&self, t: f64) -> Coefficients {
        match *self {
            ProbabilityPath::Linear { sigma } => Coefficients { alpha: 1.0 - t, beta: t, gamma: sigma, d_alpha: -1.0, d_beta: 1.0, d_gamma: 0.0 },
            ProbabilityPath::Trigonometric => {
                let (s, c) = (FRAC_PI_2 * t).sin_cos();
                Coefficients { alpha: c, beta: s, gamma: 0.0, d_alpha: -FRAC_PI_2 * s, d_beta: FRAC_PI_2 * c, d_gamma: 0.0 }
            }
            ProbabilityPath::VariancePreserving => {
                let a = (1.0 - t * t).max(0.0).sqrt();
                Coefficients { alpha: a, beta: t, gamma: 0.0, d_alpha: -t / a, d_beta: 1.0, d_gamma: 0.0 }
            }
            ProbabilityPath::SchrodingerBridge { sigma } => {
                let r = (t * (1.0 - t)).max(0.0).sqrt();
                Coefficients { alpha: 1.0 - t, beta: t, gamma: sigma * r, d_alpha: -1.0, d_beta: 1.0, d_gamma: sigma * (1.0 - 2.0 * t) / (2.0 * r) }
            }
        }
    }

    fn time_range(&self) -> (f64, f64) {
        match self {
            ProbabilityPath::Linear { .. } | ProbabilityPath::Trigonometric => (0.0, 1.0),
            ProbabilityPath::VariancePreserving => (0.0, 1.0 - SINGULAR_END),
            ProbabilityPath::SchrodingerBridge { .. } => (SINGULAR_END, 1.0 - SINGULAR_END),
        }
    }
}

impl ProbabilityPath {
    /// Check the parameters.
    ///
    /// # Errors
    /// `InvalidArgument` for a negative or non-finite `σ` (zero for the bridge).
    pub fn validate(&self) -> crate::Result<()> {
        match *self {
            ProbabilityPath::Linear { sigma } if !(sigma >= 0.0 && sigma.is_finite()) => {
                Err(crate::Error::invalid("path.sigma", format!("need σ ≥ 0, got {sigma}")))
            }
            ProbabilityPath::SchrodingerBridge { sigma } if !(sigma > 0.0 && sigma.is_finite()) => {
                Err(crate::Error::invalid("path.sigma", format!("the Schrödinger bridge needs σ > 0, got {sigma}")))
            }
            _ => Ok(()),
        }
    }
}

/// A user-defined path from a closure returning the coefficients and their derivatives.
pub struct FnPath<F> {
    f: F,
    range: (f64, f64),
}

impl<F: Fn(f64) -> Coefficients + Send + Sync> FnPath<F> {
    /// A path with coefficients `f(t)`, trained on `t ∈ [0, 1]`.
    pub fn new(f: F) -> Self {
        Self { f, range: (0.0, 1.0) }
    }

    /// Train on `t ∈ [lo, hi]` instead (for derivatives singular at an end).
    pub fn with_time_range(mut self, lo: f64, hi: f64) -> Self {
        self.range = (lo, hi);
        self
    }
}

impl<F: Fn(f64) -> Coefficients + Send + Sync> Interpolant for FnPath<F> {
    fn coefficients(&self, t: f64) -> Coefficients {
        (self.f)(t)
    }
    fn time_range(&self) -> (f64, f64) {
        self.range
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_paths() -> Vec<(String, Box<dyn Interpolant>)> {
        let mut v: Vec<(String, Box<dyn Interpolant>)> = vec![
            ("linear".into(), Box::new(ProbabilityPath::Linear { sigma: 0.0 })),
            ("trigonometric".into(), Box::new(ProbabilityPath::Trigonometric)),
            ("vp".into(), Box::new(ProbabilityPath::VariancePreserving)),
            ("sb".into(), Box::new(ProbabilityPath::SchrodingerBridge { sigma: 0.7 })),
        ];
        // A user-defined quadratic path: α = (1 − t)², β = 1 − (1 − t)², γ = t(1 − t).
        v.push((
            "fn".into(),
            Box::new(FnPath::new(|t: f64| Coefficients {
                alpha: (1.0 - t).powi(2),
                beta: 1.0 - (1.0 - t).powi(2),
                gamma: t * (1.0 - t),
                d_alpha: -2.0 * (1.0 - t),
                d_beta: 2.0 * (1.0 - t),
                d_gamma: 1.0 - 2.0 * t,
            })),
        ));
        v
    }

    /// Every path interpolates exactly: `x_0 = x₀` (α = 1, β = γ = 0) and `x_1 = x₁`.
    #[test]
    fn boundary_values() {
        for (name, p) in all_paths() {
            let c0 = p.coefficients(0.0);
            let c1 = p.coefficients(1.0);
            assert!((c0.alpha - 1.0).abs() < 1e-15 && c0.beta.abs() < 1e-15 && c0.gamma.abs() < 1e-15, "{name}: {c0:?}");
            assert!(c1.alpha.abs() < 1e-15 && (c1.beta - 1.0).abs() < 1e-15 && c1.gamma.abs() < 1e-15, "{name}: {c1:?}");
        }
    }

    /// Derivatives against central differences. Away from the ends h = 1e-6 (truncation
    /// O(h² f''') ≈ 1e-12, round-off 1e-16/h ≈ 1e-10); near a singular end (VP, bridge) the
    /// third derivative grows like δ^{-5/2} at distance δ ≥ 1e-3, so h shrinks with δ
    /// (h = 1e-4 δ: truncation ≈ 1e-9 δ^{-1/2} ≤ 5e-8, round-off ≤ 1e-16/h = 1e-9). 1e-7
    /// relative to the derivative's size still catches any wrong formula.
    #[test]
    fn derivatives_match_finite_differences() {
        for (name, p) in all_paths() {
            let (lo, hi) = p.time_range();
            for k in 0..=20 {
                let t = (lo + (hi - lo) * k as f64 / 20.0).clamp(1e-3, 1.0 - 1e-3);
                let h = 1e-6f64.min(1e-4 * t.min(1.0 - t));
                let c = p.coefficients(t);
                let (cp, cm) = (p.coefficients(t + h), p.coefficients(t - h));
                let fd = |f: fn(&Coefficients) -> f64| (f(&cp) - f(&cm)) / (2.0 * h);
                let scale = 1.0 + c.d_alpha.abs().max(c.d_gamma.abs());
                for (what, exact, approx) in [("α'", c.d_alpha, fd(|c| c.alpha)), ("β'", c.d_beta, fd(|c| c.beta)), ("γ'", c.d_gamma, fd(|c| c.gamma))] {
                    assert!((exact - approx).abs() < 1e-7 * scale, "{name} {what} at t = {t}: {exact} vs fd {approx}");
                }
            }
        }
    }

    /// The VP interpolant preserves unit variance: α² + β² = 1.
    #[test]
    fn vp_preserves_variance() {
        for k in 0..=10 {
            let c = ProbabilityPath::VariancePreserving.coefficients(k as f64 / 10.0);
            assert!((c.alpha * c.alpha + c.beta * c.beta - 1.0).abs() < 1e-14);
        }
    }

    #[test]
    fn bad_sigma_is_an_error() {
        assert!(ProbabilityPath::Linear { sigma: -1.0 }.validate().is_err());
        assert!(ProbabilityPath::SchrodingerBridge { sigma: 0.0 }.validate().is_err());
        assert!(ProbabilityPath::SchrodingerBridge { sigma: 0.5 }.validate().is_ok());
    }
}
