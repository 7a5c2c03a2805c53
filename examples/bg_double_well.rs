//! Study: a Boltzmann generator for the 2D double well trained by energy only; ESS/N, the free
//! energy difference between the wells and log Z against quadrature. Same as
//! `physflow bg double-well`.
//!
//! `cargo run --release --example bg_double_well [-- OUT_DIR [STEPS [DEVICE]]]` (defaults:
//! `out`, the study's 3000 steps, cpu; DEVICE is cpu, wgpu or cuda as built); writes
//! `OUT_DIR/bg_double_well/`.

mod common;

fn main() -> physflow::Result<()> {
    common::main_for("bg double-well")
}
