//! 2D incompressible Navier–Stokes in vorticity form on the periodic square `[0, L)²`,
//! pseudo-spectral with the 2/3 dealiasing rule and an integrating-factor RK4 step.
//!
//! `ω_t + u·∇ω = ν Δω − α ω + f(x)`, `u = (∂_y ψ, −∂_x ψ)`, `−Δψ = ω`. In Fourier space the
//! linear part `L_k = −ν|k|² − α` is integrated exactly (the integrating factor `e^{L_k t}`), and
//! the advection `N(ω̂) = −(u·∇ω)^ + f̂` by classical RK4 (IF-RK4; Canuto et al., *Spectral
//! Methods*, §4.5 on dealiasing; Kassam & Trefethen 2005 for IF schemes): with `E = e^{L Δt}`,
//! `E½ = e^{L Δt/2}`,
//!
//! ```text
//! k₁ = N(ω̂ₙ)                 ω̂ₐ = E½ (ω̂ₙ + Δt/2 k₁)
//! k₂ = N(ω̂ₐ)                 ω̂_b = E½ ω̂ₙ + Δt/2 k₂
//! k₃ = N(ω̂_b)                ω̂_c = E ω̂ₙ + Δt E½ k₃
//! k₄ = N(ω̂_c)                ω̂ₙ₊₁ = E ω̂ₙ + Δt/6 (E k₁ + 2E½ (k₂ + k₃) + k₄)
//! ```
//!
//! The product `u·∇ω` is formed on the grid from four inverse transforms packed into two
//! complex ones (`u + iv`, `ω_x + iω_y`: each pair of real fields shares one FFT), and one
//! forward transform: three 2D FFTs per stage, no allocation per step. The state is kept
//! truncated to `|k_x|, |k_y| < n/3` (the 2/3 rule), which makes the scheme the Galerkin
//! truncation of the equations: the nonlinear term conserves the discrete energy and enstrophy
//! exactly, the property the budget tests check.
//!
//! Forcings on the vorticity equation: none (decaying turbulence), Kolmogorov
//! (`F = (A sin(2πk_f y/L), 0)` on the velocity, `f = −A (2πk_f/L) cos(2πk_f y/L)`), and the
//! FNO data's `f = a (sin(2π(x + y)/L) + cos(2π(x + y)/L))` (Li et al. 2021, `a = 0.1`).

use rand::Rng;
use rustfft::num_complex::Complex64;
use serde::{Deserialize, Serialize};

use super::fft2::{frequency, Fft2};
use super::grf::Grf;
use crate::{Error, Result};

/// The largest Courant number `Δt (|u|_max + |v|_max)/h` a step accepts. RK4's stability
/// interval on the imaginary axis is `|λΔt| ≤ 2√2`; the largest dealiased wavenumber is
/// `(2/3)(π/h)`, so advection is stable below `2√2 · 3/(2π) ≈ 1.35`; 1.0 leaves a margin.
pub const MAX_COURANT: f64 = 1.0;

/// The body force of the vorticity equation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Forcing {
    /// Decaying turbulence.
    None,
    /// Kolmogorov flow: velocity forcing `(A sin(2π k_f y / L), 0)`.
    Kolmogorov {
        /// Forcing wavenumber `k_f` (in units of `2π/L`).
        wavenumber: usize,
        /// Velocity forcing amplitude `A`.
        amplitude: f64,
    },
    /// The FNO Navier–Stokes data's `f = a (sin(2π(x + y)/L) + cos(2π(x + y)/L))`.
    Diagonal {
        /// Amplitude `a` (0.1 in Li et al.).
        amplitude: f64,
    },
}

