//! Bespoke solvers (Shaul, Perez, Chen, Thabet, Pumarola & Lipman, ICLR 2024, "Bespoke solvers
//! for generative flow models"): a fixed-step Runge–Kutta method applied to a scale-time
//! transformed probability-flow ODE, with the transformation's few values learned from the
//! model's own trajectories.
//!
//! **Transformation.** With a time map `t_r` (`t₀ = 0`, `t₁ = 1`, increasing) and a scale
//! `s_r > 0` (`s₀ = 1`), the path `x̄(r) = s_r x(t_r)` of a solution of `dx/dt = u(t, x)` solves
//!
//! `dx̄/dr = ū(r, x̄) = (ṡ_r/s_r) x̄ + ṫ_r s_r u(t_r, x̄/s_r)`,
//!
//! and `x(1) = x̄(1)/s₁`. A base method (Euler, midpoint, Heun, RK3, RK4: [`Solver`] without an error
//! estimate) takes `n` equal steps `h = 1/n` in `r`. It sees `t_r, ṫ_r, s_r, ṡ_r` only at its
//! stage nodes `r_i + c_k h`, so those values are the solver's parameters (`8n + 1` for the
//! midpoint method, `4n + 2` for Euler); any values with `t` increasing, `ṫ > 0` and `s > 0`
//! come from a smooth transformation, so the solver keeps the base method's order (the paper's
//! consistency argument, its §2.3). The identity (`t_r = r`, `s_r = 1`) is the base method on
//! equal steps.
//!
//! **Loss.** Along accurate trajectories `x(t)` of the model (adaptive Tsit5 on a fine grid,
//! interpolated by cubic Hermite in `t`), step `i` of the solver started on the trajectory
//! misses it by `d_i = ‖x̄(r_{i+1}) − φ_i(x̄(r_i))‖`. If `L` bounds the Lipschitz constant of
//! `u` in `x`, `ū(r, ·)` has constant `L̄_r = |ṡ_r|/s_r + ṫ_r L`, the step map `φ_j` has
//! constant `Λ_j ≤ 1 + h Σ_k |b_k| ℓ_k` with `ℓ_k = L̄(r_j + c_k h)(1 + h Σ_l |a_kl| ℓ_l)`, and
//! the global error obeys (the paper's Theorem 2.2, in `x` at `r = 1`)
//!
//! `‖x_n − x(1)‖ ≤ (1/s₁) Σ_i M_i d_i`,   `M_i = Π_{j=i+1}^{n−1} Λ_j`.
//!
//! [`train_bespoke`] minimises the mean of that bound over the trajectories (the paper's
//! "RMSE-bound" loss, here with its bound's constants for any explicit base tableau) by Adam.
//! Its gradient is exact through the states (the field's VJP); the field's derivative in `t`
//! comes exactly from the same VJP where the field forms it
//! ([`VectorField::vjp_with_time_saved`]: a flow-matching model on the fused path), and is
//! otherwise a central difference of step `1e-3` (the nets run in f32). `t` is parametrised by the cumulative softmax of free logits, `ṫ` and `s` by
//! exponentials, `ṡ` directly; training starts from the identity, so it begins at the base
//! method and keeps the best parameters seen.

use std::time::Instant;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::ode::tableau::{hermite_basis, Tableau};
use crate::ode::{Solver, Time, VectorField};
use crate::{Error, Result};

/// A bespoke solver: a fixed-step base method on `steps` equal steps of the scale-time
/// transformed ODE (module docs), with `t_r, ṫ_r, s_r, ṡ_r` at its `steps · m + 1` stage nodes
/// (`m` distinct stage times `c < 1` of the base tableau). Serde:
/// `{ base = "midpoint", steps = 4, t = [...], t_dot = [...], s = [...], s_dot = [...] }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BespokeSolver {
    /// The base Runge–Kutta method (fixed step).
    pub base: Solver,
    /// Steps in `r` (`> 0`); `steps × stages` evaluations.
    pub steps: usize,
    /// `t_r` at the nodes: `0` first, `1` last, strictly increasing.
    pub t: Vec<f64>,
    /// `dt/dr > 0` at the nodes.
    pub t_dot: Vec<f64>,
    /// `s_r > 0` at the nodes, `1` first.
    pub s: Vec<f64>,
    /// `ds/dr` at the nodes.
    pub s_dot: Vec<f64>,
}

/// Where a base method's stages fall among the nodes.
#[derive(Clone, Debug)]
struct Layout {
    tab: &'static Tableau,
    steps: usize,
    /// Nodes per step (distinct stage times `c < 1`).
    m: usize,
    /// Stage `k`'s node relative to its step's first node (`m`: the next step's first).
    offset: Vec<usize>,
    /// `r` of the nodes of one step, relative to its start, in units of `h`.
    c_nodes: Vec<f64>,
}

