//! Constrained samplers against the exact Gaussian flow (`pde::GaussianFlow`), whose output
//! distribution is known in closed form, and the field model as a vector field.

use burn::tensor::{Tensor, TensorData};
use ndarray::{Array1, Array2};
use physflow::host::ToHost;
use physflow::ode::{Time, VectorField};
use physflow::pde::{
    self, Anchor, Axis, GaussianFlow, GpConfig, GpMethod, Grid, Kernel, LinearConstraint, MassBalance, PcfmOptions, Quadrature, SampleConfig, Sampler,
};
use physflow::Error;
use rand::SeedableRng;

const N: usize = 12;
const MASS: f64 = 0.5;

/// A periodic 12-point axis: stationary kernels give circulant `K` and `Σ`, for which the
/// constant vector is an eigenvector, so the Euclidean projection onto the mass constraint
/// `h Σ uᵢ = M` maps `N(μ₁, Σ)` exactly onto the conditional Gaussian of `x₁` given `h Σ uᵢ = M`
/// (mean `μ₁ + 1 (M − h Σ μ₁ᵢ)/(hN)`, covariance `Σ − λ 11ᵀ/N` with `Σ1 = λ1`).
fn setup() -> (Grid, GaussianFlow, LinearConstraint) {
    let grid = Grid { channels: vec!["u".into()], axes: vec![Axis::space("x", N, 0.0, 1.0 / N as f64, true)] };
    let k = GpConfig { kernel: Kernel::Matern32, length: vec![0.3], method: GpMethod::Fft, jitter: 0.0, ..GpConfig::default() }
        .sampler(&grid)
        .unwrap()
        .covariance();
    let sigma =
        GpConfig { kernel: Kernel::Rbf, length: vec![0.12], variance: 0.5, method: GpMethod::Cholesky, jitter: 1e-6 }.sampler(&grid).unwrap().covariance();
    let mu1 = Array1::from_shape_fn(N, |i| 0.3 + 0.2 * (std::f64::consts::TAU * i as f64 / N as f64).sin());
    let flow = GaussianFlow { mu0: Array1::zeros(N), k, mu1, sigma };
    let c = LinearConstraint::mass_conservation(&grid, 0, Quadrature::Uniform, Some(MASS)).unwrap();
    (grid, flow, c)
}

/// The conditional Gaussian of `x₁` given the mass.
fn constrained_gaussian(flow: &GaussianFlow) -> (Array1<f64>, Array2<f64>) {
    let h = 1.0 / N as f64;
    let shift = (MASS - h * flow.mu1.sum()) / (h * N as f64);
    let lambda = flow.sigma.row(0).sum();
    (&flow.mu1 + shift, &flow.sigma - lambda / N as f64)
}

/// The exact output distribution of the PCFM sampler with this flow: every step is affine in
/// the state (`v = c_t + M_t u`, an affine projection), so mean and covariance propagate
/// exactly. `Anchor::State` only (the noise anchor needs the joint state, see below).
fn propagate_state_anchor(flow: &GaussianFlow, steps: usize) -> (Array1<f64>, Array2<f64>) {
    let eye = Array2::<f64>::eye(N);
    let proj = &eye - 1.0 / N as f64; // I − wwᵀ/(wᵀw), w ∝ 1
    let p = Array1::from_elem(N, MASS * N as f64 / N as f64); // w M/(wᵀw) with w = h1: M/(hN) = M
    let mut mean = flow.mu0.clone();
    let mut cov = flow.k.clone();
    let dt = 1.0 / steps as f64;
    for k in 0..steps {
        let t = k as f64 * dt;
        let (m, c) = flow.affine(t);
        let e_mat = &eye + &(&m * (1.0 - t));
        let e_vec = &c * (1.0 - t);
        let pe = proj.dot(&e_mat);
        let pb = proj.dot(&e_vec) + &p;
        let (a, b) = if k + 1 == steps {
            (pe, pb)
        } else {
            let s = dt / (1.0 - t);
            (&eye + &((&pe - &eye) * s), pb * s)
        };
        mean = a.dot(&mean) + b;
        cov = a.dot(&cov).dot(&a.t());
    }
    (mean, cov)
}

