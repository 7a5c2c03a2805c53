//! The configuration of the particle-system study: the system, the method, and every
//! setting with its per-system default ([`BgParticlesConfig::for_system`]); and how the
//! command line's `--system`, `--method` and `--steps` meet a config file ([`particle_config`]).

use std::path::PathBuf;

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::boltzmann::eqfm::{EqFmConfig, Likelihood};
use crate::boltzmann::mcmc::MalaConfig;
use crate::boltzmann::TrainConfig;
use crate::energy::{Energy, LennardJones, MultiDoubleWell};
use crate::flows::FlowConfig;
use crate::fm::Perturbation;
use crate::nn::EgnnConfig;
use crate::{Error, Result};

/// Which particle system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ParticleSystem {
    /// DW4: 4 particles in 2D, double-well pair potential.
    Dw4,
    /// LJ13: 13 Lennard-Jones particles in 3D with a harmonic restraint to the centre of mass.
    Lj13,
    /// LJ55: 55 Lennard-Jones particles in 3D, the same energy.
    Lj55,
}

impl ParticleSystem {
    /// Every system, in the order of the CLI's help.
    pub const ALL: [ParticleSystem; 3] = [ParticleSystem::Dw4, ParticleSystem::Lj13, ParticleSystem::Lj55];

    /// The short name used on the command line, in file names and reports.
    pub fn name(self) -> &'static str {
        match self {
            ParticleSystem::Dw4 => "dw4",
            ParticleSystem::Lj13 => "lj13",
            ParticleSystem::Lj55 => "lj55",
        }
    }
}

impl std::str::FromStr for ParticleSystem {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ParticleSystem::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| Error::InvalidArgument {
            name: "system",
            reason: format!("unknown system `{s}` ({})", ParticleSystem::ALL.map(|p| p.name()).join(", ")),
        })
    }
}

/// Which generator the study trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BgMethod {
    /// RealNVP coupling layers in centre-of-mass-free coordinates, `w_D · NLL + w_E · KL`
    /// ([`crate::boltzmann::train()`]).
    Coupling,
    /// An EGNN continuous flow trained by equivariant flow matching
    /// ([`crate::boltzmann::eqfm`]), exact log-densities by the exact trace.
    EquivariantFm,
}

/// Configuration; every field has a default (per system, [`BgParticlesConfig::for_system`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BgParticlesConfig {
    /// The system.
    pub system: ParticleSystem,
    /// Training settings; `weight_data` and `weight_energy` mix the two losses.
    pub train: TrainConfig,
    /// MALA settings for the reference samples (chains, burn-in, samples per chain, …).
    pub mcmc: MalaConfig,
    /// Fraction of the MALA samples held out for the NLL.
    pub held_out: f64,
    /// Apply a uniformly random element of O(d) × S_n (rotation or reflection, and a relabelling
    /// of the particles) to every MALA sample. The target is invariant under both, so the
    /// augmented samples are still samples of it; without this, each chain's orientation and
    /// labels barely move in a few thousand steps, and a flow fits 128 orientations rather than
    /// the invariant density (LJ13: held-out NLL 61 against a training NLL of 34).
    pub augment: bool,
    /// The generator: a coupling flow trained by data and energy, or an equivariant continuous
    /// flow trained by flow matching on the MALA samples.
    pub method: BgMethod,
    /// Settings of the equivariant flow matching (`method = "equivariant_fm"`; the EGNN's
    /// particle count and dimension are set from the system, the seed from `train.seed`).
    pub eqfm: EqFmConfig,
    /// Held-out MALA samples scored for the NLL (at most; the exact-trace reverse solve of a
    /// continuous flow costs one backward pass per coordinate; 0 skips the NLL).
    pub n_nll: usize,
    /// Flow samples evaluated.
    pub n_eval: usize,
    /// Bootstrap resamples.
    pub n_boot: usize,
    /// The reference: an independent MALA run (its seed is derived from `train.seed`, its
    /// start noise drawn apart from the training run's), longer than `mcmc`.
    pub reference: MalaConfig,
    /// Other likelihood estimators whose weights are compared with the exact ones
    /// (equivariant flow only), each on `n_compare` fresh samples.
    pub compare: Vec<Likelihood>,
    /// Samples per compared estimator.
    pub n_compare: usize,
    /// An HDF5 file for the reference samples ([`crate::boltzmann::mcmc::McmcSamples::write_h5`]): read when it
    /// exists (its system, β and dimension must match), otherwise the reference run is made
    /// and written there. Without it the reference is always run; either way a copy is written
    /// next to the report.
    pub reference_file: Option<PathBuf>,
}

impl Default for BgParticlesConfig {
    fn default() -> Self {
        Self::for_system(ParticleSystem::Dw4)
    }
}

