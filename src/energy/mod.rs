//! Potential energies of physical systems, batched: `x: [batch, dim]` in, `u: [batch]` and
//! forces `f = −∇u: [batch, dim]` out, as ndarray arrays so that simulation codes can call
//! them directly. The targets of [`crate::boltzmann`] and of the stochastic blocks of
//! [`crate::flows`]; energies written once on burn tensors ([`TensorEnergy`]) get their forces
//! by automatic differentiation ([`Autodiff`]), checked by [`check_forces`].

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
    /// Checks the energy's own settings (particle count, spatial dimension) before any
    /// evaluation; the default accepts. The samplers and trainers call it through
    /// [`evaluate`], so a bad setting is an error, not a panic inside the pair loop.
    ///
    /// # Errors
    /// `InvalidArgument` naming the setting.
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

/// `(u [batch], f [batch, dim])` of `energy` at `x: [batch, dim]`, checked: the energy's
/// settings ([`Energy::validate`]), the width of `x`, and the lengths the energy returns (a
/// user energy that returns the wrong number of values is named here instead of panicking
/// later in reweighting).
///
/// # Errors
/// `InvalidArgument` from `validate`; `Shape` for a wrong input width or output length.
pub fn evaluate(energy: &dyn Energy, x: ArrayView2<f64>) -> Result<(Array1<f64>, Array2<f64>)> {
    check_input(energy, x)?;
    let (u, f) = energy.energy_and_force(x);
    check_output(energy, x, Some(&u), Some(&f))?;
    Ok((u, f))
}

/// `u [batch]` of `energy` at `x: [batch, dim]`, checked as in [`evaluate`].
///
/// # Errors
/// As [`evaluate`].
pub fn evaluate_energy(energy: &dyn Energy, x: ArrayView2<f64>) -> Result<Array1<f64>> {
    check_input(energy, x)?;
    let u = energy.energy(x);
    check_output(energy, x, Some(&u), None)?;
    Ok(u)
}

fn check_input(energy: &dyn Energy, x: ArrayView2<f64>) -> Result<()> {
    energy.validate()?;
    if x.ncols() != energy.dim() {
        return Err(Error::Shape {
            what: format!("configurations for energy `{}`", energy.name()),
            expected: vec![x.nrows(), energy.dim()],
            got: vec![x.nrows(), x.ncols()],
        });
    }
    Ok(())
}

fn check_output(energy: &dyn Energy, x: ArrayView2<f64>, u: Option<&Array1<f64>>, f: Option<&Array2<f64>>) -> Result<()> {
    if let Some(u) = u {
        if u.len() != x.nrows() {
            return Err(Error::Shape { what: format!("energies returned by `{}`", energy.name()), expected: vec![x.nrows()], got: vec![u.len()] });
        }
    }
    if let Some(f) = f {
        if f.dim() != x.dim() {
            return Err(Error::Shape {
                what: format!("forces returned by `{}`", energy.name()),
                expected: vec![x.nrows(), x.ncols()],
                got: f.shape().to_vec(),
            });
        }
    }
    Ok(())
}

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

mod autodiff;
pub use autodiff::{check_forces, Autodiff, TensorEnergy};

/// Rows at or above this batch size are evaluated in parallel (rayon).
const PAR_ROWS: usize = 64;

impl<E: Energy + ?Sized> Energy for Box<E> {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn energy(&self, x: ArrayView2<f64>) -> Array1<f64> {
        (**self).energy(x)
    }
    fn energy_and_force(&self, x: ArrayView2<f64>) -> (Array1<f64>, Array2<f64>) {
        (**self).energy_and_force(x)
    }
    fn particles(&self) -> Option<(usize, usize)> {
        (**self).particles()
    }
    fn name(&self) -> String {
        (**self).name()
    }
    fn validate(&self) -> Result<()> {
        (**self).validate()
    }
}

