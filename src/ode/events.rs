//! Events in batched solves: every sample of `y0: [batch, ...]` has its own crossings of the
//! event functions `g(t, y_i)`, recorded or stopping that sample alone (terminal events);
//! a stopped sample keeps its state at the stop (its derivative is masked to zero) while the
//! others go on, and the solve ends when all have stopped or the last output time is reached.
//! The same [`Event`] type as `sim` (resets are `sim`'s: a batch shares its steps, so one
//! sample cannot restart the integrator).
//!
//! Crossings are found per accepted step from the signs of `g` at the step's ends and located
//! by Illinois regula falsi on the method's dense output (its interpolant, or cubic Hermite
//! for methods without one), as in `sim::events`. Stop times are differentiable:
//! [`event_gradients`] applies the implicit-function formula
//! `dt*/dθ = −(∂g/∂y · ∂y(t*)/∂θ) / (∂g/∂y · f + ∂g/∂t)` (the event-time gradient of
//! Chen, Amos & Nickel, "Learning neural event functions for ordinary differential
//! equations", ICLR 2021) through the engine's gradient strategies.

use burn::tensor::{Tensor, TensorData};

use super::adjoint::{solve_for_grad, Gradient, Grads};
use super::field::{Time, VectorField};
use super::solve::{check_times, check_y0, integrate, Coef, Solution, Stats, Status, StepH, Stepper, Stops};
use super::{Options, StepSize};
use crate::host::ToHost;
use crate::sim::events::{crosses, locate, Action, Event};
use crate::{Error, Result};

/// A crossing of one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleEvent {
    /// The sample (row of `y0`).
    pub sample: usize,
    /// Index of the event in the list given to the solve.
    pub event: usize,
    /// Time of the crossing.
    pub t: f64,
    /// The sample's state there, flattened.
    pub state: Vec<f64>,
}

/// A batched solve with events.
#[derive(Clone, Debug)]
pub struct EventSolution<const D: usize> {
    /// States at the output times; a stopped sample holds its stop state after its stop.
    pub solution: Solution<D>,
    /// Every crossing, in the order found (time order per sample).
    pub hits: Vec<SampleEvent>,
    /// Per sample, the time of its terminal event, or `None` if it ran to the end.
    pub stop_times: Vec<Option<f64>>,
    /// Per sample, its state at the stop (or at the last output time), flattened.
    pub final_states: Vec<Vec<f64>>,
}

/// The stepper of an event solve: the field with stopped samples masked, and the crossing
/// search after every accepted step.
struct EventStepper<'a, 'e, F, const D: usize> {
    field: &'a F,
    events: &'a [Event<'e>],
    tab: &'static super::tableau::Tableau,
    /// `g` of every running sample and event at the current step's start, `[batch][events]`.
    g_prev: Vec<Vec<f64>>,
    stopped: Vec<bool>,
    mask: Option<Coef<D>>,
    hits: Vec<SampleEvent>,
    stop_times: Vec<Option<f64>>,
    extra_nfe: usize,
}

impl<F: VectorField<D>, const D: usize> Stepper<D> for EventStepper<'_, '_, F, D> {
    fn eval(&mut self, _stage: usize, ts: &Time, y: &[Tensor<D>], _h: &StepH) -> Vec<Tensor<D>> {
        let f = self.field.eval(ts, &y[0]);
        vec![match &self.mask {
            Some(m) => m.apply(f),
            None => f,
        }]
    }

