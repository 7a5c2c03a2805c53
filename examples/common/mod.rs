//! What the study examples share: run one row of the study table (`physflow::studies::TABLE`)
//! from `[OUT_DIR [STEPS [DEVICE]]]`, as the `physflow` command would, and print its numbers
//! and files.

use std::path::PathBuf;

use physflow::device::Backend;
use physflow::studies::{find, Context, Overrides};
use physflow::{Error, Result};

/// The `[OUT_DIR [STEPS [DEVICE]]]` arguments (defaults `out`, the study's steps, `cpu`), then
/// whatever follows them.
pub fn args() -> Result<(PathBuf, Option<usize>, Backend, Vec<String>)> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "out".into()));
    let steps = match args.next() {
        Some(s) => Some(s.parse().map_err(|_| Error::InvalidArgument { name: "STEPS", reason: format!("not a count: {s}") })?),
        None => None,
    };
    let device: Backend = args.next().as_deref().unwrap_or("cpu").parse()?;
    Ok((out, steps, device, args.collect()))
}

/// Runs the study `command` (`"fm moons"`) with `o`'s flags into `out` on `device`.
pub fn run(command: &str, out: &std::path::Path, device: Backend, o: &Overrides) -> Result<()> {
    let make = || device.device();
    let ctx = Context { out, quiet: false, resume: false, fresh: false, device: &make };
    let outcome = (find(command)?.run)(o, &ctx)?;
    println!("{}", outcome.summary.trim_end());
    for f in &outcome.files {
        println!("wrote {f}");
    }
    Ok(())
}

/// `run` with the default arguments: `[OUT_DIR [STEPS [DEVICE]]]`.
#[allow(dead_code)] // each example uses one of `run` and `main_for`
pub fn main_for(command: &str) -> Result<()> {
    let (out, steps, device, _) = args()?;
    run(command, &out, device, &Overrides { steps, ..Overrides::default() })
}