/// Settings of the solver.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ns2dConfig {
    /// Grid points per side `n` (even, ≥ 8).
    pub n: usize,
    /// Side length `L`.
    pub length: f64,
    /// Kinematic viscosity `ν ≥ 0`.
    pub viscosity: f64,
    /// Linear drag `α ≥ 0` (large-scale friction of forced 2D turbulence).
    pub drag: f64,
    /// The body force.
    pub forcing: Forcing,
    /// Target Courant number of the automatic steps of [`Ns2d::advance_to`], in `(0, 1]`.
    pub cfl: f64,
}

impl Default for Ns2dConfig {
    /// The FNO / PCFM Navier–Stokes setting: `64 × 64` on `[0, 1)²`, `ν = 10⁻³`, no drag, the
    /// diagonal forcing with `a = 0.1`, Courant number 0.5.
    fn default() -> Self {
        Ns2dConfig { n: 64, length: 1.0, viscosity: 1e-3, drag: 0.0, forcing: Forcing::Diagonal { amplitude: 0.1 }, cfl: 0.5 }
    }
}

impl Ns2dConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// `InvalidArgument` naming the setting.
    pub fn validate(&self) -> Result<()> {
        if self.n < 8 || !self.n.is_multiple_of(2) {
            return Err(Error::invalid("n", format!("the Navier–Stokes grid needs an even n ≥ 8, got {}", self.n)));
        }
        if !(self.length > 0.0 && self.length.is_finite()) {
            return Err(Error::invalid("length", format!("must be positive and finite, got {}", self.length)));
        }
        if !(self.viscosity >= 0.0 && self.viscosity.is_finite() && self.drag >= 0.0 && self.drag.is_finite()) {
            return Err(Error::invalid("viscosity", format!("viscosity and drag must be finite and ≥ 0, got ν = {}, α = {}", self.viscosity, self.drag)));
        }
        if !(self.cfl > 0.0 && self.cfl <= MAX_COURANT) {
            return Err(Error::invalid("cfl", format!("the target Courant number must be in (0, {MAX_COURANT}], got {}", self.cfl)));
        }
        match self.forcing {
            Forcing::None => {}
            Forcing::Kolmogorov { wavenumber, amplitude } => {
                if wavenumber == 0 || 3 * wavenumber >= self.n || !amplitude.is_finite() {
                    return Err(Error::invalid(
                        "forcing",
                        format!("Kolmogorov forcing needs 1 ≤ k_f < n/3 (inside the dealiased band) and a finite amplitude, got k_f = {wavenumber}, A = {amplitude} on n = {}", self.n),
                    ));
                }
            }
            Forcing::Diagonal { amplitude } => {
                if !amplitude.is_finite() {
                    return Err(Error::invalid("forcing", format!("amplitude must be finite, got {amplitude}")));
                }
            }
        }
        Ok(())
    }

    /// Grid spacing `h = L/n`.
    pub fn h(&self) -> f64 {
        self.length / self.n as f64
    }

    /// Grid coordinates `x_i = iL/n`, `[n]`.
    pub fn points(&self) -> Vec<f64> {
        (0..self.n).map(|i| i as f64 * self.h()).collect()
    }

    /// The vorticity forcing `f(x_i, y_j)`, row-major `[i][j]`.
    pub fn forcing_field(&self) -> Vec<f64> {
        let (n, l) = (self.n, self.length);
        let x = self.points();
        let mut f = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                f[i * n + j] = match self.forcing {
                    Forcing::None => 0.0,
                    Forcing::Kolmogorov { wavenumber, amplitude } => {
                        let k = std::f64::consts::TAU * wavenumber as f64 / l;
                        -amplitude * k * (k * x[j]).cos()
                    }
                    Forcing::Diagonal { amplitude } => {
                        let s = std::f64::consts::TAU * (x[i] + x[j]) / l;
                        amplitude * (s.sin() + s.cos())
                    }
                };
            }
        }
        f
    }
}

