//! SDE solvers on batched states `[batch, dim]`, driven by a [`BrownianPath`]:
//!
//! | solver | calculus | noise | strong order: commutative / additive |
//! |---|---|---|---|
//! | Euler–Maruyama | Itô | any | 0.5 / 1.0 |
//! | Euler–Heun | Stratonovich | any | 1.0 / 1.0 |
//! | Milstein | Itô or Stratonovich | diagonal | 1.0 / 1.0 |
//! | SRA1 | either (additive) | additive | — / 1.5 |
//! | reversible Heun | Stratonovich | any | 1.0 / 1.0 |
//!
//! Commutative noise here: diagonal noise with `g_i` depending on `y_i` alone (Milstein's
//! correction `(∂g/∂y)ᵀ g` is then `g_i ∂g_i/∂y_i`). General, non-commutative noise drops every
//! method but SRA1 to strong order 0.5. Kloeden & Platen, Numerical Solution of SDEs, §10.2–10.3
//! and §11.1; Rößler, SIAM J. Numer. Anal. 48 (2010) for SRA1; Kidger, Foster, Li & Lyons,
//! "Efficient and accurate gradients for neural SDEs", NeurIPS 2021 for reversible Heun.
//!
//! Steps are fixed (each output interval split into equal steps of at most `dt`) or adaptive by
//! step doubling: a step of `h` against two of `h/2` on the same Brownian path. Adaptivity is
//! sound only with a path that can be queried at any time and returns the same values after a
//! rejection — the [`VirtualBrownianTree`](super::VirtualBrownianTree) — so rejected steps do
//! not bias the law (Gaines & Lyons, SIAM J. Appl. Math. 57, 1997).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::field::{check_shapes, Noise, SdeField};
use super::methods::reversible_heun::reversible_forward;
use super::methods::{Increment, Saves, SdeSolver};
use super::BrownianPath;
use crate::ode::solve::{all_finite, check_times, check_y0, Clock};
use crate::{Error, Result};

/// Itô or Stratonovich interpretation of the noise term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Calculus {
    /// `∫ g dW` as a limit of left-point sums.
    Ito,
    /// `∫ g ∘ dW` as a limit of midpoint sums.
    Stratonovich,
}

/// Step control of an SDE solve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SdeOptions {
    /// The solver.
    pub solver: SdeSolver,
    /// Step size (the largest; the initial one when adaptive).
    pub dt: f64,
    /// Adaptive steps by step doubling; `None` for fixed steps.
    pub adaptive: Option<AdaptiveSde>,
    /// Wall-clock budget of one solve in seconds, checked every step; `TimeLimitReached`
    /// beyond it. `None`: no limit.
    pub max_wall_seconds: Option<f64>,
}

impl Default for SdeOptions {
    fn default() -> Self {
        Self { solver: SdeSolver::EulerHeun, dt: 1e-2, adaptive: None, max_wall_seconds: None }
    }
}

impl SdeOptions {
    /// Fixed steps of at most `dt` with `solver`.
    pub fn fixed(solver: SdeSolver, dt: f64) -> Self {
        Self { solver, dt, adaptive: None, max_wall_seconds: None }
    }
}

/// Tolerances of adaptive SDE steps: the step-doubling error estimate `e = y_{h/2,h/2} − y_h`
/// is accepted when `rms(e / (atol + rtol · max(|y|, |y'|))) ≤ 1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveSde {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Smallest step before `StepSizeUnderflow`.
    pub dt_min: f64,
    /// Step budget (accepted and rejected) before `MaxStepsReached`.
    pub max_steps: usize,
}

impl Default for AdaptiveSde {
    fn default() -> Self {
        Self { rtol: 1e-3, atol: 1e-3, dt_min: 1e-10, max_steps: 100_000 }
    }
}

/// Counters of an SDE solve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SdeStats {
    /// Accepted steps.
    pub steps: usize,
    /// Rejected steps (adaptive solves).
    pub rejected: usize,
}

