//! Study: physics-constrained generation of heat fields (see `physflow::studies::pde_fields`).
//! Same as `physflow pde heat`.
//!
//! `cargo run --release --example pde_heat [-- OUT_DIR [TRAIN_STEPS [DEVICE]]]` (defaults:
//! `out`, 2000, cpu); writes `OUT_DIR/pde_heat/`.

mod common;

fn main() -> physflow::Result<()> {
    common::main_for("pde heat")
}