/// Evaluates `row_fn(x_row, force_row) -> u` over the rows, in parallel for large batches.
/// The force row is zeroed before the call.
fn per_row(x: ArrayView2<f64>, row_fn: impl Fn(&[f64], &mut [f64]) -> f64 + Sync) -> (Array1<f64>, Array2<f64>) {
    let (b, d) = x.dim();
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().expect("standard layout");
    let mut f = vec![0.0; b * d];
    let mut u = vec![0.0; b];
    if b >= PAR_ROWS {
        u.par_iter_mut().zip(f.par_chunks_mut(d)).zip(xs.par_chunks(d)).for_each(|((u, f), x)| *u = row_fn(x, f));
    } else {
        u.iter_mut().zip(f.chunks_mut(d)).zip(xs.chunks(d)).for_each(|((u, f), x)| *u = row_fn(x, f));
    }
    (Array1::from(u), Array2::from_shape_vec((b, d), f).expect("shape"))
}

/// The 2D double well `u(x) = a x₀ + b x₀² + c x₀⁴ + ½ x₁²`, the standard Boltzmann-generator
/// test system. Defaults `a = 0, b = −4, c = 1`: minima at `x₀ = ±√2` with `u = −4`, barrier
/// `u = 0` at `x₀ = 0` (4 kT at β = 1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DoubleWell2D {
    /// Linear tilt `a`.
    pub a: f64,
    /// Quadratic coefficient `b` (< 0 for two wells).
    pub b: f64,
    /// Quartic coefficient `c` (> 0).
    pub c: f64,
}

impl Default for DoubleWell2D {
    fn default() -> Self {
        DoubleWell2D { a: 0.0, b: -4.0, c: 1.0 }
    }
}

impl Energy for DoubleWell2D {
    fn dim(&self) -> usize {
        2
    }
    fn energy(&self, x: ArrayView2<f64>) -> Array1<f64> {
        x.rows().into_iter().map(|r| self.a * r[0] + self.b * r[0] * r[0] + self.c * r[0].powi(4) + 0.5 * r[1] * r[1]).collect()
    }
    fn energy_and_force(&self, x: ArrayView2<f64>) -> (Array1<f64>, Array2<f64>) {
        per_row(x, |r, f| {
            f[0] = -(self.a + 2.0 * self.b * r[0] + 4.0 * self.c * r[0].powi(3));
            f[1] = -r[1];
            self.a * r[0] + self.b * r[0] * r[0] + self.c * r[0].powi(4) + 0.5 * r[1] * r[1]
        })
    }
    fn name(&self) -> String {
        "dw2d".into()
    }
}

/// The Müller–Brown potential (Müller & Brown 1979, Theor. Chim. Acta 53, 75):
/// `u = scale · Σ_k A_k exp(a_k (x − x_k)² + b_k (x − x_k)(y − y_k) + c_k (y − y_k)²)` with
/// `A = (−200, −100, −170, 15)`, `a = (−1, −1, −6.5, 0.7)`, `b = (0, 0, 11, 0.6)`,
/// `c = (−10, −10, −6.5, 0.7)`, `x_k = (1, 0, −0.5, −1)`, `y_k = (0, 0.5, 1.5, 1)`.
/// Minima near (−0.558, 1.442) (u ≈ −146.7), (0.623, 0.028) (u ≈ −108.2) and
/// (−0.050, 0.467) (u ≈ −80.8), at `scale = 1`. Boltzmann-generator studies usually scale it
/// down (e.g. `scale = 0.1`) or use a small β.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MuellerBrown {
    /// Overall energy scale.
    pub scale: f64,
}

impl Default for MuellerBrown {
    fn default() -> Self {
        MuellerBrown { scale: 1.0 }
    }
}

const MB_A: [f64; 4] = [-200.0, -100.0, -170.0, 15.0];
const MB_LA: [f64; 4] = [-1.0, -1.0, -6.5, 0.7];
const MB_LB: [f64; 4] = [0.0, 0.0, 11.0, 0.6];
const MB_LC: [f64; 4] = [-10.0, -10.0, -6.5, 0.7];
const MB_X: [f64; 4] = [1.0, 0.0, -0.5, -1.0];
const MB_Y: [f64; 4] = [0.0, 0.5, 1.5, 1.0];

