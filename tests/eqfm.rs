//! Equivariant flow matching (`boltzmann::eqfm`): the batched exact divergence of a module
//! field, the couplings, the model's log-densities (sampling vs scoring, symmetry, the identity
//! flow), exact resume, and bad input. f64 on the CPU (a binary of its own: it configures the
//! CPU device for f64 before any tensor is made).

use burn::tensor::{Tensor, TensorData};
use ndarray::Array2;
use physflow::boltzmann::eqfm::{couple, EqCoupling, EqFmConfig, EqFmTrainer, Likelihood};
use physflow::boltzmann::{load_eqfm, train_eqfm};
use physflow::energy::Energy;
use physflow::energy::MultiDoubleWell;
use physflow::flows::Base;
use physflow::fm::equivariant::sq_dist;
use physflow::fm::Perturbation;
use physflow::host::ToHost;
use physflow::nn::EgnnConfig;
use physflow::ode::{ModuleField, Options, Solver, Time, VectorField};
use physflow::train::{Control, Every, Run, RunOptions, StepInfo};
use physflow::Error;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn cpu() -> burn::tensor::Device {
    physflow::device::cpu_f64().unwrap()
}

/// A small DW4-sized configuration with a field far from zero.
fn small_config(steps: usize) -> EqFmConfig {
    EqFmConfig {
        egnn: EgnnConfig { particles: 4, spatial_dim: 2, layers: 2, hidden: 16, coord_init_scale: 1.0 },
        sampling: Options::adaptive(Solver::Dopri5, 1e-9, 1e-9),
        chunk: 16,
        run: RunOptions { steps, batch_size: 16, log_every: 1, ..EqFmConfig::default().run },
        ..EqFmConfig::default()
    }
}

/// Mean-free configurations in two wells (DW4-like data), `[m, 8]`.
fn data(m: usize, seed: u64) -> Array2<f64> {
    let base = Base::MeanFreeNormal { particles: 4, spatial_dim: 2 };
    let mut rng = StdRng::seed_from_u64(seed);
    let z = base.sample(m, &mut rng);
    let square = [-2.0, -2.0, 2.0, -2.0, 2.0, 2.0, -2.0, 2.0];
    Array2::from_shape_fn((m, 8), |(i, k)| square[k] * if i % 2 == 0 { 1.0 } else { 0.7 } + 0.3 * z[[i, k]])
}

/// The batched exact divergence of `ModuleField` (one backward pass over a replicated batch)
/// equals its definition, the trace of the Jacobian from one VJP per unit vector, and the
/// central-difference trace; with per-sample times and with a chunked replication (more
/// dimensions than fit one pass are not needed for the check: 8 dims, 5 samples).
#[test]
fn batched_exact_divergence_is_the_trace() {
    let device = cpu();
    let net = small_config(1).egnn.init(3, &device).unwrap();
    let field = ModuleField::new(net);
    let mut rng = StdRng::seed_from_u64(2);
    let (b, d) = (5, 8);
    let xv: Vec<f64> = (0..b * d).map(|_| rng.random_range(-2.0..2.0)).collect();
    let x = Tensor::<2>::from_data(TensorData::new(xv.clone(), [b, d]), &device);
    for t in [Time::Shared(0.3), Time::PerSample(vec![0.1, 0.5, 0.9, 0.2, 0.7])] {
        let (_, div) = field.exact_divergence(&t, &x).expect("module fields have the batched divergence");
        let (_, saved) = field.eval_saving(&t, &x);
        let mut by_vjp = vec![0.0; b];
        for k in 0..d {
            let e: Vec<f64> = (0..b * d).map(|i| f64::from(u8::from(i % d == k))).collect();
            let g: Vec<f64> = field.vjp_saved(&saved, &Tensor::<2>::from_data(TensorData::new(e, [b, d]), &device), None).to_vec_as();
            (0..b).for_each(|i| by_vjp[i] += g[i * d + k]);
        }
        let h = 1e-6;
        for i in 0..b {
            assert!((div[i] - by_vjp[i]).abs() < 1e-10 * (1.0 + by_vjp[i].abs()), "sample {i}: {} vs {}", div[i], by_vjp[i]);
            let mut fd = 0.0;
            for k in 0..d {
                let eval = |s: f64| {
                    let mut v = xv.clone();
                    v[i * d + k] += s;
                    let y: Vec<f64> = field.eval(&t, &Tensor::<2>::from_data(TensorData::new(v, [b, d]), &device)).to_vec_as();
                    y[i * d + k]
                };
                fd += (eval(h) - eval(-h)) / (2.0 * h);
            }
            // Central differences: O(h²) truncation, O(ε/h) round-off ≈ 1e-9.
            assert!((div[i] - fd).abs() < 1e-6, "sample {i}: {} vs finite differences {fd}", div[i]);
        }
        assert!(div.iter().any(|v| v.abs() > 1e-3), "a divergence this small would not test the trace: {div:?}");
    }
}

