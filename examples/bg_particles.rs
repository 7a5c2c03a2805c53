//! Study: Boltzmann generators for DW4, LJ13 and LJ55 trained on MALA samples (an EGNN flow by
//! equivariant flow matching);
//! held-out NLL, ESS/N, energy and interatomic-distance histograms against MALA. Same as
//! `physflow bg particles --system dw4|lj13|lj55`.
//!
//! `cargo run --release --example bg_particles [-- OUT_DIR [STEPS [DEVICE [SYSTEMS]]]]` (defaults:
//! `out`, each system's steps, cpu, `dw4,lj13`; DEVICE is cpu, wgpu or cuda as built; SYSTEMS a
//! comma-separated list of dw4, lj13, lj55)

use physflow::studies::bg_particles::{run, BgParticlesConfig, ParticleSystem};

fn main() -> physflow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().unwrap_or_else(|| "out".into()));
    let steps: Option<usize> = match args.next() {
        Some(s) => Some(s.parse().map_err(|_| physflow::Error::InvalidArgument { name: "STEPS", reason: format!("not a count: {s}") })?),
        None => None,
    };
    let device: physflow::device::Backend = args.next().as_deref().unwrap_or("cpu").parse()?;
    let device = device.device()?;
    let systems: Vec<ParticleSystem> = args.next().unwrap_or_else(|| "dw4,lj13".into()).split(',').map(str::parse).collect::<physflow::Result<_>>()?;
    for system in systems {
        let name = system.name();
        let mut cfg = BgParticlesConfig::for_system(system);
        if let Some(n) = steps {
            *cfg.steps_mut() = n;
        }
        let r = run(&cfg, &device, &out.join(format!("bg_{name}")), false)?;
        println!("{}; files: {:?}", r.summary(), r.files);
    }
    Ok(())
}
