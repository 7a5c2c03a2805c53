//! Reference problems with closed-form answers, shared by the tests and the docs.
//!
//! [`GaussianFlow`]: the exact marginal velocity of the straight path between two Gaussians.
//! With `x₀ ~ N(μ₀, K)`, `x₁ ~ N(μ₁, Σ)` independent and `x_t = (1 − t) x₀ + t x₁`,
//! `x_t ~ N(m_t, C_t)`, `m_t = (1 − t) μ₀ + t μ₁`, `C_t = (1 − t)² K + t² Σ`, and
//! `v(x, t) = E[x₁ − x₀ | x_t = x] = (μ₁ − μ₀) + (tΣ − (1 − t)K) C_t⁻¹ (x − m_t)`
//! (Gaussian conditioning with `Cov(x₁ − x₀, x_t) = tΣ − (1 − t)K`). Its flow carries `N(μ₀, K)`
//! to `N(μ₁, Σ)` exactly, so any sampler can be checked against known moments.

use burn::tensor::{Tensor, TensorData};
use ndarray::{Array1, Array2};

use crate::host::ToHost;
use crate::ode::{Time, VectorField};

/// The exact flow-matching velocity between `N(μ₀, K)` and `N(μ₁, Σ)` in `ℝⁿ`.
#[derive(Clone, Debug)]
pub struct GaussianFlow {
    /// Base mean `μ₀`, `[n]`.
    pub mu0: Array1<f64>,
    /// Base covariance `K`, `[n, n]`.
    pub k: Array2<f64>,
    /// Data mean `μ₁`, `[n]`.
    pub mu1: Array1<f64>,
    /// Data covariance `Σ`, `[n, n]`.
    pub sigma: Array2<f64>,
}

impl GaussianFlow {
    /// `(M_t, c_t)` with `v(x, t) = c_t + M_t x`: `M_t = (tΣ − (1 − t)K) C_t⁻¹`,
    /// `c_t = (μ₁ − μ₀) − M_t m_t`.
    ///
    /// # Panics
    /// If `C_t` is singular (at `t = 1` for a singular `Σ`).
    pub fn affine(&self, t: f64) -> (Array2<f64>, Array1<f64>) {
        let n = self.mu0.len();
        let c = &self.k * (1.0 - t).powi(2) + &self.sigma * (t * t);
        let a = &self.sigma * t - &self.k * (1.0 - t);
        // M = A C⁻¹  ⇔  C Mᵀ = Aᵀ (C symmetric).
        let cm = faer::Mat::<f64>::from_fn(n, n, |i, j| c[[i, j]]);
        let llt = cm.llt(faer::Side::Lower).expect("C_t is positive definite for t < 1");
        let mut rhs = faer::Mat::<f64>::from_fn(n, n, |i, j| a[[j, i]]);
        {
            use faer::linalg::solvers::Solve;
            llt.solve_in_place(rhs.as_mut());
        }
        let m = Array2::from_shape_fn((n, n), |(i, j)| rhs[(j, i)]);
        let mt = &self.mu0 * (1.0 - t) + &self.mu1 * t;
        let ct = (&self.mu1 - &self.mu0) - m.dot(&mt);
        (m, ct)
    }
}

impl VectorField<2> for GaussianFlow {
    type Params = ();
    type Saved = (Time, Tensor<2>);

    /// `v(x, t)` row by row, `[batch, n]` (each sample at its own time).
    fn eval(&self, t: &Time, y: &Tensor<2>) -> Tensor<2> {
        let [b, n] = y.dims();
        let x = Array2::from_shape_vec((b, n), y.to_vec_as::<f64>()).expect("[batch, n]");
        let mut out = Vec::with_capacity(b * n);
        let shared = t.shared().map(|s| self.affine(s));
        for i in 0..b {
            let own;
            let (m, c) = match &shared {
                Some(mc) => mc,
                None => {
                    own = self.affine(t.of(i));
                    &own
                }
            };
            out.extend((m.dot(&x.row(i)) + c).iter().copied());
        }
        Tensor::<2>::from_data(TensorData::new(out, [b, n]), (&y.device(), y.dtype()))
    }

    fn eval_saving(&self, t: &Time, y: &Tensor<2>) -> (Tensor<2>, Self::Saved) {
        (self.eval(t, y), (t.clone(), y.clone()))
    }

    /// `aᵀ M_t` row by row.
    fn vjp_saved(&self, saved: &Self::Saved, a: &Tensor<2>, _: Option<(&mut (), f64)>) -> Tensor<2> {
        let (t, y) = saved;
        let [b, n] = y.dims();
        let av = Array2::from_shape_vec((b, n), a.to_vec_as::<f64>()).expect("[batch, n]");
        let mut out = Vec::with_capacity(b * n);
        for i in 0..b {
            let (m, _) = self.affine(t.of(i));
            out.extend(m.t().dot(&av.row(i)).iter().copied());
        }
        Tensor::<2>::from_data(TensorData::new(out, [b, n]), (&y.device(), y.dtype()))
    }

    fn zero_params(&self) {}
}