/// Check what every solve checks; returns nothing but errors.
pub(crate) fn check_solve<S: SdeField, B: BrownianPath>(field: &S, y0: &Tensor<2>, times: &[f64], brownian: &B, opts: &SdeOptions) -> Result<()> {
    check_times(times)?;
    field.check_state(y0)?;
    if times[times.len() - 1] < times[0] {
        return Err(Error::invalid("times", "SDE solves run forward in time"));
    }
    if !(opts.dt > 0.0 && opts.dt.is_finite()) {
        return Err(Error::invalid("dt", format!("must be positive and finite, got {}", opts.dt)));
    }
    if let Some(s) = opts.max_wall_seconds {
        if !(s > 0.0) || s.is_nan() {
            return Err(Error::invalid("max_wall_seconds", format!("must be positive, got {s}")));
        }
    }
    check_y0(y0)?;
    check_shapes(field, times[0], y0, brownian.shape())?;
    let (b0, b1) = brownian.span();
    let slack = 1e-12 * (b1 - b0).abs().max(1.0);
    if times[0] < b0 - slack || times[times.len() - 1] > b1 + slack {
        return Err(Error::invalid("times", format!("[{}, {}] is outside the Brownian path's span [{b0}, {b1}]", times[0], times[times.len() - 1])));
    }
    let facts = opts.solver.facts();
    if facts.additive_only && !field.additive() {
        return Err(Error::Unsupported(format!("{:?} needs additive noise (g independent of y); this SDE does not declare it", opts.solver)));
    }
    if facts.needs_dg && field.noise() != Noise::Diagonal {
        return Err(Error::Unsupported(format!("{:?} is implemented for diagonal noise only", opts.solver)));
    }
    if let Some(a) = &opts.adaptive {
        if opts.solver == SdeSolver::ReversibleHeun {
            return Err(Error::Unsupported("adaptive steps with reversible Heun (its auxiliary state spans steps)".into()));
        }
        if !(a.rtol >= 0.0 && a.atol >= 0.0 && a.rtol + a.atol > 0.0) {
            return Err(Error::invalid("rtol, atol", format!("need non-negative tolerances, not both zero; got {}, {}", a.rtol, a.atol)));
        }
    }
    Ok(())
}

/// The fixed step grid of an output interval: `n` equal steps of at most `dt`.
pub(crate) fn fixed_steps(t0: f64, t1: f64, dt: f64) -> Vec<f64> {
    let n = ((t1 - t0) / dt - 1e-9).ceil().max(1.0) as usize;
    let h = (t1 - t0) / n as f64;
    (0..=n).map(|k| if k == n { t1 } else { t0 + k as f64 * h }).collect()
}

/// Solve from `y(times[0]) = y0` and return the states at every time in `times` (increasing).
///
/// # Shapes
/// `y0: [batch, dim]`; the Brownian path `[batch, dim]` (diagonal noise) or
/// `[batch, noise_dim]` (general); each output `[batch, dim]`.
///
/// # Errors
/// `InvalidArgument` for bad times or `dt`, `Shape` when `f`, `g` or the Brownian path do not
/// have the shapes the noise type implies, `Unsupported` for a solver that does not apply to the
/// noise, the path's own errors for times outside its span or off its grid, `NonFinite` for a
/// non-finite state, `StepSizeUnderflow` / `MaxStepsReached` for adaptive solves.
pub fn sdeint<S: SdeField, B: BrownianPath>(field: &S, y0: Tensor<2>, times: &[f64], brownian: &B, opts: &SdeOptions) -> Result<Vec<Tensor<2>>> {
    Ok(sdeint_with_stats(field, y0, times, brownian, opts)?.0)
}

/// [`sdeint`], also returning step counts.
///
/// # Errors
/// As [`sdeint`].
pub fn sdeint_with_stats<S: SdeField, B: BrownianPath>(
    field: &S,
    y0: Tensor<2>,
    times: &[f64],
    brownian: &B,
    opts: &SdeOptions,
) -> Result<(Vec<Tensor<2>>, SdeStats)> {
    check_solve(field, &y0, times, brownian, opts)?;
    let clock = Clock::start(opts.max_wall_seconds);
    let mut stats = SdeStats::default();
    if opts.solver == SdeSolver::ReversibleHeun {
        let (out, _) = reversible_forward(field, y0, times, brownian, opts.dt, &clock, &mut stats)?;
        return Ok((out, stats));
    }
    let Some(a) = &opts.adaptive else {
        let out = fixed_forward(opts.solver, field, y0, times, brownian, opts.dt, &clock, &mut stats, |_, _, _, _| {})?;
        return Ok((out, stats));
    };
    let mut out = vec![y0.clone()];
    let mut y = y0;
    let mut h_next = opts.dt;
    for w in times.windows(2) {
        y = adaptive_interval(field, y, w[0], w[1], brownian, opts, a, &mut h_next, &clock, &mut stats)?;
        check_output(&y, &stats, w[1])?;
        out.push(y.clone());
    }
    Ok((out, stats))
}

