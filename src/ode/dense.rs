//! Dense output of a batch-wide solve: every accepted step is kept, and the solution is
//! evaluated anywhere in the span by the method's interpolant (or cubic Hermite).

use burn::tensor::Tensor;

use super::field::{Time, VectorField};
use super::solve::{combine, Coef, Stats, StepH, Stepper};
use super::tableau::Tableau;
use crate::{Error, Result};

/// Every accepted step of a batch-wide solve, for dense evaluation.
#[derive(Clone, Debug)]
pub(crate) struct DenseOutput<const D: usize> {
    tab: &'static Tableau,
    steps: Vec<DenseStep<D>>,
}

#[derive(Clone, Debug)]
struct DenseStep<const D: usize> {
    t: f64,
    h: f64,
    y: Tensor<D>,
    k: Vec<Tensor<D>>,
    /// `f(t + h, y_{n+1})`, for Hermite interpolation of methods without an interpolant.
    f_end: Option<Tensor<D>>,
    y_end: Tensor<D>,
}

impl<const D: usize> DenseOutput<D> {
    pub(crate) fn evaluate(&self, t: f64) -> Result<Tensor<D>> {
        let first = self.steps.first().ok_or_else(|| Error::invalid("t", "empty solution"))?;
        let last = self.steps.last().expect("non-empty");
        let dir = first.h.signum();
        let (lo, hi) = (first.t, last.t + last.h);
        if !t.is_finite() || dir * (t - lo) < -1e-12 * lo.abs().max(1.0) || dir * (t - hi) > 1e-12 * hi.abs().max(1.0) {
            return Err(Error::invalid("t", format!("{t} is outside the solved span [{lo}, {hi}]")));
        }
        // Binary search for the step with t_n <= t <= t_n + h (in the direction of integration).
        let idx = self.steps.partition_point(|s| dir * (s.t + s.h - t) < 0.0).min(self.steps.len() - 1);
        let s = &self.steps[idx];
        let theta = ((t - s.t) / s.h).clamp(0.0, 1.0);
        let mut w = vec![0.0; self.tab.stages()];
        if self.tab.dense_weights(theta, &mut w) {
            let terms: Vec<(f64, &Tensor<D>)> = w.iter().copied().zip(s.k.iter()).collect();
            return Ok(combine(Some(&s.y), &terms, &Coef::Uniform(s.h)));
        }
        let f_end = s.f_end.as_ref().expect("f_end is filled for every step of a dense solve");
        let (h01, h10, h11) = super::tableau::hermite_basis(theta);
        Ok(s.y.clone().mul_scalar(1.0 - h01) + s.y_end.clone().mul_scalar(h01) + s.k[0].clone().mul_scalar(s.h * h10) + f_end.clone().mul_scalar(s.h * h11))
    }
}

/// Records accepted steps for dense output.
pub(crate) struct Recording<'a, F, const D: usize> {
    field: &'a F,
    steps: Vec<DenseStep<D>>,
}

impl<'a, const D: usize, F: VectorField<D>> Recording<'a, F, D> {
    pub(crate) fn new(field: &'a F) -> Self {
        Self { field, steps: Vec::new() }
    }

    /// The dense output of the recorded solve ending in `y_last`: fills each step's end point;
    /// Hermite interpolation of a method without FSAL needs one more evaluation at the end.
    pub(crate) fn finish(mut self, tab: &'static Tableau, y_last: &Tensor<D>, stats: &mut Stats) -> DenseOutput<D> {
        let n = self.steps.len();
        for i in 0..n {
            let y_end = if i + 1 < n { self.steps[i + 1].y.clone() } else { y_last.clone() };
            self.steps[i].y_end = y_end;
        }
        if let Some(last) = self.steps.last_mut() {
            if tab.dense.is_none() && !tab.fsal {
                stats.nfe += 1;
                last.f_end = Some(self.field.eval(&Time::Shared(last.t + last.h), &last.y_end));
            }
        }
        DenseOutput { tab, steps: self.steps }
    }
}

impl<const D: usize, F: VectorField<D>> Stepper<D> for Recording<'_, F, D> {
    fn eval(&mut self, _stage: usize, ts: &Time, y: &[Tensor<D>], _h: &StepH) -> Vec<Tensor<D>> {
        vec![self.field.eval(ts, &y[0])]
    }
    fn accepted(&mut self, t: f64, h: f64, y: &[Tensor<D>], k: &[Vec<Tensor<D>>], _outputs: &[(usize, f64)]) {
        if let Some(prev) = self.steps.last_mut() {
            if prev.f_end.is_none() {
                prev.f_end = Some(k[0][0].clone());
            }
        }
        self.steps.push(DenseStep { t, h, y: y[0].clone(), k: k.iter().map(|ki| ki[0].clone()).collect(), f_end: None, y_end: y[0].clone() });
    }
}
