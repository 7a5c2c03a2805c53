//! SDE gradient strategies against burn autodiff through the same solve (backprop through the
//! solver's tensor operations, the reference for "direct backprop") and against central
//! finite differences on the same Brownian path (f64, CPU).
//!
//! The test SDE (Stratonovich, diagonal, non-commutative noise), y: [6, 2]:
//!   f(y) = tanh(y W + b),   g(y) = σ(y V + c),
//! with parameters θ = (W, b, V, c). Loss L = Σ_k <w_k, y(t_k)> over t = 0, 0.5, 1.

use burn::tensor::activation::sigmoid;
use burn::tensor::{Tensor, TensorData};
use physflow::device::cpu_f64;
use physflow::host::ToHost;
use physflow::ode::{FlatGrads, ParamFnField, Time};
use physflow::sde::{sdeint, sdeint_for_grad, FnSde, NeuralSde, Noise, SdeGradient, SdeOptions, SdeSolver, VirtualBrownianTree};

const TIMES: [f64; 3] = [0.0, 0.5, 1.0];
const BATCH: usize = 6;

fn t1(v: Vec<f64>) -> Tensor<1> {
    let n = v.len();
    Tensor::<1>::from_data(TensorData::new(v, [n]), &cpu_f64().unwrap())
}

/// θ = (W [2,2], b [2], V [2,2], c [2]) flattened; fixed arbitrary values.
fn theta() -> Vec<Vec<f64>> {
    vec![vec![-0.8, 0.5, -0.3, -1.1], vec![0.1, -0.2], vec![0.7, -0.4, 0.9, 0.2], vec![-0.5, 0.3]]
}

fn drift_of(y: Tensor<2>, p: &[Tensor<1>]) -> Tensor<2> {
    (y.matmul(p[0].clone().reshape([2, 2])) + p[1].clone().reshape([1, 2])).tanh()
}

fn diffusion_of(y: Tensor<2>, p: &[Tensor<1>]) -> Tensor<2> {
    sigmoid(y.matmul(p[0].clone().reshape([2, 2])) + p[1].clone().reshape([1, 2]))
}

type Field = fn(&Time, Tensor<2>, &[Tensor<1>]) -> Tensor<2>;

fn neural(th: &[Vec<f64>]) -> NeuralSde<ParamFnField<Field>, ParamFnField<Field>> {
    let drift: Field = |_t, y, p| drift_of(y, p);
    let diff: Field = |_t, y, p| diffusion_of(y, p);
    NeuralSde::new(ParamFnField::new(vec![t1(th[0].clone()), t1(th[1].clone())], drift), ParamFnField::new(vec![t1(th[2].clone()), t1(th[3].clone())], diff))
}

fn y0() -> Tensor<2> {
    let v: Vec<f64> = (0..2 * BATCH).map(|i| ((i as f64) * 0.91).sin()).collect();
    Tensor::<2>::from_data(TensorData::new(v, [BATCH, 2]), &cpu_f64().unwrap())
}

fn weights() -> Vec<Tensor<2>> {
    (0..TIMES.len())
        .map(|k| {
            let v: Vec<f64> = (0..2 * BATCH).map(|i| ((i * 5 + k * 3) as f64 * 0.37).cos()).collect();
            Tensor::<2>::from_data(TensorData::new(v, [BATCH, 2]), &cpu_f64().unwrap())
        })
        .collect()
}

fn path() -> VirtualBrownianTree {
    VirtualBrownianTree::new(0.0, 1.0, 1e-6, [BATCH, 2], 17).unwrap()
}

fn loss(ys: &[Tensor<2>]) -> f64 {
    ys.iter().zip(weights()).map(|(y, w)| (y.clone() * w).sum().into_scalar::<f64>()).sum()
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den
}

/// `(∂L/∂y0, ∂L/∂θ)` from one of physflow's strategies, θ flattened in the order of [`theta`].
fn strategy_grads(opts: &SdeOptions, gradient: SdeGradient) -> (Vec<f64>, Vec<f64>) {
    let sde = neural(&theta());
    let w = path();
    let (_, tape) = sdeint_for_grad(&sde, y0(), &TIMES, &w, opts, gradient).unwrap();
    let g = tape.backward(&weights()).unwrap();
    let FlatGrads(d) = g.params.drift;
    let FlatGrads(s) = g.params.diffusion;
    (g.y0.to_vec_as::<f64>(), d.into_iter().chain(s).flatten().collect())
}

/// The same gradients by burn autodiff through `sdeint`'s tensor operations (the closures
/// capture autodiff parameters; `y0` requires grad).
fn autodiff_grads(opts: &SdeOptions) -> (Vec<f64>, Vec<f64>) {
    let th = theta();
    let p: Vec<Tensor<1>> = th.iter().map(|v| t1(v.clone()).autodiff().require_grad()).collect();
    let (pd, pg) = (vec![p[0].clone(), p[1].clone()], vec![p[2].clone(), p[3].clone()]);
    let sde = FnSde::new(move |_t, y: Tensor<2>| drift_of(y, &pd), move |_t, y: Tensor<2>| diffusion_of(y, &pg));
    let y0 = y0().autodiff().require_grad();
    let w = path();
    let ys = sdeint(&sde, y0.clone(), &TIMES, &w, opts).unwrap();
    let mut l = ys[0].clone().sum().mul_scalar(0.0);
    for (y, wk) in ys.iter().zip(weights()) {
        l = l + (y.clone() * wk.autodiff()).sum();
    }
    let grads = l.backward();
    let gy = y0.grad(&grads).unwrap().to_vec_as::<f64>();
    let gp: Vec<f64> = p.iter().flat_map(|t| t.grad(&grads).unwrap().to_vec_as::<f64>()).collect();
    (gy, gp)
}

