//! Functional flow matching (Kerrigan et al. 2024): regression of a field model on the
//! straight path from GP noise to data, `x_t = (1 − (1 − σ_min) t) x₀ + t x₁`, target velocity
//! `x₁ − (1 − σ_min) x₀` (Lipman et al. 2023, eq. 23), `t ~ U(0, 1)`, on normalised fields.
//!
//! Optional PDE-residual term in the style of PBFM (Baldan et al. 2025, "Flow matching meets
//! PDEs"): `w · mean_b ‖h(x̂₁)‖² / m` on the predicted endpoint `x̂₁ = x_t + (1 − t) v_θ` in
//! physical units, for a constraint that holds for every training field (mass conservation,
//! a discretised PDE). Its gradient enters burn's backward pass as the cotangent
//! `∂/∂x̂₁ = (2w/(Bm)) σ Jᵀ h` of a surrogate `⟨x̂₁, c⟩`, so analytic Jacobians serve both the
//! projection and the loss. (PBFM's conflict-free gradient combination is not implemented: the
//! two terms are summed.)
//!
//! Every step's draws come from a generator seeded by `(seed, step)`, and checkpoints hold the
//! parameters, Adam's moments and the loop state, so a resumed run continues as the
//! uninterrupted one would.

use std::path::PathBuf;
use std::time::Instant;

use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::ArrayView2;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::constraint::Constraint;
use super::gp::GpConfig;
use super::grid::Grid;
use super::model::{param_dtype, FieldModel, FieldModelMeta};
use crate::fm::train::step_rng;
use crate::host::ToHost;
use crate::nn::FieldNetConfig;
use crate::train::{check_loss, progress, Checkpoint};
use crate::{Error, Result};

/// Settings of a training run; every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FfmConfig {
    /// The network (its channel counts are set from the grid).
    pub net: FieldNetConfig,
    /// The GP base, in normalised units.
    pub gp: GpConfig,
    /// `σ_min` of the path.
    pub sigma_min: f64,
    /// Minibatch size.
    pub batch_size: usize,
    /// Adam steps.
    pub steps: usize,
    /// Adam learning rate, cosine-decayed to 10 % over the run.
    pub lr: f64,
    /// Clip the global gradient norm (`None`: no clipping).
    pub grad_clip: Option<f64>,
    /// Weight `w` of the PDE-residual term (used only when a residual constraint is given).
    pub residual_weight: f64,
    /// Seed of the initial network and of every step's draws.
    pub seed: u64,
    /// Checkpoint every this many steps (0: only at the end), when a checkpoint is given.
    pub checkpoint_every: usize,
    /// Record the loss every this many steps.
    pub log_every: usize,
}

impl Default for FfmConfig {
    fn default() -> Self {
        FfmConfig {
            net: FieldNetConfig::default(),
            gp: GpConfig::default(),
            sigma_min: 1e-4,
            batch_size: 16,
            steps: 2000,
            lr: 1e-3,
            grad_clip: Some(1.0),
            residual_weight: 0.0,
            seed: 0,
            checkpoint_every: 250,
            log_every: 10,
        }
    }
}

/// What to learn: fields on `grid`, one per row of `data: [N, n]` (physical units), and
/// optionally a constraint all of them satisfy, for the residual term.
pub struct FfmProblem<'a> {
    /// The grid.
    pub grid: &'a Grid,
    /// Training fields `[N, n]`.
    pub data: ArrayView2<'a, f64>,
    /// A constraint every training field satisfies (the PBFM term).
    pub residual: Option<&'a dyn Constraint>,
}

/// Where a run checkpoints and whether it shows progress.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Checkpoint directory; an existing checkpoint is resumed from.
    pub checkpoint: Option<PathBuf>,
    /// Hide the progress bar.
    pub quiet: bool,
    /// Stop after this many steps in this call (checkpointing there), to be resumed later.
    pub stop_after: Option<usize>,
}

/// The outcome of [`train_ffm`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FfmReport {
    /// `(step, flow-matching loss, residual term)` every `log_every` steps.
    pub losses: Vec<(usize, f64, f64)>,
    /// Steps run in this call.
    pub steps_run: usize,
    /// Training seconds of all steps so far (resumed runs included).
    pub seconds: f64,
}

/// Loop state stored in checkpoints.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct LoopState {
    config: FfmConfig,
    step: usize,
    mean: Vec<f64>,
    std: Vec<f64>,
    report: FfmReport,
}

/// Per-channel mean and standard deviation of the data (σ floored at 1e-12).
fn channel_stats(grid: &Grid, data: &ArrayView2<'_, f64>) -> (Vec<f64>, Vec<f64>) {
    let c = grid.channels.len();
    let per = grid.len() / c;
    (0..c)
        .map(|ch| {
            let vals = data.rows().into_iter().flat_map(|r| r.iter().skip(ch * per).take(per).copied().collect::<Vec<_>>());
            let (mut s, mut s2, mut k) = (0.0, 0.0, 0.0);
            for v in vals {
                s += v;
                s2 += v * v;
                k += 1.0;
            }
            let m = s / k;
            (m, (s2 / k - m * m).max(0.0).sqrt().max(1e-12))
        })
        .unzip()
}

