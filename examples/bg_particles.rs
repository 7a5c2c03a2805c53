//! Study: Boltzmann generators for DW4 and LJ13 trained on MALA samples (an EGNN flow by
//! equivariant flow matching);
//! held-out NLL, ESS/N, energy and interatomic-distance histograms against MALA. Same as
//! `physflow bg particles --system dw4` and `--system lj13`.
//!
//! `cargo run --release --example bg_particles [-- OUT_DIR [STEPS [DEVICE]]]` (defaults: `out`, 3000, cpu;
//! DEVICE is cpu, wgpu or cuda as built)

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
    for (system, name) in [(ParticleSystem::Dw4, "dw4"), (ParticleSystem::Lj13, "lj13")] {
        let mut cfg = BgParticlesConfig::for_system(system);
        if let Some(n) = steps {
            *cfg.steps_mut() = n;
        }
        let r = run(&cfg, &device, &out.join(format!("bg_{name}")), false)?;
        println!(
            "{name}: NLL {:.4} ± {:.4}; ESS/N {:.4}; <u> MALA {:.3}, raw {:.3}, reweighted {:.3} ± {:.3}; energy-W2 raw {:.4}, reweighted {:.4}; files: {:?}",
            r.nll_held_out.value, r.nll_held_out.std_err, r.ess_fraction, r.energy_mcmc.value, r.energy_raw.value, r.energy_reweighted.value,
            r.energy_reweighted.std_err, r.energy_w2_raw, r.energy_w2_reweighted, r.files
        );
    }
    Ok(())
}