impl Layout {
    fn new(base: Solver, steps: usize) -> Result<Self> {
        let tab = base.tableau();
        if base.is_adaptive() {
            return Err(Error::invalid("bespoke.base", format!("a bespoke solver's base takes fixed steps (euler, midpoint, heun, rk4), got {}", tab.name)));
        }
        if steps == 0 {
            return Err(Error::invalid("bespoke.steps", "a bespoke solver needs at least one step"));
        }
        let mut c_nodes: Vec<f64> = Vec::new();
        for &c in tab.c {
            if c < 1.0 && !c_nodes.contains(&c) {
                c_nodes.push(c);
            }
        }
        c_nodes.sort_by(f64::total_cmp);
        let m = c_nodes.len();
        let offset = tab.c.iter().map(|c| c_nodes.iter().position(|x| x == c).unwrap_or(m)).collect();
        Ok(Layout { tab, steps, m, offset, c_nodes })
    }

    fn nodes(&self) -> usize {
        self.steps * self.m + 1
    }

    fn h(&self) -> f64 {
        1.0 / self.steps as f64
    }

    /// `r` of every node.
    fn r(&self) -> Vec<f64> {
        let h = self.h();
        let mut r: Vec<f64> = (0..self.steps).flat_map(|i| self.c_nodes.iter().map(move |c| (i as f64 + c) * h)).collect();
        r.push(1.0);
        r
    }

    /// `a_kl` of the tableau (zero above the diagonal).
    fn a(&self, k: usize, l: usize) -> f64 {
        if k == 0 {
            0.0
        } else {
            self.tab.a[k - 1].get(l).copied().unwrap_or(0.0)
        }
    }

    fn stages(&self) -> usize {
        self.tab.stages()
    }
}

/// One step's forward values, kept for the reverse pass.
struct Tape<S> {
    x: Tensor<2>,
    xbar1: Tensor<2>,
    ys: Vec<Tensor<2>>,
    us: Vec<Tensor<2>>,
    saved: Vec<S>,
}

fn dot(a: &Tensor<2>, b: &Tensor<2>) -> f64 {
    (a.clone() * b.clone()).sum().into_scalar::<f64>()
}

impl BespokeSolver {
    /// The identity transformation: the base method on `steps` equal steps.
    ///
    /// # Errors
    /// `InvalidArgument` for an adaptive base or zero steps.
    pub fn identity(base: Solver, steps: usize) -> Result<Self> {
        let lay = Layout::new(base, steps)?;
        let n = lay.nodes();
        Ok(BespokeSolver { base, steps, t: lay.r(), t_dot: vec![1.0; n], s: vec![1.0; n], s_dot: vec![0.0; n] })
    }

    /// Batched field evaluations per solve: `steps × stages`.
    pub fn nfe(&self) -> usize {
        self.steps * self.base.tableau().stages()
    }

