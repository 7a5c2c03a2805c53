//! The integration loop, with batch-wide step control (one `h` for all samples) or
//! per-sample control (each sample its own `t`, `h`; finished samples frozen).

use crate::host::ToHost;
use burn::tensor::{Tensor, TensorData};

use super::dense::{DenseOutput, Recording};
use super::field::{Time, VectorField};
use super::tableau::Tableau;
use super::{Adaptive, Options, StepSize};
use crate::{Error, Result};

/// Counters of a solve. With per-sample control, steps and rejections are summed over samples;
/// evaluations always count batched calls of the field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Accepted steps.
    pub steps: usize,
    /// Rejected steps.
    pub rejected: usize,
    /// Evaluations of the vector field (`eval` calls, batched).
    pub nfe: usize,
    /// Vector–Jacobian products (backward passes only).
    pub nvjp: usize,
}

/// Outcome of one sample of a per-sample solve.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// Reached the final time.
    Success,
    /// Ran out of steps at time `t`.
    MaxStepsReached {
        /// Time reached.
        t: f64,
    },
    /// Step size underflow at time `t`.
    StepSizeUnderflow {
        /// Time reached.
        t: f64,
    },
    /// The state became non-finite at time `t`.
    NonFinite {
        /// Time reached.
        t: f64,
    },
}

/// A solution at the requested times.
#[derive(Clone, Debug)]
pub struct Solution<const D: usize> {
    /// Output times, as requested (`ts[0] = t0`).
    pub ts: Vec<f64>,
    /// States at `ts`, each `[batch, ...]` like `y0`. With per-sample control a sample that
    /// failed holds NaN at the times it did not reach (see `status`).
    pub ys: Vec<Tensor<D>>,
    /// Counters.
    pub stats: Stats,
    /// One status per sample (all `Success` for batch-wide control, which returns `Err` instead).
    pub status: Vec<Status>,
    pub(crate) dense: Option<DenseOutput<D>>,
}

impl<const D: usize> Solution<D> {
    /// The state at the last output time, with the counters: what a sampler keeps of a solve.
    ///
    /// # Errors
    /// `InvalidArgument` when the solution holds no state (no output times).
    pub fn into_end(self) -> Result<(Tensor<D>, Stats)> {
        let stats = self.stats;
        let y = self.ys.into_iter().last().ok_or_else(|| Error::invalid("times", "the solve returned no state"))?;
        Ok((y, stats))
    }

    /// The solution at any time `t` in the solved span, from the solver's dense
    /// output (the method's interpolant, or cubic Hermite). Needs `Options::dense`.
    pub fn evaluate(&self, t: f64) -> Result<Tensor<D>> {
        let dense = self.dense.as_ref().ok_or_else(|| Error::invalid("t", "dense output was not kept; set Options::dense = true"))?;
        dense.evaluate(t)
    }
}

/// A scalar coefficient shared by the batch, or one per sample as a tensor
/// `[batch, 1, ..., 1]` that broadcasts against the state.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // built once per step; boxing the tensor would allocate more
pub(crate) enum Coef<const D: usize> {
    Uniform(f64),
    Batch(Tensor<D>),
}

impl<const D: usize> Coef<D> {
    pub(crate) fn per_sample(values: &[f64], like: &Tensor<D>) -> Self {
        let mut shape = [1usize; D];
        shape[0] = values.len();
        Coef::Batch(Tensor::<D>::from_data(TensorData::new(values.to_vec(), shape.to_vec()), (&like.device(), like.dtype())))
    }

    pub(crate) fn apply(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Coef::Uniform(c) => x.mul_scalar(*c),
            Coef::Batch(c) => x * c.clone(),
        }
    }
}

/// `base + scale · Σ_j w_j x_j`, skipping zero weights. With a uniform scale it is folded
/// into the weights so the combination costs one multiply and one add per term.
pub(crate) fn combine<const D: usize>(base: Option<&Tensor<D>>, terms: &[(f64, &Tensor<D>)], scale: &Coef<D>) -> Tensor<D> {
    let mut acc: Option<Tensor<D>> = None;
    let fold = match scale {
        Coef::Uniform(h) => *h,
        Coef::Batch(_) => 1.0,
    };
    for &(w, x) in terms {
        if w == 0.0 {
            continue;
        }
        let term = x.clone().mul_scalar(w * fold);
        acc = Some(match acc {
            None => term,
            Some(a) => a + term,
        });
    }
    let sum = match (acc, scale) {
        (None, _) => None,
        (Some(a), Coef::Uniform(_)) => Some(a),
        (Some(a), Coef::Batch(c)) => Some(a * c.clone()),
    };
    match (base, sum) {
        (Some(b), Some(s)) => b.clone() + s,
        (Some(b), None) => b.clone(),
        (None, Some(s)) => s,
        (None, None) => panic!("combine: no terms and no base"),
    }
}

