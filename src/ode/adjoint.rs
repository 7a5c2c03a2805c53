//! Gradient strategies, all built on the field's vector–Jacobian products:
//!
//! - [`Gradient::Direct`]: the discrete adjoint of the accepted Runge–Kutta steps — the exact
//!   gradient of the discretisation, what backpropagation through the solver gives with step
//!   sizes held fixed. Memory: the saved evaluations of every stage.
//! - [`Gradient::Checkpointed`]: the same gradient, keeping at most `checkpoints` states and
//!   recomputing each segment's stages during the backward pass.
//! - [`Gradient::Adjoint`]: the continuous adjoint (Pontryagin; Chen et al., Neural ODEs,
//!   NeurIPS 2018): the backward ODE `da/dt = −aᵀ ∂f/∂y`, `dθ̄/dt = −aᵀ ∂f/∂θ`, solved from the
//!   last output time to `t0` with jumps `a += ∂L/∂y(t_k)` at every output time. Memory does
//!   not grow with the number of steps. The error norm covers `y` and `a` but not `θ̄`
//!   (the seminorm of Kidger, Chen & Lyons, "Hey, that's not an ODE", ICML 2021), which
//!   leaves the gradient's accuracy unchanged and takes fewer steps.
//!
//! The two discrete strategies agree with each other to round-off and with the continuous
//! adjoint to the solver tolerance; tests check both against finite differences.

use std::rc::Rc;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::dense::{DenseOutput, Recording};
use super::field::{ParamCotangent, Time, VectorField};
use super::solve::{advance, check_cotangents, check_times, check_y0, combine, integrate, stages, Coef, Plain, Solution, Stats, Status, StepH, Stepper, PROBE};
use super::{Options, Solver, StepSize};
use crate::{Error, Result};

/// How gradients of a solve are computed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gradient {
    /// Discrete adjoint of the steps, keeping every stage evaluation.
    Direct,
    /// Discrete adjoint with at most `checkpoints` stored states (≥ 2), recomputing segments.
    Checkpointed {
        /// Maximum number of stored states.
        checkpoints: usize,
    },
    /// Continuous adjoint.
    Adjoint(AdjointOptions),
}

impl std::fmt::Display for Gradient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gradient::Direct => write!(f, "direct (discrete adjoint)"),
            Gradient::Checkpointed { checkpoints } => write!(f, "checkpointed ({checkpoints} checkpoints)"),
            Gradient::Adjoint(o) => {
                let mode = match o.mode {
                    AdjointMode::Backsolve => "backsolve",
                    AdjointMode::Interpolated => "interpolated",
                };
                write!(f, "continuous adjoint ({mode})")
            }
        }
    }
}

/// Where the continuous adjoint gets the forward state `y(t)` from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AdjointMode {
    /// Re-integrate `y` backwards alongside the adjoint, restarting from the stored forward
    /// state at each output time. Memory independent of the step count.
    #[default]
    Backsolve,
    /// Interpolate `y` from the forward solve's dense output (memory of the forward steps,
    /// no backward drift of `y`).
    Interpolated,
}

/// Options of the continuous adjoint's backward solve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdjointOptions {
    /// Backsolve or interpolated forward state.
    pub mode: AdjointMode,
    /// Solver of the backward ODE (default: the forward solver).
    pub solver: Option<Solver>,
    /// Relative tolerance of the backward solve (default: the forward `rtol`).
    pub rtol: Option<f64>,
    /// Absolute tolerance of the backward solve (default: the forward `atol`).
    pub atol: Option<f64>,
}

impl Default for AdjointOptions {
    fn default() -> Self {
        Self { mode: AdjointMode::Backsolve, solver: None, rtol: None, atol: None }
    }
}

/// Gradients of a scalar loss `L(y(t_0), ..., y(t_N))` through a solve.
#[derive(Clone, Debug)]
pub struct Grads<const D: usize, P> {
    /// `∂L/∂y0`, shape of `y0`.
    pub y0: Tensor<D>,
    /// `∂L/∂θ`, the field's parameter cotangent.
    pub params: P,
    /// Counters of the backward pass (evaluations and VJPs).
    pub stats: Stats,
}

