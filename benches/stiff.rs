//! Criterion bench of B2–B4 (Robertson to 1e5, Van der Pol μ = 1000 to 3000,
//! Brusselator 2D N = 32; rtol 1e-6, atol 1e-8, BDF): physflow `sim` vs the same
//! problems written directly against diffsol, and vs the same problems written
//! once over a generic scalar (`sim::ClosureSystem`). Peers (scipy, diffrax):
//! `benches/compare/run_stiff.sh`. `cargo bench --bench stiff`.

#[path = "common/stiff.rs"]
mod stiff;

use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("stiff");
    group.sample_size(10);
    for (name, t1) in stiff::problems(false) {
        group.bench_function(format!("physflow {name}"), |b| b.iter(|| stiff::physflow(name, t1)));
        group.bench_function(format!("diffsol {name}"), |b| b.iter(|| stiff::raw_diffsol(name, t1)));
        group.bench_function(format!("closure {name}"), |b| b.iter(|| stiff::closure(name, t1)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
