//! Criterion bench B5: one forward + backward step of a neural ODE (MLP 2→64→64→2, batch 256,
//! Tsit5/Dopri5 at rtol = atol = 1e-6, f32) for each gradient strategy, the plain burn path for
//! comparison, and 20 MLP forward evaluations (fused vs burn). Peer comparison:
//! `bash benches/compare/run_b5.sh` (see docs/benchmarks.md). Run single-threaded:
//! `RAYON_NUM_THREADS=1 cargo bench --bench b5`.

#[path = "common/b5.rs"]
#[allow(dead_code)] // from_json is for the example that loads the peers' problem
mod b5;

use burn::tensor::Device;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    let problem = b5::B5::new(&device, 0);
    let mut group = c.benchmark_group("b5");
    group.sample_size(20);
    for (name, solver, gradient, burn_path) in b5::configurations() {
        let field = if burn_path { problem.mlp.burn_field() } else { problem.mlp.field() };
        let (_, fwd, bwd) = problem.step(&field, solver, gradient.clone());
        eprintln!("{name}: forward {} steps, {} evaluations; backward {} evaluations, {} VJPs", fwd.steps, fwd.nfe, bwd.nfe, bwd.nvjp);
        group.bench_function(name, |b| b.iter(|| problem.step(&field, solver, gradient.clone())));
    }
    let fused = problem.mlp.field();
    group.bench_function("fused mlp forward x20", |b| b.iter(|| problem.forward20(&fused)));
    let burn = problem.mlp.burn_field();
    group.bench_function("burn mlp forward x20", |b| b.iter(|| problem.forward20(&burn)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