/// Trains a field model by functional flow matching on `device` (its autodiff twin is used).
///
/// # Errors
/// `Shape` for data that does not fit the grid, `InvalidArgument` for an empty data set, a
/// zero batch or steps, or a residual constraint of another size; `Diverged` for a non-finite
/// loss; `Io`/`Format` for checkpoint files; `InvalidArgument` when a checkpoint was written
/// with another configuration.
pub fn train_ffm(problem: &FfmProblem<'_>, cfg: &FfmConfig, run: &RunOptions, device: &Device) -> Result<(FieldModel, FfmReport)> {
    let grid = problem.grid;
    grid.validate()?;
    grid.check_flat("training fields", &problem.data)?;
    if problem.data.nrows() == 0 || cfg.batch_size == 0 || cfg.steps == 0 {
        return Err(Error::invalid("train", format!("need data, batch_size ≥ 1 and steps ≥ 1, got {} fields, batch {}, {} steps", problem.data.nrows(), cfg.batch_size, cfg.steps)));
    }
    if let Some(c) = problem.residual {
        if c.dim() != grid.len() {
            return Err(Error::invalid("residual", format!("constraint `{}` is on fields of {} values, the grid has {}", c.name(), c.dim(), grid.len())));
        }
    }
    if let Some(i) = problem.data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite { what: "training field", step: i / grid.len(), t: f64::NAN });
    }
    let [nc, nx, ny] = grid.shape4();
    let n = grid.len();
    let net_cfg = cfg.net.with_channels(nc);
    let gp = cfg.gp.sampler(grid)?;
    let ad = device.clone().autodiff();
    let mut net = net_cfg.init(cfg.seed, &ad);
    let mut adam = AdamConfig::new();
    if let Some(c) = cfg.grad_clip {
        adam = adam.with_grad_clipping(Some(GradientClippingConfig::Norm(c as f32)));
    }
    let mut optim = adam.init();
    let (mean, std) = channel_stats(grid, &problem.data);
    let mut state = LoopState { config: cfg.clone(), step: 0, mean, std, report: FfmReport::default() };
    let ckpt = run.checkpoint.as_ref().map(Checkpoint::new);
    if let Some(c) = ckpt.as_ref().filter(|c| c.exists()) {
        let (m, o, s): (_, _, LoopState) = c.load(net, optim)?;
        if s.config != *cfg {
            return Err(Error::invalid("checkpoint", "the checkpoint was written with another training configuration; remove it or restore that configuration"));
        }
        (net, optim, state) = (m, o, s);
    }
    let per = n / nc;
    let bar = progress(cfg.steps as u64, "FFM", run.quiet);
    bar.set_position(state.step as u64);
    let start = Instant::now();
    let seconds_before = state.report.seconds;
    let dtype = param_dtype(&net);
    let on = (&ad, dtype);
    let b = cfg.batch_size;
    let mut steps_run = 0;
    while state.step < cfg.steps && run.stop_after.is_none_or(|k| steps_run < k) {
        let step = state.step;
        let mut rng = step_rng(cfg.seed, step);
        let rows: Vec<usize> = (0..b).map(|_| rng.random_range(0..problem.data.nrows())).collect();
        let x0 = gp.sample(&mut rng, b);
        let ts: Vec<f64> = (0..b).map(|_| rng.random::<f64>()).collect();
        let s = 1.0 - cfg.sigma_min;
        let mut xt = vec![0.0; b * n];
        let mut target = vec![0.0; b * n];
        for (k, &r) in rows.iter().enumerate() {
            let t = ts[k];
            for p in 0..n {
                let c = p / per;
                let x1 = (problem.data[[r, p]] - state.mean[c]) / state.std[c];
                let z = x0[[k, p]];
                xt[k * n + p] = (1.0 - s * t) * z + t * x1;
                target[k * n + p] = x1 - s * z;
            }
        }
        let xt_t = Tensor::<4>::from_data(TensorData::new(xt, [b, nc, nx, ny]), on);
        let t_t = Tensor::<1>::from_data(TensorData::new(ts.clone(), [b]), on);
        let pred = net.forward(xt_t.clone(), t_t.clone());
        let fm_loss = (pred.clone() - Tensor::<4>::from_data(TensorData::new(target, [b, nc, nx, ny]), on)).square().mean();
        let mut res_value = 0.0;
        let loss = match problem.residual.filter(|_| cfg.residual_weight > 0.0) {
            Some(c) => {
                let one_minus_t = Tensor::<1>::from_data(TensorData::new(ts.iter().map(|t| 1.0 - t).collect::<Vec<f64>>(), [b]), on).reshape([b, 1, 1, 1]);
                let end = xt_t + pred * one_minus_t;
                let (value, cot) = residual_cotangent(c, &end.clone().without_autodiff().to_vec_as::<f64>(), b, &state.mean, &state.std, per, cfg.residual_weight);
                res_value = value;
                fm_loss.clone() + (end * Tensor::<4>::from_data(TensorData::new(cot, [b, nc, nx, ny]), on)).sum()
            }
            None => fm_loss.clone(),
        };
        let fm_value = check_loss(step, fm_loss.clone().into_scalar::<f64>())?;
        check_loss(step, res_value)?;
        let grads = loss.backward();
        let gp_params = GradientsParams::from_grads(grads, &net);
        let lr = cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / cfg.steps as f64).cos()));
        net = optim.step(lr, net, gp_params);
        state.step += 1;
        steps_run += 1;
        if step % cfg.log_every.max(1) == 0 || state.step == cfg.steps {
            state.report.losses.push((step, fm_value, res_value));
        }
        bar.set_position(state.step as u64);
        bar.set_message(format!("loss {fm_value:.3e}"));
        state.report.seconds = seconds_before + start.elapsed().as_secs_f64();
        if let Some(c) = &ckpt {
            let stopping = run.stop_after == Some(steps_run);
            if (cfg.checkpoint_every > 0 && state.step % cfg.checkpoint_every == 0) || state.step == cfg.steps || stopping {
                c.save(&net, &optim, &state)?;
            }
        }
    }
    bar.finish_and_clear();
    state.report.steps_run = steps_run;
    let meta = FieldModelMeta { grid: grid.clone(), net: net_cfg, gp: cfg.gp.clone(), sigma_min: cfg.sigma_min, mean: state.mean.clone(), std: state.std.clone() };
    let model = FieldModel::new(meta, &net)?;
    Ok((model, state.report))
}

