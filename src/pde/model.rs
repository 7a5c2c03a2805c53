//! A trained field model: the network with what it needs to be read — the grid, the per-channel
//! normalisation, the GP base and the path — and its view as a vector field in physical units.
//!
//! The network works on normalised fields `z = (u − μ)/σ` (per channel); in physical units the
//! base is `μ + σ ⊙ GP` and the velocity `du/dt = σ ⊙ v_θ((u − μ)/σ, t)`, so the samplers and
//! the constraints only ever see physical fields.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{DType, Device, Tensor, TensorData};
use ndarray::Array2;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::gp::{GpConfig, GpSampler};
use super::grid::Grid;
use crate::nn::{FieldNet, FieldNetConfig};
use crate::ode::{Time, VectorField};
use crate::train::{read_json, save_module, write_json};
use crate::{Error, Result};

/// What is saved beside the parameters (`model.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldModelMeta {
    /// The field grid.
    pub grid: Grid,
    /// The network architecture.
    pub net: FieldNetConfig,
    /// The GP base (in normalised units).
    pub gp: GpConfig,
    /// `σ_min` of the path `x_t = (1 − (1 − σ_min) t) x₀ + t x₁`.
    pub sigma_min: f64,
    /// Per-channel mean `μ`.
    pub mean: Vec<f64>,
    /// Per-channel scale `σ`.
    pub std: Vec<f64>,
}

/// A functional-flow-matching model of fields on one grid.
#[derive(Clone, Debug)]
pub struct FieldModel {
    /// Grid, architecture, base and normalisation.
    pub meta: FieldModelMeta,
    net: FieldNet,
    gp: GpSampler,
}

impl FieldModel {
    /// A model from its parts; `net` is switched to inference (no autodiff).
    ///
    /// # Errors
    /// `InvalidArgument` when the architecture (FNO modes) or the GP does not fit the grid.
    pub fn new(meta: FieldModelMeta, net: &FieldNet) -> Result<Self> {
        let [_, nx, ny] = meta.grid.shape4();
        meta.net.check_grid(nx, ny)?;
        let gp = meta.gp.sampler(&meta.grid)?;
        Ok(FieldModel { net: net.valid(), gp, meta })
    }

    /// The network.
    pub fn net(&self) -> &FieldNet {
        &self.net
    }

    /// The device of the parameters.
    pub fn device(&self) -> Device {
        self.net.devices().into_iter().next().unwrap_or_else(Device::flex)
    }

    /// The parameters' float type.
    pub fn dtype(&self) -> DType {
        param_dtype(&self.net)
    }

    /// `batch` base samples in physical units, `μ + σ ⊙ GP`, `[batch, n]`.
    pub fn noise(&self, rng: &mut StdRng, batch: usize) -> Array2<f64> {
        let mut z = self.gp.sample(rng, batch);
        let per = self.meta.grid.len() / self.meta.mean.len();
        for mut row in z.rows_mut() {
            for (k, v) in row.iter_mut().enumerate() {
                let c = k / per;
                *v = self.meta.mean[c] + self.meta.std[c] * *v;
            }
        }
        z
    }

    /// Base samples as a tensor on the model's device, in its dtype.
    pub fn noise_tensor(&self, rng: &mut StdRng, batch: usize) -> Tensor<2> {
        let z = self.noise(rng, batch);
        Tensor::<2>::from_data(TensorData::new(z.iter().copied().collect::<Vec<f64>>(), [batch, self.meta.grid.len()]), (&self.device(), self.dtype()))
    }

    /// Per-channel `[1, C, 1, 1]` tensors of `μ` and `σ`.
    fn scales(&self, like: &Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let c = self.meta.mean.len();
        let on = (&like.device(), like.dtype());
        (
            Tensor::<4>::from_data(TensorData::new(self.meta.mean.clone(), [1, c, 1, 1]), on),
            Tensor::<4>::from_data(TensorData::new(self.meta.std.clone(), [1, c, 1, 1]), on),
        )
    }

