//! The multilayer perceptron: one burn module for every device and every use (ODE vector
//! fields, flow-matching velocities), with a fused CPU forward/VJP (see [`super::fused`])
//! selected automatically for tanh networks on the CPU device.

use crate::host::ToHost;
use std::cell::RefCell;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::fused::{FusedMlp, MlpCache, Real, TimeArg};
use super::init::Activation;
use crate::ode::{FieldModule, ModuleField, ModuleGrads, ParamCotangent, Time, VectorField};
use crate::{Error, Result};

/// Architecture of an [`Mlp`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Widths `[d_in, h_1, ..., d_out]` (without the time column).
    pub sizes: Vec<usize>,
    /// Whether `t` is an extra last input column.
    pub time_input: bool,
    /// The hidden layers' nonlinearity (tanh runs on the fused CPU kernels).
    #[serde(default = "tanh")]
    pub activation: Activation,
}

fn tanh() -> Activation {
    Activation::Tanh
}

impl MlpConfig {
    /// `d_in → hidden... → d_out`, autonomous, tanh.
    pub fn new(sizes: Vec<usize>) -> Self {
        Self { sizes, time_input: false, activation: Activation::Tanh }
    }

    /// With another nonlinearity.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Check the widths.
    ///
    /// # Errors
    /// `InvalidArgument` for fewer than two widths or a zero width.
    pub fn validate(&self) -> Result<()> {
        if self.sizes.len() < 2 || self.sizes.iter().skip(1).any(|&w| w == 0) || (self.sizes[0] == 0 && !self.time_input) {
            return Err(Error::invalid("sizes", format!("an MLP needs input and output widths and no zero hidden or output width, got {:?}", self.sizes)));
        }
        Ok(())
    }

    /// The number of parameters (weights and biases; the time column counts as an input).
    pub fn num_params(&self) -> usize {
        (0..self.sizes.len().saturating_sub(1)).map(|l| (self.d_in(l) + 1) * self.sizes[l + 1]).sum()
    }

    /// The network with parameters taken from `flat` (per layer: `W` row-major `[d_in, d_out]`
    /// with the time column as the last input row, then `b`: the layout of
    /// [`Mlp::flat_params`] and of the fused kernels), in `dtype` on `device`.
    ///
    /// # Errors
    /// `InvalidArgument` for bad widths, `Shape` for a wrong parameter count.
    pub fn from_flat<E: burn::tensor::Element>(&self, flat: &[E], device: &Device, dtype: DType) -> Result<Mlp> {
        self.validate()?;
        if flat.len() != self.num_params() {
            return Err(Error::Shape { what: "MLP parameters".into(), expected: vec![self.num_params()], got: vec![flat.len()] });
        }
        let mut layers = Vec::new();
        let mut offset = 0;
        for l in 0..self.sizes.len() - 1 {
            let (d_in, d_out) = (self.d_in(l), self.sizes[l + 1]);
            let w = Tensor::<2>::from_data(TensorData::new(flat[offset..offset + d_in * d_out].to_vec(), [d_in, d_out]).convert_dtype(dtype), (device, dtype));
            offset += d_in * d_out;
            let b = Tensor::<1>::from_data(TensorData::new(flat[offset..offset + d_out].to_vec(), [d_out]).convert_dtype(dtype), (device, dtype));
            offset += d_out;
            layers.push(Linear { weight: Param::from_tensor(w), bias: Some(Param::from_tensor(b)) });
        }
        Ok(Mlp { layers, time_input: self.time_input, activation: self.activation })
    }

    /// With `t` as an input.
    pub fn with_time(mut self) -> Self {
        self.time_input = true;
        self
    }

    /// Layers with weights drawn from `U(−1/√fan_in, 1/√fan_in)` (PyTorch's default for
    /// `nn.Linear`) by a seeded generator, so a model is reproducible from its seed alone.
    ///
    /// # Errors
    /// As [`Self::validate`] (fewer than two sizes, a zero width).
    pub fn init(&self, seed: u64, device: &Device) -> Result<Mlp> {
        self.validate()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let layers = (0..self.sizes.len() - 1).map(|l| super::init::linear(&mut rng, self.d_in(l), self.sizes[l + 1], device)).collect();
        Ok(Mlp { layers, time_input: self.time_input, activation: self.activation })
    }

