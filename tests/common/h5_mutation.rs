//! Mutation testing of the HDF5 reader, shared by `tests/h5_mutation.rs` (a fixed number of
//! cases in CI) and `examples/h5_fuzz.rs` (as many as asked for): a valid file is damaged by a
//! seeded random mutation (a bit flip, bytes overwritten, a size field set huge, a truncation,
//! a block of bytes zeroed or duplicated), written to disk, and read in full. Every read must
//! return `Ok` or `Err`; a panic, an abort or an allocation far beyond the file's size is a bug.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use physflow::io::h5::{H5File, Node};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The system allocator, recording the largest single request since the last reset.
pub struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The largest single allocation since the last call (and resets it).
pub fn take_largest_allocation() -> usize {
    LARGEST.swap(0, Ordering::Relaxed)
}

/// One mutation of `bytes`, drawn from `rng`; returns its description.
pub fn mutate(bytes: &mut Vec<u8>, rng: &mut StdRng) -> String {
    let n = bytes.len();
    match rng.random_range(0..6u32) {
        0 => {
            let (at, bit) = (rng.random_range(0..n), rng.random_range(0..8u32));
            bytes[at] ^= 1 << bit;
            format!("flip bit {bit} of byte {at}")
        }
        1 => {
            let at = rng.random_range(0..n);
            let len = rng.random_range(1..=8usize).min(n - at);
            for b in &mut bytes[at..at + len] {
                *b = rng.random();
            }
            format!("overwrite {len} bytes at {at}")
        }
        2 => {
            // A length or address field set huge: 8 bytes little-endian, high bits set.
            let at = rng.random_range(0..n.saturating_sub(8).max(1));
            let v: u64 = rng.random::<u64>() | (1 << rng.random_range(20..63u32));
            let len = 8.min(n - at);
            bytes[at..at + len].copy_from_slice(&v.to_le_bytes()[..len]);
            format!("set 8 bytes at {at} to {v:#x}")
        }
        3 => {
            let len = rng.random_range(0..n);
            bytes.truncate(len);
            format!("truncate to {len} bytes")
        }
        4 => {
            let at = rng.random_range(0..n);
            let len = rng.random_range(1..=64usize).min(n - at);
            bytes[at..at + len].fill(0);
            format!("zero {len} bytes at {at}")
        }
        _ => {
            // A block repeated: shifts everything after it (offsets no longer line up).
            let at = rng.random_range(0..n);
            let len = rng.random_range(1..=32usize).min(n - at);
            let block: Vec<u8> = bytes[at..at + len].to_vec();
            bytes.splice(at..at, block);
            format!("duplicate {len} bytes at {at}")
        }
    }
}

/// Opens `path` and reads every dataset and attribute; any error is a detection.
pub fn read_everything(path: &Path) -> physflow::Result<usize> {
    let f = H5File::open(path)?;
    let mut values = 0;
    for node in f.tree()? {
        if let Node::Dataset { info, .. } = node {
            if info.dtype.is_numeric() {
                values += f.read_f32(&info.path)?.1.len();
            }
        }
    }
    Ok(values)
}

/// Outcome counts of a run.
#[derive(Debug, Default)]
pub struct Tally {
    /// Cases read without error (a harmless mutation, or one the format cannot see).
    pub read: usize,
    /// Cases that returned an error.
    pub refused: usize,
}

/// Runs `cases` mutations of `source` (seeded by `seed`) in `scratch`. Panics (with the case's
/// mutation) if a read panics or allocates more than `alloc_limit` bytes at once.
pub fn run(source: &Path, cases: usize, seed: u64, scratch: &Path, alloc_limit: usize) -> Tally {
    let good = std::fs::read(source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tally = Tally::default();
    for case in 0..cases {
        let mut bytes = good.clone();
        let what = mutate(&mut bytes, &mut rng);
        std::fs::write(scratch, &bytes).unwrap();
        if std::env::var_os("PHYSFLOW_FUZZ_VERBOSE").is_some() {
            eprintln!("{} case {case}: {what}", source.display());
        }
        take_largest_allocation();
        let r = std::panic::catch_unwind(|| read_everything(scratch));
        let largest = take_largest_allocation();
        match r {
            Ok(Ok(_)) => tally.read += 1,
            Ok(Err(_)) => tally.refused += 1,
            Err(_) => panic!("{} case {case} ({what}): the reader panicked", source.display()),
        }
        assert!(largest <= alloc_limit, "{} case {case} ({what}): one allocation of {largest} bytes (file: {} bytes)", source.display(), bytes.len());
    }
    tally
}
