//! The library of physical systems, each with its parameters documented.

mod kinetics;
mod ode;
mod pde;

pub use kinetics::{hires, HiresRhs, HIRES_PARAMS, HIRES_REFERENCE, HIRES_T_END};
pub use ode::{matvec, with_scratch, DenseSystem, LinearOscillator, Lorenz, LotkaVolterra, Pendulum, Robertson, VanDerPol};
pub use pde::{ic, Boundary, Brusselator2d, Grid1d, Heat2d, Pde1d, Pde1dKind, Reaction};

use super::System;
use crate::{Error, Result};

/// The names [`by_name`] knows.
pub const NAMES: [&str; 13] = [
    "lotka_volterra",
    "robertson",
    "hires",
    "van_der_pol",
    "lorenz",
    "pendulum",
    "linear_oscillator",
    "heat1d",
    "heat2d",
    "burgers1d",
    "fisher_kpp1d",
    "allen_cahn1d",
    "brusselator2d",
];

/// A library system with its default parameters, grid and initial state
/// (PDEs: 64 points on `[0, 1]` — heat 1D with a Dirichlet sine mode, Burgers
/// periodic with `sin 2πx`, Fisher–KPP Neumann with a Gaussian bump, Allen–Cahn
/// periodic with `0.5 sin 2πx`; heat 2D: 32 × 32 Dirichlet sine mode;
/// Brusselator: 32 × 32).
pub fn by_name(name: &str) -> Result<Box<dyn System>> {
    let line = |b| Grid1d::new(64, 1.0, b);
    let dirichlet0 = Boundary::Dirichlet { left: 0.0, right: 0.0 };
    Ok(match name {
        "lotka_volterra" => Box::new(LotkaVolterra::default()),
        "robertson" => Box::new(Robertson::default()),
        "hires" => Box::new(hires()),
        "van_der_pol" => Box::new(VanDerPol::default()),
        "lorenz" => Box::new(Lorenz::default()),
        "pendulum" => Box::new(Pendulum::default()),
        "linear_oscillator" => Box::new(LinearOscillator::default()),
        "heat1d" => {
            let g = line(dirichlet0);
            Box::new(Pde1d::heat(g, 0.1, ic::sine(&g, 1, 1.0)))
        }
        "heat2d" => {
            let g = Grid1d::new(32, 1.0, dirichlet0);
            Box::new(Heat2d::sine_mode(g, g, 0.1, 1, 2))
        }
        "burgers1d" => {
            let g = line(Boundary::Periodic);
            let u0 = g.points().iter().map(|x| (std::f64::consts::TAU * x).sin()).collect();
            Box::new(Pde1d::burgers(g, 0.01, u0))
        }
        "fisher_kpp1d" => {
            let g = line(Boundary::Neumann { left: 0.0, right: 0.0 });
            Box::new(Pde1d::reaction_diffusion(g, Reaction::FisherKpp, 1e-3, 5.0, ic::gaussian(&g, 0.5, 0.05, 1.0)))
        }
        "allen_cahn1d" => {
            let g = line(Boundary::Periodic);
            let u0 = g.points().iter().map(|x| 0.5 * (std::f64::consts::TAU * x).sin()).collect();
            Box::new(Pde1d::reaction_diffusion(g, Reaction::AllenCahn, 1e-3, 1.0, u0))
        }
        "brusselator2d" => Box::new(Brusselator2d::new(32)),
        other => return Err(Error::invalid("system", format!("unknown system `{other}`; known: {}", NAMES.join(", ")))),
    })
}
