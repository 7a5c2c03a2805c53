//! The three PDE families of the study (see the parent module's docs): their factors, the
//! simulator of a member, the condition each ensemble fixes and its hard constraint, and the
//! residual used in training.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::{PdeProblem, PdeStudyConfig};
use crate::pde::{self, BoundaryFlux, Constraint, Grid, LinearConstraint, MassBalance, Points, Quadrature, Side, SourceTerm, Stack, TimeValues};
use crate::sim::systems::{Boundary, Grid1d, Pde1d, Reaction};
use crate::Result;

const BURGERS_NU: f64 = 0.02;
// `D` large enough that the Neumann boundary layer `√(D/r)` spans several cells of the
// 32-cell grid: with D = 0.01, r = 4 the simulator's own fields miss the one-sided
// stencil's slope by 0.1 (under-resolved layer), a floor no sampler could beat.
const RD_D: f64 = 0.05;
const RD_R: f64 = 2.0;
const RD_WIDTH: f64 = 0.15;

/// The factors of one member of a family (see the module docs).
pub(super) type Factors = Vec<f64>;

pub(super) fn draw_factors(problem: PdeProblem, rng: &mut StdRng) -> Factors {
    match problem {
        PdeProblem::Heat => vec![rng.random_range(0.0..1.0), rng.random_range(0.0..std::f64::consts::PI), rng.random_range(1.0..5.0)],
        PdeProblem::Burgers => vec![rng.random_range(0.2..0.5), rng.random_range(0.2..1.0)],
        PdeProblem::ReactionDiffusion => vec![rng.random_range(0.3..0.7), rng.random_range(0.4..0.6), rng.random_range(0.0..0.5), rng.random_range(-0.5..0.0)],
    }
}

pub(super) fn factor_names(problem: PdeProblem) -> Vec<String> {
    let n: &[&str] = match problem {
        PdeProblem::Heat => &["offset_c", "phase_phi", "diffusivity_D"],
        PdeProblem::Burgers => &["front_p", "left_value_uL"],
        PdeProblem::ReactionDiffusion => &["amplitude_a", "centre_c", "left_slope_gL", "right_slope_gR"],
    };
    n.iter().map(|s| s.to_string()).collect()
}

/// Indices of the condition's factors.
pub(super) fn condition_indices(problem: PdeProblem) -> &'static [usize] {
    match problem {
        PdeProblem::Heat => &[0, 1],
        PdeProblem::Burgers => &[1],
        PdeProblem::ReactionDiffusion => &[2, 3],
    }
}

pub(super) fn system(problem: PdeProblem, nx: usize, f: &[f64]) -> Pde1d {
    match problem {
        PdeProblem::Heat => {
            let g = Grid1d::new(nx, std::f64::consts::TAU, Boundary::Periodic);
            let u0 = g.points().iter().map(|x| f[0] + (x + f[1]).sin()).collect();
            Pde1d::heat(g, f[2], u0)
        }
        PdeProblem::Burgers => {
            let g = Grid1d::new(nx, 1.0, Boundary::Dirichlet { left: f[1], right: 0.0 });
            let u0 = g.points().iter().map(|x| 1.0 / (1.0 + ((x - f[0]) / 0.05).exp())).collect();
            Pde1d::burgers(g, BURGERS_NU, u0)
        }
        PdeProblem::ReactionDiffusion => {
            let (gl, gr) = (f[2], f[3]);
            let g = Grid1d::new(nx, 1.0, Boundary::Neumann { left: gl, right: gr });
            // A bump b plus a quadratic q whose end slopes make up the Neumann data, so u₀
            // itself satisfies them (an incompatible u₀ starts an unresolved boundary layer).
            let bump = |x: f64| f[0] * (-(x - f[1]).powi(2) / (2.0 * RD_WIDTH * RD_WIDTH)).exp();
            let slope = |x: f64| -bump(x) * (x - f[1]) / (RD_WIDTH * RD_WIDTH);
            let (al, be) = (gl - slope(0.0), gr - slope(1.0));
            let raw: Vec<f64> = g.points().iter().map(|&x| bump(x) + al * x + 0.5 * (be - al) * x * x).collect();
            let low = raw.iter().copied().fold(f64::INFINITY, f64::min).min(0.0);
            let u0 = raw.iter().map(|v| 0.05 + v - low).collect();
            Pde1d::reaction_diffusion(g, Reaction::FisherKpp, RD_D, RD_R, u0)
        }
    }
}

