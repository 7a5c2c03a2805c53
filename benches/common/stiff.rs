//! Benchmarks B2–B4 (stiff solves at rtol 1e-6, atol 1e-8, output at the final
//! time only): physflow's `sim` against the same problems written directly
//! against diffsol ("raw diffsol": closures, BDF, same matrix and linear-solver
//! types), and physflow with the problems written once over a generic scalar
//! ("closure": `sim::ClosureSystem`, no derivative written). Shared by `benches/stiff.rs` (criterion) and `examples/bench_stiff.rs`
//! (JSON lines for `benches/compare/run_stiff.sh`). Problem definitions:
//! `benches/compare/README.md`.

#![allow(dead_code)]

#[path = "closures.rs"]
mod closures;

use diffsol::{FaerSparseLU, FaerSparseMat, NalgebraLU, NalgebraMat, OdeBuilder, OdeSolverMethod};
use physflow::sim::systems::{Brusselator2d, Robertson, VanDerPol};
use physflow::sim::{self, SimOptions, System};

pub const RTOL: f64 = 1e-6;
pub const ATOL: f64 = 1e-8;

/// (name, final time) of every problem.
pub fn problems(big: bool) -> Vec<(&'static str, f64)> {
    let mut v = vec![("robertson", 1e5), ("vdp1000", 3000.0), ("bruss2d-32", 11.5)];
    if big {
        v.push(("bruss2d-64", 11.5));
    }
    v
}

fn system(name: &str) -> Box<dyn System> {
    match name {
        "robertson" => Box::new(Robertson::default()),
        "vdp1000" => Box::new(VanDerPol::default()),
        "bruss2d-32" => Box::new(Brusselator2d::new(32)),
        "bruss2d-64" => Box::new(Brusselator2d::new(64)),
        _ => panic!("unknown problem {name}"),
    }
}

/// physflow: `sim::simulate` with BDF (dense Jacobian for the ODEs, sparse for the Brusselator).
/// Returns the final state and the step count.
pub fn physflow(name: &str, t1: f64) -> (Vec<f64>, usize) {
    let sys = system(name);
    let opts = SimOptions { rtol: RTOL, atol: ATOL, ..SimOptions::default() };
    let traj = sim::simulate(sys.as_ref(), &[t1], &opts).expect("solve");
    (traj.states.row(0).to_vec(), traj.stats.steps)
}

/// physflow with the problems written once over a generic scalar
/// (`sim::ClosureSystem`, every derivative derived, the pattern traced); same
/// options as [`physflow`].
pub fn closure(name: &str, t1: f64) -> (Vec<f64>, usize) {
    let sys: Box<dyn System> = match name {
        "robertson" => Box::new(closures::robertson()),
        "vdp1000" => Box::new(closures::van_der_pol(1000.0)),
        "bruss2d-32" => Box::new(closures::brusselator(32)),
        "bruss2d-64" => Box::new(closures::brusselator(64)),
        _ => panic!("unknown problem {name}"),
    };
    let opts = SimOptions { rtol: RTOL, atol: ATOL, ..SimOptions::default() };
    let traj = sim::simulate(sys.as_ref(), &[t1], &opts).expect("solve");
    (traj.states.row(0).to_vec(), traj.stats.steps)
}

