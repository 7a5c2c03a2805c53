//! Network parts shared by the pillars: the MLP (burn module and fused CPU kernels).

pub mod fused;
mod mlp;

pub use mlp::{Mlp, MlpConfig, MlpField, MlpGrads, MlpSaved};
