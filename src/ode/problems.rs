//! Reference problems shared by the tests, the benches and the examples, each with its
//! known solution (analytic where one exists).
//!
//! States are `[batch, dim]`; the exact solutions take and return one sample as `[f64; dim]`.
//! Physical systems without a closed form (Lotka–Volterra, Robertson, Van der Pol, …) live once,
//! in [`crate::sim::systems`]; the batched solvers run them through [`super::SystemField`].

use crate::host::ToHost;
use burn::tensor::{Device, Tensor, TensorData};

use super::field::{FnField, Time};

/// `y' = A y` with `A = [[−λ, ω], [−ω, −λ]]` (a damped rotation):
/// `y(t) = expm(A t) y0 = e^{−λt} [[cos ωt, sin ωt], [−sin ωt, cos ωt]] y0`.
#[derive(Clone, Copy, Debug)]
pub struct DampedRotation {
    /// Decay rate λ.
    pub lambda: f64,
    /// Angular frequency ω.
    pub omega: f64,
}

impl Default for DampedRotation {
    fn default() -> Self {
        Self { lambda: 0.5, omega: 2.0 }
    }
}

impl DampedRotation {
    /// The vector field on `[batch, 2]`.
    pub fn field(self) -> FnField<impl Fn(&Time, Tensor<2>) -> Tensor<2>> {
        FnField::new(move |_t: &Time, y: Tensor<2>| {
            let x0 = y.clone().narrow(1, 0, 1);
            let x1 = y.narrow(1, 1, 1);
            let d0 = x0.clone().mul_scalar(-self.lambda) + x1.clone().mul_scalar(self.omega);
            let d1 = x0.mul_scalar(-self.omega) + x1.mul_scalar(-self.lambda);
            Tensor::cat(vec![d0, d1], 1)
        })
    }

    /// `expm(A t) y0`.
    pub fn exact(self, t: f64, y0: [f64; 2]) -> [f64; 2] {
        let d = (-self.lambda * t).exp();
        let (s, c) = (self.omega * t).sin_cos();
        [d * (c * y0[0] + s * y0[1]), d * (-s * y0[0] + c * y0[1])]
    }
}

/// Kepler's two-body problem in the plane, state `[q1, q2, p1, p2]`, `q'' = −q/|q|³`,
/// started at pericentre with eccentricity `e`: the exact solution follows from Kepler's
/// equation `E − e sin E = t` (period 2π).
#[derive(Clone, Copy, Debug)]
pub struct Kepler {
    /// Eccentricity, `0 ≤ e < 1`.
    pub e: f64,
}

impl Default for Kepler {
    fn default() -> Self {
        Self { e: 0.5 }
    }
}

impl Kepler {
    /// The vector field on `[batch, 4]`.
    pub fn field(self) -> FnField<impl Fn(&Time, Tensor<2>) -> Tensor<2>> {
        FnField::new(move |_t: &Time, y: Tensor<2>| {
            let q = y.clone().narrow(1, 0, 2);
            let p = y.narrow(1, 2, 2);
            let r2 = q.clone().square().sum_dim(1);
            let r3 = r2.clone() * r2.sqrt();
            let acc = q.neg() / r3;
            Tensor::cat(vec![p, acc], 1)
        })
    }

    /// Initial state at pericentre.
    pub fn y0(self) -> [f64; 4] {
        let e = self.e;
        [1.0 - e, 0.0, 0.0, ((1.0 + e) / (1.0 - e)).sqrt()]
    }

    /// Exact state at time `t`.
    pub fn exact(self, t: f64) -> [f64; 4] {
        let e = self.e;
        // Newton on E − e sin E − t = 0 from E = t (converges for e < 1).
        let mut ecc = t;
        for _ in 0..50 {
            let d = (ecc - e * ecc.sin() - t) / (1.0 - e * ecc.cos());
            ecc -= d;
            if d.abs() < 1e-16 {
                break;
            }
        }
        let (s, c) = ecc.sin_cos();
        let b = (1.0 - e * e).sqrt();
        let den = 1.0 - e * c;
        [c - e, b * s, -s / den, b * c / den]
    }
}

/// Damped pendulum `θ'' = −(g/L) sin θ − c θ'`, state `[θ, ω]`.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct DampedPendulum {
    /// g/L (1/s²).
    pub g_over_l: f64,
    /// Damping c (1/s).
    pub damping: f64,
}

impl Default for DampedPendulum {
    fn default() -> Self {
        Self { g_over_l: 1.0, damping: 0.1 }
    }
}

impl DampedPendulum {
    /// The vector field on `[batch, 2]`.
    pub fn field(self) -> FnField<impl Fn(&Time, Tensor<2>) -> Tensor<2>> {
        FnField::new(move |_t: &Time, y: Tensor<2>| {
            let th = y.clone().narrow(1, 0, 1);
            let om = y.narrow(1, 1, 1);
            let dom = th.sin().mul_scalar(-self.g_over_l) - om.clone().mul_scalar(self.damping);
            Tensor::cat(vec![om, dom], 1)
        })
    }
}

/// A `[batch, dim]` tensor from rows of `f64`.
pub fn batch_tensor<const N: usize>(rows: &[[f64; N]], device: &Device) -> Tensor<2> {
    let data: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::<2>::from_data(TensorData::new(data, [rows.len(), N]), device)
}

/// Rows of a `[batch, dim]` tensor as `f64`.
pub fn tensor_rows(t: &Tensor<2>) -> Vec<Vec<f64>> {
    let [b, d] = t.dims();
    let v: Vec<f64> = t.to_vec_as::<f64>();
    (0..b).map(|i| v[i * d..(i + 1) * d].to_vec()).collect()
}
