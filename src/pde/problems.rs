//! Reference problems with closed-form answers, shared by the tests and the docs.
//!
//! [`GaussianFlow`]: the exact marginal velocity of the straight path between two Gaussians.
//! With `x₀ ~ N(μ₀, K)`, `x₁ ~ N(μ₁, Σ)` independent and `x_t = (1 − t) x₀ + t x₁`,
//! `x_t ~ N(m_t, C_t)`, `m_t = (1 − t) μ₀ + t μ₁`, `C_t = (1 − t)² K + t² Σ`, and
//! `v(x, t) = E[x₁ − x₀ | x_t = x] = (μ₁ − μ₀) + (tΣ − (1 − t)K) C_t⁻¹ (x − m_t)`
//! (Gaussian conditioning with `Cov(x₁ − x₀, x_t) = tΣ − (1 − t)K`). Its flow carries `N(μ₀, K)`
//! to `N(μ₁, Σ)` exactly, so any sampler can be checked against known moments.
//!
//! [`constraint_cases`]: every constraint kind on a small grid, the list the tests loop over.

use burn::tensor::{Tensor, TensorData};
use ndarray::{Array1, Array2};

use super::constraint::{
    AutodiffConstraint, BoundaryFlux, Constraint, LinearConstraint, MassBalance, Operator, PdeResidual, Points, Quadrature, Side, SourceTerm, Stack, TimeValues,
};
use super::grid::{Axis, Grid};
use crate::host::ToHost;
use crate::ode::{Time, VectorField};
use crate::sim::systems::Reaction;

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

/// A constraint of the library on a small grid, with a point where its Jacobian is checked.
pub struct ConstraintCase {
    /// Which constructor, with its settings.
    pub name: String,
    /// The constraint.
    pub constraint: Box<dyn Constraint>,
    /// A field of the right size inside the constraint's domain (values in `(0.1, 0.9)`).
    pub point: Vec<f64>,
}

