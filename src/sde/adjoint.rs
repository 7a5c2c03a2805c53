//! Gradients of SDE solves, selected like the ODE strategies ([`crate::ode::Gradient`]):
//!
//! - [`SdeGradient::Direct`]: the discrete adjoint of the fixed steps (what backpropagation
//!   through the solver gives), for Euler–Maruyama, Euler–Heun and SRA1 (Milstein's would need
//!   second derivatives of `g`). Memory: the saved evaluations of every step.
//! - [`SdeGradient::Adjoint`]: the stochastic adjoint (Li, Wong, Chen & Duvenaud, "Scalable
//!   gradients for stochastic differential equations", AISTATS 2020): the Stratonovich SDE of
//!   `(y, a, θ̄)` solved backwards in time with the Euler–Heun scheme on the *same* Brownian
//!   path, re-queried from the [`BrownianPath`]:
//!   `dy = f dt + g ∘ dW`, `da = −aᵀ∂f/∂y dt − aᵀ∂g/∂y ∘ dW`, `dθ̄ = −aᵀ∂f/∂θ dt − aᵀ∂g/∂θ ∘ dW`,
//!   with jumps `a += ∂L/∂y(t_k)` at the output times, where `y` restarts from the stored output.
//!   Memory does not grow with the number of steps; the gradient converges to the exact one as
//!   `dt → 0`. Stratonovich SDEs (or additive noise, where Itô = Stratonovich) only: the Itô
//!   adjoint needs the Itô–Stratonovich correction, a second derivative of `g`.
//! - [`SdeGradient::Reversible`]: the reversible-Heun adjoint (Kidger, Foster, Li & Lyons,
//!   NeurIPS 2021): the exact discrete adjoint of reversible Heun, reconstructing each earlier
//!   state from the later one with the method's algebraic inverse. O(1) memory and the exact
//!   gradient of the discretisation, at one evaluation and one VJP of `(f, g)` per step.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::field::SdeField;
use super::methods::reversible_heun::{reversible_forward, ReversibleHeunState};
use super::methods::{Increment, Saves, SdeSolver};
use super::solve::{check_solve, fixed_forward, fixed_steps, SdeOptions, SdeStats};
use super::{BrownianPath, Calculus};
use crate::ode::solve::all_finite;
use crate::ode::solve::check_cotangents;
use crate::ode::solve::Clock;
use crate::ode::{Grads, Stats};
use crate::{Error, Result};

/// How gradients of an SDE solve are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SdeGradient {
    /// Discrete adjoint of the fixed steps, keeping every step's evaluations.
    #[default]
    Direct,
    /// The stochastic adjoint: a backward Stratonovich SDE on the same Brownian path.
    Adjoint,
    /// The exact O(1)-memory adjoint of reversible Heun (needs `SdeSolver::ReversibleHeun`).
    Reversible,
}

impl std::fmt::Display for SdeGradient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdeGradient::Direct => write!(f, "direct (discrete adjoint)"),
            SdeGradient::Adjoint => write!(f, "stochastic adjoint"),
            SdeGradient::Reversible => write!(f, "reversible Heun adjoint"),
        }
    }
}

/// One fixed step of the forward pass as the discrete adjoint needs it.
struct StepRecord<S: SdeField> {
    h: f64,
    inc: Increment,
    saved: Saves<S>,
}

#[allow(clippy::large_enum_variant)] // one per solve; the small variants are the rare ones
enum Record<S: SdeField> {
    /// Per output interval, its steps.
    Direct(Vec<Vec<StepRecord<S>>>),
    Adjoint,
    /// The final reversible Heun state.
    Reversible(ReversibleHeunState),
}

/// What [`sdeint_for_grad`] keeps for the backward pass.
pub struct SdeTape<'a, S: SdeField, B: BrownianPath> {
    field: &'a S,
    brownian: &'a B,
    times: Vec<f64>,
    opts: SdeOptions,
    ys: Vec<Tensor<2>>,
    record: Record<S>,
}

