//! Study: physics-constrained generation of heat fields (see `physflow::studies::pde_fields`).
//! Same as `physflow pde heat`.
//!
//! `cargo run --release --example pde_heat [-- OUT_DIR [TRAIN_STEPS]]` (defaults: `out/pde_heat`, 2000)

use physflow::studies::pde_fields::{markdown, run, PdeProblem, PdeStudyConfig};

fn main() -> physflow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "out/pde_heat".into());
    let mut cfg = PdeStudyConfig::for_problem(PdeProblem::Heat);
    if let Some(steps) = args.next() {
        cfg.train.run.steps = steps.parse().map_err(|_| physflow::Error::InvalidArgument { name: "TRAIN_STEPS", reason: format!("not a count: {steps}") })?;
    }
    let report = run(&cfg, &burn::tensor::Device::flex(), std::path::Path::new(&out), false)?;
    print!("{}", markdown(&report));
    Ok(())
}