/// Central differences of L in every parameter and every y0 entry on the same path.
fn finite_differences(opts: &SdeOptions) -> (Vec<f64>, Vec<f64>) {
    let w = path();
    let eps = 1e-6;
    let eval = |th: &[Vec<f64>], y0: Tensor<2>| loss(&sdeint(&neural(th), y0, &TIMES, &w, opts).unwrap());
    let th = theta();
    let mut gp = Vec::new();
    for i in 0..th.len() {
        for j in 0..th[i].len() {
            let (mut a, mut b) = (th.clone(), th.clone());
            a[i][j] += eps;
            b[i][j] -= eps;
            gp.push((eval(&a, y0()) - eval(&b, y0())) / (2.0 * eps));
        }
    }
    let base = y0().to_vec_as::<f64>();
    let mut gy = Vec::new();
    for i in 0..base.len() {
        let (mut a, mut b) = (base.clone(), base.clone());
        a[i] += eps;
        b[i] -= eps;
        let ta = Tensor::<2>::from_data(TensorData::new(a, [BATCH, 2]), &cpu_f64().unwrap());
        let tb = Tensor::<2>::from_data(TensorData::new(b, [BATCH, 2]), &cpu_f64().unwrap());
        gy.push((eval(&th, ta) - eval(&th, tb)) / (2.0 * eps));
    }
    (gy, gp)
}

/// Direct (discrete adjoint) for every solver in `SdeSolver::ALL` that supports it on this
/// non-additive SDE, against burn autodiff through the same steps (equal up to round-off:
/// 1e-10; 1e-8 for reversible Heun, whose direct gradient is its reversible adjoint with the
/// reconstruction's round-off) and finite differences (central differences with ε = 1e-6
/// have truncation error O(ε²) and round-off O(1e-16/ε): 1e-6 relative). The others must
/// refuse it with `Unsupported`: Milstein (no discrete adjoint) and SRA1 (additive noise only).
#[test]
fn direct_matches_autodiff_and_finite_differences() {
    let refused = [SdeSolver::MilsteinIto, SdeSolver::MilsteinStratonovich, SdeSolver::Sra1];
    for solver in SdeSolver::ALL {
        let opts = SdeOptions::fixed(solver, 1.0 / 32.0);
        if refused.contains(&solver) {
            let (sde, w) = (neural(&theta()), path());
            let r = sdeint_for_grad(&sde, y0(), &TIMES, &w, &opts, SdeGradient::Direct);
            assert!(matches!(r, Err(physflow::Error::Unsupported(_))), "{solver:?}");
            continue;
        }
        let tol = if solver == SdeSolver::ReversibleHeun { 1e-8 } else { 1e-10 };
        let (gy, gp) = strategy_grads(&opts, SdeGradient::Direct);
        let (ay, ap) = autodiff_grads(&opts);
        assert!(rel_err(&gy, &ay) < tol, "{solver:?} y0: {:e}", rel_err(&gy, &ay));
        assert!(rel_err(&gp, &ap) < tol, "{solver:?} θ: {:e}", rel_err(&gp, &ap));
        let (fy, fp) = finite_differences(&opts);
        assert!(rel_err(&gy, &fy) < 1e-6, "{solver:?} y0 vs FD: {:e}", rel_err(&gy, &fy));
        assert!(rel_err(&gp, &fp) < 1e-6, "{solver:?} θ vs FD: {:e}", rel_err(&gp, &fp));
    }
}

/// The reversible-Heun adjoint reconstructs states backwards instead of storing them, and is
/// the exact gradient of the discretisation: against autodiff through the same reversible Heun
/// steps, relative 1e-8 (the reconstruction's round-off over 64 steps), and finite differences.
#[test]
fn reversible_adjoint_matches_autodiff_and_finite_differences() {
    let opts = SdeOptions::fixed(SdeSolver::ReversibleHeun, 1.0 / 32.0);
    let (gy, gp) = strategy_grads(&opts, SdeGradient::Reversible);
    let (ay, ap) = autodiff_grads(&opts);
    assert!(rel_err(&gy, &ay) < 1e-8, "y0: {:e}", rel_err(&gy, &ay));
    assert!(rel_err(&gp, &ap) < 1e-8, "θ: {:e}", rel_err(&gp, &ap));
    let (fy, fp) = finite_differences(&opts);
    assert!(rel_err(&gy, &fy) < 1e-6, "y0 vs FD: {:e}", rel_err(&gy, &fy));
    assert!(rel_err(&gp, &fp) < 1e-6, "θ vs FD: {:e}", rel_err(&gp, &fp));
    // Asking for Direct with reversible Heun gives the same (reversible) gradient.
    let (dy, dp) = strategy_grads(&opts, SdeGradient::Direct);
    assert_eq!((dy, dp), (gy, gp));
}