    /// The input width of layer `l` (the time column counts in layer 0).
    fn d_in(&self, l: usize) -> usize {
        self.sizes[l] + usize::from(l == 0 && self.time_input)
    }

    /// Flat parameters (the layout of [`Mlp::flat_params`]) with Glorot-uniform weights
    /// `U(−a, a)`, `a = √(6 / (d_in + d_out))`, and zero biases (Glorot & Bengio 2010), drawn
    /// from `seed`: the start of a network whose weights are a system's parameters
    /// ([`Self::forward_rows`]).
    ///
    /// # Errors
    /// As [`Self::validate`].
    pub fn glorot_flat(&self, seed: u64) -> Result<Vec<f64>> {
        self.validate()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut p = Vec::with_capacity(self.num_params());
        for l in 0..self.sizes.len() - 1 {
            let (i, o) = (self.d_in(l), self.sizes[l + 1]);
            let a = (6.0 / (i + o) as f64).sqrt();
            p.extend((0..i * o).map(|_| rng.random_range(-a..a)));
            p.extend(std::iter::repeat_n(0.0, o));
        }
        Ok(p)
    }

    /// The names of the flat parameters, in their order: `w{l}_{i}_{j}` (row `i`, column `j`
    /// of `W_l`), then `b{l}_{j}`.
    pub fn param_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.num_params());
        for l in 0..self.sizes.len().saturating_sub(1) {
            let (i, o) = (self.d_in(l), self.sizes[l + 1]);
            names.extend((0..i * o).map(|k| format!("w{l}_{}_{}", k / o, k % o)));
            names.extend((0..o).map(|j| format!("b{l}_{j}")));
        }
        names
    }

    /// The network with its parameters taken per row from `p` (`[batch, num_params]`, the
    /// flat layout of [`Mlp::flat_params`]), by batched matrix products, so that its weights
    /// can be the parameters of a system that diffsol differentiates
    /// ([`crate::sim::AutodiffSystem`], whose right-hand sides act row by row).
    ///
    /// # Shapes
    /// `x: [batch, d_in]`, `p: [batch, num_params]` → `[batch, d_out]`.
    ///
    /// # Panics
    /// On widths that do not match the architecture (as a burn module's forward does).
    pub fn forward_rows(&self, t: &Time, x: Tensor<2>, p: &Tensor<2>) -> Tensor<2> {
        let [b, _] = x.dims();
        let mut h = if self.time_input {
            let col = t.column(b, &x.device(), &x);
            Tensor::cat(vec![x, col], 1)
        } else {
            x
        };
        let n = self.sizes.len() - 1;
        let mut at = 0;
        for l in 0..n {
            let (i, o) = (self.d_in(l), self.sizes[l + 1]);
            let w = p.clone().slice([0..b, at..at + i * o]).reshape([b, i, o]);
            at += i * o;
            let bias = p.clone().slice([0..b, at..at + o]);
            at += o;
            h = h.reshape([b, 1, i]).matmul(w).reshape([b, o]) + bias;
            if l + 1 < n {
                h = self.activation.apply(h);
            }
        }
        h
    }
}

/// `f(t, x) = W_L σ(… σ(W_1 [x, t] + b_1) …) + b_L` with the nonlinearity `σ` (tanh by
/// default).
#[derive(Module, Debug)]
pub struct Mlp {
    /// The affine layers, weights `[d_in, d_out]`.
    pub layers: Vec<Linear>,
    /// Whether `t` is the last input column.
    pub time_input: bool,
    /// The hidden layers' nonlinearity.
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    /// The burn forward pass.
    ///
    /// # Shapes
    /// `x: [batch, d_in]` → `[batch, d_out]`.
    pub fn forward_t(&self, t: &Time, x: Tensor<2>) -> Tensor<2> {
        let mut h = if self.time_input {
            let [b, _] = x.dims();
            let col = t.column(b, &x.device(), &x);
            Tensor::cat(vec![x, col], 1)
        } else {
            x
        };
        let n = self.layers.len();
        for (l, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if l + 1 < n {
                h = self.activation.apply(h);
            }
        }
        h
    }