impl BgParticlesConfig {
    /// Defaults for `system`: RealNVP with LU mixing layers, mixed training (data weight 1,
    /// energy weight ramped to 0.1 over the first half), β = 1; MALA with 128 chains.
    pub fn for_system(system: ParticleSystem) -> Self {
        let (hidden, steps, cut, burn_in, samples, thin, step) = match system {
            ParticleSystem::Dw4 => (vec![64, 64], 3000, None, 2000, 200, 10, 0.05),
            ParticleSystem::Lj13 => (vec![128, 128], 3000, Some(100.0), 10_000, 200, 20, 0.002),
            ParticleSystem::Lj55 => (vec![256, 256], 3000, Some(1000.0), 20_000, 200, 50, 0.001),
        };
        let mut layers = Vec::new();
        for i in 0..8 {
            layers.push(crate::flows::LayerConfig::AffineCoupling { parity: i % 2, hidden: hidden.clone(), scale_bound: 3.0 });
            if i % 2 == 1 {
                layers.push(crate::flows::LayerConfig::LuLinear);
            }
        }
        let mut flow = FlowConfig { layers };
        flow.layers.insert(0, crate::flows::LayerConfig::ActNorm);
        BgParticlesConfig {
            system,
            train: TrainConfig {
                flow,
                steps,
                batch_size: 256,
                lr: 5e-4,
                weight_data: 1.0,
                weight_energy: 0.1,
                energy_ramp: steps / 2,
                energy_cut: cut,
                log_every: 50,
                ..TrainConfig::default()
            },
            mcmc: MalaConfig { chains: 128, burn_in, samples, thin, step_size: step, ..MalaConfig::default() },
            held_out: 0.2,
            augment: true,
            method: BgMethod::EquivariantFm,
            eqfm: eqfm_defaults(system),
            n_nll: 500,
            n_eval: 2000,
            n_boot: 200,
            reference: MalaConfig { chains: 128, burn_in: 2 * burn_in, samples: 1000, thin, step_size: step, ..MalaConfig::default() },
            compare: vec![
                Likelihood::Hutchinson { probes: 1 },
                // 20 steps, as the sampling solver (RK4 × 20); more steps lower the log-weight
                // variance at proportional cost.
                Likelihood::FlowPerturbation(Perturbation { sigma: 0.01, steps: 20 }),
            ],
            n_compare: if system == ParticleSystem::Lj55 { 200 } else { 1000 },
            reference_file: None,
        }
        .with_system_budget()
    }

    /// LJ13 and LJ55 on a CPU budget. LJ13: flow-perturbation weights for the main samples,
    /// the exact trace on 30 (compared) plus 30 held-out samples, 1000 training steps.
    /// LJ55: the exact trace costs 165 vector–Jacobian products per evaluation
    /// and sample, so the weights come from flow perturbation (unbiased, no Jacobian), no
    /// held-out NLL (it needs the exact trace) and 500 samples; the published-size model with
    /// exact weights is `benches/gpu/bg_lj55.toml`.
    fn with_system_budget(mut self) -> Self {
        if self.system == ParticleSystem::Lj13 {
            // The exact trace costs 39 VJPs per evaluation: ~20 s per sample on 2 cores, so
            // the main weights come from flow perturbation and the exact trace is compared on
            // 30 samples (and scores 30 held-out ones); 1000 training steps of 128.
            (self.n_nll, self.n_eval, self.n_compare) = (30, 1000, 30);
            self.eqfm.run.steps = 1000;
            self.eqfm.likelihood = Likelihood::FlowPerturbation(Perturbation { sigma: 0.01, steps: 20 });
            self.compare = vec![Likelihood::Exact];
        }
        if self.system == ParticleSystem::Lj55 {
            (self.n_nll, self.n_eval) = (0, 500);
            self.eqfm.likelihood = Likelihood::FlowPerturbation(Perturbation { sigma: 0.01, steps: 20 });
            self.compare.clear();
        }
        self
    }

    /// The steps of the chosen method's training.
    pub fn steps_mut(&mut self) -> &mut usize {
        match self.method {
            BgMethod::Coupling => &mut self.train.steps,
            BgMethod::EquivariantFm => &mut self.eqfm.run.steps,
        }
    }

    pub(super) fn cartesian_energy(&self) -> Box<dyn Energy> {
        match self.system {
            ParticleSystem::Dw4 => Box::new(MultiDoubleWell::dw4()),
            ParticleSystem::Lj13 => Box::new(LennardJones::lj13()),
            ParticleSystem::Lj55 => Box::new(LennardJones::lj55()),
        }
    }

