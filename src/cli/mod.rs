//! The `physflow` command: global options and subcommands. The studies are rows of
//! [`crate::studies::TABLE`]: their subcommands are parsed here into the flags the table's
//! rows take ([`Overrides`]) and run from there; `simulate` and `data` call the library
//! directly. `src/main.rs` only calls [`run`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::device::Backend;
use crate::io::h5::{Compression, H5Backend};
use crate::io::pdebench::Layout;
use crate::sim::Integrator;
use crate::studies::bg_particles::{BgMethod, ParticleSystem};
use crate::studies::{self, Context, Overrides};
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

/// The flags every study takes.
#[derive(Debug, Args)]
pub struct StudyArgs {
    /// A TOML file overriding the study's defaults (the fields of its config; unset fields
    /// keep the defaults, tables merge key by key).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training steps (iterations) of the study, overriding the config.
    #[arg(long, visible_alias = "iterations")]
    pub steps: Option<usize>,
    /// Start over: remove the study's directory under `--out` (its data, checkpoints, model,
    /// figures and report) before running. Without it a rerun reuses the data and resumes a
    /// checkpoint made for the same configuration.
    #[arg(long)]
    pub fresh: bool,
}

/// The flags of a study that resumes only when asked.
#[derive(Debug, Args)]
pub struct ResumableArgs {
    /// Config file and steps.
    #[command(flatten)]
    pub study: StudyArgs,
    /// Continue from the checkpoint in the output directory, if there is one.
    #[arg(long, conflicts_with = "fresh")]
    pub resume: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job on built-in defaults: a short tour of every pillar (a neural ODE, a stiff
    /// system's parameters by adjoint sensitivities, a neural SDE, a Boltzmann generator, flow
    /// matching, constrained PDE fields) that writes `index.md` and `index.html` with each
    /// figure and its numbers. `--config` sets the sections `[ode]`, `[stiff]`, `[sde]`,
    /// `[bg]`, `[fm]`, `[pde]` (each a study's config); `--steps` applies to every stop.
    Demo(StudyArgs),
    /// The neural ODE study: simulate a damped pendulum, fit an MLP vector field with the
    /// adjoint, plot data against model, write a report.
    Ode(ResumableArgs),
    /// The neural SDE study: simulate overdamped Langevin dynamics in a double well, fit a
    /// neural SDE (drift and diffusion networks) with the reversible-Heun adjoint, plot paths,
    /// marginals and the learned fields against the truth, write a report.
    Sde(ResumableArgs),
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
        /// Integrator.
        #[arg(long, value_enum, default_value_t = Integrator::Bdf)]
        method: Integrator,
        /// Relative tolerance.
        #[arg(long, default_value_t = 1e-6)]
        rtol: f64,
        /// Absolute tolerance.
        #[arg(long, default_value_t = 1e-8)]
        atol: f64,
        /// Initial states: `scaled` (y0·(1 + s·N(0,1)) per component; sample 0 keeps the
        /// system's own) or `fourier` (1D fields: random sums of `--modes` sine waves).
        #[arg(long, value_enum, default_value_t = Initial::Scaled)]
        initial: Initial,
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
        /// Field compression in HDF5 shards.
        #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
        compression: CompressionArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::H5)]
        format: OutputFormat,
    },
    /// Flow-matching studies: `moons` (8 Gaussians → moons, W₂ vs NFE for independent and OT
    /// couplings and reflow) and `double-well` (hot → cold samples with exact densities).
    Fm {
        /// Which study.
        #[command(subcommand)]
        study: FmCommand,
    },
    /// Boltzmann-generator studies: `double-well` (2D, trained by energy only, vs quadrature)
    /// and `particles` (DW4, LJ13 or LJ55, vs MALA).
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
        /// Config file (fields of `PdeStudyConfig`, `Ns2dStudyConfig` for ns2d,
        /// `DarcyStudyConfig` for darcy) and steps.
        #[command(flatten)]
        args: StudyArgs,
    },
    /// HDF5 data files: inspect and convert.
    Data {
        /// What to do.
        #[command(subcommand)]
        action: DataCommand,
    },
    /// Parameter estimation study: recover Lotka–Volterra parameters from noisy data with
    /// adjoint gradients and L-BFGS; figure and report.
    Fit(StudyArgs),
    /// Stiff hybrid study: Robertson kinetics with one rate law replaced by an MLP, integrated
    /// by BDF with burn-autodiff Jacobians and trained through diffsol's adjoint.
    Hybrid(StudyArgs),
}