/// Energy and enstrophy budget terms of the current state (integrals over the domain):
/// `dE/dt = −2νZ − 2αE + ∫ψ f`, `dZ/dt = −2νP − 2αZ + ∫ω f` (the advection conserves `E` and
/// `Z`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    /// Kinetic energy `E = ½∫|u|²`.
    pub energy: f64,
    /// Enstrophy `Z = ½∫ω²`.
    pub enstrophy: f64,
    /// Palinstrophy `P = ½∫|∇ω|²`.
    pub palinstrophy: f64,
    /// Energy input `∫ψ f = ∫u·F`.
    pub energy_input: f64,
    /// Enstrophy input `∫ω f`.
    pub enstrophy_input: f64,
}

impl Budget {
    /// `dE/dt` predicted by the budget.
    pub fn energy_rate(&self, cfg: &Ns2dConfig) -> f64 {
        -2.0 * cfg.viscosity * self.enstrophy - 2.0 * cfg.drag * self.energy + self.energy_input
    }

    /// `dZ/dt` predicted by the budget.
    pub fn enstrophy_rate(&self, cfg: &Ns2dConfig) -> f64 {
        -2.0 * cfg.viscosity * self.palinstrophy - 2.0 * cfg.drag * self.enstrophy + self.enstrophy_input
    }
}

/// The spectral operator: wavenumbers, the dealiasing mask, the forcing and the work buffers of
/// one evaluation of `N(ω̂)`.
struct Advection {
    fft: Fft2,
    kx: Vec<f64>,
    ky: Vec<f64>,
    inv_k2: Vec<f64>,
    keep: Vec<bool>,
    forcing: Vec<Complex64>,
    a: Vec<Complex64>,
    b: Vec<Complex64>,
}

impl Advection {
    /// `out = N(w) = −(u·∇ω)^ + f̂`, dealiased; returns `|u|_max + |v|_max` on the grid.
    fn eval(&mut self, w: &[Complex64], out: &mut [Complex64]) -> f64 {
        let i = Complex64::new(0.0, 1.0);
        for s in 0..w.len() {
            let psi = w[s] * self.inv_k2[s];
            // u + iv with û = i k_y ψ̂, v̂ = −i k_x ψ̂; ω_x + iω_y with i k_x ω̂, i k_y ω̂.
            self.a[s] = i * self.ky[s] * psi + self.kx[s] * psi;
            self.b[s] = i * self.kx[s] * w[s] - self.ky[s] * w[s];
        }
        self.fft.inverse(&mut self.a);
        self.fft.inverse(&mut self.b);
        let (mut umax, mut vmax) = (0.0f64, 0.0f64);
        for (a, b) in self.a.iter_mut().zip(&self.b) {
            umax = umax.max(a.re.abs());
            vmax = vmax.max(a.im.abs());
            *a = Complex64::new(-(a.re * b.re + a.im * b.im), 0.0);
        }
        self.fft.forward(&mut self.a);
        for s in 0..w.len() {
            out[s] = if self.keep[s] { self.a[s] + self.forcing[s] } else { Complex64::default() };
        }
        umax + vmax
    }
}

/// The solver: the state `ω̂` at time `t` and everything a step needs, allocated once.
pub struct Ns2d {
    cfg: Ns2dConfig,
    op: Advection,
    /// `L_k = −ν|k|² − α`.
    linear: Vec<f64>,
    w: Vec<Complex64>,
    stage: Vec<Complex64>,
    k: [Vec<Complex64>; 4],
    saved: Vec<Complex64>,
    e_full: Vec<f64>,
    e_half: Vec<f64>,
    e_dt: f64,
    t: f64,
    steps: usize,
}

