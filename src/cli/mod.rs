//! The `physflow` command: global options and subcommands. Each subcommand parses its
//! arguments, calls the library and reports; `src/main.rs` only calls [`run`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::device::Backend;
use crate::studies::bg_double_well::{self, BgDoubleWellConfig};
use crate::studies::bg_particles::{self, BgMethod, BgParticlesConfig, ParticleSystem};
use crate::studies::fm_double_well::{self, FmDoubleWellConfig};
use crate::studies::fm_moons::{self, FmMoonsConfig};
use crate::studies::neural_ode::{self, NeuralOdeConfig};
use crate::studies::neural_sde::{self, NeuralSdeConfig};
use crate::studies::param_fit::{self, ParamFitConfig};
use crate::studies::pde_darcy::{self, DarcyStudyConfig};
use crate::studies::pde_fields::{self, PdeProblem, PdeStudyConfig};
use crate::studies::pde_ns2d::{self, Ns2dStudyConfig};
use crate::studies::stiff_hybrid::{self, StiffHybridConfig};
use crate::{Error, Result};

/// physflow: flows on physical systems.
#[derive(Debug, Parser)]
#[command(name = "physflow", version, about)]
pub struct Cli {
    /// Compute device.
    #[arg(long, value_enum, default_value_t = Backend::Cpu, global = true)]
    pub device: Backend,
    /// Seed of everything random. Given, it overrides the config file's seed; otherwise the
    /// file's (or the study's default) stands.
    #[arg(long, global = true)]
    pub seed: Option<u64>,
    /// Output directory for figures, reports and checkpoints.
    #[arg(long, default_value = "out", global = true)]
    pub out: PathBuf,
    /// No progress bars.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job on built-in defaults: the neural ODE study (simulate a damped pendulum, fit
    /// an MLP vector field with the adjoint, plot data against model, write a report).
    Demo {
        /// A TOML file overriding the study's defaults (fields of `NeuralOdeConfig`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override the number of training iterations.
        #[arg(long)]
        iterations: Option<usize>,
        /// Continue from the checkpoint in the output directory, if there is one.
        #[arg(long)]
        resume: bool,
    },
    /// The neural SDE study: simulate overdamped Langevin dynamics in a double well, fit a
    /// neural SDE (drift and diffusion networks) with the reversible-Heun adjoint, plot paths,
    /// marginals and the learned fields against the truth, write a report.
    Sde {
        /// A TOML file overriding the study's defaults (fields of `NeuralSdeConfig`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override the number of training iterations.
        #[arg(long)]
        iterations: Option<usize>,
        /// Continue from the checkpoint in the output directory, if there is one.
        #[arg(long)]
        resume: bool,
    },
    /// Simulate a library system (diffsol): N trajectories from sampled initial states and
    /// parameters, solved in parallel. Default format `h5`: K HDF5 shards in PDEBench's
    /// single-file layout (`shard-00000.h5`, ...) plus `manifest.json`, written atomically; a
    /// rerun with the same arguments skips finished shards (resume). `npy`/`csv`: one
    /// `states.npy` [N, T, D] (or CSV) with `times`, `params`, `y0` and `meta.json`.
    /// Files go to `<out>/simulate/<system>/`.
    Simulate {
        /// System name: lotka_volterra, robertson, van_der_pol, lorenz, pendulum,
        /// linear_oscillator, heat1d, heat2d, burgers1d, fisher_kpp1d, allen_cahn1d,
        /// brusselator2d; or a 2D field simulator (format h5): ns2d, ns2d_kolmogorov,
        /// ns2d_decaying (pseudo-spectral vorticity frames from random initial vorticity),
        /// darcy, darcy_lognormal (pressure `tensor` and permeability `nu` on random media;
        /// steady: --t-end and --n-times do not apply).
        system: String,
        /// Grid points per side of a field simulator (default 64).
        #[arg(long)]
        resolution: Option<usize>,
        /// Number of trajectories.
        #[arg(long, default_value_t = 1)]
        samples: usize,
        /// Number of HDF5 shard files (format h5).
        #[arg(long, default_value_t = 1)]
        shards: usize,
        /// Final time.
        #[arg(long, default_value_t = 10.0)]
        t_end: f64,
        /// Number of output times (uniform on [0, t_end], both ends included).
        #[arg(long, default_value_t = 101)]
        n_times: usize,
        /// Integrator: bdf, esdirk34, tr_bdf2, tsit45.
        #[arg(long, default_value = "bdf")]
        method: String,
        /// Relative tolerance.
        #[arg(long, default_value_t = 1e-6)]
        rtol: f64,
        /// Absolute tolerance.
        #[arg(long, default_value_t = 1e-8)]
        atol: f64,
        /// Initial states: `scaled` (y0·(1 + s·N(0,1)) per component; sample 0 keeps the
        /// system's own) or `fourier` (1D fields: random sums of `--modes` sine waves).
        #[arg(long, default_value = "scaled")]
        initial: String,
        /// Sine modes of `--initial fourier`.
        #[arg(long, default_value_t = 4)]
        modes: usize,
        /// Amplitude bound of `--initial fourier`.
        #[arg(long, default_value_t = 1.0)]
        amplitude: f64,
        /// Relative spread of the initial states across samples (`--initial scaled`).
        #[arg(long, default_value_t = 0.1)]
        y0_spread: f64,
        /// Relative spread of the parameters across samples (p·exp(s·N(0,1))).
        #[arg(long, default_value_t = 0.0)]
        param_spread: f64,
        /// Field compression in HDF5 shards: gzip, lzf or none.
        #[arg(long, default_value = "gzip")]
        compression: String,
        /// Output format: h5, npy or csv.
        #[arg(long, default_value = "h5")]
        format: String,
    },
    /// Flow-matching studies: `moons` (8 Gaussians → moons, W₂ vs NFE for independent and OT
    /// couplings and reflow) and `double-well` (hot → cold samples with exact densities).
    Fm {
        /// Which study.
        #[command(subcommand)]
        study: FmCommand,
    },
    /// Boltzmann-generator studies: `double-well` (2D, trained by energy only, vs quadrature)
    /// and `particles` (DW4 or LJ13, trained by data and energy, vs MALA).
    Bg {
        /// Which study.
        #[command(subcommand)]
        study: BgCommand,
    },
    /// Physics-constrained generation of PDE fields: simulate a family (`heat`, `burgers`,
    /// `reaction-diffusion` in 1D space-time; `ns2d`: 2D Navier–Stokes vorticity frames;
    /// `darcy`: permeability and pressure, plus the inverse problem),
    /// train a functional-flow-matching FNO, sample it unconstrained and with hard constraints
    /// (project-end, PCFM, ECI, guidance), write the table of MMSE / SMSE / constraint error /
    /// time per field, figures of fields and residuals. Data, checkpoints and samples go to
    /// `<out>/pde_<problem>/`; a rerun reuses the data and resumes training.
    Pde {
        /// Which family.
        #[arg(value_enum)]
        problem: PdeTask,
        /// A TOML file overriding the family's defaults (fields of `PdeStudyConfig`, or of
        /// `Ns2dStudyConfig` for ns2d, `DarcyStudyConfig` for darcy; unset fields keep the
        /// family's values).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Training steps (overrides the config).
        #[arg(long)]
        steps: Option<usize>,
    },
    /// HDF5 data files: inspect and convert.
    Data {
        /// What to do.
        #[command(subcommand)]
        action: DataCommand,
    },
    /// Parameter estimation study: recover Lotka–Volterra parameters from noisy data with
    /// adjoint gradients and L-BFGS; figure and report.
    Fit {
        /// A TOML file overriding the study's defaults (fields of `ParamFitConfig`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Stiff hybrid study: Robertson kinetics with one rate law replaced by an MLP, integrated
    /// by BDF with burn-autodiff Jacobians and trained through diffsol's adjoint.
    Hybrid {
        /// A TOML file overriding the study's defaults (fields of `StiffHybridConfig`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override the number of training iterations.
        #[arg(long)]
        iterations: Option<usize>,
    },
}

/// The PDE-field studies: the 1D space-time families of `pde_fields` and the 2D Navier–Stokes
/// study.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PdeTask {
    /// Heat equation, initial condition + mass conservation.
    Heat,
    /// Viscous Burgers, Dirichlet boundaries + mass balance.
    Burgers,
    /// Fisher–KPP reaction–diffusion, Neumann boundaries + mass balance with source.
    ReactionDiffusion,
    /// 2D Navier–Stokes vorticity (64 × 64 in PCFM; 32 × 32 by default here), initial
    /// condition + total vorticity.
    Ns2d,
    /// Darcy flow fields (permeability, pressure) under the flux balance, and the inverse
    /// problem of the permeability from pressure observations.
    Darcy,
}

