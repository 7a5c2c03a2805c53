//! HDF5 read throughput, physflow side of `benches/compare/run_h5.sh`: the same three
//! cases as `benches/compare/h5.py` on the files it makes (`h5.py make DIR`):
//! - "full read": open `big.h5` (`tensor` [2000, 64, 64] f32, gzip, one sample per
//!   chunk) and read it whole;
//! - "random access 500": open it once and read the 500 samples listed in
//!   `random_indices.json`, one at a time;
//! - "shards epoch b32": one shuffled epoch of the 8-shard copy through
//!   [`physflow::io::loader::Loader`] in batches of 32 (read ahead on its thread).
//!
//! `cargo run --release --example bench_h5 -- --data DIR [--json] [--repeats R] [--backend pure|c]`
//!
//! One untimed warm-up, then R timed repeats; JSON lines carry the median and
//! minimum milliseconds, MB/s of decompressed data and a float64 checksum of what
//! was read (it must equal h5py's).

use std::path::PathBuf;
use std::time::Instant;

use physflow::io::h5::{H5Backend, H5File};
use physflow::io::loader::{DataFiles, Loader, LoaderConfig};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn checksum(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let repeats: usize = arg(&args, "--repeats").map(|v| v.parse().expect("--repeats N")).unwrap_or(10);
    let data = PathBuf::from(arg(&args, "--data").expect("--data DIR (made by `benches/compare/h5.py make DIR`)"));
    let backend = H5Backend::parse(&arg(&args, "--backend").unwrap_or_else(|| "pure".into())).expect("--backend pure|c");
    let big = data.join("big.h5");
    let idx: Vec<usize> =
        serde_json::from_str(&std::fs::read_to_string(data.join("random_indices.json")).expect("random_indices.json (rerun h5.py make)")).expect("a JSON list");
    let sample_bytes = 64 * 64 * 4;

    let full = || {
        let f = H5File::open_with(&big, backend).unwrap();
        let (_, v) = f.read_f32("tensor").unwrap();
        (v.len() * 4, checksum(&v))
    };
    let random = || {
        let f = H5File::open_with(&big, backend).unwrap();
        let mut sum = 0.0;
        for &i in &idx {
            sum += checksum(&f.read_f32_rows("tensor", i, 1).unwrap().1);
        }
        (idx.len() * sample_bytes, sum)
    };
    let epoch = || {
        let src = DataFiles::open(&data.join("shards")).unwrap();
        let loader = Loader::new(src, LoaderConfig { batch_size: 32, shuffle: true, seed: 2, ..Default::default() }).unwrap();
        let mut sum = 0.0;
        let mut bytes = 0;
        for b in loader.epoch(0) {
            let b = b.unwrap();
            bytes += b.data.len() * 4;
            sum += checksum(&b.data);
        }
        (bytes, sum)
    };
    let cases: [(&str, &dyn Fn() -> (usize, f64)); 3] = [("full read", &full), ("random access 500", &random), ("shards epoch b32", &epoch)];
    for (name, run) in cases {
        let (bytes, sum) = run();
        let mut ms: Vec<f64> = (0..repeats)
            .map(|_| {
                let s = Instant::now();
                std::hint::black_box(run());
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let median = ms[ms.len() / 2];
        let mbs = bytes as f64 / (median / 1e3) / 1e6;
        if json {
            println!(
                "{{\"side\": \"physflow\", \"name\": \"{name}\", \"ms\": {median}, \"min_ms\": {}, \"repeats\": {repeats}, \"mb_per_s\": {mbs}, \"bytes\": {bytes}, \"checksum\": {sum}, \"backend\": \"{backend:?}\"}}",
                ms[0]
            );
        } else {
            println!("{name:<20} {median:>9.1} ms (min {:.1}, {repeats} runs) {mbs:>8.1} MB/s  checksum {sum:.12}", ms[0]);
        }
    }
}
