//! Study: physics-constrained generation of reaction-diffusion fields (see `physflow::studies::pde_fields`).
//! Same as `physflow pde reaction-diffusion`.
//!
//! `cargo run --release --example pde_reaction_diffusion [-- OUT_DIR [TRAIN_STEPS]]` (defaults: `out/pde_reaction_diffusion`, 2000)

use physflow::studies::pde_fields::{markdown, run, PdeProblem, PdeStudyConfig};

fn main() -> physflow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "out/pde_reaction_diffusion".into());
    let mut cfg = PdeStudyConfig::for_problem(PdeProblem::ReactionDiffusion);
    if let Some(steps) = args.next() {
        cfg.train.run.steps = steps.parse().map_err(|_| physflow::Error::InvalidArgument { name: "TRAIN_STEPS", reason: format!("not a count: {steps}") })?;
    }
    let report = run(&cfg, &burn::tensor::Device::flex(), std::path::Path::new(&out), false)?;
    print!("{}", markdown(&report));
    Ok(())
}