impl PdeTask {
    /// The 1D family, if it is one.
    pub fn one_d(self) -> Option<PdeProblem> {
        match self {
            PdeTask::Heat => Some(PdeProblem::Heat),
            PdeTask::Burgers => Some(PdeProblem::Burgers),
            PdeTask::ReactionDiffusion => Some(PdeProblem::ReactionDiffusion),
            PdeTask::Ns2d | PdeTask::Darcy => None,
        }
    }
}

/// `physflow fm ...`.
#[derive(Debug, Subcommand)]
pub enum FmCommand {
    /// 8 Gaussians → two moons (torchcfm's benchmark).
    Moons {
        /// A TOML file overriding the study's defaults (fields of `FmMoonsConfig`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Training steps per model (overrides the config).
        #[arg(long)]
        steps: Option<usize>,
    },
    /// Double well at a high temperature → at a low temperature.
    DoubleWell {
        /// A TOML file overriding the study's defaults (fields of `FmDoubleWellConfig`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Training steps (overrides the config).
        #[arg(long)]
        steps: Option<usize>,
    },
}

/// `physflow bg ...`.
#[derive(Debug, Subcommand)]
pub enum BgCommand {
    /// 2D double well by energy only: ESS/N, ΔF between the wells and log Z vs quadrature.
    DoubleWell {
        /// A TOML file overriding the study's defaults (fields of `BgDoubleWellConfig`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Training steps (overrides the config).
        #[arg(long)]
        steps: Option<usize>,
    },
    /// DW4, LJ13 or LJ55: an equivariant flow (or a coupling flow) trained on MALA samples;
    /// NLL, ESS/N, energy-W2, energy and distance histograms vs an independent MALA reference.
    Particles {
        /// dw4, lj13 or lj55 (default: the config file's `system`, else dw4).
        #[arg(long)]
        system: Option<String>,
        /// A TOML file overriding the system's defaults (fields of `BgParticlesConfig`; its
        /// `system`, if given, must agree with `--system`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// equivariant-fm (an EGNN flow by equivariant flow matching) or coupling (a RealNVP
        /// flow by data and energy); overrides the config.
        #[arg(long)]
        method: Option<String>,
        /// Training steps of the chosen method (overrides the config).
        #[arg(long)]
        steps: Option<usize>,
    },
}

