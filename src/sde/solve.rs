//! Fixed-step SDE solvers for diagonal noise on batched states `[batch, dim]`, driven by a
//! [`BrownianPath`] of shape `[batch, dim]`:
//!
//! | solver | calculus | strong order, commutative noise | general noise |
//! |---|---|---|---|
//! | Euler–Maruyama | Itô | 0.5 (1.0 for additive noise) | 0.5 |
//! | Euler–Heun | Stratonovich | 1.0 | 0.5 |
//! | Milstein | Itô or Stratonovich | 1.0 | 0.5 |
//!
//! Commutative noise here: diagonal noise with `g_i` depending on `y_i` alone (then
//! Milstein's correction `(∂g/∂y)ᵀ g` is `g_i ∂g_i/∂y_i`, and the Heun scheme's midpoint
//! evaluation of `g` matches the Stratonovich integral to first order). Kloeden & Platen,
//! Numerical Solution of SDEs, §10.2–10.3 and §11.1; Rümelin, SIAM J. Numer. Anal. 19 (1982).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::BrownianPath;
use crate::ode::field::autodiff_vjp;
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

/// An SDE `dy = f(t, y) dt + g(t, y) ⊙ dW` with diagonal noise, `y: [batch, dim]`.
pub trait SdeField {
    /// Drift `f(t, y)`, `[batch, dim]`.
    fn drift(&self, t: f64, y: &Tensor<2>) -> Tensor<2>;
    /// Diagonal diffusion `g(t, y)`, `[batch, dim]`.
    fn diffusion(&self, t: f64, y: &Tensor<2>) -> Tensor<2>;
    /// `vᵀ ∂g/∂y`, `[batch, dim]` (Milstein's correction uses `v = g`).
    fn diffusion_vjp(&self, t: f64, y: &Tensor<2>, v: &Tensor<2>) -> Tensor<2>;
}

/// An SDE from two closures written with burn tensor operations; `diffusion_vjp` comes from
/// burn autodiff.
pub struct FnSde<F, G> {
    f: F,
    g: G,
}

impl<F, G> FnSde<F, G>
where
    F: Fn(f64, Tensor<2>) -> Tensor<2>,
    G: Fn(f64, Tensor<2>) -> Tensor<2>,
{
    /// Drift `f(t, y)` and diagonal diffusion `g(t, y)`.
    pub fn new(f: F, g: G) -> Self {
        Self { f, g }
    }
}

impl<F, G> SdeField for FnSde<F, G>
where
    F: Fn(f64, Tensor<2>) -> Tensor<2>,
    G: Fn(f64, Tensor<2>) -> Tensor<2>,
{
    fn drift(&self, t: f64, y: &Tensor<2>) -> Tensor<2> {
        (self.f)(t, y.clone())
    }
    fn diffusion(&self, t: f64, y: &Tensor<2>) -> Tensor<2> {
        (self.g)(t, y.clone())
    }
    fn diffusion_vjp(&self, t: f64, y: &Tensor<2>, v: &Tensor<2>) -> Tensor<2> {
        autodiff_vjp(y, v, |y| (self.g)(t, y)).0.without_autodiff()
    }
}

/// The fixed-step SDE solvers. [`SdeSolver::ALL`] is the list the tests loop over.
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
}

impl SdeSolver {
    /// Every solver.
    pub const ALL: [SdeSolver; 4] =
        [SdeSolver::EulerMaruyama, SdeSolver::EulerHeun, SdeSolver::MilsteinIto, SdeSolver::MilsteinStratonovich];

    /// The calculus the solver converges to.
    pub fn calculus(self) -> Calculus {
        match self {
            SdeSolver::EulerMaruyama | SdeSolver::MilsteinIto => Calculus::Ito,
            SdeSolver::EulerHeun | SdeSolver::MilsteinStratonovich => Calculus::Stratonovich,
        }
    }

    /// Strong order for commutative diagonal noise (`g_i` a function of `y_i`), not additive.
    pub fn strong_order(self) -> f64 {
        match self {
            SdeSolver::EulerMaruyama => 0.5,
            SdeSolver::EulerHeun | SdeSolver::MilsteinIto | SdeSolver::MilsteinStratonovich => 1.0,
        }
    }
}

/// One step from `(t, y)` of size `h` with Brownian increment `dw`, all `[batch, dim]`.
fn step<S: SdeField>(solver: SdeSolver, field: &S, t: f64, h: f64, y: &Tensor<2>, dw: &Tensor<2>) -> Tensor<2> {
    let f = field.drift(t, y);
    let g = field.diffusion(t, y);
    match solver {
        SdeSolver::EulerMaruyama => y.clone() + f.mul_scalar(h) + g * dw.clone(),
        SdeSolver::EulerHeun => {
            let y_pred = y.clone() + g.clone() * dw.clone();
            let g_pred = field.diffusion(t, &y_pred);
            y.clone() + f.mul_scalar(h) + (g + g_pred).mul_scalar(0.5) * dw.clone()
        }
        SdeSolver::MilsteinIto | SdeSolver::MilsteinStratonovich => {
            let gdg = field.diffusion_vjp(t, y, &g);
            let dw2 = dw.clone().square();
            let corr = match solver {
                SdeSolver::MilsteinIto => dw2.sub_scalar(h),
                _ => dw2,
            };
            y.clone() + f.mul_scalar(h) + g * dw.clone() + (gdg * corr).mul_scalar(0.5)
        }
    }
}

