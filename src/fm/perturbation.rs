//! Flow perturbation: unbiased importance weights of a continuous flow without its Jacobian
//! (Peng & Gao 2024, "Flow perturbation to accelerate unbiased sampling of Boltzmann
//! distribution"), in the stepwise form of Flow Perturbation++ (Peng & Gao 2026): the flow
//! `dx/dt = b(t, x)` on `[0, 1]` is cut into `T` steps `Φ_k` of a Runge–Kutta method, and
//! each step is perturbed by Gaussian noise,
//!
//! ```text
//! x₀ ~ ρ₀,   x_{k+1} = Φ_k(x_k) + σ ε_k,   ε_k ~ N(0, P),
//! ```
//!
//! with `P` the projector onto the subspace where `ρ₀` lives (the identity, or the
//! centre-of-mass-free subspace of a particle system). The backward kernels are the
//! perturbed backward steps `x_k = Ψ_k(x_{k+1}) + σ ε̃_k` with `Ψ_k` the same method from
//! `t_{k+1}` back to `t_k` (`Ψ_k ≈ Φ_k⁻¹`). On the path space the importance weight of the
//! target `p̃` is, with no Jacobian anywhere,
//!
//! ```text
//! w = p̃(x_T) Π_k N(x_k; Ψ_k(x_{k+1}), σ²P) / [ρ₀(x₀) Π_k N(x_{k+1}; Φ_k(x_k), σ²P)]
//!   = p̃(x_T) / ρ₀(x₀) · exp(Σ_k ½(‖ε_k‖² − ‖ε̃_k‖²)),    ε̃_k = (x_k − Ψ_k(x_{k+1})) / σ,
//! ```
//!
//! and `E[w] = ∫ p̃` exactly for any step count and `σ` (the backward kernels are normalised
//! densities whatever `Ψ_k` is), so self-normalised reweighting of `x_T` is consistent. The
//! estimate `log q̂ = log ρ₀(x₀) − Σ_k ½(‖ε_k‖² − ‖ε̃_k‖²)` plays the role of `log q(x_T)`.
//! Linearising, `ε̃_k ≈ −(I − h ∂b/∂x) ε_k`, so each step contributes `h εᵀ(∂b/∂x)ε + O(h²)`:
//! a one-probe Hutchinson estimate of `h ∇·b` inside an exponential that keeps the weight
//! unbiased; the log-weight variance is `≈ 2h ∫ ‖sym ∂b/∂x‖²_F dt`, falling with the step
//! `h` (Hutchinson's with fixed probes does not). Each step costs one forward and one
//! backward solver step and no backward pass of the network.
//!
//! This is our reading of the method (isotropic noise, the backward ODE step as the backward
//! kernel's mean); the papers also learn the noise scales.

use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::host::ToHost;
use crate::ode::{self, Solver, VectorField};
use crate::{Error, Result};

/// Settings of flow perturbation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Perturbation {
    /// Noise scale `σ > 0` per step, in the units of `x`: small enough that `Ψ_k` is nearly
    /// linear over `σ`, large against the round-off of `Ψ_k ∘ Φ_k` (f32: 1e-6).
    pub sigma: f64,
    /// Steps `T ≥ 1` on `[0, 1]`.
    pub steps: usize,
}

impl Default for Perturbation {
    fn default() -> Self {
        Perturbation { sigma: 0.01, steps: 50 }
    }
}

impl Perturbation {
    /// Check the settings.
    ///
    /// # Errors
    /// `InvalidArgument` for `σ` not finite and positive or zero steps.
    pub fn validate(&self) -> Result<()> {
        if !(self.sigma > 0.0 && self.sigma.is_finite()) {
            return Err(Error::invalid("perturbation.sigma", format!("need a finite σ > 0, got {}", self.sigma)));
        }
        if self.steps == 0 {
            return Err(Error::invalid("perturbation.steps", "need at least 1 step"));
        }
        Ok(())
    }
}

/// One step of `solver` from `t0` to `t1` (either direction).
fn step<F: VectorField<2>>(field: &F, x: &[f64], like: &Tensor<2>, t0: f64, t1: f64, solver: Solver) -> Result<Vec<f64>> {
    let y = Tensor::<2>::from_data(TensorData::new(x.to_vec(), like.dims()), (&like.device(), like.dtype()));
    let opts = ode::Options::fixed(solver, (t1 - t0).abs());
    let sol = ode::solve(field, y, &[t0, t1], &opts)?;
    Ok(sol.ys[1].to_vec_as())
}

