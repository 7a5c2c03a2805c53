//! Criterion bench of the neural SDE (dim 4, batch 256, drift MLP 4→64→64→4, sigmoid diagonal
//! diffusion 4→64→4, 100 fixed steps, f32): one forward + backward per gradient path. Peer
//! comparison: `bash benches/compare/run_sde.sh` (see docs/benchmarks.md). Run single-threaded:
//! `RAYON_NUM_THREADS=1 cargo bench --bench sde`.

#[path = "common/sde.rs"]
#[allow(dead_code)] // from_json is for the example that loads the peers' problem
mod sde;

use burn::tensor::Device;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    let problem = sde::SdeBench::new(&device, 0);
    let mut group = c.benchmark_group("sde");
    group.sample_size(20);
    for (name, solver, gradient, path) in sde::configurations() {
        group.bench_function(name, |b| b.iter(|| problem.step(solver, gradient, path, 7)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
