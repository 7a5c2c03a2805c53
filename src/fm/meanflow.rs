//! Mean flows (Geng, Deng, Bai, Kolter & He 2025, "Mean Flows for One-step Generative
//! Modeling"): learn the average velocity `u(x_t, t, s) = (x_s − x_t)/(s − t)` of the flow
//! between two times, so that one network call jumps from `t` to `s`; `x₁ = x₀ + u(x₀, 0, 1)`
//! samples in one step.
//!
//! Written in this crate's time convention (base at `t = 0`, data at `t = 1`, linear path
//! `x_t = (1 − t) x₀ + t x₁`, conditional velocity `v = x₁ − x₀`). Differentiating
//! `(s − t) u(x_t, t, s) = x_s − x_t` in `t` gives the mean-flow identity
//!
//! `u(x_t, t, s) = v(x_t, t) + (s − t) (v·∂ₓu + ∂ₜu)(x_t, t, s)`,
//!
//! and training regresses `u_θ` on the right-hand side with the stop-gradient target (the
//! conditional `v` in place of the marginal one, as in flow matching).
//!
//! The total derivative `v·∂ₓu + ∂ₜu` is a Jacobian–vector product. burn is reverse-mode only,
//! so it is formed here from `d` vector–Jacobian products of the fused network (one per output
//! component, which give the full Jacobian of each sample's output with respect to its inputs
//! `[x, s, t]`): exact, and cheap for the small state dimensions this is meant for (for large
//! `d` a forward-mode tangent pass would be the better tool).

use burn::tensor::{DType, Device};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::model::{BaseKind, FmModel, Objective};
use super::path::ProbabilityPath;
use super::train::{Adam, Problem, SampleSource};
use crate::nn::fused::{MlpCache, TimeArg};
use crate::train::{CheckpointReader, CheckpointWriter, FitReport, Run, Trainer};
use crate::{Error, Result};

/// Settings of mean-flow training (serde, defaulted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeanFlowConfig {
    /// The flow-matching settings used: coupling, network, batch, steps, lr, clipping, seed.
    /// The path is the linear one and the objective the (average) velocity.
    pub base: super::TrainConfig,
    /// Fraction of samples with `s ≠ t` (the rest are plain flow matching, `s = t`); the paper
    /// found 25 % best on ImageNet.
    pub fraction_distinct: f64,
}

impl Default for MeanFlowConfig {
    fn default() -> Self {
        Self { base: super::TrainConfig::default(), fraction_distinct: 0.25 }
    }
}

/// A trained mean-flow network: `u(x, t, s)` with `s` in the condition column.
#[derive(Clone, Debug)]
pub struct MeanFlowModel {
    /// The network; input `[x, s, t]`.
    pub model: FmModel,
}

impl MeanFlowModel {
    /// `u(x, t, s)` for `x: [batch, d]` (row-major), shared times.
    pub fn average_velocity(&self, x: &[f32], t: f32, s: f32, batch: usize) -> Vec<f32> {
        let d = self.model.dim;
        let cond = vec![s; batch];
        let mut out = vec![0.0f32; batch * d];
        self.model.predict(TimeArg::Shared(t), x, Some(&cond), batch, &mut out);
        out
    }

    /// Sample with `steps` jumps `x ← x + (s − t) u(x, t, s)` on a uniform grid of `[0, 1]`
    /// (one network call per step), from base samples `x0: [n, d]`.
    ///
    /// # Errors
    /// `InvalidArgument` for zero steps or a wrong width; `NonFinite` for a non-finite result.
    pub fn sample(&self, x0: &Array2<f64>, steps: usize) -> Result<Array2<f64>> {
        let (n, d) = x0.dim();
        if steps == 0 || d != self.model.dim {
            return Err(Error::invalid("steps, x0", format!("need steps ≥ 1 and width {}, got {steps} steps, width {d}", self.model.dim)));
        }
        let mut x: Vec<f32> = x0.iter().map(|&v| v as f32).collect();
        for k in 0..steps {
            let (t, s) = (k as f32 / steps as f32, (k + 1) as f32 / steps as f32);
            let u = self.average_velocity(&x, t, s, n);
            x.iter_mut().zip(&u).for_each(|(a, b)| *a += (s - t) * b);
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { what: "mean-flow sample", step: steps, t: 1.0 });
        }
        Ok(Array2::from_shape_vec((n, d), x.into_iter().map(f64::from).collect()).expect("n × d values"))
    }
}