/// The constraint of a condition (the factors' condition entries, the rest ignored).
pub(super) fn condition_constraint(problem: PdeProblem, grid: &Grid, nx: usize, f: &[f64]) -> Result<Box<dyn Constraint>> {
    Ok(match problem {
        PdeProblem::Heat => {
            let sys = system(problem, nx, f);
            Box::new(Stack::new(vec![
                Box::new(LinearConstraint::initial_condition(grid, &sys.u0)?),
                Box::new(LinearConstraint::mass_conservation(grid, 0, Quadrature::Uniform, None)?),
            ])?)
        }
        PdeProblem::Burgers => Box::new(Stack::new(vec![
            Box::new(LinearConstraint::dirichlet(grid, 0, Side::Left, &TimeValues::Constant(f[1]), 0)?),
            Box::new(LinearConstraint::dirichlet(grid, 0, Side::Right, &TimeValues::Constant(0.0), 0)?),
            Box::new(MassBalance::new(grid, 0, Quadrature::Interior, None, BoundaryFlux::Burgers { viscosity: BURGERS_NU })?),
        ])?),
        PdeProblem::ReactionDiffusion => {
            let (gl, gr) = (f[2], f[3]);
            let source = SourceTerm::Reaction { reaction: Reaction::FisherKpp, rate: RD_R };
            Box::new(Stack::new(vec![
                Box::new(LinearConstraint::neumann(grid, 0, Side::Left, Points::Cells, &TimeValues::Constant(gl), 1)?),
                Box::new(LinearConstraint::neumann(grid, 0, Side::Right, Points::Cells, &TimeValues::Constant(gr), 1)?),
                Box::new(MassBalance::new(grid, 0, Quadrature::Uniform, Some(source), BoundaryFlux::Known(TimeValues::Constant(RD_D * (gr - gl))))?),
            ])?)
        }
    })
}

/// The output times `t_k = k/(T − 1)` on `[0, 1]`.
pub(super) fn output_times(cfg: &PdeStudyConfig) -> Vec<f64> {
    (0..cfg.nt).map(|k| k as f64 / (cfg.nt - 1) as f64).collect()
}

/// The space-time grid of `cfg` and the constraint of one condition drawn with `seed`
/// (for benchmarks and tools that time or inspect a study's constraint without its data).
///
/// # Errors
/// As the constraint constructors (grids too small for a stencil).
pub fn sample_condition(cfg: &PdeStudyConfig, seed: u64) -> Result<(Grid, Box<dyn Constraint>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let f = draw_factors(cfg.problem, &mut rng);
    let sys = system(cfg.problem, cfg.nx, &f);
    let times = output_times(cfg);
    let grid = pde::space_time_grid(&sys.grid, &times)?;
    let c = condition_constraint(cfg.problem, &grid, cfg.nx, &f)?;
    Ok((grid, c))
}

/// A constraint every training field satisfies, for the optional PDE-residual loss: mass
/// conservation (heat) and the Burgers mass balance; none for reaction–diffusion, whose
/// balance depends on each field's boundary data.
pub(super) fn training_residual(problem: PdeProblem, grid: &Grid) -> Result<Option<Box<dyn Constraint>>> {
    Ok(match problem {
        PdeProblem::Heat => Some(Box::new(LinearConstraint::mass_conservation(grid, 0, Quadrature::Uniform, None)?)),
        PdeProblem::Burgers => Some(Box::new(MassBalance::new(grid, 0, Quadrature::Interior, None, BoundaryFlux::Burgers { viscosity: BURGERS_NU })?)),
        PdeProblem::ReactionDiffusion => None,
    })
}