/// Solve like [`sdeint`](super::sdeint) and keep what `gradient` needs for
/// [`SdeTape::backward`].
///
/// # Errors
/// As `sdeint`; `Unsupported` for Direct with Milstein or adaptive steps, for Reversible with
/// another solver than reversible Heun, and for the stochastic adjoint of an Itô SDE with
/// non-additive noise.
pub fn sdeint_for_grad<'a, S: SdeField, B: BrownianPath>(
    field: &'a S,
    y0: Tensor<2>,
    times: &[f64],
    brownian: &'a B,
    opts: &SdeOptions,
    gradient: SdeGradient,
) -> Result<(Vec<Tensor<2>>, SdeTape<'a, S, B>)> {
    check_solve(field, &y0, times, brownian, opts)?;
    if !field.has_vjp() {
        return Err(Error::Unsupported(format!(
            "gradients through `{}`: the SDE has no vector-Jacobian products (sample it with sdeint)",
            std::any::type_name::<S>()
        )));
    }
    let solver = opts.solver;
    // Backprop through reversible Heun *is* its reversible adjoint (same numbers, O(1) memory).
    let gradient = if solver == SdeSolver::ReversibleHeun && gradient == SdeGradient::Direct { SdeGradient::Reversible } else { gradient };
    match gradient {
        SdeGradient::Direct => {
            if !solver.facts().discrete_adjoint {
                return Err(Error::Unsupported(format!(
                    "the discrete adjoint of {solver:?} (Milstein's would need second derivatives of g); use Euler–Heun or the stochastic adjoint"
                )));
            }
            if opts.adaptive.is_some() {
                return Err(Error::Unsupported("the discrete adjoint of adaptive SDE steps; use the stochastic adjoint".into()));
            }
        }
        SdeGradient::Adjoint => {
            if solver.calculus() == Calculus::Ito && !field.additive() {
                return Err(Error::Unsupported(format!(
                    "the stochastic adjoint of an Itô SDE with non-additive noise ({solver:?}); solve the Stratonovich form (EulerHeun, MilsteinStratonovich, ReversibleHeun) or use Direct"
                )));
            }
        }
        SdeGradient::Reversible => {
            if solver != SdeSolver::ReversibleHeun {
                return Err(Error::Unsupported(format!("the reversible adjoint needs SdeSolver::ReversibleHeun, not {solver:?}")));
            }
        }
    }
    let clock = Clock::start(opts.max_wall_seconds);
    let mut stats = SdeStats::default();
    let (ys, record) = match gradient {
        SdeGradient::Adjoint => (super::sdeint(field, y0, times, brownian, opts)?, Record::Adjoint),
        SdeGradient::Reversible => {
            let (ys, end) = reversible_forward(field, y0, times, brownian, opts.dt, &clock, &mut stats)?;
            (ys, Record::Reversible(end))
        }
        SdeGradient::Direct => {
            let mut intervals: Vec<Vec<StepRecord<S>>> = (1..times.len()).map(|_| Vec::new()).collect();
            let ys = fixed_forward(solver, field, y0, times, brownian, opts.dt, &clock, &mut stats, |k, h, inc, saved| {
                intervals[k].push(StepRecord { h, inc, saved });
            })?;
            (ys, Record::Direct(intervals))
        }
    };
    let tape = SdeTape { field, brownian, times: times.to_vec(), opts: opts.clone(), ys: ys.clone(), record };
    Ok((ys, tape))
}

