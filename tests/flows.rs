//! Every registered flow layer: invertibility, log-determinant against the brute-force Jacobian,
//! and both VJPs against finite differences; the continuous flow against closed forms.

mod common;

use common::log_abs_det;
use ndarray::{Array1, Array2};
use physflow::flows::{registered_layers, Base, ContinuousFlow, Flow, FlowConfig};
use rand::{RngExt, SeedableRng};

fn random(rows: usize, cols: usize, scale: f64, seed: u64) -> Array2<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || rng.random_range(-scale..scale))
}

/// Jacobian of `f` at row `z` by central differences (step `h`; truncation error O(h²)).
fn fd_jacobian(f: &dyn Fn(Array2<f64>) -> Array2<f64>, z: &Array1<f64>, h: f64) -> Array2<f64> {
    let d = z.len();
    let mut j = Array2::zeros((d, d));
    for k in 0..d {
        let (mut zp, mut zm) = (z.clone(), z.clone());
        zp[k] += h;
        zm[k] -= h;
        let fp = f(zp.insert_axis(ndarray::Axis(0)));
        let fm = f(zm.insert_axis(ndarray::Axis(0)));
        for i in 0..d {
            j[[i, k]] = (fp[[0, i]] - fm[[0, i]]) / (2.0 * h);
        }
    }
    j
}

#[test]
fn every_layer_inverts_and_its_log_det_is_the_jacobians() {
    for dim in [2, 5] {
        for layer in registered_layers(dim, 7).unwrap() {
            // Spread ±2.5 so spline inputs hit both the bins and the tails.
            let z = random(16, dim, 2.5, 11);
            let (x, ld) = layer.forward(z.view()).unwrap();
            let (z2, ld_inv) = layer.inverse(x.view()).unwrap();
            let err = (&z2 - &z).iter().fold(0.0f64, |m, e| m.max(e.abs()));
            assert!(err < 1e-10, "{}: |f⁻¹(f(z)) − z| = {err:e}", layer.name());
            let lerr = (&ld + &ld_inv).iter().fold(0.0f64, |m, e| m.max(e.abs()));
            assert!(lerr < 1e-10, "{}: forward + inverse log-det = {lerr:e}", layer.name());
            // Brute force: log|det| of the finite-difference Jacobian of forward (h = 1e-6,
            // O(h²) truncation; the tolerance covers round-off of order ε/h ≈ 1e-10 per entry).
            let f = |z: Array2<f64>| layer.forward(z.view()).unwrap().0;
            for b in 0..4 {
                let jac = fd_jacobian(&f, &z.row(b).to_owned(), 1e-6);
                let bf = log_abs_det(jac);
                assert!((bf - ld[b]).abs() < 1e-6, "{}: log|det| {} vs brute force {bf}", layer.name(), ld[b]);
            }
        }
    }
}