    /// Check the parameters (module docs).
    ///
    /// # Errors
    /// `InvalidArgument` naming the first violation.
    pub fn validate(&self) -> Result<()> {
        let lay = Layout::new(self.base, self.steps)?;
        let n = lay.nodes();
        if [&self.t, &self.t_dot, &self.s, &self.s_dot].iter().any(|v| v.len() != n) {
            return Err(Error::invalid(
                "bespoke.t, t_dot, s, s_dot",
                format!(
                    "{} steps of {} need {n} values each, got {}, {}, {}, {}",
                    self.steps,
                    lay.tab.name,
                    self.t.len(),
                    self.t_dot.len(),
                    self.s.len(),
                    self.s_dot.len()
                ),
            ));
        }
        if self.t[0] != 0.0 || self.t[n - 1] != 1.0 || self.t.windows(2).any(|w| !(w[0] < w[1])) {
            return Err(Error::invalid("bespoke.t", format!("need times strictly increasing from 0 to 1, got {:?}", self.t)));
        }
        if self.t_dot.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(Error::invalid("bespoke.t_dot", format!("need positive finite dt/dr, got {:?}", self.t_dot)));
        }
        if self.s[0] != 1.0 || self.s.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(Error::invalid("bespoke.s", format!("need positive finite scales starting at 1, got {:?}", self.s)));
        }
        if self.s_dot.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("bespoke.s_dot", format!("need finite ds/dr, got {:?}", self.s_dot)));
        }
        Ok(())
    }

    /// Carry `x0: [batch, d]` from `t = 0` to `t = 1` along `field` (`steps × stages`
    /// evaluations).
    ///
    /// # Errors
    /// As [`Self::validate`]; `Shape` from the field's [`VectorField::check_state`]; `NonFinite`
    /// when a state stops being finite.
    pub fn solve<F: VectorField<2>>(&self, field: &F, x0: Tensor<2>) -> Result<Tensor<2>> {
        self.validate()?;
        field.check_state(&x0)?;
        let lay = Layout::new(self.base, self.steps)?;
        let mut x = x0;
        for i in 0..self.steps {
            let tape = self.step(field, &lay, i, x, false)?;
            x = tape.xbar1.div_scalar(self.s[(i + 1) * lay.m]);
        }
        Ok(x)
    }

    /// Step `i` from `x` (at `t[i m]`, original coordinates): the stage states and velocities,
    /// and `x̄` at the step's end (transformed coordinates).
    fn step<F: VectorField<2>>(&self, field: &F, lay: &Layout, i: usize, x: Tensor<2>, keep: bool) -> Result<Tape<F::Saved>> {
        let h = lay.h();
        let n0 = i * lay.m;
        let xbar0 = x.clone().mul_scalar(self.s[n0]);
        let (mut ks, mut ys, mut us, mut saved) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for k in 0..lay.stages() {
            let node = n0 + lay.offset[k];
            let mut ybar = xbar0.clone();
            for (l, kl) in ks.iter().enumerate() {
                let a = lay.a(k, l);
                if a != 0.0 {
                    ybar = ybar + Tensor::clone(kl).mul_scalar(h * a);
                }
            }
            let y = ybar.div_scalar(self.s[node]);
            let time = Time::Shared(self.t[node]);
            let u = if keep {
                let (u, sv) = field.eval_saving(&time, &y);
                saved.push(sv);
                u
            } else {
                field.eval(&time, &y)
            };
            ks.push(y.clone().mul_scalar(self.s_dot[node]) + u.clone().mul_scalar(self.s[node] * self.t_dot[node]));
            ys.push(y);
            us.push(u);
        }
        let mut xbar1 = xbar0;
        for (k, kk) in ks.into_iter().enumerate() {
            if lay.tab.b[k] != 0.0 {
                xbar1 = xbar1 + kk.mul_scalar(h * lay.tab.b[k]);
            }
        }
        let probe = xbar1.clone().abs().max().into_scalar::<f64>();
        if !probe.is_finite() {
            return Err(Error::NonFinite { what: "bespoke solver state", step: i, t: self.t[(i + 1) * lay.m] });
        }
        Ok(Tape { x, xbar1, ys, us, saved })
    }

    /// `Λ_j` of every step for Lipschitz bound `lip`, with what its reverse pass needs.
    fn step_lipschitz(&self, lay: &Layout, lip: f64) -> StepBounds {
        let lbar: Vec<f64> = (0..lay.nodes()).map(|j| self.s_dot[j].abs() / self.s[j] + self.t_dot[j] * lip).collect();
        let h = lay.h();
        let mut lambda = Vec::with_capacity(lay.steps);
        let mut pre = Vec::with_capacity(lay.steps);
        for j in 0..lay.steps {
            let mut ell: Vec<f64> = Vec::with_capacity(lay.stages());
            let mut pj: Vec<f64> = Vec::with_capacity(lay.stages());
            for k in 0..lay.stages() {
                let p = 1.0 + h * (0..k).map(|l| lay.a(k, l).abs() * ell[l]).sum::<f64>();
                pj.push(p);
                ell.push(lbar[j * lay.m + lay.offset[k]] * p);
            }
            lambda.push(1.0 + h * (0..lay.stages()).map(|k| lay.tab.b[k].abs() * ell[k]).sum::<f64>());
            pre.push(pj);
        }
        StepBounds { lambda, lbar, pre }
    }
}

/// The step bounds `Λ_j = 1 + h Σ_k |b_k| ℓ_k` with `ℓ_k = L̄_k p_k`,
/// `p_k = 1 + h Σ_{l<k} |a_kl| ℓ_l` and `L̄ = |ṡ|/s + ṫ L` at every node.
struct StepBounds {
    /// `Λ_j`, one per step.
    lambda: Vec<f64>,
    /// `L̄` at every node.
    lbar: Vec<f64>,
    /// `p_k` of every stage of every step, `[steps][stages]`.
    pre: Vec<Vec<f64>>,
}

/// Parameter gradients at the nodes.
#[derive(Clone, Debug)]
struct NodeGrads {
    t: Vec<f64>,
    t_dot: Vec<f64>,
    s: Vec<f64>,
    s_dot: Vec<f64>,
}

/// Accurate trajectories of a field on a fine grid, with their velocities, for cubic Hermite
/// interpolation in `t`.
struct Reference {
    times: Vec<f64>,
    xs: Vec<Tensor<2>>,
    us: Vec<Tensor<2>>,
}

impl Reference {
    fn new<F: VectorField<2>>(field: &F, x0: Tensor<2>, intervals: usize, rtol: f64) -> Result<Self> {
        let times: Vec<f64> = (0..=intervals).map(|k| k as f64 / intervals as f64).collect();
        let xs = super::schedule::reference_states(field, x0, &times, rtol)?;
        let us = times.iter().zip(&xs).map(|(t, x)| field.eval(&Time::Shared(*t), x)).collect();
        Ok(Reference { times, xs, us })
    }