fn max_abs_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// PCFM (state anchor) with the exact velocity samples the constrained Gaussian:
/// 1. the sample moments of 4000 fields match the sampler's exact output distribution within
///    5 standard errors (mean: `√(C_ii/N)`; covariance: `√((C_ii C_jj + C_ij²)/N)`);
/// 2. that distribution converges to the constrained Gaussian at first order in the step
///    (Euler): the covariance error halves when the steps double;
/// 3. every sample satisfies the mass constraint to 1e-10.
#[test]
fn pcfm_with_the_exact_velocity_samples_the_constrained_gaussian() {
    let (grid, flow, c) = setup();
    let device = physflow::device::cpu_f64().unwrap();
    let steps = 50;
    let n_samples = 4000;
    let gp = GpConfig { kernel: Kernel::Matern32, length: vec![0.3], method: GpMethod::Fft, jitter: 0.0, ..GpConfig::default() }.sampler(&grid).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let x0 = gp.sample(&mut rng, n_samples);
    let x0 = Tensor::<2>::from_data(TensorData::new(x0.iter().copied().collect::<Vec<f64>>(), [n_samples, N]), &device);
    let cfg = SampleConfig { method: Sampler::Pcfm(PcfmOptions { anchor: Anchor::State, ..PcfmOptions::default() }), steps, ..SampleConfig::default() };
    let out = pde::sample(&flow, &x0, Some(&c), &cfg).unwrap();
    assert_eq!(out.stats.nfe, steps);
    assert!(out.stats.final_residual <= 1e-10, "residual {:.2e}", out.stats.final_residual);

    let (mean, cov) = propagate_state_anchor(&flow, steps);
    let (emp_mean, _) = pde::ensemble_moments(&out.fields.view()).unwrap();
    let centred = &out.fields - &emp_mean;
    let emp_cov = centred.t().dot(&centred) / n_samples as f64;
    for i in 0..N {
        let se = (cov[[i, i]] / n_samples as f64).sqrt();
        assert!((emp_mean[i] - mean[i]).abs() < 5.0 * se, "mean {i}: {} vs {} (se {se:.2e})", emp_mean[i], mean[i]);
        for j in 0..N {
            let se = ((cov[[i, i]] * cov[[j, j]] + cov[[i, j]].powi(2)) / n_samples as f64).sqrt();
            assert!((emp_cov[[i, j]] - cov[[i, j]]).abs() < 5.0 * se + 1e-12, "cov ({i},{j}): {} vs {} (se {se:.2e})", emp_cov[[i, j]], cov[[i, j]]);
        }
    }

    let (cm, cc) = constrained_gaussian(&flow);
    let err = |steps: usize| {
        let (m, c) = propagate_state_anchor(&flow, steps);
        ((&m - &cm).iter().fold(0.0f64, |a, x| a.max(x.abs())), max_abs_diff(&c, &cc))
    };
    let (m50, c50) = err(50);
    let (m400, c400) = err(400);
    let (_, c100) = err(100);
    eprintln!("covariance error vs the constrained Gaussian: 50 steps {c50:.3e}, 100 steps {c100:.3e}, 400 steps {c400:.3e}");
    // The mean is exact: the mean's Euler error cancels in the projected direction and the flow's
    // mean path is a straight line (E[v] = μ₁ − μ₀ along m_t).
    assert!(m50 < 1e-10 && m400 < 1e-10, "mean errors {m50:.2e}, {m400:.2e}");
    let ratio = c50 / c100;
    assert!((1.7..2.3).contains(&ratio), "covariance error 50 → 100 steps: {c50:.3e} → {c100:.3e} (ratio {ratio:.2}, first order expects 2)");
    assert!(c400 < 0.01 * cc.iter().fold(0.0f64, |a, x| a.max(x.abs())), "covariance error at 400 steps {c400:.2e}");
}