/// One accepted step of the forward pass, as the discrete adjoint needs it.
struct StepRecord<S> {
    h: f64,
    /// What the field saved at each stage (stage 1 shared with the previous step for FSAL).
    saved: Vec<Rc<S>>,
    /// Output times falling in this step, `(index, θ)`; `θ = 1` is the step end itself.
    outputs: Vec<(usize, f64)>,
}

/// What a [`Tape`] keeps between the forward and the backward pass.
enum Record<const D: usize, S> {
    Direct(Vec<StepRecord<S>>),
    Checkpointed {
        /// `(t, h, outputs)` of every accepted step.
        steps: Vec<(f64, f64, Vec<(usize, f64)>)>,
        /// `(step index, state before that step)`.
        checkpoints: Vec<(usize, Tensor<D>)>,
    },
    Adjoint {
        /// Dense output of the forward solve, for the interpolated mode.
        dense: Option<DenseOutput<D>>,
    },
}

/// The forward pass of a differentiable solve; [`Tape::backward`] turns cotangents of the
/// outputs into gradients.
pub struct Tape<'a, const D: usize, F: VectorField<D>> {
    field: &'a F,
    opts: Options,
    gradient: Gradient,
    times: Vec<f64>,
    ys: Vec<Tensor<D>>,
    record: Record<D, F::Saved>,
}

/// Records saved stage evaluations of accepted steps (Direct strategy, and segment
/// recomputation of the Checkpointed strategy).
struct DirectRecorder<'a, F: VectorField<D>, const D: usize> {
    field: &'a F,
    pending: Vec<Rc<F::Saved>>,
    steps: Vec<StepRecord<F::Saved>>,
    fsal: bool,
}

impl<const D: usize, F: VectorField<D>> Stepper<D> for DirectRecorder<'_, F, D> {
    fn eval(&mut self, stage: usize, ts: &Time, y: &[Tensor<D>], _h: &StepH) -> Vec<Tensor<D>> {
        if stage == PROBE {
            return vec![self.field.eval(ts, &y[0])];
        }
        let (f, saved) = self.field.eval_saving(ts, &y[0]);
        if stage == 0 {
            self.pending.clear();
        }
        self.pending.push(Rc::new(saved));
        vec![f]
    }
    fn accepted(&mut self, t: f64, h: f64, _y: &[Tensor<D>], _k: &[Vec<Tensor<D>>], outputs: &[(usize, f64)]) {
        let saved = std::mem::take(&mut self.pending);
        if self.fsal {
            self.pending.push(saved.last().expect("stages").clone());
        }
        let _ = t;
        self.steps.push(StepRecord { h, saved, outputs: outputs.to_vec() });
    }
    fn rejected(&mut self) {
        self.pending.truncate(1);
    }
}

/// Records step sizes and thinned checkpoints (Checkpointed strategy).
struct CheckpointRecorder<'a, F, const D: usize> {
    field: &'a F,
    max: usize,
    stride: usize,
    steps: Vec<(f64, f64, Vec<(usize, f64)>)>,
    checkpoints: Vec<(usize, Tensor<D>)>,
}

impl<const D: usize, F: VectorField<D>> Stepper<D> for CheckpointRecorder<'_, F, D> {
    fn eval(&mut self, _stage: usize, ts: &Time, y: &[Tensor<D>], _h: &StepH) -> Vec<Tensor<D>> {
        vec![self.field.eval(ts, &y[0])]
    }
    fn accepted(&mut self, t: f64, h: f64, y: &[Tensor<D>], _k: &[Vec<Tensor<D>>], outputs: &[(usize, f64)]) {
        let n = self.steps.len();
        if n.is_multiple_of(self.stride) {
            self.checkpoints.push((n, y[0].clone()));
            if self.checkpoints.len() > self.max {
                // Thin out: keep every other checkpoint, double the spacing (online, so the
                // step count need not be known in advance; segments stay ≤ 2·steps/max).
                self.stride *= 2;
                let stride = self.stride;
                self.checkpoints.retain(|(i, _)| i % stride == 0);
            }
        }
        self.steps.push((t, h, outputs.to_vec()));
    }
}