/// The PDE-field studies: the 1D space-time families of `pde_fields` and the 2D studies.
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

/// `physflow fm ...`.
#[derive(Debug, Subcommand)]
pub enum FmCommand {
    /// 8 Gaussians → two moons (torchcfm's benchmark).
    Moons(StudyArgs),
    /// Double well at a high temperature → at a low temperature.
    DoubleWell(StudyArgs),
    /// Sample a trained model: the checkpoint directory `--model` (e.g.
    /// `out/fm_moons/checkpoint_independent`) with `--sampler FILE` (TOML of a sampler: `kind =
    /// "dpm"`, `"ode"`, `"bespoke"`, `"adaptive"`), else the sampler saved beside the model
    /// (`sampler.json`), else 100 Euler steps. Writes `<out>/fm_sample/samples.npy` [n, d]
    /// and, with `--log-density`, `log_density.npy` `[n]`.
    Sample {
        /// The model's checkpoint directory.
        #[arg(long)]
        model: PathBuf,
        /// A TOML file holding one sampler.
        #[arg(long)]
        sampler: Option<PathBuf>,
        /// Samples drawn from the Gaussian base (seed: `--seed`, default 0).
        #[arg(long, short = 'n', default_value_t = 2048)]
        samples: usize,
        /// States at t = 0 (`.npy`, float64 [n, d]) instead of base draws; required for a model
        /// whose base is data.
        #[arg(long)]
        x0: Option<PathBuf>,
        /// Also write the samples' log-densities (one pass, exact trace; Gaussian base).
        #[arg(long)]
        log_density: bool,
    },
}

/// `physflow bg ...`.
#[derive(Debug, Subcommand)]
pub enum BgCommand {
    /// 2D double well by energy only: ESS/N, ΔF between the wells and log Z vs quadrature.
    DoubleWell(StudyArgs),
    /// DW4, LJ13 or LJ55: an equivariant flow (or a coupling flow) trained on MALA samples;
    /// NLL, ESS/N, energy-W2, energy and distance histograms vs an independent MALA reference.
    Particles {
        /// The system (default: the config file's `system`, else dw4).
        #[arg(long, value_enum)]
        system: Option<ParticleSystem>,
        /// The flow and its training (overrides the config): an EGNN flow by equivariant flow
        /// matching, or a RealNVP coupling flow by data and energy.
        #[arg(long, value_enum)]
        method: Option<BgMethod>,
        /// Config file (fields of `BgParticlesConfig`; its `system`, if given, must agree with
        /// `--system`) and steps of the chosen method.
        #[command(flatten)]
        args: StudyArgs,
    },
}

/// `physflow data` actions.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Print a file's tree: groups, datasets with shape, type, chunks and filters, attributes.
    Inspect {
        /// The HDF5 file.
        file: PathBuf,
        /// Reader (`c` needs the `hdf5-c` feature).
        #[arg(long, value_enum, default_value_t = H5Backend::Pure)]
        backend: H5Backend,
    },
    /// Convert between PDEBench's single-file layout ([N, T, X(, Y)] fields) and its grouped
    /// per-seed layout (`0000/data` [T, X(, Y), C]).
    Convert {
        /// Input file.
        input: PathBuf,
        /// Output file (written atomically).
        output: PathBuf,
        /// Target layout (default: the other one).
        #[arg(long, value_enum)]
        to: Option<Layout>,
        /// Compression of the output.
        #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
        compression: CompressionArg,
    },
}

