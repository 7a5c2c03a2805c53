//! Device selection: the CPU (burn's pure-Rust `flex` backend) always; wgpu and CUDA when the
//! crate is built with the `wgpu` / `cuda` features. Nothing else in the library names a backend.

use std::sync::OnceLock;

use burn::tensor::{Device, FloatDType};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A compute backend chosen at run time (`--device cpu|wgpu|cuda`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's pure-Rust CPU backend (`flex`), the default.
    Cpu,
    /// burn's wgpu backend (feature `wgpu`).
    Wgpu,
    /// burn's CUDA backend (feature `cuda`).
    Cuda,
}

impl Backend {
    /// The device for this backend, or an error naming the missing Cargo feature.
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            Backend::Wgpu => {
                #[cfg(feature = "wgpu")]
                {
                    Ok(Device::wgpu(Default::default()))
                }
                #[cfg(not(feature = "wgpu"))]
                {
                    Err(Error::Device("this build has no wgpu backend; rebuild with `--features wgpu`".into()))
                }
            }
            Backend::Cuda => {
                #[cfg(feature = "cuda")]
                {
                    Ok(Device::cuda(0))
                }
                #[cfg(not(feature = "cuda"))]
                {
                    Err(Error::Device("this build has no CUDA backend; rebuild with `--features cuda`".into()))
                }
            }
        }
    }
}

/// The CPU device with f64 as its default float type, for physics references and
/// gradient checks. Configured once per process (burn fixes a device's default dtype at
/// its first tensor); every later call returns the same device.
///
/// # Panics
/// If the CPU device was already used with f32 in this process.
pub fn cpu_f64() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let mut d = Device::flex();
            if let Err(e) = d.configure(FloatDType::F64) {
                // Already initialised: fine if it is f64 already.
                let probe = burn::tensor::Tensor::<1>::zeros([1], &d);
                assert_eq!(
                    probe.dtype(),
                    burn::tensor::DType::F64,
                    "the CPU device was already configured with another float type ({e:?}); \
                     use one precision per process"
                );
            }
            d
        })
        .clone()
}
