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

use burn::tensor::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::field::{check_shapes, Noise, SdeField};
use super::BrownianPath;
use crate::ode::solve::{check_times, check_y0, Clock};
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

/// The SDE solvers. [`SdeSolver::ALL`] is the list the tests loop over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SdeSolver {
    /// Euler–Maruyama (Itô).
    EulerMaruyama,
    /// Euler–Heun (Stratonovich).
    EulerHeun,
    /// Milstein for diagonal noise, Itô.
    MilsteinIto,
    /// Milstein for diagonal noise, Stratonovich.
    MilsteinStratonovich,
    /// Rößler's SRA1 for additive noise (uses the space-time Lévy area).
    Sra1,
    /// Reversible Heun (Stratonovich), algebraically reversible.
    ReversibleHeun,
}

impl SdeSolver {
    /// Every solver.
    pub const ALL: [SdeSolver; 6] =
        [SdeSolver::EulerMaruyama, SdeSolver::EulerHeun, SdeSolver::MilsteinIto, SdeSolver::MilsteinStratonovich, SdeSolver::Sra1, SdeSolver::ReversibleHeun];

    /// The calculus the solver converges to (SRA1 needs additive noise, where the two agree;
    /// it is listed as Itô).
    pub fn calculus(self) -> Calculus {
        match self {
            SdeSolver::EulerMaruyama | SdeSolver::MilsteinIto | SdeSolver::Sra1 => Calculus::Ito,
            SdeSolver::EulerHeun | SdeSolver::MilsteinStratonovich | SdeSolver::ReversibleHeun => Calculus::Stratonovich,
        }
    }

    /// Whether the solver only applies to additive noise.
    pub fn needs_additive_noise(self) -> bool {
        self == SdeSolver::Sra1
    }

