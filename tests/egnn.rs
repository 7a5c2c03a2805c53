//! The EGNN vector field (`nn::Egnn`): E(n)- and permutation-equivariance, translation
//! invariance, a mean-free output, gradients to every parameter. f32 on the CPU device (a
//! binary of its own: the library's unit tests configure f64).

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use physflow::host::ToHost;
use physflow::nn::{Egnn, EgnnConfig};
use physflow::ode::Time;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// A random orthogonal `d × d` matrix (Gram–Schmidt of a Gaussian matrix), with its last
/// row negated when `reflect` (determinant −1).
fn orthogonal(d: usize, reflect: bool, rng: &mut StdRng) -> Vec<Vec<f64>> {
    let mut q: Vec<Vec<f64>> = Vec::new();
    while q.len() < d {
        let mut v: Vec<f64> = (0..d).map(|_| StandardNormal.sample(rng)).collect();
        for u in &q {
            let p: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= p * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-6 {
            q.push(v.into_iter().map(|a| a / norm).collect());
        }
    }
    let det_sign = determinant_sign(&q);
    if (det_sign < 0.0) != reflect {
        q[d - 1].iter_mut().for_each(|a| *a = -*a);
    }
    q
}

fn determinant_sign(q: &[Vec<f64>]) -> f64 {
    // LU without pivoting suffices for a well-conditioned orthogonal matrix's sign only if
    // pivots are non-zero; use the permutation expansion for d ≤ 3 instead.
    match q.len() {
        1 => q[0][0].signum(),
        2 => (q[0][0] * q[1][1] - q[0][1] * q[1][0]).signum(),
        3 => {
            let m = q;
            (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))
                .signum()
        }
        _ => unreachable!("tests use d ≤ 3"),
    }
}

/// `y[b, π(i), :] = Q x[b, i, :] + c` for every particle.
fn transform(x: &[f64], b: usize, n: usize, d: usize, q: &[Vec<f64>], c: &[f64], perm: &[usize]) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for s in 0..b {
        for i in 0..n {
            for k in 0..d {
                let v: f64 = (0..d).map(|l| q[k][l] * x[(s * n + i) * d + l]).sum();
                y[(s * n + perm[i]) * d + k] = v + c[k];
            }
        }
    }
    y
}

/// `v(t, Q x + c)` with particles relabelled equals the relabelled `Q v(t, x)`, for random
/// rotations, reflections, translations and permutations, in 2D and 3D, to f32 round-off
/// (1e-5 of the largest velocity); the velocity is mean-free and not trivially zero.
#[test]
fn equivariant_to_rotations_reflections_translations_and_permutations() {
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(11);
    for (n, d) in [(4, 2), (5, 3)] {
        let cfg = EgnnConfig { particles: n, spatial_dim: d, layers: 3, hidden: 16, coord_init_scale: 1.0 };
        let net = cfg.init(7, &device).unwrap();
        let b = 3;
        let x: Vec<f64> = (0..b * n * d)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                1.5 * z
            })
            .collect();
        let t = Time::PerSample(vec![0.1, 0.5, 0.9]);
        let eval = |x: &[f64]| -> Vec<f64> {
            let xt = Tensor::<2>::from_data(TensorData::new(x.iter().map(|&v| v as f32).collect::<Vec<_>>(), [b, n * d]), &device);
            net.velocity(&t, xt).unwrap().host_vec::<f64>().unwrap()
        };
        let v = eval(&x);
        let scale = v.iter().fold(0.0f64, |m, a| m.max(a.abs()));
        assert!(scale > 1e-4, "velocity is trivially small: {scale}");
        for s in 0..b {
            for k in 0..d {
                let mean: f64 = (0..n).map(|i| v[(s * n + i) * d + k]).sum::<f64>() / n as f64;
                assert!(mean.abs() < 1e-6 * scale.max(1.0), "centre of mass moves: {mean}");
            }
        }
        for reflect in [false, true] {
            let q = orthogonal(d, reflect, &mut rng);
            let c: Vec<f64> = (0..d).map(|_| rng.random_range(-3.0..3.0)).collect();
            let mut perm: Vec<usize> = (0..n).collect();
            rand::seq::SliceRandom::shuffle(perm.as_mut_slice(), &mut rng);
            let vy = eval(&transform(&x, b, n, d, &q, &c, &perm));
            // Velocities rotate but do not translate.
            let expect = transform(&v, b, n, d, &q, &vec![0.0; d], &perm);
            let err = vy.iter().zip(&expect).map(|(a, e)| (a - e).abs()).fold(0.0, f64::max);
            assert!(err < 1e-5 * scale.max(1.0), "n={n} d={d} reflect={reflect}: equivariance error {err} (scale {scale})");
        }
    }
}

/// Gradients flow to every layer's parameters (a trainable field), and a wrong width is
/// an error naming the particle layout.
#[test]
fn trains_and_checks_widths() {
    let device = Device::flex().autodiff();
    let cfg = EgnnConfig { particles: 4, spatial_dim: 2, layers: 2, hidden: 8, coord_init_scale: 1.0 };
    let net = cfg.init(1, &device).unwrap();
    let x = Tensor::<2>::from_data(TensorData::new((0..16).map(|k| (k as f32 * 0.7).sin()).collect::<Vec<_>>(), [2, 8]), &device);
    let loss = net.velocity(&Time::Shared(0.3), x).unwrap().square().sum();
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &net);
    assert_eq!(grads.len(), num_params_tensors(&net), "every parameter gets a gradient");
    let bad = Tensor::<2>::zeros([2, 7], &device);
    assert!(matches!(net.velocity(&Time::Shared(0.0), bad), Err(physflow::Error::Shape { .. })));
    assert!(EgnnConfig { particles: 1, ..cfg.clone() }.init(0, &device).is_err());
}

fn num_params_tensors(net: &Egnn) -> usize {
    struct Count(usize);
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, _: &burn::module::Param<Tensor<D>>) {
            self.0 += 1;
        }
    }
    let mut c = Count(0);
    net.visit(&mut c);
    c.0
}
