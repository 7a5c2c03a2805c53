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
//! The loop is [`crate::train::fit`] with [`FfmTrainer`]: every step's draws come from a
//! generator seeded by `(seed, step)`, and checkpoints hold the parameters, Adam's moments and
//! the loop state, so a resumed run continues as the uninterrupted one would.

use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{DType, Device, Tensor, TensorData};
use ndarray::ArrayView2;
use rand::rngs::StdRng;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::constraint::Constraint;
use super::gp::{GpConfig, GpSampler};
use super::grid::Grid;
use super::model::{param_dtype, FieldModel, FieldModelMeta};
use crate::host::ToHost;
use crate::io::h5::H5File;
use crate::nn::{FieldNet, FieldNetConfig};
use crate::train::{CheckpointReader, CheckpointWriter, LrSchedule, Run, RunOptions, Trainer};
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
    /// Weight `w` of the PDE-residual term (used only when a residual constraint is given).
    pub residual_weight: f64,
    /// Steps, batch, learning rate (cosine-decayed to 10 % by default), global gradient-norm
    /// clipping, EMA, seed, log and checkpoint cadence.
    pub run: RunOptions,
}

impl Default for FfmConfig {
    fn default() -> Self {
        FfmConfig {
            net: FieldNetConfig::default(),
            gp: GpConfig::default(),
            sigma_min: 1e-4,
            residual_weight: 0.0,
            run: RunOptions {
                steps: 2000,
                batch_size: 16,
                lr: 1e-3,
                schedule: LrSchedule::Cosine { floor: 0.1 },
                grad_clip: Some(1.0),
                ema: None,
                seed: 0,
                log_every: 10,
                checkpoint_every: 250,
            },
        }
    }
}

/// Training fields, one per row `[N, n]` in physical units: in memory, or streamed from HDF5
/// files one row at a time (only the chunks holding a step's rows are read), so training
/// memory holds one batch whatever the dataset's size.
pub enum FieldData<'a> {
    /// An in-memory array `[N, n]`.
    Memory(ArrayView2<'a, f64>),
    /// Rows of HDF5 files: each file's datasets hold samples along axis 0, and a field is the
    /// concatenation of one row of each dataset (`[tensor]`, or Darcy's `[nu, tensor]`).
    Files {
        /// Open files with their sample counts.
        files: Vec<(H5File, usize)>,
        /// The datasets whose rows make a field, in order.
        datasets: Vec<String>,
    },
}

impl<'a> From<ArrayView2<'a, f64>> for FieldData<'a> {
    fn from(v: ArrayView2<'a, f64>) -> Self {
        FieldData::Memory(v)
    }
}

impl FieldData<'_> {
    /// Opens `paths` for streaming the rows of `datasets` (every file must hold all of them
    /// with the same row count).
    ///
    /// # Errors
    /// `Io`/`MissingDataset`/`DatasetMismatch` naming the file.
    pub fn files(paths: &[std::path::PathBuf], datasets: &[&str]) -> Result<Self> {
        if paths.is_empty() || datasets.is_empty() {
            return Err(Error::invalid("data", "need at least one file and one dataset"));
        }
        let mut files = Vec::new();
        for p in paths {
            let f = H5File::open(p)?;
            let mut rows = None;
            for d in datasets {
                let info = f.expect(d, None, "samples along axis 0")?;
                let n = info.shape.first().copied().unwrap_or(0);
                if rows.is_some_and(|r| r != n) {
                    return Err(Error::DatasetMismatch {
                        file: p.display().to_string(),
                        dataset: d.to_string(),
                        expected: format!("{} rows like `{}`", rows.unwrap_or(0), datasets[0]),
                        got: format!("{n} rows"),
                    });
                }
                rows = Some(n);
            }
            files.push((f, rows.unwrap_or(0)));
        }
        Ok(FieldData::Files { files, datasets: datasets.iter().map(|d| d.to_string()).collect() })
    }

    /// Number of fields `N`.
    pub fn rows(&self) -> usize {
        match self {
            FieldData::Memory(v) => v.nrows(),
            FieldData::Files { files, .. } => files.iter().map(|f| f.1).sum(),
        }
    }

    /// Field `i` (physical units).
    ///
    /// # Errors
    /// Read errors; `InvalidArgument` for `i ≥ N`.
    pub fn row(&self, mut i: usize) -> Result<Vec<f64>> {
        match self {
            FieldData::Memory(v) if i < v.nrows() => Ok(v.row(i).to_vec()),
            FieldData::Memory(v) => Err(Error::invalid("row", format!("field {i} of {}", v.nrows()))),
            FieldData::Files { files, datasets } => {
                for (f, n) in files {
                    if i < *n {
                        let mut out = Vec::new();
                        for d in datasets {
                            out.extend(f.read_f64_rows(d, i, 1)?.1);
                        }
                        return Ok(out);
                    }
                    i -= n;
                }
                Err(Error::invalid("row", format!("field index beyond the {} rows", self.rows())))
            }
        }
    }
}

