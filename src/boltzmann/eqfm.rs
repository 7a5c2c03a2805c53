//! Equivariant flow matching for particle systems (Klein, Krämer & Noé 2023, "Equivariant flow
//! matching", NeurIPS): a continuous normalizing flow whose vector field is the E(n)- and
//! permutation-equivariant [`Egnn`], on the mean-free normal base
//! ([`Base::MeanFreeNormal`]), trained by regression on the conditional path
//!
//! ```text
//! x_t = (1 − t) x₀ + t x₁ + σ ε,   target u = x₁ − x₀,   t ~ U(0, 1),
//! ```
//!
//! (Lipman et al. 2023; σ > 0 as in Tong et al. 2023), `x₀` from the base, `x₁` from data
//! (MCMC samples of `exp(−β u)`), `ε` mean-free normal. The pairs of a minibatch are coupled
//! ([`EqCoupling`]) independently, by optimal transport between configurations, or by optimal
//! transport between orbits: each base sample is first aligned to each data sample over
//! relabellings and orthogonal maps ([`crate::fm::equivariant::align`]), the Hungarian method
//! pairs the batch on the aligned costs, and each pair trains on the aligned copy of `x₀`.
//! The base and the target are invariant under those maps, so aligning keeps `x₀` a base
//! sample; the paths get shorter and straighter (Klein et al. §3.2).
//!
//! The trained flow is a Boltzmann generator ([`EqFmModel`]): samples with their exact
//! log-density by the continuous change of variables `log q(x₁) = log ρ₀(x₀) − ∫₀¹ ∇·v dt`
//! with the exact trace ([`crate::fm::sample_with_log_density`], [`Trace::Exact`], batched over
//! dimensions by [`crate::ode::ModuleField`]), reweighted to `exp(−β u)`. The velocity is
//! translation-invariant and mean-free, so its full-space divergence is its divergence in the
//! centre-of-mass-free subspace, where `q` is a density.

use std::path::Path as FsPath;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{DType, Device, Tensor, TensorData};
use ndarray::{Array1, Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::RngExt;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{reweight, Weighted};

use crate::energy::Energy;
use crate::flows::Base;
use crate::fm::equivariant::{align, align_from_identity, sq_dist, Orthogonal};
use crate::fm::{assignment, log_density, sample_flow_perturbation, sample_with_log_density, Perturbation, Trace};
use crate::nn::{Egnn, EgnnConfig};
use crate::ode::{self, ModuleField, Solver, Time};
use crate::train::{CheckpointReader, CheckpointWriter, LrSchedule, Run, RunOptions, Trainer};
use crate::{Error, Result};

/// How the base and data samples of a minibatch are paired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EqCoupling {
    /// Independent pairs (plain flow matching).
    Independent,
    /// Minibatch OT on the squared Euclidean distance between configurations (Tong et al. 2023).
    Ot,
    /// Minibatch OT between orbits: the cost of each pair after aligning it over relabellings
    /// and orthogonal maps (`rounds` alternations of Hungarian assignment and Kabsch from the
    /// identity, as Klein et al. 2023, §3.2), the Hungarian method pairs the batch on those
    /// costs, and each chosen pair is aligned again from every principal-axis start as well
    /// ([`align`]), which can only lower its cost.
    AlignedOt {
        /// Alternations of assignment and Kabsch per start (≥ 1).
        rounds: usize,
        /// Allow reflections (energies of distances are reflection-invariant; the EGNN is
        /// O(d)-equivariant).
        reflections: bool,
    },
}

/// How the log-density (and so the weight) of each generated sample is computed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Likelihood {
    /// The exact divergence along the sampling solve (`N·d` vector–Jacobian products per
    /// evaluation, batched): exact weights.
    Exact,
    /// Hutchinson's estimator with `probes` Rademacher vectors per sample, fixed along the
    /// solve (Grathwohl et al. 2019): one vector–Jacobian product per probe, but `exp` of an
    /// unbiased log-density estimate, so the weights are biased.
    Hutchinson {
        /// Probes per sample (≥ 1).
        probes: usize,
    },
    /// Flow perturbation ([`crate::fm::perturbation`]): unbiased weights with no
    /// vector–Jacobian products, each of the `steps` solver steps perturbed by mean-free noise
    /// of scale `sigma`; the samples carry that noise.
    FlowPerturbation(Perturbation),
}

