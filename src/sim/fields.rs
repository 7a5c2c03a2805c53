//! Field simulators: solvers with their own scheme and randomness (the spectral Navier–Stokes
//! solver, the Darcy solver), as opposed to diffsol [`super::System`]s. The dataset pipeline
//! ([`crate::io::dataset`]) shards, writes and resumes them the same way: each sample draws its
//! parameters and its random inputs (initial vorticity, permeability) from its own stream.

use rand::SeedableRng;

use super::darcy::{DarcyProblem, Permeability};
use super::grf::Grf;
use super::ns2d::{Forcing, Ns2d, Ns2dConfig};
use crate::{Error, Result};

/// One field dataset of a sample: its name and shape without the sample axis.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldDataset {
    /// Dataset name in the shard files (`tensor`, `nu`).
    pub name: String,
    /// Shape of one sample.
    pub shape: Vec<usize>,
}

/// A solver that turns parameters and a seed into fields on a grid.
pub trait FieldSimulator: Send + Sync {
    /// Name in files and errors (`"ns2d"`).
    fn name(&self) -> String;
    /// Parameter names, in the order of `p`.
    fn param_names(&self) -> Vec<String>;
    /// Default parameter values.
    fn params(&self) -> Vec<f64>;
    /// Rejects parameters outside the model's domain.
    fn validate(&self, p: &[f64]) -> Result<()>;
    /// Whether the problem is steady (one output, no time axis beyond a singleton).
    fn steady(&self) -> bool;
    /// The datasets of one sample for `n_times` output times, the main one first.
    fn datasets(&self, n_times: usize) -> Vec<FieldDataset>;
    /// Spatial axes: name, coordinates, boundary description (`"periodic"`, `"dirichlet 0"`).
    fn axes(&self) -> Vec<(String, Vec<f64>, String)>;
    /// Simulates one sample with parameters `p` and random inputs from `seed`: the values of
    /// each of [`FieldSimulator::datasets`], flat row-major.
    fn simulate(&self, p: &[f64], seed: u64, times: &[f64]) -> Result<Vec<Vec<f64>>>;
}

/// The field simulators by name, on `n × n` grids (`None`: 64):
/// - `ns2d`: the FNO / PCFM setting, `[0, 1)²`, `ν = 10⁻³`, diagonal forcing `a = 0.1`, initial
///   vorticity from [`Grf::default`];
/// - `ns2d_kolmogorov`: `[0, 2π)²`, `ν = 10⁻²`, drag `0.1`, Kolmogorov forcing `k_f = 4`,
///   `A = 1` (Kochkov et al. 2021's setting at a resolvable Reynolds number), initial vorticity
///   `σ = 10, τ = 3, α = 2.5`;
/// - `ns2d_decaying`: `[0, 2π)²`, `ν = 10⁻³`, no forcing, the same initial law;
/// - `darcy`: PDEBench's two-phase permeability (12 / 3), `f = 1`, `u = 0` on the boundary;
/// - `darcy_lognormal`: `a = e^g`, `g ~ N(0, 9(−Δ + 9I)^{−2})`, `f = 1`, `u = 0`.
///
/// Returns `Ok(None)` for names that are not field simulators.
///
/// # Errors
/// `InvalidArgument` for a grid size the solver rejects.
pub fn by_name(name: &str, n: Option<usize>) -> Result<Option<Box<dyn FieldSimulator>>> {
    let n = n.unwrap_or(64);
    let tau = std::f64::consts::TAU;
    let turbulent = Grf { sigma: 10.0, tau: 3.0, alpha: 2.5, zero_mean: true };
    let sim: Box<dyn FieldSimulator> = match name {
        "ns2d" => Box::new(Ns2dSimulator::new(Ns2dConfig { n, ..Ns2dConfig::default() }, Grf::default())?),
        "ns2d_kolmogorov" => Box::new(Ns2dSimulator::new(
            Ns2dConfig { n, length: tau, viscosity: 1e-2, drag: 0.1, forcing: Forcing::Kolmogorov { wavenumber: 4, amplitude: 1.0 }, cfl: 0.5 },
            turbulent,
        )?),
        "ns2d_decaying" => {
            Box::new(Ns2dSimulator::new(Ns2dConfig { n, length: tau, viscosity: 1e-3, drag: 0.0, forcing: Forcing::None, cfl: 0.5 }, turbulent)?)
        }
        "darcy" => Box::new(DarcySimulator::new(n, Permeability::default(), 1.0, 0.0)?),
        "darcy_lognormal" => {
            Box::new(DarcySimulator::new(n, Permeability::LogNormal { grf: Grf { sigma: 3.0, tau: 3.0, alpha: 2.0, zero_mean: false }, mean: 0.0 }, 1.0, 0.0)?)
        }
        _ => return Ok(None),
    };
    Ok(Some(sim))
}

/// The names [`by_name`] knows.
pub const NAMES: [&str; 5] = ["ns2d", "ns2d_kolmogorov", "ns2d_decaying", "darcy", "darcy_lognormal"];

/// Navier–Stokes vorticity frames `tensor [T, n, n]` from a random initial vorticity.
/// Parameters: `viscosity`, `drag`, `forcing_amplitude`.
#[derive(Clone, Debug)]
pub struct Ns2dSimulator {
    /// The solver settings (the parameters override viscosity, drag and amplitude).
    pub cfg: Ns2dConfig,
    /// The law of the initial vorticity.
    pub initial: Grf,
}

impl Ns2dSimulator {
    /// Checks the settings.
    pub fn new(cfg: Ns2dConfig, initial: Grf) -> Result<Self> {
        cfg.validate()?;
        initial.validate()?;
        Ok(Ns2dSimulator { cfg, initial })
    }

