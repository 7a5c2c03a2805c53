//! Seeded parameter initialisation and the activations shared by the field models, so a model
//! is reproducible from its seed alone on any device.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{activation, Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::RngExt;
use serde::{Deserialize, Serialize};

/// An affine layer `[d_in] → [d_out]` (burn layout: weight `[d_in, d_out]`) with weights and
/// bias drawn from `U(−1/√d_in, 1/√d_in)`, PyTorch's default for `nn.Linear`.
pub fn linear(rng: &mut StdRng, d_in: usize, d_out: usize, device: &Device) -> Linear {
    let bound = 1.0 / (d_in as f64).sqrt();
    let w: Vec<f64> = (0..d_in * d_out).map(|_| rng.random_range(-bound..bound)).collect();
    let b: Vec<f64> = (0..d_out).map(|_| rng.random_range(-bound..bound)).collect();
    Linear {
        weight: Param::from_tensor(Tensor::<2>::from_data(TensorData::new(w, [d_in, d_out]), device)),
        bias: Some(Param::from_tensor(Tensor::<1>::from_data(TensorData::new(b, [d_out]), device))),
    }
}

/// A tensor of `shape` with entries `U(lo, hi)` from `rng`, as a trainable parameter.
pub fn uniform<const D: usize>(rng: &mut StdRng, shape: [usize; D], lo: f64, hi: f64, device: &Device) -> Param<Tensor<D>> {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Param::from_tensor(Tensor::<D>::from_data(TensorData::new(v, shape), device))
}

/// The pointwise nonlinearity of a field model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x Φ(x)` (Hendrycks & Gimpel 2016), the FNO default.
    #[default]
    Gelu,
    /// `x σ(x)`: smooth like GELU and measured 1.4× cheaper on burn's CPU backend.
    Silu,
    /// `tanh x`.
    Tanh,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    /// Applies the nonlinearity elementwise.
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Gelu => activation::gelu(x),
            Activation::Silu => activation::silu(x),
            Activation::Tanh => x.tanh(),
            Activation::Relu => activation::relu(x),
        }
    }
}
