//! Benchmark B5, shared by `benches/b5.rs` (criterion) and `examples/bench_b5.rs` (JSON lines
//! for the side-by-side comparison in `benches/compare/`): MLP 2→64→64→2 (tanh), batch 256,
//! y0 ~ N(0, I), 10 output times in [0, 1], f32, loss = MSE to a fixed target,
//! one forward solve + backward pass.

use burn::tensor::{Device, Distribution, Tensor};
use physflow::nn::{Mlp, MlpConfig, MlpField};
use physflow::ode::{self, Gradient, Options, Solver, Stats};

pub struct B5 {
    pub mlp: Mlp,
    pub y0: Tensor<2>,
    pub target: Vec<Tensor<2>>,
    pub times: Vec<f64>,
}

impl B5 {
    pub fn new(device: &Device, seed: u64) -> Self {
        device.seed(seed);
        let mlp = MlpConfig::new(vec![2, 64, 64, 2]).init(seed, device).expect("valid sizes");
        let y0 = Tensor::<2>::random([256, 2], Distribution::Normal(0.0, 1.0), device);
        let times: Vec<f64> = (0..10).map(|i| i as f64 / 9.0).collect();
        let target = times.iter().map(|_| Tensor::<2>::zeros([256, 2], device)).collect();
        Self { mlp, y0, target, times }
    }

    /// The problem written by `benches/compare/neural_ode.py --dump-problem` (the peers' exact
    /// weights, `y0` and times, drawn by numpy), in f32.
    pub fn from_json(device: &Device, path: &str) -> Self {
        let text = std::fs::read_to_string(path).expect("problem file");
        let v: serde_json::Value = serde_json::from_str(&text).expect("problem JSON");
        let nums = |x: &serde_json::Value| -> Vec<f64> { x.as_array().expect("array").iter().map(|n| n.as_f64().expect("number")).collect() };
        let mut flat = Vec::new();
        for layer in v["layers"].as_array().expect("layers") {
            flat.extend(nums(&layer["w"]));
            flat.extend(nums(&layer["b"]));
        }
        let mlp = MlpConfig::new(vec![2, 64, 64, 2])
            .init(0, device)
            .expect("valid sizes")
            .with_flat_params(&flat)
            .expect("the problem file has the network's parameter count");
        let y0v = nums(&v["y0"]);
        let y0 = Tensor::<2>::from_data(burn::tensor::TensorData::new(y0v, [256, 2]), device);
        let times = nums(&v["ts"]);
        let target = times.iter().map(|_| Tensor::<2>::zeros([256, 2], device)).collect();
        Self { mlp, y0, target, times }
    }

    pub fn options(solver: Solver) -> Options {
        Options::adaptive(solver, 1e-6, 1e-6)
    }

    /// One training step's worth of work: forward solve, MSE loss, backward pass.
    /// Returns the loss and the forward and backward counters.
    pub fn step(&self, field: &MlpField<'_>, solver: Solver, gradient: Gradient) -> (f64, Stats, Stats) {
        let opts = Self::options(solver);
        let (sol, tape) = ode::solve_for_grad(field, self.y0.clone(), &self.times, &opts, gradient).unwrap();
        let n = (self.times.len() * 256 * 2) as f64;
        let mut loss = 0.0;
        let cot: Vec<Tensor<2>> = sol
            .ys
            .iter()
            .zip(&self.target)
            .map(|(y, t)| {
                let d = y.clone() - t.clone();
                loss += d.clone().square().sum().into_scalar::<f64>() / n;
                d.mul_scalar(2.0 / n)
            })
            .collect();
        let g = tape.backward(&cot).unwrap();
        std::hint::black_box(&g.params);
        (loss, sol.stats, g.stats)
    }

    /// 20 forward evaluations of the field at `y0`.
    pub fn forward20(&self, field: &MlpField<'_>) {
        use physflow::ode::{Time, VectorField};
        for _ in 0..20 {
            let f = field.eval(&Time::Shared(0.0), &self.y0);
            std::hint::black_box(f);
        }
    }
}

/// The rows of the comparison: (name, solver, gradient, burn path?).
pub fn configurations() -> Vec<(&'static str, Solver, Gradient, bool)> {
    let adj = Gradient::Adjoint(ode::AdjointOptions::default());
    let ck = Gradient::Checkpointed { checkpoints: 8 };
    vec![
        ("direct tsit5", Solver::Tsit5, Gradient::Direct, false),
        ("checkpointed tsit5", Solver::Tsit5, ck.clone(), false),
        ("adjoint tsit5", Solver::Tsit5, adj.clone(), false),
        ("direct dopri5", Solver::Dopri5, Gradient::Direct, false),
        ("checkpointed dopri5", Solver::Dopri5, ck, false),
        ("adjoint dopri5", Solver::Dopri5, adj, false),
        ("direct tsit5 (burn path)", Solver::Tsit5, Gradient::Direct, true),
    ]
}
