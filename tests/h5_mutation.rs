//! The HDF5 reader under random damage, a fixed number of cases per file: never a panic or a
//! stack overflow, never one allocation beyond 64 MiB (the files are a few kB). Found and fixed
//! with it: a group linked to its ancestor made `H5File::tree` recurse until the stack overflowed,
//! and a damaged dataspace made the reader ask for 36 PB (now refused against the file's size).
//! Truncations and flips of checksummed bytes are checked exhaustively in tests/io_h5.rs. Longer runs: `cargo run --release --example h5_fuzz -- --cases 100000`.

#[path = "common/h5_mutation.rs"]
mod mutation;

use std::path::{Path, PathBuf};

use physflow::io::h5::{DatasetOptions, H5Tree};

#[global_allocator]
static ALLOC: mutation::Tracking = mutation::Tracking;

const CASES: usize = 400;
const ALLOC_LIMIT: usize = 64 << 20;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("physflow-h5-mutation-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A physflow-written file: chunked, shuffled, deflated, Fletcher-32, attributes.
fn ours() -> PathBuf {
    let p = scratch("ours.h5");
    let mut tree = H5Tree::new();
    let opts = DatasetOptions { fletcher32: true, ..DatasetOptions::samples() };
    tree.add_f32("tensor", &[6, 8, 8], (0..384).map(|i| (i as f32 * 0.1).sin()).collect(), &opts).unwrap();
    tree.add_f32("x-coordinate", &[8], (0..8).map(|i| i as f32 / 8.0).collect(), &DatasetOptions::default()).unwrap();
    tree.set_attr("/", "system", physflow::io::h5::Attr::Str("heat1d".into())).unwrap();
    tree.write(&p).unwrap();
    p
}

#[test]
fn damaged_files_are_errors_or_harmless_never_panics() {
    let fixture = |n: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("data/h5").join(n);
    let sources = [ours(), fixture("pdebench_1d.h5"), fixture("pdebench_grouped.h5"), fixture("scalar_f64.h5")];
    for (k, src) in sources.iter().enumerate() {
        let t = mutation::run(src, CASES, 1000 + k as u64, &scratch("mutated.h5"), ALLOC_LIMIT);
        eprintln!("{}: {} read, {} refused", src.display(), t.read, t.refused);
        // Reads that succeed are damage the format cannot see (padding, unchecksummed raw data
        // of the h5py files, attribute strings); what must never happen is checked in `run`.
        assert_eq!(t.read + t.refused, CASES);
        assert!(t.refused > 0, "{}: no mutation refused", src.display());
    }
    let _ = std::fs::remove_dir_all(scratch("").parent().unwrap());
}