/// Weighted RMS norm pieces: per element `x / (atol + rtol · max(|y0|, |y1|))`.
fn scaled<const D: usize>(x: Tensor<D>, y0: &Tensor<D>, y1: &Tensor<D>, rtol: f64, atol: f64) -> Tensor<D> {
    let scale = y0.clone().abs().max_pair(y1.clone().abs()).mul_scalar(rtol).add_scalar(atol);
    x / scale
}

/// Mean of squares over all elements.
fn mean_sq<const D: usize>(x: Tensor<D>) -> f64 {
    x.square().mean().into_scalar::<f64>()
}

/// Mean of squares per sample, `[batch]`.
fn mean_sq_per_sample<const D: usize>(x: Tensor<D>) -> Vec<f64> {
    let b = x.dims()[0];
    let flat: Tensor<2> = x.reshape([b as i64, -1]);
    flat.square().mean_dim(1).to_vec_as::<f64>()
}

/// Whether every entry is finite (the sum is, unless it overflows).
pub(crate) fn all_finite<const D: usize>(x: &Tensor<D>) -> bool {
    x.clone().sum().into_scalar::<f64>().is_finite()
}

/// What an integration loop asks of the dynamics it integrates, and tells it about steps.
/// The state is a list of tensor parts (one for a plain solve; state and adjoint for the
/// continuous adjoint), each `[batch, ...]`.
pub(crate) trait Stepper<const D: usize> {
    /// Derivatives of all parts at stage `stage` of the step from `t` of size `h`, at time `ts`.
    fn eval(&mut self, stage: usize, ts: &Time, y: &[Tensor<D>], h: &StepH) -> Vec<Tensor<D>>;
    /// The step `(t, h)` from `y` with stages `k` was accepted; outputs `(index, θ)` fell in it.
    fn accepted(&mut self, _t: f64, _h: f64, _y: &[Tensor<D>], _k: &[Vec<Tensor<D>>], _outputs: &[(usize, f64)]) {}
    /// The last attempted step was rejected.
    fn rejected(&mut self) {}
    /// After an accepted step `(t, h)` from `y` with stages `k` to `y_new`: the samples that
    /// stop inside it (terminal events), or `None`. Called before the step's outputs are formed.
    fn stops(&mut self, _t: f64, _h: f64, _y: &[Tensor<D>], _k: &[Vec<Tensor<D>>], _y_new: &[Tensor<D>]) -> Result<Option<Stops<D>>> {
        Ok(None)
    }
}

/// Samples that stopped inside one step: where, and their states there (part 0).
pub(crate) struct Stops<const D: usize> {
    /// Per sample, the fraction `θ ∈ (0, 1]` of the step where it stopped, or `None`.
    pub theta: Vec<Option<f64>>,
    /// The states at the stops: rows of stopped samples are meaningful, others are ignored.
    pub y_stop: Tensor<D>,
    /// No sample is left running.
    pub all_stopped: bool,
}

/// Stage index of evaluations that are not stages of a step (initial-step probes).
pub(crate) const PROBE: usize = usize::MAX;

/// The step size of the current step, shared or per sample (zero for frozen samples).
#[derive(Clone, Debug)]
pub(crate) enum StepH {
    Shared(f64),
    PerSample(Vec<f64>),
}