/// Solve from `y(times[0]) = y0` with steps of at most `dt` (each output interval split into
/// equal steps), returning the states at every time in `times` (increasing).
///
/// # Shapes
/// `y0: [batch, dim]`; the Brownian path has shape `[batch, dim]`; each output `[batch, dim]`.
///
/// # Errors
/// `InvalidArgument` for bad times or `dt`, `Shape` when the Brownian path's shape differs from
/// `y0`'s, the path's own errors for times outside its span, `NonFinite` for a non-finite state.
pub fn sdeint<S: SdeField, B: BrownianPath>(
    field: &S,
    y0: Tensor<2>,
    times: &[f64],
    brownian: &B,
    solver: SdeSolver,
    dt: f64,
) -> Result<Vec<Tensor<2>>> {
    crate::ode::solve::check_times(times)?;
    if times[times.len() - 1] < times[0] {
        return Err(Error::invalid("times", "SDE solves run forward in time"));
    }
    if !(dt > 0.0 && dt.is_finite()) {
        return Err(Error::invalid("dt", format!("must be positive and finite, got {dt}")));
    }
    if brownian.shape() != y0.dims() {
        return Err(Error::Shape {
            what: "Brownian path (diagonal noise needs one per state component)".into(),
            expected: y0.dims().to_vec(),
            got: brownian.shape().to_vec(),
        });
    }
    crate::ode::solve::check_y0(&y0)?;
    let (device, dtype) = (y0.device(), y0.dtype());
    let mut out = vec![y0.clone()];
    let mut y = y0;
    let mut step_count = 0;
    for w in times.windows(2) {
        let n = ((w[1] - w[0]) / dt - 1e-9).ceil().max(1.0) as usize;
        let h = (w[1] - w[0]) / n as f64;
        for k in 0..n {
            let t = w[0] + k as f64 * h;
            let t_next = if k + 1 == n { w[1] } else { t + h };
            let dw = brownian.increment(t, t_next, &device, dtype)?;
            y = step(solver, field, t, t_next - t, &y, &dw);
            step_count += 1;
        }
        if !y.clone().sum().into_scalar::<f64>().is_finite() {
            return Err(Error::NonFinite { what: "SDE state", step: step_count, t: w[1] });
        }
        out.push(y.clone());
    }
    Ok(out)
}

/// The state of the reversible Heun method (Kidger, Foster, Li & Lyons, "Efficient and
/// accurate gradients for neural SDEs", NeurIPS 2021) for a Stratonovich SDE with diagonal
/// noise: the solution `y`, the auxiliary `ŷ`, and `f(t, ŷ)`, `g(t, ŷ)`, all `[batch, dim]`.
#[derive(Clone, Debug)]
pub struct ReversibleHeunState {
    /// Time of the state.
    pub t: f64,
    /// The solution `y`.
    pub y: Tensor<2>,
    /// The auxiliary state `ŷ`.
    pub y_hat: Tensor<2>,
    /// `f(t, ŷ)`.
    pub f: Tensor<2>,
    /// `g(t, ŷ)`.
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
    /// `ŷ' = 2y − ŷ + f h + g ⊙ dw`, `(f', g')` at `ŷ'`,
    /// `y' = y + ½(f + f') h + ½(g + g') ⊙ dw`. One drift and one diffusion evaluation.
    pub fn step<S: SdeField>(&self, field: &S, t1: f64, dw: &Tensor<2>) -> Self {
        let h = t1 - self.t;
        let y_hat = self.y.clone().mul_scalar(2.0) - self.y_hat.clone()
            + self.f.clone().mul_scalar(h)
            + self.g.clone() * dw.clone();
        let f = field.drift(t1, &y_hat);
        let g = field.diffusion(t1, &y_hat);
        let y = self.y.clone()
            + (self.f.clone() + f.clone()).mul_scalar(0.5 * h)
            + (self.g.clone() + g.clone()).mul_scalar(0.5) * dw.clone();
        Self { t: t1, y, y_hat, f, g }
    }

    /// The exact algebraic inverse of [`step`](Self::step): the state at `t0 = t − h` from this
    /// one and the same increment `dw = W(t) − W(t0)` (so a backward pass needs no stored
    /// states: O(1) memory, and the reconstruction is exact up to round-off).
    pub fn unstep<S: SdeField>(&self, field: &S, t0: f64, dw: &Tensor<2>) -> Self {
        let h = self.t - t0;
        let y_hat = self.y.clone().mul_scalar(2.0) - self.y_hat.clone()
            - self.f.clone().mul_scalar(h)
            - self.g.clone() * dw.clone();
        let f = field.drift(t0, &y_hat);
        let g = field.diffusion(t0, &y_hat);
        let y = self.y.clone()
            - (self.f.clone() + f.clone()).mul_scalar(0.5 * h)
            - (self.g.clone() + g.clone()).mul_scalar(0.5) * dw.clone();
        Self { t: t0, y, y_hat, f, g }
    }
}
