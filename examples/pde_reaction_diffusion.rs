//! Study: physics-constrained generation of reaction–diffusion fields (see
//! `physflow::studies::pde_fields`). Same as `physflow pde reaction-diffusion`.
//!
//! `cargo run --release --example pde_reaction_diffusion [-- OUT_DIR [TRAIN_STEPS [DEVICE]]]`
//! (defaults: `out`, 2000, cpu); writes `OUT_DIR/pde_reaction_diffusion/`.

mod common;

fn main() -> physflow::Result<()> {
    common::main_for("pde reaction-diffusion")
}