/// Initial step size (Hairer, Nørsett & Wanner, Solving ODEs I, §II.4, "starting step size"),
/// per sample when `per_sample`. Returns the step(s) and `f(t0, y0)` for reuse.
fn initial_step<const D: usize, S: Stepper<D>>(
    stepper: &mut S,
    tab: &Tableau,
    ctl: &Adaptive,
    t0: f64,
    y0: &[Tensor<D>],
    dir: f64,
    norm_parts: usize,
    per_sample: bool,
    stats: &mut Stats,
) -> (Vec<f64>, Vec<Tensor<D>>) {
    let batch = y0[0].dims()[0];
    let time0 = Time::Shared(t0);
    let f0 = stepper.eval(0, &time0, y0, &StepH::Shared(0.0));
    stats.nfe += 1;
    let norms = |xs: &[Tensor<D>], ys: &[Tensor<D>]| -> Vec<f64> {
        let mut acc = vec![0.0; if per_sample { batch } else { 1 }];
        for p in 0..norm_parts {
            let s = scaled(xs[p].clone(), &ys[p], &ys[p], ctl.rtol, ctl.atol);
            if per_sample {
                for (a, v) in acc.iter_mut().zip(mean_sq_per_sample(s)) {
                    *a += v / norm_parts as f64;
                }
            } else {
                acc[0] += mean_sq(s) / norm_parts as f64;
            }
        }
        acc.into_iter().map(f64::sqrt).collect()
    };
    let d0 = norms(y0, y0);
    let d1 = norms(&f0, y0);
    let h0: Vec<f64> = d0.iter().zip(&d1).map(|(&d0, &d1)| if d0 < 1e-5 || d1 < 1e-5 { 1e-6 } else { 0.01 * d0 / d1 }).collect();
    let hcoef = if per_sample { Coef::per_sample(&h0.iter().map(|h| dir * h).collect::<Vec<_>>(), &y0[0]) } else { Coef::Uniform(dir * h0[0]) };
    let y1: Vec<Tensor<D>> = y0.iter().zip(&f0).map(|(y, f)| combine(Some(y), &[(1.0, f)], &hcoef)).collect();
    let t1 = if per_sample { Time::PerSample(h0.iter().map(|h| t0 + dir * h).collect()) } else { Time::Shared(t0 + dir * h0[0]) };
    // A probe, not a stage: `PROBE` tells recording steppers not to keep it.
    let f1 = stepper.eval(PROBE, &t1, &y1, &StepH::Shared(0.0));
    stats.nfe += 1;
    let diff: Vec<Tensor<D>> = f1.iter().zip(&f0).map(|(a, b)| a.clone() - b.clone()).collect();
    let d2 = norms(&diff, y0);
    let order = tab.embedded_order.unwrap_or(tab.order) as f64 + 1.0;
    let hs = (0..d0.len())
        .map(|i| {
            let d2 = d2[i] / h0[i];
            let h1 = if d1[i].max(d2) <= 1e-15 { (h0[i] * 1e-3).max(1e-6) } else { (0.01 / d1[i].max(d2)).powf(1.0 / order) };
            (100.0 * h0[i]).min(h1)
        })
        .collect();
    (hs, f0)
}

/// Steps this small no longer change `t` reliably: a few ulps of the larger of `|t|`, `|t_end|`.
fn underflow_threshold(t: f64, t_end: f64) -> f64 {
    4.0 * f64::EPSILON * t.abs().max(t_end.abs()).max(f64::MIN_POSITIVE)
}

/// Validates the output times and returns the direction of integration.
pub(crate) fn check_times(times: &[f64]) -> Result<f64> {
    if times.len() < 2 {
        return Err(Error::invalid("times", "need at least two times (t0 and one output time)"));
    }
    if times.iter().any(|t| !t.is_finite()) {
        return Err(Error::invalid("times", "times must be finite"));
    }
    let dir = (times[times.len() - 1] - times[0]).signum();
    if times[times.len() - 1] == times[0] {
        return Err(Error::invalid("times", format!("t1 = t0 = {}: the time span is empty", times[0])));
    }
    for w in times.windows(2) {
        if dir * (w[1] - w[0]) <= 0.0 {
            return Err(Error::invalid("times", format!("times must be strictly monotone; found {} then {}", w[0], w[1])));
        }
    }
    Ok(dir)
}

/// The wall-clock budget of one solve ([`super::Limits::max_wall_seconds`]).
pub(crate) struct Clock {
    start: std::time::Instant,
    limit: Option<f64>,
}

impl Clock {
    pub(crate) fn start(limit: Option<f64>) -> Self {
        Self { start: std::time::Instant::now(), limit }
    }

    /// `TimeLimitReached` once the budget is spent.
    pub(crate) fn check(&self, t: f64, steps: usize) -> Result<()> {
        match self.limit {
            Some(seconds) if self.start.elapsed().as_secs_f64() > seconds => Err(Error::TimeLimitReached { seconds, t, steps }),
            _ => Ok(()),
        }
    }
}

/// Whether an adaptive step `h` has become too small to go on: below `Adaptive::min_step` or
/// a few ulps of `t`.
fn step_too_small(h: f64, t: f64, t_end: f64, min_step: f64) -> bool {
    h.abs() <= underflow_threshold(t, t_end) || h.abs() < min_step || !h.is_finite()
}