/// `physflow data` actions.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Print a file's tree: groups, datasets with shape, type, chunks and filters, attributes.
    Inspect {
        /// The HDF5 file.
        file: PathBuf,
        /// Reader: pure (default) or c (needs the `hdf5-c` feature).
        #[arg(long, default_value = "pure")]
        backend: String,
    },
    /// Convert between PDEBench's single-file layout ([N, T, X(, Y)] fields) and its grouped
    /// per-seed layout (`0000/data` [T, X(, Y), C]).
    Convert {
        /// Input file.
        input: PathBuf,
        /// Output file (written atomically).
        output: PathBuf,
        /// Target layout: single or grouped (default: the other one).
        #[arg(long)]
        to: Option<String>,
        /// Compression of the output: gzip, lzf or none.
        #[arg(long, default_value = "gzip")]
        compression: String,
    },
}

fn parse_compression(s: &str) -> Result<crate::io::h5::Compression> {
    use crate::io::h5::Compression;
    match s {
        "gzip" | "deflate" => Ok(Compression::Deflate(4)),
        "lzf" => Ok(Compression::Lzf),
        "none" => Ok(Compression::None),
        other => Err(Error::invalid("compression", format!("unknown compression `{other}` (gzip, lzf, none)"))),
    }
}

/// A study's config: its defaults with the file's keys merged over them (see
/// [`load_config_over`]), so a partial table keeps the study's other settings.
fn load_config<T: serde::Serialize + serde::de::DeserializeOwned + Default>(path: Option<&PathBuf>) -> Result<T> {
    load_config_over(T::default(), path)
}

/// The `system` key of a `bg particles` config file, if it has one.
fn config_system(path: &PathBuf) -> Result<Option<ParticleSystem>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let fmt = |reason: String| Error::Format { path: path.display().to_string(), reason };
    let v: toml::Value = toml::from_str(&text).map_err(|e| fmt(e.to_string()))?;
    match v.get("system") {
        None => Ok(None),
        Some(toml::Value::String(s)) => s.parse::<ParticleSystem>().map(Some).map_err(|e: Error| fmt(e.to_string())),
        Some(other) => Err(fmt(format!("`system` must be a string, not {other}"))),
    }
}

/// The `bg particles` configuration from its flags: the system from `--system` or the file
/// (they must agree; DW4 when neither names one), the file's keys merged over that system's
/// defaults (not DW4's), then `--method` and `--steps`. Touches no device, so a bad command
/// line fails before any tensor is made.
fn particle_config(system: Option<&str>, config: Option<&PathBuf>, method: Option<&str>, steps: Option<usize>) -> Result<BgParticlesConfig> {
    let flag: Option<ParticleSystem> = system.map(str::parse).transpose().map_err(|e| match e {
        Error::InvalidArgument { reason, .. } => Error::InvalidArgument { name: "--system", reason },
        e => e,
    })?;
    let in_file = match config {
        Some(path) => config_system(path)?,
        None => None,
    };
    let sys = match (flag, in_file) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::InvalidArgument { name: "--system", reason: format!("`{}` disagrees with the config file's system `{}`", a.name(), b.name()) })
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => ParticleSystem::Dw4,
    };
    let mut cfg = load_config_over(BgParticlesConfig::for_system(sys), config)?;
    if let Some(m) = method {
        cfg.method = match m {
            "equivariant-fm" | "equivariant_fm" => BgMethod::EquivariantFm,
            "coupling" => BgMethod::Coupling,
            other => return Err(Error::InvalidArgument { name: "--method", reason: format!("unknown method `{other}` (equivariant-fm, coupling)") }),
        };
    }
    if let Some(n) = steps {
        *cfg.steps_mut() = n;
    }
    Ok(cfg)
}