    /// The network applied along the last axis of `x` (`[…, d_in]` → `[…, d_out]`), for a
    /// network without a time input used pointwise over a field (the FNO's projection): the
    /// same affine maps and nonlinearities as [`Mlp::forward_t`], without flattening.
    pub(crate) fn forward_last_axis<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let n = self.layers.len();
        let mut h = x;
        for (l, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if l + 1 < n {
                h = self.activation.apply(h);
            }
        }
        h
    }

    /// Widths `[d_in, ..., d_out]` (without the time column).
    pub fn sizes(&self) -> Vec<usize> {
        let mut s = vec![self.layers[0].weight.dims()[0] - usize::from(self.time_input)];
        s.extend(self.layers.iter().map(|l| l.weight.dims()[1]));
        s
    }

    /// All parameters flattened in the fused layout (per layer: `W` row-major, then `b`).
    pub fn flat_params(&self) -> Vec<f64> {
        let mut out = Vec::new();
        for layer in &self.layers {
            out.extend(layer.weight.val().to_vec_as::<f64>());
            if let Some(b) = &layer.bias {
                out.extend(b.val().to_vec_as::<f64>());
            }
        }
        out
    }

    /// A copy with parameters taken from `flat` (the layout of [`Mlp::flat_params`]).
    ///
    /// # Errors
    /// `Shape` if `flat` does not hold exactly the network's parameter count.
    pub fn with_flat_params(&self, flat: &[f64]) -> Result<Mlp> {
        let expected: usize = self.layers.iter().map(|l| l.weight.dims().iter().product::<usize>() + l.bias.as_ref().map_or(0, |b| b.dims()[0])).sum();
        if flat.len() != expected {
            return Err(Error::Shape { what: "flat MLP parameters".into(), expected: vec![expected], got: vec![flat.len()] });
        }
        let mut layers = Vec::new();
        let mut offset = 0;
        for layer in &self.layers {
            let w = layer.weight.val();
            let [din, dout] = w.dims();
            let (device, dtype) = (w.device(), w.dtype());
            let wt = Tensor::<2>::from_data(TensorData::new(flat[offset..offset + din * dout].to_vec(), [din, dout]), (&device, dtype));
            offset += din * dout;
            let bias = layer.bias.as_ref().map(|_| {
                let bt = Tensor::<1>::from_data(TensorData::new(flat[offset..offset + dout].to_vec(), [dout]), (&device, dtype));
                offset += dout;
                Param::from_tensor(bt)
            });
            layers.push(Linear { weight: Param::from_tensor(wt), bias });
        }
        Ok(Mlp { layers, time_input: self.time_input, activation: self.activation })
    }

    /// The architecture.
    pub fn config(&self) -> MlpConfig {
        MlpConfig { sizes: self.sizes(), time_input: self.time_input, activation: self.activation }
    }

    /// Whether the fused CPU kernels can evaluate this network: tanh, biases everywhere, on
    /// the CPU device.
    pub fn fusable(&self) -> bool {
        let device = self.layers[0].weight.val().device();
        device.without_autodiff() == Device::flex() && self.activation == Activation::Tanh && self.layers.iter().all(|l| l.bias.is_some())
    }

    /// This network as an ODE vector field: fused CPU kernels for a tanh network on the CPU
    /// device (f32 or f64 as the parameters), burn autodiff otherwise.
    pub fn field(&self) -> MlpField<'_> {
        let fused = if self.fusable() {
            let dtype = self.layers[0].weight.val().dtype();
            // The fused kernels count the time column in the input width.
            let mut sizes = self.sizes();
            sizes[0] += usize::from(self.time_input);
            match dtype {
                DType::F32 => {
                    let p: Vec<f32> = self.flat_params().into_iter().map(|v| v as f32).collect();
                    Some(Fused::F32(FusedMlp::new(sizes, self.time_input, p)))
                }
                DType::F64 => Some(Fused::F64(FusedMlp::new(sizes, self.time_input, self.flat_params()))),
                _ => None,
            }
        } else {
            None
        };
        let ad = if fused.is_none() { Some(ModuleField::new(self.clone())) } else { None };
        MlpField { mlp: self, fused, ad }
    }

    /// The same network as a field that always takes the burn path (for comparison).
    pub fn burn_field(&self) -> MlpField<'_> {
        MlpField { mlp: self, fused: None, ad: Some(ModuleField::new(self.clone())) }
    }
}