/// The stages of one explicit RK step from `(t, y)` with step `h` (shared or per sample).
/// `k1` is reused when given (FSAL, or after a rejection). For FSAL methods the last
/// stage input is `y_{n+1}` itself, returned as the second value.
pub(crate) fn stages<const D: usize, S: Stepper<D>>(
    stepper: &mut S,
    tab: &Tableau,
    t: &Time,
    hsize: &StepH,
    hcoef: &Coef<D>,
    y: &[Tensor<D>],
    k1: Option<Vec<Tensor<D>>>,
    stats: &mut Stats,
) -> (Vec<Vec<Tensor<D>>>, Option<Vec<Tensor<D>>>) {
    let s = tab.stages();
    let mut k: Vec<Vec<Tensor<D>>> = Vec::with_capacity(s);
    k.push(match k1 {
        Some(k1) => k1,
        None => {
            stats.nfe += 1;
            stepper.eval(0, t, y, hsize)
        }
    });
    let mut last_input = None;
    for i in 1..s {
        let row = tab.a[i - 1];
        let yi: Vec<Tensor<D>> = (0..y.len())
            .map(|p| {
                let terms: Vec<(f64, &Tensor<D>)> = row.iter().copied().zip(k.iter().map(|kj| &kj[p])).collect();
                combine(Some(&y[p]), &terms, hcoef)
            })
            .collect();
        let ti = match (t, hsize) {
            (Time::Shared(t), StepH::Shared(h)) => Time::Shared(t + tab.c[i] * h),
            _ => Time::PerSample((0..y[0].dims()[0]).map(|j| t.of(j) + tab.c[i] * hsize.of(j)).collect()),
        };
        stats.nfe += 1;
        k.push(stepper.eval(i, &ti, &yi, hsize));
        if i == s - 1 && tab.fsal {
            last_input = Some(yi);
        }
    }
    (k, last_input)
}

impl StepH {
    pub(crate) fn of(&self, i: usize) -> f64 {
        match self {
            StepH::Shared(h) => *h,
            StepH::PerSample(hs) => hs[i],
        }
    }
}

/// `y + h Σ w_i k_i` for every part.
pub(crate) fn advance<const D: usize>(y: &[Tensor<D>], k: &[Vec<Tensor<D>>], w: &[f64], hcoef: &Coef<D>) -> Vec<Tensor<D>> {
    (0..y.len())
        .map(|p| {
            let terms: Vec<(f64, &Tensor<D>)> = w.iter().copied().zip(k.iter().map(|ki| &ki[p])).collect();
            combine(Some(&y[p]), &terms, hcoef)
        })
        .collect()
}

/// Result of an integration: the states at `times[1..]`, the step size the controller
/// proposes next, and how each sample ended.
pub(crate) struct Integrated<const D: usize> {
    pub outputs: Vec<Vec<Tensor<D>>>,
    pub h_next: f64,
    /// One status per sample; all `Success` for batch-wide control, which fails with `Err`.
    pub status: Vec<Status>,
}

/// A lane that cannot go on. Batch-wide control fails the solve with `err`; per-sample
/// control records the failure for that sample and lets the others finish.
fn lane_failed(per_sample: bool, slot: &mut Option<Status>, err: Error) -> Result<()> {
    if !per_sample {
        return Err(err);
    }
    *slot = Some(match err {
        Error::MaxStepsReached { t, .. } => Status::MaxStepsReached { t },
        Error::StepSizeUnderflow { t, .. } => Status::StepSizeUnderflow { t },
        Error::NonFinite { t, .. } => Status::NonFinite { t },
        other => return Err(other),
    });
    Ok(())
}

/// Per lane, whether every entry of every part is finite: one lane for the batch, or one
/// per sample (`[batch]`).
fn finite_lanes<const D: usize>(parts: &[Tensor<D>], per_sample: bool) -> Vec<bool> {
    if !per_sample {
        return vec![parts.iter().all(all_finite)];
    }
    let b = parts[0].dims()[0];
    let mut ok = vec![true; b];
    for p in parts {
        let rows: Tensor<2> = p.clone().reshape([b as i64, -1]);
        for (o, s) in ok.iter_mut().zip(rows.sum_dim(1).to_vec_as::<f64>()) {
            *o &= s.is_finite();
        }
    }
    ok
}

