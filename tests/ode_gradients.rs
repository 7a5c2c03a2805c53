//! The three gradient strategies against each other and against finite differences,
//! on a small time-dependent tanh MLP vector field (f64, CPU).

use burn::tensor::{Tensor, TensorData};
use physflow::device::cpu_f64;
use physflow::host::ToHost;
use physflow::nn::{Mlp, MlpConfig};
use physflow::ode::{self, AdjointMode, AdjointOptions, Gradient, Options, Solver, VectorField};

const TIMES: [f64; 4] = [0.0, 0.3, 0.7, 1.0];

fn y0_and_weights() -> (Tensor<2>, Vec<Tensor<2>>) {
    let device = cpu_f64().unwrap();
    // Fixed inputs; values are arbitrary but deterministic.
    let y0: Vec<f64> = (0..6).map(|i| ((i as f64) * 0.77).sin()).collect();
    let y0 = Tensor::<2>::from_data(TensorData::new(y0, [3, 2]), &device);
    let w = (0..TIMES.len())
        .map(|k| {
            let v: Vec<f64> = (0..6).map(|i| ((i * 7 + k * 3) as f64 * 0.31).cos()).collect();
            Tensor::<2>::from_data(TensorData::new(v, [3, 2]), &device)
        })
        .collect();
    (y0, w)
}

fn net() -> Mlp {
    MlpConfig::new(vec![2, 16, 16, 2]).with_time().init(7, &cpu_f64().unwrap()).unwrap()
}

/// L = Σ_k <w_k, y(t_k)>, so ∂L/∂y(t_k) = w_k.
fn loss(sol: &ode::Solution<2>, w: &[Tensor<2>]) -> f64 {
    sol.ys.iter().zip(w).map(|(y, w)| (y.clone() * w.clone()).sum().into_scalar::<f64>()).sum()
}

fn to_vec(t: &Tensor<2>) -> Vec<f64> {
    t.to_vec_as::<f64>()
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den.max(1e-300)
}

fn grads(mlp: &Mlp, opts: &Options, gradient: Gradient) -> (Vec<f64>, Vec<f64>) {
    let (y0, w) = y0_and_weights();
    let field = mlp.field();
    let (_, tape) = ode::solve_for_grad(&field, y0, &TIMES, opts, gradient).unwrap();
    let g = tape.backward(&w).unwrap();
    (to_vec(&g.y0), g.params.to_flat())
}

fn loss_at(mlp: &Mlp, y0: Tensor<2>, opts: &Options) -> f64 {
    let (_, w) = y0_and_weights();
    loss(&ode::solve(&mlp.field(), y0, &TIMES, opts).unwrap(), &w)
}

/// Central differences of the loss w.r.t. `y0` and a spread of parameters.
fn finite_differences(mlp: &Mlp, opts: &Options, param_idx: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let (y0, _) = y0_and_weights();
    let base = to_vec(&y0);
    let device = cpu_f64().unwrap();
    let eps = 1e-6;
    let gy: Vec<f64> = (0..base.len())
        .map(|i| {
            let mut p = base.clone();
            p[i] += eps;
            let lp = loss_at(mlp, Tensor::<2>::from_data(TensorData::new(p.clone(), [3, 2]), &device), opts);
            p[i] -= 2.0 * eps;
            let lm = loss_at(mlp, Tensor::<2>::from_data(TensorData::new(p, [3, 2]), &device), opts);
            (lp - lm) / (2.0 * eps)
        })
        .collect();
    let flat = mlp.flat_params();
    let gp: Vec<f64> = param_idx
        .iter()
        .map(|&i| {
            let mut p = flat.clone();
            p[i] += eps;
            let lp = loss_at(&mlp.with_flat_params(&p).unwrap(), y0.clone(), opts);
            p[i] -= 2.0 * eps;
            let lm = loss_at(&mlp.with_flat_params(&p).unwrap(), y0.clone(), opts);
            (lp - lm) / (2.0 * eps)
        })
        .collect();
    (gy, gp)
}

fn param_sample(n: usize) -> Vec<usize> {
    (0..n).step_by(n / 23 + 1).collect()
}

/// Fixed-step RK4: the discrete adjoint is the exact gradient of the discretisation, so it
/// matches central differences (step 1e-6, truncation O(1e-12)) to about 1e-8 relative.
#[test]
fn direct_matches_finite_differences_fixed_step() {
    let mlp = net();
    let opts = Options::fixed(Solver::Rk4, 0.05);
    let (gy, gp) = grads(&mlp, &opts, Gradient::Direct);
    let idx = param_sample(gp.len());
    let (fy, fp) = finite_differences(&mlp, &opts, &idx);
    assert!(rel_err(&gy, &fy) < 1e-7, "y0: {gy:?} vs {fy:?}");
    let gp_s: Vec<f64> = idx.iter().map(|&i| gp[i]).collect();
    assert!(rel_err(&gp_s, &fp) < 1e-7, "params: {gp_s:?} vs {fp:?}");
}

