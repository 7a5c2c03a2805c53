//! A small convolutional field model: the local alternative to the [`super::Fno`]. Residual
//! blocks `h ← h + σ(conv(h) + b(t))` with `k_x × k_y` kernels (`k × 1` for 1D fields) and
//! zero padding, between pointwise lift and projection layers; the same time embedding as the FNO.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::fno::{coordinates, time_features};
use super::init::{linear, uniform, Activation};

/// Architecture of a [`ConvNet`]; every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConvNetConfig {
    /// Field channels in.
    pub in_channels: usize,
    /// Field channels out.
    pub out_channels: usize,
    /// Hidden channels.
    pub width: usize,
    /// Residual blocks.
    pub blocks: usize,
    /// Odd kernel sizes `[k_x, k_y]` (`[k, 1]` for 1D fields).
    pub kernel: [usize; 2],
    /// Fourier features of the time input (0: no time input).
    pub time_features: usize,
    /// Nonlinearity.
    pub activation: Activation,
}

impl Default for ConvNetConfig {
    fn default() -> Self {
        Self { in_channels: 1, out_channels: 1, width: 32, blocks: 4, kernel: [5, 5], time_features: 8, activation: Activation::Gelu }
    }
}

/// The convolutional field model.
#[derive(Module, Debug)]
pub struct ConvNet {
    /// Lift `[c_in + 2 coordinates] → width`, pointwise.
    pub lift: Linear,
    /// The blocks' convolutions, square kernels.
    pub convs: Vec<Conv2d>,
    /// Time embedding `[2F + 1] → width`.
    pub time_embed: Option<Linear>,
    /// Per-block time biases.
    pub time_bias: Vec<Linear>,
    /// Projection `width → c_out`, pointwise.
    pub proj: Linear,
    /// Fourier features of `t`.
    pub time_features: usize,
    /// Kernel sizes.
    pub kernel: [usize; 2],
    /// Nonlinearity.
    #[module(skip)]
    pub activation: Activation,
}

impl ConvNetConfig {
    /// Checks the settings: positive channels and width, odd kernel sizes (the padding
    /// `k / 2` keeps the grid only for odd `k`).
    ///
    /// # Errors
    /// `InvalidArgument` naming the setting.
    pub fn check(&self) -> crate::Result<()> {
        if self.in_channels == 0 || self.out_channels == 0 || self.width == 0 {
            return Err(crate::Error::invalid(
                "conv",
                format!("in_channels, out_channels and width must be positive, got {}, {}, {}", self.in_channels, self.out_channels, self.width),
            ));
        }
        if self.kernel.iter().any(|k| k % 2 == 0) {
            return Err(crate::Error::invalid("conv.kernel", format!("kernel sizes must be odd (the padding k/2 keeps the grid), got {:?}", self.kernel)));
        }
        Ok(())
    }

    /// The network with weights from `seed` (`U(±1/√fan_in)` everywhere, PyTorch's default).
    ///
    /// # Errors
    /// The settings' error from [`ConvNetConfig::check`].
    pub fn init(&self, seed: u64, device: &Device) -> crate::Result<ConvNet> {
        self.check()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let w = self.width;
        let lift = linear(&mut rng, self.in_channels + 2, w, device);
        let [kx, ky] = self.kernel;
        let bound = 1.0 / ((w * kx * ky) as f64).sqrt();
        let convs = (0..self.blocks)
            .map(|_| {
                let mut c = Conv2dConfig::new([w, w], [kx, ky]).with_padding(PaddingConfig2d::Explicit(kx / 2, ky / 2, kx / 2, ky / 2)).init(device);
                c.weight = uniform(&mut rng, [w, w, kx, ky], -bound, bound, device);
                c.bias = Some(uniform(&mut rng, [w], -bound, bound, device));
                c
            })
            .collect();
        let (time_embed, time_bias) = if self.time_features > 0 {
            let e = linear(&mut rng, 2 * self.time_features + 1, w, device);
            (Some(e), (0..self.blocks).map(|_| linear(&mut rng, w, w, device)).collect())
        } else {
            (None, Vec::new())
        };
        let proj = linear(&mut rng, w, self.out_channels, device);
        Ok(ConvNet { lift, convs, time_embed, time_bias, proj, time_features: self.time_features, kernel: self.kernel, activation: self.activation })
    }
}

impl ConvNet {
    /// The network applied to fields at flow times `t`.
    ///
    /// # Shapes
    /// `u: [batch, c_in, X, Y]`, `t: [batch]` → `[batch, c_out, X, Y]`.
    pub fn forward(&self, u: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let [b, _, nx, ny] = u.dims();
        let x = u.permute([0, 2, 3, 1]);
        let coords = coordinates(b, nx, ny, &x);
        let mut h = self.lift.forward(Tensor::cat(vec![x, coords], 3)).permute([0, 3, 1, 2]);
        let w = h.dims()[1];
        let emb = self.time_embed.as_ref().map(|lin| self.activation.apply(lin.forward(time_features(&t, self.time_features))));
        for (l, conv) in self.convs.iter().enumerate() {
            let mut z = conv.forward(h.clone());
            if let Some(e) = &emb {
                z = z + self.time_bias[l].forward(e.clone()).reshape([b, w, 1, 1]);
            }
            h = h + self.activation.apply(z);
        }
        self.proj.forward(h.permute([0, 2, 3, 1])).permute([0, 3, 1, 2])
    }
}