/// The integration loop, from `times[0]` through `times[1..]`, with the step control of
/// `opts`: one step size for the batch (adaptive, fixed or on the output grid), or with
/// [`StepControl::PerSample`](super::StepControl::PerSample) one `(t, h)` and controller
/// state per sample, exactly as if each were solved alone; finished or failed samples take
/// zero steps. Outputs come from dense output inside steps (adaptive) or fall on step ends.
/// The error norm is the RMS over the first `norm_parts` parts (per sample, or over the batch).
pub(crate) fn integrate<const D: usize, S: Stepper<D>>(
    stepper: &mut S,
    opts: &Options,
    y0: Vec<Tensor<D>>,
    times: &[f64],
    h_init: Option<f64>,
    norm_parts: usize,
    stats: &mut Stats,
) -> Result<Integrated<D>> {
    let tab = opts.solver.tableau();
    let dir = check_times(times)?;
    let t_end = times[times.len() - 1];
    let s = tab.stages();
    let q = tab.embedded_order.unwrap_or(1);
    let batch = y0[0].dims()[0];
    // `Options::check` has ruled out adaptive steps for a solver without an error estimate.
    let adaptive = opts.adaptive_steps();
    // Lanes of step control: one for the whole batch, or one per sample.
    let per_sample = opts.per_sample();
    let lanes = if per_sample { batch } else { 1 };
    let mut t = vec![times[0]; lanes];
    let mut y = y0;
    let mut k1: Option<Vec<Tensor<D>>> = None;
    let mut h: Vec<f64> = match (adaptive, &opts.step) {
        (Some(ctl), _) => match h_init.or(ctl.dt0) {
            Some(h) => vec![dir * h.abs(); lanes],
            None => {
                let (hs, f0) = initial_step(stepper, tab, ctl, times[0], &y, dir, norm_parts, per_sample, stats);
                k1 = Some(f0);
                hs.into_iter().map(|h| dir * h).collect()
            }
        },
        (None, StepSize::Fixed { dt }) => vec![dir * dt],
        (None, _) => vec![0.0],
    };
    let mut err_prev = vec![1.0; lanes];
    let mut next_out = vec![1usize; lanes];
    // Step attempts per sample lane (their step budget); the batch lane counts in `stats`.
    let mut tries = vec![0usize; lanes];
    let mut status: Vec<Option<Status>> = vec![None; lanes];
    // Batch-wide outputs are pushed in order; per-sample ones start as NaN and are filled in
    // as each sample crosses them (a sample that fails keeps NaN where it did not reach).
    let mut outputs: Vec<Vec<Tensor<D>>> =
        if per_sample { vec![y.iter().map(|p| p.clone().mul_scalar(f64::NAN)).collect(); times.len() - 1] } else { Vec::with_capacity(times.len() - 1) };
    let mut weights = vec![0.0; s];
    // Fixed-step bookkeeping: the current output interval is split into n equal steps.
    let mut fixed_left = 0usize;
    let mut fixed_h = 0.0;
    let clock = Clock::start(opts.limits.max_wall_seconds);
    while status.iter().any(Option::is_none) {
        for i in 0..lanes {
            // The batch's budget is shared by every integration that adds to `stats`.
            let used = if per_sample { tries[i] } else { stats.steps + stats.rejected };
            if status[i].is_none() && used >= opts.limits.max_steps {
                lane_failed(per_sample, &mut status[i], Error::MaxStepsReached { max_steps: opts.limits.max_steps, t: t[i] })?;
            }
        }
        if status.iter().all(Option::is_some) {
            break;
        }
        clock.check(t.iter().copied().fold(f64::NAN, f64::min), stats.steps)?;
        // Per-lane step and the time it reaches; zero for finished samples.
        let (h_step, t_new): (Vec<f64>, Vec<f64>) = if adaptive.is_some() {
            (0..lanes)
                .map(|i| {
                    if status[i].is_some() {
                        (0.0, t[i])
                    } else if dir * (t[i] + 1.01 * h[i] - t_end) >= 0.0 {
                        // Clip to the final time; stretch a step that would leave a sliver (< 1 % of h).
                        (t_end - t[i], t_end)
                    } else {
                        (h[i], t[i] + h[i])
                    }
                })
                .unzip()
        } else {
            if fixed_left == 0 {
                let target = times[next_out[0]];
                fixed_left = match opts.step {
                    StepSize::Fixed { dt } => (((target - t[0]).abs() / dt) - 1e-9).ceil().max(1.0) as usize,
                    _ => 1,
                };
                fixed_h = (target - t[0]) / fixed_left as f64;
            }
            let t_new = if fixed_left == 1 { times[next_out[0]] } else { t[0] + fixed_h };
            (vec![t_new - t[0]], vec![t_new])
        };
        let (hsize, hcoef, time) = if per_sample {
            (StepH::PerSample(h_step.clone()), Coef::per_sample(&h_step, &y[0]), Time::PerSample(t.clone()))
        } else {
            (StepH::Shared(h_step[0]), Coef::Uniform(h_step[0]), Time::Shared(t[0]))
        };
        let (k, last_input) = stages(stepper, tab, &time, &hsize, &hcoef, &y, k1.take(), stats);
        let y_new = match last_input {
            Some(yn) => yn,
            None => advance(&y, &k, tab.b, &hcoef),
        };
        let mut err = vec![0.0; lanes];
        if let (Some(ctl), Some(e)) = (adaptive, tab.e) {
            let mut acc = vec![0.0; lanes];
            for p in 0..norm_parts {
                let terms: Vec<(f64, &Tensor<D>)> = e.iter().copied().zip(k.iter().map(|ki| &ki[p])).collect();
                let est = scaled(combine(None, &terms, &hcoef), &y[p], &y_new[p], ctl.rtol, ctl.atol);
                if per_sample {
                    for (a, v) in acc.iter_mut().zip(mean_sq_per_sample(est)) {
                        *a += v;
                    }
                } else {
                    acc[0] += mean_sq(est);
                }
            }
            err = acc.into_iter().map(|a| (a / norm_parts as f64).sqrt()).collect();
        }
        let mut f_finite: Option<Vec<bool>> = None;
        let mut y_finite: Option<Vec<bool>> = None;
        let mut accept = vec![false; lanes];
        for i in 0..lanes {
            if status[i].is_some() {
                continue;
            }
            tries[i] += 1;
            if let Some(ctl) = adaptive.filter(|_| !(err[i] <= 1.0)) {
                if !err[i].is_finite() && !f_finite.get_or_insert_with(|| finite_lanes(&k[0], per_sample))[i] {
                    // Shrinking the step cannot help when f(t, y) itself is not finite.
                    lane_failed(per_sample, &mut status[i], Error::NonFinite { what: "derivative f(t, y)", step: stats.steps, t: t[i] })?;
                    continue;
                }
                stats.rejected += 1;
                if !per_sample {
                    stepper.rejected();
                }
                h[i] = h_step[i] * ctl.controller.factor(err[i], err_prev[i], q);
                if step_too_small(h[i], t[i], t_end, ctl.min_step) {
                    let why = if !err[i].is_finite() && h[i].abs() >= ctl.min_step {
                        // The step shrank to nothing because f is not finite just after t
                        // (a closure returning NaN there), not because the problem is stiff.
                        Error::NonFinite { what: "derivative f(t, y) just after t", step: stats.steps, t: t[i] }
                    } else {
                        Error::StepSizeUnderflow { t: t[i], h: h[i] }
                    };
                    lane_failed(per_sample, &mut status[i], why)?;
                }
                continue;
            }
            if !y_finite.get_or_insert_with(|| finite_lanes(&y_new, per_sample))[i] {
                lane_failed(per_sample, &mut status[i], Error::NonFinite { what: "state", step: stats.steps, t: t_new[i] })?;
                continue;
            }
            accept[i] = true;
        }
        let n_accepted = accept.iter().filter(|a| **a).count();
        if n_accepted == 0 {
            // Nothing moved: the next try starts from the same states and reuses stage 1.
            k1 = Some(k.into_iter().next().expect("stage 1"));
            continue;
        }
        stats.steps += n_accepted;
        if per_sample {
            per_sample_outputs(&mut outputs, &mut next_out, times, dir, &accept, &t, &h_step, &t_new, &y, &k, &y_new, tab, &mut weights);
            for i in (0..lanes).filter(|&i| accept[i]) {
                let ctl = adaptive.expect("per-sample control is adaptive");
                // The controller acts on the proposed step, not on a clipped final one.
                let base = if h_step[i].abs() < h[i].abs() { h[i] } else { h_step[i] };
                h[i] = base * ctl.controller.factor(err[i], err_prev[i], q);
                err_prev[i] = err[i].max(1e-10);
                t[i] = t_new[i];
                if next_out[i] >= times.len() {
                    status[i] = Some(Status::Success);
                }
            }
            let accepted: Vec<f64> = accept.iter().map(|a| if *a { 1.0 } else { 0.0 }).collect();
            let mask = Coef::per_sample(&accepted, &y[0]);
            // Stage 1 of the next step: the FSAL stage where accepted, the old stage 1 where not.
            if tab.fsal {
                let mut kk = k;
                let last = kk.pop().expect("stages");
                let first = kk.swap_remove(0);
                k1 = Some(last.into_iter().zip(first).map(|(l, f)| select(&mask, l, f)).collect());
            }
            y = y_new.into_iter().zip(y).map(|(n, o)| select(&mask, n, o)).collect();
            continue;
        }
        let (h_step, t_new) = (h_step[0], t_new[0]);
        // Samples stopping inside this step hold their stop state from there on.
        let stops = stepper.stops(t[0], h_step, &y, &k, &y_new)?;
        let mut y_new = y_new;
        if let Some(st) = &stops {
            let stopped: Vec<f64> = st.theta.iter().map(|th| if th.is_some() { 1.0 } else { 0.0 }).collect();
            y_new[0] = select(&Coef::per_sample(&stopped, &y_new[0]), st.y_stop.clone(), y_new[0].clone());
        }
        // Outputs that fall in (t, t_new].
        let mut in_step: Vec<(usize, f64)> = Vec::new();
        while next_out[0] < times.len() && dir * (times[next_out[0]] - t_new) <= 0.0 {
            let tk = times[next_out[0]];
            if tk == t_new {
                outputs.push(y_new.clone());
                in_step.push((next_out[0], 1.0));
            } else {
                let theta = (tk - t[0]) / h_step;
                if !tab.dense_weights(theta, &mut weights) {
                    unreachable!("fixed-step outputs fall on step ends");
                }
                let mut out = advance(&y, &k, &weights, &hcoef);
                if let Some(st) = &stops {
                    let after: Vec<f64> = st.theta.iter().map(|th| if th.is_some_and(|s| s < theta) { 1.0 } else { 0.0 }).collect();
                    if after.iter().any(|a| *a != 0.0) {
                        out[0] = select(&Coef::per_sample(&after, &out[0]), st.y_stop.clone(), out[0].clone());
                    }
                }
                outputs.push(out);
                in_step.push((next_out[0], theta));
            }
            next_out[0] += 1;
        }
        stepper.accepted(t[0], h_step, &y, &k, &in_step);
        // The last stage was evaluated before samples stopped: not reusable as the next
        // step's first stage for them.
        if tab.fsal && stops.is_none() {
            k1 = Some(k.into_iter().last().expect("stages"));
        }
        t[0] = t_new;
        y = y_new;
        if stops.as_ref().is_some_and(|st| st.all_stopped) {
            while outputs.len() < times.len() - 1 {
                outputs.push(y.clone());
            }
            break;
        }
        if next_out[0] >= times.len() {
            status[0] = Some(Status::Success);
        }
        if let Some(ctl) = adaptive {
            // The controller acts on the proposed step, not on a clipped final one.
            let base = if h_step.abs() < h[0].abs() { h[0] } else { h_step };
            h[0] = base * ctl.controller.factor(err[0], err_prev[0], q);
            err_prev[0] = err[0].max(1e-10);
        } else {
            fixed_left -= 1;
        }
    }
    let status =
        if per_sample { status.into_iter().map(|s| s.unwrap_or(Status::MaxStepsReached { t: f64::NAN })).collect() } else { vec![Status::Success; batch] };
    Ok(Integrated { outputs, h_next: h[0].abs(), status })
}

