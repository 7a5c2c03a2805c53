//! Euler–Maruyama: `y' = y + f(t, y) h + g(t, y) ΔW` (Kloeden & Platen, §10.2). Itô; strong
//! order 0.5, or 1.0 for additive noise.

use burn::tensor::Tensor;

use super::{Facts, Increment, Saves, SdeMethod};
use crate::ode::Stats;
use crate::sde::{Calculus, SdeField};
use crate::Result;

pub(crate) struct EulerMaruyama;

impl SdeMethod for EulerMaruyama {
    fn facts(&self) -> Facts {
        Facts { calculus: Calculus::Ito, strong_order: (Some(0.5), Some(1.0)), additive_only: false, needs_dg: false, levy_area: false, discrete_adjoint: true }
    }

    fn step<S: SdeField>(&self, field: &S, t: f64, h: f64, y: &Tensor<2>, inc: &Increment) -> Result<(Tensor<2>, Saves<S>)> {
        let (f, fs) = field.drift_saving(t, y);
        let (g, gs) = field.diffusion_saving(t, y);
        Ok((y.clone() + f.mul_scalar(h) + field.noise().prod(&g, &inc.dw), Saves { f: vec![fs], g: vec![gs] }))
    }

    fn step_vjp<S: SdeField>(
        &self,
        field: &S,
        saved: &Saves<S>,
        a: &Tensor<2>,
        h: f64,
        inc: &Increment,
        p: &mut S::Params,
        stats: &mut Stats,
    ) -> Option<Tensor<2>> {
        stats.nvjp += 2;
        Some(
            a.clone()
                + field.drift_vjp(&saved.f[0], &a.clone().mul_scalar(h), Some((p, 1.0)))
                + field.diffusion_vjp(&saved.g[0], &field.noise().cotangent(a, &inc.dw), Some((p, 1.0))),
        )
    }
}
