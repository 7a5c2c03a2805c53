//! The physics behind the PDE-field studies: `sim`'s reference solutions written as
//! space-time fields satisfy the constraints the samplers impose, to solver tolerance where the
//! constraint is exact for the semi-discrete system and at the expected order where it
//! discretises time.

use physflow::pde::{self, BoundaryFlux, Constraint, LinearConstraint, MassBalance, Operator, PdeResidual, Points, Quadrature, Side, SourceTerm, TimeValues};
use physflow::sim::systems::{ic, Boundary, Grid1d, Pde1d, Reaction};
use physflow::sim::{Integrator, SimOptions};

fn tight() -> SimOptions {
    SimOptions { method: Integrator::Bdf, rtol: 1e-11, atol: 1e-12, ..SimOptions::default() }
}

fn times(n: usize, t1: f64) -> Vec<f64> {
    (0..n).map(|k| t1 * k as f64 / (n - 1) as f64).collect()
}

/// Least-squares slope of log(residual) against log(step) for steps halving each time, and the
/// check that it is within ±0.3 of `order` (the tolerance DESIGN.md sets for convergence orders).
fn assert_order(what: &str, residuals: &[f64], order: f64) {
    let n = residuals.len() as f64;
    let xs: Vec<f64> = (0..residuals.len()).map(|k| -(k as f64) * 2f64.ln()).collect();
    let ys: Vec<f64> = residuals.iter().map(|r| r.ln()).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let slope = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / xs.iter().map(|x| (x - mx).powi(2)).sum::<f64>();
    assert!((slope - order).abs() <= 0.3, "{what}: observed order {slope:.2}, expected {order} ({residuals:?})");
}

