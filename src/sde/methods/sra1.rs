//! Rößler's SRA1 for additive noise (Rößler, SIAM J. Numer. Anal. 48, 2010), with the
//! space-time Lévy area of the Brownian path. Strong order 1.5 for additive noise.

use burn::tensor::Tensor;

use super::{Facts, Increment, Saves, SdeMethod};
use crate::ode::Stats;
use crate::sde::{Calculus, SdeField};
use crate::{Error, Result};

pub(crate) struct Sra1;

/// `J = I₍₁,₀₎ / h = H + W/2` from the step's Lévy area `H` and increment `W`.
fn j(inc: &Increment) -> Result<Tensor<2>> {
    let area = inc.area.as_ref().ok_or_else(|| Error::invalid("brownian", "SRA1 needs the space-time Lévy area of each step"))?;
    Ok(area.clone() + inc.dw.clone().mul_scalar(0.5))
}

impl SdeMethod for Sra1 {
    fn facts(&self) -> Facts {
        // Listed as Itô: on additive noise Itô and Stratonovich agree.
        Facts { calculus: Calculus::Ito, strong_order: (None, Some(1.5)), additive_only: true, needs_dg: false, levy_area: true, discrete_adjoint: true }
    }

    fn step<S: SdeField>(&self, field: &S, t: f64, h: f64, y: &Tensor<2>, inc: &Increment) -> Result<(Tensor<2>, Saves<S>)> {
        // SRA1 with c⁽⁰⁾ = (0, ¾), c⁽¹⁾ = (1, 0), A⁽⁰⁾₂₁ = ¾, B⁽⁰⁾₂₁ = 3/2,
        // α = (⅓, ⅔), β⁽¹⁾ = (1, 0), β⁽²⁾ = (−1, 1), written with J = I₍₁,₀₎/h = H + W/2:
        //   z = y + ¾h f(t, y) + (3/2) g(t + h) J,
        //   y' = y + h(⅓ f(t, y) + ⅔ f(t + ¾h, z)) + g(t + h) W + (g(t) − g(t + h)) J.
        let noise = field.noise();
        let dw = &inc.dw;
        let j = j(inc)?;
        let (f1, fs1) = field.drift_saving(t, y);
        let (g0, gs0) = field.diffusion_saving(t, y);
        let (g1, gs1) = field.diffusion_saving(t + h, y);
        let z = y.clone() + f1.clone().mul_scalar(0.75 * h) + noise.prod(&g1, &j).mul_scalar(1.5);
        let (f2, fs2) = field.drift_saving(t + 0.75 * h, &z);
        let y1 = y.clone() + (f1.mul_scalar(1.0 / 3.0) + f2.mul_scalar(2.0 / 3.0)).mul_scalar(h) + noise.prod(&g1, dw) + noise.prod(&(g0 - g1), &j);
        Ok((y1, Saves { f: vec![fs1, fs2], g: vec![gs0, gs1] }))
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
        // y' = y + h(⅓f₁ + ⅔f₂) + g₁W + (g₀ − g₁)J, z = y + ¾h f₁ + (3/2) g₁J.
        let noise = field.noise();
        let dw = &inc.dw;
        let (f1, f2, g0, g1) = (&saved.f[0], &saved.f[1], &saved.g[0], &saved.g[1]);
        stats.nvjp += 4;
        // The forward step had the area (it is recorded with the increment).
        let j = j(inc).ok()?;
        let z_bar = field.drift_vjp(f2, &a.clone().mul_scalar(2.0 * h / 3.0), Some((p, 1.0)));
        let cf1 = a.clone().mul_scalar(h / 3.0) + z_bar.clone().mul_scalar(0.75 * h);
        let cj = noise.cotangent(a, &j);
        let cg1 = noise.cotangent(a, dw) - cj.clone() + noise.cotangent(&z_bar, &j).mul_scalar(1.5);
        Some(
            a.clone()
                + z_bar
                + field.drift_vjp(f1, &cf1, Some((p, 1.0)))
                + field.diffusion_vjp(g0, &cj, Some((p, 1.0)))
                + field.diffusion_vjp(g1, &cg1, Some((p, 1.0))),
        )
    }
}
