//! Every study behind one trait ([`Study`]) and in one table ([`TABLE`]), which the `physflow`
//! command and the demo tour ([`super::tour`]) read.
//!
//! A run's configuration is built in one order for every study: the study's defaults, then
//! a TOML table merged over them key by key (a `--config` file, or a section of the tour's
//! file), then the flags (`--seed`, `--steps`). Adding a study is its file (a config with
//! defaults, `run`, and `impl Study`) plus one line in [`TABLE`] and its subcommand in `cli`.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::config::merge_over;
use super::{bg_double_well, bg_particles, fm_double_well, fm_moons, neural_ode, neural_sde, param_fit, pde_darcy, pde_fields, pde_ns2d, stiff_hybrid};
use crate::{Error, Result};

/// What a run gets besides its configuration.
pub struct Context<'a> {
    /// The output root (`--out`); each study writes into its own directory under it.
    pub out: &'a Path,
    /// No progress bars.
    pub quiet: bool,
    /// Continue from the study's checkpoint (the neural ODE and SDE studies; the others resume
    /// a checkpoint of the same configuration by themselves).
    pub resume: bool,
    /// Remove the study's directory before running (`--fresh`): nothing is reused.
    pub fresh: bool,
    /// The training device, made on demand: a study that runs in f64 on the CPU must not find
    /// the CPU's float type already fixed to f32 by a device made before it.
    pub device: &'a dyn Fn() -> Result<Device>,
}

/// An end-to-end study: a configuration with defaults, a run that writes figures and a report
/// into its directory, and the one-paragraph summary the command prints.
pub trait Study {
    /// The configuration (serde, unknown keys refused, `Default` = the study's defaults).
    type Config: Serialize + DeserializeOwned + Default + Clone;
    /// What the run measured.
    type Report;

    /// Its directory under the output root (`neural_ode`, `bg_dw4`, `pde_heat`, …).
    fn dir(cfg: &Self::Config) -> String;
    /// The seed of everything random (`--seed`).
    fn seed(cfg: &mut Self::Config) -> &mut u64;
    /// The number of training steps or iterations (`--steps`).
    fn steps(cfg: &mut Self::Config) -> &mut usize;
    /// Runs the study, writing into `dir`.
    fn run(cfg: &Self::Config, dir: &Path, ctx: &Context) -> Result<Self::Report>;
    /// The numbers of a run, as the command prints them (one or a few lines, or a table).
    fn summary(cfg: &Self::Config, report: &Self::Report) -> String;
    /// The files the run wrote (figures, report, data).
    fn files(report: &Self::Report) -> &[String];
}

