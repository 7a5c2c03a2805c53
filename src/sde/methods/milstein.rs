//! Milstein for diagonal noise: `y' = y + f h + g ΔW + ½ g ∂g/∂y (ΔW² − h)` (Itô) or
//! `… (ΔW²)` (Stratonovich) (Kloeden & Platen, §10.3). Strong order 1.0 for commutative noise.
//! No discrete adjoint: it would need second derivatives of `g`.

use burn::tensor::Tensor;

use super::{Facts, Increment, Saves, SdeMethod};
use crate::sde::{Calculus, SdeField};
use crate::Result;

pub(crate) struct Milstein {
    pub calculus: Calculus,
}

impl SdeMethod for Milstein {
    fn facts(&self) -> Facts {
        Facts { calculus: self.calculus, strong_order: (Some(1.0), Some(1.0)), additive_only: false, needs_dg: true, levy_area: false, discrete_adjoint: false }
    }

    fn step<S: SdeField>(&self, field: &S, t: f64, h: f64, y: &Tensor<2>, inc: &Increment) -> Result<(Tensor<2>, Saves<S>)> {
        let dw = &inc.dw;
        let f = field.drift(t, y);
        let (g, gs) = field.diffusion_saving(t, y);
        let gdg = field.diffusion_vjp(&gs, &g, None);
        let dw2 = dw.clone().square();
        let corr = if self.calculus == Calculus::Ito { dw2.sub_scalar(h) } else { dw2 };
        let y1 = y.clone() + f.mul_scalar(h) + field.noise().prod(&g, dw) + (gdg * corr).mul_scalar(0.5);
        Ok((y1, Saves::none()))
    }
}
