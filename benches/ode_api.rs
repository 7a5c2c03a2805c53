//! Criterion bench of the `ode` ndarray API against the tensor API for batch 1 (the target
//! of the simulation-codes issue: the ndarray call adds ≤ 5 %). Van der Pol (μ = 1, written
//! once as a `sim::ClosureSystem`) over `[0, 10]`, Tsit5 at rtol = atol = 1e-8:
//! - `tensor`: `ode::solve` on `SystemField`, y0 as a tensor, outputs read back to the host;
//! - `ndarray`: `ode::solve_system` with an `ArrayView2` in and an `Array3` out (same field);
//! - `tensor closure` / `ndarray closure`: the same problem written as a burn-tensor closure
//!   (`FnField`) and as a plain row closure (`solve_array`), what each API asks a user to write.
//!
//! Run: `RAYON_NUM_THREADS=1 cargo bench --bench ode_api`.

#[path = "common/closures.rs"]
mod closures;

use burn::tensor::{DType, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::array;
use physflow::host::{solution_array, tensor_from_array2};
use physflow::ode::{self, FnField, Options, Solver, SystemField, Time};

fn bench(c: &mut Criterion) {
    let vdp = closures::van_der_pol(1.0);
    let opts = Options::adaptive(Solver::Tsit5, 1e-8, 1e-8);
    let times: Vec<f64> = (0..=20).map(|k| 0.5 * k as f64).collect();
    let y0 = array![[2.0, 0.0]];
    let device = physflow::device::cpu_f64().unwrap();
    let mut group = c.benchmark_group("ode_api");
    group.sample_size(30);
    group.bench_function("tensor", |b| {
        b.iter(|| {
            let field = SystemField::new(&vdp).unwrap();
            let yt = tensor_from_array2(&y0.view(), &device, DType::F64);
            let sol = ode::solve(&field, yt, &times, &opts).unwrap();
            solution_array(&sol.ys).unwrap()
        })
    });
    group.bench_function("ndarray", |b| b.iter(|| ode::solve_system(&vdp, y0.view(), &times, &opts).unwrap().ys));
    let field = FnField::new(|_t: &Time, y: Tensor<2>| {
        let x = y.clone().narrow(1, 0, 1);
        let v = y.narrow(1, 1, 1);
        let a = (x.clone().square().neg().add_scalar(1.0)) * v.clone() - x;
        Tensor::cat(vec![v, a], 1)
    });
    group.bench_function("tensor closure", |b| {
        b.iter(|| {
            let yt = tensor_from_array2(&y0.view(), &device, DType::F64);
            let sol = ode::solve(&field, yt, &times, &opts).unwrap();
            solution_array(&sol.ys).unwrap()
        })
    });
    group.bench_function("ndarray closure", |b| {
        b.iter(|| {
            ode::solve_array(
                |_t, y, mut dy| {
                    dy[0] = y[1];
                    dy[1] = (1.0 - y[0] * y[0]) * y[1] - y[0];
                },
                y0.view(),
                &times,
                &opts,
            )
            .unwrap()
            .ys
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