/// Solve as [`solve`](super::solve) and keep what `gradient` needs for [`Tape::backward`].
///
/// # Errors
/// As `solve`; `Unsupported` for per-sample step control (gradients need batch-wide steps)
/// and for `Checkpointed` with fewer than 2 checkpoints.
pub fn solve_for_grad<'a, const D: usize, F: VectorField<D>>(
    field: &'a F,
    y0: Tensor<D>,
    times: &[f64],
    opts: &Options,
    gradient: Gradient,
) -> Result<(Solution<D>, Tape<'a, D, F>)> {
    opts.check()?;
    check_times(times)?;
    check_y0(&y0)?;
    field.check_state(&y0)?;
    if !field.has_vjp() {
        return Err(Error::Unsupported(format!("gradients through `{}`: the field has no vector-Jacobian product", std::any::type_name::<F>())));
    }
    if opts.per_sample() {
        return Err(Error::Unsupported("gradients with per-sample step control; use StepControl::Batch".into()));
    }
    let batch = y0.dims()[0];
    let mut stats = Stats::default();
    let tab = opts.solver.tableau();
    let (outputs, record) = match &gradient {
        Gradient::Direct => {
            let mut rec = DirectRecorder { field, pending: Vec::new(), steps: Vec::new(), fsal: tab.fsal };
            let out = integrate(&mut rec, opts, vec![y0.clone()], times, None, 1, &mut stats)?;
            (out.outputs, Record::Direct(rec.steps))
        }
        Gradient::Checkpointed { checkpoints } => {
            if *checkpoints < 2 {
                return Err(Error::invalid("checkpoints", format!("need at least 2, got {checkpoints}")));
            }
            let mut rec = CheckpointRecorder { field, max: *checkpoints, stride: 1, steps: Vec::new(), checkpoints: Vec::new() };
            let out = integrate(&mut rec, opts, vec![y0.clone()], times, None, 1, &mut stats)?;
            (out.outputs, Record::Checkpointed { steps: rec.steps, checkpoints: rec.checkpoints })
        }
        Gradient::Adjoint(aopts) => match aopts.mode {
            AdjointMode::Backsolve => {
                let mut st = Plain { field };
                let out = integrate(&mut st, opts, vec![y0.clone()], times, None, 1, &mut stats)?;
                (out.outputs, Record::Adjoint { dense: None })
            }
            AdjointMode::Interpolated => {
                if tab.dense.is_none() && !tab.fsal {
                    return Err(Error::Unsupported(format!("interpolated adjoint needs a solver with dense output, not `{}`", tab.name)));
                }
                let mut rec = Recording::new(field);
                let out = integrate(&mut rec, opts, vec![y0.clone()], times, None, 1, &mut stats)?;
                let y_last = out.outputs.last().expect("outputs")[0].clone();
                let dense = rec.finish(tab, &y_last, &mut stats);
                (out.outputs, Record::Adjoint { dense: Some(dense) })
            }
        },
    };
    let mut ys = Vec::with_capacity(times.len());
    ys.push(y0);
    ys.extend(outputs.into_iter().map(|mut o| o.remove(0)));
    let sol = Solution { ts: times.to_vec(), ys: ys.clone(), stats, status: vec![Status::Success; batch], dense: None };
    let tape = Tape { field, opts: opts.clone(), gradient, times: times.to_vec(), ys, record };
    Ok((sol, tape))
}