impl FieldModule<2> for Mlp {
    fn forward(&self, t: &Time, y: Tensor<2>) -> Tensor<2> {
        self.forward_t(t, y)
    }
}

enum Fused {
    F32(FusedMlp<f32>),
    F64(FusedMlp<f64>),
}

/// An [`Mlp`] as a vector field `dy/dt = mlp(t, y)` on `[batch, d]`.
pub struct MlpField<'a> {
    mlp: &'a Mlp,
    fused: Option<Fused>,
    /// The burn path: the module with autodiff parameters.
    ad: Option<ModuleField<Mlp>>,
}

/// What the MLP field saves for its VJP.
pub enum MlpSaved {
    /// Fused path: activations (f32).
    F32(RefCell<MlpCache<f32>>, Device),
    /// Fused path: activations (f64).
    F64(RefCell<MlpCache<f64>>, Device),
    /// burn path: the point.
    Burn(Time, Tensor<2>),
}

thread_local! {
    // Activation buffers of dropped `MlpSaved` values, reused by the next forward pass: a
    // solve keeps one per stage until its backward pass, and fresh allocations of that size
    // cost page faults and zeroing on every evaluation.
    static POOL_F32: RefCell<Vec<MlpCache<f32>>> = const { RefCell::new(Vec::new()) };
    static POOL_F64: RefCell<Vec<MlpCache<f64>>> = const { RefCell::new(Vec::new()) };
}

/// Most caches kept per thread (a long Direct solve may hold thousands at once; beyond this
/// they are freed).
const POOL_MAX: usize = 512;

fn take_cache<R: Real>(pool: &'static std::thread::LocalKey<RefCell<Vec<MlpCache<R>>>>) -> MlpCache<R> {
    pool.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

fn give_back<R: Real>(pool: &'static std::thread::LocalKey<RefCell<Vec<MlpCache<R>>>>, cache: MlpCache<R>) {
    pool.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(cache);
        }
    });
}

impl Drop for MlpSaved {
    fn drop(&mut self) {
        match self {
            MlpSaved::F32(c, _) => give_back(&POOL_F32, std::mem::take(c.get_mut())),
            MlpSaved::F64(c, _) => give_back(&POOL_F64, std::mem::take(c.get_mut())),
            MlpSaved::Burn(..) => {}
        }
    }
}

/// Parameter cotangents of an [`MlpField`]: flat (fused layout) or per burn parameter.
#[derive(Clone, Debug)]
pub enum MlpGrads {
    /// Fused f64 path, the flat layout.
    Flat(Vec<f64>),
    /// Fused f32 path, the flat layout (accumulated in f32, as the network computes).
    Flat32(Vec<f32>),
    /// burn path.
    Module(ModuleGrads),
}

impl ParamCotangent for MlpGrads {
    fn add_scaled(&mut self, other: &Self, w: f64) {
        match (self, other) {
            (MlpGrads::Flat(a), MlpGrads::Flat(b)) => a.add_scaled(b, w),
            (MlpGrads::Flat32(a), MlpGrads::Flat32(b)) => {
                let w = w as f32;
                for (x, y) in a.iter_mut().zip(b) {
                    *x += w * y;
                }
            }
            (MlpGrads::Module(a), MlpGrads::Module(b)) => a.add_scaled(b, w),
            _ => panic!("MlpGrads: mixing fused and burn cotangents"),
        }
    }
    fn set_zero(&mut self) {
        match self {
            MlpGrads::Flat(a) => a.set_zero(),
            MlpGrads::Flat32(a) => a.iter_mut().for_each(|v| *v = 0.0),
            MlpGrads::Module(a) => a.set_zero(),
        }
    }
}

