//! The `physflow` command: global options and subcommands. Each subcommand parses its
//! arguments, calls the library and reports; `src/main.rs` only calls [`run`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::device::Backend;
use crate::studies::neural_ode::{self, NeuralOdeConfig};
use crate::studies::neural_sde::{self, NeuralSdeConfig};
use crate::{Error, Result};

/// physflow: flows on physical systems.
#[derive(Debug, Parser)]
#[command(name = "physflow", version, about)]
pub struct Cli {
    /// Compute device.
    #[arg(long, value_enum, default_value_t = Backend::Cpu, global = true)]
    pub device: Backend,
    /// Seed of everything random.
    #[arg(long, default_value_t = 0, global = true)]
    pub seed: u64,
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
}

/// A study's configuration from a TOML file, or its defaults without one.
fn load_config<T: serde::de::DeserializeOwned + Default>(path: Option<&PathBuf>) -> Result<T> {
    let Some(path) = path else { return Ok(T::default()) };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    toml::from_str(&text).map_err(|e| Error::Format { path: path.display().to_string(), reason: e.to_string() })
}

/// Parse the command line and run.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    let device = cli.device.device()?;
    match &cli.command {
        Command::Demo { config, iterations, resume } => {
            let mut cfg: NeuralOdeConfig = load_config(config.as_ref())?;
            cfg.seed = cli.seed;
            if let Some(n) = iterations {
                cfg.iterations = *n;
            }
            let out = cli.out.join("neural_ode");
            let report = neural_ode::run(&cfg, &device, &out, *resume, cli.quiet)?;
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
            cfg.seed = cli.seed;
            if let Some(n) = iterations {
                cfg.iterations = *n;
            }
            let out = cli.out.join("neural_sde");
            let r = neural_sde::run(&cfg, &device, &out, *resume, cli.quiet)?;
            println!(
                "neural SDE: held-out marginal W2 {:.4} (untrained {:.4}, data-vs-data floor {:.4}); right well at t = {}: data {:.3}, model {:.3}; diffusion {:.3} (true {:.3}); {:.1} s",
                r.test_w2_marginal, r.test_w2_marginal_untrained, r.data_w2_floor, cfg.t_end, r.right_well_data, r.right_well_model,
                r.diffusion_mean, r.diffusion_true, r.train_seconds
            );
            for f in &r.files {
                println!("wrote {f}");
            }
        }
    }
    Ok(())
}
