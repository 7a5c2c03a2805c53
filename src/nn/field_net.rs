//! One type for the field models, so training, checkpoints and sampling take either.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::conv::{ConvNet, ConvNetConfig};
use super::fno::{Fno, FnoConfig};

/// Which field model, with its architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FieldNetConfig {
    /// A Fourier neural operator.
    Fno(FnoConfig),
    /// A residual convolutional network.
    Conv(ConvNetConfig),
}

impl Default for FieldNetConfig {
    fn default() -> Self {
        FieldNetConfig::Fno(FnoConfig::default())
    }
}

impl FieldNetConfig {
    /// The network with weights from `seed`.
    ///
    /// # Errors
    /// `InvalidArgument` naming a setting out of range.
    pub fn init(&self, seed: u64, device: &Device) -> crate::Result<FieldNet> {
        Ok(match self {
            FieldNetConfig::Fno(c) => FieldNet::Fno(c.init(seed, device)?),
            FieldNetConfig::Conv(c) => FieldNet::Conv(c.init(seed, device)?),
        })
    }

    /// Field channels in and out.
    pub fn channels(&self) -> (usize, usize) {
        match self {
            FieldNetConfig::Fno(c) => (c.in_channels, c.out_channels),
            FieldNetConfig::Conv(c) => (c.in_channels, c.out_channels),
        }
    }

    /// Checks the architecture against a field grid `[X, Y]` ([`FnoConfig::check_grid`]; the
    /// convolutional net takes any grid, and is checked by [`ConvNetConfig::check`]).
    ///
    /// # Errors
    /// `InvalidArgument` naming the setting.
    pub fn check_grid(&self, nx: usize, ny: usize) -> crate::Result<()> {
        match self {
            FieldNetConfig::Fno(f) => f.check_grid(nx, ny),
            FieldNetConfig::Conv(c) => c.check(),
        }
    }

    /// The same architecture with `channels` field channels in and out.
    pub fn with_channels(&self, channels: usize) -> Self {
        let mut c = self.clone();
        match &mut c {
            FieldNetConfig::Fno(f) => (f.in_channels, f.out_channels) = (channels, channels),
            FieldNetConfig::Conv(f) => (f.in_channels, f.out_channels) = (channels, channels),
        }
        c
    }
}

/// A field model: [`Fno`] or [`ConvNet`].
#[derive(Module, Debug)]
pub enum FieldNet {
    /// Fourier neural operator.
    Fno(Fno),
    /// Convolutional network.
    Conv(ConvNet),
}

impl FieldNet {
    /// The network at flow times `t`.
    ///
    /// # Shapes
    /// `u: [batch, c_in, X, Y]`, `t: [batch]` → `[batch, c_out, X, Y]`.
    pub fn forward(&self, u: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        match self {
            FieldNet::Fno(n) => n.forward(u, t),
            FieldNet::Conv(n) => n.forward(u, t),
        }
    }
}