impl MlpGrads {
    /// The cotangent flattened in the fused layout (per layer `W` then `b`), as f64.
    pub fn to_flat(&self) -> Vec<f64> {
        match self {
            MlpGrads::Flat(v) => v.clone(),
            MlpGrads::Flat32(v) => v.iter().map(|x| *x as f64).collect(),
            MlpGrads::Module(m) => m.to_flat(),
        }
    }

    /// burn's gradient container for `mlp`'s parameters, for `optim.step`.
    pub fn into_gradients_params(self, mlp: &Mlp) -> burn::optim::GradientsParams {
        let mut out = burn::optim::GradientsParams::new();
        self.register_into(mlp, &mut out);
        out
    }

    /// Add the cotangents of `mlp`'s parameters to an existing gradient container (several
    /// networks under one optimizer).
    pub fn register_into(self, mlp: &Mlp, out: &mut burn::optim::GradientsParams) {
        match self {
            MlpGrads::Module(m) => m.register_into(out),
            MlpGrads::Flat32(v) => MlpGrads::Flat(v.into_iter().map(f64::from).collect()).register_into(mlp, out),
            MlpGrads::Flat(v) => {
                let mut grads = ModuleGrads::zeros(mlp);
                let mut offset = 0;
                for layer in &mlp.layers {
                    let w = layer.weight.val();
                    let (device, dtype) = (w.device().without_autodiff(), w.dtype());
                    let n = w.shape().num_elements();
                    let t = Tensor::<1>::from_data(TensorData::new(v[offset..offset + n].to_vec(), [n]), (&device, dtype));
                    grads.set(layer.weight.id, t);
                    offset += n;
                    if let Some(b) = &layer.bias {
                        let nb = b.dims()[0];
                        let t = Tensor::<1>::from_data(TensorData::new(v[offset..offset + nb].to_vec(), [nb]), (&device, dtype));
                        grads.set(b.id, t);
                        offset += nb;
                    }
                }
                grads.register_into(out)
            }
        }
    }
}

fn host<R: Real + burn::tensor::Element>(x: &Tensor<2>) -> Vec<R> {
    x.to_vec_as::<R>()
}

fn time_arg<'a, R: Real>(t: &Time, buf: &'a mut Vec<R>) -> TimeArg<'a, R> {
    match t {
        Time::Shared(v) => TimeArg::Shared(R::from_f64(*v)),
        Time::PerSample(ts) => {
            buf.clear();
            buf.extend(ts.iter().map(|v| R::from_f64(*v)));
            TimeArg::PerSample(buf)
        }
    }
}

macro_rules! fused_eval {
    ($net:expr, $ty:ty, $t:expr, $y:expr, $cache:expr) => {{
        let [b, _] = $y.dims();
        let x: Vec<$ty> = host::<$ty>($y);
        let mut out = vec![<$ty>::default(); b * $net.dim_out()];
        let mut tbuf = Vec::new();
        let targ = if $net.time_input() { time_arg($t, &mut tbuf) } else { TimeArg::None };
        match $cache {
            Some(cache) => $net.forward_cached(targ, &x, b, &mut out, cache),
            None => $net.forward(targ, &x, b, &mut out),
        }
        let device = $y.device();
        Tensor::<2>::from_data(TensorData::new(out, [b, $net.dim_out()]), (&device, $y.dtype()))
    }};
}

/// The flat accumulator of the fused path in the network's own precision.
trait FlatSlot: Real {
    fn slot(g: &mut MlpGrads) -> &mut Vec<Self>;
}

impl FlatSlot for f32 {
    fn slot(g: &mut MlpGrads) -> &mut Vec<f32> {
        match g {
            MlpGrads::Flat32(v) => v,
            _ => panic!("MlpField: f32 fused path given another parameter cotangent"),
        }
    }
}

