//! Study: 8 Gaussians → two moons by flow matching — W₂ to held-out data vs NFE for the
//! independent and exact-OT couplings and after one reflow, with trajectory figures.
//! Same as `physflow fm moons`.
//!
//! `cargo run --release --example fm_moons [-- OUT_DIR [STEPS [DEVICE]]]` (defaults: `out/fm_moons`, 3000, cpu; DEVICE is cpu, wgpu or cuda as built)

use physflow::studies::fm_moons::{run, FmMoonsConfig};

fn main() -> physflow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "out/fm_moons".into());
    let mut cfg = FmMoonsConfig::default();
    if let Some(steps) = args.next() {
        cfg.steps = steps.parse().map_err(|_| physflow::Error::InvalidArgument { name: "STEPS", reason: format!("not a count: {steps}") })?;
    }
    let device: physflow::device::Backend = args.next().as_deref().unwrap_or("cpu").parse()?;
    let report = run(&cfg, &device.device()?, std::path::Path::new(&out), false)?;
    for m in &report.models {
        println!("{:>12}: W2 by NFE {:?}, straightness {:?}", m.name, m.w2, m.straightness);
    }
    println!("data-vs-data floor {:.3}; files: {:?}", report.w2_floor, report.files);
    Ok(())
}