/// PCFM's published noise anchor, `(1 − t′) x₀ + t′ P(û)`, is biased with the exact velocity,
/// more so with more steps (the claim in `Anchor`'s documentation): its exact output variance,
/// propagated on the joint state `(x₀, u)`, misses the constrained Gaussian's by far more than
/// the state anchor's at 100 steps.
#[test]
fn the_noise_anchor_is_biased_for_the_exact_velocity() {
    let (_, flow, _) = setup();
    let eye = Array2::<f64>::eye(N);
    let proj = &eye - 1.0 / N as f64;
    let p = Array1::from_elem(N, MASS);
    let steps = 100;
    let dt = 1.0 / steps as f64;
    // Joint covariance of z = [x₀; u], both N(0, K) and equal at t = 0.
    let mut cov = Array2::<f64>::zeros((2 * N, 2 * N));
    for i in 0..N {
        for j in 0..N {
            for (a, b) in [(0, 0), (0, N), (N, 0), (N, N)] {
                cov[[a + i, b + j]] = flow.k[[i, j]];
            }
        }
    }
    let mut mean = Array1::<f64>::zeros(2 * N);
    for k in 0..steps {
        let t = k as f64 * dt;
        let t1 = t + dt;
        let (m, c) = flow.affine(t);
        let pe = proj.dot(&(&eye + &(&m * (1.0 - t))));
        let pb = proj.dot(&(&c * (1.0 - t))) + &p;
        let mut a = Array2::<f64>::zeros((2 * N, 2 * N));
        let mut b = Array1::<f64>::zeros(2 * N);
        for i in 0..N {
            a[[i, i]] = 1.0;
            if k + 1 < steps {
                a[[N + i, i]] = 1.0 - t1;
            }
            let w = if k + 1 < steps { t1 } else { 1.0 };
            for j in 0..N {
                a[[N + i, N + j]] = w * pe[[i, j]];
            }
            b[N + i] = w * pb[i];
        }
        mean = a.dot(&mean) + b;
        cov = a.dot(&cov).dot(&a.t());
    }
    let noise_cov = cov.slice(ndarray::s![N.., N..]).to_owned();
    let (_, cc) = constrained_gaussian(&flow);
    let (_, state_cov) = propagate_state_anchor(&flow, steps);
    let (e_noise, e_state) = (max_abs_diff(&noise_cov, &cc), max_abs_diff(&state_cov, &cc));
    eprintln!("covariance error at {steps} steps: noise anchor {e_noise:.3e}, state anchor {e_state:.3e}");
    assert!(e_noise > 10.0 * e_state, "noise anchor {e_noise:.3e} vs state anchor {e_state:.3e}");
    // The mass constraint still holds exactly for the noise anchor (last step is P(û)).
    assert!((mean.slice(ndarray::s![N..]).sum() / N as f64 - MASS).abs() < 1e-12);
}

/// Every method runs on the exact flow and satisfies its contract: the projecting methods end
/// on the constraint set, guidance reduces the constraint error below the unconstrained
/// sampler's, and equal-NFE settings use one evaluation per step (ECI: `mix` per step).
#[test]
fn every_method_meets_its_contract() {
    let (grid, flow, c) = setup();
    let device = physflow::device::cpu_f64().unwrap();
    let gp = GpConfig { kernel: Kernel::Matern32, length: vec![0.3], method: GpMethod::Fft, jitter: 0.0, ..GpConfig::default() }.sampler(&grid).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let x0 = gp.sample(&mut rng, 64);
    let x0 = Tensor::<2>::from_data(TensorData::new(x0.iter().copied().collect::<Vec<f64>>(), [64, N]), &device);
    let steps = 20;
    let run = |method: Sampler| pde::sample(&flow, &x0, Some(&c), &SampleConfig { method, steps, ..SampleConfig::default() }).unwrap();
    let free = run(Sampler::Unconstrained);
    assert_eq!(free.stats.nfe, steps);
    let free_err = pde::constraint_error(&c, &free.fields.view()).unwrap().max_abs;
    assert!(free_err > 1e-3, "the unconstrained samples already satisfy the constraint ({free_err:.2e}); the test would be vacuous");
    for method in [
        Sampler::ProjectEnd,
        Sampler::Pcfm(PcfmOptions::default()),
        Sampler::Pcfm(PcfmOptions { anchor: Anchor::Noise, newton_steps: Some(1), relax: Some(pde::Relax::default()) }),
        Sampler::Eci { mix: 2 },
    ] {
        let out = run(method);
        assert!(out.stats.final_residual <= 1e-10, "{}: residual {:.2e}", method.label(), out.stats.final_residual);
        let expect = if let Sampler::Eci { mix } = method { steps * mix } else { steps };
        assert_eq!(out.stats.nfe, expect, "{}", method.label());
    }
    let guided = run(Sampler::Guidance { eta: 0.5 });
    let guided_err = pde::constraint_error(&c, &guided.fields.view()).unwrap().max_abs;
    assert!(guided_err < 0.5 * free_err, "guidance {guided_err:.2e} vs unconstrained {free_err:.2e}");
}