    /// The solver settings with parameters `p` (`[viscosity, drag, forcing_amplitude]`; missing
    /// entries keep the defaults).
    pub fn config(&self, p: &[f64]) -> Ns2dConfig {
        let d = self.params();
        let p: Vec<f64> = (0..3).map(|k| p.get(k).copied().unwrap_or(d[k])).collect();
        let forcing = match self.cfg.forcing {
            Forcing::None => Forcing::None,
            Forcing::Kolmogorov { wavenumber, .. } => Forcing::Kolmogorov { wavenumber, amplitude: p[2] },
            Forcing::Diagonal { .. } => Forcing::Diagonal { amplitude: p[2] },
        };
        Ns2dConfig { viscosity: p[0], drag: p[1], forcing, ..self.cfg }
    }
}

impl FieldSimulator for Ns2dSimulator {
    fn name(&self) -> String {
        match self.cfg.forcing {
            Forcing::None => "ns2d_decaying",
            Forcing::Kolmogorov { .. } => "ns2d_kolmogorov",
            Forcing::Diagonal { .. } => "ns2d",
        }
        .into()
    }
    fn param_names(&self) -> Vec<String> {
        vec!["viscosity".into(), "drag".into(), "forcing_amplitude".into()]
    }
    fn params(&self) -> Vec<f64> {
        let a = match self.cfg.forcing {
            Forcing::None => 0.0,
            Forcing::Kolmogorov { amplitude, .. } | Forcing::Diagonal { amplitude } => amplitude,
        };
        vec![self.cfg.viscosity, self.cfg.drag, a]
    }
    fn validate(&self, p: &[f64]) -> Result<()> {
        if p.len() != 3 {
            return Err(Error::invalid("params", format!("ns2d takes three parameters (viscosity, drag, forcing_amplitude), got {p:?}")));
        }
        self.config(p).validate()
    }
    fn steady(&self) -> bool {
        false
    }
    fn datasets(&self, n_times: usize) -> Vec<FieldDataset> {
        vec![FieldDataset { name: "tensor".into(), shape: vec![n_times, self.cfg.n, self.cfg.n] }]
    }
    fn axes(&self) -> Vec<(String, Vec<f64>, String)> {
        let x = self.cfg.points();
        vec![("x".into(), x.clone(), "periodic".into()), ("y".into(), x, "periodic".into())]
    }
    fn simulate(&self, p: &[f64], seed: u64, times: &[f64]) -> Result<Vec<Vec<f64>>> {
        self.validate(p)?;
        let mut ns = Ns2d::new(self.config(p))?;
        ns.set_random_vorticity(&self.initial, &mut rand::rngs::StdRng::seed_from_u64(seed))?;
        Ok(vec![ns.frames(times)?])
    }
}

/// Darcy flow on a random permeability: `nu [n, n]` (the permeability, PDEBench's name) and
/// `tensor [1, n, n]` (the pressure). Parameters: `source` (PDEBench's `β`), `boundary_value`.
#[derive(Clone, Debug)]
pub struct DarcySimulator {
    /// Cells per side.
    pub n: usize,
    /// The permeability law.
    pub permeability: Permeability,
    /// Default constant source `f`.
    pub source: f64,
    /// Default Dirichlet value `g`.
    pub boundary: f64,
}

impl DarcySimulator {
    /// Checks the settings.
    pub fn new(n: usize, permeability: Permeability, source: f64, boundary: f64) -> Result<Self> {
        if n < 2 {
            return Err(Error::invalid("n", format!("Darcy needs at least 2 cells per side, got {n}")));
        }
        permeability.validate()?;
        let s = DarcySimulator { n, permeability, source, boundary };
        s.validate(&[source, boundary])?;
        Ok(s)
    }

    /// Cell-centre coordinates `(i + ½)/n`.
    pub fn points(&self) -> Vec<f64> {
        (0..self.n).map(|i| (i as f64 + 0.5) / self.n as f64).collect()
    }
}

impl FieldSimulator for DarcySimulator {
    fn name(&self) -> String {
        match self.permeability {
            Permeability::TwoPhase { .. } => "darcy",
            Permeability::LogNormal { .. } => "darcy_lognormal",
        }
        .into()
    }
    fn param_names(&self) -> Vec<String> {
        vec!["source".into(), "boundary_value".into()]
    }
    fn params(&self) -> Vec<f64> {
        vec![self.source, self.boundary]
    }
    fn validate(&self, p: &[f64]) -> Result<()> {
        if p.len() != 2 || p.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("params", format!("darcy takes two finite parameters (source, boundary_value), got {p:?}")));
        }
        Ok(())
    }
    fn steady(&self) -> bool {
        true
    }
    fn datasets(&self, _: usize) -> Vec<FieldDataset> {
        vec![FieldDataset { name: "tensor".into(), shape: vec![1, self.n, self.n] }, FieldDataset { name: "nu".into(), shape: vec![self.n, self.n] }]
    }
    fn axes(&self) -> Vec<(String, Vec<f64>, String)> {
        let x = self.points();
        let b = format!("dirichlet {}", self.boundary);
        vec![("x".into(), x.clone(), b.clone()), ("y".into(), x, b)]
    }
    fn simulate(&self, p: &[f64], seed: u64, _: &[f64]) -> Result<Vec<Vec<f64>>> {
        self.validate(p)?;
        let a = self.permeability.sample(self.n, &mut rand::rngs::StdRng::seed_from_u64(seed));
        let u = DarcyProblem::constant(a.clone(), p[0], p[1])?.solve()?;
        Ok(vec![u, a])
    }
}