    /// Strong order for commutative diagonal noise (`additive = false`) or additive noise; `None`
    /// where the solver does not apply (SRA1 on non-additive noise).
    pub fn strong_order(self, additive: bool) -> Option<f64> {
        match (self, additive) {
            (SdeSolver::EulerMaruyama, false) => Some(0.5),
            (SdeSolver::Sra1, false) => None,
            (SdeSolver::Sra1, true) => Some(1.5),
            _ => Some(1.0),
        }
    }
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

/// The Brownian quantities of one step: `W_{t,t+h}` and, for SRA1, `H_{t,t+h}`.
pub(crate) struct Increment {
    pub dw: Tensor<2>,
    pub area: Option<Tensor<2>>,
}

impl Increment {
    pub(crate) fn query<B: BrownianPath>(solver: SdeSolver, brownian: &B, t: f64, t_next: f64, device: &Device, dtype: DType) -> Result<Self> {
        if solver == SdeSolver::Sra1 {
            let (dw, area) = brownian.levy(t, t_next, device, dtype)?;
            Ok(Self { dw, area: Some(area) })
        } else {
            Ok(Self { dw: brownian.increment(t, t_next, device, dtype)?, area: None })
        }
    }
}

/// What a step kept for its discrete adjoint (the field's saved states at every evaluation).
pub(crate) enum StepSaved<S: SdeField> {
    /// Euler–Maruyama: `f(y)`, `g(y)`.
    Euler { f: S::DriftSaved, g: S::DiffusionSaved },
    /// Euler–Heun: `f(y)`, `g(y)`, `g(ỹ)` at the predictor `ỹ = y + g(y) dW`.
    Heun { f: S::DriftSaved, g: S::DiffusionSaved, g2: S::DiffusionSaved },
    /// SRA1: `f` at both stages, `g(t)` and `g(t + h)`.
    Sra1 { f1: S::DriftSaved, f2: S::DriftSaved, g0: S::DiffusionSaved, g1: S::DiffusionSaved },
    /// Milstein (no discrete adjoint: it would need second derivatives of `g`).
    Milstein,
}

/// One step of a one-step solver (not reversible Heun) from `(t, y)` to `t + h`; also returns
/// what the discrete adjoint needs.
pub(crate) fn step<S: SdeField>(solver: SdeSolver, field: &S, t: f64, h: f64, y: &Tensor<2>, inc: &Increment) -> (Tensor<2>, StepSaved<S>) {
    let noise = field.noise();
    let dw = &inc.dw;
    match solver {
        SdeSolver::EulerMaruyama => {
            let (f, fs) = field.drift_saving(t, y);
            let (g, gs) = field.diffusion_saving(t, y);
            (y.clone() + f.mul_scalar(h) + noise.prod(&g, dw), StepSaved::Euler { f: fs, g: gs })
        }
        SdeSolver::EulerHeun => {
            let (f, fs) = field.drift_saving(t, y);
            let (g, gs) = field.diffusion_saving(t, y);
            let y_pred = y.clone() + noise.prod(&g, dw);
            let (g2, gs2) = field.diffusion_saving(t, &y_pred);
            let y1 = y.clone() + f.mul_scalar(h) + noise.prod(&(g + g2), dw).mul_scalar(0.5);
            (y1, StepSaved::Heun { f: fs, g: gs, g2: gs2 })
        }
        SdeSolver::MilsteinIto | SdeSolver::MilsteinStratonovich => {
            let f = field.drift(t, y);
            let (g, gs) = field.diffusion_saving(t, y);
            let gdg = field.diffusion_vjp(&gs, &g, None);
            let dw2 = dw.clone().square();
            let corr = if solver == SdeSolver::MilsteinIto { dw2.sub_scalar(h) } else { dw2 };
            let y1 = y.clone() + f.mul_scalar(h) + noise.prod(&g, dw) + (gdg * corr).mul_scalar(0.5);
            (y1, StepSaved::Milstein)
        }
        SdeSolver::Sra1 => {
            // Rößler (2010), SRA1 with c⁽⁰⁾ = (0, ¾), c⁽¹⁾ = (1, 0), A⁽⁰⁾₂₁ = ¾, B⁽⁰⁾₂₁ = 3/2,
            // α = (⅓, ⅔), β⁽¹⁾ = (1, 0), β⁽²⁾ = (−1, 1), written with J = I₍₁,₀₎/h = H + W/2:
            //   z = y + ¾h f(t, y) + (3/2) g(t + h) J,
            //   y' = y + h(⅓ f(t, y) + ⅔ f(t + ¾h, z)) + g(t + h) W + (g(t) − g(t + h)) J.
            let area = inc.area.as_ref().expect("SRA1 increments carry the Lévy area");
            let j = area.clone() + dw.clone().mul_scalar(0.5);
            let (f1, fs1) = field.drift_saving(t, y);
            let (g0, gs0) = field.diffusion_saving(t, y);
            let (g1, gs1) = field.diffusion_saving(t + h, y);
            let z = y.clone() + f1.clone().mul_scalar(0.75 * h) + noise.prod(&g1, &j).mul_scalar(1.5);
            let (f2, fs2) = field.drift_saving(t + 0.75 * h, &z);
            let y1 = y.clone() + (f1.mul_scalar(1.0 / 3.0) + f2.mul_scalar(2.0 / 3.0)).mul_scalar(h) + noise.prod(&g1, dw) + noise.prod(&(g0 - g1), &j);
            (y1, StepSaved::Sra1 { f1: fs1, f2: fs2, g0: gs0, g1: gs1 })
        }
        SdeSolver::ReversibleHeun => unreachable!("reversible Heun carries state between steps"),
    }
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
    if opts.solver.needs_additive_noise() && !field.additive() {
        return Err(Error::Unsupported(format!("{:?} needs additive noise (g independent of y); this SDE does not declare it", opts.solver)));
    }
    if matches!(opts.solver, SdeSolver::MilsteinIto | SdeSolver::MilsteinStratonovich) && field.noise() != Noise::Diagonal {
        return Err(Error::Unsupported("Milstein is implemented for diagonal noise only".into()));
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

pub(crate) fn all_finite(y: &Tensor<2>) -> bool {
    y.clone().sum().into_scalar::<f64>().is_finite()
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

fn check_output(y: &Tensor<2>, stats: &SdeStats, t: f64) -> Result<()> {
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
    mut keep: impl FnMut(usize, f64, Increment, StepSaved<S>),
) -> Result<Vec<Tensor<2>>> {
    let (device, dtype) = (y0.device(), y0.dtype());
    let mut out = vec![y0.clone()];
    let mut y = y0;
    for (k, w) in times.windows(2).enumerate() {
        for s in fixed_steps(w[0], w[1], dt).windows(2) {
            clock.check(s[0], stats.steps)?;
            let inc = Increment::query(solver, brownian, s[0], s[1], &device, dtype)?;
            let (y1, saved) = step(solver, field, s[0], s[1] - s[0], &y, &inc);
            y = y1;
            stats.steps += 1;
            keep(k, s[1] - s[0], inc, saved);
        }
        check_output(&y, stats, w[1])?;
        out.push(y.clone());
    }
    Ok(out)
}

/// Reversible Heun on fixed steps of at most `dt` per output interval: the outputs and the
/// final state (where the reversible adjoint starts).
pub(crate) fn reversible_forward<S: SdeField, B: BrownianPath>(
    field: &S,
    y0: Tensor<2>,
    times: &[f64],
    brownian: &B,
    dt: f64,
    clock: &Clock,
    stats: &mut SdeStats,
) -> Result<(Vec<Tensor<2>>, ReversibleHeunState)> {
    let (device, dtype) = (y0.device(), y0.dtype());
    let mut out = vec![y0.clone()];
    let mut state = ReversibleHeunState::new(field, times[0], y0);
    for w in times.windows(2) {
        for s in fixed_steps(w[0], w[1], dt).windows(2) {
            clock.check(s[0], stats.steps)?;
            let dw = brownian.increment(s[0], s[1], &device, dtype)?;
            state = state.step(field, s[1], &dw);
            stats.steps += 1;
        }
        check_output(&state.y, stats, w[1])?;
        out.push(state.y.clone());
    }
    Ok((out, state))
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
        let y_full = step(opts.solver, field, t, hh, &y, &full).0;
        let y_mid = step(opts.solver, field, t, mid - t, &y, &first).0;
        let y_two = step(opts.solver, field, mid, t_end - mid, &y_mid, &second).0;
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

/// The state of the reversible Heun method (Kidger, Foster, Li & Lyons, NeurIPS 2021) for a
/// Stratonovich SDE: the solution `y`, the auxiliary `ŷ`, and `f(t, ŷ)`, `g(t, ŷ)`.
#[derive(Clone, Debug)]
pub struct ReversibleHeunState {
    /// Time of the state.
    pub t: f64,
    /// The solution `y`, `[batch, dim]`.
    pub y: Tensor<2>,
    /// The auxiliary state `ŷ`, `[batch, dim]`.
    pub y_hat: Tensor<2>,
    /// `f(t, ŷ)`, `[batch, dim]`.
    pub f: Tensor<2>,
    /// `g(t, ŷ)` (diffusion shape).
    pub g: Tensor<2>,
}

impl ReversibleHeunState {
    /// The initial state `y = ŷ = y0`.
    pub fn new<S: SdeField>(field: &S, t0: f64, y0: Tensor<2>) -> Self {
        let f = field.drift(t0, &y0);
        let g = field.diffusion(t0, &y0);
        Self { t: t0, y: y0.clone(), y_hat: y0, f, g }
    }

    /// One step to `t1 = t + h` with increment `dw = W(t1) − W(t)`:
    /// `ŷ' = 2y − ŷ + f h + g dw`, `(f', g')` at `ŷ'`,
    /// `y' = y + ½(f + f') h + ½(g + g') dw`. One drift and one diffusion evaluation.
    pub fn step<S: SdeField>(&self, field: &S, t1: f64, dw: &Tensor<2>) -> Self {
        let noise = field.noise();
        let h = t1 - self.t;
        let y_hat = self.y.clone().mul_scalar(2.0) - self.y_hat.clone() + self.f.clone().mul_scalar(h) + noise.prod(&self.g, dw);
        let f = field.drift(t1, &y_hat);
        let g = field.diffusion(t1, &y_hat);
        let y = self.y.clone() + (self.f.clone() + f.clone()).mul_scalar(0.5 * h) + noise.prod(&(self.g.clone() + g.clone()), dw).mul_scalar(0.5);
        Self { t: t1, y, y_hat, f, g }
    }

    /// The exact algebraic inverse of [`step`](Self::step): the state at `t0 = t − h` from this
    /// one and the same increment `dw = W(t) − W(t0)` (so a backward pass needs no stored
    /// states: O(1) memory, and the reconstruction is exact up to round-off).
    pub fn unstep<S: SdeField>(&self, field: &S, t0: f64, dw: &Tensor<2>) -> Self {
        self.unstep_saving(field, t0, dw).0
    }

    /// [`unstep`](Self::unstep), also returning the saved evaluations of `f` and `g` at the
    /// reconstructed `ŷ` (for the next VJP of the reversible adjoint).
    pub(crate) fn unstep_saving<S: SdeField>(&self, field: &S, t0: f64, dw: &Tensor<2>) -> (Self, S::DriftSaved, S::DiffusionSaved) {
        let noise = field.noise();
        let h = self.t - t0;
        let y_hat = self.y.clone().mul_scalar(2.0) - self.y_hat.clone() - self.f.clone().mul_scalar(h) - noise.prod(&self.g, dw);
        let (f, fs) = field.drift_saving(t0, &y_hat);
        let (g, gs) = field.diffusion_saving(t0, &y_hat);
        let y = self.y.clone() - (self.f.clone() + f.clone()).mul_scalar(0.5 * h) - noise.prod(&(self.g.clone() + g.clone()), dw).mul_scalar(0.5);
        (Self { t: t0, y, y_hat, f, g }, fs, gs)
    }
}