/// Bad combinations are errors that say what is wrong.
#[test]
fn sampler_rejects_bad_combinations() {
    let (grid, flow, c) = setup();
    let device = physflow::device::cpu_f64().unwrap();
    let x0 = Tensor::<2>::zeros([4, N], &device);
    let pcfm = SampleConfig::default();
    assert!(matches!(pde::sample(&flow, &x0, None, &pcfm), Err(Error::InvalidArgument { .. })));
    assert!(matches!(pde::sample(&flow, &x0, Some(&c), &SampleConfig { steps: 0, ..pcfm }), Err(Error::InvalidArgument { .. })));
    let st = Grid::space_time(Axis::space("x", 4, 0.0, 0.25, false), Axis::time(3, 0.0, 1.0));
    let nonlinear = MassBalance::new(
        &st,
        0,
        Quadrature::Uniform,
        Some(pde::SourceTerm::Reaction { reaction: physflow::sim::systems::Reaction::FisherKpp, rate: 1.0 }),
        pde::BoundaryFlux::Zero,
    )
    .unwrap();
    let x12 = Tensor::<2>::zeros([4, 12], &device);
    let eci = SampleConfig { method: Sampler::Eci { mix: 1 }, ..pcfm };
    match pde::sample(&flow, &x12, Some(&nonlinear), &eci) {
        Err(Error::InvalidArgument { reason, .. }) => assert!(reason.contains("nonlinear"), "{reason}"),
        other => panic!("expected an error, got {:?}", other.map(|s| s.stats)),
    }
    let wrong = LinearConstraint::mass_conservation(
        &Grid { channels: vec!["u".into()], axes: vec![Axis::space("x", 5, 0.0, 0.2, true)] },
        0,
        Quadrature::Uniform,
        Some(1.0),
    )
    .unwrap();
    assert!(matches!(pde::sample(&flow, &x0, Some(&wrong), &pcfm), Err(Error::Shape { .. })));
    let _ = grid;
}