/// Per-sample Jacobian–vector products `J_i · (ẋ_i, ṡ_i, ṫ_i)` of the network output at the
/// point saved in `cache`, from `d` VJPs with the unit covectors (see the module docs).
/// `tangent: [batch, d + cond + 1]` with the time last; returns `[batch, d]`.
pub(crate) fn jvp_by_vjps(model: &FmModel, cache: &mut MlpCache<f32>, tangent: &[f32], batch: usize) -> Vec<f32> {
    let d = model.dim;
    let width = d + model.cond_dim;
    let mut out = vec![0.0f32; batch * d];
    let mut a = vec![0.0f32; batch * d];
    let mut x_bar = vec![0.0f32; batch * width];
    let mut t_bar = vec![0.0f32; batch];
    let net = model.net.as_ref().expect("mean flows run on the fused kernels");
    for k in 0..d {
        a.iter_mut().enumerate().for_each(|(i, v)| *v = if i % d == k { 1.0 } else { 0.0 });
        net.vjp(cache, &a, &mut x_bar, &mut [], Some(&mut t_bar));
        for i in 0..batch {
            let row = &tangent[i * (width + 1)..(i + 1) * (width + 1)];
            let jx: f32 = (0..width).map(|j| x_bar[i * width + j] * row[j]).sum();
            out[i * d + k] = jx + t_bar[i] * row[width];
        }
    }
    out
}

/// Mean-flow training as a [`Trainer`] (fused CPU kernels: the total derivative is formed
/// from the fused network's per-output VJPs).
pub struct MeanFlowTrainer<'a> {
    problem: &'a Problem<'a>,
    config: MeanFlowConfig,
    model: FmModel,
    adam: Adam<f32>,
    cache: MlpCache<f32>,
    ema: Option<Vec<f32>>,
}

impl<'a> MeanFlowTrainer<'a> {
    /// A fresh network (seed `config.base.run.seed`) on the CPU.
    ///
    /// # Errors
    /// `InvalidArgument` for bad settings; [`Error::Device`] for a device other than the CPU or
    /// a network the fused kernels cannot run (mean flows need its time VJP).
    pub fn new(problem: &'a Problem<'a>, config: &MeanFlowConfig, device: &Device) -> Result<Self> {
        let c = &config.base;
        c.run.validate()?;
        if !(0.0..=1.0).contains(&config.fraction_distinct) || problem.cond.is_some() || problem.dim == 0 {
            return Err(Error::invalid("fraction_distinct, cond", "need 0 ≤ fraction ≤ 1, no conditions and dim > 0"));
        }
        c.coupling.validate()?;
        let base = if matches!(problem.x0, SampleSource::Gaussian) { BaseKind::Gaussian } else { BaseKind::Data };
        let model = FmModel::new_on(problem.dim, 1, &c.net, ProbabilityPath::Linear { sigma: 0.0 }, base, Objective::Velocity, c.run.seed, device)?;
        let Some(net) = &model.net else {
            return Err(Error::Device {
                device: format!("{device:?}"),
                reason: "mean-flow training needs the total time derivative, formed from the fused CPU kernels' VJPs: train it on the CPU device with a tanh network".into(),
            });
        };
        let adam = Adam::<f32>::new(net.num_params());
        Ok(Self { problem, config: config.clone(), model, adam, cache: MlpCache::new(), ema: None })
    }

    /// The model as it stands (its parameter average when the run keeps one).
    ///
    /// # Errors
    /// `Shape` never in practice (the parameter count is the model's own).
    pub fn model(&self) -> Result<MeanFlowModel> {
        let mut model = self.model.clone();
        if let Some(avg) = &self.ema {
            model.set_params(avg)?;
        }
        Ok(MeanFlowModel { model })
    }
}

