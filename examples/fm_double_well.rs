//! Study: a physical transport by flow matching — double-well samples at β = 0.3 carried to
//! β = 1, compared with the exact density (W₂, well populations, importance weights from the
//! flow's log-density). Same as `physflow fm double-well`.
//!
//! `cargo run --release --example fm_double_well [-- OUT_DIR [STEPS [DEVICE]]]` (defaults:
//! `out`, the study's steps, cpu; DEVICE is cpu, wgpu or cuda as built); writes
//! `OUT_DIR/fm_double_well/`.

mod common;

fn main() -> physflow::Result<()> {
    common::main_for("fm double-well")
}
