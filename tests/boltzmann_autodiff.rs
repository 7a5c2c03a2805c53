//! Energies written on burn tensors get their forces by autodiff (`boltzmann::Autodiff`): a
//! Lennard-Jones cluster and the 2D double well written as tensor programs, against the
//! library's hand-written energies and forces; and the force checker against finite
//! differences. A binary of its own: it makes f64 tensors on the CPU device.

use burn::tensor::{Tensor, TensorData};
use ndarray::Array2;
use physflow::energy::{check_forces, Autodiff, Energy, TensorEnergy};
use physflow::energy::{DoubleWell2D, LennardJones};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// LJ: `Σ_{i<j} ε((r_m/r)¹² − 2(r_m/r)⁶) + ½k Σ_i |x_i − x̄|²`, as a user would write it.
struct TensorLj {
    n: usize,
    d: usize,
}

impl TensorEnergy for TensorLj {
    fn dim(&self) -> usize {
        self.n * self.d
    }
    fn energy(&self, x: Tensor<2>) -> Tensor<1> {
        let (n, d) = (self.n, self.d);
        let [b, _] = x.dims();
        let p = x.reshape([b, n, d]);
        let diff = p.clone().unsqueeze_dim::<4>(2) - p.clone().unsqueeze_dim::<4>(1);
        let opts = (&diff.device(), diff.dtype());
        let eye: Vec<f64> = (0..n * n).map(|k| if k / n == k % n { 1.0 } else { 0.0 }).collect();
        let upper: Vec<f64> = (0..n * n).map(|k| if k / n < k % n { 1.0 } else { 0.0 }).collect();
        let eye = Tensor::<3>::from_data(TensorData::new(eye, [1, n, n]), opts);
        let upper = Tensor::<3>::from_data(TensorData::new(upper, [1, n, n]), opts);
        // 1 on the diagonal keeps r⁻⁶ finite there (those terms are masked out).
        let r2 = diff.square().sum_dim(3).reshape([b, n, n]) + eye;
        let s6 = r2.recip().powi_scalar(3);
        let pair = (s6.clone().square() - s6.mul_scalar(2.0)) * upper;
        let lj = pair.sum_dim(2).sum_dim(1).reshape([b]);
        let centred = p.clone() - p.mean_dim(1);
        let restraint = centred.square().sum_dim(2).sum_dim(1).reshape([b]).mul_scalar(0.5);
        lj + restraint
    }
    fn particles(&self) -> Option<(usize, usize)> {
        Some((self.n, self.d))
    }
    fn name(&self) -> String {
        format!("tensor lj{}", self.n)
    }
}

/// The 2D double well `a x₀ + b x₀² + c x₀⁴ + ½ x₁²` with the defaults (0, −4, 1).
struct TensorDoubleWell;

impl TensorEnergy for TensorDoubleWell {
    fn dim(&self) -> usize {
        2
    }
    fn energy(&self, x: Tensor<2>) -> Tensor<1> {
        let [b, _] = x.dims();
        let x0 = x.clone().narrow(1, 0, 1);
        let x1 = x.narrow(1, 1, 1);
        (x0.clone().square().mul_scalar(-4.0) + x0.powi_scalar(4) + x1.square().mul_scalar(0.5)).reshape([b])
    }
    fn name(&self) -> String {
        "tensor double well".into()
    }
}

/// Jittered LJ13 configurations near a cluster of spacing ~1 (no overlaps).
fn lj_configs(n: usize, rows: usize, rng: &mut StdRng) -> Array2<f64> {
    let side = (n as f64).cbrt().ceil() as usize;
    Array2::from_shape_fn((rows, 3 * n), |(_, c)| {
        let (i, k) = (c / 3, c % 3);
        let cell = [i % side, (i / side) % side, i / (side * side)][k] as f64;
        1.1 * cell + rng.random_range(-0.15..0.15)
    })
}

/// Energies to 1e-12 relative and forces to 1e-10 relative against the hand-written LJ13 and
/// double well (`energy`, themselves checked against finite differences in
/// `tests/boltzmann.rs`).
#[test]
fn autodiff_forces_match_hand_written_ones() {
    let mut rng = StdRng::seed_from_u64(2);
    let x = lj_configs(13, 6, &mut rng);
    let auto = Autodiff(TensorLj { n: 13, d: 3 });
    let hand = LennardJones::lj13();
    let (ua, fa) = auto.energy_and_force(x.view());
    let (uh, fh) = hand.energy_and_force(x.view());
    let rel = |a: &[f64], b: &[f64]| {
        let s = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max) / s
    };
    assert!(rel(ua.as_slice().unwrap(), uh.as_slice().unwrap()) < 1e-12, "LJ energies {ua} vs {uh}");
    assert!(rel(fa.as_slice().unwrap(), fh.as_slice().unwrap()) < 1e-10, "LJ forces differ by {}", rel(fa.as_slice().unwrap(), fh.as_slice().unwrap()));
    assert_eq!(auto.particles(), Some((13, 3)));
    let y = Array2::from_shape_fn((9, 2), |_| rng.random_range(-2.0..2.0));
    let (ua, fa) = Autodiff(TensorDoubleWell).energy_and_force(y.view());
    let (uh, fh) = DoubleWell2D::default().energy_and_force(y.view());
    assert!(rel(ua.as_slice().unwrap(), uh.as_slice().unwrap()) < 1e-12);
    assert!(rel(fa.as_slice().unwrap(), fh.as_slice().unwrap()) < 1e-12);
}

/// The force checker: correct forces pass at the finite-difference level (O(h²) truncation:
/// < 1e-6 at h = 1e-5), a force with a wrong sign on one coordinate does not, and bad input is
/// an error.
#[test]
fn force_checker_tells_right_from_wrong() {
    struct Wrong;
    impl Energy for Wrong {
        fn dim(&self) -> usize {
            2
        }
        fn energy(&self, x: ndarray::ArrayView2<f64>) -> ndarray::Array1<f64> {
            DoubleWell2D::default().energy(x)
        }
        fn energy_and_force(&self, x: ndarray::ArrayView2<f64>) -> (ndarray::Array1<f64>, Array2<f64>) {
            let (u, mut f) = DoubleWell2D::default().energy_and_force(x);
            f.column_mut(1).mapv_inplace(|v| -v);
            (u, f)
        }
        fn name(&self) -> String {
            "wrong".into()
        }
    }
    let mut rng = StdRng::seed_from_u64(3);
    let y = Array2::from_shape_fn((5, 2), |_| rng.random_range(-2.0..2.0));
    assert!(check_forces(&Autodiff(TensorDoubleWell), y.view(), 1e-5).unwrap() < 1e-6);
    assert!(check_forces(&DoubleWell2D::default(), y.view(), 1e-5).unwrap() < 1e-6);
    assert!(check_forces(&Wrong, y.view(), 1e-5).unwrap() > 1e-2);
    let x = lj_configs(13, 2, &mut rng);
    assert!(check_forces(&Autodiff(TensorLj { n: 13, d: 3 }), x.view(), 1e-5).unwrap() < 1e-6);
    assert!(matches!(check_forces(&Wrong, x.view(), 1e-5), Err(physflow::Error::Shape { .. })));
    assert!(check_forces(&Wrong, y.view(), 0.0).is_err());
}
