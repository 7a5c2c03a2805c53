//! Navier–Stokes throughput: IF-RK4 steps per second of `sim::ns2d` on one core, one JSON line
//! per size for `benches/compare/run_ns2d.sh` (a readable line without `--json`).
//!
//! The problem is the one `benches/compare/ns2d.py` solves with numpy: `[0, 1)²`, `ν = 10⁻³`,
//! the FNO diagonal forcing `a = 0.1`, `ω₀ = sin(2πx) cos(6πy) + ½ cos(4πx + 1) sin(10πy)`,
//! fixed `Δt = 10⁻³`; the checksums (mean |ω|, ω at the origin) after the timed steps let the
//! two sides be compared value for value.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release --example bench_ns2d -- [--json] [--n 64] [--steps 1000] [--repeats 5]`

use std::time::Instant;

use physflow::sim::ns2d::{Ns2d, Ns2dConfig};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(|v| v.parse().unwrap_or_else(|_| panic!("{name} N"))).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let (n, steps, repeats) = (arg(&args, "--n", 64), arg(&args, "--steps", 1000), arg(&args, "--repeats", 5));
    let cfg = Ns2dConfig { n, ..Ns2dConfig::default() };
    let x = cfg.points();
    let tau = std::f64::consts::TAU;
    let w0: Vec<f64> = (0..n * n)
        .map(|p| (tau * x[p / n]).sin() * (3.0 * tau * x[p % n]).cos() + 0.5 * (2.0 * tau * x[p / n] + 1.0).cos() * (5.0 * tau * x[p % n]).sin())
        .collect();
    let mut ns = Ns2d::new(cfg).expect("valid settings");
    let mut run = || {
        ns.set_vorticity(&w0, 0.0).expect("finite field");
        let s = Instant::now();
        for _ in 0..steps {
            ns.step(1e-3).expect("stable step");
        }
        let ms = s.elapsed().as_secs_f64() * 1e3 / steps as f64;
        (ms, ns.vorticity())
    };
    run(); // warm-up
    let mut times: Vec<f64> = Vec::new();
    let mut w = Vec::new();
    for _ in 0..repeats {
        let (ms, ww) = run();
        times.push(ms);
        w = ww;
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let mean_abs = w.iter().map(|v| v.abs()).sum::<f64>() / w.len() as f64;
    if json {
        println!(
            "{{\"side\": \"physflow\", \"name\": \"ns2d-{n} if-rk4 step\", \"ms\": {median}, \"min_ms\": {}, \"steps_per_s\": {}, \"repeats\": {repeats}, \"steps\": {steps}, \"mean_abs_w\": {mean_abs}, \"w00\": {}}}",
            times[0],
            1e3 / median,
            w[0]
        );
    } else {
        println!(
            "physflow ns2d {n}x{n}: {median:.4} ms/step ({:.0} steps/s, min {:.4} ms), {steps} steps x {repeats}; mean|w| {mean_abs:.12}, w(0,0) {:.12}",
            1e3 / median,
            times[0],
            w[0]
        );
    }
}
