//! The settings of a training run that every model shares.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How the learning rate moves over a run of `steps` steps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Cosine decay from the base rate to `floor` × the base rate at the last step
    /// (Loshchilov & Hutter 2017, without restarts): `lr_k = lr (f + (1 − f) ½ (1 + cos(π k / K)))`.
    Cosine {
        /// Final fraction `f ∈ [0, 1]` of the base rate.
        floor: f64,
    },
    /// Linear warm-up from 0 over `warmup` steps, then the cosine decay above over the rest.
    WarmupCosine {
        /// Warm-up steps.
        warmup: usize,
        /// Final fraction of the base rate.
        floor: f64,
    },
}

impl LrSchedule {
    /// The rate at step `k` (0-based) of `steps`, for base rate `lr`.
    pub fn at(&self, lr: f64, k: usize, steps: usize) -> f64 {
        let cosine = |k: f64, n: f64, floor: f64| lr * (floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * k / n.max(1.0)).cos()));
        match *self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine { floor } => cosine(k as f64, steps as f64, floor),
            LrSchedule::WarmupCosine { warmup, floor } => {
                if k < warmup {
                    lr * (k + 1) as f64 / warmup as f64
                } else {
                    cosine((k - warmup) as f64, steps.saturating_sub(warmup) as f64, floor)
                }
            }
        }
    }

    fn validate(&self) -> Result<()> {
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Cosine { floor } | LrSchedule::WarmupCosine { floor, .. } if (0.0..=1.0).contains(&floor) => Ok(()),
            LrSchedule::Cosine { floor } | LrSchedule::WarmupCosine { floor, .. } => {
                Err(Error::invalid("schedule.floor", format!("need 0 ≤ floor ≤ 1, got {floor}")))
            }
        }
    }
}

/// The settings of a training run shared by every model (serde; every field defaulted).
///
/// A checkpoint is resumed only under the same options, except `steps` (which may grow),
/// `checkpoint_every` and `log_every`.
/// The float type a model trains in on a burn device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// f32 (every backend).
    #[default]
    F32,
    /// f64: the CPU and CUDA; on wgpu only where the adapter has 64-bit shader floats.
    F64,
}

impl Precision {
    /// The burn dtype.
    pub fn dtype(self) -> burn::tensor::DType {
        match self {
            Precision::F32 => burn::tensor::DType::F32,
            Precision::F64 => burn::tensor::DType::F64,
        }
    }

