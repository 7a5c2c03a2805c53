//! One type for the field models, so training, checkpoints and sampling take either.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::conv::{ConvNet, ConvNetConfig};
use super::fno::{Fno, FnoConfig, FnoV1};

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

    /// Loads parameters written by [`crate::train::save_module`] into this architecture,
    /// including an FNO saved before its projection became an [`super::Mlp`] (a record naming
    /// `proj1` and `proj2`): that record is read into the earlier layout and moved over, so
    /// trained models keep loading. Parameter ids travel with the record, so an optimizer
    /// state saved beside it still finds its parameters.
    ///
    /// # Errors
    /// `Io` when the file cannot be read; `Format` when it fits neither layout (the error of
    /// the current layout is the one reported).
    pub fn load(self, path: &Path) -> crate::Result<FieldNet> {
        let FieldNet::Fno(fno) = self else {
            return crate::train::load_module(path, self);
        };
        let current = crate::train::load_module(path, FieldNet::Fno(fno.clone()));
        let Err(crate::Error::Format { .. }) = current else {
            return current;
        };
        match fno.into_v1().map(|v1| crate::train::load_module(path, FieldNetV1::Fno(v1))) {
            Some(Ok(FieldNetV1::Fno(v1))) => Ok(FieldNet::Fno(v1.into())),
            _ => current,
        }
    }
}

/// [`FieldNet`] with the FNO's earlier record layout ([`FnoV1`]); the variant name is the
/// record path's first segment, so it must stay `Fno`.
#[derive(Module, Debug)]
enum FieldNetV1 {
    Fno(FnoV1),
}
