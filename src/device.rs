//! Device selection: the CPU (burn's pure-Rust `flex` backend) always; wgpu and CUDA when the
//! crate is built with the `wgpu` / `cuda` features. Nothing else in the library names a backend.

use std::sync::OnceLock;

use burn::tensor::{DType, Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A compute backend chosen at run time (`--device cpu|wgpu|cuda`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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
    /// The name used on the command line and in reports (`cpu`, `wgpu`, `cuda`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// The device for this backend, checked to work: a first tensor is made and read back,
    /// so a missing adapter or driver is reported here rather than as a panic inside the
    /// first training step.
    ///
    /// # Errors
    /// [`Error::Device`] naming the backend and the cause: a Cargo feature not compiled in,
    /// no adapter or driver, a failed readback.
    pub fn device(self) -> Result<Device> {
        let device = self.unchecked_device()?;
        probe(self.name(), &device)?;
        Ok(device)
    }

    fn unchecked_device(self) -> Result<Device> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            Backend::Wgpu => {
                #[cfg(feature = "wgpu")]
                {
                    Ok(Device::wgpu(Default::default()))
                }
                #[cfg(not(feature = "wgpu"))]
                {
                    Err(Error::Device { device: "wgpu".into(), reason: "this build has no wgpu backend; rebuild with `--features wgpu`".into() })
                }
            }
            Backend::Cuda => {
                #[cfg(feature = "cuda")]
                {
                    Ok(Device::cuda(0))
                }
                #[cfg(not(feature = "cuda"))]
                {
                    Err(Error::Device { device: "cuda".into(), reason: "this build has no CUDA backend; rebuild with `--features cuda`".into() })
                }
            }
        }
    }
}

/// The backend name of `device` for reports: `cpu`, `wgpu`, `cuda`, or burn's description of
/// any other.
pub fn name_of(device: &Device) -> String {
    let plain = device.clone().without_autodiff();
    if plain == Device::flex() {
        return "cpu".into();
    }
    let debug = format!("{plain:?}");
    let lower = debug.to_lowercase();
    for name in ["wgpu", "vulkan", "cuda"] {
        if lower.contains(name) {
            return if name == "vulkan" { "wgpu".into() } else { name.into() };
        }
    }
    debug
}

impl std::str::FromStr for Backend {
    type Err = Error;

    /// `cpu`, `wgpu` or `cuda`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Backend::Cpu),
            "wgpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda),
            other => Err(Error::invalid("device", format!("unknown device `{other}` (cpu, wgpu, cuda)"))),
        }
    }
}

/// Make a tensor on `device` and read it back. Backends initialise lazily and panic when no
/// adapter or driver is found; the panic is caught here and turned into [`Error::Device`].
fn probe(name: &str, device: &Device) -> Result<()> {
    let device = device.clone();
    let outcome = std::panic::catch_unwind(move || {
        let t = Tensor::<1>::from_data(burn::tensor::TensorData::new(vec![1.0f32, 2.0], [2]), (&device, DType::F32));
        t.mul_scalar(2.0).try_to_vec_as::<f32>().map_err(|e| format!("readback failed: {e}"))
    });
    let reason = match outcome {
        Ok(Ok(v)) if v == [2.0, 4.0] => return Ok(()),
        Ok(Ok(v)) => format!("a test computation returned {v:?} instead of [2.0, 4.0]"),
        Ok(Err(e)) => e,
        Err(panic) => {
            let msg = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            format!("the backend failed to start ({msg}); is a driver installed (a Vulkan loader and driver for wgpu, the NVIDIA driver's libcuda for cuda)?")
        }
    };
    Err(Error::Device { device: name.into(), reason })
}

/// Whether this build and machine can run `backend`, with the reason when not (for tests and
/// benchmarks that skip a device with a message rather than fail or pass silently).
pub fn available(backend: Backend) -> std::result::Result<Device, String> {
    backend.device().map_err(|e| e.to_string())
}

/// The CPU device with f64 as its default float type, for physics references and
/// gradient checks. Configured once per process (burn fixes a device's default dtype at
/// its first tensor); every later call returns the same device.
///
/// # Errors
/// [`Error::Device`] if the CPU device was already used with another float type in this
/// process (burn locks a device's default dtype at its first tensor): use one precision per
/// process, or create f64 tensors with an explicit dtype on [`reference_cpu`].
pub fn cpu_f64() -> Result<Device> {
    static DEVICE: OnceLock<std::result::Result<Device, String>> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let mut d = Device::flex();
            match d.configure(FloatDType::F64) {
                Ok(()) => Ok(d),
                Err(e) => {
                    // Already initialised: fine if it is f64 already.
                    let probe = burn::tensor::Tensor::<1>::zeros([1], &d);
                    if probe.dtype() == burn::tensor::DType::F64 {
                        Ok(d)
                    } else {
                        Err(format!("the CPU device was already configured with {:?} as its float type ({e}); use one precision per process", probe.dtype()))
                    }
                }
            }
        })
        .clone()
        .map_err(|reason| Error::Device { device: "cpu".into(), reason })
}

/// The CPU device on which physics references run in f64 with an explicit dtype (the
/// default float type is left as it is): reference data never depends on the training
/// device, and GPU backends without f64 never see it.
pub fn reference_cpu() -> Device {
    Device::flex()
}

/// `t` copied to `device` in `dtype` through the host (works between any two backends,
/// including ones that cannot exchange buffers directly).
///
/// # Errors
/// [`Error::Device`] when `t` cannot be read back.
pub fn transfer<const D: usize>(t: &Tensor<D>, device: &Device, dtype: DType) -> Result<Tensor<D>> {
    let data = t.try_to_data_dtype(dtype).map_err(|e| Error::Device { device: format!("{:?}", t.device()), reason: format!("readback failed: {e}") })?;
    Ok(Tensor::<D>::from_data(data, (device, dtype)))
}
