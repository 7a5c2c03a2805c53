//! Benchmark B5 timed by hand, printing one JSON line per row for
//! `benches/compare/run_b5.sh` (or a readable table without `--json`).
//!
//! `RAYON_NUM_THREADS=1 cargo run --release --example bench_b5 -- --json [--repeats N] [--problem FILE]`
//! (`--problem`: the peers' exact weights and inputs, from `neural_ode.py --dump-problem`).

#[path = "../benches/common/b5.rs"]
mod b5;

use std::time::Instant;

use burn::tensor::Device;

fn median_ms(mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (xs[xs.len() / 2], xs[0])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let repeats: usize = args.iter().position(|a| a == "--repeats").and_then(|i| args.get(i + 1)).map(|v| v.parse().expect("--repeats N")).unwrap_or(20);
    let device = Device::flex();
    let problem = match args.iter().position(|a| a == "--problem").and_then(|i| args.get(i + 1)) {
        Some(path) => b5::B5::from_json(&device, path),
        None => b5::B5::new(&device, 0),
    };
    let mut rows = Vec::new();
    for (name, solver, gradient, burn_path) in b5::configurations() {
        let field = if burn_path { problem.mlp.burn_field() } else { problem.mlp.field() };
        let reps = if burn_path { repeats.min(5) } else { repeats };
        let mut times = Vec::new();
        let mut stats = None;
        for i in 0..reps + 2 {
            let start = Instant::now();
            let (_, fwd, bwd) = problem.step(&field, solver, gradient.clone());
            let ms = start.elapsed().as_secs_f64() * 1e3;
            if i >= 2 {
                times.push(ms);
            }
            stats = Some((fwd, bwd));
        }
        let (med, min) = median_ms(times);
        let (fwd, bwd) = stats.unwrap();
        rows.push(format!(
            "{{\"side\": \"physflow\", \"name\": \"{name}\", \"ms\": {med:.4}, \"min_ms\": {min:.4}, \"nfe\": {}, \"nfe_fwd\": {}, \"nfe_bwd\": {}, \"nvjp_bwd\": {}, \"steps\": {}, \"repeats\": {reps}}}",
            fwd.nfe + bwd.nfe,
            fwd.nfe,
            bwd.nfe,
            bwd.nvjp,
            fwd.steps
        ));
    }
    for (name, burn_path) in [("fused mlp forward x20", false), ("burn mlp forward x20", true)] {
        let field = if burn_path { problem.mlp.burn_field() } else { problem.mlp.field() };
        let mut times = Vec::new();
        for i in 0..(repeats * 10 + 5) {
            let start = Instant::now();
            problem.forward20(&field);
            if i >= 5 {
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        let (med, min) = median_ms(times);
        rows.push(format!(
            "{{\"side\": \"physflow\", \"name\": \"{name}\", \"ms\": {med:.4}, \"min_ms\": {min:.4}, \"nfe\": 20, \"repeats\": {}}}",
            repeats * 10
        ));
    }
    for r in rows {
        if json {
            println!("{r}");
        } else {
            let v: serde_json::Value = serde_json::from_str(&r).expect("rows are JSON written above");
            println!(
                "{:<28} {:>10.4} ms (min {:.4} ms)",
                v["name"].as_str().unwrap_or(""),
                v["ms"].as_f64().unwrap_or(f64::NAN),
                v["min_ms"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
}