/// The residual term `w · mean_b ‖h(μ + σ x̂_b)‖² / m` and its cotangent with respect to the
/// normalised endpoints `x̂: [B, n]`.
fn residual_cotangent(c: &dyn Constraint, end: &[f64], b: usize, mean: &[f64], std: &[f64], per: usize, w: f64) -> (f64, Vec<f64>) {
    let n = c.dim();
    let m = c.rows().max(1);
    let mut value = 0.0;
    let mut cot = vec![0.0; b * n];
    let mut h = vec![0.0; c.rows()];
    for k in 0..b {
        let phys: Vec<f64> = (0..n).map(|p| mean[p / per] + std[p / per] * end[k * n + p]).collect();
        c.residual(&phys, &mut h);
        value += h.iter().map(|x| x * x).sum::<f64>();
        let mut g = vec![0.0; n];
        c.jacobian(&phys).apply_transpose_add(&h, 2.0 * w / (b * m) as f64, &mut g);
        for p in 0..n {
            cot[k * n + p] = g[p] * std[p / per];
        }
    }
    (w * value / (b * m) as f64, cot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pde::constraint::{BoundaryFlux, MassBalance, Quadrature, Source};
    use crate::pde::grid::Axis;
    use crate::sim::systems::Reaction;

    /// The residual term's cotangent is its gradient: central differences of the value with
    /// respect to each normalised endpoint entry (step 1e-6; the term is a quartic polynomial).
    #[test]
    fn residual_cotangent_is_the_gradient_of_the_residual_term() {
        let grid = Grid::space_time(Axis::space("x", 5, 0.1, 0.2, false), Axis::time(4, 0.0, 0.3));
        let c = MassBalance::new(&grid, 0, Quadrature::Uniform, Some(Source::Reaction { reaction: Reaction::FisherKpp, rate: 2.0 }), BoundaryFlux::Zero).unwrap();
        let (b, n) = (2, grid.len());
        let end: Vec<f64> = (0..b * n).map(|i| ((i * 17 % 13) as f64 / 13.0 - 0.5) * 1.5).collect();
        let (mean, std) = (vec![0.4], vec![0.3]);
        let (_, cot) = residual_cotangent(&c, &end, b, &mean, &std, n, 0.7);
        let eps = 1e-6;
        for k in 0..b * n {
            let mut up = end.clone();
            let mut dn = end.clone();
            up[k] += eps;
            dn[k] -= eps;
            let fd = (residual_cotangent(&c, &up, b, &mean, &std, n, 0.7).0 - residual_cotangent(&c, &dn, b, &mean, &std, n, 0.7).0) / (2.0 * eps);
            assert!((fd - cot[k]).abs() < 1e-8 * (1.0 + fd.abs()), "entry {k}: {fd} vs {}", cot[k]);
        }
    }
}