/// Settings of equivariant flow matching; every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EqFmConfig {
    /// The vector field (its `particles` and `spatial_dim` must match the data).
    pub egnn: EgnnConfig,
    /// Pairing of the minibatch.
    pub coupling: EqCoupling,
    /// Noise `σ` of the conditional path (Klein et al. use 0.01).
    pub sigma: f64,
    /// Solver for sampling and likelihoods (the weights need an accurate log-density: check a
    /// fixed step against an adaptive solve when changing the model).
    pub sampling: ode::Options,
    /// Samples per solve when sampling or scoring (bounds memory).
    pub chunk: usize,
    /// The log-density of generated samples ([`EqFmModel::sample`]); scoring given
    /// configurations ([`EqFmModel::log_prob`]) always uses the exact trace.
    pub likelihood: Likelihood,
    /// Steps, batch, learning rate and schedule, clipping, seed, log and checkpoint cadence.
    pub run: RunOptions,
}

impl Default for EqFmConfig {
    /// The DW4 settings: a 4-layer EGNN of width 64, aligned OT, σ = 0.01, 2000 steps of 256;
    /// sampling by RK4 with 20 steps (the aligned-OT paths are nearly straight; an adaptive
    /// solver costs more evaluations of the exact trace, which is 8 backward passes here).
    fn default() -> Self {
        EqFmConfig {
            egnn: EgnnConfig { particles: 4, spatial_dim: 2, layers: 4, hidden: 64, coord_init_scale: 1e-3 },
            coupling: EqCoupling::AlignedOt { rounds: 2, reflections: true },
            sigma: 0.01,
            sampling: ode::Options::fixed(Solver::Rk4, 0.05),
            chunk: 1000,
            likelihood: Likelihood::Exact,
            run: RunOptions {
                steps: 2000,
                batch_size: 256,
                lr: 5e-4,
                schedule: LrSchedule::Cosine { floor: 0.1 },
                grad_clip: Some(1.0),
                log_every: 50,
                ..RunOptions::default()
            },
        }
    }
}

impl EqFmConfig {
    /// Check the settings.
    ///
    /// # Errors
    /// `InvalidArgument` naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        self.egnn.validate()?;
        self.run.validate()?;
        if !(self.sigma >= 0.0 && self.sigma.is_finite()) {
            return Err(Error::invalid("sigma", format!("need a finite σ ≥ 0, got {}", self.sigma)));
        }
        if self.chunk == 0 {
            return Err(Error::invalid("chunk", "need at least 1 sample per solve"));
        }
        if let EqCoupling::AlignedOt { rounds: 0, .. } = self.coupling {
            return Err(Error::invalid("coupling.rounds", "need at least 1 round"));
        }
        match self.likelihood {
            Likelihood::Exact => {}
            Likelihood::Hutchinson { probes: 0 } => return Err(Error::invalid("likelihood.probes", "need at least 1 probe")),
            Likelihood::Hutchinson { .. } => {}
            Likelihood::FlowPerturbation(p) => p.validate()?,
        }
        Ok(())
    }

    /// The base: the mean-free normal on the EGNN's particles.
    pub fn base(&self) -> Base {
        Base::MeanFreeNormal { particles: self.egnn.particles, spatial_dim: self.egnn.spatial_dim }
    }
}

/// Centres every configuration of `x: [batch, N·d]` (particle-major) in place.
fn centre(x: &mut [f64], n: usize, d: usize) {
    for row in x.chunks_mut(n * d) {
        for k in 0..d {
            let m = (0..n).map(|i| row[i * d + k]).sum::<f64>() / n as f64;
            (0..n).for_each(|i| row[i * d + k] -= m);
        }
    }
}

/// The base samples `x0` paired with the data samples `x1` (both `[b, N·d]`, centred, row-major):
/// row `j` of the result is the base sample (aligned, for [`EqCoupling::AlignedOt`]) that
/// travels to `x1[j]`.
///
/// # Errors
/// `InvalidArgument` when an alignment fails (non-finite input).
pub fn couple(x0: &[f64], x1: &[f64], b: usize, d: usize, coupling: EqCoupling) -> Result<Vec<f64>> {
    let w = x0.len() / b.max(1);
    let row = |x: &[f64], i: usize| x[i * w..(i + 1) * w].to_vec();
    let pair = |cost: &[f64]| {
        let sigma = assignment(cost, b);
        let mut inv = vec![0; b];
        sigma.iter().enumerate().for_each(|(i, &j)| inv[j] = i);
        inv
    };
    match coupling {
        EqCoupling::Independent => Ok(x0.to_vec()),
        EqCoupling::Ot => {
            let cost: Vec<f64> = (0..b * b).map(|ij| sq_dist(&x0[(ij / b) * w..(ij / b + 1) * w], &x1[(ij % b) * w..(ij % b + 1) * w])).collect();
            Ok(pair(&cost).into_iter().flat_map(|i| row(x0, i)).collect())
        }
        EqCoupling::AlignedOt { rounds, reflections } => {
            let group = if reflections { Orthogonal::WithReflections } else { Orthogonal::Rotations };
            let cost: Vec<f64> = (0..b * b)
                .into_par_iter()
                .map(|ij| align_from_identity(&x0[(ij / b) * w..(ij / b + 1) * w], &x1[(ij % b) * w..(ij % b + 1) * w], d, group, rounds).map(|(_, c)| c))
                .collect::<Result<_>>()?;
            let inv = pair(&cost);
            let rows: Vec<Vec<f64>> =
                (0..b).into_par_iter().map(|j| align(&row(x0, inv[j]), &row(x1, j), d, group, rounds).map(|(a, _)| a)).collect::<Result<_>>()?;
            Ok(rows.concat())
        }
    }
}