    /// `(x(t), dx/dt(t))` by cubic Hermite interpolation.
    fn at(&self, t: f64) -> (Tensor<2>, Tensor<2>) {
        let n = self.times.len() - 1;
        let k = ((t * n as f64).floor() as usize).min(n - 1);
        let big_h = self.times[k + 1] - self.times[k];
        let th = ((t - self.times[k]) / big_h).clamp(0.0, 1.0);
        let (h01, h10, h11) = hermite_basis(th);
        let h00 = 1.0 - h01;
        let (d00, d10, d01, d11) = (6.0 * th * th - 6.0 * th, 3.0 * th * th - 4.0 * th + 1.0, 6.0 * th - 6.0 * th * th, 3.0 * th * th - 2.0 * th);
        let (x0, x1, u0, u1) = (&self.xs[k], &self.xs[k + 1], &self.us[k], &self.us[k + 1]);
        let x = x0.clone().mul_scalar(h00) + x1.clone().mul_scalar(h01) + u0.clone().mul_scalar(big_h * h10) + u1.clone().mul_scalar(big_h * h11);
        let v = x0.clone().mul_scalar(d00 / big_h) + x1.clone().mul_scalar(d01 / big_h) + u0.clone().mul_scalar(d10) + u1.clone().mul_scalar(d11);
        (x, v)
    }
}

/// Settings of [`train_bespoke`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BespokeConfig {
    /// The base method (fixed step).
    pub base: Solver,
    /// Steps (NFE = steps × the base's stages).
    pub steps: usize,
    /// Adam iterations on the full set of trajectories.
    pub iterations: usize,
    /// Adam's initial learning rate on the raw parameters (logits, log-scales), decayed to zero
    /// on a cosine.
    pub lr: f64,
    /// The Lipschitz bound `L` of the field in the loss's constants (the paper takes 1).
    pub lipschitz: f64,
    /// Relative tolerance of the reference trajectories (adaptive Tsit5; absolute 1e-3 of it).
    pub reference_rtol: f64,
    /// Intervals of the reference grid the trajectories are interpolated on.
    pub reference_intervals: usize,
}

impl Default for BespokeConfig {
    fn default() -> Self {
        BespokeConfig { base: Solver::Midpoint, steps: 4, iterations: 200, lr: 0.02, lipschitz: 1.0, reference_rtol: 1e-6, reference_intervals: 64 }
    }
}

impl BespokeConfig {
    /// Trajectories a bespoke solver is fitted on in the studies: the paper's scale (it fits
    /// on a few hundred), enough that the solver generalises to other source samples there.
    pub const TRAJECTORIES: usize = 64;
    /// Largest NFE the studies fit a bespoke solver for: its training cost grows with the
    /// steps, and beyond it the base method on equal steps is already accurate.
    pub const MAX_NFE: usize = 32;

    /// Check the settings.
    ///
    /// # Errors
    /// `InvalidArgument` naming the setting.
    pub fn validate(&self) -> Result<()> {
        Layout::new(self.base, self.steps)?;
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid("bespoke.lr", format!("need a positive finite learning rate, got {}", self.lr)));
        }
        if !(self.lipschitz >= 0.0 && self.lipschitz.is_finite()) {
            return Err(Error::invalid("bespoke.lipschitz", format!("need a finite L ≥ 0, got {}", self.lipschitz)));
        }
        if !(self.reference_rtol > 0.0 && self.reference_rtol < 1.0) {
            return Err(Error::invalid("bespoke.reference_rtol", format!("need 0 < rtol < 1, got {}", self.reference_rtol)));
        }
        if self.reference_intervals == 0 {
            return Err(Error::invalid("bespoke.reference_intervals", "need at least one reference interval"));
        }
        Ok(())
    }
}

/// What [`train_bespoke`] measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BespokeReport {
    /// The loss (the mean global-error bound) at every iteration, from the identity on.
    pub losses: Vec<f64>,
    /// The bound of the base method on equal steps (the first loss).
    pub base_bound: f64,
    /// The bound of the returned solver (the least loss seen).
    pub bound: f64,
    /// Endpoint RMSE `√E‖x_n − x(1)‖²` of the base method on the training trajectories.
    pub base_rmse: f64,
    /// The same for the returned solver.
    pub rmse: f64,
    /// Wall-clock seconds, reference trajectories included.
    pub seconds: f64,
}

/// The raw parameters of the optimiser: `[a (N − 1) | log ṫ (N) | log s (N − 1) | ṡ (N)]` with
/// `t_j = Σ_{k<j} softmax(a)_k`.
struct Raw {
    n: usize,
}

impl Raw {
    fn len(&self) -> usize {
        4 * self.n - 2
    }

    fn encode(&self, b: &BespokeSolver) -> Vec<f64> {
        let mut v: Vec<f64> = b.t.windows(2).map(|w| (w[1] - w[0]).ln()).collect();
        v.extend(b.t_dot.iter().map(|x| x.ln()));
        v.extend(b.s[1..].iter().map(|x| x.ln()));
        v.extend(&b.s_dot);
        v
    }

    fn decode(&self, raw: &[f64], base: Solver, steps: usize) -> (BespokeSolver, Vec<f64>) {
        let n = self.n;
        let a = &raw[..n - 1];
        let amax = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = a.iter().map(|x| (x - amax).exp()).collect();
        let z: f64 = e.iter().sum();
        let p: Vec<f64> = e.iter().map(|x| x / z).collect();
        let mut t = vec![0.0; n];
        for j in 1..n {
            t[j] = t[j - 1] + p[j - 1];
        }
        t[n - 1] = 1.0;
        let t_dot = raw[n - 1..2 * n - 1].iter().map(|x| x.exp()).collect();
        let mut s = vec![1.0];
        s.extend(raw[2 * n - 1..3 * n - 2].iter().map(|x| x.exp()));
        let s_dot = raw[3 * n - 2..].to_vec();
        (BespokeSolver { base, steps, t, t_dot, s, s_dot }, p)
    }

