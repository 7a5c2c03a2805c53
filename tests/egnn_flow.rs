//! The EGNN field as a continuous normalizing flow (`flows::ContinuousFlow` over
//! `ode::ModuleField<nn::Egnn>`): the exact-divergence log-determinant equals that of the
//! solved map's Jacobian, and the map keeps the centre of mass. f64 on the CPU (a binary of
//! its own: it configures the CPU device for f64 before any tensor is made).

mod common;

use common::log_abs_det;
use ndarray::{Array1, Array2};
use physflow::flows::{ContinuousFlow, Flow};
use physflow::fm::Trace;
use physflow::nn::EgnnConfig;
use physflow::ode::{ModuleField, Options, Solver};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The flow map of an EGNN field (3 particles in 2D, weights at full scale so the map is far
/// from the identity): `log|det ∂x/∂z|` by the exact trace integrated along the solve equals
/// `log|det|` of the central-difference Jacobian of the solved map (6 × 6). Because the field
/// is translation-invariant and mean-free, the map moves the centre of mass not at all and its
/// Jacobian is the identity along it, so the full-space determinant is the mean-free
/// subspace's: the density the mean-free base needs. Inverse and log-determinants agree.
#[test]
fn exact_trace_log_det_matches_the_jacobian_of_the_solved_map() {
    let device = physflow::device::cpu_f64().unwrap();
    let cfg = EgnnConfig { particles: 3, spatial_dim: 2, layers: 2, hidden: 16, coord_init_scale: 1.0 };
    let net = cfg.init(5, &device).unwrap();
    let opts = Options::adaptive(Solver::Dopri5, 1e-10, 1e-12);
    let flow = ContinuousFlow { field: ModuleField::new(net), dim: 6, trace: Trace::Exact, options: opts };
    let mut rng = StdRng::seed_from_u64(1);
    let z = Array2::from_shape_fn((4, 6), |_| rng.random_range(-1.5..1.5));
    let (x, ld) = flow.forward(z.view()).unwrap();
    let moved = (&x - &z).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(moved > 1e-2, "the map is nearly the identity ({moved}); the test would not see a wrong trace");
    for b in 0..4 {
        for k in 0..2 {
            let com = |a: &Array2<f64>| (0..3).map(|i| a[[b, 2 * i + k]]).sum::<f64>() / 3.0;
            assert!((com(&x) - com(&z)).abs() < 1e-9, "the centre of mass moved");
        }
    }
    let f = |z: Array2<f64>| flow.forward(z.view()).unwrap().0;
    let h = 1e-5;
    for b in 0..2 {
        let z0: Array1<f64> = z.row(b).to_owned();
        let mut jac = Array2::zeros((6, 6));
        for k in 0..6 {
            let (mut zp, mut zm) = (z0.clone(), z0.clone());
            zp[k] += h;
            zm[k] -= h;
            let (fp, fm) = (f(zp.insert_axis(ndarray::Axis(0))), f(zm.insert_axis(ndarray::Axis(0))));
            for i in 0..6 {
                jac[[i, k]] = (fp[[0, i]] - fm[[0, i]]) / (2.0 * h);
            }
        }
        let fd = log_abs_det(jac);
        // Central differences of a 1e-10-tolerance solve: O(h²) + O(tol/h) ≈ 1e-5.
        assert!((fd - ld[b]).abs() < 1e-4, "sample {b}: exact-trace log-det {} vs Jacobian {fd}", ld[b]);
    }
    let (z2, ld_inv) = flow.inverse(x.view()).unwrap();
    assert!((&z2 - &z).iter().all(|e| e.abs() < 1e-7));
    assert!((&ld + &ld_inv).iter().all(|e| e.abs() < 1e-7));
}
