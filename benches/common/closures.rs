//! The library's Robertson, Van der Pol and 2D Brusselator written once over a
//! generic scalar, for `sim::ClosureSystem`: every derivative derived, none
//! written. Shared by `tests/sim_closure.rs` (checked against the hand-written
//! systems) and the stiff benchmarks (timed against them).

#![allow(dead_code)]

use physflow::sim::{ClosureSystem, Rhs, Scalar, System};

/// Robertson's kinetics, `p = [k₁, k₂, k₃]` (as `sim::systems::Robertson`).
pub struct Kinetics;
impl Rhs for Kinetics {
    fn eval<S: Scalar>(&self, _t: f64, y: &[S], p: &[S], dy: &mut [S]) {
        let (r1, r2, r3) = (p[0] * y[0], p[1] * y[1] * y[1], p[2] * y[1] * y[2]);
        dy[0] = r3 - r1;
        dy[1] = r1 - r2 - r3;
        dy[2] = r2;
    }
}

/// Van der Pol, `ẏ₁ = y₂`, `ẏ₂ = μ(1 − y₁²)y₂ − y₁`, `p = [μ]` (as `sim::systems::VanDerPol`).
pub struct Oscillator;
impl Rhs for Oscillator {
    fn eval<S: Scalar>(&self, _t: f64, y: &[S], p: &[S], dy: &mut [S]) {
        dy[0] = y[1];
        dy[1] = p[0] * (S::cst(1.0) - y[0] * y[0]) * y[1] - y[0];
    }
}

/// The Brusselator of `sim::systems::Brusselator2d` (periodic `N × N` unit
/// square, state `[u, v]`, `p = [A, B, α]`).
pub struct Bruss {
    pub n: usize,
}
impl Rhs for Bruss {
    fn eval<S: Scalar>(&self, _t: f64, y: &[S], p: &[S], dy: &mut [S]) {
        let n = self.n;
        let nn = n * n;
        let h2 = (n * n) as f64; // 1/Δx² on the unit square
        for c in 0..2 {
            for i in 0..n {
                for j in 0..n {
                    let at = |a: usize, b: usize| y[c * nn + a * n + b];
                    let k = i * n + j;
                    let lap = (at((i + 1) % n, j) + at((i + n - 1) % n, j) + at(i, (j + 1) % n) + at(i, (j + n - 1) % n) - at(i, j) * 4.0) * h2;
                    let (u, v) = (y[k], y[nn + k]);
                    let uuv = u * u * v;
                    dy[c * nn + k] = if c == 0 { p[0] + uuv - (p[1] + 1.0) * u + p[2] * lap } else { p[1] * u - uuv + p[2] * lap };
                }
            }
        }
    }
}

/// Robertson with the library's defaults.
pub fn robertson() -> ClosureSystem<Kinetics> {
    ClosureSystem::new("robertson", Kinetics, vec![1.0, 0.0, 0.0]).param("k1", 0.04).param("k2", 3e7).param("k3", 1e4)
}

/// Van der Pol with `μ` from `[2, 0]`.
pub fn van_der_pol(mu: f64) -> ClosureSystem<Oscillator> {
    ClosureSystem::new("van_der_pol", Oscillator, vec![2.0, 0.0]).param("mu", mu)
}

/// The `N × N` Brusselator with the library's parameters and initial state.
pub fn brusselator(n: usize) -> ClosureSystem<Bruss> {
    let y0 = physflow::sim::systems::Brusselator2d::new(n).initial_state();
    ClosureSystem::new("brusselator2d", Bruss { n }, y0).param("a", 1.0).param("b", 3.4).param("alpha", 0.1)
}
