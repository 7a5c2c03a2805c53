//! Potential energies of physical systems, batched: `x: [batch, dim]` in, `u: [batch]` and
//! forces `f = −∇u: [batch, dim]` out, as ndarray arrays so that simulation codes can call
//! them directly.

use ndarray::{Array1, Array2, ArrayView2};

/// A potential energy `u(x)` in units of energy (the Boltzmann density is `exp(−β u)`).
///
/// Particle systems lay out `x` particle-major: `x[b, i·d + k]` is coordinate `k` of
/// particle `i` in `d` spatial dimensions.
pub trait Energy: Send + Sync {
    /// Configuration dimension (`n_particles · d` for particle systems).
    fn dim(&self) -> usize;
    /// `u(x)` per row of `x: [batch, dim]`.
    fn energy(&self, x: ArrayView2<f64>) -> Array1<f64>;
    /// `(u [batch], f = −∇ₓu [batch, dim])`.
    fn energy_and_force(&self, x: ArrayView2<f64>) -> (Array1<f64>, Array2<f64>);
    /// `(n_particles, d)` for particle systems, `None` otherwise.
    fn particles(&self) -> Option<(usize, usize)> {
        None
    }
    /// A short name for reports (`"dw2d"`, `"lj13"`).
    fn name(&self) -> String;
}