    fn gradient(&self, b: &BespokeSolver, p: &[f64], g: &NodeGrads) -> Vec<f64> {
        let n = self.n;
        let tt: f64 = g.t.iter().zip(&b.t).map(|(gt, t)| gt * t).sum();
        let mut out = Vec::with_capacity(self.len());
        let mut tail = 0.0;
        let mut above = vec![0.0; n - 1];
        for k in (0..n - 1).rev() {
            tail += g.t[k + 1];
            above[k] = tail;
        }
        out.extend((0..n - 1).map(|k| p[k] * (above[k] - tt)));
        out.extend(g.t_dot.iter().zip(&b.t_dot).map(|(g, v)| g * v));
        out.extend(g.s[1..].iter().zip(&b.s[1..]).map(|(g, v)| g * v));
        out.extend(&g.s_dot);
        out
    }
}

/// `Σ c · ∂u/∂t` at `(t, y)` by a central difference of step `1e-3` (one-sided at the ends).
fn time_derivative<F: VectorField<2>>(field: &F, t: f64, y: &Tensor<2>, c: &Tensor<2>) -> f64 {
    const EPS: f64 = 1e-3;
    let (tl, tr) = ((t - EPS).max(0.0), (t + EPS).min(1.0));
    let du = field.eval(&Time::Shared(tr), y) - field.eval(&Time::Shared(tl), y);
    dot(&du, c) / (tr - tl)
}

/// The loss `(1/s₁) Σ_i M_i E‖d_i‖` of `solver` on the reference trajectories and, when asked,
/// its gradient at the nodes.
fn loss_and_grad<F: VectorField<2>>(solver: &BespokeSolver, field: &F, reference: &Reference, lip: f64, grad: bool) -> Result<(f64, Option<NodeGrads>)> {
    let lay = Layout::new(solver.base, solver.steps)?;
    let (n, m, h, nodes) = (lay.steps, lay.m, lay.h(), lay.nodes());
    let batch = reference.xs[0].dims()[0] as f64;
    let s_end = solver.s[nodes - 1];
    let StepBounds { lambda, lbar, pre } = solver.step_lipschitz(&lay, lip);
    let mut weights = vec![1.0; n];
    for i in (0..n.saturating_sub(1)).rev() {
        weights[i] = weights[i + 1] * lambda[i + 1];
    }
    // The reference `(x, dx/dt)` at the step boundaries t_{i·m}, i = 0..=n.
    let ends: Vec<(Tensor<2>, Tensor<2>)> = (0..=n).map(|i| reference.at(solver.t[i * m])).collect();
    let mut tapes = Vec::with_capacity(n);
    let mut d = Vec::with_capacity(n);
    for i in 0..n {
        let tape = solver.step(field, &lay, i, ends[i].0.clone(), grad)?;
        let e = ends[i + 1].0.clone().mul_scalar(solver.s[(i + 1) * m]) - tape.xbar1.clone();
        let norms = e.clone().square().sum_dim(1).sqrt();
        d.push(norms.clone().mean().into_scalar::<f64>());
        tapes.push((tape, e, norms));
    }
    let f: f64 = weights.iter().zip(&d).map(|(w, d)| w * d).sum();
    let loss = f / s_end;
    if !loss.is_finite() {
        return Err(Error::NonFinite { what: "bespoke loss", step: 0, t: 0.0 });
    }
    if !grad {
        return Ok((loss, None));
    }
    let mut g = NodeGrads { t: vec![0.0; nodes], t_dot: vec![0.0; nodes], s: vec![0.0; nodes], s_dot: vec![0.0; nodes] };
    let t_free = |node: usize| node != 0 && node != nodes - 1;
    for (i, (tape, e, norms)) in tapes.into_iter().enumerate() {
        let (n0, n1) = (i * m, (i + 1) * m);
        // Cotangent of e: w_i ∂E‖e‖/∂e = w_i e / (B ‖e‖).
        let inv = norms.clamp_min(1e-300).recip().mul_scalar(weights[i] / (s_end * batch));
        let ge = e * inv;
        let (x_end, v_end) = &ends[i + 1];
        g.s[n1] += dot(&ge, x_end);
        if t_free(n1) {
            g.t[n1] += solver.s[n1] * dot(&ge, v_end);
        }
        // Reverse through the step: x̄₁ = x̄₀ + h Σ b_k K_k.
        let gbar = ge.neg();
        let stages = lay.stages();
        let mut kbar: Vec<Tensor<2>> = (0..stages).map(|k| gbar.clone().mul_scalar(h * lay.tab.b[k])).collect();
        let mut xbar0_bar = gbar;
        for k in (0..stages).rev() {
            let node = n0 + lay.offset[k];
            let (y, u) = (&tape.ys[k], &tape.us[k]);
            let kb = kbar[k].clone();
            g.s_dot[node] += dot(&kb, y);
            let su = dot(&kb, u);
            g.s[node] += solver.t_dot[node] * su;
            g.t_dot[node] += solver.s[node] * su;
            let c = kb.clone().mul_scalar(solver.s[node] * solver.t_dot[node]);
            // cᵀ∂u/∂y, and cᵀ∂u/∂t exactly from the same VJP where the field can, else by a
            // difference in t.
            let field_bar = match field.vjp_with_time_saved(&tape.saved[k], &c) {
                Some((y_bar, t_bar)) => {
                    if t_free(node) {
                        g.t[node] += t_bar.iter().sum::<f64>();
                    }
                    y_bar
                }
                None => {
                    if t_free(node) {
                        g.t[node] += time_derivative(field, solver.t[node], y, &c);
                    }
                    field.vjp_saved(&tape.saved[k], &c, None)
                }
            };
            let ybar = kb.mul_scalar(solver.s_dot[node]) + field_bar;
            g.s[node] -= dot(&ybar, y) / solver.s[node];
            let ybar_bar = ybar.div_scalar(solver.s[node]);
            for (l, kl) in kbar.iter_mut().enumerate().take(k) {
                let a = lay.a(k, l);
                if a != 0.0 {
                    *kl = kl.clone() + ybar_bar.clone().mul_scalar(h * a);
                }
            }
            xbar0_bar = xbar0_bar + ybar_bar;
        }
        g.s[n0] += dot(&xbar0_bar, &tape.x);
        if t_free(n0) {
            g.t[n0] += solver.s[n0] * dot(&xbar0_bar, &ends[i].1);
        }
    }
    // Through the weights M_i = Π_{j>i} Λ_j and 1/s₁.
    g.s[nodes - 1] -= f / (s_end * s_end);
    let mut lbar_bar = vec![0.0; nodes];
    for j in 1..n {
        let lam_bar: f64 = (0..j).map(|i| d[i] * weights[i]).sum::<f64>() / (lambda[j] * s_end);
        let stages = lay.stages();
        let mut ell_bar: Vec<f64> = (0..stages).map(|k| h * lay.tab.b[k].abs() * lam_bar).collect();
        for k in (0..stages).rev() {
            let node = j * m + lay.offset[k];
            lbar_bar[node] += ell_bar[k] * pre[j][k];
            for l in 0..k {
                ell_bar[l] += ell_bar[k] * lbar[node] * h * lay.a(k, l).abs();
            }
        }
    }
    for j in 0..nodes {
        let (sd, s) = (solver.s_dot[j], solver.s[j]);
        // d|ṡ|/dṡ, 0 at 0 (a subgradient; the identity starts there).
        let sign = if sd > 0.0 {
            1.0
        } else if sd < 0.0 {
            -1.0
        } else {
            0.0
        };
        g.s_dot[j] += lbar_bar[j] * sign / s;
        g.s[j] -= lbar_bar[j] * sd.abs() / (s * s);
        g.t_dot[j] += lbar_bar[j] * lip;
    }
    Ok((loss, Some(g)))
}