/// The same problems written directly against diffsol.
pub fn raw_diffsol(name: &str, t1: f64) -> (Vec<f64>, usize) {
    match name {
        "robertson" => {
            let problem = OdeBuilder::<NalgebraMat<f64>>::new()
                .rtol(RTOL)
                .atol([ATOL])
                .p([0.04, 3.0e7, 1.0e4])
                .rhs_implicit(
                    |x: &[f64], p: &[f64], _t: f64, y: &mut [f64]| {
                        y[0] = -p[0] * x[0] + p[2] * x[1] * x[2];
                        y[1] = p[0] * x[0] - p[1] * x[1] * x[1] - p[2] * x[1] * x[2];
                        y[2] = p[1] * x[1] * x[1];
                    },
                    |x: &[f64], p: &[f64], _t: f64, v: &[f64], y: &mut [f64]| {
                        y[0] = -p[0] * v[0] + p[2] * (v[1] * x[2] + x[1] * v[2]);
                        y[1] = p[0] * v[0] - 2.0 * p[1] * x[1] * v[1] - p[2] * (v[1] * x[2] + x[1] * v[2]);
                        y[2] = 2.0 * p[1] * x[1] * v[1];
                    },
                )
                .init(|_p: &[f64], _t: f64, y: &mut [f64]| y.copy_from_slice(&[1.0, 0.0, 0.0]), 3)
                .build()
                .unwrap();
            let mut s = problem.bdf::<NalgebraLU<f64>>().unwrap();
            let (ys, _) = s.solve_dense(&[t1]).unwrap();
            ((0..3).map(|i| ys[(i, 0)]).collect(), s.get_statistics().number_of_steps)
        }
        "vdp1000" => {
            let problem = OdeBuilder::<NalgebraMat<f64>>::new()
                .rtol(RTOL)
                .atol([ATOL])
                .p([1000.0])
                .rhs_implicit(
                    |x: &[f64], p: &[f64], _t: f64, y: &mut [f64]| {
                        y[0] = x[1];
                        y[1] = p[0] * (1.0 - x[0] * x[0]) * x[1] - x[0];
                    },
                    |x: &[f64], p: &[f64], _t: f64, v: &[f64], y: &mut [f64]| {
                        y[0] = v[1];
                        y[1] = (-2.0 * p[0] * x[0] * x[1] - 1.0) * v[0] + p[0] * (1.0 - x[0] * x[0]) * v[1];
                    },
                )
                .init(|_p: &[f64], _t: f64, y: &mut [f64]| y.copy_from_slice(&[2.0, 0.0]), 2)
                .build()
                .unwrap();
            let mut s = problem.bdf::<NalgebraLU<f64>>().unwrap();
            let (ys, _) = s.solve_dense(&[t1]).unwrap();
            ((0..2).map(|i| ys[(i, 0)]).collect(), s.get_statistics().number_of_steps)
        }
        _ => {
            let n: usize = name.trim_start_matches("bruss2d-").parse().unwrap();
            let nn = n * n;
            let h2 = (n * n) as f64;
            // Periodic 5-point Laplacian of one field, added with weight `w`.
            let lap = move |u: &[f64], w: f64, out: &mut [f64]| {
                for i in 0..n {
                    for j in 0..n {
                        let c = u[i * n + j];
                        let s = u[((i + 1) % n) * n + j] + u[((i + n - 1) % n) * n + j] + u[i * n + (j + 1) % n] + u[i * n + (j + n - 1) % n] - 4.0 * c;
                        out[i * n + j] += w * h2 * s;
                    }
                }
            };
            let problem = OdeBuilder::<FaerSparseMat<f64>>::new()
                .rtol(RTOL)
                .atol([ATOL])
                .p([1.0, 3.4, 0.1])
                .rhs_implicit(
                    move |x: &[f64], p: &[f64], _t: f64, y: &mut [f64]| {
                        let (u, v) = x.split_at(nn);
                        for k in 0..nn {
                            let uuv = u[k] * u[k] * v[k];
                            y[k] = p[0] + uuv - (p[1] + 1.0) * u[k];
                            y[nn + k] = p[1] * u[k] - uuv;
                        }
                        let (yu, yv) = y.split_at_mut(nn);
                        lap(u, p[2], yu);
                        lap(v, p[2], yv);
                    },
                    move |x: &[f64], p: &[f64], _t: f64, w: &[f64], y: &mut [f64]| {
                        let (u, v) = x.split_at(nn);
                        let (wu, wv) = w.split_at(nn);
                        for k in 0..nn {
                            let (uv2, uu) = (2.0 * u[k] * v[k], u[k] * u[k]);
                            y[k] = (uv2 - p[1] - 1.0) * wu[k] + uu * wv[k];
                            y[nn + k] = (p[1] - uv2) * wu[k] - uu * wv[k];
                        }
                        let (yu, yv) = y.split_at_mut(nn);
                        lap(wu, p[2], yu);
                        lap(wv, p[2], yv);
                    },
                )
                .init(
                    move |_p: &[f64], _t: f64, y: &mut [f64]| {
                        for i in 0..n {
                            for j in 0..n {
                                let (x, yy) = (i as f64 / n as f64, j as f64 / n as f64);
                                y[i * n + j] = 22.0 * yy * (1.0 - yy).powf(1.5);
                                y[nn + i * n + j] = 27.0 * x * (1.0 - x).powf(1.5);
                            }
                        }
                    },
                    2 * nn,
                )
                .build()
                .unwrap();
            let mut s = problem.bdf::<FaerSparseLU<f64>>().unwrap();
            let (ys, _) = s.solve_dense(&[t1]).unwrap();
            ((0..2 * nn).map(|i| ys[(i, 0)]).collect(), s.get_statistics().number_of_steps)
        }
    }
}