impl FlatSlot for f64 {
    fn slot(g: &mut MlpGrads) -> &mut Vec<f64> {
        match g {
            MlpGrads::Flat(v) => v,
            _ => panic!("MlpField: f64 fused path given another parameter cotangent"),
        }
    }
}

macro_rules! fused_vjp {
    ($self:expr, $net:expr, $ty:ty, $cache:expr, $device:expr, $a:expr, $params:expr) => {{
        let mut cache = $cache.borrow_mut();
        let b = cache.batch();
        let a: Vec<$ty> = host::<$ty>($a);
        let mut x_bar = vec![<$ty>::default(); b * $net.dim_in()];
        match $params {
            // The common case (every gradient strategy passes w = 1): accumulate in place.
            Some((acc, w)) if w == 1.0 => $net.vjp(&mut cache, &a, &mut x_bar, <$ty as FlatSlot>::slot(acc), None),
            Some((acc, w)) => {
                let mut p_bar = vec![<$ty>::default(); $net.num_params()];
                $net.vjp(&mut cache, &a, &mut x_bar, &mut p_bar, None);
                let w = <$ty>::from_f64(w);
                for (s, g) in <$ty as FlatSlot>::slot(acc).iter_mut().zip(&p_bar) {
                    *s += w * *g;
                }
            }
            None => $net.vjp(&mut cache, &a, &mut x_bar, &mut [], None),
        }
        Tensor::<2>::from_data(TensorData::new(x_bar, [b, $net.dim_in()]), ($device, $a.dtype()))
    }};
}