    /// The burn dtype, checked against what `device` supports.
    ///
    /// # Errors
    /// [`Error::Device`] naming the device when it has no such float type (f64 on most wgpu
    /// adapters, Metal, WebGPU).
    ///
    /// f64 is refused on wgpu even where the adapter reports 64-bit floats: Vulkan's extended
    /// instruction set (GLSL.std.450) defines `exp`, `log`, `tanh` for 16- and 32-bit floats
    /// only, and on Mesa's lavapipe an f64 flow gave NaN losses (measured 2026-12-04).
    pub fn dtype_on(self, device: &burn::tensor::Device) -> Result<burn::tensor::DType> {
        let name = crate::device::name_of(device);
        if self == Precision::F64 && name == "wgpu" {
            return Err(Error::Device { device: name, reason: "f64 training is not available on wgpu (Vulkan defines exp/log/tanh for 32-bit floats only); train in f32 (`precision = \"f32\"`) or use cuda or the CPU".into() });
        }
        if device.supports_dtype(self.dtype()) {
            Ok(self.dtype())
        } else {
            Err(Error::Device { device: name, reason: format!("this device has no {:?} arithmetic; train in f32 (`precision = \"f32\"`)", self) })
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunOptions {
    /// Optimizer steps in all (a resumed run continues up to this count).
    pub steps: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// Base learning rate (Adam with PyTorch's defaults β = (0.9, 0.999), ε = 1e-8).
    pub lr: f64,
    /// Learning-rate schedule over the run.
    pub schedule: LrSchedule,
    /// Clip the global gradient norm to this value (`None`: no clipping).
    pub grad_clip: Option<f64>,
    /// Keep an exponential moving average of the parameters with this decay
    /// (`θ̄ ← d θ̄ + (1 − d) θ` after every step; `None`: none). The trained model is the average.
    pub ema: Option<f64>,
    /// Seed of the initial model and of every step's draws.
    pub seed: u64,
    /// Record the mean loss every this many steps.
    pub log_every: usize,
    /// Write a checkpoint every this many steps (0: only at the end), when a checkpoint
    /// directory is given.
    pub checkpoint_every: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { steps: 1000, batch_size: 256, lr: 1e-3, schedule: LrSchedule::Constant, grad_clip: None, ema: None, seed: 0, log_every: 10, checkpoint_every: 0 }
    }
}

impl RunOptions {
    /// Check every field's range.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::invalid("batch_size", "need at least 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid("lr", format!("need a finite rate > 0, got {}", self.lr)));
        }
        if self.log_every == 0 {
            return Err(Error::invalid("log_every", "need at least 1"));
        }
        if let Some(c) = self.grad_clip {
            if !(c > 0.0 && c.is_finite()) {
                return Err(Error::invalid("grad_clip", format!("need a finite norm > 0, got {c}")));
            }
        }
        if let Some(d) = self.ema {
            if !(0.0..1.0).contains(&d) {
                return Err(Error::invalid("ema", format!("need a decay in [0, 1), got {d}")));
            }
        }
        self.schedule.validate()
    }

    /// The learning rate of step `k`.
    pub fn lr_at(&self, k: usize) -> f64 {
        self.schedule.at(self.lr, k, self.steps)
    }

    /// The options a checkpoint must match: everything but the step count and the
    /// checkpoint and log cadences.
    pub(crate) fn fingerprint(&self) -> RunOptions {
        RunOptions { steps: 0, checkpoint_every: 0, log_every: 0, ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cosine schedule starts at the base rate, passes the midpoint of base and floor at
    /// half the run (cos(π/2) = 0) and ends near the floor; warm-up rises linearly.
    #[test]
    fn schedules() {
        let c = LrSchedule::Cosine { floor: 0.1 };
        assert_eq!(c.at(1.0, 0, 100), 1.0);
        assert!((c.at(1.0, 50, 100) - 0.55).abs() < 1e-12);
        assert!((c.at(1.0, 100, 100) - 0.1).abs() < 1e-12);
        let w = LrSchedule::WarmupCosine { warmup: 10, floor: 0.0 };
        assert!((w.at(2.0, 0, 110) - 0.2).abs() < 1e-12);
        assert!((w.at(2.0, 9, 110) - 2.0).abs() < 1e-12);
        assert!((w.at(2.0, 60, 110) - 1.0).abs() < 1e-12);
        assert_eq!(LrSchedule::Constant.at(0.3, 7, 10), 0.3);
    }

    /// Out-of-range options are named in the error.
    #[test]
    fn validation_names_the_field() {
        let bad = [
            (RunOptions { batch_size: 0, ..Default::default() }, "batch_size"),
            (RunOptions { lr: f64::NAN, ..Default::default() }, "lr"),
            (RunOptions { log_every: 0, ..Default::default() }, "log_every"),
            (RunOptions { grad_clip: Some(-1.0), ..Default::default() }, "grad_clip"),
            (RunOptions { ema: Some(1.0), ..Default::default() }, "ema"),
            (RunOptions { schedule: LrSchedule::Cosine { floor: 2.0 }, ..Default::default() }, "schedule.floor"),
        ];
        for (opts, field) in bad {
            match opts.validate() {
                Err(Error::InvalidArgument { name, .. }) => assert_eq!(name, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        assert!(RunOptions::default().validate().is_ok());
    }
}
