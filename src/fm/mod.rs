//! Flow matching and stochastic interpolants: learn a transport from a base density `ρ₀`
//! (noise, or a physical state) to data `ρ₁` by regression on an interpolant, and sample it
//! with an ODE or an SDE.
//!
//! * [`path`]: interpolants `x_t = α(t) x₀ + β(t) x₁ + γ(t) z` — linear (rectified flow,
//!   OT-CFM), trigonometric, variance preserving, Schrödinger bridge, user-defined.
//! * [`coupling`]: independent, exact minibatch OT (Hungarian), entropic OT (log-domain
//!   Sinkhorn), given pairs; exact W₂ between point clouds.
//! * [`mod@train`]: velocity, score and denoiser losses, uniform or logit-normal times,
//!   conditioning with condition dropout for classifier-free guidance, checkpoints that resume
//!   exactly; on any burn device through the one training loop ([`crate::train::fit`]), the
//!   fused CPU kernels ([`crate::nn::fused`]) accelerating tanh networks on the CPU.
//! * [`meanflow`]: one-step generation by mean flows (average velocity `u(x, t, s)`), with the
//!   Jacobian–vector product formed from the fused network's VJPs (CPU).
//! * [`sample`]: the ODE through [`crate::ode::solve`] (any solver, fixed steps or adaptive),
//!   the SDE family `dX = [b + ε s] dt + √(2ε) dW` through [`crate::sde::sdeint`], exact or
//!   Hutchinson log-densities, sampling with log-density in one pass, straightness, reflow.
//! * [`schedule`]: step schedules for few-step sampling on a [`crate::ode::StepSize::Grid`]
//!   (uniform, EDM polynomial, log-SNR, given) and the BOSS-style optimised grid.
//! * [`dpm`]: exponential integrators for noise-free Gaussian-type paths — DPM-Solver-1
//!   (DDIM), -2, -3 and DPM-Solver++(2M) — taking the path with the field.
//! * [`bespoke`]: bespoke solvers (Shaul et al. 2024) — a Runge–Kutta method on a learned
//!   scale-time transformation of the ODE, fitted to the model's own trajectories.
//! * [`sampler`]: one typed choice of ODE sampler (a Runge–Kutta solver or a DPM-Solver on a
//!   schedule, a bespoke solver, or an adaptive reference), saved beside a model.
//! * [`perturbation`]: flow perturbation, unbiased importance weights of the flow's samples
//!   without its Jacobian (Peng & Gao 2024).
//!
//! ```
//! use physflow::fm::{self, Coupling, Problem, SampleSource, TrainConfig, NetConfig};
//! use physflow::ode::{self, Options, Solver};
//! use physflow::train::{Run, RunOptions};
//!
//! // 1D: N(0, 1) → N(3, 0.5²) with a small network.
//! let data = ndarray::Array2::from_shape_fn((512, 1), |(i, _)| 3.0 + 0.5 * ((i as f64 + 0.5) / 512.0 - 0.5) * 3.4);
//! let problem = Problem { dim: 1, x0: SampleSource::Gaussian, x1: SampleSource::Data(data.view()), cond: None };
//! let run = RunOptions { batch_size: 64, steps: 300, ..TrainConfig::default().run };
//! let config = TrainConfig { coupling: Coupling::ExactOt, net: NetConfig::tanh(vec![32, 32]), run, ..TrainConfig::default() };
//! // Any burn device: `physflow::device::Backend::Wgpu.device()?` trains the same model on a GPU.
//! let cpu = burn::tensor::Device::flex();
//! let (model, _) = fm::train(&problem, &config, &cpu, &mut Run::quiet()).unwrap();
//! let device = physflow::device::cpu_f64().unwrap();
//! let x0 = burn::tensor::Tensor::<2>::zeros([4, 1], &device);
//! let opts = Options::fixed(Solver::Euler, 0.05);
//! let x1 = ode::solve(&model.field(), x0, &[0.0, 1.0], &opts).unwrap();
//! assert_eq!(x1.ys[1].dims(), [4, 1]);
//! ```

pub mod bespoke;
pub mod coupling;
pub mod dpm;
pub mod equivariant;
pub mod meanflow;
pub mod model;
pub mod path;
pub mod perturbation;
pub mod problems;
pub mod sample;
pub mod sampler;
pub mod schedule;
pub mod train;

pub use bespoke::{train_bespoke, BespokeConfig, BespokeReport, BespokeSolver};
pub use coupling::{assignment, sinkhorn, wasserstein2, Coupling};
pub use dpm::{dpm_solve, DpmSolution, DpmSolver};
pub use meanflow::{train_mean_flow, MeanFlowConfig, MeanFlowModel, MeanFlowTrainer};
pub use model::{BaseKind, FmModel, ModelField, ModelSaved, NetConfig, Objective};
pub use path::{Coefficients, FnPath, Interpolant, ProbabilityPath};
pub use perturbation::{sample_flow_perturbation, Perturbation};
pub use sample::{
    log_density, reflow_targets, sample_with_log_density, standard_normal_log_density, straightness, Diffusion, InterpolantSde, ScoreSource, Trace,
};
pub use sampler::{sample_checkpoint, BaseSamples, CheckpointSamples, Sampled, Sampler};
pub use schedule::{OptimiseSchedule, OptimisedSchedule, Schedule, StepErrors};
pub use train::{load_model, train, FmTrainer, Problem, SampleSource, TimeSampling, TrainConfig};