/// Every coupling returns rows that are isometric copies of base samples (same norms as a
/// multiset, centred), and the total transport cost is ordered as the minimisations nest:
/// aligned OT ≤ OT ≤ independent (OT minimises over pairings, the alignment over a superset
/// of maps that includes the identity).
#[test]
fn couplings_keep_base_samples_and_order_the_costs() {
    let (b, d) = (12, 2);
    let base = Base::MeanFreeNormal { particles: 4, spatial_dim: d };
    let mut rng = StdRng::seed_from_u64(5);
    let x0: Vec<f64> = base.sample(b, &mut rng).iter().copied().collect();
    let x1: Vec<f64> = data(b, 6).iter().copied().collect();
    let w = 8;
    let total = |p: &[f64]| (0..b).map(|j| sq_dist(&p[j * w..(j + 1) * w], &x1[j * w..(j + 1) * w])).sum::<f64>();
    let norms = |p: &[f64]| {
        let mut n: Vec<f64> = p.chunks(w).map(|r| r.iter().map(|v| v * v).sum::<f64>()).collect();
        n.sort_by(f64::total_cmp);
        n
    };
    let ind = couple(&x0, &x1, b, d, EqCoupling::Independent).unwrap();
    let ot = couple(&x0, &x1, b, d, EqCoupling::Ot).unwrap();
    let al = couple(&x0, &x1, b, d, EqCoupling::AlignedOt { rounds: 2, reflections: true }).unwrap();
    let (ci, co, ca) = (total(&ind), total(&ot), total(&al));
    assert!(co <= ci + 1e-12 && ca <= co + 1e-12, "costs: independent {ci}, OT {co}, aligned OT {ca}");
    assert!(ca < 0.9 * co, "alignment should shorten the paths of random pairs: {ca} vs {co}");
    for p in [&ot, &al] {
        for (a, b) in norms(p).iter().zip(norms(&x0)) {
            assert!((a - b).abs() < 1e-10, "a coupled row is not an isometric copy of a base sample");
        }
        for r in p.chunks(w) {
            for k in 0..d {
                assert!((0..4).map(|i| r[i * d + k]).sum::<f64>().abs() < 1e-10, "a coupled row is not centred");
            }
        }
    }
}

/// A field that is exactly zero (`coord_init_scale = 0`) is the identity flow: `log q` is the
/// base's mean-free normal log-density. A field far from zero: the log-density computed while
/// sampling (forward solve) equals the one from scoring the samples (reverse solve), and is
/// invariant under rotating, reflecting and relabelling the samples (the base is, the field is
/// equivariant).
#[test]
fn log_densities_agree_and_are_invariant() {
    let device = cpu();
    let mut cfg = small_config(1);
    cfg.egnn.coord_init_scale = 0.0;
    let model = EqFmTrainer::new(data(8, 1).view(), &cfg, &device).unwrap().model();
    let mut rng = StdRng::seed_from_u64(7);
    let x = data(6, 3);
    let lq = model.log_prob(x.view()).unwrap();
    let base = cfg.base();
    let mut xc = x.clone();
    for mut r in xc.rows_mut() {
        for k in 0..2 {
            let m = (0..4).map(|i| r[i * 2 + k]).sum::<f64>() / 4.0;
            (0..4).for_each(|i| r[i * 2 + k] -= m);
        }
    }
    let lb = base.log_prob(xc.view()).unwrap();
    for (a, b) in lq.iter().zip(&lb) {
        assert!((a - b).abs() < 1e-12, "identity flow: {a} vs base {b}");
    }

    let cfg = small_config(1);
    let trainer = EqFmTrainer::new(data(8, 1).view(), &cfg, &device).unwrap();
    let model = trainer.model();
    let (xs, lq) = model.sample(10, &mut rng).unwrap();
    let lp = model.log_prob(xs.view()).unwrap();
    let base_lp = base.log_prob(xs.view()).unwrap();
    assert!(lq.iter().zip(&base_lp).any(|(a, b)| (a - b).abs() > 1e-2), "the flow is too close to the identity to test");
    for (a, b) in lq.iter().zip(&lp) {
        assert!((a - b).abs() < 1e-6, "sampling log q {a} vs scoring {b}");
    }
    // Rotate by 0.7 rad, reflect the x axis, swap particles 0 and 2.
    let (c, s) = (0.7f64.cos(), 0.7f64.sin());
    let moved = Array2::from_shape_fn(xs.dim(), |(r, k)| {
        let (i, a) = (k / 2, k % 2);
        let j = [2, 1, 0, 3][i];
        let (px, py) = (-xs[[r, j * 2]], xs[[r, j * 2 + 1]]);
        if a == 0 {
            c * px - s * py
        } else {
            s * px + c * py
        }
    });
    let lm = model.log_prob(moved.view()).unwrap();
    for (a, b) in lp.iter().zip(&lm) {
        assert!((a - b).abs() < 1e-6, "log q not invariant: {a} vs {b}");
    }
}