/// Per-sample outputs crossed in this step by the accepted samples: the dense output at
/// `θ = (t_k − t_i) / h_i` per sample (`y_new` itself at a step end), written into their rows.
#[allow(clippy::too_many_arguments)]
fn per_sample_outputs<const D: usize>(
    outputs: &mut [Vec<Tensor<D>>],
    next_out: &mut [usize],
    times: &[f64],
    dir: f64,
    accept: &[bool],
    t: &[f64],
    h_step: &[f64],
    t_new: &[f64],
    y: &[Tensor<D>],
    k: &[Vec<Tensor<D>>],
    y_new: &[Tensor<D>],
    tab: &Tableau,
    weights: &mut [f64],
) {
    let (batch, s) = (accept.len(), tab.stages());
    let mut crossing: Vec<Vec<(usize, f64)>> = vec![Vec::new(); times.len()];
    for i in (0..batch).filter(|&i| accept[i]) {
        while next_out[i] < times.len() && dir * (times[next_out[i]] - t_new[i]) <= 0.0 {
            let tk = times[next_out[i]];
            let theta = if tk == t_new[i] { 1.0 } else { (tk - t[i]) / h_step[i] };
            crossing[next_out[i]].push((i, theta));
            next_out[i] += 1;
        }
    }
    for (out_idx, members) in crossing.iter().enumerate() {
        if members.is_empty() {
            continue;
        }
        // Per-sample weights h·B_j(θ); exact end points take y_new itself.
        let mut w = vec![vec![0.0; batch]; s];
        let mut mask_interp = vec![0.0; batch];
        let mut mask_end = vec![0.0; batch];
        for &(i, theta) in members {
            if theta == 1.0 {
                mask_end[i] = 1.0;
            } else {
                tab.dense_weights(theta, weights);
                for j in 0..s {
                    w[j][i] = h_step[i] * weights[j];
                }
                mask_interp[i] = 1.0;
            }
        }
        for p in 0..y.len() {
            let mut value = outputs[out_idx - 1][p].clone();
            if mask_interp.iter().any(|m| *m != 0.0) {
                let mut interp = y[p].clone();
                for j in 0..s {
                    if w[j].iter().any(|v| *v != 0.0) {
                        interp = interp + Coef::per_sample(&w[j], &y[p]).apply(k[j][p].clone());
                    }
                }
                value = select(&Coef::per_sample(&mask_interp, &y[p]), interp, value);
            }
            if mask_end.iter().any(|m| *m != 0.0) {
                value = select(&Coef::per_sample(&mask_end, &y[p]), y_new[p].clone(), value);
            }
            outputs[out_idx - 1][p] = value;
        }
    }
}