impl<const D: usize, F: VectorField<D>> Tape<'_, D, F> {
    /// Gradients of a loss whose cotangents at the output times are `cotangents`
    /// (`∂L/∂y(t_k)`, one per time in `times`, each shaped like `y0`).
    ///
    /// # Errors
    /// `Shape` when the number of cotangents differs from the number of times;
    /// the backward solve's errors for the continuous adjoint.
    pub fn backward(&self, cotangents: &[Tensor<D>]) -> Result<Grads<D, F::Params>> {
        check_cotangents(cotangents, self.times.len(), &self.ys[0])?;
        let mut stats = Stats::default();
        let mut params = self.field.zero_params();
        let a = match &self.record {
            Record::Direct(steps) => {
                let a = cotangents[self.times.len() - 1].zeros_like();
                discrete_adjoint(self.field, &self.opts, steps, a, None, true, cotangents, &mut params, &mut stats).0
            }
            Record::Checkpointed { steps, checkpoints } => {
                let mut a = cotangents[self.times.len() - 1].zeros_like();
                let mut carry = None;
                let tab = self.opts.solver.tableau();
                for (ci, (start, y_start)) in checkpoints.iter().enumerate().rev() {
                    let end = checkpoints.get(ci + 1).map(|c| c.0).unwrap_or(steps.len());
                    if *start >= end {
                        continue;
                    }
                    // Recompute the segment's stages with the recorded step sizes.
                    let mut rec = DirectRecorder { field: self.field, pending: Vec::new(), steps: Vec::new(), fsal: tab.fsal };
                    let mut y = vec![y_start.clone()];
                    let mut k1: Option<Vec<Tensor<D>>> = None;
                    for (t, h, outputs) in &steps[*start..end] {
                        let (k, y_new) = replay_step(&mut rec, tab, *t, *h, &y, k1.take(), &mut stats);
                        rec.accepted(*t, *h, &y, &k, outputs);
                        if tab.fsal {
                            k1 = Some(k.into_iter().last().expect("stages"));
                        }
                        y = y_new;
                    }
                    (a, carry) = discrete_adjoint(self.field, &self.opts, &rec.steps, a, carry, *start == 0, cotangents, &mut params, &mut stats);
                }
                a
            }
            Record::Adjoint { dense } => {
                let Gradient::Adjoint(aopts) = &self.gradient else { unreachable!() };
                self.continuous_adjoint(aopts, dense.as_ref(), cotangents, &mut params, &mut stats)?
            }
        };
        Ok(Grads { y0: a + cotangents[0].clone(), params, stats })
    }

    /// `∂L/∂t_k` for every output time: `g_kᵀ f(t_k, y(t_k))` for `k ≥ 1`, and
    /// `−a(t_0⁺)ᵀ f(t_0, y_0)` for the initial time, with `a(t_0⁺) = ∂L/∂y0 − g_0`.
    /// These are derivatives of the exact flow; for the discrete strategies they differ
    /// from the discretisation's own by the solver's error.
    pub fn time_grads(&self, cotangents: &[Tensor<D>], grads: &Grads<D, F::Params>) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.times.len());
        let a0 = grads.y0.clone() - cotangents[0].clone();
        let f0 = self.field.eval(&Time::Shared(self.times[0]), &self.ys[0]);
        out.push(-(a0 * f0).sum().into_scalar::<f64>());
        for k in 1..self.times.len() {
            let fk = self.field.eval(&Time::Shared(self.times[k]), &self.ys[k]);
            out.push((cotangents[k].clone() * fk).sum().into_scalar::<f64>());
        }
        out
    }

    fn continuous_adjoint(
        &self,
        aopts: &AdjointOptions,
        dense: Option<&DenseOutput<D>>,
        cotangents: &[Tensor<D>],
        params: &mut F::Params,
        stats: &mut Stats,
    ) -> Result<Tensor<D>> {
        let mut bopts = self.opts.clone();
        if let Some(s) = aopts.solver {
            bopts.solver = s;
        }
        // The backward solve steps like the forward one; its tolerances may differ and its
        // first step comes from the forward solve's last.
        if let StepSize::Adaptive(a) = &mut bopts.step {
            a.rtol = aopts.rtol.unwrap_or(a.rtol);
            a.atol = aopts.atol.unwrap_or(a.atol);
            a.dt0 = None;
        }
        bopts.check()?;
        let tab = bopts.solver.tableau();
        let n = self.times.len();
        let mut a = cotangents[n - 1].clone();
        let mut h_next: Option<f64> = None;
        let mut dyn_ = AdjointDynamics {
            field: self.field,
            b: tab.b,
            fsal: tab.fsal,
            stage_params: Vec::new(),
            total: params.clone(),
            zero: self.field.zero_params(),
            dense,
            stats: Stats::default(),
        };
        for k in (1..n).rev() {
            let seg = [self.times[k], self.times[k - 1]];
            let parts = match dense {
                None => vec![self.ys[k].clone(), a.clone()],
                Some(_) => vec![a.clone()],
            };
            let out = integrate(&mut dyn_, &bopts, parts, &seg, h_next, parts_len(dense), stats)?;
            h_next = Some(out.h_next);
            let end = out.outputs.into_iter().next().expect("one output");
            a = end.into_iter().last().expect("adjoint part");
            if !super::solve::all_finite(&a) {
                return Err(Error::NonFinite { what: "adjoint state", step: stats.steps, t: self.times[k - 1] });
            }
            if k > 1 {
                a = a + cotangents[k - 1].clone();
            }
        }
        stats.nvjp += dyn_.stats.nvjp;
        *params = dyn_.total;
        Ok(a)
    }
}