    /// `σ ⊙ v_θ((u − μ)/σ, t)` for flat physical fields.
    ///
    /// # Shapes
    /// `u: [batch, n]`, `t: [batch]` → `[batch, n]`.
    pub fn velocity(&self, net: &FieldNet, u: Tensor<2>, t: Tensor<1>) -> Tensor<2> {
        let [b, n] = u.dims();
        let [c, nx, ny] = self.meta.grid.shape4();
        let u4 = u.reshape([b, c, nx, ny]);
        let (mu, sd) = self.scales(&u4);
        let v = net.forward((u4 - mu) / sd.clone(), t) * sd;
        v.reshape([b, n])
    }

    /// Writes `model.bpk` and `model.json` into `dir` (atomically each).
    ///
    /// # Errors
    /// `Io`/`Format` when a file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<()> {
        save_module(&dir.join("model.bpk"), &self.net)?;
        write_json(&dir.join("model.json"), &self.meta)
    }

    /// Reads a model written by [`FieldModel::save`] onto `device`.
    ///
    /// # Errors
    /// `Io`/`Format` for missing or mismatched files.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let meta: FieldModelMeta = read_json(&dir.join("model.json"))?;
        let net = meta.net.init(0, device)?.load(&dir.join("model.bpk"))?;
        FieldModel::new(meta, &net)
    }

    /// Whether `dir` holds a saved model.
    pub fn exists(dir: &Path) -> bool {
        dir.join("model.json").exists() && dir.join("model.bpk").exists()
    }
}

/// The float type of a module's parameters (F32 for a module without float parameters).
pub(crate) fn param_dtype<M: Module>(module: &M) -> DType {
    let mut dtype = DType::F32;
    struct Probe<'a>(&'a mut DType);
    impl burn::module::ModuleVisitor for Probe<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            *self.0 = p.val().dtype();
        }
    }
    module.visit(&mut Probe(&mut dtype));
    dtype
}

/// The model's velocity as a vector field on flat physical fields `[batch, n]`. Inputs in any
/// float type are cast to the parameters' type and the result cast back; the VJP comes from
/// burn's autodiff on one evaluation.
impl VectorField<2> for FieldModel {
    type Params = ();
    type Saved = (Time, Tensor<2>);

    /// The state is a batch of flat fields on the model's grid, `[batch, n]`.
    fn check_state(&self, y0: &Tensor<2>) -> Result<()> {
        let [b, n] = y0.dims();
        if n != self.meta.grid.len() {
            return Err(Error::Shape { what: "fields of the field model".into(), expected: vec![b, self.meta.grid.len()], got: vec![b, n] });
        }
        Ok(())
    }

    fn eval(&self, t: &Time, y: &Tensor<2>) -> Tensor<2> {
        let [b, _] = y.dims();
        let dtype = self.dtype();
        let ts = Tensor::<1>::from_data(TensorData::new((0..b).map(|i| t.of(i)).collect::<Vec<f64>>(), [b]), (&y.device(), dtype));
        self.velocity(&self.net, y.clone().cast(dtype), ts).cast(y.dtype())
    }

    fn eval_saving(&self, t: &Time, y: &Tensor<2>) -> (Tensor<2>, Self::Saved) {
        (self.eval(t, y), (t.clone(), y.clone()))
    }

    fn vjp_saved(&self, saved: &Self::Saved, a: &Tensor<2>, _params: Option<(&mut (), f64)>) -> Tensor<2> {
        let (t, y) = saved;
        let [b, _] = y.dims();
        let dtype = self.dtype();
        let net = self.net.clone().train();
        let ad = y.device().autodiff();
        let ts = Tensor::<1>::from_data(TensorData::new((0..b).map(|i| t.of(i)).collect::<Vec<f64>>(), [b]), (&ad, dtype));
        let x = y.clone().cast(dtype).detach().autodiff().require_grad();
        let out = self.velocity(&net, x.clone(), ts);
        let grads = (out * a.clone().cast(dtype).autodiff()).sum().backward();
        x.grad(&grads).map(|g| g.without_autodiff()).unwrap_or_else(|| y.clone().cast(dtype).zeros_like()).cast(y.dtype())
    }

    fn zero_params(&self) {}
}