#[test]
fn every_layer_vjp_matches_finite_differences_in_both_directions() {
    let dim = 4;
    for layer in registered_layers(dim, 3).unwrap() {
        let n = layer.num_params();
        let theta = layer.params();
        let z = random(6, dim, 2.0, 5);
        let cx = random(6, dim, 1.0, 6);
        let cl = random(6, 1, 1.0, 8).column(0).to_owned();
        for inverse in [false, true] {
            // L(z, θ) = Σ cx ⊙ out + Σ cl ⊙ log-det of the chosen direction.
            let input = if inverse { layer.forward(z.view()).unwrap().0 } else { z.clone() };
            let objective = |layer: &dyn Flow, input: &Array2<f64>| {
                let (o, l) = if inverse { layer.inverse(input.view()).unwrap() } else { layer.forward(input.view()).unwrap() };
                (&o * &cx).sum() + (&l * &cl).sum()
            };
            let mut pb = vec![0.0; n];
            let in_bar = if inverse {
                layer.inverse_vjp(input.view(), cx.view(), cl.view(), &mut pb).unwrap()
            } else {
                layer.forward_vjp(input.view(), cx.view(), cl.view(), &mut pb).unwrap()
            };
            let h = 1e-6;
            for b in 0..2 {
                for k in 0..dim {
                    let (mut ip, mut im) = (input.clone(), input.clone());
                    ip[[b, k]] += h;
                    im[[b, k]] -= h;
                    let fd = (objective(layer.as_ref(), &ip) - objective(layer.as_ref(), &im)) / (2.0 * h);
                    assert!(
                        (in_bar[[b, k]] - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                        "{} (inverse {inverse}): input bar [{b},{k}] {} vs FD {fd}",
                        layer.name(),
                        in_bar[[b, k]]
                    );
                }
            }
            // Parameters: every one for small layers, a spread of 40 for the large ones.
            let step = (n / 40).max(1);
            let mut probe: Box<dyn Flow> = registered_layers(dim, 3).unwrap().into_iter().find(|l| l.name() == layer.name()).unwrap();
            for j in (0..n).step_by(step) {
                let mut tp = theta.clone();
                tp[j] += h;
                probe.set_params(&tp).unwrap();
                let fp = objective(probe.as_ref(), &input);
                tp[j] -= 2.0 * h;
                probe.set_params(&tp).unwrap();
                let fm = objective(probe.as_ref(), &input);
                let fd = (fp - fm) / (2.0 * h);
                assert!((pb[j] - fd).abs() < 1e-6 * (1.0 + fd.abs()), "{} (inverse {inverse}): param {j}: {} vs FD {fd}", layer.name(), pb[j]);
            }
        }
    }
}

#[test]
fn fresh_configs_are_the_identity_and_bad_configs_are_errors() {
    let z = random(5, 3, 2.0, 1);
    for cfg in [FlowConfig::real_nvp(4, vec![8]), FlowConfig::neural_spline(2, vec![8], 6, 3.0)] {
        let flow = cfg.build(3, 0).unwrap();
        let (x, ld) = flow.forward(z.view()).unwrap();
        // Zero last layers: couplings are the identity; LU layers start as a permutation.
        let sorted = |a: &Array2<f64>| {
            let mut v: Vec<f64> = a.iter().cloned().collect();
            v.sort_by(f64::total_cmp);
            v
        };
        assert_eq!(sorted(&x), sorted(&z));
        assert!(ld.iter().all(|l| l.abs() < 1e-14));
    }
    let mut bad = FlowConfig::real_nvp(2, vec![8]);
    assert!(bad.build(1, 0).is_err(), "dim 1 has nothing to condition on");
    bad = FlowConfig::neural_spline(1, vec![8], 1, 3.0);
    assert!(bad.build(2, 0).is_err(), "one bin");
    let toml_bad = "[[layers]]\nkind = \"affine_coupling\"\nparity = 0\nhidden = [8]\nscale_bound = 3.0\nsurprise = 1\n";
    assert!(toml::from_str::<FlowConfig>(toml_bad).is_err(), "unknown keys are refused");
    let flow = FlowConfig::real_nvp(2, vec![8]).build(2, 0).unwrap();
    assert!(matches!(flow.forward(random(2, 3, 1.0, 0).view()), Err(physflow::Error::Shape { .. })));
    let mut nan = random(2, 2, 1.0, 0);
    nan[[1, 0]] = f64::NAN;
    assert!(matches!(flow.inverse(nan.view()), Err(physflow::Error::NonFiniteInput { .. })));
}

/// A parameter vector of the wrong length is a `Shape` error naming the layer, and leaves the
/// parameters as they were.
#[test]
fn wrong_parameter_counts_are_errors() {
    for mut layer in registered_layers(4, 11).unwrap() {
        let before = layer.params();
        let wrong = vec![0.1; layer.num_params() + 1];
        match layer.set_params(&wrong) {
            Err(physflow::Error::Shape { what, expected, got }) => {
                assert!(what.contains("parameters of"), "{what}");
                assert_eq!((expected, got), (vec![before.len()], vec![before.len() + 1]));
            }
            other => panic!("{}: expected a Shape error, got {other:?}", layer.name()),
        }
        assert_eq!(layer.params(), before, "{}", layer.name());
    }
}

#[test]
fn act_norm_data_init_standardises() {
    let mut flow = FlowConfig { layers: vec![physflow::flows::LayerConfig::ActNorm] }.build(2, 0).unwrap();
    let x = random(1000, 2, 1.0, 2).mapv(|v| 3.0 * v + 1.0);
    flow.data_init(x.view()).unwrap();
    let (z, _) = flow.inverse(x.view()).unwrap();
    for k in 0..2 {
        let c = z.column(k);
        assert!(c.mean().unwrap().abs() < 1e-12);
        assert!((c.std(1.0) - 1.0).abs() < 1e-12);
    }
}

/// `b(t, z) = A z` with a fixed non-symmetric `A`: `x = expm(A) z` and `log|det| = tr A`.
fn linear_field(a: [[f64; 2]; 2]) -> physflow::ode::FnField<impl Fn(&physflow::ode::Time, burn::tensor::Tensor<2>) -> burn::tensor::Tensor<2> + Send + Sync> {
    physflow::ode::FnField::new(move |_t: &physflow::ode::Time, z: burn::tensor::Tensor<2>| {
        let m = burn::tensor::Tensor::<2>::from_data(burn::tensor::TensorData::new(vec![a[0][0], a[1][0], a[0][1], a[1][1]], [2, 2]), (&z.device(), z.dtype()));
        z.matmul(m)
    })
}

#[test]
fn continuous_flow_matches_the_linear_closed_form() {
    use physflow::fm::Trace;
    use physflow::ode::{Options, Solver};
    let a = [[-0.3, 0.8], [-0.5, 0.1]];
    let opts = Options::adaptive(Solver::Dopri5, 1e-10, 1e-12);
    let flow = ContinuousFlow { field: linear_field(a), dim: 2, trace: Trace::Exact, options: opts.clone() };
    let z = random(8, 2, 2.0, 4);
    let (x, ld) = flow.forward(z.view()).unwrap();
    // tr A = −0.2, exactly, for every sample (Liouville).
    assert!(ld.iter().all(|l| (l + 0.2).abs() < 1e-8), "{ld:?}");
    let (z2, ld_inv) = flow.inverse(x.view()).unwrap();
    assert!((&z2 - &z).iter().all(|e| e.abs() < 1e-8));
    assert!(ld_inv.iter().all(|l| (l - 0.2).abs() < 1e-8));
    // The Jacobian of the solved map, brute force, has the same log-determinant.
    let f = |z: Array2<f64>| flow.forward(z.view()).unwrap().0;
    let jac = fd_jacobian(&f, &z.row(0).to_owned(), 1e-5);
    assert!((log_abs_det(jac) + 0.2).abs() < 1e-6);
    assert!(matches!(flow.forward_vjp(z.view(), z.view(), ld.view(), &mut []), Err(physflow::Error::Unsupported(_))));

    // Hutchinson on the non-isotropic A: per probe εᵀAε = tr A + Σ_{i≠j} ε_i ε_j A_ij, so the
    // estimate's variance is (A₀₁ + A₁₀)² / probes per sample; the mean over 400 samples of
    // 4 probes each has SE |A₀₁ + A₁₀| / √1600 = 0.0075.
    let hutch = ContinuousFlow { field: linear_field(a), dim: 2, trace: Trace::Hutchinson { probes: 4, seed: 9 }, options: opts };
    let z = random(400, 2, 2.0, 5);
    let (_, ld) = hutch.forward(z.view()).unwrap();
    let se = 0.3 / 1600f64.sqrt();
    let mean = ld.mean().unwrap();
    assert!((mean + 0.2).abs() < 4.0 * se, "Hutchinson mean {mean}, SE {se}");
    // And it is not exact per sample (the test would not notice a silently exact trace).
    assert!(ld.iter().any(|l| (l + 0.2).abs() > 0.1));
}

#[test]
fn base_log_prob_is_normalised() {
    // ∫ ρ over a fine 2D grid (trapezoid on [−8, 8]², error far below 1e-6).
    let base = Base::StandardNormal { dim: 2 };
    let n = 801;
    let h = 16.0 / (n - 1) as f64;
    let pts = Array2::from_shape_fn((n * n, 2), |(i, k)| if k == 0 { -8.0 + h * (i / n) as f64 } else { -8.0 + h * (i % n) as f64 });
    let total: f64 = base.log_prob(pts.view()).unwrap().iter().map(|l| l.exp()).sum::<f64>() * h * h;
    assert!((total - 1.0).abs() < 1e-6, "{total}");
}