fn parts_len<T>(dense: Option<T>) -> usize {
    if dense.is_some() {
        1
    } else {
        2
    }
}

/// The augmented backward dynamics `(y, a)` (backsolve) or `a` (interpolated), with the
/// parameter cotangent accumulated per stage and committed when a step is accepted.
struct AdjointDynamics<'a, F: VectorField<D>, const D: usize> {
    field: &'a F,
    b: &'static [f64],
    fsal: bool,
    /// `aᵀ ∂f/∂θ` at each stage of the current step (unweighted).
    stage_params: Vec<F::Params>,
    total: F::Params,
    zero: F::Params,
    dense: Option<&'a DenseOutput<D>>,
    stats: Stats,
}

impl<const D: usize, F: VectorField<D>> Stepper<D> for AdjointDynamics<'_, F, D> {
    fn eval(&mut self, stage: usize, ts: &Time, parts: &[Tensor<D>], _h: &StepH) -> Vec<Tensor<D>> {
        let t = ts.shared().expect("batch-wide control");
        let (y, a) = match self.dense {
            None => (parts[0].clone(), &parts[1]),
            // Stage times lie inside the forward span by construction.
            Some(dense) => (dense.evaluate(t).expect("adjoint stage inside the forward span"), &parts[0]),
        };
        let (f, saved) = self.field.eval_saving(ts, &y);
        let mut p = self.zero.clone();
        let da = self.field.vjp_saved(&saved, a, Some((&mut p, 1.0))).neg();
        self.stats.nvjp += 1;
        if stage != PROBE {
            if stage == 0 {
                self.stage_params.clear();
            }
            self.stage_params.push(p);
        }
        match self.dense {
            None => vec![f, da],
            Some(_) => vec![da],
        }
    }
    fn accepted(&mut self, _t: f64, h: f64, _y: &[Tensor<D>], _k: &[Vec<Tensor<D>>], _outputs: &[(usize, f64)]) {
        // θ̄ += h Σ b_i (−aᵀ∂f/∂θ)_i, the RK update of the θ̄ component.
        for (i, p) in self.stage_params.iter().enumerate() {
            if self.b[i] != 0.0 {
                self.total.add_scaled(p, -h * self.b[i]);
            }
        }
        if self.fsal {
            let last = self.stage_params.pop().expect("stages");
            self.stage_params.clear();
            self.stage_params.push(last);
        } else {
            self.stage_params.clear();
        }
    }
    fn rejected(&mut self) {
        self.stage_params.truncate(1);
    }
}

/// Recompute one step with a known step size, recording its stages.
fn replay_step<const D: usize, S: Stepper<D>>(
    stepper: &mut S,
    tab: &super::tableau::Tableau,
    t: f64,
    h: f64,
    y: &[Tensor<D>],
    k1: Option<Vec<Tensor<D>>>,
    stats: &mut Stats,
) -> (Vec<Vec<Tensor<D>>>, Vec<Tensor<D>>) {
    let hcoef = Coef::Uniform(h);
    let (k, last_input) = stages(stepper, tab, &Time::Shared(t), &StepH::Shared(h), &hcoef, y, k1, stats);
    let y_new = match last_input {
        Some(yn) => yn,
        None => advance(y, &k, tab.b, &hcoef),
    };
    (k, y_new)
}

