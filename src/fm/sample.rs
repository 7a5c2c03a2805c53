//! Sampling and likelihoods: the probability-flow ODE `dx/dt = b(t, x)` through
//! [`crate::ode::solve`], the family of SDEs with the same marginals
//! `dX = [b + ε(t) s] dt + √(2ε(t)) dW` through [`crate::sde::sdeint`] (Albergo et al. 2023,
//! §2.3), the log-density by the instantaneous change of variables
//! `d log ρ(x_t)/dt = −∇·b(t, x_t)` (Chen et al. 2018) with the exact trace or Hutchinson's
//! estimator (Grathwohl et al. 2019), and the straightness of a flow (Liu et al. 2023).

use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::model::{noise_scale, BaseKind};
use super::path::Interpolant;
use crate::host::ToHost;
use crate::ode::{self, Time, VectorField};
use crate::sde::{Noise, SdeField};
use crate::{Error, Result};

/// How the divergence `∇·b` is computed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trace {
    /// Exactly, by `d` vector–Jacobian products with the unit vectors (small `d`).
    Exact,
    /// Hutchinson's estimator `E[εᵀ (∂b/∂x) ε]` with `probes` Rademacher vectors per sample,
    /// fixed for the whole solve (so the ODE stays deterministic; FFJORD).
    Hutchinson {
        /// Probe vectors averaged per sample.
        probes: usize,
        /// Seed of the probes.
        seed: u64,
    },
}

/// `∇·b(t, x)` per sample, `[batch]`.
fn divergence<F: VectorField<2>>(field: &F, t: &Time, x: &Tensor<2>, trace: &Trace, probes: &[Vec<f64>]) -> (Tensor<2>, Vec<f64>) {
    let [b, d] = x.dims();
    if let Trace::Exact = trace {
        if let Some(out) = field.exact_divergence(t, x) {
            return out;
        }
    }
    let (v, saved) = field.eval_saving(t, x);
    let mut div = vec![0.0; b];
    let dev = x.device();
    match trace {
        Trace::Exact => {
            for k in 0..d {
                let mut a = vec![0.0; b * d];
                (0..b).for_each(|i| a[i * d + k] = 1.0);
                let a = Tensor::<2>::from_data(TensorData::new(a, [b, d]), (&dev, x.dtype()));
                let g: Vec<f64> = field.vjp_saved(&saved, &a, None).to_vec_as();
                (0..b).for_each(|i| div[i] += g[i * d + k]);
            }
        }
        Trace::Hutchinson { .. } => {
            for eps in probes {
                let a = Tensor::<2>::from_data(TensorData::new(eps.clone(), [b, d]), (&dev, x.dtype()));
                let g: Vec<f64> = field.vjp_saved(&saved, &a, None).to_vec_as();
                for i in 0..b {
                    div[i] += (0..d).map(|k| g[i * d + k] * eps[i * d + k]).sum::<f64>() / probes.len() as f64;
                }
            }
        }
    }
    (v, div)
}

/// The augmented field `[dx/dt, dℓ/dt] = [b, sign · ∇·b]` on `[batch, d + 1]`.
pub(crate) struct Augmented<'a, F> {
    field: &'a F,
    trace: Trace,
    probes: Vec<Vec<f64>>,
    sign: f64,
}

impl<F: VectorField<2>> VectorField<2> for Augmented<'_, F> {
    type Params = ();
    type Saved = ();

    fn eval(&self, t: &Time, y: &Tensor<2>) -> Tensor<2> {
        let [b, d1] = y.dims();
        let x = y.clone().slice([0..b, 0..d1 - 1]);
        let (v, div) = divergence(self.field, t, &x, &self.trace, &self.probes);
        let l = Tensor::<2>::from_data(TensorData::new(div.iter().map(|v| self.sign * v).collect::<Vec<f64>>(), [b, 1]), (&y.device(), y.dtype()));
        Tensor::cat(vec![v, l], 1)
    }

    fn eval_saving(&self, t: &Time, y: &Tensor<2>) -> (Tensor<2>, ()) {
        (self.eval(t, y), ())
    }

    fn check_state(&self, y: &Tensor<2>) -> Result<()> {
        let [b, d1] = y.dims();
        if d1 == 0 {
            return Err(Error::Shape { what: "likelihood state [x, log-density]".into(), expected: vec![b, 2], got: vec![b, d1] });
        }
        self.field.check_state(&y.clone().slice([0..b, 0..d1 - 1]))
    }

    fn has_vjp(&self) -> bool {
        false
    }

    /// The augmented field is for forward solves only: its VJP would need second derivatives
    /// of `b`, which the fused network does not provide.
    fn vjp_saved(&self, _: &(), _: &Tensor<2>, _: Option<(&mut (), f64)>) -> Tensor<2> {
        panic!("the likelihood ODE has no VJP (it would need second derivatives of the velocity); use it for forward solves only")
    }

    fn zero_params(&self) {}
}

