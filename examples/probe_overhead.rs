use std::time::Instant;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use physflow::host::ToHost;
use physflow::nn::fused::{FusedMlp, TimeArg};
use physflow::nn::MlpConfig;
fn main() {
    let device = Device::flex();
    let y = Tensor::<2>::random([256, 2], Distribution::Normal(0.0, 1.0), &device);
    let mlp = MlpConfig::new(vec![2, 64, 64, 2]).init(0, &device);
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(y.to_vec_as::<f32>()); }
    println!("to_vec_as: {:.2} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let v = y.to_vec_as::<f32>();
    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(Tensor::<2>::from_data(TensorData::new(v.clone(), [256, 2]), &device)); }
    println!("from_data: {:.2} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(y.clone().mul_scalar(0.5) + y.clone()); }
    println!("mul_scalar+add: {:.2} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(y.clone().square().mean().into_scalar::<f64>()); }
    println!("square.mean.into_scalar: {:.2} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let p: Vec<f32> = mlp.flat_params().into_iter().map(|x| x as f32).collect();
    let net = FusedMlp::new(vec![2, 64, 64, 2], false, p);
    let mut out = vec![0f32; 512];
    let t = Instant::now();
    for _ in 0..n { net.forward(TimeArg::None, &v, 256, &mut out); }
    println!("fused forward: {:.2} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    use physflow::ode::{Time, VectorField};
    let f = mlp.field();
    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(f.eval(&Time::Shared(0.0), &y)); }
    println!("field eval: {:.2} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
}
