//! Benchmarks B2–B4 timed by hand: physflow `sim` (BDF), raw diffsol and physflow
//! with closure-written systems (`sim::ClosureSystem`), one
//! JSON line per row for `benches/compare/run_stiff.sh` (a readable table without `--json`).
//!
//! `RAYON_NUM_THREADS=1 cargo run --release --example bench_stiff -- --json [--repeats N] [--only SUBSTRING] [--small]`

#[path = "../benches/common/stiff.rs"]
mod stiff;

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let repeats: usize = args.iter().position(|a| a == "--repeats").and_then(|i| args.get(i + 1)).map(|v| v.parse().expect("--repeats N")).unwrap_or(10);
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let big = !args.iter().any(|a| a == "--small");
    for (name, t1) in stiff::problems(big) {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        for side in ["physflow", "diffsol", "closure"] {
            let run = || match side {
                "physflow" => stiff::physflow(name, t1),
                "diffsol" => stiff::raw_diffsol(name, t1),
                _ => stiff::closure(name, t1),
            };
            let (y, steps) = run(); // warm-up
            let reps = if name.starts_with("bruss2d-64") { repeats.min(3) } else { repeats };
            let mut ms: Vec<f64> = (0..reps)
                .map(|_| {
                    let s = Instant::now();
                    std::hint::black_box(run());
                    s.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            ms.sort_by(f64::total_cmp);
            let median = ms[ms.len() / 2];
            let extra = if name.starts_with("bruss") {
                let nn = y.len() / 2;
                format!("\"u_mean\": {}, \"v_mean\": {}", y[..nn].iter().sum::<f64>() / nn as f64, y[nn..].iter().sum::<f64>() / nn as f64)
            } else {
                format!("\"y_final\": {:?}", y)
            };
            if json {
                println!(
                    "{{\"side\": \"{side}\", \"name\": \"{name}\", \"ms\": {median}, \"min_ms\": {}, \"repeats\": {reps}, \"steps\": {steps}, {extra}}}",
                    ms[0]
                );
            } else {
                println!("{side:>9} {name:<11} {median:>10.2} ms (min {:.2}, {reps} runs), {steps} steps, {extra}", ms[0]);
            }
        }
    }
}
