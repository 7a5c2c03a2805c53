//! Study: Boltzmann generators for DW4, LJ13 and LJ55 trained on MALA samples (an EGNN flow by
//! equivariant flow matching); held-out NLL, ESS/N, energy and interatomic-distance histograms
//! against MALA. Same as `physflow bg particles --system dw4|lj13|lj55`.
//!
//! `cargo run --release --example bg_particles [-- OUT_DIR [STEPS [DEVICE [SYSTEMS]]]]` (defaults:
//! `out`, each system's steps, cpu, `dw4,lj13`; DEVICE is cpu, wgpu or cuda as built; SYSTEMS a
//! comma-separated list of dw4, lj13, lj55); writes `OUT_DIR/bg_<system>/`.

mod common;

use physflow::studies::bg_particles::ParticleSystem;
use physflow::studies::Overrides;

fn main() -> physflow::Result<()> {
    let (out, steps, device, rest) = common::args()?;
    let systems = rest.first().map(String::as_str).unwrap_or("dw4,lj13");
    for system in systems.split(',').map(str::parse::<ParticleSystem>) {
        common::run("bg particles", &out, device, &Overrides { steps, system: Some(system?), ..Overrides::default() })?;
    }
    Ok(())
}