    fn stops(&mut self, t: f64, h: f64, y: &[Tensor<D>], k: &[Vec<Tensor<D>>], y_new: &[Tensor<D>]) -> Result<Option<Stops<D>>> {
        let batch = y[0].dims()[0];
        let t_new = t + h;
        let ends = y_new[0].host_vec::<f64>()?;
        let n = ends.len() / batch;
        let mut crossing: Vec<usize> = Vec::new();
        let mut g_new = vec![Vec::new(); batch];
        for i in (0..batch).filter(|i| !self.stopped[*i]) {
            let row = &ends[i * n..(i + 1) * n];
            g_new[i] = self.events.iter().map(|e| (e.g)(t_new, row, &[])).collect();
            if let Some(j) = g_new[i].iter().position(|g| !g.is_finite()) {
                return Err(Error::invalid("events", format!("event `{}` is {} at t = {t_new} for sample {i}", self.events[j].name, g_new[i][j])));
            }
            if self.events.iter().enumerate().any(|(j, e)| crosses(self.g_prev[i][j], g_new[i][j], e.direction)) {
                crossing.push(i);
            }
        }
        if crossing.is_empty() {
            for i in (0..batch).filter(|i| !self.stopped[*i]) {
                self.g_prev[i] = std::mem::take(&mut g_new[i]);
            }
            return Ok(None);
        }
        // The dense output of the crossing samples' rows on the host.
        let start = y[0].host_vec::<f64>()?;
        let stages: Vec<Vec<f64>> = k.iter().map(|ki| ki[0].host_vec::<f64>()).collect::<Result<_>>()?;
        let s = self.tab.stages();
        let hermite = self.tab.dense.is_none() && !self.tab.fsal;
        let f_end = if hermite {
            self.extra_nfe += 1;
            Some(self.eval(0, &Time::Shared(t_new), y_new, &StepH::Shared(0.0)).remove(0).host_vec::<f64>()?)
        } else {
            None
        };
        let mut weights = vec![0.0; s];
        let mut theta_of = vec![None; batch];
        let mut y_stop = ends.clone();
        let mut any_stop = false;
        for &i in &crossing {
            let r = i * n..(i + 1) * n;
            let (y0r, y1r) = (&start[r.clone()], &ends[r.clone()]);
            let kr: Vec<&[f64]> = stages.iter().map(|kk| &kk[r.clone()]).collect();
            let tab = self.tab;
            let fe = f_end.as_ref().map(|f| &f[r.clone()]);
            let state_at = |theta: f64, w: &mut Vec<f64>, out: &mut Vec<f64>| {
                out.clear();
                if let Some(fe) = fe {
                    let (h01, h10, h11) = super::tableau::hermite_basis(theta);
                    out.extend((0..n).map(|c| (1.0 - h01) * y0r[c] + h01 * y1r[c] + h * (h10 * kr[0][c] + h11 * fe[c])));
                } else {
                    tab.dense_weights(theta, w);
                    out.extend((0..n).map(|c| y0r[c] + h * (0..s).map(|j| w[j] * kr[j][c]).sum::<f64>()));
                }
            };
            // Each crossing event's root; then the ones up to the first terminal, in time order.
            let mut found: Vec<(f64, usize)> = Vec::new();
            let mut buf = Vec::with_capacity(n);
            for (j, e) in self.events.iter().enumerate() {
                if !crosses(self.g_prev[i][j], g_new[i][j], e.direction) {
                    continue;
                }
                let mut g = |tt: f64| -> Result<f64> {
                    state_at(((tt - t) / h).clamp(0.0, 1.0), &mut weights, &mut buf);
                    Ok((e.g)(tt, &buf, &[]))
                };
                let root = locate(t, self.g_prev[i][j], t_new, g_new[i][j], &mut g)?;
                found.push((root, j));
            }
            found.sort_by(|a, b| (h.signum() * a.0).total_cmp(&(h.signum() * b.0)));
            for (root, j) in found {
                let theta = ((root - t) / h).clamp(0.0, 1.0);
                state_at(theta, &mut weights, &mut buf);
                self.hits.push(SampleEvent { sample: i, event: j, t: root, state: buf.clone() });
                if matches!(self.events[j].action, Action::Stop) {
                    theta_of[i] = Some(theta);
                    self.stop_times[i] = Some(root);
                    self.stopped[i] = true;
                    y_stop[r.clone()].copy_from_slice(&buf);
                    any_stop = true;
                    break;
                }
            }
        }
        for i in (0..batch).filter(|i| !self.stopped[*i]) {
            self.g_prev[i] = std::mem::take(&mut g_new[i]);
        }
        if !any_stop {
            return Ok(None);
        }
        let alive: Vec<f64> = self.stopped.iter().map(|s| if *s { 0.0 } else { 1.0 }).collect();
        self.mask = Some(Coef::per_sample(&alive, &y[0]));
        let y_stop = Tensor::<D>::from_data(TensorData::new(y_stop, y[0].dims().to_vec()), (&y[0].device(), y[0].dtype()));
        Ok(Some(Stops { theta: theta_of, y_stop, all_stopped: self.stopped.iter().all(|s| *s) }))
    }
}