/// The flags and file of one run, before they meet a study's defaults.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// A TOML table merged over the defaults, and where it came from (for errors).
    pub config: Option<(toml::Value, String)>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--steps` (`--iterations`).
    pub steps: Option<usize>,
    /// `--system` (`bg particles` only).
    pub system: Option<super::bg_particles::ParticleSystem>,
    /// `--method` (`bg particles` only).
    pub method: Option<super::bg_particles::BgMethod>,
}

impl Overrides {
    /// The TOML file at `path` as the table to merge.
    ///
    /// # Errors
    /// As [`super::config::read_toml`].
    pub fn with_file(mut self, path: Option<&Path>) -> Result<Self> {
        if let Some(p) = path {
            self.config = Some((super::config::read_toml(p)?, p.display().to_string()));
        }
        Ok(self)
    }
}

/// What a run left behind.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The study's directory.
    pub dir: PathBuf,
    /// Its numbers, as [`Study::summary`] writes them.
    pub summary: String,
    /// The files written.
    pub files: Vec<String>,
}

/// One row of [`TABLE`].
pub struct Entry {
    /// The subcommand words (`"fm moons"`).
    pub command: &'static str,
    /// One line on what it does.
    pub about: &'static str,
    /// `Some(why)` for a study that runs on the CPU whatever `--device` says.
    pub cpu_only: Option<&'static str>,
    /// Builds the configuration from the defaults and `Overrides`, then runs.
    pub run: fn(&Overrides, &Context) -> Result<Outcome>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("command", &self.command).finish_non_exhaustive()
    }
}

/// Every study, as the `physflow` subcommand that runs it.
pub const TABLE: &[Entry] = &[
    Entry {
        command: "ode",
        about: "neural ODE: fit an MLP vector field to a damped pendulum with the adjoint",
        cpu_only: None,
        run: run_default::<neural_ode::NeuralOdeStudy>,
    },
    Entry {
        command: "sde",
        about: "neural SDE: fit drift and diffusion to double-well Langevin paths",
        cpu_only: None,
        run: run_default::<neural_sde::NeuralSdeStudy>,
    },
    Entry {
        command: "fit",
        about: "parameters of Lotka–Volterra from noisy data, by diffsol's adjoint sensitivities",
        cpu_only: Some(DIFFSOL_F64),
        run: run_default::<param_fit::ParamFitStudy>,
    },
    Entry {
        command: "hybrid",
        about: "a neural rate law inside a stiff kinetics model, solved by diffsol",
        cpu_only: Some(DIFFSOL_F64),
        run: run_default::<stiff_hybrid::StiffHybridStudy>,
    },
    Entry {
        command: "fm moons",
        about: "flow matching: 8 Gaussians to two moons (torchcfm's benchmark)",
        cpu_only: None,
        run: run_default::<fm_moons::FmMoonsStudy>,
    },
    Entry {
        command: "fm double-well",
        about: "flow matching between temperatures of a 2D double well",
        cpu_only: None,
        run: run_default::<fm_double_well::FmDoubleWellStudy>,
    },
    Entry {
        command: "bg double-well",
        about: "Boltzmann generator of a 2D double well, trained by energy",
        cpu_only: None,
        run: run_default::<bg_double_well::BgDoubleWellStudy>,
    },
    Entry { command: "bg particles", about: "Boltzmann generators of particle systems (DW4, LJ13, LJ55)", cpu_only: None, run: bg_particles::run_entry },
    Entry {
        command: "pde heat",
        about: "constrained generation of heat-equation fields",
        cpu_only: None,
        run: |o, c| pde_fields::run_entry(pde_fields::PdeProblem::Heat, o, c),
    },
    Entry {
        command: "pde reaction-diffusion",
        about: "constrained generation of reaction–diffusion fields",
        cpu_only: None,
        run: |o, c| pde_fields::run_entry(pde_fields::PdeProblem::ReactionDiffusion, o, c),
    },
    Entry {
        command: "pde burgers",
        about: "constrained generation of Burgers fields",
        cpu_only: None,
        run: |o, c| pde_fields::run_entry(pde_fields::PdeProblem::Burgers, o, c),
    },
    Entry { command: "pde ns2d", about: "generation of 2D Navier–Stokes vorticity fields", cpu_only: None, run: run_default::<pde_ns2d::PdeNs2dStudy> },
    Entry {
        command: "pde darcy",
        about: "generation of Darcy pressure fields with their flux constraint",
        cpu_only: None,
        run: run_default::<pde_darcy::PdeDarcyStudy>,
    },
];

const DIFFSOL_F64: &str = "diffsol runs in f64 on the CPU";

/// The row of `command` (`"fm moons"`).
///
/// # Errors
/// `InvalidArgument` listing the studies when there is none.
pub fn find(command: &str) -> Result<&'static Entry> {
    TABLE.iter().find(|e| e.command == command).ok_or_else(|| {
        let all: Vec<&str> = TABLE.iter().map(|e| e.command).collect();
        Error::invalid("study", format!("unknown study `{command}` ({})", all.join(", ")))
    })
}

fn run_default<S: Study>(o: &Overrides, ctx: &Context) -> Result<Outcome> {
    run_study::<S>(S::Config::default(), o, ctx)
}

/// `defaults`, the table of `o` merged over them, then `o`'s flags: the run.
///
/// # Errors
/// `Format` for a bad table, `InvalidArgument` for `--system`/`--method` given to a study
/// without them, and whatever the run returns.
pub fn run_study<S: Study>(defaults: S::Config, o: &Overrides, ctx: &Context) -> Result<Outcome> {
    refuse_particle_flags(o)?;
    let cfg = configure::<S>(defaults, o)?;
    finish::<S>(cfg, ctx)
}

/// `InvalidArgument` when `o` sets `--system` or `--method`, which only `bg particles` takes.
pub(crate) fn refuse_particle_flags(o: &Overrides) -> Result<()> {
    if o.system.is_some() || o.method.is_some() {
        return Err(Error::invalid("--system/--method", "only `bg particles` takes them"));
    }
    Ok(())
}

/// `defaults` with the table of `o` merged over them, then `--seed` and `--steps`.
///
/// # Errors
/// `Format` naming the table's origin.
pub fn configure<S: Study>(defaults: S::Config, o: &Overrides) -> Result<S::Config> {
    let mut cfg = match &o.config {
        None => defaults,
        Some((table, origin)) => merge_over(defaults, table.clone(), origin)?,
    };
    if let Some(seed) = o.seed {
        *S::seed(&mut cfg) = seed;
    }
    if let Some(n) = o.steps {
        *S::steps(&mut cfg) = n;
    }
    Ok(cfg)
}

/// Runs a configured study in its directory under `ctx.out`.
///
/// # Errors
/// Whatever the run returns.
pub fn finish<S: Study>(cfg: S::Config, ctx: &Context) -> Result<Outcome> {
    let dir = ctx.out.join(S::dir(&cfg));
    if ctx.fresh && dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    let report = S::run(&cfg, &dir, ctx)?;
    Ok(Outcome { summary: S::summary(&cfg, &report), files: S::files(&report).to_vec(), dir })
}
