//! Network parts shared by the pillars: the MLP (burn module and fused CPU kernels), and the
//! field models of the PDE pillar: the Fourier neural operator ([`fno`]) and a small
//! convolutional network ([`conv`]) behind one [`FieldNet`].

pub mod conv;
pub mod egnn;
pub mod field_net;
pub mod fno;
pub mod fused;
pub mod init;
mod mlp;

pub use conv::{ConvNet, ConvNetConfig};
pub use egnn::{Egnn, EgnnConfig};
pub use field_net::{FieldNet, FieldNetConfig};
pub use fno::{Fno, FnoConfig};
pub use init::Activation;
pub use mlp::{Mlp, MlpConfig, MlpField, MlpGrads, MlpSaved};
