//! Study: physics-constrained generation of Burgers fields (see `physflow::studies::pde_fields`).
//! Same as `physflow pde burgers`.
//!
//! `cargo run --release --example pde_burgers [-- OUT_DIR [TRAIN_STEPS [DEVICE]]]` (defaults:
//! `out`, 2000, cpu); writes `OUT_DIR/pde_burgers/`.

mod common;

fn main() -> physflow::Result<()> {
    common::main_for("pde burgers")
}