pub(crate) fn check_output(y: &Tensor<2>, stats: &SdeStats, t: f64) -> Result<()> {
    if all_finite(y) {
        Ok(())
    } else {
        Err(Error::NonFinite { what: "SDE state", step: stats.steps, t })
    }
}

/// A one-step solver (not reversible Heun) on fixed steps of at most `dt` per output
/// interval; `keep(interval, h, increment, saved)` receives every step (the discrete adjoint
/// records them, a plain solve drops them). Returns the outputs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fixed_forward<S: SdeField, B: BrownianPath>(
    solver: SdeSolver,
    field: &S,
    y0: Tensor<2>,
    times: &[f64],
    brownian: &B,
    dt: f64,
    clock: &Clock,
    stats: &mut SdeStats,
    mut keep: impl FnMut(usize, f64, Increment, Saves<S>),
) -> Result<Vec<Tensor<2>>> {
    let (device, dtype) = (y0.device(), y0.dtype());
    let mut out = vec![y0.clone()];
    let mut y = y0;
    for (k, w) in times.windows(2).enumerate() {
        for s in fixed_steps(w[0], w[1], dt).windows(2) {
            clock.check(s[0], stats.steps)?;
            let inc = Increment::query(solver, brownian, s[0], s[1], &device, dtype)?;
            let (y1, saved) = solver.step(field, s[0], s[1] - s[0], &y, &inc)?;
            y = y1;
            stats.steps += 1;
            keep(k, s[1] - s[0], inc, saved);
        }
        check_output(&y, stats, w[1])?;
        out.push(y.clone());
    }
    Ok(out)
}

/// Adaptive steps by step doubling across `[t0, t1]`; `h` carries the step size between
/// intervals. The error exponent is `1/(p + ½)` for strong order `p` (the local error of a
/// strong-order-`p` method is `O(h^{p+½})`); safety 0.9, growth clamped to [0.2, 5].
#[allow(clippy::too_many_arguments)]
fn adaptive_interval<S: SdeField, B: BrownianPath>(
    field: &S,
    mut y: Tensor<2>,
    t0: f64,
    t1: f64,
    brownian: &B,
    opts: &SdeOptions,
    a: &AdaptiveSde,
    h: &mut f64,
    clock: &Clock,
    stats: &mut SdeStats,
) -> Result<Tensor<2>> {
    let (device, dtype) = (y.device(), y.dtype());
    let order = opts.solver.strong_order(field.additive()).unwrap_or(0.5);
    let exponent = 1.0 / (order + 0.5);
    let mut t = t0;
    while t < t1 {
        if stats.steps + stats.rejected >= a.max_steps {
            return Err(Error::MaxStepsReached { max_steps: a.max_steps, t });
        }
        clock.check(t, stats.steps)?;
        let hh = h.min(opts.dt).min(t1 - t);
        let last = t + hh >= t1 * (1.0 - 1e-14) - 1e-300;
        let t_end = if last { t1 } else { t + hh };
        let hh = t_end - t;
        let mid = t + 0.5 * hh;
        let full = Increment::query(opts.solver, brownian, t, t_end, &device, dtype)?;
        let first = Increment::query(opts.solver, brownian, t, mid, &device, dtype)?;
        let second = Increment::query(opts.solver, brownian, mid, t_end, &device, dtype)?;
        let y_full = opts.solver.step(field, t, hh, &y, &full)?.0;
        let y_mid = opts.solver.step(field, t, mid - t, &y, &first)?.0;
        let y_two = opts.solver.step(field, mid, t_end - mid, &y_mid, &second)?.0;
        let scale = y.clone().abs().max_pair(y_two.clone().abs()).mul_scalar(a.rtol).add_scalar(a.atol);
        let ratio = (y_two.clone() - y_full) / scale;
        let n = ratio.shape().num_elements() as f64;
        let err = (ratio.square().sum().into_scalar::<f64>() / n).sqrt();
        if !err.is_finite() {
            return Err(Error::NonFinite { what: "SDE error estimate", step: stats.steps, t });
        }
        let factor = if err == 0.0 { 5.0 } else { (0.9 * err.powf(-exponent)).clamp(0.2, 5.0) };
        if err <= 1.0 {
            y = y_two;
            t = t_end;
            stats.steps += 1;
            if !last {
                *h = hh * factor;
            }
        } else {
            stats.rejected += 1;
            *h = hh * factor;
            if *h < a.dt_min {
                return Err(Error::StepSizeUnderflow { t, h: *h });
            }
        }
    }
    Ok(y)
}
