//! Reversible Heun (Kidger, Foster, Li & Lyons, "Efficient and accurate gradients for neural
//! SDEs", NeurIPS 2021): Stratonovich, strong order 1.0 for commutative noise, and
//! algebraically reversible, so its exact discrete adjoint needs O(1) memory
//! (`SdeGradient::Reversible`). It carries `ŷ`, `f(ŷ)`, `g(ŷ)` across steps, so it has its own
//! loop here instead of [`SdeMethod::step`].

use burn::tensor::Tensor;

use super::{Facts, Increment, Saves, SdeMethod};
use crate::ode::solve::Clock;
use crate::sde::solve::{check_output, fixed_steps};
use crate::sde::{BrownianPath, Calculus, SdeField, SdeStats};
use crate::{Error, Result};

pub(crate) struct ReversibleHeun;

impl SdeMethod for ReversibleHeun {
    fn facts(&self) -> Facts {
        Facts {
            calculus: Calculus::Stratonovich,
            strong_order: (Some(1.0), Some(1.0)),
            additive_only: false,
            needs_dg: false,
            levy_area: false,
            discrete_adjoint: false,
        }
    }

    fn step<S: SdeField>(&self, _field: &S, _t: f64, _h: f64, _y: &Tensor<2>, _inc: &Increment) -> Result<(Tensor<2>, Saves<S>)> {
        Err(Error::Unsupported("a single reversible Heun step: it carries an auxiliary state across steps (solve with sdeint)".into()))
    }
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