/// What to learn: fields on `grid`, one per row of `data` (physical units), and optionally a
/// constraint all of them satisfy, for the residual term.
pub struct FfmProblem<'a> {
    /// The grid.
    pub grid: &'a Grid,
    /// Training fields `[N, n]`.
    pub data: FieldData<'a>,
    /// A constraint every training field satisfies (the PBFM term).
    pub residual: Option<&'a dyn Constraint>,
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

/// Per-channel mean and standard deviation of the data (σ floored at 1e-12), in one pass over
/// the rows, which also checks each row's length and finiteness.
///
/// # Errors
/// `Shape` for a row of the wrong length, `NonFinite` for a non-finite value, read errors.
fn channel_stats(grid: &Grid, data: &FieldData<'_>) -> Result<(Vec<f64>, Vec<f64>)> {
    let c = grid.channels.len();
    let n = grid.len();
    let per = n / c;
    let (mut s, mut s2) = (vec![0.0; c], vec![0.0; c]);
    for i in 0..data.rows() {
        let row = data.row(i)?;
        if row.len() != n {
            return Err(Error::Shape { what: format!("training field {i}"), expected: grid.shape(), got: vec![row.len()] });
        }
        if row.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFiniteInput { what: "training field", index: i });
        }
        for (p, v) in row.iter().enumerate() {
            s[p / per] += v;
            s2[p / per] += v * v;
        }
    }
    let k = (data.rows() * per) as f64;
    Ok((0..c)
        .map(|ch| {
            let m = s[ch] / k;
            (m, (s2[ch] / k - m * m).max(0.0).sqrt().max(1e-12))
        })
        .unzip())
}