/// Adaptive Tsit5 at tight tolerance: all strategies agree with central differences of the
/// adaptive solve. The step sequence is frozen by the discrete gradient but not by the
/// differences, which carry O(tol/eps) = 1e-6 relative noise; hence 1e-5.
#[test]
fn all_strategies_match_finite_differences_adaptive() {
    let mlp = net();
    let opts = Options::adaptive(Solver::Tsit5, 1e-12, 1e-12);
    let idx = param_sample(mlp.flat_params().len());
    let (fy, fp) = finite_differences(&mlp, &opts, &idx);
    for gradient in [
        Gradient::Direct,
        Gradient::Checkpointed { checkpoints: 4 },
        Gradient::Adjoint(AdjointOptions::default()),
        Gradient::Adjoint(AdjointOptions { mode: AdjointMode::Interpolated, ..AdjointOptions::default() }),
    ] {
        let (gy, gp) = grads(&mlp, &opts, gradient.clone());
        let gp_s: Vec<f64> = idx.iter().map(|&i| gp[i]).collect();
        assert!(rel_err(&gy, &fy) < 1e-5, "{gradient:?} y0: {}", rel_err(&gy, &fy));
        assert!(rel_err(&gp_s, &fp) < 1e-5, "{gradient:?} params: {}", rel_err(&gp_s, &fp));
    }
}

/// Direct and Checkpointed compute the same numbers (same stages, recomputed), for every
/// solver; the continuous adjoint agrees with them to 1e-6 at tight tolerance.
#[test]
fn strategies_agree_with_each_other() {
    let mlp = net();
    for solver in Solver::ALL {
        let opts = if solver.is_adaptive() {
            Options::adaptive(solver, 1e-11, 1e-11)
        } else {
            Options::fixed(solver, if solver.tableau().order >= 4 { 0.01 } else { 0.0005 })
        };
        let (dy, dp) = grads(&mlp, &opts, Gradient::Direct);
        for n in [2, 3, 7] {
            let (cy, cp) = grads(&mlp, &opts, Gradient::Checkpointed { checkpoints: n });
            assert!(rel_err(&cy, &dy) < 1e-12, "{} checkpoints={n} y0", solver.tableau().name);
            assert!(rel_err(&cp, &dp) < 1e-12, "{} checkpoints={n} params", solver.tableau().name);
        }
        if solver.is_adaptive() && solver != Solver::Bosh3 {
            for mode in [AdjointMode::Backsolve, AdjointMode::Interpolated] {
                let (ay, ap) = grads(&mlp, &opts, Gradient::Adjoint(AdjointOptions { mode, ..AdjointOptions::default() }));
                assert!(rel_err(&ay, &dy) < 1e-6, "{} {mode:?} y0: {}", solver.tableau().name, rel_err(&ay, &dy));
                assert!(rel_err(&ap, &dp) < 1e-6, "{} {mode:?} params: {}", solver.tableau().name, rel_err(&ap, &dp));
            }
        }
    }
}

/// The fused CPU path and the burn autodiff path give the same field, VJP and gradients (f64).
#[test]
fn fused_and_burn_paths_agree() {
    let mlp = net();
    let (y0, w) = y0_and_weights();
    let fused = mlp.field();
    let burn = mlp.burn_field();
    let t = ode::Time::Shared(0.4);
    let a = to_vec(&fused.eval(&t, &y0));
    let b = to_vec(&burn.eval(&t, &y0));
    assert!(rel_err(&a, &b) < 1e-13, "eval");
    let mut pf = fused.zero_params();
    let mut pb = burn.zero_params();
    let vf = to_vec(&fused.vjp(&t, &y0, &w[1], Some((&mut pf, 1.0))));
    let vb = to_vec(&burn.vjp(&t, &y0, &w[1], Some((&mut pb, 1.0))));
    assert!(rel_err(&vf, &vb) < 1e-13, "vjp y");
    assert!(rel_err(&pf.to_flat(), &pb.to_flat()) < 1e-13, "vjp params {:?} vs {:?}", &pf.to_flat()[..20], &pb.to_flat()[..20]);
    let opts = Options::adaptive(Solver::Dopri5, 1e-8, 1e-8);
    let (_, tf) = ode::solve_for_grad(&fused, y0.clone(), &TIMES, &opts, Gradient::Direct).unwrap();
    let (_, tb) = ode::solve_for_grad(&burn, y0, &TIMES, &opts, Gradient::Direct).unwrap();
    let gf = tf.backward(&w).unwrap();
    let gb = tb.backward(&w).unwrap();
    assert!(rel_err(&gf.params.to_flat(), &gb.params.to_flat()) < 1e-11);
    assert!(rel_err(&to_vec(&gf.y0), &to_vec(&gb.y0)) < 1e-11);
}

