//! Base densities `ρ(z)` of flows.

use ndarray::{Array1, Array2, ArrayView2};
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A base density to sample `z` from and score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Base {
    /// `N(0, I_dim)`.
    StandardNormal {
        /// Dimension.
        dim: usize,
    },
    /// The mean-free normal for `n` particles in `d` dimensions (Köhler, Klein & Noé 2020,
    /// "Equivariant flows"): `N(0, I)` restricted to the subspace `Σ_i x_i = 0`, i.e. a
    /// standard normal in the `(n − 1) d` coordinates of an orthonormal basis of that subspace.
    /// Samples are `[batch, n·d]`, particle-major, with zero centre of mass; the density is
    /// with respect to the Lebesgue measure of the subspace:
    /// `log ρ(x) = −½|x − x̄|² − ((n − 1) d / 2) log 2π`.
    MeanFreeNormal {
        /// Number of particles `n ≥ 2`.
        particles: usize,
        /// Spatial dimension `d`.
        spatial_dim: usize,
    },
}

impl Base {
    /// Width of a sample row.
    pub fn dim(&self) -> usize {
        match *self {
            Base::StandardNormal { dim } => dim,
            Base::MeanFreeNormal { particles, spatial_dim } => particles * spatial_dim,
        }
    }

    /// Degrees of freedom: `dim`, or `(n − 1) d` for the mean-free normal.
    pub fn degrees_of_freedom(&self) -> usize {
        match *self {
            Base::StandardNormal { dim } => dim,
            Base::MeanFreeNormal { particles, spatial_dim } => particles.saturating_sub(1) * spatial_dim,
        }
    }

    /// `n` samples, `[n, dim]`.
    pub fn sample(&self, n: usize, rng: &mut StdRng) -> Array2<f64> {
        let mut z = Array2::from_shape_simple_fn((n, self.dim()), || StandardNormal.sample(rng));
        if let Base::MeanFreeNormal { .. } = self {
            remove_com(self, &mut z);
        }
        z
    }

    /// `log ρ(z)` per row of `z: [batch, dim]`.
    ///
    /// # Errors
    /// `Shape` for a wrong width.
    pub fn log_prob(&self, z: ArrayView2<f64>) -> Result<Array1<f64>> {
        if z.ncols() != self.dim() {
            return Err(Error::Shape { what: "base sample".into(), expected: vec![z.nrows(), self.dim()], got: vec![z.nrows(), z.ncols()] });
        }
        let c = -0.5 * self.degrees_of_freedom() as f64 * (2.0 * std::f64::consts::PI).ln();
        let mut z = z.to_owned();
        if let Base::MeanFreeNormal { .. } = self {
            remove_com(self, &mut z);
        }
        Ok(z.rows().into_iter().map(|r| c - 0.5 * r.dot(&r)).collect())
    }

    /// `∇_z log ρ(z)` per row (for the mean-free normal, within the subspace).
    pub fn grad_log_prob(&self, z: ArrayView2<f64>) -> Array2<f64> {
        let mut g = -z.to_owned();
        if let Base::MeanFreeNormal { .. } = self {
            remove_com(self, &mut g);
        }
        g
    }
}

fn remove_com(base: &Base, z: &mut Array2<f64>) {
    if let Base::MeanFreeNormal { particles: n, spatial_dim: d } = *base {
        remove_centre_of_mass(z, n, d);
    }
}

/// Subtracts from every row of `z: [batch, n·d]` (particle-major) its centre of mass.
pub(crate) fn remove_centre_of_mass(z: &mut Array2<f64>, n: usize, d: usize) {
    for mut row in z.rows_mut() {
        for k in 0..d {
            let m = (0..n).map(|i| row[i * d + k]).sum::<f64>() / n as f64;
            (0..n).for_each(|i| row[i * d + k] -= m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mean_free_normal_samples_have_zero_com_and_unit_variance_in_the_subspace() {
        let base = Base::MeanFreeNormal { particles: 4, spatial_dim: 2 };
        let mut rng = StdRng::seed_from_u64(3);
        let n = 20000;
        let z = base.sample(n, &mut rng);
        for row in z.rows() {
            for k in 0..2 {
                assert!((0..4).map(|i| row[i * 2 + k]).sum::<f64>().abs() < 1e-12);
            }
        }
        // E|z|² = (n − 1) d = 6 for a standard normal on the 6-dimensional subspace;
        // Var |z|² = 2·6, so the mean over 20000 rows has SE √(12/20000) ≈ 0.0245.
        let m2 = z.rows().into_iter().map(|r| r.dot(&r)).sum::<f64>() / n as f64;
        assert!((m2 - 6.0).abs() < 4.0 * (12.0f64 / n as f64).sqrt(), "E|z|² = {m2}");
        // log ρ at the origin: −(6/2) log 2π.
        let lp = base.log_prob(Array2::zeros((1, 8)).view()).unwrap();
        assert!((lp[0] + 3.0 * (2.0 * std::f64::consts::PI).ln()).abs() < 1e-14);
        // A centre-of-mass shift does not change the density on the subspace.
        let shifted = &z.slice(ndarray::s![..3, ..]) + 5.0;
        let a = base.log_prob(z.slice(ndarray::s![..3, ..])).unwrap();
        let b = base.log_prob(shifted.view()).unwrap();
        assert!((&a - &b).iter().all(|e| e.abs() < 1e-10));
    }
}