fn rademacher(n: usize, probes: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..probes).map(|_| (0..n).map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 }).collect()).collect()
}

fn check_trace(trace: &Trace) -> Result<()> {
    if let Trace::Hutchinson { probes: 0, .. } = trace {
        return Err(Error::invalid("trace.probes", "Hutchinson's estimator needs at least one probe"));
    }
    Ok(())
}

/// `log q₁(x₁)` of the flow `dx/dt = b(t, x)` on `[0, 1]`, for data `x1: [batch, d]`: solve the
/// augmented ODE backwards from `t = 1` to `t = 0` and add the base log-density,
///
/// `log q₁(x₁) = log ρ₀(x(0)) − ∫₀¹ ∇·b(t, x(t)) dt`.
///
/// `base_log_density` maps the states at `t = 0` (`[batch, d]`, row-major) to `log ρ₀` per row.
/// Returns `(log q₁ [batch], x(0) [batch, d])`.
///
/// # Errors
/// The solver's errors; `InvalidArgument` for zero Hutchinson probes.
pub fn log_density<F: VectorField<2>>(
    field: &F,
    x1: &Tensor<2>,
    base_log_density: impl Fn(&[f64], usize) -> Vec<f64>,
    trace: Trace,
    opts: &ode::Options,
) -> Result<(Vec<f64>, Vec<f64>)> {
    check_trace(&trace)?;
    let [b, d] = x1.dims();
    let probes = match trace {
        Trace::Exact => Vec::new(),
        Trace::Hutchinson { probes, seed } => rademacher(b * d, probes, seed),
    };
    // dℓ/dt = +∇·b integrated from 1 to 0 gives ℓ(0) = −∫₀¹ ∇·b dt.
    let aug = Augmented { field, trace, probes, sign: 1.0 };
    let y1 = Tensor::cat(vec![x1.clone(), x1.zeros_like().slice([0..b, 0..1])], 1);
    let sol = ode::solve(&aug, y1, &[1.0, 0.0], opts)?;
    let y0: Vec<f64> = sol.ys[1].to_vec_as();
    let x0: Vec<f64> = (0..b).flat_map(|i| y0[i * (d + 1)..i * (d + 1) + d].to_vec()).collect();
    let lp0 = base_log_density(&x0, d);
    Ok(((0..b).map(|i| lp0[i] + y0[i * (d + 1) + d]).collect(), x0))
}

/// Sample and score in one pass: push base samples `x0` through the flow from `t = 0` to 1
/// while integrating `dℓ/dt = −∇·b`, so `ℓ(1) = log q₁(x(1))` given `ℓ(0) = log ρ₀(x0)`
/// (`log_p0`, one per row). Returns `(x(1) [batch, d], log q₁ [batch])`.
///
/// # Errors
/// As [`log_density`].
pub fn sample_with_log_density<F: VectorField<2>>(
    field: &F,
    x0: &Tensor<2>,
    log_p0: &[f64],
    trace: Trace,
    opts: &ode::Options,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (x1, l1, _) = sample_augmented(field, x0, log_p0, trace, |aug, y0| {
        let (y1, stats) = ode::solve(aug, y0, &[0.0, 1.0], opts)?.into_end()?;
        Ok((y1, stats.nfe))
    })?;
    Ok((x1, l1))
}

/// The one-pass sampling of [`sample_with_log_density`] with the augmented state
/// `[x, ℓ]: [batch, d + 1]` carried from 0 to 1 by `solve` (which returns it and its
/// evaluations): `(x(1) [batch, d], log q₁ [batch], evaluations)`.
pub(crate) fn sample_augmented<F: VectorField<2>>(
    field: &F,
    x0: &Tensor<2>,
    log_p0: &[f64],
    trace: Trace,
    solve: impl FnOnce(&Augmented<'_, F>, Tensor<2>) -> Result<(Tensor<2>, usize)>,
) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    check_trace(&trace)?;
    let [b, d] = x0.dims();
    if log_p0.len() != b {
        return Err(Error::Shape { what: "log_p0".into(), expected: vec![b], got: vec![log_p0.len()] });
    }
    let probes = match trace {
        Trace::Exact => Vec::new(),
        Trace::Hutchinson { probes, seed } => rademacher(b * d, probes, seed),
    };
    let aug = Augmented { field, trace, probes, sign: -1.0 };
    let l0 = Tensor::<2>::from_data(TensorData::new(log_p0.to_vec(), [b, 1]), (&x0.device(), x0.dtype()));
    let (y1, nfe) = solve(&aug, Tensor::cat(vec![x0.clone(), l0], 1))?;
    let y1: Vec<f64> = y1.host_vec()?;
    let x1 = (0..b).flat_map(|i| y1[i * (d + 1)..i * (d + 1) + d].to_vec()).collect();
    Ok((x1, (0..b).map(|i| y1[i * (d + 1) + d]).collect(), nfe))
}