impl VectorField<2> for MlpField<'_> {
    type Params = MlpGrads;
    type Saved = MlpSaved;

    /// The network must map the state's width to itself (`sizes = [d, …, d]`, time excluded).
    fn check_state(&self, y0: &Tensor<2>) -> Result<()> {
        let sizes = self.mlp.sizes();
        let [b, d] = y0.dims();
        let (d_in, d_out) = (sizes[0], sizes[sizes.len() - 1]);
        if d_in != d_out {
            return Err(Error::invalid("mlp", format!("a vector field maps a state to its own width; this MLP maps {d_in} to {d_out}")));
        }
        if d != d_in {
            return Err(Error::Shape { what: "state of the MLP field".into(), expected: vec![b, d_in], got: vec![b, d] });
        }
        Ok(())
    }

    fn eval(&self, t: &Time, y: &Tensor<2>) -> Tensor<2> {
        match &self.fused {
            Some(Fused::F32(net)) => fused_eval!(net, f32, t, y, None::<&mut MlpCache<f32>>),
            Some(Fused::F64(net)) => fused_eval!(net, f64, t, y, None::<&mut MlpCache<f64>>),
            None => self.ad.as_ref().expect("burn path").eval(t, y),
        }
    }

    fn eval_saving(&self, t: &Time, y: &Tensor<2>) -> (Tensor<2>, MlpSaved) {
        match &self.fused {
            Some(Fused::F32(net)) => {
                let mut cache = take_cache(&POOL_F32);
                let f = fused_eval!(net, f32, t, y, Some(&mut cache));
                (f, MlpSaved::F32(RefCell::new(cache), y.device()))
            }
            Some(Fused::F64(net)) => {
                let mut cache = take_cache(&POOL_F64);
                let f = fused_eval!(net, f64, t, y, Some(&mut cache));
                (f, MlpSaved::F64(RefCell::new(cache), y.device()))
            }
            None => (self.eval(t, y), MlpSaved::Burn(t.clone(), y.clone())),
        }
    }

    fn vjp_saved(&self, saved: &MlpSaved, a: &Tensor<2>, params: Option<(&mut MlpGrads, f64)>) -> Tensor<2> {
        match (saved, &self.fused) {
            (MlpSaved::F32(cache, device), Some(Fused::F32(net))) => fused_vjp!(self, net, f32, cache, device, a, params),
            (MlpSaved::F64(cache, device), Some(Fused::F64(net))) => fused_vjp!(self, net, f64, cache, device, a, params),
            (MlpSaved::Burn(t, y), None) => {
                let field = self.ad.as_ref().expect("burn path");
                match params {
                    Some((MlpGrads::Module(acc), w)) => field.vjp(t, y, a, Some((acc, w))),
                    Some(_) => panic!("MlpField: fused cotangent given to the burn path"),
                    None => field.vjp(t, y, a, None),
                }
            }
            _ => panic!("MlpField: saved state from another path"),
        }
    }

    fn zero_params(&self) -> MlpGrads {
        match &self.fused {
            Some(Fused::F32(net)) => MlpGrads::Flat32(vec![0.0; net.num_params()]),
            Some(Fused::F64(net)) => MlpGrads::Flat(vec![0.0; net.num_params()]),
            None => MlpGrads::Module(ModuleGrads::zeros(self.mlp)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-row network is the same function as the module built from the same flat
    /// parameters (reference: `Mlp::forward_t`, f64, to round-off of the batched products),
    /// row by row when the rows carry different parameters, with and without a time column.
    #[test]
    fn per_row_parameters_give_the_module_of_each_row() {
        let device = Device::flex();
        for cfg in [MlpConfig::new(vec![3, 5, 2]), MlpConfig::new(vec![2, 4, 4, 3]).with_time().with_activation(Activation::Silu)] {
            let (n, d) = (cfg.num_params(), cfg.sizes[0]);
            let rows: Vec<Vec<f64>> =
                (0..3).map(|r| cfg.glorot_flat(r).unwrap().iter().enumerate().map(|(k, w)| w + 0.01 * (k % 7) as f64).collect()).collect();
            let x: Vec<f64> = (0..3 * d).map(|k| (k as f64 * 0.37).sin()).collect();
            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [3, d]).convert_dtype(DType::F64), (&device, DType::F64));
            let pt = Tensor::<2>::from_data(TensorData::new(rows.concat(), [3, n]).convert_dtype(DType::F64), (&device, DType::F64));
            let t = Time::Shared(0.3);
            let got = cfg.forward_rows(&t, xt, &pt).to_vec_as::<f64>();
            let d_out = *cfg.sizes.last().unwrap();
            for (r, p) in rows.iter().enumerate() {
                let m = cfg.from_flat(p, &device, DType::F64).unwrap();
                let xr = Tensor::<2>::from_data(TensorData::new(x[r * d..(r + 1) * d].to_vec(), [1, d]).convert_dtype(DType::F64), (&device, DType::F64));
                let want = m.forward_t(&t, xr).to_vec_as::<f64>();
                for (g, w) in got[r * d_out..(r + 1) * d_out].iter().zip(&want) {
                    assert!((g - w).abs() < 1e-14, "row {r}: {g} vs {w}");
                }
            }
        }
    }

    /// Glorot-uniform start: weights inside `±√(6/(d_in+d_out))`, zero biases, one name per
    /// parameter in the flat order, the same draw from the same seed.
    #[test]
    fn glorot_start_and_names_follow_the_flat_layout() {
        let cfg = MlpConfig::new(vec![2, 3, 1]).with_time();
        let p = cfg.glorot_flat(7).unwrap();
        assert_eq!(p, cfg.glorot_flat(7).unwrap());
        let names = cfg.param_names();
        assert_eq!((p.len(), names.len()), (cfg.num_params(), cfg.num_params()));
        // Layer 0: W [3 (2 + time), 3] then b [3]; layer 1: W [3, 1] then b [1].
        assert_eq!(
            (names[0].as_str(), names[8].as_str(), names[9].as_str(), names[12].as_str(), names[15].as_str()),
            ("w0_0_0", "w0_2_2", "b0_0", "w1_0_0", "b1_0")
        );
        let (a0, a1) = ((6.0f64 / 6.0).sqrt(), (6.0f64 / 4.0).sqrt());
        assert!(p[..9].iter().all(|w| w.abs() < a0) && p[12..15].iter().all(|w| w.abs() < a1));
        assert!(p[9..12].iter().chain(&p[15..]).all(|&b| b == 0.0));
        assert!(MlpConfig::new(vec![1, 0, 1]).glorot_flat(0).is_err());
    }
}