/// Plain forward dynamics of a field (no gradient), optionally keeping dense output.
pub(crate) struct Plain<'a, F> {
    pub(crate) field: &'a F,
}

impl<const D: usize, F: VectorField<D>> Stepper<D> for Plain<'_, F> {
    fn eval(&mut self, _stage: usize, ts: &Time, y: &[Tensor<D>], _h: &StepH) -> Vec<Tensor<D>> {
        vec![self.field.eval(ts, &y[0])]
    }
}

/// The cotangents a backward pass takes: one per output time, each shaped like `y0`.
pub(crate) fn check_cotangents<const D: usize>(cotangents: &[Tensor<D>], n_times: usize, y0: &Tensor<D>) -> Result<()> {
    if cotangents.len() != n_times {
        return Err(Error::Shape { what: "cotangents (one per output time)".into(), expected: vec![n_times], got: vec![cotangents.len()] });
    }
    let shape = y0.dims().to_vec();
    for c in cotangents {
        if c.dims().to_vec() != shape {
            return Err(Error::Shape { what: "cotangent".into(), expected: shape, got: c.dims().to_vec() });
        }
    }
    Ok(())
}

pub(crate) fn check_y0<const D: usize>(y0: &Tensor<D>) -> Result<()> {
    if !all_finite(y0) {
        // The flat index of the first bad entry (host readback on the error path only).
        let index = y0.to_vec_as::<f64>().iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(Error::NonFiniteInput { what: "y0", index });
    }
    if y0.dims()[0] == 0 {
        return Err(Error::invalid("y0", "empty batch"));
    }
    Ok(())
}