/// Solve `dy/dt = f(t, y)` from `y(times[0]) = y0` to the output times, with events: every
/// sample's crossings of every `g` are recorded, and a terminal event stops its sample.
///
/// # Shapes
/// `y0: [batch, ...]`; `g(t, y_i, p)` sees one sample flattened (`p` is empty).
///
/// # Errors
/// As [`solve`](super::solve); `Unsupported` for resets, per-sample step control or dense
/// output; `InvalidArgument` for an event function that is not finite.
pub fn solve_events<const D: usize, F: VectorField<D>>(
    field: &F,
    y0: Tensor<D>,
    times: &[f64],
    events: &[Event<'_>],
    opts: &Options,
) -> Result<EventSolution<D>> {
    opts.check()?;
    check_times(times)?;
    check_y0(&y0)?;
    field.check_state(&y0)?;
    if let Some(e) = events.iter().find(|e| matches!(e.action, Action::Reset(_))) {
        return Err(Error::Unsupported(format!("reset event `{}` in a batched ode solve (samples share their steps); use sim::simulate_events", e.name)));
    }
    if opts.per_sample() || opts.dense {
        return Err(Error::Unsupported("events with per-sample step control or dense output".into()));
    }
    let batch = y0.dims()[0];
    let rows = y0.host_vec::<f64>()?;
    let n = rows.len() / batch;
    let mut g_prev = Vec::with_capacity(batch);
    for i in 0..batch {
        let g: Vec<f64> = events.iter().map(|e| (e.g)(times[0], &rows[i * n..(i + 1) * n], &[])).collect();
        if let Some(j) = g.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid("events", format!("event `{}` is {} at t0 for sample {i}", events[j].name, g[j])));
        }
        g_prev.push(g);
    }
    let mut stepper = EventStepper {
        field,
        events,
        tab: opts.solver.tableau(),
        g_prev,
        stopped: vec![false; batch],
        mask: None,
        hits: Vec::new(),
        stop_times: vec![None; batch],
        extra_nfe: 0,
    };
    let mut stats = Stats::default();
    let out = integrate(&mut stepper, opts, vec![y0.clone()], times, None, 1, &mut stats)?;
    stats.nfe += stepper.extra_nfe;
    let mut ys = Vec::with_capacity(times.len());
    ys.push(y0);
    ys.extend(out.outputs.into_iter().map(|mut o| o.remove(0)));
    let last = ys.last().expect("outputs").host_vec::<f64>()?;
    let final_states = last.chunks_exact(n).map(<[f64]>::to_vec).collect();
    Ok(EventSolution {
        solution: Solution { ts: times.to_vec(), ys, stats, status: vec![Status::Success; batch], dense: None },
        hits: stepper.hits,
        stop_times: stepper.stop_times,
        final_states,
    })
}

/// The field on the rescaled time `s ∈ [0, 1]`, `t_i(s) = t0 + s (T_i − t0)`:
/// `dy_i/ds = (T_i − t0) f(t_i(s), y_i)`, so one batch-wide solve over `[0, 1]` ends every
/// sample at its own time `T_i`.
struct Rescaled<'a, F, const D: usize> {
    field: &'a F,
    t0: f64,
    span: Vec<f64>,
    coef: Coef<D>,
}

impl<F: VectorField<D>, const D: usize> Rescaled<'_, F, D> {
    fn time(&self, s: &Time) -> Time {
        Time::PerSample(self.span.iter().enumerate().map(|(i, l)| self.t0 + s.of(i) * l).collect())
    }
}

impl<F: VectorField<D>, const D: usize> VectorField<D> for Rescaled<'_, F, D> {
    type Params = F::Params;
    type Saved = F::Saved;

    fn eval(&self, t: &Time, y: &Tensor<D>) -> Tensor<D> {
        self.coef.apply(self.field.eval(&self.time(t), y))
    }
    fn eval_saving(&self, t: &Time, y: &Tensor<D>) -> (Tensor<D>, F::Saved) {
        let (f, saved) = self.field.eval_saving(&self.time(t), y);
        (self.coef.apply(f), saved)
    }
    fn vjp_saved(&self, saved: &F::Saved, a: &Tensor<D>, params: Option<(&mut F::Params, f64)>) -> Tensor<D> {
        self.field.vjp_saved(saved, &self.coef.apply(a.clone()), params)
    }
    fn zero_params(&self) -> F::Params {
        self.field.zero_params()
    }
}