/// `log N(x; 0, I)` per row of `x: [batch, d]`.
pub fn standard_normal_log_density(x: &[f64], d: usize) -> Vec<f64> {
    let c = -0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln();
    x.chunks(d).map(|r| c - 0.5 * r.iter().map(|v| v * v).sum::<f64>()).collect()
}

/// The diffusion coefficient `ε(t) ≥ 0` of the sampling SDE.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Diffusion {
    /// `ε(t) = c`.
    Constant {
        /// `c ≥ 0`.
        eps: f64,
    },
    /// `ε(t) = c σ_t`, with `σ_t` the scale of the Gaussian part of `x_t`: vanishes where the
    /// path has no noise (at `t = 1` of a one-sided path), where the score is singular.
    NoiseScaled {
        /// `c ≥ 0`.
        eps: f64,
    },
}

/// Where the score `s(t, x)` of the sampling SDE comes from.
pub enum ScoreSource<'a, S> {
    /// A field that returns the score (a score or denoiser model, or a closed form).
    Field(&'a S),
    /// From the velocity, for a path with a Gaussian base and `γ = 0` (Albergo et al. 2023,
    /// §4): `x = α E[x₀|x] + β E[x₁|x]` and `b = α' E[x₀|x] + β' E[x₁|x]` give
    /// `E[x₀|x] = (β b − β' x)/(α'β − αβ')` and `s = −E[x₀|x]/α`.
    FromVelocity,
}

/// The SDE `dX = [b + ε(t) s] dt + √(2ε(t)) dW` whose marginals are those of the interpolant
/// for every `ε ≥ 0` (Albergo et al. 2023, Theorem 2.7); additive diagonal noise.
pub struct InterpolantSde<'a, V, S> {
    /// The velocity `b(t, x)`.
    pub velocity: &'a V,
    /// The score.
    pub score: ScoreSource<'a, S>,
    /// `ε(t)`.
    pub diffusion: Diffusion,
    /// The path the fields were trained on.
    pub path: &'a dyn Interpolant,
    /// The base of the path.
    pub base: BaseKind,
}

impl<V: VectorField<2>, S: VectorField<2>> InterpolantSde<'_, V, S> {
    fn eps(&self, t: f64) -> f64 {
        match self.diffusion {
            Diffusion::Constant { eps } => eps,
            Diffusion::NoiseScaled { eps } => eps * noise_scale(self.path, self.base, t),
        }
    }

    /// Check that the score can be formed.
    ///
    /// # Errors
    /// `InvalidArgument` for a negative `ε`, or a score from the velocity on a path that is
    /// not one-sided with a Gaussian base.
    pub fn validate(&self) -> Result<()> {
        let (Diffusion::Constant { eps } | Diffusion::NoiseScaled { eps }) = self.diffusion;
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(Error::invalid("diffusion.eps", format!("need ε ≥ 0, got {eps}")));
        }
        if let ScoreSource::FromVelocity = self.score {
            let c = self.path.coefficients(0.5);
            if self.base != BaseKind::Gaussian || c.gamma != 0.0 {
                return Err(Error::invalid("score", "the score follows from the velocity only for a Gaussian base and γ = 0; train a score or denoiser model"));
            }
        }
        Ok(())
    }
}