/// Endpoint RMSE `√E‖x_n − x(1)‖²` of a solver started on the reference trajectories.
fn endpoint_rmse<F: VectorField<2>>(solver: &BespokeSolver, field: &F, reference: &Reference) -> Result<f64> {
    let x1 = solver.solve(field, reference.xs[0].clone())?;
    let exact = reference.xs.last().ok_or_else(|| Error::invalid("reference", "no reference states"))?;
    Ok((x1 - exact.clone()).square().sum_dim(1).mean().into_scalar::<f64>().sqrt())
}

/// Learn a bespoke solver for `field` on `[0, 1]` from the trajectories that start at
/// `x0: [batch, d]` (module docs). Starts at the base method on equal steps and returns the
/// parameters with the least loss seen.
///
/// # Errors
/// `InvalidArgument` for bad settings or an empty batch; solver errors from the reference
/// trajectories; `NonFinite` when the loss stops being finite.
pub fn train_bespoke<F: VectorField<2>>(field: &F, x0: Tensor<2>, cfg: &BespokeConfig) -> Result<(BespokeSolver, BespokeReport)> {
    cfg.validate()?;
    if x0.dims()[0] == 0 {
        return Err(Error::invalid("x0", "need at least one trajectory to fit a bespoke solver to"));
    }
    let start = Instant::now();
    let reference = Reference::new(field, x0, cfg.reference_intervals, cfg.reference_rtol)?;
    let identity = BespokeSolver::identity(cfg.base, cfg.steps)?;
    let raw_map = Raw { n: identity.t.len() };
    let mut raw = raw_map.encode(&identity);
    let mut adam = crate::train::Adam::<f64>::new(raw.len());
    let mut losses = Vec::with_capacity(cfg.iterations + 1);
    let mut best = (f64::INFINITY, identity.clone());
    for it in 0..=cfg.iterations {
        let (solver, p) = raw_map.decode(&raw, cfg.base, cfg.steps);
        let last = it == cfg.iterations;
        let (loss, g) = loss_and_grad(&solver, field, &reference, cfg.lipschitz, !last)?;
        losses.push(loss);
        if loss < best.0 && solver.validate().is_ok() {
            best = (loss, solver.clone());
        }
        if let Some(g) = g {
            let grad = raw_map.gradient(&solver, &p, &g);
            if grad.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite { what: "bespoke gradient", step: it, t: 0.0 });
            }
            // Cosine decay to zero: the loss is deterministic, and Adam's normalised steps
            // would otherwise keep the parameters rattling at the scale of the rate.
            let lr = 0.5 * cfg.lr * (1.0 + (std::f64::consts::PI * it as f64 / cfg.iterations as f64).cos());
            adam.step(&mut raw, &grad, lr);
        }
    }
    let (bound, solver) = best;
    let report = BespokeReport {
        base_bound: losses[0],
        bound,
        base_rmse: endpoint_rmse(&identity, field, &reference)?,
        rmse: endpoint_rmse(&solver, field, &reference)?,
        losses,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((solver, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fm::problems::GaussianToGaussian;
    use crate::fm::{Sampler, Schedule};
    use crate::host::ToHost;
    use crate::ode::FnField;
    use burn::tensor::{DType, TensorData};

    fn states(v: &[f64], d: usize) -> Tensor<2> {
        Tensor::<2>::from_data(TensorData::new(v.to_vec(), [v.len() / d, d]).convert_dtype(DType::F64), (&crate::device::cpu_f64().unwrap(), DType::F64))
    }

    fn x0_2d() -> Tensor<2> {
        let v: Vec<f64> = (0..16).map(|i| ((i as f64) * 0.77).sin() * 1.5).collect();
        states(&v, 2)
    }

    /// A nonlinear, time-dependent field (burn operations, so it has a VJP).
    fn nonlinear() -> FnField<impl Fn(&Time, Tensor<2>) -> Tensor<2>> {
        FnField::new(|t: &Time, x: Tensor<2>| {
            let t = t.shared().unwrap();
            x.clone().tanh().mul_scalar(1.0 + t) + x.mul_scalar(-0.5 * (3.0 * t).cos()).add_scalar(t * t)
        })
    }

    /// The identity transformation is the base method on equal steps (reference: the ode
    /// solver on a uniform grid; the same arithmetic up to round-off, 1e-12).
    #[test]
    fn identity_is_the_base_method() {
        let field = nonlinear();
        for base in [Solver::Euler, Solver::Midpoint, Solver::Heun, Solver::Rk3, Solver::Rk4] {
            let b = BespokeSolver::identity(base, 5).unwrap();
            let via: Vec<f64> = b.solve(&field, x0_2d()).unwrap().to_vec_as();
            let direct = Sampler::Ode { solver: base, steps: 5, schedule: Schedule::Uniform };
            let out = direct.sample(&field, &crate::fm::ProbabilityPath::default(), x0_2d()).unwrap();
            let want: Vec<f64> = out.x.to_vec_as();
            let err = via.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 1e-12, "{base:?}: {err}");
            assert_eq!(b.nfe(), out.nfe, "{base:?}");
        }
    }

    /// The loss's gradient against central differences of the loss (step 1e-6 in the raw
    /// parameters) at a random, non-identity point, for a two-, a three- (with a negative
    /// `a_kl`) and a four-stage base. The
    /// field's `t`-derivative inside the gradient is a difference of step 1e-3 (error
    /// ~1e-7 relative here), so agreement to 1e-4 relative tests every other term exactly.
    #[test]
    fn gradient_matches_finite_differences() {
        let field = nonlinear();
        let reference = Reference::new(&field, x0_2d(), 64, 1e-9).unwrap();
        for base in [Solver::Midpoint, Solver::Rk3, Solver::Rk4] {
            let id = BespokeSolver::identity(base, 3).unwrap();
            let map = Raw { n: id.t.len() };
            let mut raw = map.encode(&id);
            for (i, v) in raw.iter_mut().enumerate() {
                *v += 0.3 * ((i as f64) * 1.37).sin();
            }
            let (solver, p) = map.decode(&raw, base, 3);
            let (_, g) = loss_and_grad(&solver, &field, &reference, 1.3, true).unwrap();
            let grad = map.gradient(&solver, &p, &g.unwrap());
            for k in 0..raw.len() {
                let f = |delta: f64| {
                    let mut r = raw.clone();
                    r[k] += delta;
                    loss_and_grad(&map.decode(&r, base, 3).0, &field, &reference, 1.3, false).unwrap().0
                };
                let fd = (f(1e-6) - f(-1e-6)) / 2e-6;
                assert!((grad[k] - fd).abs() <= 1e-4 * fd.abs().max(1e-2), "{base:?} parameter {k}: {} vs {fd}", grad[k]);
            }
        }
    }

    /// Theorem 2.2: with `L` the field's Lipschitz constant, `(1/s₁) Σ M_i d_i` bounds the
    /// global error `E‖x_n − x(1)‖` for any parameters. Checked on the Gaussian problem, whose
    /// velocity `b = μ + (σ'/σ)(x − tμ)` has constant `max_t |σ'/σ|` (a grid of 10⁴ times, +1 %)
    /// and whose exact endpoint is `μ + s x₀`, at the identity and at random parameters.
    #[test]
    fn loss_bounds_the_global_error() {
        let problem = GaussianToGaussian { mu: vec![1.5, -0.5], s: 0.4 };
        let field = problem.velocity();
        let lip = (0..=10_000)
            .map(|k| {
                let t = k as f64 / 1e4;
                let v = (1.0 - t).powi(2) + t * t * 0.16;
                ((t * 0.16 - (1.0 - t)) / v).abs()
            })
            .fold(0.0, f64::max)
            * 1.01;
        let x0 = x0_2d();
        let host: Vec<f64> = x0.to_vec_as();
        let exact = problem.flow_map(&host);
        let reference = Reference::new(&field, x0.clone(), 64, 1e-10).unwrap();
        let id = BespokeSolver::identity(Solver::Midpoint, 3).unwrap();
        let map = Raw { n: id.t.len() };
        for trial in 0..6 {
            let mut raw = map.encode(&id);
            for (i, v) in raw.iter_mut().enumerate() {
                *v += 0.4 * trial as f64 * ((i as f64 + trial as f64) * 2.1).sin();
            }
            let solver = map.decode(&raw, Solver::Midpoint, 3).0;
            let (bound, _) = loss_and_grad(&solver, &field, &reference, lip, false).unwrap();
            let x1: Vec<f64> = solver.solve(&field, x0.clone()).unwrap().to_vec_as();
            let err = x1.chunks(2).zip(exact.chunks(2)).map(|(a, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()).sum::<f64>() / 8.0;
            assert!(err <= bound, "trial {trial}: error {err} above bound {bound}");
        }
    }

    /// Training on the Gaussian problem: a scale-time transformation exists that makes its
    /// ODE trivial (`s_r = 1/σ(t_r)` leaves `x̄` affine-free), so two midpoint steps (4 NFE)
    /// must improve on the base method by far: endpoint RMSE against the exact flow map on
    /// held-out starts at most 1 % of the midpoint method's (measured: 4e-3 → below 1e-6).
    #[test]
    fn training_beats_the_base_method() {
        let problem = GaussianToGaussian { mu: vec![1.5, -0.5], s: 0.4 };
        let field = problem.velocity();
        let cfg = BespokeConfig { steps: 2, ..BespokeConfig::default() };
        let (solver, report) = train_bespoke(&field, x0_2d(), &cfg).unwrap();
        assert!(report.bound < report.base_bound && report.rmse < report.base_rmse, "{report:?}");
        let held: Vec<f64> = (0..20).map(|i| ((i as f64) * 1.91).cos() * 1.2).collect();
        let exact = problem.flow_map(&held);
        let rmse = |b: &BespokeSolver| {
            let x: Vec<f64> = b.solve(&field, states(&held, 2)).unwrap().to_vec_as();
            (x.iter().zip(&exact).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / 10.0).sqrt()
        };
        let (base, learned) = (rmse(&BespokeSolver::identity(Solver::Midpoint, 2).unwrap()), rmse(&solver));
        assert!(learned < 0.01 * base, "learned {learned} vs midpoint {base}");
    }

    /// Bad parameters and settings are refused with the setting named.
    #[test]
    fn refusals() {
        assert!(BespokeSolver::identity(Solver::Tsit5, 4).is_err());
        assert!(BespokeSolver::identity(Solver::Midpoint, 0).is_err());
        let good = BespokeSolver::identity(Solver::Midpoint, 2).unwrap();
        assert_eq!(good.t.len(), 5);
        let mut cases = Vec::new();
        let mut b = good.clone();
        b.t[2] = b.t[1];
        cases.push(b);
        let mut b = good.clone();
        b.s[0] = 2.0;
        cases.push(b);
        let mut b = good.clone();
        b.t_dot[1] = 0.0;
        cases.push(b);
        let mut b = good.clone();
        b.s_dot.pop();
        cases.push(b);
        let mut b = good.clone();
        b.s_dot[3] = f64::NAN;
        cases.push(b);
        for b in cases {
            assert!(matches!(b.solve(&nonlinear(), x0_2d()), Err(Error::InvalidArgument { .. })), "{b:?}");
        }
        for cfg in [
            BespokeConfig { lr: -1.0, ..BespokeConfig::default() },
            BespokeConfig { lipschitz: f64::NAN, ..BespokeConfig::default() },
            BespokeConfig { reference_intervals: 0, ..BespokeConfig::default() },
            BespokeConfig { base: Solver::Dopri5, ..BespokeConfig::default() },
        ] {
            assert!(matches!(train_bespoke(&nonlinear(), x0_2d(), &cfg), Err(Error::InvalidArgument { .. })), "{cfg:?}");
        }
        let empty = states(&[], 2);
        assert!(train_bespoke(&nonlinear(), empty, &BespokeConfig::default()).is_err());
    }
}