/// Gradients of a loss `L(t*_i, y*_i)` of every sample's end time and end state in an event
/// solve (`t*_i` its stop time, or the last output time for a sample that did not stop),
/// with respect to `y0` and the field's parameters. With `a_i = ∂L/∂y*_i` and
/// `c_i = (a_i · f + ∂L/∂t*_i) / (∂g/∂y · f + ∂g/∂t)` at the stop, the cotangent of the
/// fixed-time state `y(t*_i)` is `a_i − c_i ∂g/∂y`, which is then pulled back to `y0` and `θ`
/// by `gradient` on the solve rescaled so that each sample ends at its own `t*_i`.
///
/// # Arguments
/// `dl_dt: [batch]`, `dl_dy` shaped like `y0`; `events` as given to [`solve_events`], with
/// [`Event::gradient`] set on every terminal one that fired.
///
/// # Errors
/// `Shape` for cotangents of the wrong size; `InvalidArgument` when a fired terminal event
/// has no gradient or crossed tangentially (`∂g/∂y · f + ∂g/∂t = 0`: the stop time is not
/// differentiable there); the errors of [`solve_for_grad`].
#[allow(clippy::too_many_arguments)]
pub fn event_gradients<const D: usize, F: VectorField<D>>(
    field: &F,
    y0: Tensor<D>,
    times: &[f64],
    events: &[Event<'_>],
    solved: &EventSolution<D>,
    dl_dt: &[f64],
    dl_dy: Tensor<D>,
    opts: &Options,
    gradient: Gradient,
) -> Result<Grads<D, F::Params>> {
    check_times(times)?;
    let batch = y0.dims()[0];
    if dl_dt.len() != batch || solved.stop_times.len() != batch {
        return Err(Error::Shape { what: "dl_dt (one per sample)".into(), expected: vec![batch], got: vec![dl_dt.len()] });
    }
    if dl_dy.dims() != y0.dims() {
        return Err(Error::Shape { what: "dl_dy".into(), expected: y0.dims().to_vec(), got: dl_dy.dims().to_vec() });
    }
    let (t0, t_end) = (times[0], times[times.len() - 1]);
    let ends: Vec<f64> = solved.stop_times.iter().map(|s| s.unwrap_or(t_end)).collect();
    let span: Vec<f64> = ends.iter().map(|e| e - t0).collect();
    // Cotangent of the fixed-time end state, through the implicit-function formula.
    let shape = y0.dims().to_vec();
    let y_end: Vec<f64> = solved.final_states.concat();
    let y_end_t = Tensor::<D>::from_data(TensorData::new(y_end.clone(), shape.clone()), (&y0.device(), y0.dtype()));
    let f = field.eval(&Time::PerSample(ends.clone()), &y_end_t).host_vec::<f64>()?;
    let mut a = dl_dy.host_vec::<f64>()?;
    let n = a.len() / batch;
    let mut dg = vec![0.0; n];
    for i in 0..batch {
        let Some(ts) = solved.stop_times[i] else { continue };
        let hit = solved
            .hits
            .iter()
            .rev()
            .find(|h| h.sample == i && h.t == ts && matches!(events.get(h.event).map(|e| &e.action), Some(Action::Stop)))
            .ok_or_else(|| Error::invalid("events", format!("no terminal crossing recorded for sample {i}; pass the events of the solve")))?;
        let e = &events[hit.event];
        let grad =
            e.gradient.as_ref().ok_or_else(|| Error::invalid("events", format!("event `{}` needs Event::gradient to differentiate its time", e.name)))?;
        let r = i * n..(i + 1) * n;
        let dg_dt = grad(ts, &y_end[r.clone()], &[], &mut dg);
        let denom: f64 = dg.iter().zip(&f[r.clone()]).map(|(g, fi)| g * fi).sum::<f64>() + dg_dt;
        let num: f64 = a[r.clone()].iter().zip(&f[r.clone()]).map(|(ai, fi)| ai * fi).sum::<f64>() + dl_dt[i];
        if !(denom.abs() > 0.0) || !denom.is_finite() {
            return Err(Error::invalid(
                "events",
                format!("event `{}` crosses tangentially for sample {i} at t = {ts} (dg/dt = 0): its time is not differentiable", e.name),
            ));
        }
        let c = num / denom;
        for (aj, gj) in a[r].iter_mut().zip(&dg) {
            *aj -= c * gj;
        }
    }
    let coef = Coef::per_sample(&span, &y0);
    let rescaled = Rescaled { field, t0, span, coef };
    let mut opts = opts.clone();
    if let StepSize::Fixed { dt } = &mut opts.step {
        // The same steps in the rescaled time s = (t - t0) / (t_end - t0).
        *dt /= (t_end - t0).abs();
    }
    let (_, tape) = solve_for_grad(&rescaled, y0.clone(), &[0.0, 1.0], &opts, gradient)?;
    let a = Tensor::<D>::from_data(TensorData::new(a, shape), (&y0.device(), y0.dtype()));
    tape.backward(&[y0.zeros_like(), a])
}