/// Equivariant flow matching as a [`Trainer`]: the EGNN on an autodiff device, Adam, and the
/// centred training configurations.
pub struct EqFmTrainer {
    cfg: EqFmConfig,
    data: Vec<f64>,
    rows: usize,
    net: Egnn,
    optim: ModuleOptimizer,
    device: Device,
    dtype: DType,
}

impl EqFmTrainer {
    /// A fresh EGNN (seed `cfg.run.seed`) for data `x1: [M, N·d]` (Cartesian, particle-major;
    /// centred here) on `device` (its autodiff twin is used; the device's default float type).
    ///
    /// # Errors
    /// `InvalidArgument` for bad settings or no data, `Shape` for data of another width,
    /// `NonFinite` for a non-finite configuration.
    pub fn new(data: ArrayView2<'_, f64>, cfg: &EqFmConfig, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let (n, d) = (cfg.egnn.particles, cfg.egnn.spatial_dim);
        if data.ncols() != n * d {
            return Err(Error::Shape {
                what: format!("training configurations ({n} particles × {d} dims)"),
                expected: vec![data.nrows(), n * d],
                got: vec![data.nrows(), data.ncols()],
            });
        }
        if data.nrows() == 0 {
            return Err(Error::invalid("data", "need at least one training configuration"));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteInput { what: "training configuration", index: i / (n * d) });
        }
        let mut flat: Vec<f64> = data.iter().copied().collect();
        centre(&mut flat, n, d);
        let ad = device.clone().autodiff();
        let net = cfg.egnn.init(cfg.run.seed, &ad)?;
        let dtype = net.dtype();
        Ok(Self { cfg: cfg.clone(), data: flat, rows: data.nrows(), net, optim: AdamConfig::new().init(), device: ad, dtype })
    }

    /// The model as it stands (without autodiff).
    pub fn model(&self) -> EqFmModel {
        EqFmModel { config: self.cfg.clone(), egnn: self.net.clone().valid() }
    }
}

impl Trainer for EqFmTrainer {
    fn kind(&self) -> &'static str {
        "equivariant flow matching"
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "egnn": self.cfg.egnn, "coupling": self.cfg.coupling, "sigma": self.cfg.sigma, "rows": self.rows, "dtype": format!("{:?}", self.dtype) })
    }

    fn step(&mut self, step: usize, lr: f64, rng: &mut StdRng) -> Result<Vec<f64>> {
        let (n, d) = (self.cfg.egnn.particles, self.cfg.egnn.spatial_dim);
        let (w, b) = (n * d, self.cfg.run.batch_size);
        let base = self.cfg.base();
        let x1: Vec<f64> = (0..b)
            .flat_map(|_| {
                let r = rng.random_range(0..self.rows);
                self.data[r * w..(r + 1) * w].to_vec()
            })
            .collect();
        let z = base.sample(b, rng).into_raw_vec_and_offset().0;
        let x0 = couple(&z, &x1, b, d, self.cfg.coupling)?;
        let ts: Vec<f64> = (0..b).map(|_| rng.random::<f64>()).collect();
        let eps = base.sample(b, rng).into_raw_vec_and_offset().0;
        let s = self.cfg.sigma;
        let mut xt = vec![0.0; b * w];
        let mut target = vec![0.0; b * w];
        for k in 0..b * w {
            let t = ts[k / w];
            xt[k] = (1.0 - t) * x0[k] + t * x1[k] + s * eps[k];
            target[k] = x1[k] - x0[k];
        }
        let on = (&self.device, self.dtype);
        let pred = self.net.velocity(&Time::PerSample(ts), Tensor::<2>::from_data(TensorData::new(xt, [b, w]), on))?;
        let loss = (pred - Tensor::<2>::from_data(TensorData::new(target, [b, w]), on)).square().mean();
        let value: f64 = crate::host::ToHost::host_vec::<f64>(&loss.clone().without_autodiff())?[0];
        crate::train::check_loss(step, value)?;
        let mut grads = GradientsParams::from_grads(loss.backward(), &self.net);
        if let Some(c) = self.cfg.run.grad_clip {
            crate::train::clip_grad_norm(&self.net, &mut grads, c)?;
        }
        self.net = self.optim.step(lr, self.net.clone(), grads);
        Ok(vec![value])
    }

    fn save(&self, w: &mut CheckpointWriter) -> Result<()> {
        w.module("model", &self.net)?;
        w.json("eqfm", &self.cfg)?;
        w.optimizer("optimizer", &self.optim)
    }

    fn load(&mut self, r: &CheckpointReader) -> Result<()> {
        self.net = r.module("model", self.net.clone())?;
        self.optim = r.optimizer("optimizer", std::mem::replace(&mut self.optim, AdamConfig::new().init()))?;
        Ok(())
    }
}

