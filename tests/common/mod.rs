//! Helpers shared by the integration tests.

#![allow(dead_code)]

use ndarray::{Array1, Array2, ArrayView2};
use physflow::energy::Energy;

/// `u = ½ Σ_k (x_k − μ_k)² / σ_k²`: at β = 1, `p = N(μ, diag σ²)`, a target with a closed-form
/// normalising constant ([`Gaussian::log_z`]).
#[derive(Clone, Debug)]
pub struct Gaussian {
    pub mu: Vec<f64>,
    pub sigma: Vec<f64>,
}

impl Gaussian {
    /// `log Z = (d/2) log 2π + Σ log σ_k` at β = 1.
    pub fn log_z(&self) -> f64 {
        0.5 * self.mu.len() as f64 * (2.0 * std::f64::consts::PI).ln() + self.sigma.iter().map(|s| s.ln()).sum::<f64>()
    }
}

impl Energy for Gaussian {
    fn dim(&self) -> usize {
        self.mu.len()
    }
    fn energy(&self, x: ArrayView2<f64>) -> Array1<f64> {
        self.energy_and_force(x).0
    }
    fn energy_and_force(&self, x: ArrayView2<f64>) -> (Array1<f64>, Array2<f64>) {
        let mut f = Array2::zeros(x.dim());
        let mut u = Array1::zeros(x.nrows());
        for b in 0..x.nrows() {
            for k in 0..self.dim() {
                let r = (x[[b, k]] - self.mu[k]) / self.sigma[k];
                u[b] += 0.5 * r * r;
                f[[b, k]] = -r / self.sigma[k];
            }
        }
        (u, f)
    }
    fn name(&self) -> String {
        "gaussian".into()
    }
}

/// `log|det M|` by Gaussian elimination with partial pivoting.
pub fn log_abs_det(mut m: Array2<f64>) -> f64 {
    let n = m.nrows();
    let mut ld = 0.0;
    for c in 0..n {
        let p = (c..n).max_by(|&a, &b| m[[a, c]].abs().total_cmp(&m[[b, c]].abs())).unwrap();
        if p != c {
            for j in 0..n {
                m.swap([p, j], [c, j]);
            }
        }
        let piv = m[[c, c]];
        ld += piv.abs().ln();
        for r in c + 1..n {
            let f = m[[r, c]] / piv;
            for j in c..n {
                m[[r, j]] -= f * m[[c, j]];
            }
        }
    }
    ld
}