impl<S: SdeField, B: BrownianPath> SdeTape<'_, S, B> {
    /// Gradients of a loss `L(y(t_0), ..., y(t_N))` given `∂L/∂y(t_k)` for every output time
    /// (zeros where the loss does not depend on a time).
    ///
    /// # Errors
    /// `Shape` for a wrong number or shape of cotangents; `NonFinite` when the backward pass
    /// produces non-finite values; the Brownian path's errors.
    pub fn backward(&self, cotangents: &[Tensor<2>]) -> Result<Grads<2, S::Params>> {
        check_cotangents(cotangents, self.times.len(), &self.ys[0])?;
        let mut params = self.field.zero_params();
        let mut stats = Stats::default();
        let y0 = match &self.record {
            Record::Direct(intervals) => self.backward_direct(intervals, cotangents, &mut params, &mut stats)?,
            Record::Adjoint => self.backward_adjoint(cotangents, &mut params, &mut stats)?,
            Record::Reversible(end) => self.backward_reversible(end, cotangents, &mut params, &mut stats)?,
        };
        if !all_finite(&y0) {
            return Err(Error::NonFinite { what: "SDE adjoint state", step: stats.steps, t: self.times[0] });
        }
        Ok(Grads { y0, params, stats })
    }

    fn backward_direct(&self, intervals: &[Vec<StepRecord<S>>], cotangents: &[Tensor<2>], p: &mut S::Params, stats: &mut Stats) -> Result<Tensor<2>> {
        let (field, solver) = (self.field, self.opts.solver);
        let mut a = cotangents[cotangents.len() - 1].clone();
        for (k, steps) in intervals.iter().enumerate().rev() {
            for r in steps.iter().rev() {
                a = solver
                    .step_vjp(field, &r.saved, &a, r.h, &r.inc, p, stats)
                    .ok_or_else(|| Error::Unsupported(format!("the discrete adjoint of {solver:?}")))?;
                stats.steps += 1;
            }
            a = a + cotangents[k].clone();
        }
        Ok(a)
    }

    fn backward_adjoint(&self, cotangents: &[Tensor<2>], p: &mut S::Params, stats: &mut Stats) -> Result<Tensor<2>> {
        let field = self.field;
        let noise = field.noise();
        let (device, dtype) = (self.ys[0].device(), self.ys[0].dtype());
        let n = self.times.len();
        let mut a = cotangents[n - 1].clone();
        for k in (0..n - 1).rev() {
            // Restart y from the stored forward output: the backward SDE drifts from the
            // forward path at O(dt^p) per interval, not compounding across intervals.
            let mut y = self.ys[k + 1].clone();
            let grid = fixed_steps(self.times[k], self.times[k + 1], self.opts.dt);
            for s in grid.windows(2).rev() {
                let (s0, s1) = (s[0], s[1]);
                let h = s1 - s0;
                let dw = self.brownian.increment(s0, s1, &device, dtype)?;
                // Euler–Heun backwards in time on z = (y, a, θ̄), increments (−h, −dW).
                let (f, fs) = field.drift_saving(s1, &y);
                let (g, gs) = field.diffusion_saving(s1, &y);
                let half_c = noise.cotangent(&a, &dw).mul_scalar(0.5);
                let vg = field.diffusion_vjp(&gs, &half_c, Some((p, 1.0)));
                let y_pred = y.clone() - noise.prod(&g, &dw);
                let a_pred = a.clone() + vg.clone().mul_scalar(2.0);
                let (g2, gs2) = field.diffusion_saving(s1, &y_pred);
                let vg2 = field.diffusion_vjp(&gs2, &noise.cotangent(&a_pred, &dw).mul_scalar(0.5), Some((p, 1.0)));
                let vf = field.drift_vjp(&fs, &a.clone().mul_scalar(h), Some((p, 1.0)));
                y = y - f.mul_scalar(h) - noise.prod(&(g + g2), &dw).mul_scalar(0.5);
                a = a + vf + vg + vg2;
                stats.steps += 1;
                stats.nfe += 2;
                stats.nvjp += 3;
            }
            a = a + cotangents[k].clone();
            if !all_finite(&a) {
                return Err(Error::NonFinite { what: "stochastic adjoint state", step: stats.steps, t: self.times[k] });
            }
        }
        Ok(a)
    }

    fn backward_reversible(&self, end: &ReversibleHeunState, cotangents: &[Tensor<2>], p: &mut S::Params, stats: &mut Stats) -> Result<Tensor<2>> {
        let field = self.field;
        let noise = field.noise();
        let (device, dtype) = (self.ys[0].device(), self.ys[0].dtype());
        let n = self.times.len();
        // Cotangents of the state (y, ŷ, f, g).
        let mut y_bar = cotangents[n - 1].clone();
        let mut yh_bar = y_bar.zeros_like();
        let mut f_bar = y_bar.zeros_like();
        let mut g_bar = end.g.zeros_like();
        let mut state = end.clone();
        let (_, mut fs) = field.drift_saving(state.t, &state.y_hat);
        let (_, mut gs) = field.diffusion_saving(state.t, &state.y_hat);
        stats.nfe += 1;
        for k in (0..n - 1).rev() {
            let grid = fixed_steps(self.times[k], self.times[k + 1], self.opts.dt);
            for s in grid.windows(2).rev() {
                let (s0, s1) = (s[0], s[1]);
                let h = s1 - s0;
                let dw = self.brownian.increment(s0, s1, &device, dtype)?;
                // y' = y + ½h(f + f') + ½(g + g')dW with (f', g') = F(ŷ'), ŷ' = 2y − ŷ + f h + g dW.
                let half_gy = noise.cotangent(&y_bar, &dw).mul_scalar(0.5);
                let f_next = f_bar + y_bar.clone().mul_scalar(0.5 * h);
                let g_next = g_bar + half_gy.clone();
                let yh_tot = yh_bar + field.drift_vjp(&fs, &f_next, Some((p, 1.0))) + field.diffusion_vjp(&gs, &g_next, Some((p, 1.0)));
                stats.nvjp += 1;
                let (prev, pfs, pgs) = state.unstep_saving(field, s0, &dw);
                stats.nfe += 1;
                state = prev;
                fs = pfs;
                gs = pgs;
                // ŷ' = 2y − ŷ + f h + g dW sends ŷ̄'_tot to y, ŷ, f and g.
                f_bar = y_bar.clone().mul_scalar(0.5 * h) + yh_tot.clone().mul_scalar(h);
                g_bar = half_gy + noise.cotangent(&yh_tot, &dw);
                y_bar = y_bar + yh_tot.clone().mul_scalar(2.0);
                yh_bar = yh_tot.neg();
                stats.steps += 1;
            }
            y_bar = y_bar + cotangents[k].clone();
            if !all_finite(&y_bar) {
                return Err(Error::NonFinite { what: "reversible adjoint state", step: stats.steps, t: self.times[k] });
            }
        }
        // At t0, y = ŷ = y0 and (f, g) = F(y0).
        stats.nvjp += 1;
        Ok(y_bar + yh_bar + field.drift_vjp(&fs, &f_bar, Some((p, 1.0))) + field.diffusion_vjp(&gs, &g_bar, Some((p, 1.0))))
    }
}
