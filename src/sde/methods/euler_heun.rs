//! Euler–Heun: `ỹ = y + g(t, y) ΔW`, `y' = y + f(t, y) h + ½(g(t, y) + g(t, ỹ)) ΔW`
//! (Kloeden & Platen, §11.1). Stratonovich; strong order 1.0 for commutative noise.

use burn::tensor::Tensor;

use super::{Facts, Increment, Saves, SdeMethod};
use crate::ode::Stats;
use crate::sde::{Calculus, SdeField};
use crate::Result;

pub(crate) struct EulerHeun;

impl SdeMethod for EulerHeun {
    fn facts(&self) -> Facts {
        Facts {
            calculus: Calculus::Stratonovich,
            strong_order: (Some(1.0), Some(1.0)),
            additive_only: false,
            needs_dg: false,
            levy_area: false,
            discrete_adjoint: true,
        }
    }

    fn step<S: SdeField>(&self, field: &S, t: f64, h: f64, y: &Tensor<2>, inc: &Increment) -> Result<(Tensor<2>, Saves<S>)> {
        let noise = field.noise();
        let dw = &inc.dw;
        let (f, fs) = field.drift_saving(t, y);
        let (g, gs) = field.diffusion_saving(t, y);
        let y_pred = y.clone() + noise.prod(&g, dw);
        let (g2, gs2) = field.diffusion_saving(t, &y_pred);
        let y1 = y.clone() + f.mul_scalar(h) + noise.prod(&(g + g2), dw).mul_scalar(0.5);
        Ok((y1, Saves { f: vec![fs], g: vec![gs, gs2] }))
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
        // y' = y + f h + ½(g(y) + g(ỹ)) dW, ỹ = y + g(y) dW.
        let noise = field.noise();
        let dw = &inc.dw;
        stats.nvjp += 3;
        let c = noise.cotangent(a, dw).mul_scalar(0.5);
        let a_pred = field.diffusion_vjp(&saved.g[1], &c, Some((p, 1.0)));
        let cg = c + noise.cotangent(&a_pred, dw);
        Some(
            a.clone() + a_pred + field.drift_vjp(&saved.f[0], &a.clone().mul_scalar(h), Some((p, 1.0))) + field.diffusion_vjp(&saved.g[0], &cg, Some((p, 1.0))),
        )
    }
}