/// Initial states of `simulate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Initial {
    /// `y0·(1 + s·N(0,1))` per component; sample 0 keeps the system's own.
    Scaled,
    /// 1D fields: random sums of `--modes` sine waves.
    Fourier,
}

/// Output format of `simulate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// HDF5 shards in PDEBench's single-file layout plus `manifest.json`.
    H5,
    /// NumPy arrays.
    Npy,
    /// One CSV file.
    Csv,
}

/// Compression of HDF5 datasets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    /// Deflate, level 4.
    #[value(alias = "deflate")]
    Gzip,
    /// LZF (fast, light).
    Lzf,
    /// None.
    None,
}

impl CompressionArg {
    fn compression(self) -> Compression {
        match self {
            CompressionArg::Gzip => Compression::Deflate(4),
            CompressionArg::Lzf => Compression::Lzf,
            CompressionArg::None => Compression::None,
        }
    }
}

impl Command {
    /// The study-table row and flags of a study subcommand; `None` for `demo`, `simulate`
    /// and `data`.
    fn study(&self) -> Option<(&'static str, &StudyArgs, bool, Option<ParticleSystem>, Option<BgMethod>)> {
        Some(match self {
            Command::Ode(a) => ("ode", &a.study, a.resume, None, None),
            Command::Sde(a) => ("sde", &a.study, a.resume, None, None),
            Command::Fit(a) => ("fit", a, false, None, None),
            Command::Hybrid(a) => ("hybrid", a, false, None, None),
            Command::Fm { study: FmCommand::Moons(a) } => ("fm moons", a, false, None, None),
            Command::Fm { study: FmCommand::DoubleWell(a) } => ("fm double-well", a, false, None, None),
            Command::Bg { study: BgCommand::DoubleWell(a) } => ("bg double-well", a, false, None, None),
            Command::Bg { study: BgCommand::Particles { system, method, args } } => ("bg particles", args, false, *system, *method),
            Command::Pde { problem, args } => {
                let name = match problem {
                    PdeTask::Heat => "pde heat",
                    PdeTask::Burgers => "pde burgers",
                    PdeTask::ReactionDiffusion => "pde reaction-diffusion",
                    PdeTask::Ns2d => "pde ns2d",
                    PdeTask::Darcy => "pde darcy",
                };
                (name, args, false, None, None)
            }
            Command::Demo(_) | Command::Simulate { .. } | Command::Data { .. } | Command::Fm { study: FmCommand::Sample { .. } } => return None,
        })
    }
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

fn print_files(files: &[String]) {
    for f in files {
        println!("wrote {f}");
    }
}

/// Run a parsed command line.
pub fn run_with(cli: Cli) -> Result<()> {
    // Made where a command needs it: creating the f32 device first would lock the CPU's float
    // type and make `hybrid` (f64) fail.
    let device = || cli.device.device();
    match &cli.command {
        Command::Demo(args) => {
            let o = Overrides { seed: cli.seed, steps: args.steps, ..Overrides::default() }.with_file(args.config.as_deref())?;
            let ctx = Context { out: &cli.out, quiet: cli.quiet, resume: false, fresh: args.fresh, device: &device };
            let tour = studies::tour::run(&o, &ctx)?;
            for stop in &tour.stops {
                println!("== {} ({}; {:.1} s)\n{}", stop.pillar, stop.command, stop.seconds, stop.outcome.summary.trim_end());
            }
            print_files(&tour.files);
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
            cpu_only(&cli, "simulate", "diffsol and the field simulators run in f64 on the CPU, in parallel with rayon")?;
            let opts = crate::sim::SimOptions { method: *method, rtol: *rtol, atol: *atol, ..Default::default() };
            let out = cli.out.join("simulate").join(system);
            let array_format = match format {
                OutputFormat::H5 => None,
                OutputFormat::Npy => Some(crate::io::ArrayFormat::Npy),
                OutputFormat::Csv => Some(crate::io::ArrayFormat::Csv),
            };
            if let Some(array_format) = array_format {
                if *shards != 1 || *initial != Initial::Scaled || resolution.is_some() || crate::sim::fields::NAMES.contains(&system.as_str()) {
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
                print_files(&crate::io::simulate_to_files(system, &spec, &opts, &out, array_format, !cli.quiet)?);
                return Ok(());
            }
            use crate::io::dataset::{generate, DatasetSpec, InitialCondition};
            let initial = match initial {
                Initial::Scaled => InitialCondition::Scaled,
                Initial::Fourier => InitialCondition::RandomFourier { modes: *modes, amplitude: *amplitude },
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
                compression: compression.compression(),
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
        }
        Command::Fm { study: FmCommand::Sample { model, sampler, samples, x0, log_density } } => {
            cpu_only(&cli, "fm sample", "sampling runs in f64 on the CPU")?;
            let sampler = match sampler {
                Some(file) => {
                    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
                    Some(toml::from_str::<crate::fm::Sampler>(&text).map_err(|e| Error::Format { path: file.display().to_string(), reason: e.to_string() })?)
                }
                None => None,
            };
            let base = match x0 {
                Some(file) => {
                    let (shape, data) = crate::io::read_npy(file)?;
                    let [n, d] = shape[..] else {
                        return Err(Error::Format {
                            path: file.display().to_string(),
                            reason: format!("need a 2D array [n, d] of states, got shape {shape:?}"),
                        });
                    };
                    crate::fm::BaseSamples::Given(
                        ndarray::Array2::from_shape_vec((n, d), data).map_err(|e| Error::Format { path: file.display().to_string(), reason: e.to_string() })?,
                    )
                }
                None => crate::fm::BaseSamples::Gaussian { n: *samples, seed: cli.seed.unwrap_or(0) },
            };
            let start = std::time::Instant::now();
            let out = crate::fm::sample_checkpoint(model, sampler, base, *log_density)?;
            let seconds = start.elapsed().as_secs_f64();
            let dir = cli.out.join("fm_sample");
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let (n, d) = out.x1.dim();
            let file = dir.join("samples.npy");
            crate::io::write_npy(&file, &[n, d], &out.x1.iter().copied().collect::<Vec<_>>())?;
            println!("{n} samples of width {d} with {} ({} evaluations) in {seconds:.2} s", serde_json::to_string(&out.sampler).unwrap_or_default(), out.nfe);
            println!("wrote {}", file.display());
            if let Some(lq) = &out.log_density {
                let file = dir.join("log_density.npy");
                crate::io::write_npy(&file, &[n], lq)?;
                println!("wrote {}", file.display());
            }
        }
        Command::Data { action } => {
            cpu_only(&cli, "data", "file conversion involves no device")?;
            match action {
                DataCommand::Inspect { file, backend } => {
                    let f = crate::io::h5::H5File::open_with(file, *backend)?;
                    print!("{}", crate::io::h5::describe(&f)?);
                    if let Ok(layout) = crate::io::pdebench::detect(&f) {
                        println!("layout: PDEBench {layout:?}");
                    }
                }
                DataCommand::Convert { input, output, to, compression } => {
                    let c = compression.compression();
                    let opts = crate::io::h5::DatasetOptions { compression: c, shuffle: c != Compression::None, ..Default::default() };
                    let layout = crate::io::pdebench::convert(input, output, *to, &opts)?;
                    println!("converted to the PDEBench {layout:?} layout");
                    println!("wrote {}", output.display());
                }
            }
        }
        study => {
            let Some((name, args, resume, system, method)) = study.study() else {
                return Err(Error::invalid("command", "not a study"));
            };
            let entry = studies::find(name)?;
            if let Some(why) = entry.cpu_only {
                cpu_only(&cli, name, why)?;
            }
            let o = Overrides { seed: cli.seed, steps: args.steps, system, method, ..Overrides::default() }.with_file(args.config.as_deref())?;
            let ctx = Context { out: &cli.out, quiet: cli.quiet, resume, fresh: args.fresh, device: &device };
            let outcome = (entry.run)(&o, &ctx)?;
            println!("{}", outcome.summary.trim_end());
            print_files(&outcome.files);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("physflow").chain(args.iter().copied()))
    }

    /// `--seed` is optional: absent, the file's seed stands; given, it wins (it used to default
    /// to 0 and overwrite the file's seed). Every subcommand parses; options are typed, so a
    /// wrong value is refused by the parser, naming the choices.
    #[test]
    fn command_lines_parse() {
        assert_eq!(parse(&["demo"]).unwrap().seed, None);
        assert_eq!(parse(&["--seed", "3", "demo"]).unwrap().seed, Some(3));
        assert_eq!(parse(&["fm", "moons", "--seed", "4"]).unwrap().seed, Some(4));
        for args in [
            &["demo", "--steps", "3"][..],
            &["ode", "--iterations", "3", "--resume"],
            &["sde", "--config", "x.toml"],
            &["simulate", "lorenz", "--samples", "4", "--format", "npy", "--method", "tr_bdf2"],
            &["simulate", "heat1d", "--initial", "fourier", "--compression", "deflate"],
            &["fm", "moons", "--steps", "2"],
            &["fm", "double-well"],
            &["fm", "sample", "--model", "dir", "-n", "10", "--log-density"],
            &["fm", "sample", "--model", "dir", "--sampler", "s.toml", "--x0", "x.npy"],
            &["bg", "double-well", "--steps", "2"],
            &["bg", "particles", "--system", "lj13", "--method", "coupling"],
            &["pde", "heat"],
            &["pde", "ns2d", "--steps", "1"],
            &["pde", "darcy"],
            &["data", "inspect", "f.h5", "--backend", "c"],
            &["data", "convert", "a.h5", "b.h5", "--to", "grouped"],
            &["fit"],
            &["hybrid", "--iterations", "1"],
        ] {
            parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        for bad in [
            &["dmeo"][..],
            &["ode", "--iterations", "-1"],
            &["--seed", "x", "demo"],
            &["--device", "tpu", "demo"],
            &["pde", "wave"],
            &["fm"],
            &["fm", "sample"],
            &["bg", "particles", "--system", "lj38"],
            &["bg", "particles", "--method", "diffusion"],
            &["simulate", "lorenz", "--format", "parquet"],
            &["simulate", "lorenz", "--method", "rk4"],
            &["data", "convert", "a.h5", "b.h5", "--to", "sideways"],
            &["fit", "--resume"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        let err = parse(&["bg", "particles", "--system", "lj38"]).unwrap_err().to_string();
        assert!(err.contains("lj38") && err.contains("lj13"), "{err}");
    }

    /// The study table and the subcommands agree: every study subcommand names a row, and
    /// every row is reached by a subcommand.
    #[test]
    fn every_study_subcommand_is_a_table_row() {
        let lines: &[&[&str]] = &[
            &["ode"],
            &["sde"],
            &["fit"],
            &["hybrid"],
            &["fm", "moons"],
            &["fm", "double-well"],
            &["bg", "double-well"],
            &["bg", "particles"],
            &["pde", "heat"],
            &["pde", "reaction-diffusion"],
            &["pde", "burgers"],
            &["pde", "ns2d"],
            &["pde", "darcy"],
        ];
        let mut reached = Vec::new();
        for args in lines {
            let cli = parse(args).unwrap();
            let (name, ..) = cli.command.study().unwrap_or_else(|| panic!("{args:?} is not a study"));
            assert_eq!(name, args.join(" "), "the row is named by its command line");
            studies::find(name).unwrap();
            reached.push(name);
        }
        let rows: Vec<&str> = studies::TABLE.iter().map(|e| e.command).collect();
        assert_eq!(reached, rows, "one subcommand per row, in the table's order");
        assert!(parse(&["demo"]).unwrap().command.study().is_none());
        assert!(matches!(studies::find("fm swirl"), Err(Error::InvalidArgument { .. })));
    }
}
