//! Mutation fuzzing of the HDF5 reader for as long as asked: the CI test
//! (`tests/h5_mutation.rs`) runs 400 cases per file; this runs `--cases N` per file with
//! `--seed S`, on the bundled fixtures and on any files given.
//!
//! `cargo run --release --example h5_fuzz -- --cases 100000 [--seed 7] [FILE.h5 ...]`

#[path = "../tests/common/h5_mutation.rs"]
mod mutation;

use std::path::PathBuf;

#[global_allocator]
static ALLOC: mutation::Tracking = mutation::Tracking;

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut cases, mut seed, mut files) = (10_000usize, 0u64, Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cases" => cases = args.next().and_then(|v| v.parse().ok()).expect("--cases N"),
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).expect("--seed S"),
            f => files.push(PathBuf::from(f)),
        }
    }
    if files.is_empty() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/h5");
        files = ["pdebench_1d.h5", "pdebench_grouped.h5", "pdebench_2d_cfd.h5", "scalar_f64.h5"].iter().map(|n| dir.join(n)).collect();
    }
    let scratch = std::env::temp_dir().join(format!("physflow-h5-fuzz-{}.h5", std::process::id()));
    for (k, f) in files.iter().enumerate() {
        let start = std::time::Instant::now();
        let t = mutation::run(f, cases, seed.wrapping_add(k as u64), &scratch, 64 << 20);
        println!("{}: {cases} cases in {:.1} s: {} read, {} refused, no panic", f.display(), start.elapsed().as_secs_f64(), t.read, t.refused);
    }
    let _ = std::fs::remove_file(&scratch);
}