impl MuellerBrown {
    fn eval(&self, r: &[f64], f: &mut [f64]) -> f64 {
        let mut u = 0.0;
        f[0] = 0.0;
        f[1] = 0.0;
        for k in 0..4 {
            let (dx, dy) = (r[0] - MB_X[k], r[1] - MB_Y[k]);
            let e = MB_A[k] * (MB_LA[k] * dx * dx + MB_LB[k] * dx * dy + MB_LC[k] * dy * dy).exp();
            u += e;
            f[0] -= e * (2.0 * MB_LA[k] * dx + MB_LB[k] * dy);
            f[1] -= e * (MB_LB[k] * dx + 2.0 * MB_LC[k] * dy);
        }
        f[0] *= self.scale;
        f[1] *= self.scale;
        self.scale * u
    }
}

impl Energy for MuellerBrown {
    fn dim(&self) -> usize {
        2
    }
    fn energy(&self, x: ArrayView2<f64>) -> Array1<f64> {
        self.energy_and_force(x).0
    }
    fn energy_and_force(&self, x: ArrayView2<f64>) -> (Array1<f64>, Array2<f64>) {
        per_row(x, |r, f| self.eval(r, f))
    }
    fn name(&self) -> String {
        "mueller_brown".into()
    }
}

/// Pair sums of `φ(d_ij)` over particles: calls `pair(i, j, d, r_ij)` with `r_ij = x_i − x_j`
/// for `i < j` and accumulates `−φ'(d) r_ij / d` into the forces.
fn pair_sum(r: &[f64], n: usize, d: usize, f: &mut [f64], phi: impl Fn(f64) -> (f64, f64)) -> f64 {
    let mut u = 0.0;
    let mut rij = [0.0; 8];
    for i in 0..n {
        for j in i + 1..n {
            let mut d2 = 0.0;
            for k in 0..d {
                rij[k] = r[i * d + k] - r[j * d + k];
                d2 += rij[k] * rij[k];
            }
            let dist = d2.sqrt();
            let (p, dp) = phi(dist);
            u += p;
            let s = -dp / dist;
            for k in 0..d {
                f[i * d + k] += s * rij[k];
                f[j * d + k] -= s * rij[k];
            }
        }
    }
    u
}

/// The particle counts the pair loops take: at least one pair, and `d ≤ 8` (the pair
/// vector lives on the stack).
fn validate_particles(n: usize, d: usize) -> Result<()> {
    if n >= 2 && (1..=8).contains(&d) {
        Ok(())
    } else {
        Err(Error::invalid("particles", format!("particle systems need n ≥ 2 and 1 ≤ d ≤ 8, got n = {n}, d = {d}")))
    }
}

/// The trait's methods have no error channel: on settings that `validate` rejects, or rows
/// that are not `n · d` wide, the particle energies return NaN energies and forces (shaped
/// like `x`) instead of indexing out of bounds; [`evaluate`] names the problem instead.
fn unusable(n: usize, d: usize, x: ArrayView2<f64>) -> Option<(Array1<f64>, Array2<f64>)> {
    (validate_particles(n, d).is_err() || x.ncols() != n * d).then(|| (Array1::from_elem(x.nrows(), f64::NAN), Array2::from_elem(x.dim(), f64::NAN)))
}

/// DW4-style multi-particle double well (Köhler, Klein & Noé 2020, "Equivariant flows", as
/// bgflow's `MultiDoubleWellPotential`): `u = Σ_{i<j} a (d_ij − d₀)⁴ + b (d_ij − d₀)² + c`.
/// DW4: 4 particles in 2D, `a = 0.9, b = −4, c = 0, d₀ = 4`; each pair distance has minima at
/// `d₀ ± √(−b/2a) = 4 ± 1.491`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MultiDoubleWell {
    /// Number of particles.
    pub n_particles: usize,
    /// Spatial dimension.
    pub spatial_dim: usize,
    /// Quartic coefficient.
    pub a: f64,
    /// Quadratic coefficient.
    pub b: f64,
    /// Constant per pair.
    pub c: f64,
    /// Offset `d₀`.
    pub d0: f64,
}