/// Solve `dy/dt = f(t, y)` from `y(times[0]) = y0` and return the states at every time in
/// `times` (strictly monotone, increasing or decreasing).
///
/// # Shapes
/// `y0: [batch, ...]`; each `Solution::ys[i]` has the shape of `y0`.
///
/// # Errors
/// `InvalidArgument` for bad times or options, `NonFinite` for a non-finite `y0` or state,
/// `StepSizeUnderflow`, `MaxStepsReached`. With [`StepControl::PerSample`](super::StepControl::PerSample) failures of
/// single samples are reported in `Solution::status` instead.
pub fn solve<const D: usize, F: VectorField<D>>(field: &F, y0: Tensor<D>, times: &[f64], opts: &Options) -> Result<Solution<D>> {
    opts.check()?;
    check_times(times)?;
    check_y0(&y0)?;
    field.check_state(&y0)?;
    if opts.per_sample() && opts.dense {
        return Err(Error::Unsupported("dense output with per-sample step control".into()));
    }
    let mut stats = Stats::default();
    let (integrated, dense) = if opts.dense {
        let mut rec = Recording::new(field);
        let out = integrate(&mut rec, opts, vec![y0.clone()], times, None, 1, &mut stats)?;
        let y_last = out.outputs.last().expect("outputs")[0].clone();
        let dense = rec.finish(opts.solver.tableau(), &y_last, &mut stats);
        (out, Some(dense))
    } else {
        let mut plain = Plain { field };
        (integrate(&mut plain, opts, vec![y0.clone()], times, None, 1, &mut stats)?, None)
    };
    let mut ys = Vec::with_capacity(times.len());
    ys.push(y0);
    ys.extend(integrated.outputs.into_iter().map(|mut o| o.remove(0)));
    Ok(Solution { ts: times.to_vec(), ys, stats, status: integrated.status, dense })
}

/// Per sample, `a` where the 0/1 mask is 1 and `b` elsewhere (a masked select rather than
/// `m·a + (1 − m)·b`, which would turn a non-finite value in the unselected branch into NaN).
fn select<const D: usize>(m: &Coef<D>, a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    match m {
        Coef::Uniform(v) => {
            if *v != 0.0 {
                a
            } else {
                b
            }
        }
        Coef::Batch(mask) => {
            let mask = mask.clone().equal_elem(1.0).expand(a.shape());
            b.mask_where(mask, a)
        }
    }
}
