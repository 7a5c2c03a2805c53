//! Study: a physical transport by flow matching — double-well samples at β = 0.3 carried to
//! β = 1, compared with the exact density (W₂, well populations, importance weights from the
//! flow's log-density). Same as `physflow fm double-well`.
//!
//! `cargo run --release --example fm_double_well [-- OUT_DIR [STEPS [DEVICE]]]` (defaults:
//! `out/fm_double_well`, 3000, cpu; DEVICE is cpu, wgpu or cuda as built)

use physflow::studies::fm_double_well::{run, FmDoubleWellConfig};

fn main() -> physflow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "out/fm_double_well".into());
    let mut cfg = FmDoubleWellConfig::default();
    if let Some(steps) = args.next() {
        cfg.steps = steps.parse().map_err(|_| physflow::Error::InvalidArgument { name: "STEPS", reason: format!("not a count: {steps}") })?;
    }
    let device: physflow::device::Backend = args.next().as_deref().unwrap_or("cpu").parse()?;
    let r = run(&cfg, &device.device()?, std::path::Path::new(&out), false)?;
    println!(
        "W2 {:.4} (floor {:.4}); right well {:.4} (exact {:.4}); ESS/N {:.3}; files: {:?}",
        r.w2, r.w2_floor, r.right_well_model, r.right_well_exact, r.ess_fraction, r.files
    );
    Ok(())
}
