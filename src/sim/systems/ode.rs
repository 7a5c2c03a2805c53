//! Small ODE systems with hand-written Jacobians.
//!
//! Each is a [`DenseSystem`]: it writes its full state Jacobian `∂f/∂y`
//! (`n × n`) and parameter Jacobian `∂f/∂p` (`n × m`), row-major, and the four
//! products of [`System`] follow from them.

use serde::{Deserialize, Serialize};

use crate::sim::system::{non_negative, positive, System};
use crate::Result;

/// A small system that writes its Jacobians as dense row-major blocks; its
/// [`System`] impl gets the four products from them with `dense_products!()`.
pub trait DenseSystem: System {
    /// `jac[i·n + j] = ∂f_i/∂y_j`.
    fn jac(&self, t: f64, y: &[f64], p: &[f64], jac: &mut [f64]);
    /// `jac[i·m + k] = ∂f_i/∂p_k`.
    fn jac_p(&self, t: f64, y: &[f64], p: &[f64], jac: &mut [f64]);
}

/// `out = A v` (`transpose = false`) or `Aᵀ v`, `A` row-major `rows × cols`.
pub fn matvec(a: &[f64], rows: usize, cols: usize, v: &[f64], out: &mut [f64], transpose: bool) {
    if transpose {
        out[..cols].fill(0.0);
        for i in 0..rows {
            for j in 0..cols {
                out[j] += a[i * cols + j] * v[i];
            }
        }
    } else {
        for i in 0..rows {
            out[i] = (0..cols).map(|j| a[i * cols + j] * v[j]).sum();
        }
    }
}

/// Runs `body` on a zeroed scratch buffer of `len` values: on the stack up to
/// 64 (every library system), on the heap beyond, so any size works.
pub fn with_scratch<R>(len: usize, body: impl FnOnce(&mut [f64]) -> R) -> R {
    if len <= 64 {
        let mut a = [0.0; 64];
        body(&mut a[..len])
    } else {
        body(&mut vec![0.0; len])
    }
}

/// The four [`System`] products of a [`DenseSystem`], for use inside its `impl System`.
/// Any size: the Jacobians live on the stack up to 64 entries, on the heap beyond
/// (a closure-defined [`crate::sim::ClosureSystem`] needs no Jacobian at all).
#[macro_export]
macro_rules! dense_products {
    () => {
        fn jvp(&self, t: f64, y: &[f64], p: &[f64], v: &[f64], out: &mut [f64]) {
            let n = y.len();
            $crate::sim::systems::with_scratch(n * n, |a| {
                $crate::sim::systems::DenseSystem::jac(self, t, y, p, a);
                $crate::sim::systems::matvec(a, n, n, v, out, false);
            })
        }
        fn vjp(&self, t: f64, y: &[f64], p: &[f64], w: &[f64], out: &mut [f64]) {
            let n = y.len();
            $crate::sim::systems::with_scratch(n * n, |a| {
                $crate::sim::systems::DenseSystem::jac(self, t, y, p, a);
                $crate::sim::systems::matvec(a, n, n, w, out, true);
            })
        }
        fn param_jvp(&self, t: f64, y: &[f64], p: &[f64], v: &[f64], out: &mut [f64]) {
            let (n, m) = (y.len(), p.len());
            $crate::sim::systems::with_scratch(n * m, |a| {
                $crate::sim::systems::DenseSystem::jac_p(self, t, y, p, a);
                $crate::sim::systems::matvec(a, n, m, v, out, false);
            })
        }
        fn param_vjp(&self, t: f64, y: &[f64], p: &[f64], w: &[f64], out: &mut [f64]) {
            let (n, m) = (y.len(), p.len());
            $crate::sim::systems::with_scratch(n * m, |a| {
                $crate::sim::systems::DenseSystem::jac_p(self, t, y, p, a);
                $crate::sim::systems::matvec(a, n, m, w, out, true);
            })
        }
    };
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Lotka–Volterra predator–prey: `ẋ = αx − βxz`, `ż = δxz − γz`, state `[x, z]`,
/// `p = [α, β, δ, γ]` (defaults 1.5, 1, 1, 3; `y₀ = [1, 1]`, as in the scipy
/// `solve_ivp` example). `V = δx − γ ln x + βz − α ln z` is conserved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LotkaVolterra {
    /// `[α, β, δ, γ]`.
    pub p: [f64; 4],
    /// `[x₀, z₀]`.
    pub y0: [f64; 2],
}

impl Default for LotkaVolterra {
    fn default() -> Self {
        LotkaVolterra { p: [1.5, 1.0, 1.0, 3.0], y0: [1.0, 1.0] }
    }
}