/// Functional flow matching as a [`Trainer`]: the field model on an autodiff device, Adam,
/// the GP base and the normalised training fields of an [`FfmProblem`].
pub struct FfmTrainer<'a> {
    problem: &'a FfmProblem<'a>,
    cfg: FfmConfig,
    net_cfg: FieldNetConfig,
    gp: GpSampler,
    net: FieldNet,
    optim: ModuleOptimizer,
    device: Device,
    dtype: DType,
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl<'a> FfmTrainer<'a> {
    /// A fresh network (seed `cfg.run.seed`) for `problem` on `device` (its autodiff twin is
    /// used).
    ///
    /// # Errors
    /// `Shape` for data that does not fit the grid, `InvalidArgument` for an empty data set or
    /// a residual constraint of another size, `NonFinite` for non-finite training fields.
    pub fn new(problem: &'a FfmProblem<'a>, cfg: &FfmConfig, device: &Device) -> Result<Self> {
        let grid = problem.grid;
        grid.validate()?;
        if let FieldData::Memory(v) = &problem.data {
            grid.check_flat("training fields", v)?;
        }
        cfg.run.validate()?;
        if problem.data.rows() == 0 {
            return Err(Error::invalid("data", "need at least one training field"));
        }
        if let Some(c) = problem.residual {
            if c.dim() != grid.len() {
                return Err(Error::invalid("residual", format!("constraint `{}` is on fields of {} values, the grid has {}", c.name(), c.dim(), grid.len())));
            }
        }
        let [nc, nx, ny] = grid.shape4();
        cfg.net.check_grid(nx, ny)?;
        let net_cfg = cfg.net.with_channels(nc);
        let gp = cfg.gp.sampler(grid)?;
        let ad = device.clone().autodiff();
        let net = net_cfg.init(cfg.run.seed, &ad)?;
        let dtype = param_dtype(&net);
        let (mean, std) = channel_stats(grid, &problem.data)?;
        Ok(Self { problem, cfg: cfg.clone(), net_cfg, gp, net, optim: AdamConfig::new().init(), device: ad, dtype, mean, std })
    }

    /// The model as it stands (normalisation and network, without autodiff).
    ///
    /// # Errors
    /// As [`FieldModel::new`].
    pub fn model(&self) -> Result<FieldModel> {
        let meta = FieldModelMeta {
            grid: self.problem.grid.clone(),
            net: self.net_cfg.clone(),
            gp: self.cfg.gp.clone(),
            sigma_min: self.cfg.sigma_min,
            mean: self.mean.clone(),
            std: self.std.clone(),
        };
        FieldModel::new(meta, &self.net)
    }
}

impl Trainer for FfmTrainer<'_> {
    fn kind(&self) -> &'static str {
        "functional flow matching"
    }

    fn config(&self) -> serde_json::Value {
        let FfmConfig { net: _, gp, sigma_min, residual_weight, run: _ } = &self.cfg;
        serde_json::json!({
            "grid": self.problem.grid.shape(),
            "net": self.net_cfg,
            "gp": gp,
            "sigma_min": sigma_min,
            "residual_weight": residual_weight,
            "residual": self.problem.residual.map(|c| c.name()),
            "dtype": format!("{:?}", self.dtype),
        })
    }

    fn loss_names(&self) -> Vec<String> {
        vec!["flow matching".into(), "residual".into()]
    }

    fn step(&mut self, step: usize, lr: f64, rng: &mut StdRng) -> Result<Vec<f64>> {
        let (problem, cfg) = (self.problem, &self.cfg);
        let [nc, nx, ny] = problem.grid.shape4();
        let n = problem.grid.len();
        let per = n / nc;
        let b = cfg.run.batch_size;
        let rows: Vec<usize> = (0..b).map(|_| rng.random_range(0..problem.data.rows())).collect();
        let x0 = self.gp.sample(rng, b);
        let ts: Vec<f64> = (0..b).map(|_| rng.random::<f64>()).collect();
        let s = 1.0 - cfg.sigma_min;
        let mut xt = vec![0.0; b * n];
        let mut target = vec![0.0; b * n];
        for (k, &r) in rows.iter().enumerate() {
            let t = ts[k];
            let field = problem.data.row(r)?;
            for p in 0..n {
                let c = p / per;
                let x1 = (field[p] - self.mean[c]) / self.std[c];
                let z = x0[[k, p]];
                xt[k * n + p] = (1.0 - s * t) * z + t * x1;
                target[k * n + p] = x1 - s * z;
            }
        }
        let on = (&self.device, self.dtype);
        let xt_t = Tensor::<4>::from_data(TensorData::new(xt, [b, nc, nx, ny]), on);
        let t_t = Tensor::<1>::from_data(TensorData::new(ts.clone(), [b]), on);
        let pred = self.net.forward(xt_t.clone(), t_t);
        let fm_loss = (pred.clone() - Tensor::<4>::from_data(TensorData::new(target, [b, nc, nx, ny]), on)).square().mean();
        let mut res_value = 0.0;
        let loss = match problem.residual.filter(|_| cfg.residual_weight > 0.0) {
            Some(c) => {
                let one_minus_t = Tensor::<1>::from_data(TensorData::new(ts.iter().map(|t| 1.0 - t).collect::<Vec<f64>>(), [b]), on).reshape([b, 1, 1, 1]);
                let end = xt_t + pred * one_minus_t;
                let (value, cot) =
                    residual_cotangent(c, &end.clone().without_autodiff().host_vec::<f64>()?, b, &self.mean, &self.std, per, cfg.residual_weight);
                res_value = value;
                fm_loss.clone() + (end * Tensor::<4>::from_data(TensorData::new(cot, [b, nc, nx, ny]), on)).sum()
            }
            None => fm_loss.clone(),
        };
        let fm_value = fm_loss.host_vec::<f64>()?[0];
        crate::train::check_loss(step, res_value)?;
        if fm_value.is_finite() && res_value.is_finite() {
            let mut grads = GradientsParams::from_grads(loss.backward(), &self.net);
            if let Some(c) = cfg.run.grad_clip {
                crate::train::clip_grad_norm(&self.net, &mut grads, c)?;
            }
            self.net = self.optim.step(lr, self.net.clone(), grads);
        }
        Ok(vec![fm_value, res_value])
    }

    fn save(&self, w: &mut CheckpointWriter) -> Result<()> {
        w.module("model", &self.net)?;
        w.optimizer("optimizer", &self.optim)
    }

    fn load(&mut self, r: &CheckpointReader) -> Result<()> {
        self.net = self.net.clone().load(&r.module_file("model"))?;
        self.optim = r.optimizer("optimizer", std::mem::replace(&mut self.optim, AdamConfig::new().init()))?;
        Ok(())
    }
}

