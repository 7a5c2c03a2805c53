//! Study: 8 Gaussians → two moons by flow matching — W₂ to held-out data vs NFE for the
//! independent and exact-OT couplings and after one reflow, with trajectory figures.
//! Same as `physflow fm moons`.
//!
//! `cargo run --release --example fm_moons [-- OUT_DIR [STEPS [DEVICE]]]` (defaults: `out`, the
//! study's steps, cpu; DEVICE is cpu, wgpu or cuda as built); writes `OUT_DIR/fm_moons/`.

mod common;

fn main() -> physflow::Result<()> {
    common::main_for("fm moons")
}
