//! Study: physics-constrained generation of burgers fields (see `physflow::studies::pde_fields`).
//! Same as `physflow pde burgers`.
//!
//! `cargo run --release --example pde_burgers [-- OUT_DIR [TRAIN_STEPS]]` (defaults: `out/pde_burgers`, 2000)

use physflow::studies::pde_fields::{markdown, run, PdeProblem, PdeStudyConfig};

fn main() -> physflow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "out/pde_burgers".into());
    let mut cfg = PdeStudyConfig::for_problem(PdeProblem::Burgers);
    if let Some(steps) = args.next() {
        cfg.train.run.steps = steps.parse().map_err(|_| physflow::Error::InvalidArgument { name: "TRAIN_STEPS", reason: format!("not a count: {steps}") })?;
    }
    let report = run(&cfg, &burn::tensor::Device::flex(), std::path::Path::new(&out), false)?;
    print!("{}", markdown(&report));
    Ok(())
}