/// Trains a field model by functional flow matching on `device` through
/// [`crate::train::fit`] (resuming from `run.checkpoint` when it holds a checkpoint of the same
/// settings).
///
/// # Errors
/// `Shape` for data that does not fit the grid, `InvalidArgument` for an empty data set, bad
/// run options, or a residual constraint of another size; `Diverged` for a non-finite loss;
/// `Io`/`Format` for checkpoint files; `InvalidArgument` when a checkpoint was written with
/// another configuration.
pub fn train_ffm<'a>(problem: &'a FfmProblem<'a>, cfg: &FfmConfig, run: &mut Run<'_, FfmTrainer<'a>>, device: &Device) -> Result<(FieldModel, FfmReport)> {
    let mut trainer = FfmTrainer::new(problem, cfg, device)?;
    if run.label == "train" {
        run.label = "FFM".into();
    }
    let fit = crate::train::fit(&mut trainer, &cfg.run, run)?;
    let losses = fit.log.iter().map(|r| (r.step, r.values[0], r.values.get(1).copied().unwrap_or(0.0))).collect();
    Ok((trainer.model()?, FfmReport { losses, steps_run: fit.steps_run, seconds: fit.total_seconds }))
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
    use crate::pde::constraint::{BoundaryFlux, MassBalance, Quadrature, SourceTerm};
    use crate::pde::grid::Axis;
    use crate::sim::systems::Reaction;

    /// The residual term's cotangent is its gradient: central differences of the value with
    /// respect to each normalised endpoint entry (step 1e-6; the term is a quartic polynomial).
    #[test]
    fn residual_cotangent_is_the_gradient_of_the_residual_term() {
        let grid = Grid::space_time(Axis::space("x", 5, 0.1, 0.2, false), Axis::time(4, 0.0, 0.3));
        let c = MassBalance::new(&grid, 0, Quadrature::Uniform, Some(SourceTerm::Reaction { reaction: Reaction::FisherKpp, rate: 2.0 }), BoundaryFlux::Zero)
            .unwrap();
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
