//! Systems written once over a generic scalar ([`crate::sim::ClosureSystem`]):
//! every derivative the solvers and sensitivities need is derived.

use crate::sim::system::non_negative;
use crate::sim::{ClosureSystem, Rhs, Scalar};

/// The rate constants of [`hires`], in the order of `p`.
pub const HIRES_PARAMS: [(&str, f64); 12] = [
    ("k1", 1.71),
    ("k2", 0.43),
    ("k3", 8.32),
    ("k4", 0.0007),
    ("k5", 8.75),
    ("k6", 10.03),
    ("k7", 0.035),
    ("k8", 1.12),
    ("k9", 1.745),
    ("k10", 280.0),
    ("k11", 0.69),
    ("k12", 1.81),
];

/// The right-hand side of HIRES (see [`hires`]).
pub struct HiresRhs;

impl Rhs for HiresRhs {
    fn eval<S: Scalar>(&self, _t: f64, y: &[S], k: &[S], dy: &mut [S]) {
        let r10 = k[9] * y[5] * y[7];
        dy[0] = k[1] * y[1] - k[0] * y[0] + k[2] * y[2] + k[3];
        dy[1] = k[0] * y[0] - k[4] * y[1];
        dy[2] = k[1] * y[3] - k[5] * y[2] + k[6] * y[4];
        dy[3] = k[2] * y[1] + k[0] * y[2] - k[7] * y[3];
        dy[4] = k[1] * y[5] - k[8] * y[4] + k[1] * y[6];
        dy[5] = k[10] * y[3] + k[0] * y[4] - k[1] * y[5] + k[10] * y[6] - r10;
        dy[6] = r10 - k[11] * y[6];
        dy[7] = k[11] * y[6] - r10;
    }
}

/// HIRES: the 8-species "High Irradiance RESponse" photomorphogenesis model
/// (Schäfer 1975; Hairer & Wanner II, §IV.10; problem HIRES of the Bari test
/// set for IVP solvers, Mazzia & Magherini), stiff, on `t ∈ [0, 321.8122]`
/// from `y₀ = [1, 0, 0, 0, 0, 0, 0, 0.0057]`, rate constants
/// [`HIRES_PARAMS`] (all must be non-negative).
pub fn hires() -> ClosureSystem<HiresRhs> {
    let y0 = vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057];
    HIRES_PARAMS.iter().fold(ClosureSystem::new("hires", HiresRhs, y0), |s, (name, v)| s.param(*name, *v)).validate(|p| {
        for ((name, _), v) in HIRES_PARAMS.iter().zip(p) {
            non_negative("hires", name, *v)?;
        }
        Ok(())
    })
}

/// The end time of the test set's HIRES problem.
pub const HIRES_T_END: f64 = 321.8122;

/// The test set's reference solution at [`HIRES_T_END`] (Mazzia & Magherini,
/// "Test Set for IVP Solvers", release 2.4, problem HIRES, computed with
/// RADAU5 at tolerance 1e-14).
pub const HIRES_REFERENCE: [f64; 8] = [
    0.7371312573325668e-3,
    0.1442485726316185e-3,
    0.5888729740967575e-4,
    0.1175651343283149e-2,
    0.2386356198831331e-2,
    0.6238968252742796e-2,
    0.2849998395185769e-2,
    0.2850001604814231e-2,
];