/// `base` with the keys of `over` replaced, tables merged recursively. A table that names a
/// different `kind` (an internally tagged enum such as a flow or a coupling) replaces the
/// default's table whole: the old variant's fields do not belong to the new one.
fn merge_toml(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) if o.get("kind").is_none_or(|k| b.get("kind") == Some(k)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge_toml(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// A study's configuration: `defaults` overridden by the TOML file's keys.
fn load_config_over<T: serde::Serialize + serde::de::DeserializeOwned>(defaults: T, path: Option<&PathBuf>) -> Result<T> {
    let Some(path) = path else { return Ok(defaults) };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let fmt = |e: String| Error::Format { path: path.display().to_string(), reason: e };
    let over: toml::Value = toml::from_str(&text).map_err(|e| fmt(e.to_string()))?;
    let mut base = toml::Value::try_from(defaults).map_err(|e| fmt(e.to_string()))?;
    merge_toml(&mut base, over);
    base.try_into().map_err(|e: toml::de::Error| fmt(e.to_string()))
}

/// `Error::Device` unless `--device cpu`: for subcommands that run on the CPU alone, so a
/// `--device` is never silently ignored.
fn cpu_only(cli: &Cli, command: &str, why: &str) -> Result<()> {
    if cli.device == Backend::Cpu {
        return Ok(());
    }
    Err(Error::Device { device: cli.device.name().into(), reason: format!("`physflow {command}` runs on the CPU only ({why}); use --device cpu") })
}

/// Parse the command line and run.
pub fn run() -> Result<()> {
    run_with(Cli::parse())
}

/// Run a parsed command line.
pub fn run_with(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Simulate { .. } => cpu_only(&cli, "simulate", "diffsol and the field simulators run in f64 on the CPU, in parallel with rayon")?,
        Command::Data { .. } => cpu_only(&cli, "data", "file conversion involves no device")?,
        Command::Fit { .. } => cpu_only(&cli, "fit", "parameter fitting of physical systems runs through diffsol in f64")?,
        Command::Hybrid { .. } => cpu_only(&cli, "hybrid", "the stiff hybrid model runs inside diffsol in f64")?,
        _ => {}
    }
    // Made where a command needs it: creating the f32 device first would lock the CPU's float
    // type and make `hybrid` (f64) fail.
    let device = || cli.device.device();
    match &cli.command {
        Command::Demo { config, iterations, resume } => {
            let mut cfg: NeuralOdeConfig = load_config(config.as_ref())?;
            if let Some(seed) = cli.seed {
                cfg.seed = seed;
            }
            if let Some(n) = iterations {
                cfg.iterations = *n;
            }
            let out = cli.out.join("neural_ode");
            let report = neural_ode::run(&cfg, &device()?, &out, *resume, cli.quiet)?;
            println!(
                "neural ODE: training MSE {:.3e} -> {:.3e}, held-out MSE {:.3e} (data variance {:.3e}), {:.1} s",
                report.train_mse_initial, report.train_mse_final, report.test_mse, report.test_data_variance, report.train_seconds
            );
            for f in &report.files {
                println!("wrote {f}");
            }
        }
        Command::Sde { config, iterations, resume } => {
            let mut cfg: NeuralSdeConfig = load_config(config.as_ref())?;
            if let Some(seed) = cli.seed {
                cfg.seed = seed;
            }
            if let Some(n) = iterations {
                cfg.iterations = *n;
            }
            let out = cli.out.join("neural_sde");
            let r = neural_sde::run(&cfg, &device()?, &out, *resume, cli.quiet)?;
            println!(
                "neural SDE: held-out marginal W2 {:.4} (untrained {:.4}, data-vs-data floor {:.4}); right well at t = {}: data {:.3}, model {:.3}; diffusion {:.3} (true {:.3}); {:.1} s",
                r.test_w2_marginal, r.test_w2_marginal_untrained, r.data_w2_floor, cfg.t_end, r.right_well_data, r.right_well_model,
                r.diffusion_mean, r.diffusion_true, r.train_seconds
            );
            for f in &r.files {
                println!("wrote {f}");
            }
        }
        Command::Simulate {
            system,
            resolution,
            samples,
            shards,
            t_end,
            n_times,
            method,
            rtol,
            atol,
            initial,
            modes,
            amplitude,
            y0_spread,
            param_spread,
            compression,
            format,
        } => {
            let opts = crate::sim::SimOptions { method: crate::sim::Integrator::parse(method)?, rtol: *rtol, atol: *atol, ..Default::default() };
            let out = cli.out.join("simulate").join(system);
            if format == "h5" {
                use crate::io::dataset::{generate, DatasetSpec, InitialCondition};
                let initial = match initial.as_str() {
                    "scaled" => InitialCondition::Scaled,
                    "fourier" => InitialCondition::RandomFourier { modes: *modes, amplitude: *amplitude },
                    other => return Err(Error::invalid("initial", format!("unknown initial condition `{other}` (scaled, fourier)"))),
                };
                let spec = DatasetSpec {
                    system: system.clone(),
                    samples: *samples,
                    shards: *shards,
                    t_end: *t_end,
                    n_times: *n_times,
                    y0_spread: *y0_spread,
                    param_spread: *param_spread,
                    initial,
                    seed: cli.seed.unwrap_or(0),
                    compression: parse_compression(compression)?,
                    sim: opts,
                    resolution: *resolution,
                };
                let r = generate(&spec, &out, None, !cli.quiet)?;
                println!(
                    "{} shards in {} ({} simulated, {} already there): {} samples of {:?} in `{}`",
                    spec.shards,
                    out.display(),
                    r.written.len(),
                    r.skipped.len(),
                    r.manifest.total_samples,
                    r.manifest.sample_shape,
                    r.manifest.dataset
                );
                println!("wrote {}", out.join("manifest.json").display());
                let preview = out.join("preview.png");
                crate::plot::dataset_preview(&out, &r.manifest, &preview)?;
                println!("wrote {}", preview.display());
            } else {
                if *shards != 1 || initial != "scaled" || resolution.is_some() || crate::sim::fields::NAMES.contains(&system.as_str()) {
                    return Err(Error::invalid("format", "--shards, --initial fourier and the field simulators (ns2d, darcy, ...) need --format h5"));
                }
                let spec = crate::io::SimulateSpec {
                    samples: *samples,
                    t_end: *t_end,
                    n_times: *n_times,
                    y0_spread: *y0_spread,
                    param_spread: *param_spread,
                    seed: cli.seed.unwrap_or(0),
                };
                let files = crate::io::simulate_to_files(system, &spec, &opts, &out, format, !cli.quiet)?;
                for f in files {
                    println!("wrote {f}");
                }
            }
        }
        Command::Fm { study } => {
            match study {
                FmCommand::Moons { config, steps } => {
                    let mut cfg: FmMoonsConfig = load_config(config.as_ref())?;
                    if let Some(seed) = cli.seed {
                        cfg.seed = seed;
                    }
                    if let Some(n) = steps {
                        cfg.steps = *n;
                    }
                    let r = fm_moons::run(&cfg, &device()?, &cli.out.join("fm_moons"), cli.quiet)?;
                    for m in &r.models {
                        let w2: Vec<String> = m.w2.iter().map(|(n, w)| format!("{n}:{w:.3}")).collect();
                        let st = m.straightness.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
                        println!("{:>12}: W2 by NFE {}  straightness {st}  ({:.1} s)", m.name, w2.join(" "), m.train_seconds);
                    }
                    println!("data-vs-data W2 floor {:.3}; source (8 Gaussians) W2 {:.3}", r.w2_floor, r.w2_source);
                    for f in &r.files {
                        println!("wrote {f}");
                    }
                }
                FmCommand::DoubleWell { config, steps } => {
                    let mut cfg: FmDoubleWellConfig = load_config(config.as_ref())?;
                    if let Some(seed) = cli.seed {
                        cfg.seed = seed;
                    }
                    if let Some(n) = steps {
                        cfg.steps = *n;
                    }
                    let r = fm_double_well::run(&cfg, &device()?, &cli.out.join("fm_double_well"), cli.quiet)?;
                    println!(
                    "double well β {} → {}: W2 {:.4} (floor {:.4}, source {:.4}); right well {:.4} (exact {:.4}, source {:.4}); ESS/N {:.3}; KL {:.4}; {:.1} s",
                    cfg.beta_hot, cfg.beta_cold, r.w2, r.w2_floor, r.w2_source, r.right_well_model, r.right_well_exact, r.right_well_source,
                    r.ess_fraction, r.kl_model_to_exact, r.train_seconds
                );
                    for f in &r.files {
                        println!("wrote {f}");
                    }
                }
            }
        }
        Command::Bg { study } => match study {
            BgCommand::DoubleWell { config, steps } => {
                let mut cfg: BgDoubleWellConfig = load_config(config.as_ref())?;
                if let Some(seed) = cli.seed {
                    cfg.train.seed = seed;
                }
                if let Some(n) = steps {
                    cfg.train.steps = *n;
                }
                let r = bg_double_well::run(&cfg, &device()?, &cli.out.join("bg_double_well"), cli.quiet)?;
                println!(
                    "double well by energy: ESS/N {:.4}; ΔF {:.4} ± {:.4} (raw {:.4} ± {:.4}, exact {:.4}); log Z IS {:.4} ± {:.4}, BAR {:.4} ± {:.4} (exact {:.4}); {:.1} s",
                    r.ess_fraction, r.delta_f_reweighted.value, r.delta_f_reweighted.std_err, r.delta_f_raw.value, r.delta_f_raw.std_err, r.delta_f_exact,
                    r.log_z_importance.value, r.log_z_importance.std_err, r.log_z_bar.value, r.log_z_bar.std_err, r.log_z_exact, r.train_seconds
                );
                for f in &r.files {
                    println!("wrote {f}");
                }
            }
            BgCommand::Particles { system, config, method, steps } => {
                let mut cfg = particle_config(system.as_deref(), config.as_ref(), method.as_deref(), *steps)?;
                if let Some(seed) = cli.seed {
                    cfg.train.seed = seed;
                }
                let system = cfg.system.name();
                let r = bg_particles::run(&cfg, &device()?, &cli.out.join(format!("bg_{system}")), cli.quiet)?;
                println!("{}", r.summary());
                for f in &r.files {
                    println!("wrote {f}");
                }
            }
        },
        Command::Data { action } => match action {
            DataCommand::Inspect { file, backend } => {
                let f = crate::io::h5::H5File::open_with(file, crate::io::h5::H5Backend::parse(backend)?)?;
                print!("{}", crate::io::h5::describe(&f)?);
                if let Ok(layout) = crate::io::pdebench::detect(&f) {
                    println!("layout: PDEBench {layout:?}");
                }
            }
            DataCommand::Convert { input, output, to, compression } => {
                use crate::io::pdebench::{convert, Layout};
                let to = match to.as_deref() {
                    None => None,
                    Some("single") => Some(Layout::Single),
                    Some("grouped") => Some(Layout::Grouped),
                    Some(other) => return Err(Error::invalid("to", format!("unknown layout `{other}` (single, grouped)"))),
                };
                let c = parse_compression(compression)?;
                let opts = crate::io::h5::DatasetOptions { compression: c, shuffle: c != crate::io::h5::Compression::None, ..Default::default() };
                let layout = convert(input, output, to, &opts)?;
                println!("converted to the PDEBench {layout:?} layout");
                println!("wrote {}", output.display());
            }
        },
        Command::Pde { problem: PdeTask::Ns2d, config, steps } => {
            let mut cfg = load_config_over(Ns2dStudyConfig::default(), config.as_ref())?;
            if let Some(seed) = cli.seed {
                cfg.seed = seed;
            }
            if let Some(n) = steps {
                cfg.train.run.steps = *n;
            }
            let r = pde_ns2d::run(&cfg, &device()?, &cli.out.join("pde_ns2d"), cli.quiet)?;
            print!("{}", pde_ns2d::markdown(&r));
            for f in &r.files {
                println!("wrote {f}");
            }
        }
        Command::Pde { problem: PdeTask::Darcy, config, steps } => {
            let mut cfg = load_config_over(DarcyStudyConfig::default(), config.as_ref())?;
            if let Some(seed) = cli.seed {
                cfg.seed = seed;
            }
            if let Some(n) = steps {
                cfg.train.run.steps = *n;
            }
            let r = pde_darcy::run(&cfg, &device()?, &cli.out.join("pde_darcy"), cli.quiet)?;
            print!("{}", pde_darcy::markdown(&r));
            for f in &r.files {
                println!("wrote {f}");
            }
        }
        Command::Pde { problem, config, steps } => {
            let problem = &problem.one_d().ok_or_else(|| Error::invalid("problem", "not a 1D space-time family"))?;
            let mut cfg = load_config_over(PdeStudyConfig::for_problem(*problem), config.as_ref())?;
            if cfg.problem != *problem {
                return Err(Error::invalid("config", format!("the file sets problem `{}` but the command asks for `{}`", cfg.problem.name(), problem.name())));
            }
            if let Some(seed) = cli.seed {
                cfg.seed = seed;
            }
            if let Some(n) = steps {
                cfg.train.run.steps = *n;
            }
            let r = pde_fields::run(&cfg, &device()?, &cli.out.join(format!("pde_{}", problem.name())), cli.quiet)?;
            print!("{}", pde_fields::markdown(&r));
            for f in &r.files {
                println!("wrote {f}");
            }
        }
        Command::Fit { config } => {
            let mut cfg: ParamFitConfig = load_config(config.as_ref())?;
            if let Some(seed) = cli.seed {
                cfg.seed = seed;
            }
            let r = param_fit::run(&cfg, &cli.out.join("param_fit"), cli.quiet)?;
            for i in 0..r.names.len() {
                println!("{:>6}: true {:<8} fitted {:<10.5} (relative error {:.2e})", r.names[i], r.true_params[i], r.fitted[i], r.relative_error[i]);
            }
            println!(
                "loss {:.3e} -> {:.3e} (at the truth {:.3e}), {} iterations, {:.2} s",
                r.loss_initial, r.loss_final, r.loss_at_truth, r.iterations, r.seconds
            );
            for f in &r.files {
                println!("wrote {f}");
            }
        }
        Command::Hybrid { config, iterations } => {
            let mut cfg: StiffHybridConfig = load_config(config.as_ref())?;
            if let Some(seed) = cli.seed {
                cfg.seed = seed;
            }
            if let Some(n) = iterations {
                cfg.fit.iterations = *n;
            }
            let f64_device = crate::device::cpu_f64()?;
            let r = stiff_hybrid::run(&cfg, &f64_device, &cli.out.join("stiff_hybrid"), cli.quiet)?;
            println!(
                "stiff hybrid: train loss {:.3e} -> {:.3e}, held-out {:.3e} -> {:.3e}, rate-law relative RMSE {:.3e}, {:.1} s",
                r.train_loss_initial, r.train_loss_final, r.test_loss_initial, r.test_loss_final, r.rate_relative_rmse, r.seconds
            );
            for f in &r.files {
                println!("wrote {f}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boltzmann::Likelihood;

    /// A `bg particles` config file is merged over its own system's defaults, not DW4's: the
    /// GPU LJ55 config sets the EGNN and leaves the MALA settings to LJ55's defaults.
    #[test]
    fn particle_configs_merge_over_their_systems_defaults() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/gpu/bg_lj55.toml");
        let sys = config_system(&path).unwrap().unwrap();
        assert_eq!(sys, ParticleSystem::Lj55);
        let defaults = BgParticlesConfig::for_system(sys);
        let cfg: BgParticlesConfig = load_config_over(defaults.clone(), Some(&path)).unwrap();
        assert_eq!((cfg.eqfm.egnn.particles, cfg.eqfm.egnn.layers, cfg.eqfm.egnn.hidden), (55, 5, 128));
        assert_eq!(cfg.mcmc, defaults.mcmc);
        assert_ne!(cfg.mcmc, BgParticlesConfig::for_system(ParticleSystem::Dw4).mcmc);
        // The GPU LJ13 config: published model size and exact weights over LJ13's defaults.
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/gpu/bg_lj13.toml");
        assert_eq!(config_system(&path).unwrap(), Some(ParticleSystem::Lj13));
        let lj13 = BgParticlesConfig::for_system(ParticleSystem::Lj13);
        let cfg: BgParticlesConfig = load_config_over(lj13.clone(), Some(&path)).unwrap();
        assert_eq!((cfg.eqfm.egnn.particles, cfg.eqfm.egnn.hidden, cfg.eqfm.likelihood), (13, 128, Likelihood::Exact));
        assert_ne!(lj13.eqfm.likelihood, Likelihood::Exact, "the CPU default weights by flow perturbation");
        assert_eq!(cfg.mcmc, lj13.mcmc);
        // The GPU Navier–Stokes config: PCFM's grid over the CPU defaults, a valid FNO for it.
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/gpu/pde_ns2d.toml");
        let ns: Ns2dStudyConfig = load_config_over(Ns2dStudyConfig::default(), Some(&path)).unwrap();
        assert_eq!((ns.n, ns.frames, ns.train.run.steps), (64, 50, 20_000));
        assert_eq!(ns.viscosity, Ns2dStudyConfig::default().viscosity);
        ns.validate().unwrap();
        // Every smoke config names a system and parses over its defaults.
        for name in ["bg_dw4.toml", "bg_dw4_eqfm.toml"] {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/smoke").join(name);
            let sys = config_system(&p).unwrap().expect("a system");
            load_config_over(BgParticlesConfig::for_system(sys), Some(&p)).unwrap();
        }
    }

    /// `--system` and the file's `system` must agree; an unknown system is named.
    #[test]
    fn particle_system_flag_and_file_must_agree() {
        let dir = std::env::temp_dir().join(format!("physflow-cli-sys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "system = \"lj13\"\n").unwrap();
        // Through `particle_config`, not `run_with`: that would pick a device, and burn locks
        // the CPU's default float type at its first tensor for the whole test process.
        let err = particle_config(Some("dw4"), Some(&f), None, None).unwrap_err();
        assert!(err.to_string().contains("disagrees"), "{err}");
        let err = particle_config(Some("lj38"), None, None, None).unwrap_err();
        assert!(err.to_string().contains("lj38"), "{err}");
        let err = particle_config(None, Some(&f), Some("diffusion"), None).unwrap_err();
        assert!(err.to_string().contains("--method"), "{err}");
        let mut cfg = particle_config(None, Some(&f), Some("coupling"), Some(7)).unwrap();
        assert_eq!((cfg.system, cfg.method), (ParticleSystem::Lj13, BgMethod::Coupling));
        assert_eq!((cfg.train.steps, *cfg.steps_mut()), (7, 7));
        std::fs::write(&f, "system = 13\n").unwrap();
        assert!(matches!(config_system(&f), Err(Error::Format { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn temp_toml(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("physflow-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, text).unwrap();
        f
    }

    fn json<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    /// Every study's defaults survive the round trip through TOML that the merge makes (an empty
    /// file gives the defaults back), so no default is unrepresentable in a config file.
    #[test]
    fn empty_config_files_give_the_study_defaults() {
        let f = temp_toml("empty", "");
        fn check<T: serde::Serialize + serde::de::DeserializeOwned + Default>(f: &PathBuf) {
            assert_eq!(json(&load_config::<T>(Some(f)).unwrap()), json(&T::default()), "{}", std::any::type_name::<T>());
        }
        check::<NeuralOdeConfig>(&f);
        check::<NeuralSdeConfig>(&f);
        check::<FmMoonsConfig>(&f);
        check::<FmDoubleWellConfig>(&f);
        check::<BgDoubleWellConfig>(&f);
        check::<ParamFitConfig>(&f);
        check::<StiffHybridConfig>(&f);
        check::<Ns2dStudyConfig>(&f);
        check::<DarcyStudyConfig>(&f);
        for sys in [ParticleSystem::Dw4, ParticleSystem::Lj13, ParticleSystem::Lj55] {
            let d = BgParticlesConfig::for_system(sys);
            assert_eq!(json(&load_config_over(d.clone(), Some(&f)).unwrap()), json(&d));
        }
        for p in [PdeProblem::Heat, PdeProblem::Burgers] {
            let d = PdeStudyConfig::for_problem(p);
            assert_eq!(json(&load_config_over(d.clone(), Some(&f)).unwrap()), json(&d));
        }
    }

    /// A partial table changes only its own keys: the double-well Boltzmann study keeps its
    /// spline flow when the file sets `[train] steps`, and the hybrid study keeps its solver
    /// tolerances when the file sets `[fit] iterations` (both were replaced by the library's
    /// defaults before the merge).
    #[test]
    fn partial_tables_merge_key_by_key() {
        let f = temp_toml("partial-bg", "[train]\nsteps = 5\n");
        let cfg: BgDoubleWellConfig = load_config(Some(&f)).unwrap();
        let d = BgDoubleWellConfig::default();
        assert_eq!(cfg.train.steps, 5);
        assert_eq!(cfg.train.flow, d.train.flow);
        assert_eq!((cfg.train.batch_size, cfg.n_eval), (d.train.batch_size, d.n_eval));
        let f = temp_toml("partial-hybrid", "[fit]\niterations = 3\n");
        let cfg: StiffHybridConfig = load_config(Some(&f)).unwrap();
        let d = StiffHybridConfig::default();
        assert_eq!(cfg.fit.iterations, 3);
        assert_eq!((cfg.fit.sim.rtol, cfg.fit.sim.atol), (d.fit.sim.rtol, d.fit.sim.atol));
        // Unknown keys are still refused, and named.
        let f = temp_toml("unknown", "[train]\nstepz = 5\n");
        let err = load_config::<BgDoubleWellConfig>(Some(&f)).unwrap_err();
        assert!(matches!(err, Error::Format { .. }) && err.to_string().contains("stepz"), "{err}");
    }

    /// Tables merge key by key unless they name a different `kind` (a tagged enum): then the
    /// file's table replaces the default's, whose variant-specific keys would not fit.
    #[test]
    fn a_new_kind_replaces_the_table() {
        let base: toml::Value = toml::from_str("[a]\nkind = \"spline\"\nbins = 8\nbound = 4.0\n[b]\nx = 1\ny = 2\n").unwrap();
        let mut same = base.clone();
        merge_toml(&mut same, toml::from_str("[a]\nkind = \"spline\"\nbins = 16\n[b]\ny = 3\n").unwrap());
        let want: toml::Value = toml::from_str("[a]\nkind = \"spline\"\nbins = 16\nbound = 4.0\n[b]\nx = 1\ny = 3\n").unwrap();
        assert_eq!(same, want);
        let mut other = base.clone();
        merge_toml(&mut other, toml::from_str("[a]\nkind = \"affine\"\nscale = 2.0\n").unwrap());
        assert_eq!(other["a"].as_table().unwrap().len(), 2, "{other}");
        assert_eq!(other["a"]["scale"].as_float(), Some(2.0));
    }

    /// `--seed` is optional: absent, the file's seed stands; given, it wins (it used to default
    /// to 0 and overwrite the file's seed). Every subcommand parses.
    #[test]
    fn command_lines_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("physflow").chain(args.iter().copied()));
        assert_eq!(parse(&["demo"]).unwrap().seed, None);
        assert_eq!(parse(&["--seed", "3", "demo"]).unwrap().seed, Some(3));
        assert_eq!(parse(&["fm", "moons", "--seed", "4"]).unwrap().seed, Some(4));
        for args in [
            &["demo", "--iterations", "3", "--resume"][..],
            &["sde", "--config", "x.toml"],
            &["simulate", "lorenz", "--samples", "4", "--format", "npy"],
            &["fm", "moons", "--steps", "2"],
            &["fm", "double-well"],
            &["bg", "double-well", "--steps", "2"],
            &["bg", "particles", "--system", "lj13", "--method", "coupling"],
            &["pde", "heat"],
            &["pde", "ns2d", "--steps", "1"],
            &["pde", "darcy"],
            &["data", "inspect", "f.h5"],
            &["data", "convert", "a.h5", "b.h5", "--to", "grouped"],
            &["fit"],
            &["hybrid", "--iterations", "1"],
        ] {
            parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        for bad in [&["dmeo"][..], &["demo", "--iterations", "-1"], &["--seed", "x", "demo"], &["--device", "tpu", "demo"], &["pde", "wave"], &["fm"]] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