    /// A compact start for the chains: DW4 on a square of side d₀ = 4; LJ13 and LJ55 on the
    /// closed-shell FCC clusters of 13 and 55 particles at nearest-neighbour distance r_m = 1
    /// ([`fcc_cluster`]); plus noise.
    pub(super) fn start(&self, chains: usize, rng: &mut StdRng) -> Array2<f64> {
        let base: Vec<f64> = match self.system {
            ParticleSystem::Dw4 => vec![0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0],
            ParticleSystem::Lj13 => fcc_cluster(13),
            ParticleSystem::Lj55 => fcc_cluster(55),
        };
        Array2::from_shape_fn((chains, base.len()), |(_, k)| base[k] + 0.05 * (rng.random::<f64>() - 0.5))
    }
}

/// The `n` sites of the face-centred cubic lattice (nearest-neighbour distance 1) closest to a
/// site at the origin, flattened `[n·3]`. For n = 13 and 55 these are whole shells (1 + 12 and
/// 1 + 12 + 6 + 24 + 12 sites), so the cluster is centred and its shape does not depend on
/// how ties are broken.
pub(super) fn fcc_cluster(n: usize) -> Vec<f64> {
    let s = std::f64::consts::FRAC_1_SQRT_2;
    let r = (n as f64).cbrt().ceil() as i64 + 1;
    let mut sites: Vec<[f64; 3]> = Vec::new();
    for i in -2 * r..=2 * r {
        for j in -2 * r..=2 * r {
            for k in -2 * r..=2 * r {
                if (i + j + k).rem_euclid(2) == 0 {
                    sites.push([i as f64 * s, j as f64 * s, k as f64 * s]);
                }
            }
        }
    }
    let norm = |p: &[f64; 3]| p.iter().map(|v| v * v).sum::<f64>();
    sites.sort_by(|a, b| norm(a).total_cmp(&norm(b)).then(a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal)));
    sites.into_iter().take(n).flatten().collect()
}

/// Equivariant flow matching for `system`: DW4 with [`EqFmConfig::default`]; LJ13 and LJ55
/// with a 5-layer EGNN of width 64 (Klein et al. use 128; 64 fits a CPU budget).
fn eqfm_defaults(system: ParticleSystem) -> EqFmConfig {
    let mut c = EqFmConfig::default();
    match system {
        ParticleSystem::Dw4 => {}
        ParticleSystem::Lj13 => {
            c.egnn = EgnnConfig { particles: 13, spatial_dim: 3, layers: 5, hidden: 64, coord_init_scale: 1e-3 };
            c.run.batch_size = 128;
            c.chunk = 250;
        }
        ParticleSystem::Lj55 => {
            c.egnn = EgnnConfig { particles: 55, spatial_dim: 3, layers: 5, hidden: 64, coord_init_scale: 1e-3 };
            c.run.batch_size = 32;
            c.chunk = 50;
        }
    }
    c
}

/// The `system` key of a `bg particles` config table, if it has one.
fn table_system(table: &toml::Value, origin: &str) -> Result<Option<ParticleSystem>> {
    let fmt = |reason: String| Error::Format { path: origin.to_string(), reason };
    match table.get("system") {
        None => Ok(None),
        Some(toml::Value::String(s)) => s.parse::<ParticleSystem>().map(Some).map_err(|e: Error| fmt(e.to_string())),
        Some(other) => Err(fmt(format!("`system` must be a string, not {other}"))),
    }
}

/// The `bg particles` configuration: the system from `--system` or the file (they must
/// agree; DW4 when neither names one), the file's keys merged over that system's defaults
/// (not DW4's), then `--method`, `--steps` (of that method) and `--seed`. Touches no device,
/// so a bad command line fails before any tensor is made.
///
/// # Errors
/// `InvalidArgument` naming `--system` when it disagrees with the file's; `Format` for a bad
/// file or an unknown system in it.
pub fn particle_config(o: &crate::studies::Overrides) -> Result<BgParticlesConfig> {
    let flag = o.system;
    let in_file = match &o.config {
        Some((table, origin)) => table_system(table, origin)?,
        None => None,
    };
    let sys = match (flag, in_file) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::InvalidArgument { name: "--system", reason: format!("`{}` disagrees with the config file's system `{}`", a.name(), b.name()) })
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => ParticleSystem::Dw4,
    };
    // The steps belong to the method, so they are set after it.
    let plain = crate::studies::Overrides { steps: None, system: None, method: None, ..o.clone() };
    let mut cfg = crate::studies::configure::<super::BgParticlesStudy>(BgParticlesConfig::for_system(sys), &plain)?;
    if let Some(m) = o.method {
        cfg.method = m;
    }
    if let Some(n) = o.steps {
        *cfg.steps_mut() = n;
    }
    Ok(cfg)
}