impl LotkaVolterra {
    /// The conserved quantity `V(x, z) = δx − γ ln x + βz − α ln z`.
    pub fn invariant(p: &[f64], y: &[f64]) -> f64 {
        p[2] * y[0] - p[3] * y[0].ln() + p[1] * y[1] - p[0] * y[1].ln()
    }
}

impl System for LotkaVolterra {
    fn name(&self) -> String {
        "lotka_volterra".into()
    }
    fn dim(&self) -> usize {
        2
    }
    fn param_names(&self) -> Vec<String> {
        names(&["alpha", "beta", "delta", "gamma"])
    }
    fn params(&self) -> Vec<f64> {
        self.p.to_vec()
    }
    fn initial_state(&self) -> Vec<f64> {
        self.y0.to_vec()
    }
    fn validate(&self, p: &[f64]) -> Result<()> {
        for (name, v) in ["alpha", "beta", "delta", "gamma"].iter().zip(p) {
            non_negative("lotka_volterra", name, *v)?;
        }
        Ok(())
    }
    fn rhs(&self, _t: f64, y: &[f64], p: &[f64], dy: &mut [f64]) {
        dy[0] = p[0] * y[0] - p[1] * y[0] * y[1];
        dy[1] = p[2] * y[0] * y[1] - p[3] * y[1];
    }
    dense_products!();
}

impl DenseSystem for LotkaVolterra {
    fn jac(&self, _t: f64, y: &[f64], p: &[f64], j: &mut [f64]) {
        j.copy_from_slice(&[p[0] - p[1] * y[1], -p[1] * y[0], p[2] * y[1], p[2] * y[0] - p[3]]);
    }
    fn jac_p(&self, _t: f64, y: &[f64], _p: &[f64], j: &mut [f64]) {
        j.copy_from_slice(&[y[0], -y[0] * y[1], 0.0, 0.0, 0.0, 0.0, y[0] * y[1], -y[1]]);
    }
}

/// Robertson's stiff chemical kinetics (Robertson 1966; Hairer & Wanner II, §IV.1):
/// `ẏ₁ = −k₁y₁ + k₃y₂y₃`, `ẏ₂ = k₁y₁ − k₂y₂² − k₃y₂y₃`, `ẏ₃ = k₂y₂²`,
/// `p = [k₁, k₂, k₃] = [0.04, 3·10⁷, 10⁴]`, `y₀ = [1, 0, 0]`. `y₁ + y₂ + y₃` is conserved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Robertson {
    /// `[k₁, k₂, k₃]`.
    pub p: [f64; 3],
    /// Initial concentrations.
    pub y0: [f64; 3],
}

impl Default for Robertson {
    fn default() -> Self {
        Robertson { p: [0.04, 3.0e7, 1.0e4], y0: [1.0, 0.0, 0.0] }
    }
}

impl System for Robertson {
    fn name(&self) -> String {
        "robertson".into()
    }
    fn dim(&self) -> usize {
        3
    }
    fn param_names(&self) -> Vec<String> {
        names(&["k1", "k2", "k3"])
    }
    fn params(&self) -> Vec<f64> {
        self.p.to_vec()
    }
    fn initial_state(&self) -> Vec<f64> {
        self.y0.to_vec()
    }
    fn validate(&self, p: &[f64]) -> Result<()> {
        for (name, v) in ["k1", "k2", "k3"].iter().zip(p) {
            non_negative("robertson", name, *v)?;
        }
        Ok(())
    }
    fn rhs(&self, _t: f64, y: &[f64], p: &[f64], dy: &mut [f64]) {
        let (r1, r2, r3) = (p[0] * y[0], p[1] * y[1] * y[1], p[2] * y[1] * y[2]);
        dy[0] = -r1 + r3;
        dy[1] = r1 - r2 - r3;
        dy[2] = r2;
    }
    dense_products!();
}

impl DenseSystem for Robertson {
    fn jac(&self, _t: f64, y: &[f64], p: &[f64], j: &mut [f64]) {
        let (a, b, c) = (p[0], 2.0 * p[1] * y[1], p[2]);
        j.copy_from_slice(&[-a, c * y[2], c * y[1], a, -b - c * y[2], -c * y[1], 0.0, b, 0.0]);
    }
    fn jac_p(&self, _t: f64, y: &[f64], _p: &[f64], j: &mut [f64]) {
        let (s2, s3) = (y[1] * y[1], y[1] * y[2]);
        j.copy_from_slice(&[-y[0], 0.0, s3, y[0], -s2, -s3, 0.0, s2, 0.0]);
    }
}

