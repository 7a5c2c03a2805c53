//! Training by regression on the interpolant (flow matching / stochastic interpolants), on the
//! fused CPU network: one step draws a minibatch of `x₀` and `x₁`, couples them, draws times
//! and latent noise, forms `x_t` and the target, and takes an Adam step on the mean squared
//! error.
//!
//! Every step's random numbers come from a generator seeded by `(seed, step)`, so a run resumed
//! from a checkpoint continues exactly as the uninterrupted run would have.

use std::path::{Path as FsPath, PathBuf};
use std::time::Instant;

use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::coupling::Coupling;
use super::model::{noise_scale, BaseKind, FmModel, NetConfig, Objective};
use super::path::{Interpolant, Path};
use crate::nn::fused::{MlpCache, TimeArg};
use crate::{Error, Result};

/// How training times are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TimeSampling {
    /// `t ~ U(0, 1)`.
    #[default]
    Uniform,
    /// `t = sigmoid(m + s n)`, `n ~ N(0, 1)` (Esser et al. 2024, §3.1: more weight on the
    /// middle of the path).
    LogitNormal {
        /// Location `m`.
        mean: f64,
        /// Scale `s > 0`.
        std: f64,
    },
}

impl TimeSampling {
    /// A time in `(0, 1)`.
    pub fn draw(&self, rng: &mut StdRng) -> f64 {
        match *self {
            TimeSampling::Uniform => rng.random::<f64>(),
            TimeSampling::LogitNormal { mean, std } => {
                let n: f64 = StandardNormal.sample(rng);
                1.0 / (1.0 + (-(mean + std * n)).exp())
            }
        }
    }
}

/// Settings of a training run (serde, every field defaulted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The interpolant.
    pub path: Path,
    /// How minibatches of `x₀` and `x₁` are paired.
    pub coupling: Coupling,
    /// What the network predicts.
    pub objective: Objective,
    /// How times are drawn.
    pub time: TimeSampling,
    /// Hidden widths.
    pub net: NetConfig,
    /// Minibatch size.
    pub batch_size: usize,
    /// Adam steps.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Clip the global gradient norm to this value (`None`: no clipping).
    pub grad_clip: Option<f64>,
    /// Probability of replacing the condition by the null condition (zeros) during training,
    /// for classifier-free guidance.
    pub cond_dropout: f64,
    /// Seed of the initial network and of every step's draws.
    pub seed: u64,
    /// Write a checkpoint every this many steps (0: only at the end), when a checkpoint file is
    /// given.
    pub checkpoint_every: usize,
    /// Record the loss every this many steps.
    pub log_every: usize,
}

impl Default for TrainConfig {
    /// torchcfm's 2D settings: batch 256, Adam 1e-3, 3 × 256 hidden.
    fn default() -> Self {
        Self {
            path: Path::default(),
            coupling: Coupling::default(),
            objective: Objective::Velocity,
            time: TimeSampling::Uniform,
            net: NetConfig::default(),
            batch_size: 256,
            steps: 3000,
            lr: 1e-3,
            grad_clip: None,
            cond_dropout: 0.0,
            seed: 0,
            checkpoint_every: 0,
            log_every: 10,
        }
    }
}

/// A source of samples `[n, dim]`.
pub enum Source<'a> {
    /// Standard normal `N(0, I)`.
    Gaussian,
    /// Rows of a data set, drawn uniformly with replacement.
    Data(ArrayView2<'a, f64>),
    /// Fresh samples from a generator: `f(rng, n) → [n, dim]`.
    Sampler(&'a (dyn Fn(&mut StdRng, usize) -> Array2<f64> + Sync)),
}

/// What to learn: a transport from `x₀` to `x₁` in `dim` dimensions, optionally conditioned on
/// one row of `cond` per row of the `x₁` data.
pub struct Problem<'a> {
    /// State width.
    pub dim: usize,
    /// Base samples.
    pub x0: Source<'a>,
    /// Data samples.
    pub x1: Source<'a>,
    /// Conditions `[n₁, cond_dim]`, row `i` for row `i` of `x1` (which must be `Data`).
    pub cond: Option<ArrayView2<'a, f64>>,
}

/// Where a run saves and resumes, and whether it shows progress.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Checkpoint file (JSON, written atomically). An existing one is resumed from.
    pub checkpoint: Option<PathBuf>,
    /// Hide the progress bar.
    pub quiet: bool,
}