/// The other likelihood estimators on a flow far from the identity. Hutchinson: the same base
/// draws give the same samples, and its log-density estimate scatters around the exact one with
/// mean zero (4 standard errors). Flow perturbation: unbiased weights, so the importance
/// estimate of `Z = ∫ exp(−|x|²/(2s²))` over the centre-of-mass-free subspace
/// (`(2πs²)^((N−1)d/2)`, analytic) is right within 4 standard errors, as is the exact trace's.
#[test]
fn hutchinson_and_flow_perturbation_weights() {
    let device = cpu();
    let n = 400;
    // One chunk: Hutchinson draws its probe seed per chunk, which would shift later base draws.
    let cfg = EqFmConfig { chunk: n, ..small_config(1) };
    let model = EqFmTrainer::new(data(8, 1).view(), &cfg, &device).unwrap().model();
    let (xe, le) = model.sample(n, &mut StdRng::seed_from_u64(5)).unwrap();
    let hutch = model.with_likelihood(Likelihood::Hutchinson { probes: 1 }).unwrap();
    let (xh, lh) = hutch.sample(n, &mut StdRng::seed_from_u64(5)).unwrap();
    assert!(xe.iter().zip(&xh).all(|(a, b)| (a - b).abs() < 1e-6), "Hutchinson changed the samples");
    let diff: Vec<f64> = le.iter().zip(&lh).map(|(a, b)| b - a).collect();
    let (m, se) = mean_se(&diff);
    assert!(se > 1e-4, "Hutchinson's estimate should scatter (se {se})");
    assert!(m.abs() < 4.0 * se, "Hutchinson log q − exact: mean {m} ± {se}");

    let s2 = 0.25f64;
    let z = (2.0 * std::f64::consts::PI * s2).powi(3);
    let weights = |x: &Array2<f64>, lq: &ndarray::Array1<f64>| -> Vec<f64> {
        x.rows().into_iter().zip(lq).map(|(r, l)| (-r.iter().map(|v| v * v).sum::<f64>() / (2.0 * s2) - l).exp()).collect()
    };
    let (m, se) = mean_se(&weights(&xe, &le));
    assert!((m - z).abs() < 4.0 * se, "exact trace: Z {m} ± {se} vs {z}");
    let fp = model.with_likelihood(Likelihood::FlowPerturbation(Perturbation { sigma: 0.01, steps: 40 })).unwrap();
    let (xf, lf) = fp.sample(n, &mut StdRng::seed_from_u64(6)).unwrap();
    let (m, se) = mean_se(&weights(&xf, &lf));
    assert!((m - z).abs() < 4.0 * se, "flow perturbation: Z {m} ± {se} vs {z}");
    // The samples stay centred (the noise is mean-free).
    assert!(xf.rows().into_iter().all(|r| (0..2).all(|k| (0..4).map(|i| r[i * 2 + k]).sum::<f64>().abs() < 1e-9)));
    assert!(matches!(model.with_likelihood(Likelihood::Hutchinson { probes: 0 }), Err(Error::InvalidArgument { .. })));
    assert!(matches!(model.with_likelihood(Likelihood::FlowPerturbation(Perturbation { sigma: -1.0, steps: 4 })), Err(Error::InvalidArgument { .. })));
}

fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (m, (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt())
}

/// A run stopped after 3 steps and resumed to 6 ends with the same parameters, bit for bit,
/// as an uninterrupted 6-step run; the checkpoint loads as a model.
#[test]
fn resume_is_exact() {
    let device = cpu();
    let x = data(32, 9);
    let dir = std::env::temp_dir().join(format!("physflow-eqfm-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (straight, _) = train_eqfm(x.view(), &small_config(6), &device, &mut Run::quiet()).unwrap();
    // The same settings (the cosine schedule depends on the total), stopped by a callback.
    let stop = |_: &EqFmTrainer, i: &StepInfo<'_>| Ok(if i.step >= 3 { Control::Stop } else { Control::Continue });
    let (_, first) = train_eqfm(x.view(), &small_config(6), &device, &mut Run::quiet().with_checkpoint(&dir).on(Every::Steps(1), stop)).unwrap();
    assert_eq!(first.steps_run, 3);
    let (resumed, rep) = train_eqfm(x.view(), &small_config(6), &device, &mut Run::quiet().with_checkpoint(&dir)).unwrap();
    assert_eq!(rep.steps_run, 3);
    let params = |m: &physflow::boltzmann::EqFmModel| -> Vec<f64> {
        let probe = Tensor::<2>::from_data(TensorData::new((0..16).map(|i| i as f64 * 0.1).collect::<Vec<_>>(), [2, 8]), &device);
        m.egnn().velocity(&Time::Shared(0.4), probe).unwrap().to_vec_as()
    };
    assert_eq!(params(&straight), params(&resumed), "resumed run differs from the uninterrupted one");
    let loaded = load_eqfm(&dir, &device).unwrap();
    assert_eq!(params(&loaded), params(&resumed));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bad input gets a typed error: data of another width, non-finite data, an energy on another
/// width, zero chunk.
#[test]
fn bad_input_is_refused() {
    let device = cpu();
    let cfg = small_config(1);
    let wrong = Array2::<f64>::zeros((4, 6));
    assert!(matches!(EqFmTrainer::new(wrong.view(), &cfg, &device), Err(Error::Shape { .. })));
    let mut nan = data(4, 1);
    nan[[2, 3]] = f64::NAN;
    assert!(matches!(EqFmTrainer::new(nan.view(), &cfg, &device), Err(Error::NonFiniteInput { .. })));
    assert!(matches!(EqFmTrainer::new(data(4, 1).view(), &EqFmConfig { chunk: 0, ..cfg.clone() }, &device), Err(Error::InvalidArgument { .. })));
    let model = EqFmTrainer::new(data(4, 1).view(), &cfg, &device).unwrap().model();
    let lj = physflow::energy::LennardJones::lj13();
    assert_eq!(lj.dim(), 39);
    assert!(matches!(model.sample_weighted(&lj, 1.0, 4, &mut StdRng::seed_from_u64(0)), Err(Error::Shape { .. })));
    assert!(matches!(model.log_prob(wrong.view()), Err(Error::Shape { .. })));
    let dw4 = MultiDoubleWell::dw4();
    let (w, skipped) = model.sample_weighted(&dw4, 1.0, 4, &mut StdRng::seed_from_u64(0)).unwrap();
    assert_eq!(skipped, 0);
    assert!(w.log_w.iter().all(|l| l.is_finite()));
}

/// The likelihood choice reads from TOML as the CLI's config files write it; a misspelt field
/// is refused.
#[test]
fn likelihood_settings_parse() {
    let c: EqFmConfig = toml::from_str("likelihood = { kind = \"flow_perturbation\", sigma = 0.02, steps = 7 }").unwrap();
    assert_eq!(c.likelihood, Likelihood::FlowPerturbation(Perturbation { sigma: 0.02, steps: 7 }));
    let c: EqFmConfig = toml::from_str("likelihood = { kind = \"hutchinson\", probes = 2 }").unwrap();
    assert_eq!(c.likelihood, Likelihood::Hutchinson { probes: 2 });
    assert!(toml::from_str::<EqFmConfig>("likelihood = { kind = \"flow_perturbation\", sigma = 0.02, step = 7 }").is_err());
}