/// The discrete adjoint of recorded steps, last to first. `a` is the cotangent of the state
/// after the last step; returns the cotangent of the state before the first.
///
/// For a step `Y_i = y + h Σ_{j<i} a_ij k_j`, `k_i = f(t + c_i h, Y_i)`, `y' = y + h Σ b_i k_i`,
/// outputs `y(θ_m) = y + h Σ B_i(θ_m) k_i` with cotangents `g_m`:
/// `k̄_i = h b_i ȳ' + h Σ_m B_i(θ_m) g_m + h Σ_{j>i} a_ji Ȳ_j`, `Ȳ_i = (∂f/∂y)ᵀ k̄_i`,
/// `ȳ = ȳ' + Σ_m g_m + Σ_i Ȳ_i`, `θ̄ += Σ_i (∂f/∂θ)ᵀ k̄_i`.
///
/// For FSAL methods the first stage of step `n+1` is evaluated at the point of the last stage of
/// step `n` (`Y_s = y_{n+1}`, since `a_s = b`); its cotangent is carried back (`carry`) and added
/// to that stage's, so each such point costs one VJP instead of two. Routing it through `Y_s`
/// instead of `y_{n+1}` is exact because `a_sj = b_j`.
#[allow(clippy::too_many_arguments)]
fn discrete_adjoint<const D: usize, F: VectorField<D>>(
    field: &F,
    opts: &Options,
    steps: &[StepRecord<F::Saved>],
    mut a: Tensor<D>,
    mut carry: Option<Tensor<D>>,
    is_first_segment: bool,
    cotangents: &[Tensor<D>],
    params: &mut F::Params,
    stats: &mut Stats,
) -> (Tensor<D>, Option<Tensor<D>>) {
    let tab = opts.solver.tableau();
    let s = tab.stages();
    let mut dense_w = vec![0.0; s];
    for (n, step) in steps.iter().enumerate().rev() {
        // Outputs at the step end add to ȳ' directly; interior ones go through the interpolant.
        let mut interior: Vec<(Vec<f64>, &Tensor<D>)> = Vec::new();
        for &(idx, theta) in &step.outputs {
            if theta == 1.0 {
                a = a + cotangents[idx].clone();
            } else {
                tab.dense_weights(theta, &mut dense_w);
                interior.push((dense_w.clone(), &cotangents[idx]));
            }
        }
        let mut y_bar = a.clone();
        for (_, g) in &interior {
            y_bar = y_bar + (*g).clone();
        }
        let mut stage_bar: Vec<Option<Tensor<D>>> = vec![None; s];
        for i in (0..s).rev() {
            let mut terms: Vec<(f64, &Tensor<D>)> = Vec::new();
            if tab.b[i] != 0.0 {
                terms.push((tab.b[i], &a));
            }
            for (w, g) in &interior {
                if w[i] != 0.0 {
                    terms.push((w[i], *g));
                }
            }
            for j in (i + 1)..s {
                let aji = tab.a[j - 1][i];
                if aji != 0.0 {
                    if let Some(yb) = &stage_bar[j] {
                        terms.push((aji, yb));
                    }
                }
            }
            let mut k_bar = if terms.is_empty() { None } else { Some(combine(None, &terms, &Coef::Uniform(step.h))) };
            if tab.fsal && i == s - 1 {
                if let Some(c) = carry.take() {
                    k_bar = Some(match k_bar {
                        Some(k) => k + c,
                        None => c,
                    });
                }
            }
            let Some(k_bar) = k_bar else { continue };
            if tab.fsal && i == 0 && !(n == 0 && is_first_segment) {
                // Deferred to the previous step's last stage (same point).
                carry = Some(k_bar);
                continue;
            }
            let yb = field.vjp_saved(&step.saved[i], &k_bar, Some((params, 1.0)));
            stats.nvjp += 1;
            stage_bar[i] = Some(yb);
        }
        for yb in stage_bar.into_iter().flatten() {
            y_bar = y_bar + yb;
        }
        a = y_bar;
    }
    (a, carry)
}