/// The outcome of [`train`].
#[derive(Clone, Debug)]
pub struct TrainReport {
    /// `(step, loss)` every `log_every` steps.
    pub losses: Vec<(usize, f64)>,
    /// Wall time of the steps run in this call, seconds.
    pub seconds: f64,
    /// Wall time of all steps so far, including those of the runs resumed from, seconds.
    pub total_seconds: f64,
    /// Steps run in this call (fewer than `steps` after a resume).
    pub steps_run: usize,
}

pub(crate) use crate::train::{clip_global_norm, Adam};

/// What a checkpoint holds: the settings, the step reached, parameters, optimiser and log.
#[derive(Serialize, Deserialize)]
struct CheckpointState {
    config: TrainConfig,
    dim: usize,
    cond_dim: usize,
    base: BaseKind,
    step: usize,
    params: Vec<f32>,
    adam: Adam<f32>,
    losses: Vec<(usize, f64)>,
    /// Training seconds up to `step`.
    #[serde(default)]
    seconds: f64,
}

/// The generator of step `step`: one stream per step, from `(seed, step)`.
pub(crate) fn step_rng(seed: u64, step: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (step as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Draw `n` rows from a source into `out` (`[n, dim]`, f32); for `Data`, the rows drawn.
pub(crate) fn draw(source: &Source, dim: usize, n: usize, rng: &mut StdRng, rows: Option<&[usize]>, out: &mut Vec<f32>) -> Result<Vec<usize>> {
    out.clear();
    match source {
        Source::Gaussian => {
            out.extend((0..n * dim).map(|_| StandardNormal.sample(rng)).map(|x: f64| x as f32));
            Ok(Vec::new())
        }
        Source::Data(a) => {
            if a.ncols() != dim || a.nrows() == 0 {
                return Err(Error::Shape { what: "training data".into(), expected: vec![a.nrows().max(1), dim], got: vec![a.nrows(), a.ncols()] });
            }
            let idx: Vec<usize> = match rows {
                Some(r) => r.to_vec(),
                None => (0..n).map(|_| rng.random_range(0..a.nrows())).collect(),
            };
            for &i in &idx {
                out.extend(a.row(i).iter().map(|&x| x as f32));
            }
            Ok(idx)
        }
        Source::Sampler(f) => {
            let a = f(rng, n);
            if a.dim() != (n, dim) {
                return Err(Error::Shape { what: "sampler output".into(), expected: vec![n, dim], got: a.shape().to_vec() });
            }
            out.extend(a.iter().map(|&x| x as f32));
            Ok(Vec::new())
        }
    }
}

fn validate(problem: &Problem, config: &TrainConfig) -> Result<usize> {
    config.path.validate()?;
    config.coupling.validate()?;
    if problem.dim == 0 || config.batch_size == 0 || !(config.lr > 0.0) || config.log_every == 0 {
        return Err(Error::invalid("config", format!("need dim, batch_size, lr, log_every > 0 (dim = {}, batch_size = {}, lr = {}, log_every = {})", problem.dim, config.batch_size, config.lr, config.log_every)));
    }
    if !(0.0..1.0).contains(&config.cond_dropout) {
        return Err(Error::invalid("cond_dropout", format!("need 0 ≤ p < 1, got {}", config.cond_dropout)));
    }
    if let TimeSampling::LogitNormal { std, mean } = config.time {
        if !(std > 0.0 && mean.is_finite()) {
            return Err(Error::invalid("time.std", format!("logit-normal needs std > 0, got {std}")));
        }
    }
    if config.coupling == Coupling::Paired {
        match (&problem.x0, &problem.x1) {
            (Source::Data(a), Source::Data(b)) if a.nrows() == b.nrows() => {}
            _ => return Err(Error::invalid("coupling", "paired coupling needs x0 and x1 as Data with the same number of rows")),
        }
    }
    let cond_dim = match &problem.cond {
        None => 0,
        Some(c) => match &problem.x1 {
            Source::Data(x1) if x1.nrows() == c.nrows() && c.ncols() > 0 => c.ncols(),
            _ => return Err(Error::invalid("cond", "conditions need x1 as Data with one condition row per data row")),
        },
    };
    let base = base_of(&problem.x0);
    if config.objective != Objective::Velocity {
        let (lo, hi) = config.path.time_range();
        let s = noise_scale(&config.path, base, 0.5 * (lo + hi));
        if s == 0.0 {
            return Err(Error::invalid("objective", "score and denoiser objectives need a Gaussian part in x_t: a Gaussian base or a path with γ > 0"));
        }
    }
    Ok(cond_dim)
}

fn base_of(source: &Source) -> BaseKind {
    match source {
        Source::Gaussian => BaseKind::Gaussian,
        _ => BaseKind::Data,
    }
}

/// Train a network for `problem` with `config`; resumes from `run.checkpoint` when that file
/// exists (its settings must equal `config`, except the step count, which may grow).
///
/// # Errors
/// `InvalidArgument` / `Shape` for bad settings or data, or for a checkpoint written with
/// other settings; `Diverged` for a non-finite loss; `Io` / `Format` for checkpoint trouble.
pub fn train(problem: &Problem, config: &TrainConfig, run: &RunOptions) -> Result<(FmModel, TrainReport)> {
    let cond_dim = validate(problem, config)?;
    let (dim, bsz) = (problem.dim, config.batch_size);
    let base = base_of(&problem.x0);
    let mut model = FmModel::new(dim, cond_dim, &config.net, config.path, base, config.objective, config.seed);
    let n_params = model.params().len();
    let mut adam = Adam::<f32>::new(n_params);
    let mut losses = Vec::new();
    let mut start = 0;
    let mut earlier = 0.0;
    if let Some(ck) = run.checkpoint.as_deref().filter(|p| p.exists()) {
        let state = load_checkpoint(ck)?;
        let mut same = state.config.clone();
        same.steps = config.steps;
        same.checkpoint_every = config.checkpoint_every;
        if same != *config || state.dim != dim || state.cond_dim != cond_dim {
            return Err(Error::invalid("checkpoint", format!("{} was written by a run with other settings", ck.display())));
        }
        model.set_params(&state.params)?;
        adam = state.adam;
        losses = state.losses;
        start = state.step;
        earlier = state.seconds;
    }

    let (lo, hi) = config.path.time_range();
    let width = dim + cond_dim;
    let (mut x0, mut x1) = (Vec::new(), Vec::new());
    let mut input = vec![0.0f32; bsz * width];
    let mut ts = vec![0.0f32; bsz];
    let mut target = vec![0.0f32; bsz * dim];
    let mut weight = vec![1.0f32; bsz];
    let mut out = vec![0.0f32; bsz * dim];
    let mut cot = vec![0.0f32; bsz * dim];
    let mut x_bar = vec![0.0f32; bsz * width];
    let mut grad = vec![0.0f32; n_params];
    let mut cache = MlpCache::new();
    let bar = crate::train::progress(config.steps as u64, "fm train", run.quiet);
    bar.set_position(start as u64);
    let clock = Instant::now();
    let scale = 2.0 / (bsz * dim) as f32;
    let mut running = 0.0;
    for step in start..config.steps {
        let mut rng = step_rng(config.seed, step);
        let idx0 = draw(&problem.x0, dim, bsz, &mut rng, None, &mut x0)?;
        let paired = config.coupling == Coupling::Paired;
        let idx1 = draw(&problem.x1, dim, bsz, &mut rng, paired.then_some(&idx0[..]), &mut x1)?;
        let partner = config.coupling.partners(&x0, &x1, dim, &mut rng)?;
        let cond = problem.cond.as_ref();
        for i in 0..bsz {
            let j = partner[i];
            let t = lo + (hi - lo) * config.time.draw(&mut rng);
            ts[i] = t as f32;
            let c = config.path.coefficients(t);
            let sigma_n = noise_scale(&config.path, base, t);
            let row = &mut input[i * width..(i + 1) * width];
            let drop = cond_dim > 0 && config.cond_dropout > 0.0 && rng.random::<f64>() < config.cond_dropout;
            for k in 0..dim {
                let (a, b) = (x0[i * dim + k] as f64, x1[j * dim + k] as f64);
                let z: f64 = if c.gamma != 0.0 || c.d_gamma != 0.0 { StandardNormal.sample(&mut rng) } else { 0.0 };
                row[k] = (c.alpha * a + c.beta * b + c.gamma * z) as f32;
                let gauss = c.gamma * z + if base == BaseKind::Gaussian { c.alpha * a } else { 0.0 };
                target[i * dim + k] = match config.objective {
                    Objective::Velocity => (c.d_alpha * a + c.d_beta * b + c.d_gamma * z) as f32,
                    Objective::Denoiser | Objective::Score => (gauss / sigma_n) as f32,
                };
            }
            // Score: residual σ s_θ + ε, i.e. the output is scaled by σ and the target is −ε.
            weight[i] = if config.objective == Objective::Score { sigma_n as f32 } else { 1.0 };
            if config.objective == Objective::Score {
                target[i * dim..(i + 1) * dim].iter_mut().for_each(|v| *v = -*v);
            }
            if let Some(cond) = cond {
                for k in 0..cond_dim {
                    row[dim + k] = if drop { 0.0 } else { cond[[idx1[j], k]] as f32 };
                }
            }
        }
        model.net.forward_cached(TimeArg::PerSample(&ts), &input, bsz, &mut out, &mut cache);
        let mut loss = 0.0f64;
        for i in 0..bsz {
            for k in 0..dim {
                let r = weight[i] * out[i * dim + k] - target[i * dim + k];
                loss += (r * r) as f64;
                cot[i * dim + k] = scale * r * weight[i];
            }
        }
        loss /= (bsz * dim) as f64;
        crate::train::check_loss(step, loss)?;
        grad.iter_mut().for_each(|g| *g = 0.0);
        model.net.vjp(&mut cache, &cot, &mut x_bar, &mut grad, None);
        clip_global_norm(&mut grad, config.grad_clip);
        model.net.update_params(|p| adam.step(p, &grad, config.lr));
        running += loss;
        if (step + 1) % config.log_every == 0 {
            let mean = running / config.log_every as f64;
            losses.push((step + 1, mean));
            bar.set_message(format!("loss {mean:.4}"));
            running = 0.0;
        }
        bar.inc(1);
        if let Some(ck) = &run.checkpoint {
            if config.checkpoint_every > 0 && (step + 1) % config.checkpoint_every == 0 && step + 1 < config.steps {
                save_checkpoint(ck, config, (dim, cond_dim, base), (step + 1, earlier + clock.elapsed().as_secs_f64()), model.params(), &adam, &losses)?;
            }
        }
    }
    bar.finish_and_clear();
    let seconds = clock.elapsed().as_secs_f64();
    if let Some(ck) = &run.checkpoint {
        save_checkpoint(ck, config, (dim, cond_dim, base), (config.steps.max(start), earlier + seconds), model.params(), &adam, &losses)?;
    }
    Ok((model, TrainReport { losses, seconds, total_seconds: earlier + seconds, steps_run: config.steps.saturating_sub(start) }))
}

fn save_checkpoint(path: &FsPath, config: &TrainConfig, shape: (usize, usize, BaseKind), at: (usize, f64), params: &[f32], adam: &Adam<f32>, losses: &[(usize, f64)]) -> Result<()> {
    let (dim, cond_dim, base) = shape;
    let (step, seconds) = at;
    let state = CheckpointState { config: config.clone(), dim, cond_dim, base, step, params: params.to_vec(), adam: adam.clone(), losses: losses.to_vec(), seconds };
    crate::train::write_json(path, &state)
}

fn load_checkpoint(path: &FsPath) -> Result<CheckpointState> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Format { path: path.display().to_string(), reason: format!("not a flow-matching checkpoint: {e}") })
}