impl<V: VectorField<2>, S: VectorField<2>> SdeField for InterpolantSde<'_, V, S> {
    type Params = ();
    type DriftSaved = (f64, Tensor<2>);
    type DiffusionSaved = ();

    fn noise(&self) -> Noise {
        Noise::Diagonal
    }

    fn additive(&self) -> bool {
        true
    }

    fn check_state(&self, y0: &Tensor<2>) -> Result<()> {
        self.velocity.check_state(y0)?;
        match self.score {
            ScoreSource::Field(s) => s.check_state(y0),
            ScoreSource::FromVelocity => Ok(()),
        }
    }

    /// Sampling only: [`crate::sde::sdeint_for_grad`] refuses this SDE.
    fn has_vjp(&self) -> bool {
        false
    }

    fn drift_saving(&self, t: f64, y: &Tensor<2>) -> (Tensor<2>, Self::DriftSaved) {
        let time = Time::Shared(t);
        let v = self.velocity.eval(&time, y);
        let eps = self.eps(t);
        let drift = if eps == 0.0 {
            v
        } else {
            match self.score {
                ScoreSource::Field(s) => v + s.eval(&time, y).mul_scalar(eps),
                ScoreSource::FromVelocity => {
                    // ε s = ε (β' x − β b) / (α (α'β − αβ')); with ε = c α the α cancels.
                    let c = self.path.coefficients(t);
                    let den = c.d_alpha * c.beta - c.alpha * c.d_beta;
                    let e_over_alpha = match self.diffusion {
                        Diffusion::NoiseScaled { eps } => eps,
                        Diffusion::Constant { eps } => eps / c.alpha,
                    };
                    let kv = -e_over_alpha * c.beta / den;
                    let kx = e_over_alpha * c.d_beta / den;
                    v.clone().mul_scalar(1.0 + kv) + y.clone().mul_scalar(kx)
                }
            }
        };
        (drift, (t, y.clone()))
    }

    fn diffusion_saving(&self, t: f64, y: &Tensor<2>) -> (Tensor<2>, ()) {
        (y.zeros_like().add_scalar((2.0 * self.eps(t)).sqrt()), ())
    }

    /// Gradients through the sampler are not offered (sampling only; `has_vjp` is false, so
    /// `sdeint_for_grad` refuses the field before any step).
    fn drift_vjp(&self, _: &Self::DriftSaved, _: &Tensor<2>, _: Option<(&mut (), f64)>) -> Tensor<2> {
        unreachable!("InterpolantSde says has_vjp() = false, which sdeint_for_grad checks")
    }

    fn diffusion_vjp(&self, _: &(), a: &Tensor<2>, _: Option<(&mut (), f64)>) -> Tensor<2> {
        a.zeros_like()
    }

    fn zero_params(&self) {}
}

/// The straightness of the flow from `x0` (Liu et al. 2023, Def. 2.3):
/// `S = ∫₀¹ E|(X₁ − X₀) − b(t, X_t)|² dt`, zero exactly when every trajectory is a straight
/// line traversed at constant speed; computed along `steps` Euler steps (the integral by the
/// left Riemann sum that those steps define). Returns `(S, X₁)`.
///
/// # Errors
/// `InvalidArgument` for zero steps; `NonFinite` for a state that blows up.
pub fn straightness<F: VectorField<2>>(field: &F, x0: &Tensor<2>, steps: usize) -> Result<(f64, Tensor<2>)> {
    if steps == 0 {
        return Err(Error::invalid("steps", "need at least one step"));
    }
    let dt = 1.0 / steps as f64;
    let mut x = x0.clone();
    let mut vs = Vec::with_capacity(steps);
    for k in 0..steps {
        let v = field.eval(&Time::Shared(k as f64 * dt), &x);
        x = x + v.clone().mul_scalar(dt);
        vs.push(v);
    }
    let disp = x.clone() - x0.clone();
    let [b, _] = x0.dims();
    let mut s = 0.0;
    for v in vs {
        let r: f64 = (disp.clone() - v).powi_scalar(2).sum().to_vec_as::<f64>()[0];
        s += r / b as f64 * dt;
    }
    if !s.is_finite() {
        return Err(Error::NonFinite { what: "straightness", step: steps, t: 1.0 });
    }
    Ok((s, x))
}

/// One round of rectified flow's reflow (Liu et al. 2023, §2.2): the pairs `(x₀, X₁(x₀))` of
/// the model's own deterministic transport, to retrain on with [`super::Coupling::Paired`].
/// `x0: [n, d]`; returns `X₁` as `[n, d]`.
///
/// # Errors
/// The solver's errors.
pub fn reflow_targets<F: VectorField<2>>(field: &F, x0: &ndarray::Array2<f64>, opts: &ode::Options) -> Result<ndarray::Array2<f64>> {
    let device = crate::device::reference_cpu();
    let y0 = crate::host::tensor_from_array2(&x0.view(), &device, burn::tensor::DType::F64);
    let sol = ode::solve(field, y0, &[0.0, 1.0], opts)?;
    crate::host::array2_from_tensor(&sol.ys[1])
}