impl Ns2d {
    /// Plans the transforms and builds the operator; the state starts at `ω = 0`, `t = 0`.
    ///
    /// # Errors
    /// `InvalidArgument` from [`Ns2dConfig::validate`].
    pub fn new(cfg: Ns2dConfig) -> Result<Self> {
        cfg.validate()?;
        let n = cfg.n;
        let kscale = std::f64::consts::TAU / cfg.length;
        let len = n * n;
        let (mut kx, mut ky, mut inv_k2, mut keep, mut linear) = (vec![0.0; len], vec![0.0; len], vec![0.0; len], vec![false; len], vec![0.0; len]);
        for a in 0..n {
            for b in 0..n {
                let s = a * n + b;
                // Spectra are [ky][kx] (see `fft2`).
                kx[s] = kscale * frequency(b, n);
                ky[s] = kscale * frequency(a, n);
                let k2 = kx[s] * kx[s] + ky[s] * ky[s];
                inv_k2[s] = if k2 > 0.0 { 1.0 / k2 } else { 0.0 };
                keep[s] = 3 * b.min(n - b) < n && 3 * a.min(n - a) < n;
                linear[s] = -cfg.viscosity * k2 - cfg.drag;
            }
        }
        let mut fft = Fft2::new(n);
        let mut forcing: Vec<Complex64> = cfg.forcing_field().into_iter().map(|v| Complex64::new(v, 0.0)).collect();
        fft.forward(&mut forcing);
        for (f, &k) in forcing.iter_mut().zip(&keep) {
            if !k {
                *f = Complex64::default();
            }
        }
        let zeros = || vec![Complex64::default(); len];
        Ok(Ns2d {
            cfg,
            op: Advection { fft, kx, ky, inv_k2, keep, forcing, a: zeros(), b: zeros() },
            linear,
            w: zeros(),
            stage: zeros(),
            k: [zeros(), zeros(), zeros(), zeros()],
            saved: zeros(),
            e_full: vec![1.0; len],
            e_half: vec![1.0; len],
            e_dt: 0.0,
            t: 0.0,
            steps: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &Ns2dConfig {
        &self.cfg
    }

    /// Current time.
    pub fn time(&self) -> f64 {
        self.t
    }

    /// Steps taken since the last [`Ns2d::set_vorticity`].
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Sets the state to the vorticity `ω(x_i, y_j)` (row-major `[i][j]`, `n²` values) at time
    /// `t`; modes outside the 2/3 band are dropped.
    ///
    /// # Errors
    /// `Shape` for a wrong length, `InvalidArgument` for a non-finite value or time.
    pub fn set_vorticity(&mut self, w: &[f64], t: f64) -> Result<()> {
        let n = self.cfg.n;
        if w.len() != n * n {
            return Err(Error::Shape { what: "vorticity".into(), expected: vec![n, n], got: vec![w.len()] });
        }
        if let Some(p) = w.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid("vorticity", format!("value at ({}, {}) is {}", p / n, p % n, w[p])));
        }
        if !t.is_finite() {
            return Err(Error::invalid("t", format!("must be finite, got {t}")));
        }
        for (s, v) in self.w.iter_mut().zip(w) {
            *s = Complex64::new(*v, 0.0);
        }
        self.op.fft.forward(&mut self.w);
        for (s, &k) in self.w.iter_mut().zip(&self.op.keep) {
            if !k {
                *s = Complex64::default();
            }
        }
        self.t = t;
        self.steps = 0;
        Ok(())
    }

    /// Draws the initial vorticity from `grf` and sets it at `t = 0`.
    pub fn set_random_vorticity<R: Rng + ?Sized>(&mut self, grf: &Grf, rng: &mut R) -> Result<()> {
        grf.validate()?;
        let w = grf.sample_with(&mut self.op.fft, self.cfg.length, rng);
        self.set_vorticity(&w, 0.0)
    }

    /// The vorticity on the grid, row-major `[i][j]`, into `out` (`n²` values).
    pub fn vorticity_into(&mut self, out: &mut [f64]) {
        self.stage.copy_from_slice(&self.w);
        self.op.fft.inverse(&mut self.stage);
        for (o, s) in out.iter_mut().zip(&self.stage) {
            *o = s.re;
        }
    }

    /// The vorticity on the grid, row-major `[i][j]`.
    pub fn vorticity(&mut self) -> Vec<f64> {
        let mut out = vec![0.0; self.cfg.n * self.cfg.n];
        self.vorticity_into(&mut out);
        out
    }

    /// Energy, enstrophy and their budget terms (Parseval on the stored spectrum).
    pub fn budget(&self) -> Budget {
        let n = self.cfg.n as f64;
        let norm = self.cfg.length * self.cfg.length / (n * n * n * n);
        let mut b = Budget { energy: 0.0, enstrophy: 0.0, palinstrophy: 0.0, energy_input: 0.0, enstrophy_input: 0.0 };
        for s in 0..self.w.len() {
            let (w, f, inv) = (self.w[s], self.op.forcing[s], self.op.inv_k2[s]);
            let w2 = w.norm_sqr();
            let k2 = self.op.kx[s] * self.op.kx[s] + self.op.ky[s] * self.op.ky[s];
            b.energy += 0.5 * w2 * inv;
            b.enstrophy += 0.5 * w2;
            b.palinstrophy += 0.5 * w2 * k2;
            b.energy_input += (w * f.conj()).re * inv;
            b.enstrophy_input += (w * f.conj()).re;
        }
        b.energy *= norm;
        b.enstrophy *= norm;
        b.palinstrophy *= norm;
        b.energy_input *= norm;
        b.enstrophy_input *= norm;
        b
    }

    /// `|u|_max + |v|_max` of the current state (one evaluation of the advection).
    pub fn speed(&mut self) -> f64 {
        self.op.eval(&self.w, &mut self.k[0])
    }

    /// One IF-RK4 step of size `dt > 0`.
    ///
    /// # Errors
    /// [`Error::Unstable`] when `dt (|u|_max + |v|_max)/h > MAX_COURANT` at the start of the
    /// step (the state is left unchanged); `NonFinite` if the new state is not finite.
    pub fn step(&mut self, dt: f64) -> Result<()> {
        if !(dt > 0.0 && dt.is_finite()) {
            return Err(Error::invalid("dt", format!("must be positive and finite, got {dt}")));
        }
        if dt != self.e_dt {
            for s in 0..self.linear.len() {
                self.e_full[s] = (self.linear[s] * dt).exp();
                self.e_half[s] = (self.linear[s] * 0.5 * dt).exp();
            }
            self.e_dt = dt;
        }
        let speed = self.op.eval(&self.w, &mut self.k[0]);
        let courant = dt * speed / self.cfg.h();
        if courant > MAX_COURANT {
            return Err(Error::Unstable { system: "ns2d".into(), t: self.t, courant, limit: MAX_COURANT });
        }
        let (w, st, eh, ef) = (&self.w, &mut self.stage, &self.e_half, &self.e_full);
        let [k1, k2, k3, k4] = &mut self.k;
        for s in 0..w.len() {
            st[s] = (w[s] + k1[s] * (0.5 * dt)) * eh[s];
        }
        self.op.eval(st, k2);
        for s in 0..w.len() {
            st[s] = w[s] * eh[s] + k2[s] * (0.5 * dt);
        }
        self.op.eval(st, k3);
        for s in 0..w.len() {
            st[s] = w[s] * ef[s] + k3[s] * (dt * eh[s]);
        }
        self.op.eval(st, k4);
        let mut finite = true;
        for s in 0..self.w.len() {
            let v = self.w[s] * ef[s] + (k1[s] * ef[s] + (k2[s] + k3[s]) * (2.0 * eh[s]) + k4[s]) * (dt / 6.0);
            finite &= v.re.is_finite() && v.im.is_finite();
            self.w[s] = v;
        }
        if !finite {
            return Err(Error::NonFinite { what: "vorticity", step: self.steps, t: self.t });
        }
        self.t += dt;
        self.steps += 1;
        Ok(())
    }

    /// Advances to `t_end` in equal steps sized for the target Courant number from the current
    /// speed; if the flow speeds up so that a step would exceed [`MAX_COURANT`], the interval
    /// restarts with twice as many steps (up to 6 times). Returns the number of steps.
    ///
    /// # Errors
    /// `InvalidArgument` for `t_end` before the current time; [`Error::Unstable`] if halving
    /// the step 6 times does not help; `NonFinite`.
    pub fn advance_to(&mut self, t_end: f64) -> Result<usize> {
        let span = t_end - self.t;
        if !(span >= 0.0 && t_end.is_finite()) {
            return Err(Error::invalid("t_end", format!("must be finite and not before the current time {}, got {t_end}", self.t)));
        }
        if span == 0.0 {
            return Ok(0);
        }
        let speed = self.speed();
        let mut m = ((span * speed / (self.cfg.cfl * self.cfg.h())).ceil() as usize).max(1);
        self.saved.copy_from_slice(&self.w);
        let (t0, steps0) = (self.t, self.steps);
        for attempt in 0..7 {
            let dt = span / m as f64;
            let mut result = Ok(());
            for _ in 0..m {
                result = self.step(dt);
                if result.is_err() {
                    break;
                }
            }
            match result {
                Ok(()) => {
                    self.t = t_end;
                    return Ok(m);
                }
                Err(Error::Unstable { .. }) if attempt < 6 => {
                    self.w.copy_from_slice(&self.saved);
                    self.t = t0;
                    self.steps = steps0;
                    m *= 2;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Vorticity frames `[T, n, n]` (flat) at `times` (non-decreasing, from the current time).
    ///
    /// # Errors
    /// As [`Ns2d::advance_to`].
    pub fn frames(&mut self, times: &[f64]) -> Result<Vec<f64>> {
        let nn = self.cfg.n * self.cfg.n;
        let mut out = vec![0.0; times.len() * nn];
        for (k, &t) in times.iter().enumerate() {
            self.advance_to(t)?;
            self.vorticity_into(&mut out[k * nn..(k + 1) * nn]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::f64::consts::TAU;

    fn cfg(n: usize, viscosity: f64, forcing: Forcing) -> Ns2dConfig {
        Ns2dConfig { n, length: TAU, viscosity, drag: 0.0, forcing, cfl: 0.5 }
    }

    /// The advection term against its closed form. With `ω = sin x + cos 2y` on `[0, 2π)²`:
    /// `ψ = sin x + cos(2y)/4`, `u = −sin(2y)/2`, `v = −cos x`, so
    /// `u·∇ω = −sin(2y) cos(x)/2 + 2 cos x sin 2y = 1.5 cos x sin 2y`.
    #[test]
    fn advection_matches_its_closed_form() {
        let c = cfg(16, 0.0, Forcing::None);
        let mut ns = Ns2d::new(c).unwrap();
        let x = c.points();
        let n = c.n;
        let w: Vec<f64> = (0..n * n).map(|p| x[p / n].sin() + (2.0 * x[p % n]).cos()).collect();
        ns.set_vorticity(&w, 0.0).unwrap();
        let speed = ns.speed();
        let mut nl = ns.k[0].clone();
        ns.op.fft.inverse(&mut nl);
        for p in 0..n * n {
            let exact = -1.5 * x[p / n].cos() * (2.0 * x[p % n]).sin();
            assert!((nl[p].re - exact).abs() < 1e-12 && nl[p].im.abs() < 1e-12, "at {p}: {} vs {exact}", nl[p]);
        }
        // max|u| = 1/2, max|v| = 1 (both reached on the grid).
        assert!((speed - 1.5).abs() < 1e-12, "speed {speed}");
    }

    /// Taylor–Green: `ω = 2 sin x sin y e^{−2νt}` is an exact solution (its advection vanishes),
    /// so IF-RK4, which integrates the viscous part exactly, reproduces it to round-off.
    #[test]
    fn taylor_green_decays_exactly() {
        let nu = 0.05;
        let c = cfg(32, nu, Forcing::None);
        let x = c.points();
        let n = c.n;
        let tg = |t: f64| -> Vec<f64> { (0..n * n).map(|p| 2.0 * x[p / n].sin() * x[p % n].sin() * (-2.0 * nu * t).exp()).collect() };
        let mut ns = Ns2d::new(c).unwrap();
        ns.set_vorticity(&tg(0.0), 0.0).unwrap();
        let frames = ns.frames(&[0.5, 2.0]).unwrap();
        for (k, t) in [0.5, 2.0].into_iter().enumerate() {
            let exact = tg(t);
            let err = frames[k * n * n..(k + 1) * n * n].iter().zip(&exact).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 1e-12, "t = {t}: max error {err}");
        }
        let b = ns.budget();
        // E = ½∫|u|² with |u|² = (sin²x cos²y + cos²x sin²y) e^{−4νt}: E = π² e^{−4νt}.
        let e_exact = std::f64::consts::PI.powi(2) * (-4.0 * nu * 2.0f64).exp();
        assert!((b.energy / e_exact - 1.0).abs() < 1e-12, "energy {} vs {e_exact}", b.energy);
    }

    /// A random inviscid field: the dealiased advection conserves energy and enstrophy, so
    /// both drift only by the RK4 time error — small, and falling ≈ 16× when the step halves.
    #[test]
    fn inviscid_flow_conserves_energy_and_enstrophy() {
        let grf = Grf { sigma: 20.0, tau: 3.0, alpha: 2.5, zero_mean: true };
        let drift = |cfl: f64| {
            let c = Ns2dConfig { cfl, ..cfg(32, 0.0, Forcing::None) };
            let mut ns = Ns2d::new(c).unwrap();
            ns.set_random_vorticity(&grf, &mut rand::rngs::StdRng::seed_from_u64(1)).unwrap();
            let (b0, w0) = (ns.budget(), ns.vorticity());
            ns.advance_to(2.0).unwrap();
            let (b1, w1) = (ns.budget(), ns.vorticity());
            // The flow did evolve: the vorticity moved by a sizeable fraction of itself.
            let moved = w0.iter().zip(&w1).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt() / w0.iter().map(|a| a * a).sum::<f64>().sqrt();
            assert!(moved > 0.1, "relative change {moved}");
            ((b1.energy / b0.energy - 1.0).abs(), (b1.enstrophy / b0.enstrophy - 1.0).abs())
        };
        let ((e1, z1), (e2, z2)) = (drift(0.25), drift(0.125));
        assert!(e1 < 1e-7 && z1 < 1e-6, "drifts {e1:e} (energy), {z1:e} (enstrophy) at Courant 0.25");
        assert!(e1 / e2 > 10.0 && z1 / z2 > 10.0, "halving the step: energy {e1:e} -> {e2:e}, enstrophy {z1:e} -> {z2:e}");
    }

    /// Viscous, forced, with drag: the rates of energy and enstrophy (central differences of
    /// the solution over ±δ) match the budgets `dE/dt = −2νZ − 2αE + ∫ψf`,
    /// `dZ/dt = −2νP − 2αZ + ∫ωf` to the difference's O(δ²).
    #[test]
    fn energy_and_enstrophy_budgets_close() {
        let mut c = cfg(32, 0.02, Forcing::Kolmogorov { wavenumber: 2, amplitude: 0.5 });
        c.drag = 0.1;
        let grf = Grf { sigma: 20.0, tau: 3.0, alpha: 2.5, zero_mean: true };
        let mut ns = Ns2d::new(c).unwrap();
        ns.set_random_vorticity(&grf, &mut rand::rngs::StdRng::seed_from_u64(2)).unwrap();
        ns.advance_to(0.3).unwrap();
        let w = ns.vorticity();
        let delta = 2e-3;
        // The budget at 0, δ and 2δ (8 steps each), and the second-order one-sided difference
        // f'(0) ≈ (−3f(0) + 4f(δ) − f(2δ)) / 2δ.
        let at = |t: f64| {
            let mut s = Ns2d::new(c).unwrap();
            s.set_vorticity(&w, 0.0).unwrap();
            if t > 0.0 {
                for _ in 0..8 {
                    s.step(t / 8.0).unwrap();
                }
            }
            s.budget()
        };
        let (mid, b1, b2) = (at(0.0), at(delta), at(2.0 * delta));
        let de = (-3.0 * mid.energy + 4.0 * b1.energy - b2.energy) / (2.0 * delta);
        let dz = (-3.0 * mid.enstrophy + 4.0 * b1.enstrophy - b2.enstrophy) / (2.0 * delta);
        let (pe, pz) = (mid.energy_rate(&c), mid.enstrophy_rate(&c));
        assert!((de - pe).abs() < 1e-4 * pe.abs().max(mid.energy), "dE/dt {de} vs budget {pe}");
        assert!((dz - pz).abs() < 1e-4 * pz.abs().max(mid.enstrophy), "dZ/dt {dz} vs budget {pz}");
        // The terms are not trivially zero.
        assert!(mid.energy_input.abs() > 0.0 && mid.palinstrophy > 0.0);
    }

    /// IF-RK4 is fourth order: halving the step cuts the error against a fine reference ≈ 16×.
    #[test]
    fn step_is_fourth_order() {
        let c = cfg(32, 0.01, Forcing::Diagonal { amplitude: 0.5 });
        let grf = Grf { sigma: 20.0, tau: 3.0, alpha: 2.5, zero_mean: true };
        let mut ns = Ns2d::new(c).unwrap();
        ns.set_random_vorticity(&grf, &mut rand::rngs::StdRng::seed_from_u64(4)).unwrap();
        let w0 = ns.vorticity();
        let run = |m: usize| {
            let mut s = Ns2d::new(c).unwrap();
            s.set_vorticity(&w0, 0.0).unwrap();
            for _ in 0..m {
                s.step(0.4 / m as f64).unwrap();
            }
            s.vorticity()
        };
        let reference = run(256);
        let err = |m: usize| run(m).iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let (e1, e2) = (err(8), err(16));
        let order = (e1 / e2).log2();
        assert!((3.7..4.4).contains(&order), "observed order {order} (errors {e1:e}, {e2:e})");
    }

    /// A step over the CFL limit is refused before it is taken; bad settings are errors.
    #[test]
    fn unstable_steps_and_bad_settings_are_errors() {
        let c = cfg(16, 0.0, Forcing::None);
        let mut ns = Ns2d::new(c).unwrap();
        let x = c.points();
        let w: Vec<f64> = (0..256).map(|p| 10.0 * (x[p / 16].sin() + (2.0 * x[p % 16]).cos())).collect();
        ns.set_vorticity(&w, 0.0).unwrap();
        let before = ns.vorticity();
        // speed 15, h = 2π/16: Courant = 15 dt / h > 1 for dt > 0.026.
        assert!(matches!(ns.step(0.1), Err(Error::Unstable { courant, .. }) if courant > 1.0));
        assert_eq!(ns.vorticity(), before);
        assert!(Ns2d::new(Ns2dConfig { n: 7, ..c }).is_err());
        assert!(Ns2d::new(Ns2dConfig { viscosity: -1.0, ..c }).is_err());
        assert!(Ns2d::new(Ns2dConfig { forcing: Forcing::Kolmogorov { wavenumber: 6, amplitude: 1.0 }, ..c }).is_err());
        assert!(matches!(ns.set_vorticity(&[0.0; 10], 0.0), Err(Error::Shape { .. })));
        let mut bad = w.clone();
        bad[3] = f64::NAN;
        assert!(ns.set_vorticity(&bad, 0.0).is_err());
    }
}
