//! Burn networks inside diffsol right-hand sides: autodiff Jacobian products
//! against hand-written ones, the hybrid model's adjoint gradient against
//! finite differences, and training that lowers a held-out loss.

use burn::tensor::Tensor;
use physflow::sim::systems::Robertson;
use physflow::sim::{self, col, AutodiffSystem, FitConfig, Integrator, Observation, Optimizer, SimOptions, System};
use physflow::studies::stiff_hybrid::{hybrid_robertson, StiffHybridConfig};

/// Robertson written with burn tensors: all four autodiff products equal the
/// hand-written ones (to rounding), and the solutions agree.
#[test]
fn autodiff_products_match_hand_written_robertson() {
    let device = physflow::device::cpu_f64().unwrap();
    let rob = Robertson::default();
    let ad = AutodiffSystem::new(
        "robertson_ad",
        rob.param_names(),
        rob.params(),
        rob.initial_state(),
        |_t: f64, y: Tensor<2>, p: Tensor<2>| {
            let (y1, y2, y3) = (col(&y, 0), col(&y, 1), col(&y, 2));
            let r1 = col(&p, 0) * y1;
            let r2 = col(&p, 1) * y2.clone() * y2.clone();
            let r3 = col(&p, 2) * y2 * y3;
            Tensor::cat(vec![r3.clone() - r1.clone(), r1 - r2.clone() - r3, r2], 1)
        },
        device,
    )
    .unwrap();
    let (y, p, t) = ([0.7, 2e-5, 0.3], rob.params(), 1.0);
    let (v, w, vp) = ([0.3, -1.0, 0.5], [1.0, 2.0, -0.5], [0.2, -0.4, 1.1]);
    let close = |a: &[f64], b: &[f64], what: &str| {
        for (x, z) in a.iter().zip(b) {
            assert!((x - z).abs() <= 1e-12 * (1.0 + z.abs()), "{what}: {a:?} vs {b:?}");
        }
    };
    let (mut a, mut b) = ([0.0; 3], [0.0; 3]);
    ad.rhs(t, &y, &p, &mut a);
    rob.rhs(t, &y, &p, &mut b);
    close(&a, &b, "rhs");
    ad.jvp(t, &y, &p, &v, &mut a);
    rob.jvp(t, &y, &p, &v, &mut b);
    close(&a, &b, "jvp");
    ad.vjp(t, &y, &p, &w, &mut a);
    rob.vjp(t, &y, &p, &w, &mut b);
    close(&a, &b, "vjp");
    ad.param_jvp(t, &y, &p, &vp, &mut a);
    rob.param_jvp(t, &y, &p, &vp, &mut b);
    close(&a, &b, "param_jvp");
    ad.param_vjp(t, &y, &p, &w, &mut a);
    rob.param_vjp(t, &y, &p, &w, &mut b);
    close(&a, &b, "param_vjp");
    let opts = SimOptions { method: Integrator::Bdf, rtol: 1e-8, atol: 1e-12, ..SimOptions::default() };
    let (sa, sb) = (sim::simulate(&ad, &[1.0, 100.0], &opts).unwrap(), sim::simulate(&rob, &[1.0, 100.0], &opts).unwrap());
    for (x, z) in sa.states.iter().zip(sb.states.iter()) {
        assert!((x - z).abs() <= 1e-10 * (1.0 + z.abs()), "{x} vs {z}");
    }
}

fn small_config() -> StiffHybridConfig {
    StiffHybridConfig {
        hidden: vec![4],
        train_y0: vec![[1.0, 0.0, 0.0]],
        test_y0: [0.9, 0.0, 0.1],
        n_obs: 6,
        t_first: 0.1,
        t_last: 20.0,
        ..StiffHybridConfig::default()
    }
}

fn data(cfg: &StiffHybridConfig, y0: [f64; 3]) -> Observation {
    let rob = Robertson::default();
    let t = cfg.times();
    let s = sim::simulate_with(&rob, &rob.p, &y0, &t, &SimOptions { rtol: 1e-10, atol: 1e-14, ..SimOptions::default() }).unwrap();
    Observation { times: t, y0: y0.to_vec(), data: s.states }
}

/// The hybrid model's loss gradient (BDF forward, BDF adjoint through burn
/// autodiff products) against central differences of tight solves.
#[test]
fn hybrid_adjoint_gradient_matches_finite_differences() {
    let device = physflow::device::cpu_f64().unwrap();
    let cfg = small_config();
    let mlp = cfg.mlp().unwrap();
    let p0 = mlp.glorot_flat(0).unwrap();
    let sys = hybrid_robertson(mlp, p0.clone(), &device).unwrap();
    let obs = vec![data(&cfg, cfg.train_y0[0])];
    let w = sim::default_weights(&obs, 3);
    let opts = SimOptions { rtol: 1e-9, atol: 1e-12, ..SimOptions::default() };
    let (_, g) = sim::loss_and_gradient(&sys, &p0, &obs, &w, &opts).unwrap();
    for k in [0, 2, 5, p0.len() - 1] {
        let h = 1e-5;
        let (mut pp, mut pm) = (p0.clone(), p0.clone());
        pp[k] += h;
        pm[k] -= h;
        // The same weighted least squares as `loss_and_gradient`, from forward solves only.
        let loss = |p: &[f64]| {
            let y = sim::simulate_with(&sys, p, &obs[0].y0, &obs[0].times, &opts).unwrap().states;
            let r = &y - &obs[0].data;
            r.rows().into_iter().map(|row| row.iter().zip(&w).map(|(v, wi)| 0.5 * wi * v * v).sum::<f64>()).sum::<f64>() / r.len() as f64
        };
        let (lp, lm) = (loss(&pp), loss(&pm));
        let fd = (lp - lm) / (2.0 * h);
        assert!((g[k] - fd).abs() < 1e-4 * (g[k].abs().max(fd.abs()) + 1e-6), "parameter {k}: adjoint {} vs FD {fd}", g[k]);
    }
}

/// A few L-BFGS iterations on one stiff training trajectory cut the loss on a
/// held-out initial state to below half its untrained value.
#[test]
fn hybrid_training_lowers_held_out_loss() {
    let device = physflow::device::cpu_f64().unwrap();
    let cfg = small_config();
    let mlp = cfg.mlp().unwrap();
    let p0 = mlp.glorot_flat(0).unwrap();
    let sys = hybrid_robertson(mlp, p0.clone(), &device).unwrap();
    let train = vec![data(&cfg, cfg.train_y0[0])];
    let test = vec![data(&cfg, cfg.test_y0)];
    let w = sim::default_weights(&train, 3);
    let fit = FitConfig { optimizer: Optimizer::Lbfgs, iterations: 4, weights: w.clone(), ..cfg.fit.clone() };
    let before = sim::loss_and_gradient(&sys, &p0, &test, &w, &fit.sim).unwrap().0;
    let res = sim::fit(&sys, &p0, &train, &fit, |_, _| {}).unwrap();
    let after = sim::loss_and_gradient(&sys, &res.params, &test, &w, &fit.sim).unwrap().0;
    assert!(res.loss_history.last().unwrap() < &res.loss_history[0], "training loss did not fall: {:?}", res.loss_history);
    assert!(after < 0.5 * before, "held-out loss {before:.3e} -> {after:.3e}");
}