/// Load a model saved by [`train`] (its checkpoint file).
///
/// # Errors
/// `Io` / `Format` for an unreadable file.
pub fn load_model(path: &FsPath) -> Result<FmModel> {
    let s = load_checkpoint(path)?;
    let mut m = FmModel::new(s.dim, s.cond_dim, &s.config.net, s.config.path, s.base, s.config.objective, s.config.seed);
    m.set_params(&s.params)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clipping scales a gradient of norm 5 to norm 1 and leaves a short one alone.
    #[test]
    fn clipping_bounds_the_norm() {
        let mut g = vec![3.0f32, 4.0];
        clip_global_norm(&mut g, Some(1.0));
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
        clip_global_norm(&mut g, Some(2.0));
        assert!((g[0] - 0.6).abs() < 1e-6);
        clip_global_norm(&mut g, None);
        assert!((g[1] - 0.8).abs() < 1e-6);
    }

    /// Logit-normal times: `logit(t) ~ N(m, s²)`, so the sample mean of `logit(t)` is within
    /// 4 standard errors (4 s/√N) of m; uniform times
    /// have mean ½ within 4/√(12 N).
    #[test]
    fn time_sampling_laws() {
        let n = 20_000;
        let mut rng = StdRng::seed_from_u64(5);
        let (m, s) = (0.5, 1.2);
        let ln = TimeSampling::LogitNormal { mean: m, std: s };
        let logits: Vec<f64> = (0..n).map(|_| ln.draw(&mut rng)).map(|t| (t / (1.0 - t)).ln()).collect();
        let mean = logits.iter().sum::<f64>() / n as f64;
        assert!((mean - m).abs() < 4.0 * s / (n as f64).sqrt(), "mean logit {mean}");
        let ts: Vec<f64> = (0..n).map(|_| TimeSampling::Uniform.draw(&mut rng)).collect();
        let mean = ts.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 4.0 / (12.0 * n as f64).sqrt(), "uniform mean {mean}");
    }
}
