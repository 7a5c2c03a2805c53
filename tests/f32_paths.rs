//! f32: the fused CPU MLP path against the burn path on the default (f32) CPU device.
//! This binary never configures f64, so the device keeps burn's default f32.

use burn::tensor::{Device, Distribution, Tensor};
use physflow::host::ToHost;
use physflow::nn::MlpConfig;
use physflow::ode::{self, Gradient, Options, Solver, Time, VectorField};

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / scale
}

/// Same network, same input: fused and burn evaluations and VJPs agree to f32 round-off
/// (a few ulps of the largest entry: sums of 64 products in different orders, and the rational
/// tanh with |error| ≤ 2e-7).
#[test]
fn fused_matches_burn_in_f32() {
    let device = Device::flex();
    device.seed(3);
    let mlp = MlpConfig::new(vec![2, 64, 64, 2]).with_time().init(11, &device).unwrap();
    let y = Tensor::<2>::random([256, 2], Distribution::Normal(0.0, 1.0), &device);
    let a = Tensor::<2>::random([256, 2], Distribution::Normal(0.0, 1.0), &device);
    assert_eq!(y.dtype(), burn::tensor::DType::F32);
    let (fused, burn) = (mlp.field(), mlp.burn_field());
    let t = Time::Shared(0.25);
    let ef = fused.eval(&t, &y).to_vec_as::<f32>();
    let eb = burn.eval(&t, &y).to_vec_as::<f32>();
    assert!(max_rel(&ef, &eb) < 1e-5, "eval: {}", max_rel(&ef, &eb));
    let (mut pf, mut pb) = (fused.zero_params(), burn.zero_params());
    let vf = fused.vjp(&t, &y, &a, Some((&mut pf, 1.0))).to_vec_as::<f32>();
    let vb = burn.vjp(&t, &y, &a, Some((&mut pb, 1.0))).to_vec_as::<f32>();
    assert!(max_rel(&vf, &vb) < 1e-5, "vjp y: {}", max_rel(&vf, &vb));
    let gf: Vec<f32> = pf.to_flat().iter().map(|v| *v as f32).collect();
    let gb: Vec<f32> = pb.to_flat().iter().map(|v| *v as f32).collect();
    assert!(max_rel(&gf, &gb) < 1e-5, "vjp params: {}", max_rel(&gf, &gb));
}

/// A whole f32 solve with the direct gradient: both paths take the same steps and give the
/// same loss gradient to f32 accuracy (tolerance 1e-3 relative: the adaptive step sequence
/// is identical, the differences are round-off amplified over ~40 evaluations).
#[test]
fn f32_solve_and_gradient_agree_between_paths() {
    let device = Device::flex();
    device.seed(5);
    let mlp = MlpConfig::new(vec![2, 32, 32, 2]).init(4, &device).unwrap();
    let y0 = Tensor::<2>::random([64, 2], Distribution::Normal(0.0, 1.0), &device);
    let times = [0.0, 0.5, 1.0];
    let opts = Options::adaptive(Solver::Tsit5, 1e-5, 1e-5);
    let run = |field: &physflow::nn::MlpField<'_>| {
        let (sol, tape) = ode::solve_for_grad(field, y0.clone(), &times, &opts, Gradient::Direct).unwrap();
        let cot: Vec<Tensor<2>> = sol.ys.to_vec();
        let g = tape.backward(&cot).unwrap();
        (sol.stats.steps, sol.ys[2].to_vec_as::<f32>(), g.params.to_flat())
    };
    let (sf, yf, gf) = run(&mlp.field());
    let (sb, yb, gb) = run(&mlp.burn_field());
    assert_eq!(sf, sb, "step counts");
    assert!(max_rel(&yf, &yb) < 1e-4);
    let gf: Vec<f32> = gf.iter().map(|v| *v as f32).collect();
    let gb: Vec<f32> = gb.iter().map(|v| *v as f32).collect();
    assert!(max_rel(&gf, &gb) < 1e-3, "{}", max_rel(&gf, &gb));
}