/// Van der Pol oscillator, `ẏ₁ = y₂`, `ẏ₂ = μ(1 − y₁²)y₂ − y₁` (the unscaled form of
/// MATLAB's `vdp1000`), `p = [μ]` (default 1000: very stiff; any `μ ≥ 0`), `y₀ = [2, 0]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VanDerPol {
    /// `μ`.
    pub mu: f64,
    /// Initial state.
    pub y0: [f64; 2],
}

impl Default for VanDerPol {
    fn default() -> Self {
        VanDerPol { mu: 1000.0, y0: [2.0, 0.0] }
    }
}

impl VanDerPol {
    /// The oscillator with stiffness `mu` and the default `y₀`.
    pub fn new(mu: f64) -> Self {
        VanDerPol { mu, ..Default::default() }
    }
}

impl System for VanDerPol {
    fn name(&self) -> String {
        "van_der_pol".into()
    }
    fn dim(&self) -> usize {
        2
    }
    fn param_names(&self) -> Vec<String> {
        names(&["mu"])
    }
    fn params(&self) -> Vec<f64> {
        vec![self.mu]
    }
    fn initial_state(&self) -> Vec<f64> {
        self.y0.to_vec()
    }
    fn validate(&self, p: &[f64]) -> Result<()> {
        non_negative("van_der_pol", "mu", p[0])
    }
    fn rhs(&self, _t: f64, y: &[f64], p: &[f64], dy: &mut [f64]) {
        dy[0] = y[1];
        dy[1] = p[0] * (1.0 - y[0] * y[0]) * y[1] - y[0];
    }
    dense_products!();
}

impl DenseSystem for VanDerPol {
    fn jac(&self, _t: f64, y: &[f64], p: &[f64], j: &mut [f64]) {
        j.copy_from_slice(&[0.0, 1.0, -2.0 * p[0] * y[0] * y[1] - 1.0, p[0] * (1.0 - y[0] * y[0])]);
    }
    fn jac_p(&self, _t: f64, y: &[f64], _p: &[f64], j: &mut [f64]) {
        j.copy_from_slice(&[0.0, (1.0 - y[0] * y[0]) * y[1]]);
    }
}

/// Lorenz 1963: `ẋ = σ(y − x)`, `ẏ = x(ρ − z) − y`, `ż = xy − βz`,
/// `p = [σ, ρ, β] = [10, 28, 8/3]`, `y₀ = [1, 1, 1]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lorenz {
    /// `[σ, ρ, β]`.
    pub p: [f64; 3],
    /// Initial state.
    pub y0: [f64; 3],
}

impl Default for Lorenz {
    fn default() -> Self {
        Lorenz { p: [10.0, 28.0, 8.0 / 3.0], y0: [1.0, 1.0, 1.0] }
    }
}

impl System for Lorenz {
    fn name(&self) -> String {
        "lorenz".into()
    }
    fn dim(&self) -> usize {
        3
    }
    fn param_names(&self) -> Vec<String> {
        names(&["sigma", "rho", "beta"])
    }
    fn params(&self) -> Vec<f64> {
        self.p.to_vec()
    }
    fn initial_state(&self) -> Vec<f64> {
        self.y0.to_vec()
    }
    fn rhs(&self, _t: f64, y: &[f64], p: &[f64], dy: &mut [f64]) {
        dy[0] = p[0] * (y[1] - y[0]);
        dy[1] = y[0] * (p[1] - y[2]) - y[1];
        dy[2] = y[0] * y[1] - p[2] * y[2];
    }
    dense_products!();
}

impl DenseSystem for Lorenz {
    fn jac(&self, _t: f64, y: &[f64], p: &[f64], j: &mut [f64]) {
        j.copy_from_slice(&[-p[0], p[0], 0.0, p[1] - y[2], -1.0, -y[0], y[1], y[0], -p[2]]);
    }
    fn jac_p(&self, _t: f64, y: &[f64], _p: &[f64], j: &mut [f64]) {
        j.copy_from_slice(&[y[1] - y[0], 0.0, 0.0, 0.0, y[0], 0.0, 0.0, 0.0, -y[2]]);
    }
}

/// Damped pendulum, `θ̈ = −(g/L) sin θ − c θ̇`, state `[θ, θ̇]`,
/// `p = [g, L, c] = [9.81 m/s², 1 m, 0.1 1/s]`, `y₀ = [1 rad, 0]`.
/// The energy `½θ̇² − (g/L) cos θ` decreases at rate `c θ̇²`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pendulum {
    /// `[g, L, c]`.
    pub p: [f64; 3],
    /// Initial state.
    pub y0: [f64; 2],
}