/// ∂L/∂t_k against central differences in the output times (tight Tsit5).
#[test]
fn time_gradients_match_finite_differences() {
    let mlp = net();
    let (y0, w) = y0_and_weights();
    let opts = Options::adaptive(Solver::Tsit5, 1e-12, 1e-12);
    let field = mlp.field();
    let (_, tape) = ode::solve_for_grad(&field, y0.clone(), &TIMES, &opts, Gradient::Direct).unwrap();
    let g = tape.backward(&w).unwrap();
    let gt = tape.time_grads(&w, &g);
    let eps = 1e-6;
    for k in 0..TIMES.len() {
        let mut tp = TIMES;
        tp[k] += eps;
        let lp = loss(&ode::solve(&field, y0.clone(), &tp, &opts).unwrap(), &w);
        tp[k] -= 2.0 * eps;
        let lm = loss(&ode::solve(&field, y0.clone(), &tp, &opts).unwrap(), &w);
        let fd = (lp - lm) / (2.0 * eps);
        assert!((gt[k] - fd).abs() < 1e-5 * fd.abs().max(1.0), "t_{k}: {} vs {fd}", gt[k]);
    }
}

/// Wrong number or shape of cotangents is an error, not a panic.
#[test]
fn backward_rejects_bad_cotangents() {
    let mlp = net();
    let (y0, w) = y0_and_weights();
    let field = mlp.field();
    let (_, tape) = ode::solve_for_grad(&field, y0, &TIMES, &Options::default(), Gradient::Direct).unwrap();
    assert!(matches!(tape.backward(&w[..2]), Err(physflow::Error::Shape { .. })));
    let bad: Vec<Tensor<2>> = w.iter().map(|t| t.clone().narrow(0, 0, 2)).collect();
    assert!(matches!(tape.backward(&bad), Err(physflow::Error::Shape { .. })));
}

/// Integration backwards in time (decreasing output times): the strategies still agree.
#[test]
fn strategies_agree_backwards_in_time() {
    let mlp = net();
    let (y0, w) = y0_and_weights();
    let times = [1.0, 0.6, 0.2, 0.0];
    let opts = Options::adaptive(Solver::Tsit5, 1e-11, 1e-11);
    let field = mlp.field();
    let run = |g: Gradient| {
        let (_, tape) = ode::solve_for_grad(&field, y0.clone(), &times, &opts, g).unwrap();
        let gr = tape.backward(&w).unwrap();
        (to_vec(&gr.y0), gr.params.to_flat())
    };
    let (dy, dp) = run(Gradient::Direct);
    let (cy, cp) = run(Gradient::Checkpointed { checkpoints: 3 });
    assert!(rel_err(&cy, &dy) < 1e-12 && rel_err(&cp, &dp) < 1e-12);
    for mode in [AdjointMode::Backsolve, AdjointMode::Interpolated] {
        let (ay, ap) = run(Gradient::Adjoint(AdjointOptions { mode, ..AdjointOptions::default() }));
        assert!(rel_err(&ay, &dy) < 1e-6, "{mode:?} y0: {}", rel_err(&ay, &dy));
        assert!(rel_err(&ap, &dp) < 1e-6, "{mode:?} params: {}", rel_err(&ap, &dp));
    }
}

/// A closure field with explicit parameters (`y' = A y`, `A` a parameter tensor): the direct
/// gradient w.r.t. `A` matches central differences of the RK4 discretisation.
#[test]
fn param_closure_field_gradient() {
    use physflow::ode::ParamFnField;
    let device = cpu_f64().unwrap();
    let a0 = [-0.3, 1.1, -0.9, -0.2];
    let make = |a: [f64; 4]| {
        let p = Tensor::<1>::from_data(TensorData::new(a.to_vec(), [4]), &device);
        ParamFnField::new(vec![p], |_t: &ode::Time, y: Tensor<2>, p: &[Tensor<1>]| {
            let m: Tensor<2> = p[0].clone().reshape([2, 2]);
            y.matmul(m.transpose())
        })
    };
    let (y0, w) = y0_and_weights();
    let opts = Options::fixed(Solver::Rk4, 0.05);
    let field = make(a0);
    let (_, tape) = ode::solve_for_grad(&field, y0.clone(), &TIMES, &opts, Gradient::Direct).unwrap();
    let g = tape.backward(&w).unwrap().params.0[0].clone();
    let eps = 1e-6;
    for i in 0..4 {
        let mut ap = a0;
        ap[i] += eps;
        let lp = loss(&ode::solve(&make(ap), y0.clone(), &TIMES, &opts).unwrap(), &w);
        ap[i] -= 2.0 * eps;
        let lm = loss(&ode::solve(&make(ap), y0.clone(), &TIMES, &opts).unwrap(), &w);
        let fd = (lp - lm) / (2.0 * eps);
        assert!((g[i] - fd).abs() < 1e-7 * fd.abs().max(1.0), "A[{i}]: {} vs {fd}", g[i]);
    }
}