/// Push base samples `x0: [batch, d]` through the perturbed flow from `t = 0` to 1 and
/// return `(x_T [batch, d], log q̂ [batch])` with `log q̂ = log ρ₀(x₀) − Σ_k ½(‖ε_k‖² −
/// ‖ε̃_k‖²)` (module docs): `log p̃(x_T) − log q̂` is an unbiased log importance weight.
/// `log_p0` holds `log ρ₀(x₀)` per row; `noise()` returns one draw of `[batch · d]` standard
/// normal values projected onto the base's subspace (row-major); `solver` is the
/// Runge–Kutta method of the steps.
///
/// # Errors
/// `InvalidArgument` for bad settings, `Shape` for a `log_p0` or noise of the wrong length,
/// `NonFinite` when a state or the weight stops being finite; the solver's errors.
pub fn sample_flow_perturbation<F: VectorField<2>>(
    field: &F,
    x0: &Tensor<2>,
    log_p0: &[f64],
    solver: Solver,
    pert: &Perturbation,
    mut noise: impl FnMut() -> Vec<f64>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    pert.validate()?;
    let [b, d] = x0.dims();
    if log_p0.len() != b {
        return Err(Error::Shape { what: "log_p0".into(), expected: vec![b], got: vec![log_p0.len()] });
    }
    let h = 1.0 / pert.steps as f64;
    let sigma = pert.sigma;
    let mut x: Vec<f64> = x0.to_vec_as();
    let mut acc = vec![0.0; b];
    for k in 0..pert.steps {
        let (t0, t1) = (k as f64 * h, if k + 1 == pert.steps { 1.0 } else { (k + 1) as f64 * h });
        let pred = step(field, &x, x0, t0, t1, solver)?;
        let eps = noise();
        if eps.len() != b * d {
            return Err(Error::Shape { what: "flow-perturbation noise".into(), expected: vec![b, d], got: vec![eps.len()] });
        }
        let next: Vec<f64> = pred.iter().zip(&eps).map(|(p, e)| p + sigma * e).collect();
        let back = step(field, &next, x0, t1, t0, solver)?;
        for i in 0..b {
            let r = i * d..(i + 1) * d;
            let fwd: f64 = eps[r.clone()].iter().map(|e| e * e).sum();
            let bwd: f64 = x[r.clone()].iter().zip(&back[r]).map(|(a, c)| ((a - c) / sigma).powi(2)).sum();
            acc[i] += 0.5 * (fwd - bwd);
        }
        x = next;
        if (0..b).any(|i| !acc[i].is_finite()) || x.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { what: "flow-perturbation state or weight", step: k + 1, t: t1 });
        }
    }
    Ok((x, log_p0.iter().zip(&acc).map(|(l, a)| l - a).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ode::problems::DampedRotation;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    type M2 = [[f64; 2]; 2];

    fn mul(a: M2, b: M2) -> M2 {
        let mut c = [[0.0; 2]; 2];
        for i in 0..2 {
            for j in 0..2 {
                c[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j];
            }
        }
        c
    }

    /// RK4's step matrix for `y' = A y` over a step `h` (either sign): the stability polynomial
    /// `R(Z) = I + Z + Z²/2 + Z³/6 + Z⁴/24` at `Z = hA`.
    fn rk4_matrix(a: M2, h: f64) -> M2 {
        let z = [[h * a[0][0], h * a[0][1]], [h * a[1][0], h * a[1][1]]];
        let (mut r, mut p) = ([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]);
        for k in 1..=4 {
            p = mul(p, z);
            for i in 0..2 {
                for j in 0..2 {
                    r[i][j] += p[i][j] / (1..=k).product::<usize>() as f64;
                }
            }
        }
        r
    }

    /// `n` perturbed samples of the damped rotation from `N(0, I)`:
    /// `(log ρ₀(x₀), x_T, Σ_k ½(‖ε‖²−‖ε̃‖²))`.
    fn run(n: usize, pert: Perturbation, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let device = crate::device::cpu_f64().unwrap();
        let field = DampedRotation::default().field();
        let mut rng = StdRng::seed_from_u64(seed);
        let x0: Vec<f64> = (0..2 * n).map(|_| rng.sample(rand_distr::StandardNormal)).collect();
        let log_p0: Vec<f64> = x0.chunks(2).map(|r| -0.5 * (r[0] * r[0] + r[1] * r[1]) - (2.0 * std::f64::consts::PI).ln()).collect();
        let x0 = Tensor::<2>::from_data(TensorData::new(x0, [n, 2]), &device);
        let mut noise = || (0..2 * n).map(|_| rng.sample(rand_distr::StandardNormal)).collect::<Vec<f64>>();
        let (x, lq) = sample_flow_perturbation(&field, &x0, &log_p0, Solver::Rk4, &pert, &mut noise).unwrap();
        let path = lq.iter().zip(&log_p0).map(|(l, l0)| l0 - l).collect();
        (log_p0, x, path)
    }

    fn mean_se(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        (m, (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt())
    }

    /// For a linear field every step's term is the Gaussian quadratic form
    /// `½ εᵀ(I − LᵀL)ε` with `L` RK4's backward step matrix, so the path term has the exact
    /// mean `Σ ½ tr B` (→ `∫ tr A dt = log det` of the flow map as `h → 0`) and variance `Σ ½ tr B²`
    /// (→ `2h ∫ ‖sym A‖²_F`, falling with the step). Checked to 4 standard errors.
    #[test]
    fn path_term_has_the_gaussian_moments() {
        let p = DampedRotation::default();
        let a = [[-p.lambda, p.omega], [-p.omega, -p.lambda]];
        for steps in [10, 40] {
            let pert = Perturbation { sigma: 0.05, steps };
            let l = rk4_matrix(a, -1.0 / steps as f64);
            let ltl = mul([[l[0][0], l[1][0]], [l[0][1], l[1][1]]], l);
            let b = [[1.0 - ltl[0][0], -ltl[0][1]], [-ltl[1][0], 1.0 - ltl[1][1]]];
            let mean = steps as f64 * 0.5 * (b[0][0] + b[1][1]);
            let b2 = mul(b, b);
            let var = steps as f64 * 0.5 * (b2[0][0] + b2[1][1]);
            let (_, _, s) = run(20_000, pert, steps as u64);
            let (m, se) = mean_se(&s);
            assert!((m - mean).abs() < 4.0 * se, "steps {steps}: mean {m} vs {mean} (se {se})");
            // E[path] → log det = −2λ as h → 0 (it is E[exp(path)] that is exact at any h).
            assert!((mean - (-2.0 * p.lambda)).abs() < 1.2 * p.lambda * p.lambda * 2.0 / steps as f64 * 2.0, "steps {steps}: {mean}");
            let sq: Vec<f64> = s.iter().map(|x| (x - mean).powi(2)).collect();
            let (v, vse) = mean_se(&sq);
            assert!((v - var).abs() < 4.0 * vse, "steps {steps}: variance {v} vs {var} (se {vse})");
        }
    }

    /// Unbiased weights: for the target `p̃(x) = exp(−|x|²/(2s²))` (`Z = 2πs²`; `s² = 0.25`
    /// is narrower than the flow's `q ≈ N(0, e⁻¹ I)`, so the weights have finite variance) the
    /// mean of `p̃(x_T) / q̂` is `Z` within 4 standard errors, while dropping the path term
    /// misses `Z` by the flow's volume change `e`.
    #[test]
    fn weights_are_unbiased() {
        let (s2, n) = (0.25f64, 40_000);
        let z = 2.0 * std::f64::consts::PI * s2;
        let (lr, x, path) = run(n, Perturbation { sigma: 0.05, steps: 20 }, 11);
        let lp: Vec<f64> = x.chunks(2).map(|r| -(r[0] * r[0] + r[1] * r[1]) / (2.0 * s2)).collect();
        let w: Vec<f64> = (0..n).map(|i| (lp[i] - lr[i] + path[i]).exp()).collect();
        let (m, se) = mean_se(&w);
        assert!((m - z).abs() < 4.0 * se, "E[w] = {m} ± {se}, Z = {z}");
        let w0: Vec<f64> = (0..n).map(|i| (lp[i] - lr[i]).exp()).collect();
        let (m0, se0) = mean_se(&w0);
        assert!((m0 - z).abs() > 10.0 * se0.max(se), "without the path term E[w] = {m0} should miss Z = {z}");
    }

    #[test]
    fn bad_settings_are_refused() {
        let device = crate::device::cpu_f64().unwrap();
        let field = DampedRotation::default().field();
        let x0 = Tensor::<2>::zeros([3, 2], &device);
        let noise = || vec![0.0; 6];
        for p in [Perturbation { sigma: 0.0, steps: 5 }, Perturbation { sigma: f64::NAN, steps: 5 }, Perturbation { sigma: 0.1, steps: 0 }] {
            assert!(matches!(sample_flow_perturbation(&field, &x0, &[0.0; 3], Solver::Rk4, &p, noise), Err(Error::InvalidArgument { .. })));
        }
        let p = Perturbation::default();
        assert!(matches!(sample_flow_perturbation(&field, &x0, &[0.0; 2], Solver::Rk4, &p, noise), Err(Error::Shape { .. })));
        assert!(matches!(sample_flow_perturbation(&field, &x0, &[0.0; 3], Solver::Rk4, &p, || vec![0.0; 4]), Err(Error::Shape { .. })));
        assert!(matches!(
            sample_flow_perturbation(&field, &x0, &[0.0; 3], Solver::Rk4, &p, || vec![f64::NAN; 6]),
            Err(Error::NonFiniteInput { what: "y0", .. })
        ));
    }
}