impl Trainer for MeanFlowTrainer<'_> {
    fn kind(&self) -> &'static str {
        "mean flow"
    }

    fn config(&self) -> serde_json::Value {
        let c = &self.config.base;
        serde_json::json!({ "dim": self.problem.dim, "base": self.model.base, "coupling": c.coupling, "net": c.net, "fraction_distinct": self.config.fraction_distinct })
    }

    fn step(&mut self, _step: usize, lr: f64, rng: &mut StdRng) -> Result<Vec<f64>> {
        let (problem, c) = (self.problem, &self.config.base);
        let (dim, bsz) = (problem.dim, c.run.batch_size);
        let width = dim + 1;
        let (mut x0, mut x1) = (Vec::new(), Vec::new());
        let mut input = vec![0.0f32; bsz * width];
        let mut tangent = vec![0.0f32; bsz * (width + 1)];
        let mut ts = vec![0.0f32; bsz];
        let mut v = vec![0.0f32; bsz * dim];
        let mut gap = vec![0.0f32; bsz];
        let idx0 = super::train::draw(&problem.x0, dim, bsz, rng, None, &mut x0)?;
        let paired = c.coupling == super::Coupling::Paired;
        super::train::draw(&problem.x1, dim, bsz, rng, paired.then_some(&idx0[..]), &mut x1)?;
        let partner = c.coupling.partners(&x0, &x1, dim, rng)?;
        for i in 0..bsz {
            let (mut t, mut s) = (rng.random::<f64>(), rng.random::<f64>());
            if t > s {
                std::mem::swap(&mut t, &mut s);
            }
            if rng.random::<f64>() >= self.config.fraction_distinct {
                s = t;
            }
            ts[i] = t as f32;
            gap[i] = (s - t) as f32;
            input[i * width + dim] = s as f32;
            for k in 0..dim {
                let (a, b) = (x0[i * dim + k], x1[partner[i] * dim + k]);
                input[i * width + k] = (1.0 - t as f32) * a + t as f32 * b;
                v[i * dim + k] = b - a;
                tangent[i * (width + 1) + k] = b - a;
            }
            // ṡ = 0, ṫ = 1.
            tangent[i * (width + 1) + dim] = 0.0;
            tangent[i * (width + 1) + dim + 1] = 1.0;
        }
        let mut out = vec![0.0f32; bsz * dim];
        let mut cache = std::mem::take(&mut self.cache);
        let net = self.model.net.as_ref().expect("checked in new");
        net.forward_cached(TimeArg::PerSample(&ts), &input, bsz, &mut out, &mut cache);
        let du = jvp_by_vjps(&self.model, &mut cache, &tangent, bsz);
        let scale = 2.0 / (bsz * dim) as f32;
        let mut loss = 0.0f64;
        let mut cot = vec![0.0f32; bsz * dim];
        for i in 0..bsz {
            for k in 0..dim {
                let j = i * dim + k;
                let target = v[j] + gap[i] * du[j];
                let r = out[j] - target;
                loss += f64::from(r * r);
                cot[j] = scale * r;
            }
        }
        loss /= (bsz * dim) as f64;
        if loss.is_finite() {
            let mut grad = vec![0.0f32; net.num_params()];
            let mut x_bar = vec![0.0f32; bsz * width];
            net.vjp(&mut cache, &cot, &mut x_bar, &mut grad, None);
            super::train::clip_global_norm(&mut grad, c.run.grad_clip);
            let adam = &mut self.adam;
            self.model.net.as_mut().expect("checked in new").update_params(|p| adam.step(p, &grad, lr));
        }
        self.cache = cache;
        Ok(vec![loss])
    }

    fn supports_ema(&self) -> bool {
        true
    }

    fn update_ema(&mut self, decay: f64) -> Result<()> {
        let p = self.model.net.as_ref().expect("checked in new").params();
        match &mut self.ema {
            None => self.ema = Some(p.to_vec()),
            Some(avg) => avg.iter_mut().zip(p).for_each(|(a, x)| *a = decay as f32 * *a + (1.0 - decay as f32) * x),
        }
        Ok(())
    }

    fn save(&self, w: &mut CheckpointWriter) -> Result<()> {
        let cfg = self.config.base.net.mlp(self.problem.dim, 1);
        let cpu = Device::flex();
        w.module("model", &cfg.from_flat(self.model.net.as_ref().expect("checked in new").params(), &cpu, DType::F32)?)?;
        w.json("adam", &self.adam)?;
        if let Some(avg) = &self.ema {
            w.module("ema", &cfg.from_flat(avg, &cpu, DType::F32)?)?;
        }
        Ok(())
    }

    fn load(&mut self, r: &CheckpointReader) -> Result<()> {
        let template = self.model.mlp().clone();
        let flat = |m: crate::nn::Mlp| m.flat_params().into_iter().map(|v| v as f32).collect::<Vec<f32>>();
        let params = flat(r.module("model", template.clone())?);
        self.model.set_params(&params)?;
        self.adam = r.json("adam")?;
        self.ema = if r.has("ema", "bpk") { Some(flat(r.module("ema", template)?)) } else { None };
        Ok(())
    }
}