impl Default for Pendulum {
    fn default() -> Self {
        Pendulum { p: [9.81, 1.0, 0.1], y0: [1.0, 0.0] }
    }
}

impl System for Pendulum {
    fn name(&self) -> String {
        "pendulum".into()
    }
    fn dim(&self) -> usize {
        2
    }
    fn param_names(&self) -> Vec<String> {
        names(&["g", "length", "damping"])
    }
    fn params(&self) -> Vec<f64> {
        self.p.to_vec()
    }
    fn initial_state(&self) -> Vec<f64> {
        self.y0.to_vec()
    }
    fn validate(&self, p: &[f64]) -> Result<()> {
        positive("pendulum", "length", p[1])?;
        non_negative("pendulum", "damping", p[2])
    }
    fn rhs(&self, _t: f64, y: &[f64], p: &[f64], dy: &mut [f64]) {
        dy[0] = y[1];
        dy[1] = -(p[0] / p[1]) * y[0].sin() - p[2] * y[1];
    }
    dense_products!();
}

impl DenseSystem for Pendulum {
    fn jac(&self, _t: f64, y: &[f64], p: &[f64], j: &mut [f64]) {
        j.copy_from_slice(&[0.0, 1.0, -(p[0] / p[1]) * y[0].cos(), -p[2]]);
    }
    fn jac_p(&self, _t: f64, y: &[f64], p: &[f64], j: &mut [f64]) {
        let s = y[0].sin();
        j.copy_from_slice(&[0.0, 0.0, 0.0, -s / p[1], p[0] * s / (p[1] * p[1]), -y[1]]);
    }
}

/// The linear damped oscillator `ẏ₁ = y₂`, `ẏ₂ = −ω²y₁ − 2ζωy₂`, `p = [ω, ζ] = [2, 0.1]`,
/// `y₀ = [1, 0]`: a linear system with a closed-form solution ([`LinearOscillator::exact`]),
/// the reference for every method and gradient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearOscillator {
    /// `[ω, ζ]`.
    pub p: [f64; 2],
    /// Initial state.
    pub y0: [f64; 2],
}

impl Default for LinearOscillator {
    fn default() -> Self {
        LinearOscillator { p: [2.0, 0.1], y0: [1.0, 0.0] }
    }
}

impl LinearOscillator {
    /// The exact underdamped (`0 ≤ ζ < 1`) solution at `t` from `y₀` at 0:
    /// `y₁ = e^{−ζωt}(a cos ω_d t + b sin ω_d t)`, `ω_d = ω√(1−ζ²)`, `a = y₁(0)`,
    /// `b = (y₂(0) + ζωa)/ω_d`, and `y₂ = ẏ₁`.
    pub fn exact(p: &[f64], y0: &[f64], t: f64) -> [f64; 2] {
        let (w, z) = (p[0], p[1]);
        let wd = w * (1.0 - z * z).sqrt();
        let (a, b) = (y0[0], (y0[1] + z * w * y0[0]) / wd);
        let (e, c, s) = ((-z * w * t).exp(), (wd * t).cos(), (wd * t).sin());
        let y1 = e * (a * c + b * s);
        let y2 = -z * w * y1 + e * (-a * wd * s + b * wd * c);
        [y1, y2]
    }
}

impl System for LinearOscillator {
    fn name(&self) -> String {
        "linear_oscillator".into()
    }
    fn dim(&self) -> usize {
        2
    }
    fn param_names(&self) -> Vec<String> {
        names(&["omega", "zeta"])
    }
    fn params(&self) -> Vec<f64> {
        self.p.to_vec()
    }
    fn initial_state(&self) -> Vec<f64> {
        self.y0.to_vec()
    }
    fn validate(&self, p: &[f64]) -> Result<()> {
        positive("linear_oscillator", "omega", p[0])?;
        non_negative("linear_oscillator", "zeta", p[1])
    }
    fn rhs(&self, _t: f64, y: &[f64], p: &[f64], dy: &mut [f64]) {
        dy[0] = y[1];
        dy[1] = -p[0] * p[0] * y[0] - 2.0 * p[1] * p[0] * y[1];
    }
    dense_products!();
}

impl DenseSystem for LinearOscillator {
    fn jac(&self, _t: f64, _y: &[f64], p: &[f64], j: &mut [f64]) {
        j.copy_from_slice(&[0.0, 1.0, -p[0] * p[0], -2.0 * p[1] * p[0]]);
    }
    fn jac_p(&self, _t: f64, y: &[f64], p: &[f64], j: &mut [f64]) {
        j.copy_from_slice(&[0.0, 0.0, -2.0 * p[0] * y[0] - 2.0 * p[1] * y[1], -2.0 * p[0] * y[1]]);
    }
}