impl Default for MultiDoubleWell {
    fn default() -> Self {
        Self::dw4()
    }
}

impl MultiDoubleWell {
    /// DW4: 4 particles in 2D, a = 0.9, b = −4, c = 0, d₀ = 4.
    pub fn dw4() -> Self {
        MultiDoubleWell { n_particles: 4, spatial_dim: 2, a: 0.9, b: -4.0, c: 0.0, d0: 4.0 }
    }
}

impl Energy for MultiDoubleWell {
    fn dim(&self) -> usize {
        self.n_particles * self.spatial_dim
    }
    fn energy(&self, x: ArrayView2<f64>) -> Array1<f64> {
        self.energy_and_force(x).0
    }
    fn energy_and_force(&self, x: ArrayView2<f64>) -> (Array1<f64>, Array2<f64>) {
        if let Some(nan) = unusable(self.n_particles, self.spatial_dim, x) {
            return nan;
        }
        per_row(x, |r, f| {
            pair_sum(r, self.n_particles, self.spatial_dim, f, |dist| {
                let s = dist - self.d0;
                (self.a * s.powi(4) + self.b * s * s + self.c, 4.0 * self.a * s.powi(3) + 2.0 * self.b * s)
            })
        })
    }
    fn particles(&self) -> Option<(usize, usize)> {
        Some((self.n_particles, self.spatial_dim))
    }
    fn validate(&self) -> Result<()> {
        validate_particles(self.n_particles, self.spatial_dim)
    }
    fn name(&self) -> String {
        if *self == Self::dw4() {
            "dw4".into()
        } else {
            format!("mdw{}", self.n_particles)
        }
    }
}

/// How the Lennard-Jones pair sum is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairSum {
    /// Each pair once, `Σ_{i<j}` (bgflow's `LennardJonesPotential`; the physical energy).
    Unique,
    /// Each pair twice, `Σ_{i≠j}` (twice the physical pair energy, as in some published LJ13 /
    /// LJ55 datasets); the restraint term is not doubled. At the same β this samples the
    /// physical system at half the temperature.
    Ordered,
}

/// Lennard-Jones cluster with a harmonic restraint to the centre of mass (Köhler et al. 2020;
/// bgflow's `LennardJonesPotential(oscillator=True)`):
/// `u = m · Σ_{i<j} ε[(r_m/r_ij)¹² − 2 (r_m/r_ij)⁶] + ½ k Σ_i |x_i − x̄|²` with `m = 1` for
/// [`PairSum::Unique`] and `m = 2` for [`PairSum::Ordered`]. LJ13: 13 particles in 3D,
/// `ε = r_m = 1, k = 1`. The pair minimum is `−ε` at `r = r_m`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LennardJones {
    /// Number of particles.
    pub n_particles: usize,
    /// Spatial dimension.
    pub spatial_dim: usize,
    /// Well depth ε.
    pub epsilon: f64,
    /// Position of the pair minimum `r_m` (= 2^{1/6} σ).
    pub r_m: f64,
    /// Stiffness `k` of the restraint to the centre of mass.
    pub restraint: f64,
    /// Pair-sum convention.
    pub pair_sum: PairSum,
}

impl Default for LennardJones {
    fn default() -> Self {
        Self::lj13()
    }
}

impl LennardJones {
    /// `n` particles in 3D, ε = r_m = 1, restraint 1, pairs counted once.
    pub fn cluster(n: usize) -> Self {
        LennardJones { n_particles: n, spatial_dim: 3, epsilon: 1.0, r_m: 1.0, restraint: 1.0, pair_sum: PairSum::Unique }
    }
    /// LJ13.
    pub fn lj13() -> Self {
        Self::cluster(13)
    }
    /// LJ55.
    pub fn lj55() -> Self {
        Self::cluster(55)
    }
}