/// Train a mean-flow model (linear path from `problem.x0` to `problem.x1`, unconditional)
/// through [`crate::train::fit`], on the CPU device.
///
/// # Errors
/// As [`super::train()`]; `InvalidArgument` for a fraction outside `[0, 1]` or conditions;
/// [`Error::Device`] off the CPU.
pub fn train_mean_flow<'a>(
    problem: &'a Problem<'a>,
    config: &MeanFlowConfig,
    device: &Device,
    run: &mut Run<'_, MeanFlowTrainer<'a>>,
) -> Result<(MeanFlowModel, FitReport)> {
    let mut trainer = MeanFlowTrainer::new(problem, config, device)?;
    if run.label == "train" {
        run.label = "meanflow".into();
    }
    let report = crate::train::fit(&mut trainer, &config.base.run, run)?;
    Ok((trainer.model()?, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fm::NetConfig;
    use rand::SeedableRng;

    /// The JVP from per-output VJPs equals central finite differences of the network along the
    /// same tangent (f32: h = 1e-2 gives truncation ~1e-4 and round-off ~1e-5 on O(1) outputs;
    /// bound 2e-3 relative to the largest JVP entry).
    #[test]
    fn jvp_matches_finite_differences() {
        let model = FmModel::new(2, 1, &NetConfig::tanh(vec![16, 16]), ProbabilityPath::default(), BaseKind::Gaussian, Objective::Velocity, 3).unwrap();
        let net = model.net.as_ref().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let b = 5;
        let input: Vec<f32> = (0..b * 3).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        let ts: Vec<f32> = (0..b).map(|_| rng.random::<f32>()).collect();
        let tangent: Vec<f32> = (0..b * 4).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        let mut cache = MlpCache::new();
        let mut out = vec![0.0f32; b * 2];
        net.forward_cached(TimeArg::PerSample(&ts), &input, b, &mut out, &mut cache);
        let jvp = jvp_by_vjps(&model, &mut cache, &tangent, b);
        let h = 1e-2f32;
        let eval = |sign: f32| {
            let x: Vec<f32> = (0..b * 3).map(|j| input[j] + sign * h * tangent[(j / 3) * 4 + j % 3]).collect();
            let t: Vec<f32> = (0..b).map(|i| ts[i] + sign * h * tangent[i * 4 + 3]).collect();
            let mut o = vec![0.0f32; b * 2];
            net.forward(TimeArg::PerSample(&t), &x, b, &mut o);
            o
        };
        let (p, m) = (eval(1.0), eval(-1.0));
        let scale = jvp.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        for j in 0..b * 2 {
            let fd = (p[j] - m[j]) / (2.0 * h);
            assert!((fd - jvp[j]).abs() < 2e-3 * scale.max(1.0), "entry {j}: jvp {} vs fd {fd}", jvp[j]);
        }
    }
}
