//! Study: a Boltzmann generator for the 2D double well trained by energy only; ESS/N, the free
//! energy difference between the wells and log Z against quadrature. Same as
//! `physflow bg double-well`.
//!
//! `cargo run --release --example bg_double_well [-- OUT_DIR [STEPS [DEVICE]]]` (defaults:
//! `out/bg_double_well`, 3000, cpu; DEVICE is cpu, wgpu or cuda as built)

use physflow::studies::bg_double_well::{run, BgDoubleWellConfig};

fn main() -> physflow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "out/bg_double_well".into());
    let mut cfg = BgDoubleWellConfig::default();
    if let Some(steps) = args.next() {
        cfg.train.steps = steps.parse().map_err(|_| physflow::Error::InvalidArgument { name: "STEPS", reason: format!("not a count: {steps}") })?;
    }
    let device: physflow::device::Backend = args.next().as_deref().unwrap_or("cpu").parse()?;
    let r = run(&cfg, &device.device()?, std::path::Path::new(&out), false)?;
    println!(
        "ESS/N {:.4}; ΔF {:.4} ± {:.4} (exact {:.4}); log Z {:.4} ± {:.4} (BAR {:.4} ± {:.4}, exact {:.4}); files: {:?}",
        r.ess_fraction,
        r.delta_f_reweighted.value,
        r.delta_f_reweighted.std_err,
        r.delta_f_exact,
        r.log_z_importance.value,
        r.log_z_importance.std_err,
        r.log_z_bar.value,
        r.log_z_bar.std_err,
        r.log_z_exact,
        r.files
    );
    Ok(())
}