/// Every kind of constraint in the library on a small grid (6 points × 4 times): the one list
/// the constraint tests iterate over, so a new constraint is tested the moment it is added.
pub fn constraint_cases() -> Vec<ConstraintCase> {
    let (nx, nt) = (6, 4);
    let periodic = Grid::space_time(Axis::space("x", nx, 0.0, 1.0 / nx as f64, true), Axis::time(nt, 0.0, 0.3));
    let nodes = Grid::space_time(Axis::space("x", nx, 0.0, 1.0 / (nx - 1) as f64, false), Axis::time(nt, 0.0, 0.3));
    let cells = Grid::space_time(Axis::space("x", nx, 0.5 / nx as f64, 1.0 / nx as f64, false), Axis::time(nt, 0.0, 0.3));
    let spatial = Grid { channels: vec!["u".into()], axes: vec![Axis::space("x", 4, 0.0, 0.25, false), Axis::space("y", 3, 0.0, 0.5, false)] };
    let point = |g: &Grid, seed: usize| -> Vec<f64> { (0..g.len()).map(|i| 0.1 + 0.8 * (((i + seed) * 7919 % 101) as f64 / 101.0)).collect() };
    let u0: Vec<f64> = (0..nx).map(|i| 0.5 + 0.3 * (i as f64).sin()).collect();
    let fisher = SourceTerm::Reaction { reaction: Reaction::FisherKpp, rate: 2.0 };
    let allen = SourceTerm::Reaction { reaction: Reaction::AllenCahn, rate: 1.5 };
    let per_time = TimeValues::PerTime((0..nt).map(|k| 0.1 * k as f64).collect());
    let mut cases: Vec<(String, Box<dyn Constraint>, &Grid)> = vec![
        ("initial condition".into(), Box::new(LinearConstraint::initial_condition(&periodic, &u0).unwrap()), &periodic),
        ("dirichlet left, constant".into(), Box::new(LinearConstraint::dirichlet(&nodes, 0, Side::Left, &TimeValues::Constant(0.7), 1).unwrap()), &nodes),
        ("dirichlet right, per time".into(), Box::new(LinearConstraint::dirichlet(&nodes, 0, Side::Right, &per_time, 0).unwrap()), &nodes),
        (
            "neumann left, nodes".into(),
            Box::new(LinearConstraint::neumann(&nodes, 0, Side::Left, Points::Nodes, &TimeValues::Constant(0.2), 0).unwrap()),
            &nodes,
        ),
        ("neumann right, cells".into(), Box::new(LinearConstraint::neumann(&cells, 0, Side::Right, Points::Cells, &per_time, 1).unwrap()), &cells),
        ("periodic".into(), Box::new(LinearConstraint::periodic(&nodes, 0).unwrap()), &nodes),
        ("mass conservation, from t0".into(), Box::new(LinearConstraint::mass_conservation(&periodic, 0, Quadrature::Uniform, None).unwrap()), &periodic),
        (
            "mass conservation, given, trapezoid".into(),
            Box::new(LinearConstraint::mass_conservation(&nodes, 0, Quadrature::Trapezoid, Some(0.4)).unwrap()),
            &nodes,
        ),
        ("total mass, 2D".into(), Box::new(LinearConstraint::mass_conservation(&spatial, 0, Quadrature::Trapezoid, Some(0.3)).unwrap()), &spatial),
        ("fixed values".into(), Box::new(LinearConstraint::fixed_values("probes", &spatial, vec![(0, 0.5), (7, 0.2)]).unwrap()), &spatial),
        (
            "mass balance, no source".into(),
            Box::new(MassBalance::new(&cells, 0, Quadrature::Uniform, None, BoundaryFlux::Known(per_time.clone())).unwrap()),
            &cells,
        ),
        (
            "mass balance, Fisher-KPP source".into(),
            Box::new(MassBalance::new(&cells, 0, Quadrature::Uniform, Some(fisher), BoundaryFlux::Known(TimeValues::Constant(0.05))).unwrap()),
            &cells,
        ),
        (
            "mass balance, Allen-Cahn source".into(),
            Box::new(MassBalance::new(&periodic, 0, Quadrature::Uniform, Some(allen), BoundaryFlux::Zero).unwrap()),
            &periodic,
        ),
        (
            "mass balance, Burgers boundary flux".into(),
            Box::new(MassBalance::new(&nodes, 0, Quadrature::Interior, None, BoundaryFlux::Burgers { viscosity: 0.05 }).unwrap()),
            &nodes,
        ),
        ("Burgers residual, Crank-Nicolson".into(), Box::new(PdeResidual::new(&nodes, Operator::Burgers { viscosity: 0.05 }, 0.5).unwrap()), &nodes),
        ("Burgers residual, explicit".into(), Box::new(PdeResidual::new(&nodes, Operator::Burgers { viscosity: 0.05 }, 0.0).unwrap()), &nodes),
        (
            "reaction-diffusion residual, Neumann".into(),
            Box::new(
                PdeResidual::new(&cells, Operator::ReactionDiffusion { diffusivity: 0.01, source: Some(fisher), neumann: Some((0.1, -0.2)) }, 0.5).unwrap(),
            ),
            &cells,
        ),
        (
            "heat residual, periodic, implicit".into(),
            Box::new(PdeResidual::new(&periodic, Operator::ReactionDiffusion { diffusivity: 0.02, source: None, neumann: None }, 1.0).unwrap()),
            &periodic,
        ),
    ];
    // The Darcy balances of a permeability–pressure field on 3 × 3 cells. The flux balance's
    // source (4) is the size of the case point's total outflow (values in (0.1, 0.9)); the cell
    // balances are the hardest case for the closest-point projection (bilinear, 9 rows: 12
    // Gauss–Newton iterations from this point, 5 in root mode).
    let darcy = super::darcy::darcy_grid(3);
    cases.push(("Darcy flux balance".into(), Box::new(super::darcy::DarcyFlux::constant(3, 4.0, 0.1, super::darcy::DarcyScope::Global).unwrap()), &darcy));
    cases.push(("Darcy cell balances".into(), Box::new(super::darcy::DarcyFlux::constant(3, 1.2, 0.1, super::darcy::DarcyScope::PerCell).unwrap()), &darcy));
    // A nonlinear constraint in burn ops: the spatial energy h Σᵢ u(xᵢ, t_k)² = 0.3 at every time.
    let (n, h) = (periodic.len(), 1.0 / nx as f64);
    let energy = AutodiffConstraint::new("energy (burn)", n, nt, move |u: burn::tensor::Tensor<2>| {
        let [b, _] = u.dims();
        u.reshape([b, nx, nt]).square().sum_dim(1).reshape([b, nt]).mul_scalar(h).sub_scalar(0.3)
    });
    cases.push(("autodiff energy".into(), Box::new(energy), &periodic));
    let stack = Stack::new(vec![
        Box::new(LinearConstraint::initial_condition(&cells, &u0).unwrap()),
        Box::new(MassBalance::new(&cells, 0, Quadrature::Uniform, Some(fisher), BoundaryFlux::Zero).unwrap()),
    ])
    .unwrap();
    cases.push(("stack: initial condition + mass balance".into(), Box::new(stack), &cells));
    cases.into_iter().enumerate().map(|(k, (name, constraint, grid))| ConstraintCase { name, point: point(grid, k), constraint }).collect()
}
