//! Runs one B5 configuration in a loop, for profilers:
//! `perf record -g target/release/examples/profile_b5 direct 200`.

#[path = "../benches/common/b5.rs"]
#[allow(dead_code)]
mod b5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("direct tsit5").to_string();
    let n: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(100);
    let device = burn::tensor::Device::flex();
    let problem = b5::B5::new(&device, 0);
    let (name, solver, gradient, burn_path) = b5::configurations().into_iter().find(|c| c.0 == which).expect("configuration name, e.g. \"direct tsit5\"");
    let field = if burn_path { problem.mlp.burn_field() } else { problem.mlp.field() };
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(problem.step(&field, solver, gradient.clone()));
    }
    println!("{name}: {:.3} ms per step", start.elapsed().as_secs_f64() * 1e3 / n as f64);
}