impl Energy for LennardJones {
    fn dim(&self) -> usize {
        self.n_particles * self.spatial_dim
    }
    fn energy(&self, x: ArrayView2<f64>) -> Array1<f64> {
        self.energy_and_force(x).0
    }
    fn energy_and_force(&self, x: ArrayView2<f64>) -> (Array1<f64>, Array2<f64>) {
        let (n, d) = (self.n_particles, self.spatial_dim);
        if let Some(nan) = unusable(n, d, x) {
            return nan;
        }
        let m = match self.pair_sum {
            PairSum::Unique => 1.0,
            PairSum::Ordered => 2.0,
        };
        per_row(x, |r, f| {
            let lj = pair_sum(r, n, d, f, |dist| {
                let s6 = (self.r_m / dist).powi(6);
                (m * self.epsilon * (s6 * s6 - 2.0 * s6), m * self.epsilon * (-12.0 * s6 * s6 + 12.0 * s6) / dist)
            });
            let mut com = [0.0; 8];
            for i in 0..n {
                for k in 0..d {
                    com[k] += r[i * d + k] / n as f64;
                }
            }
            let mut h = 0.0;
            for i in 0..n {
                for k in 0..d {
                    let v = r[i * d + k] - com[k];
                    h += v * v;
                    // ∂/∂x_i of ½k Σ_j |x_j − x̄|² = k (x_i − x̄) (the x̄ terms cancel).
                    f[i * d + k] -= self.restraint * v;
                }
            }
            lj + 0.5 * self.restraint * h
        })
    }
    fn particles(&self) -> Option<(usize, usize)> {
        Some((self.n_particles, self.spatial_dim))
    }
    fn validate(&self) -> Result<()> {
        validate_particles(self.n_particles, self.spatial_dim)
    }
    fn name(&self) -> String {
        let base = format!("lj{}", self.n_particles);
        match self.pair_sum {
            PairSum::Unique => base,
            PairSum::Ordered => format!("{base}_ordered"),
        }
    }
}

/// All pair distances `d_ij`, `i < j` in row-major order, per configuration:
/// `x: [batch, n·d]` → `[batch, n(n−1)/2]`.
pub fn pair_distances(x: ArrayView2<f64>, n: usize, d: usize) -> Array2<f64> {
    let np = n * (n - 1) / 2;
    Array2::from_shape_fn((x.nrows(), np), |(b, p)| {
        // Invert p → (i, j) by walking the rows of the upper triangle.
        let (mut i, mut rem) = (0, p);
        while rem >= n - 1 - i {
            rem -= n - 1 - i;
            i += 1;
        }
        let j = i + 1 + rem;
        (0..d).map(|k| (x[[b, i * d + k]] - x[[b, j * d + k]]).powi(2)).sum::<f64>().sqrt()
    })
}

/// Orthonormal coordinates of the centre-of-mass-free subspace `Σ_i x_i = 0` of `n` particles
/// in `d` dimensions: `x = Q y` with `Q = H ⊗ I_d`, `H` the `n × (n−1)` Helmert basis (column
/// `k` = `(1, …, 1, −k, 0, …, 0) / √(k(k+1))` with `k` ones). `Qᵀ Q = I`, so densities carry
/// over without a Jacobian: a standard normal in `y` is the mean-free normal in `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeanFree {
    /// Number of particles `n ≥ 2`.
    pub n_particles: usize,
    /// Spatial dimension `d`.
    pub spatial_dim: usize,
}

impl MeanFree {
    /// `(n − 1) d`.
    pub fn internal_dim(&self) -> usize {
        (self.n_particles - 1) * self.spatial_dim
    }

    /// `H[i, k]` (particle `i`, basis vector `k + 1`).
    fn helmert(&self, i: usize, k: usize) -> f64 {
        let kk = (k + 1) as f64;
        let norm = (kk * (kk + 1.0)).sqrt();
        if i <= k {
            1.0 / norm
        } else if i == k + 1 {
            -kk / norm
        } else {
            0.0
        }
    }