/// The field model's VJP (burn autodiff through the normalisation and the FNO) against central
/// finite differences of its evaluation, in f64.
#[test]
fn field_model_vjp_matches_finite_differences() {
    use physflow::nn::{FieldNetConfig, FnoConfig};
    use physflow::pde::{FieldModel, FieldModelMeta};
    let device = physflow::device::cpu_f64().unwrap();
    let grid = Grid::space_time(Axis::space("x", 8, 0.0, 0.125, true), Axis::time(6, 0.0, 1.0));
    let net_cfg = FieldNetConfig::Fno(FnoConfig { width: 6, modes: [3, 3], layers: 2, time_features: 2, projection: 8, ..FnoConfig::default() });
    let net = net_cfg.init(3, &device).unwrap();
    let meta = FieldModelMeta { grid: grid.clone(), net: net_cfg, gp: GpConfig::default(), sigma_min: 1e-4, mean: vec![0.3], std: vec![1.7] };
    let model = FieldModel::new(meta, &net).unwrap();
    let n = grid.len();
    let y: Vec<f64> = (0..2 * n).map(|i| ((i * 31 % 17) as f64 / 17.0 - 0.5) * 2.0).collect();
    let a: Vec<f64> = (0..2 * n).map(|i| (i * 13 % 7) as f64 / 7.0 - 0.5).collect();
    let y_t = Tensor::<2>::from_data(TensorData::new(y.clone(), [2, n]), &device);
    let a_t = Tensor::<2>::from_data(TensorData::new(a.clone(), [2, n]), &device);
    let t = Time::PerSample(vec![0.2, 0.7]);
    let vjp = model.vjp(&t, &y_t, &a_t, None).to_vec_as::<f64>();
    let eps = 1e-6;
    let mut worst: f64 = 0.0;
    for k in (0..2 * n).step_by(7) {
        let mut up = y.clone();
        let mut dn = y.clone();
        up[k] += eps;
        dn[k] -= eps;
        let f = |v: Vec<f64>| model.eval(&t, &Tensor::<2>::from_data(TensorData::new(v, [2, n]), &device)).to_vec_as::<f64>();
        let (fu, fd) = (f(up), f(dn));
        let fdv: f64 = fu.iter().zip(&fd).zip(&a).map(|((u, d), a)| a * (u - d) / (2.0 * eps)).sum();
        worst = worst.max((fdv - vjp[k]).abs() / (1.0 + fdv.abs()));
    }
    assert!(worst < 1e-7, "VJP vs finite differences: {worst:.2e}");
}

/// A field model saved before the FNO's projection became an `nn::Mlp` (its record names the
/// projection's layers `proj1` and `proj2`) still loads, and gives the velocity it gave then.
/// Reference: `tests/fixtures/fno_v1/`, written by that earlier code (a 2-layer FNO of width
/// 4 on a 5 × 4 grid, seed 11, f64 parameters) with its velocity at two fields and times;
/// `expected.json` holds the inputs and the outputs. The two layouts run the same operations,
/// so the outputs agree to f64 round-off of the CPU kernels (1e-12 relative).
#[test]
fn field_model_saved_with_the_earlier_fno_layout_loads() {
    use physflow::pde::FieldModel;
    let device = physflow::device::cpu_f64().unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fno_v1");
    let model = FieldModel::load(&dir, &device).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let column = |k: &str| -> Vec<f64> { expected[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
    let (input, want, times) = (column("input"), column("velocity"), column("t"));
    let n = model.meta.grid.len();
    let y = Tensor::<2>::from_data(TensorData::new(input, [2, n]), &device);
    let got = model.eval(&Time::PerSample(times), &y).to_vec_as::<f64>();
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(&want).fold(0.0f64, |m, (g, w)| m.max((g - w).abs()));
    assert!(scale > 0.1, "the fixture's velocity is not trivial");
    assert!(worst <= 1e-12 * scale, "velocity after loading the earlier layout: worst difference {worst:.2e} of {scale:.2e}");
    // The draws did not change either: the same architecture initialised from seed 11 is the
    // saved network.
    let fresh = FieldModel::new(model.meta.clone(), &model.meta.net.init(11, &device).unwrap()).unwrap();
    let again = fresh.eval(&Time::PerSample(column("t")), &y).to_vec_as::<f64>();
    let worst = again.iter().zip(&want).fold(0.0f64, |m, (g, w)| m.max((g - w).abs()));
    assert!(worst <= 1e-12 * scale, "velocity of a fresh seed-11 network: worst difference {worst:.2e} of {scale:.2e}");
    // A record that fits neither layout is still a `Format` error naming the file.
    let err = physflow::nn::FieldNetConfig::Fno(physflow::nn::FnoConfig {
        width: 5,
        modes: [2, 2],
        layers: 2,
        time_features: 1,
        projection: 5,
        ..Default::default()
    })
    .init(0, &device)
    .unwrap()
    .load(&dir.join("model.bpk"))
    .unwrap_err();
    assert!(matches!(err, physflow::Error::Format { .. }), "{err}");
}