/// What [`train_eqfm`] reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EqFmReport {
    /// `(step, mean flow-matching loss)` every `log_every` steps.
    pub losses: Vec<(usize, f64)>,
    /// Steps run in this call.
    pub steps_run: usize,
    /// Training seconds of all steps so far (resumed runs included).
    pub seconds: f64,
}

/// Trains an equivariant flow-matching model on configurations `data: [M, N·d]` on `device`
/// through [`crate::train::fit`] (resuming from `run`'s checkpoint when it holds one of the same
/// settings).
///
/// # Errors
/// As [`EqFmTrainer::new`]; `Diverged` for a non-finite loss; checkpoint I/O errors.
pub fn train_eqfm(data: ArrayView2<'_, f64>, cfg: &EqFmConfig, device: &Device, run: &mut Run<'_, EqFmTrainer>) -> Result<(EqFmModel, EqFmReport)> {
    let mut trainer = EqFmTrainer::new(data, cfg, device)?;
    if run.label == "train" {
        run.label = "eq-FM".into();
    }
    let fit = crate::train::fit(&mut trainer, &cfg.run, run)?;
    let losses = fit.log.iter().map(|r| (r.step, r.values[0])).collect();
    Ok((trainer.model(), EqFmReport { losses, steps_run: fit.steps_run, seconds: fit.total_seconds }))
}

/// Loads the model of a checkpoint directory written by [`train_eqfm`], on `device`.
///
/// # Errors
/// `Io` / `Format` for an unreadable or foreign checkpoint.
pub fn load_eqfm(dir: &FsPath, device: &Device) -> Result<EqFmModel> {
    let (r, _) = crate::train::Checkpoint::new(dir).read_state("equivariant flow matching")?;
    let config: EqFmConfig = r.json("eqfm")?;
    config.validate()?;
    let egnn = r.module("model", config.egnn.init(config.run.seed, device)?)?;
    Ok(EqFmModel { config, egnn })
}

/// A trained equivariant flow: `x = φ₁(x₀)` for `dx/dt = v(t, x)` with `x₀` mean-free normal.
#[derive(Clone, Debug)]
pub struct EqFmModel {
    /// The settings it was trained with.
    pub config: EqFmConfig,
    egnn: Egnn,
}

impl EqFmModel {
    /// The vector field.
    pub fn egnn(&self) -> &Egnn {
        &self.egnn
    }

    fn check_width(&self, what: &str, x: &ArrayView2<'_, f64>) -> Result<()> {
        let w = self.config.egnn.dim();
        if x.ncols() != w {
            return Err(Error::Shape { what: what.into(), expected: vec![x.nrows(), w], got: vec![x.nrows(), x.ncols()] });
        }
        Ok(())
    }

    fn tensor(&self, x: &[f64], rows: usize) -> Tensor<2> {
        let device = self.egnn.device();
        Tensor::<2>::from_data(TensorData::new(x.to_vec(), [rows, self.config.egnn.dim()]), (&device, self.egnn.dtype()))
    }

    /// The same flow with another way of computing the samples' log-densities.
    ///
    /// # Errors
    /// `InvalidArgument` for bad settings of `likelihood`.
    pub fn with_likelihood(&self, likelihood: Likelihood) -> Result<EqFmModel> {
        let mut m = self.clone();
        m.config.likelihood = likelihood;
        m.config.validate()?;
        Ok(m)
    }