    /// `y = Qᵀ x`: `[batch, n d]` → `[batch, (n−1) d]` (drops the centre of mass).
    ///
    /// # Errors
    /// `Shape` for a wrong width.
    pub fn to_internal(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        let (n, d) = (self.n_particles, self.spatial_dim);
        if x.ncols() != n * d {
            return Err(Error::Shape { what: "Cartesian configurations".into(), expected: vec![x.nrows(), n * d], got: vec![x.nrows(), x.ncols()] });
        }
        Ok(Array2::from_shape_fn((x.nrows(), self.internal_dim()), |(b, c)| {
            let (k, s) = (c / d, c % d);
            (0..=k + 1).map(|i| self.helmert(i, k) * x[[b, i * d + s]]).sum()
        }))
    }

    /// `x = Q y`: `[batch, (n−1) d]` → `[batch, n d]` with zero centre of mass.
    ///
    /// # Errors
    /// `Shape` for a wrong width.
    pub fn to_cartesian(&self, y: ArrayView2<f64>) -> Result<Array2<f64>> {
        let (n, d) = (self.n_particles, self.spatial_dim);
        if y.ncols() != self.internal_dim() {
            return Err(Error::Shape { what: "internal coordinates".into(), expected: vec![y.nrows(), self.internal_dim()], got: vec![y.nrows(), y.ncols()] });
        }
        Ok(Array2::from_shape_fn((y.nrows(), n * d), |(b, c)| {
            let (i, s) = (c / d, c % d);
            (i.saturating_sub(1)..n - 1).map(|k| self.helmert(i, k) * y[[b, k * d + s]]).sum()
        }))
    }
}

/// An energy of a translation-invariant particle system seen in the centre-of-mass-free
/// coordinates `y` of [`MeanFree`]: `ũ(y) = u(Q y)`, `f̃ = Qᵀ f(Q y)`. Flows with a standard
/// normal base in `(n − 1) d` dimensions sample it; `Q` maps their samples back.
#[derive(Clone, Debug)]
pub struct InternalEnergy<E> {
    /// The Cartesian energy.
    pub energy: E,
    /// The coordinate map.
    pub coords: MeanFree,
}

impl<E: Energy> InternalEnergy<E> {
    /// Wraps a particle energy.
    ///
    /// # Errors
    /// `InvalidArgument` if `energy` is not a particle system.
    pub fn new(energy: E) -> Result<Self> {
        let (n, d) =
            energy.particles().ok_or_else(|| Error::InvalidArgument { name: "energy", reason: format!("`{}` is not a particle system", energy.name()) })?;
        Ok(InternalEnergy { energy, coords: MeanFree { n_particles: n, spatial_dim: d } })
    }
}

impl<E: Energy> Energy for InternalEnergy<E> {
    fn dim(&self) -> usize {
        self.coords.internal_dim()
    }
    fn energy(&self, y: ArrayView2<f64>) -> Array1<f64> {
        let x = self.coords.to_cartesian(y).expect("width checked by the caller");
        self.energy.energy(x.view())
    }
    fn energy_and_force(&self, y: ArrayView2<f64>) -> (Array1<f64>, Array2<f64>) {
        let x = self.coords.to_cartesian(y).expect("width checked by the caller");
        let (u, f) = self.energy.energy_and_force(x.view());
        (u, self.coords.to_internal(f.view()).expect("same width"))
    }
    fn name(&self) -> String {
        self.energy.name()
    }
}

/// One registered list of every system, which the tests iterate over.
pub fn systems() -> Vec<Box<dyn Energy>> {
    vec![
        Box::new(DoubleWell2D::default()),
        Box::new(DoubleWell2D { a: 0.5, b: -3.0, c: 1.2 }),
        Box::new(MuellerBrown::default()),
        Box::new(MultiDoubleWell::dw4()),
        Box::new(LennardJones::lj13()),
        Box::new(LennardJones { pair_sum: PairSum::Ordered, ..LennardJones::lj13() }),
        Box::new(LennardJones::cluster(5)),
        Box::new(InternalEnergy::new(MultiDoubleWell::dw4()).expect("particles")),
        Box::new(InternalEnergy::new(LennardJones::cluster(5)).expect("particles")),
    ]
}
