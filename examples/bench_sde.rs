//! The neural-SDE benchmark timed by hand, printing one JSON line per row for
//! `benches/compare/run_sde.sh` (or a readable table without `--json`).
//!
//! `RAYON_NUM_THREADS=1 cargo run --release --example bench_sde -- --json [--repeats N] [--problem FILE] [--only SUBSTRING]`
//! (`--problem`: the peers' exact weights and `y0`, from `sde.py --dump-problem`).

#[path = "../benches/common/sde.rs"]
mod sde;

use std::time::Instant;

use burn::tensor::Device;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let repeats: usize = args.iter().position(|a| a == "--repeats").and_then(|i| args.get(i + 1)).map(|v| v.parse().expect("--repeats N")).unwrap_or(20);
    let device = Device::flex();
    let problem = match args.iter().position(|a| a == "--problem").and_then(|i| args.get(i + 1)) {
        Some(path) => sde::SdeBench::from_json(&device, path),
        None => sde::SdeBench::new(&device, 0),
    };
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    for (name, solver, gradient, path) in sde::configurations() {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let mut loss = 0.0;
        let mut stats = Default::default();
        for k in 0..3 {
            (loss, stats) = problem.step(solver, gradient, path, k);
        }
        let mut times: Vec<f64> = (0..repeats)
            .map(|k| {
                let t0 = Instant::now();
                std::hint::black_box(problem.step(solver, gradient, path, 100 + k as u64));
                t0.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (median, min) = (times[times.len() / 2], times[0]);
        if json {
            println!(
                "{{\"side\": \"physflow\", \"name\": \"{name}\", \"ms\": {median:.4}, \"min_ms\": {min:.4}, \"repeats\": {repeats}, \"loss\": {loss:.6}, \"nvjp_bwd\": {}}}",
                stats.nvjp
            );
        } else {
            println!("{name:<34} {median:9.3} ms (min {min:.3})  loss {loss:.5}");
        }
    }
}