    /// `n` samples `x: [n, N·d]` (centred) with `log q(x): [n]` (density on the
    /// centre-of-mass-free subspace), solved in chunks of `config.chunk`, the log-density as
    /// `config.likelihood` says (an estimate for Hutchinson and flow perturbation).
    ///
    /// # Errors
    /// The solver's errors (a diverging solve, step-size underflow).
    pub fn sample(&self, n: usize, rng: &mut StdRng) -> Result<(Array2<f64>, Array1<f64>)> {
        let base = self.config.base();
        let field = ModuleField::new(self.egnn.clone());
        let w = self.config.egnn.dim();
        let (mut xs, mut lq) = (Vec::with_capacity(n * w), Vec::with_capacity(n));
        let mut done = 0;
        while done < n {
            let m = self.config.chunk.min(n - done);
            let z = base.sample(m, rng);
            let lp0 = base.log_prob(z.view())?.to_vec();
            let z: Vec<f64> = z.iter().copied().collect();
            let z = self.tensor(&z, m);
            let (x, l) = match self.config.likelihood {
                Likelihood::Exact => sample_with_log_density(&field, &z, &lp0, Trace::Exact, &self.config.sampling)?,
                Likelihood::Hutchinson { probes } => {
                    sample_with_log_density(&field, &z, &lp0, Trace::Hutchinson { probes, seed: rng.random() }, &self.config.sampling)?
                }
                Likelihood::FlowPerturbation(p) => {
                    // Mean-free standard normal noise: a draw of the base itself.
                    let mut noise = || base.sample(m, rng).iter().copied().collect::<Vec<f64>>();
                    sample_flow_perturbation(&field, &z, &lp0, self.config.sampling.solver, &p, &mut noise)?
                }
            };
            xs.extend(x);
            lq.extend(l);
            done += m;
        }
        Ok((Array2::from_shape_vec((n, w), xs).map_err(|e| Error::invalid("samples", e.to_string()))?, Array1::from(lq)))
    }

    /// `log q(x)` per row of `x: [batch, N·d]` (centred first), by the reverse solve.
    ///
    /// # Errors
    /// `Shape` for a wrong width; the solver's errors.
    pub fn log_prob(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        self.check_width("configurations to score", &x)?;
        let base = self.config.base();
        let field = ModuleField::new(self.egnn.clone());
        let (n, d) = (self.config.egnn.particles, self.config.egnn.spatial_dim);
        let mut flat: Vec<f64> = x.iter().copied().collect();
        centre(&mut flat, n, d);
        let w = n * d;
        let mut out = Vec::with_capacity(x.nrows());
        for rows in flat.chunks(self.config.chunk * w) {
            let m = rows.len() / w;
            // −∫₀¹ ∇·v dt from the solve (zero base term), then log ρ₀ of the base point.
            let (l, x0) = log_density(&field, &self.tensor(rows, m), |_, _| vec![0.0; m], Trace::Exact, &self.config.sampling)?;
            let x0 = Array2::from_shape_vec((m, w), x0).map_err(|e| Error::invalid("base points", e.to_string()))?;
            let lp0 = base.log_prob(x0.view())?;
            out.extend(l.iter().zip(&lp0).map(|(a, b)| a + b));
        }
        Ok(Array1::from(out))
    }

    /// `n` samples with their energies and log weights `log w = −β u − log q`. Configurations
    /// whose energy is not finite (overlapping particles) get weight zero (`log w = −∞`) and
    /// are counted in the returned number.
    ///
    /// # Errors
    /// As [`EqFmModel::sample`]; `Shape` when the energy is on another width.
    pub fn sample_weighted(&self, energy: &dyn Energy, beta: f64, n: usize, rng: &mut StdRng) -> Result<(Weighted, usize)> {
        if energy.dim() != self.config.egnn.dim() {
            return Err(Error::Shape {
                what: format!("energy `{}` for the model's configurations", energy.name()),
                expected: vec![self.config.egnn.dim()],
                got: vec![energy.dim()],
            });
        }
        let (x, log_q) = self.sample(n, rng)?;
        let u = crate::energy::evaluate_energy(energy, x.view())?;
        let mut log_w = reweight::log_weights(beta, u.view(), log_q.view())?;
        let mut skipped = 0;
        for (lw, uu) in log_w.iter_mut().zip(&u) {
            if !uu.is_finite() || !lw.is_finite() {
                *lw = f64::NEG_INFINITY;
                skipped += 1;
            }
        }
        Ok((Weighted { x, u, log_q, log_w }, skipped))
    }
}
