//! Constraints and their projection, over the one list of library constraints
//! (`pde::problems::constraint_cases`).

use physflow::pde::problems::constraint_cases;
use physflow::pde::{Axis, Constraint, Grid, LinearConstraint, ProjectMode, ProjectOptions, Projector, Side, Stack, TimeValues};
use physflow::Error;

/// A deterministic pseudo-random field in `(lo, lo + span)`.
fn field(n: usize, seed: u64, lo: f64, span: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lo + span * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

fn residual(c: &dyn Constraint, u: &[f64]) -> Vec<f64> {
    let mut h = vec![0.0; c.rows()];
    c.residual(u, &mut h);
    h
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// Every constraint's Jacobian against central finite differences of its residual
/// (step 1e-6; the residuals are at most cubic, so the truncation error is ~1e-12 and the
/// round-off ~1e-10 relative to the residual's scale).
#[test]
fn jacobians_match_finite_differences() {
    for case in constraint_cases() {
        let c = case.constraint.as_ref();
        let (n, m) = (c.dim(), c.rows());
        assert_eq!(case.point.len(), n, "{}", case.name);
        let jac = c.jacobian(&case.point).to_dense();
        let eps = 1e-6;
        let scale = 1.0 + max_abs(&jac);
        let mut worst: f64 = 0.0;
        for col in 0..n {
            let mut up = case.point.clone();
            let mut dn = case.point.clone();
            up[col] += eps;
            dn[col] -= eps;
            let (hu, hd) = (residual(c, &up), residual(c, &dn));
            for r in 0..m {
                let fd = (hu[r] - hd[r]) / (2.0 * eps);
                worst = worst.max((fd - jac[r * n + col]).abs() / scale);
            }
        }
        assert!(worst < 1e-7, "{}: Jacobian differs from finite differences by {worst:.2e} (relative)", case.name);
        // Linear constraints have the same Jacobian everywhere.
        if c.is_linear() {
            let other = c.jacobian(&field(n, 3, -2.0, 4.0)).to_dense();
            assert_eq!(jac, other, "{}: a linear constraint's Jacobian moved", case.name);
        }
    }
}

/// Linear constraints hold to 1e-10 after one projection from random fields (values in
/// [−2, 2]), and projecting again changes nothing: `P(P(u)) = P(u)` to round-off.
#[test]
fn linear_projection_is_exact_in_one_step_and_idempotent() {
    let mut tested = 0;
    for case in constraint_cases().into_iter().filter(|c| c.constraint.is_linear()) {
        let c = case.constraint.as_ref();
        for mode in [ProjectMode::Closest, ProjectMode::Root] {
            let p = Projector::new(c, ProjectOptions { mode, ..ProjectOptions::default() }).unwrap();
            for seed in 0..3 {
                let mut u = field(c.dim(), seed, -2.0, 4.0);
                let rep = p.project_steps(&mut u, Some(1)).unwrap();
                assert!(rep.residual <= 1e-10, "{} ({mode:?}): residual {:.2e} after one step", case.name, rep.residual);
                let once = u.clone();
                let again = p.project(&mut u).unwrap();
                assert_eq!(again.iterations, 0, "{}: a projected field needed another step", case.name);
                let moved = once.iter().zip(&u).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                assert!(moved <= 1e-14, "{}: second projection moved the field by {moved:.2e}", case.name);
            }
        }
        tested += 1;
    }
    assert!(tested >= 10, "only {tested} linear cases");
}

/// The projection of a linear constraint is the orthogonal one: `u − ξ` lies in the row space
/// of `A` (it equals `Aᵀλ`), so it is orthogonal to every null-space direction `A d = 0`;
/// checked on `d = ξ′ − P(ξ′)` differences of projected points, which lie in the null space.
#[test]
fn linear_projection_is_orthogonal() {
    for case in constraint_cases().into_iter().filter(|c| c.constraint.is_linear()) {
        let c = case.constraint.as_ref();
        let p = Projector::new(c, ProjectOptions::default()).unwrap();
        let xi = field(c.dim(), 11, -1.0, 2.0);
        let mut u = xi.clone();
        p.project(&mut u).unwrap();
        // Null-space directions: differences of two projected fields.
        let (mut a, mut b) = (field(c.dim(), 12, -1.0, 2.0), field(c.dim(), 13, -1.0, 2.0));
        p.project(&mut a).unwrap();
        p.project(&mut b).unwrap();
        let dot: f64 = u.iter().zip(&xi).zip(a.iter().zip(&b)).map(|((u, x), (a, b))| (u - x) * (a - b)).sum();
        let norm = u.iter().zip(&xi).map(|(u, x)| (u - x).powi(2)).sum::<f64>().sqrt() * a.iter().zip(&b).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        assert!(dot.abs() <= 1e-10 * norm.max(1e-300), "{}: correction not orthogonal to the constraint set ({dot:.2e} vs {norm:.2e})", case.name);
    }
}

/// Nonlinear constraints: Gauss–Newton converges from a perturbed field (values in
/// (0.1, 0.9) plus ±0.05 noise) to the default tolerance; iterations and residuals are printed
/// (`cargo test -- --nocapture`) and bounded, and the closest-point iteration satisfies the
/// first-order condition `u − ξ ∈ range(J(u)ᵀ)`.
#[test]
fn nonlinear_projection_converges() {
    let mut tested = 0;
    for case in constraint_cases().into_iter().filter(|c| !c.constraint.is_linear()) {
        let c = case.constraint.as_ref();
        for mode in [ProjectMode::Closest, ProjectMode::Root] {
            let p = Projector::new(c, ProjectOptions { mode, ..ProjectOptions::default() }).unwrap();
            let noise = field(c.dim(), 5, -0.05, 0.1);
            let xi: Vec<f64> = case.point.iter().zip(&noise).map(|(a, b)| a + b).collect();
            let mut u = xi.clone();
            let rep = p.project(&mut u).unwrap_or_else(|e| panic!("{} ({mode:?}): {e}", case.name));
            eprintln!("{:<40} {mode:?}: {} iterations, residual {:.2e} -> {:.2e}", case.name, rep.iterations, rep.initial_residual, rep.residual);
            assert!(rep.residual <= 1e-10 && rep.iterations <= 12, "{}: {rep:?}", case.name);
            if mode == ProjectMode::Closest {
                // u − ξ = Jᵀλ: its component outside range(Jᵀ) vanishes. Project u − ξ onto
                // range(Jᵀ) with the linearised constraint at u and compare.
                let j = c.jacobian(&u);
                let lin = LinearConstraint { label: "range".into(), a: j, b: vec![0.0; c.rows()] };
                let pr = Projector::new(&lin, ProjectOptions::default()).unwrap();
                let mut d: Vec<f64> = u.iter().zip(&xi).map(|(a, b)| a - b).collect();
                let full = d.clone();
                pr.project(&mut d).unwrap(); // d now = component in null(J): should be ~0
                let off = max_abs(&d) / max_abs(&full).max(1e-300);
                assert!(off < 1e-6, "{}: correction has a null-space component {off:.2e}", case.name);
            }
        }
        tested += 1;
    }
    assert!(tested >= 6, "only {tested} nonlinear cases");
}

/// An initial condition and a Dirichlet condition that share the corner `(x₀, t₀)` (consistent
/// redundant rows): `J Jᵀ` is singular, the pseudo-inverse fallback still satisfies every row.
#[test]
fn redundant_consistent_rows_are_satisfied() {
    let grid = Grid::space_time(Axis::space("x", 5, 0.0, 0.25, false), Axis::time(4, 0.0, 1.0));
    let u0 = vec![0.7, 0.5, 0.4, 0.3, 0.0];
    let ic = LinearConstraint::initial_condition(&grid, &u0).unwrap();
    let bc = LinearConstraint::dirichlet(&grid, 0, Side::Left, &TimeValues::Constant(0.7), 0).unwrap();
    let both = Stack::new(vec![Box::new(ic), Box::new(bc)]).unwrap();
    let mut u = field(grid.len(), 9, -1.0, 2.0);
    let rep = Projector::new(&both, ProjectOptions::default()).unwrap().project(&mut u).unwrap();
    assert!(rep.residual <= 1e-10 && rep.iterations == 1, "{rep:?}");
}

/// Bad input: a field of the wrong length is a `Shape` error, a NaN a `NonFinite` error, and
/// contradictory constraints (`u(x₀, t₀) = 0.7` and `= 0.2`) a `ProjectionFailed` error that
/// names the constraint and reports the residual (the least-squares compromise, 0.25).
#[test]
fn bad_input_is_reported() {
    let grid = Grid::space_time(Axis::space("x", 5, 0.0, 0.25, false), Axis::time(4, 0.0, 1.0));
    let a = LinearConstraint::dirichlet(&grid, 0, Side::Left, &TimeValues::Constant(0.7), 0).unwrap();
    let b = LinearConstraint::dirichlet(&grid, 0, Side::Left, &TimeValues::Constant(0.2), 0).unwrap();
    let p = Projector::new(&a, ProjectOptions::default()).unwrap();
    assert!(matches!(p.project(&mut [0.0; 3]), Err(Error::Shape { .. })));
    let mut bad = vec![0.0; grid.len()];
    bad[4] = f64::NAN;
    assert!(matches!(p.project(&mut bad), Err(Error::NonFiniteInput { .. })));
    let both = Stack::new(vec![Box::new(a), Box::new(b)]).unwrap();
    let p = Projector::new(&both, ProjectOptions::default()).unwrap();
    let mut u = vec![0.0; grid.len()];
    match p.project(&mut u) {
        Err(Error::ProjectionFailed { constraint, residual, .. }) => {
            assert!(constraint.contains("Dirichlet"), "{constraint}");
            assert!((residual - 0.25).abs() < 1e-12, "residual {residual}");
        }
        other => panic!("expected ProjectionFailed, got {other:?}"),
    }
    assert!(LinearConstraint::initial_condition(&grid, &[1.0; 3]).is_err());
    assert!(Projector::new(&both, ProjectOptions { tol: 0.0, ..ProjectOptions::default() }).is_err());
}