fn max_residual(c: &dyn Constraint, u: &[f64]) -> f64 {
    let mut h = vec![0.0; c.rows()];
    c.residual(u, &mut h);
    h.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// The heat reference conserves mass to solver tolerance: periodic and zero-flux Neumann
/// problems, random Fourier initial states, BDF at rtol 1e-11 — `M(t) − M(0)` stays below
/// 1e-9 (BDF preserves linear invariants up to its Newton tolerance), and the space-time
/// field satisfies the mass-conservation constraint to the same level.
#[test]
fn heat_reference_conserves_mass() {
    for boundary in [Boundary::Periodic, Boundary::Neumann { left: 0.0, right: 0.0 }] {
        let g = Grid1d::new(32, 1.0, boundary);
        let u0: Vec<f64> = ic::random_fourier(&g, 3, 4, 1.0).iter().map(|v| v + 2.0).collect();
        let sys = Pde1d::heat(g, 0.05, u0);
        let ts = times(21, 1.0);
        let (grid, fields) = pde::simulate_fields(&[sys], &ts, &tight(), false).unwrap();
        let mass = LinearConstraint::mass_conservation(&grid, 0, Quadrature::Uniform, None).unwrap();
        let r = max_residual(&mass, fields.row(0).as_slice().unwrap());
        assert!(r < 1e-9, "{boundary:?}: mass drift {r:.2e}");
        // Not trivially conserved: the field does change.
        let spread = fields.row(0).iter().fold(0.0f64, |m, v| m.max((v - 2.0).abs()));
        assert!(spread > 0.1);
    }
}

/// The periodic sine mode decays as the discrete Laplacian's eigenvalue says,
/// `u(x, t) = sin(2πx) exp(−D (4/h²) sin²(πh) t)`: the space-time layout puts `x` first and `t`
/// last.
#[test]
fn space_time_layout_matches_the_exact_heat_mode() {
    let n = 16;
    let g = Grid1d::new(n, 1.0, Boundary::Periodic);
    let h = g.h();
    let u0: Vec<f64> = g.points().iter().map(|x| (std::f64::consts::TAU * x).sin()).collect();
    let d = 0.1;
    let ts = times(5, 0.5);
    let (grid, f) = pde::simulate_fields(&[Pde1d::heat(g, d, u0)], &ts, &tight(), false).unwrap();
    let rate = d * 4.0 / (h * h) * (std::f64::consts::PI * h).sin().powi(2);
    for i in 0..n {
        for (k, t) in ts.iter().enumerate() {
            let exact = (std::f64::consts::TAU * i as f64 * h).sin() * (-rate * t).exp();
            assert!((f[[0, grid.index(0, i, k)]] - exact).abs() < 1e-8, "({i}, {k})");
        }
    }
}

/// Viscous Burgers with Dirichlet values written as end nodes: the Dirichlet rows hold exactly;
/// the mass balance with the exact semi-discrete boundary flux errs only by the trapezoid rule
/// in time (per interval O(Δt³)); the Crank–Nicolson PDE residual is O(Δt²).
#[test]
fn burgers_fields_satisfy_their_constraints_at_the_expected_orders() {
    let g = Grid1d::new(30, 1.0, Boundary::Dirichlet { left: 0.8, right: 0.0 });
    let u0: Vec<f64> = g.points().iter().map(|x| 0.8 / (1.0 + ((x - 0.4) / 0.05).exp())).collect();
    let nu = 0.02;
    let sys = Pde1d::burgers(g, nu, u0);
    let mut mb = Vec::new();
    let mut res = Vec::new();
    for nt in [41, 81, 161] {
        let (grid, f) = pde::simulate_fields(std::slice::from_ref(&sys), &times(nt, 0.5), &tight(), false).unwrap();
        let u = f.row(0).to_vec();
        for side in [Side::Left, Side::Right] {
            let value = if side == Side::Left { 0.8 } else { 0.0 };
            let dc = LinearConstraint::dirichlet(&grid, 0, side, &TimeValues::Constant(value), 0).unwrap();
            assert_eq!(max_residual(&dc, &u), 0.0);
        }
        let balance = MassBalance::new(&grid, 0, Quadrature::Interior, None, BoundaryFlux::Burgers { viscosity: nu }).unwrap();
        mb.push(max_residual(&balance, &u));
        let pr = PdeResidual::new(&grid, Operator::Burgers { viscosity: nu }, 0.5).unwrap();
        res.push(max_residual(&pr, &u));
    }
    eprintln!("Burgers: mass-balance residual {mb:?}, Crank–Nicolson residual {res:?}");
    assert_order("Burgers mass balance", &mb, 3.0);
    assert_order("Burgers Crank–Nicolson residual", &res, 2.0);
}

/// Fisher–KPP on cell centres with Neumann data: the mass balance with the source and the
/// known boundary inflow `D (g_R − g_L)` is third order per interval, and the one-sided Neumann
/// stencils hold to O(h²) at fixed Δt for an
/// initial state consistent with the boundary data.
#[test]
fn reaction_diffusion_fields_satisfy_their_constraints_at_the_expected_orders() {
    let (d, r, gl, gr) = (0.01, 3.0, 0.1, -0.05);
    let source = SourceTerm::Reaction { reaction: Reaction::FisherKpp, rate: r };
    let system = |n: usize| {
        let g = Grid1d::new(n, 1.0, Boundary::Neumann { left: gl, right: gr });
        // Consistent with the Neumann data: u₀′(0) = g_L, u₀′(1) = g_R.
        let u0 = g.points().iter().map(|x| 0.3 + gl * x + 0.5 * (gr - gl) * x * x + 0.2 * (std::f64::consts::TAU * x).cos()).collect();
        Pde1d::reaction_diffusion(g, Reaction::FisherKpp, d, r, u0)
    };
    let mut mb = Vec::new();
    for nt in [11, 21, 41] {
        let (grid, f) = pde::simulate_fields(&[system(32)], &times(nt, 0.5), &tight(), false).unwrap();
        let balance = MassBalance::new(&grid, 0, Quadrature::Uniform, Some(source), BoundaryFlux::Known(TimeValues::Constant(d * (gr - gl)))).unwrap();
        mb.push(max_residual(&balance, f.row(0).as_slice().unwrap()));
    }
    eprintln!("reaction–diffusion: mass-balance residual {mb:?}");
    assert_order("reaction–diffusion mass balance", &mb, 3.0);
    let mut nm = Vec::new();
    for n in [16, 32, 64] {
        let (grid, f) = pde::simulate_fields(&[system(n)], &times(6, 0.5), &tight(), false).unwrap();
        let left = LinearConstraint::neumann(&grid, 0, Side::Left, Points::Cells, &TimeValues::Constant(gl), 0).unwrap();
        let right = LinearConstraint::neumann(&grid, 0, Side::Right, Points::Cells, &TimeValues::Constant(gr), 0).unwrap();
        let u = f.row(0).to_vec();
        nm.push(max_residual(&left, &u).max(max_residual(&right, &u)));
    }
    eprintln!("reaction–diffusion: Neumann stencil residual {nm:?}");
    assert_order("Neumann stencil", &nm, 2.0);
}
