//! `flows::FlowModule` (the coupling flows as one burn module) against the CPU flow's
//! hand-written f64 code: values and gradients in f64. A binary of its own: it makes tensors
//! on the CPU device without configuring its default float type, which the library's unit
//! tests (some configure f64) must not share a process with.

use burn::tensor::{DType, Device, Tensor};
use ndarray::Array2;
use physflow::flows::{registered_layers, Flow, FlowConfig, FlowModule, LayerConfig as L};
use physflow::host::ToHost;
use rand::{RngExt, SeedableRng};

fn f64_cpu() -> Device {
    physflow::device::reference_cpu()
}

fn to_t(a: &Array2<f64>, device: &Device) -> Tensor<2> {
    physflow::host::tensor_from_array2(&a.view(), device, DType::F64)
}

fn max_diff(t: &Tensor<2>, a: &Array2<f64>) -> f64 {
    t.to_vec_as::<f64>().iter().zip(a.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The configurations the module covers: every layer kind, random parameters far from the
/// identity, inputs partly outside the spline bound.
fn flows() -> Vec<FlowConfig> {
    vec![
        FlowConfig::real_nvp(3, vec![16, 16]),
        FlowConfig::neural_spline(3, vec![12], 6, 2.0),
        FlowConfig {
            layers: vec![
                L::ActNorm,
                L::SplineCoupling { parity: 1, hidden: vec![8], bins: 4, bound: 1.0 },
                L::Permutation,
                L::AffineCoupling { parity: 0, hidden: vec![8, 8], scale_bound: 1.5 },
                L::LuLinear,
            ],
        },
    ]
}

/// Against the CPU `Sequential` (hand-written f64 code, itself tested against finite
/// differences in `flows::tests`), in f64: forward, inverse and their log-determinants to
/// round-off, for d = 2, 5 and 9 (the LU inverse's product formula needs 1, 3 and 4
/// squarings).
#[test]
fn forward_and_inverse_match_the_cpu_flow_in_f64() {
    let device = f64_cpu();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for dim in [2, 5, 9] {
        for cfg in flows() {
            let mut seq = cfg.build(dim, 7).unwrap();
            let p: Vec<f64> = (0..seq.num_params()).map(|_| rng.random_range(-0.5..0.5)).collect();
            seq.set_params(&p).unwrap();
            let m = FlowModule::new(&cfg, dim, 7, &p, &device, DType::F64).unwrap();
            assert_eq!(m.flat_params().unwrap(), p);
            let z = Array2::from_shape_fn((17, dim), |_| rng.random_range(-3.0..3.0));
            let (x, ld) = seq.forward(z.view()).unwrap();
            let (xt, ldt) = m.forward(to_t(&z, &device)).unwrap();
            assert!(max_diff(&xt, &x) < 1e-10, "{cfg:?} d={dim}: forward differs by {}", max_diff(&xt, &x));
            let ldt = ldt.reshape([17, 1]);
            assert!(max_diff(&ldt, &ld.clone().insert_axis(ndarray::Axis(1))) < 1e-10, "{cfg:?}: log-det");
            let (zt, ldi) = m.inverse(to_t(&x, &device)).unwrap();
            let (zc, ldc) = seq.inverse(x.view()).unwrap();
            assert!(max_diff(&zt, &zc) < 1e-9, "{cfg:?} d={dim}: inverse differs by {}", max_diff(&zt, &zc));
            assert!(max_diff(&ldi.reshape([17, 1]), &ldc.insert_axis(ndarray::Axis(1))) < 1e-9, "{cfg:?}: inverse log-det");
        }
    }
    // The registered layer set keeps the module honest about every kind being covered.
    assert_eq!(registered_layers(4, 0).unwrap().len(), 8);
}

/// Gradients by burn's autodiff against the CPU flow's hand-written VJPs, in f64, for a
/// loss that uses the outputs and the log-determinant of both directions.
#[test]
fn autodiff_gradients_match_the_hand_written_vjps() {
    let device = f64_cpu().autodiff();
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let dim = 4;
    for cfg in flows() {
        let mut seq = cfg.build(dim, 2).unwrap();
        let p: Vec<f64> = (0..seq.num_params()).map(|_| rng.random_range(-0.5..0.5)).collect();
        seq.set_params(&p).unwrap();
        let z = Array2::from_shape_fn((11, dim), |_| rng.random_range(-2.5..2.5));
        let xb = Array2::from_shape_fn((11, dim), |_| rng.random_range(-1.0..1.0));
        let lb = ndarray::Array1::from_shape_fn(11, |_| rng.random_range(-1.0..1.0));
        for inverse in [false, true] {
            let mut pb = vec![0.0; p.len()];
            let zb = if inverse {
                seq.inverse_vjp(z.view(), xb.view(), lb.view(), &mut pb).unwrap()
            } else {
                seq.forward_vjp(z.view(), xb.view(), lb.view(), &mut pb).unwrap()
            };
            let m = FlowModule::new(&cfg, dim, 2, &p, &device, DType::F64).unwrap();
            let zt = to_t(&z, &device).require_grad();
            let (x, ld) = if inverse { m.inverse(zt.clone()).unwrap() } else { m.forward(zt.clone()).unwrap() };
            let loss = (x * to_t(&xb, &device)).sum() + (ld.reshape([11, 1]) * to_t(&lb.clone().insert_axis(ndarray::Axis(1)), &device)).sum();
            let grads = loss.backward();
            let gz = zt.grad(&grads).unwrap();
            let diff = gz.to_vec_as::<f64>().iter().zip(zb.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(diff < 1e-10, "{cfg:?} inverse={inverse}: input cotangent differs by {diff}");
            let gp = burn::optim::GradientsParams::from_grads(grads, &m);
            let flat = grads_flat(&m, &gp);
            let diff = flat.iter().zip(&pb).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(diff < 1e-10, "{cfg:?} inverse={inverse}: parameter cotangent differs by {diff}");
        }
    }
}

fn grads_flat(m: &FlowModule, gp: &burn::optim::GradientsParams) -> Vec<f64> {
    m.flat_grads(gp).unwrap()
}

#[test]
fn bad_parameter_counts_and_widths_are_errors() {
    let cfg = FlowConfig::neural_spline(2, vec![8], 4, 2.0);
    let n = cfg.build(3, 0).unwrap().num_params();
    let device = f64_cpu();
    assert!(matches!(FlowModule::new(&cfg, 3, 0, &vec![0.0; n + 1], &device, DType::F64), Err(physflow::Error::Shape { .. })));
    assert!(matches!(FlowModule::new(&cfg, 3, 0, &vec![0.0; n - 1], &device, DType::F64), Err(physflow::Error::Shape { .. })));
    let m = FlowModule::new(&cfg, 3, 0, &vec![0.0; n], &device, DType::F64).unwrap();
    assert!(matches!(m.forward(Tensor::<2>::zeros([2, 4], (&device, DType::F64))), Err(physflow::Error::Shape { .. })));
}