/// The stochastic adjoint solves a backward SDE, so it matches the discrete gradient only as
/// dt → 0: its distance to autodiff through Euler–Heun on the same path must fall with dt at a
/// fitted order of at least 0.8 (Euler–Heun is order 1 here; the slack covers the fit over three
/// step sizes), and be below 1e-2 relative at dt = 2⁻¹⁰.
#[test]
fn stochastic_adjoint_converges_to_the_discrete_gradient() {
    let dts = [1.0 / 64.0, 1.0 / 256.0, 1.0 / 1024.0];
    let mut errs = Vec::new();
    for dt in dts {
        let opts = SdeOptions::fixed(SdeSolver::EulerHeun, dt);
        let (gy, gp) = strategy_grads(&opts, SdeGradient::Adjoint);
        let (ay, ap) = autodiff_grads(&opts);
        let all: Vec<f64> = gy.into_iter().chain(gp).collect();
        let reference: Vec<f64> = ay.into_iter().chain(ap).collect();
        errs.push(rel_err(&all, &reference));
    }
    let slope = (errs[0] / errs[2]).ln() / (dts[0] / dts[2]).ln();
    assert!(slope >= 0.8, "order {slope:.2}, errors {errs:?}");
    assert!(errs[2] < 1e-2, "errors {errs:?}");
}

/// General noise (`g: [batch, dim · m]`, m = 3) with the Direct strategy: against autodiff
/// through the same Euler–Heun steps.
#[test]
fn general_noise_gradients() {
    let m = 3;
    let vm: Vec<f64> = (0..2 * 2 * m).map(|i| ((i as f64) * 0.43).cos() * 0.5).collect();
    let diff: Field = |_t, y, p| (y.matmul(p[0].clone().reshape([2, 6])) + p[1].clone().reshape([1, 6])).tanh();
    let drift: Field = |_t, y, p| drift_of(y, p);
    let th = theta();
    let cm = vec![0.1; 2 * m];
    let sde =
        NeuralSde::new(ParamFnField::new(vec![t1(th[0].clone()), t1(th[1].clone())], drift), ParamFnField::new(vec![t1(vm.clone()), t1(cm.clone())], diff))
            .with_noise(Noise::General { noise_dim: m });
    let w = VirtualBrownianTree::new(0.0, 1.0, 1e-6, [BATCH, m], 3).unwrap();
    let opts = SdeOptions::fixed(SdeSolver::EulerHeun, 1.0 / 16.0);
    let (_, tape) = sdeint_for_grad(&sde, y0(), &TIMES, &w, &opts, SdeGradient::Direct).unwrap();
    let g = tape.backward(&weights()).unwrap();
    let FlatGrads(gs) = g.params.diffusion;
    let mine: Vec<f64> = g.y0.to_vec_as::<f64>().into_iter().chain(gs.into_iter().flatten()).collect();

    let p: Vec<Tensor<1>> = [vm, cm].into_iter().map(|v| t1(v).autodiff().require_grad()).collect();
    let (pd, pg) = (vec![t1(th[0].clone()), t1(th[1].clone())], p.clone());
    let ad = FnSde::new(move |_t, y: Tensor<2>| drift_of(y, &pd), move |_t, y: Tensor<2>| diff(&Time::Shared(0.0), y, &pg))
        .with_noise(Noise::General { noise_dim: m });
    let y0a = y0().autodiff().require_grad();
    let ys = sdeint(&ad, y0a.clone(), &TIMES, &w, &opts).unwrap();
    let mut l = ys[0].clone().sum().mul_scalar(0.0);
    for (y, wk) in ys.iter().zip(weights()) {
        l = l + (y.clone() * wk.autodiff()).sum();
    }
    let grads = l.backward();
    let reference: Vec<f64> =
        y0a.grad(&grads).unwrap().to_vec_as::<f64>().into_iter().chain(p.iter().flat_map(|t| t.grad(&grads).unwrap().to_vec_as::<f64>())).collect();
    assert!(rel_err(&mine, &reference) < 1e-10, "{:e}", rel_err(&mine, &reference));
}

/// Unsupported combinations are errors that say what to use instead.
#[test]
fn unsupported_gradient_combinations_are_errors() {
    let sde = neural(&theta());
    let w = path();
    let cases = [
        (SdeSolver::MilsteinStratonovich, SdeGradient::Direct),
        (SdeSolver::EulerHeun, SdeGradient::Reversible),
        (SdeSolver::EulerMaruyama, SdeGradient::Adjoint),
    ];
    for (solver, gradient) in cases {
        let r = sdeint_for_grad(&sde, y0(), &TIMES, &w, &SdeOptions::fixed(solver, 0.1), gradient);
        assert!(matches!(r, Err(physflow::Error::Unsupported(_))), "{solver:?} + {gradient:?}");
    }
}
