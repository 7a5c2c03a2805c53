//! The neural-SDE benchmark, shared by `benches/sde.rs` (criterion) and `examples/bench_sde.rs`
//! (JSON lines for the side-by-side comparison in `benches/compare/`): state dim 4, batch 256,
//! drift MLP 4→64→64→4 (tanh), diagonal diffusion MLP 4→64→4 (tanh, then sigmoid), t ∈ [0, 1],
//! 100 fixed steps, loss = mean(y(1)²), f32; one forward solve + backward pass, for each
//! gradient path.

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use physflow::nn::{Mlp, MlpConfig};
use physflow::ode::Stats;
use physflow::sde::{sdeint_for_grad, BrownianPath, GridBrownian, NeuralSde, SdeGradient, SdeOptions, SdeSolver, Sigmoid, VirtualBrownianTree};

pub const BATCH: usize = 256;
pub const DIM: usize = 4;
pub const STEPS: usize = 100;

pub struct SdeBench {
    pub drift: Mlp,
    pub diffusion: Mlp,
    pub y0: Tensor<2>,
}

/// Which Brownian path a row uses; both are built inside the timed step, as a user would.
#[derive(Clone, Copy, Debug)]
pub enum Path {
    /// `GridBrownian` on the 100-step grid.
    Grid,
    /// `VirtualBrownianTree` with tol = 1e-3 (as the diffrax rows).
    Tree,
}

/// The rows: name, solver, gradient path, Brownian path.
pub fn configurations() -> Vec<(&'static str, SdeSolver, SdeGradient, Path)> {
    vec![
        ("euler direct", SdeSolver::EulerMaruyama, SdeGradient::Direct, Path::Grid),
        ("euler direct (tree)", SdeSolver::EulerMaruyama, SdeGradient::Direct, Path::Tree),
        ("euler-heun direct", SdeSolver::EulerHeun, SdeGradient::Direct, Path::Grid),
        ("euler-heun stochastic adjoint", SdeSolver::EulerHeun, SdeGradient::Adjoint, Path::Grid),
        ("reversible heun adjoint", SdeSolver::ReversibleHeun, SdeGradient::Reversible, Path::Grid),
        ("reversible heun adjoint (tree)", SdeSolver::ReversibleHeun, SdeGradient::Reversible, Path::Tree),
    ]
}

impl SdeBench {
    pub fn new(device: &Device, seed: u64) -> Self {
        device.seed(seed);
        let drift = MlpConfig::new(vec![DIM, 64, 64, DIM]).init(seed, device).expect("valid sizes");
        let diffusion = MlpConfig::new(vec![DIM, 64, DIM]).init(seed + 1, device).expect("valid sizes");
        let y0 = Tensor::<2>::random([BATCH, DIM], Distribution::Normal(0.0, 1.0), device);
        Self { drift, diffusion, y0 }
    }

    /// The problem written by `benches/compare/sde.py --dump-problem` (the peers' exact weights
    /// and `y0`, drawn by numpy), in f32.
    pub fn from_json(device: &Device, path: &str) -> Self {
        let text = std::fs::read_to_string(path).expect("problem file");
        let v: serde_json::Value = serde_json::from_str(&text).expect("problem JSON");
        let nums = |x: &serde_json::Value| -> Vec<f64> { x.as_array().expect("array").iter().map(|n| n.as_f64().expect("number")).collect() };
        let flat = |key: &str| -> Vec<f64> {
            let mut out = Vec::new();
            for layer in v[key].as_array().expect("layers") {
                out.extend(nums(&layer["w"]));
                out.extend(nums(&layer["b"]));
            }
            out
        };
        let drift =
            MlpConfig::new(vec![DIM, 64, 64, DIM]).init(0, device).expect("valid sizes").with_flat_params(&flat("drift")).expect("drift parameter count");
        let diffusion =
            MlpConfig::new(vec![DIM, 64, DIM]).init(0, device).expect("valid sizes").with_flat_params(&flat("diffusion")).expect("diffusion parameter count");
        let y0 = Tensor::<2>::from_data(TensorData::new(nums(&v["y0"]), [BATCH, DIM]), device);
        Self { drift, diffusion, y0 }
    }

    /// One training step's worth of work: build the Brownian path, solve forward, loss
    /// `mean(y(1)²)`, backward pass. Returns the loss and the backward counters.
    pub fn step(&self, solver: SdeSolver, gradient: SdeGradient, path: Path, seed: u64) -> (f64, Stats) {
        let sde = NeuralSde::new(self.drift.field(), Sigmoid::new(self.diffusion.field()));
        let dt = 1.0 / STEPS as f64;
        let opts = SdeOptions::fixed(solver, dt);
        let times = [0.0, 1.0];
        match path {
            Path::Grid => {
                let w = GridBrownian::new(0.0, dt, STEPS, [BATCH, DIM], seed).unwrap();
                self.run(&sde, &w, &opts, &times, gradient)
            }
            Path::Tree => {
                let w = VirtualBrownianTree::new(0.0, 1.0, 1e-3, [BATCH, DIM], seed).unwrap();
                self.run(&sde, &w, &opts, &times, gradient)
            }
        }
    }

    fn run<S: physflow::sde::SdeField, B: BrownianPath>(&self, sde: &S, w: &B, opts: &SdeOptions, times: &[f64], gradient: SdeGradient) -> (f64, Stats) {
        let (ys, tape) = sdeint_for_grad(sde, self.y0.clone(), times, w, opts, gradient).unwrap();
        let n = (BATCH * DIM) as f64;
        let y1 = ys[1].clone();
        let loss = y1.clone().square().sum().into_scalar::<f64>() / n;
        let cot = vec![y1.zeros_like(), y1.mul_scalar(2.0 / n)];
        let g = tape.backward(&cot).unwrap();
        std::hint::black_box(&g.params);
        (loss, g.stats)
    }
}
