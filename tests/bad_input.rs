//! Bad input, one row per case: each public call below used to panic (or would, without its
//! check) and must now return the typed error named in the row, with the setting or shape in
//! its message. docs/reliability.md lists the same cases. Every case runs on the f32 CPU
//! device (burn fixes the CPU's float type at its first tensor, so the file keeps to one).

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array1, Array2, ArrayView2};
use physflow::boltzmann::{self, reweight};
use physflow::energy::Energy;
use physflow::energy::{LennardJones, MultiDoubleWell};
use physflow::flows::{AffineCoupling, Flow, FlowConfig, Mask, SplineCoupling};
use physflow::fm::problems::GaussianToGaussian;
use physflow::fm::{BaseKind, Diffusion, FmModel, InterpolantSde, NetConfig, Objective, ProbabilityPath, ScoreSource};
use physflow::io::pdebench::{Grouped, Seed};
use physflow::nn::{ConvNetConfig, FieldNetConfig, FnoConfig, MlpConfig};
use physflow::ode::{self, Gradient, Options};
use physflow::sde::{self, GridBrownian, SdeGradient, SdeOptions, SdeSolver};
use physflow::{Error, Result};

/// The variant's name, for the table.
fn variant(e: &Error) -> &'static str {
    match e {
        Error::InvalidArgument { .. } => "InvalidArgument",
        Error::Shape { .. } => "Shape",
        Error::Unsupported(_) => "Unsupported",
        Error::NonFinite { .. } => "NonFinite",
        Error::Format { .. } => "Format",
        _ => "other",
    }
}

fn device() -> Device {
    Device::flex()
}

fn tensor(rows: usize, cols: usize) -> Tensor<2> {
    let v: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37).sin()).collect();
    Tensor::<2>::from_data(TensorData::new(v, [rows, cols]), &device())
}

/// An energy that returns one value too few.
struct ShortEnergy;

impl Energy for ShortEnergy {
    fn dim(&self) -> usize {
        2
    }
    fn energy(&self, x: ArrayView2<f64>) -> Array1<f64> {
        Array1::zeros(x.nrows().saturating_sub(1))
    }
    fn energy_and_force(&self, x: ArrayView2<f64>) -> (Array1<f64>, Array2<f64>) {
        (self.energy(x), Array2::zeros(x.dim()))
    }
    fn name(&self) -> String {
        "short".into()
    }
}

type Case = (&'static str, Box<dyn Fn() -> Result<()>>, &'static str, &'static str);

fn cases() -> Vec<Case> {
    let fno = |f: FnoConfig| FieldNetConfig::Fno(f);
    vec![
        (
            "FNO modes beyond the grid's Nyquist frequency",
            Box::new(move || fno(FnoConfig { modes: [12, 12], padding: [0, 0], ..FnoConfig::default() }).check_grid(16, 16)),
            "InvalidArgument",
            "modes",
        ),
        ("FNO of zero width", Box::new(|| FnoConfig { width: 0, ..FnoConfig::default() }.init(0, &device()).map(drop)), "InvalidArgument", "width 0"),
        (
            "convolution with an even kernel",
            Box::new(|| ConvNetConfig { kernel: [4, 3], ..ConvNetConfig::default() }.init(0, &device()).map(drop)),
            "InvalidArgument",
            "odd",
        ),
        (
            "convolutional field net of zero width, checked with the grid",
            Box::new(|| FieldNetConfig::Conv(ConvNetConfig { width: 0, ..ConvNetConfig::default() }).check_grid(8, 8)),
            "InvalidArgument",
            "width",
        ),
        ("MLP with one size", Box::new(|| MlpConfig::new(vec![2]).init(0, &device()).map(drop)), "InvalidArgument", ""),
        (
            "MLP flat parameters of the wrong length",
            Box::new(|| MlpConfig::new(vec![2, 4, 2]).init(0, &device())?.with_flat_params(&[0.0; 5]).map(drop)),
            "Shape",
            "flat MLP parameters",
        ),
        (
            "ODE state narrower than the MLP field",
            Box::new(|| {
                let mlp = MlpConfig::new(vec![3, 8, 3]).init(0, &device())?;
                ode::solve(&mlp.field(), tensor(4, 2), &[0.0, 1.0], &Options::default()).map(drop)
            }),
            "Shape",
            "MLP field",
        ),
        (
            "MLP field that does not map a state to its own width",
            Box::new(|| {
                let mlp = MlpConfig::new(vec![2, 8, 3]).init(0, &device())?;
                ode::solve(&mlp.field(), tensor(4, 2), &[0.0, 1.0], &Options::default()).map(drop)
            }),
            "InvalidArgument",
            "maps 2 to 3",
        ),
        (
            "flow-matching sample of the wrong width",
            Box::new(|| {
                let net = NetConfig { hidden: vec![8], ..NetConfig::default() };
                let model = FmModel::new(2, 0, &net, ProbabilityPath::Linear { sigma: 0.0 }, BaseKind::Gaussian, Objective::Velocity, 0)?;
                ode::solve(&model.field(), tensor(4, 3), &[0.0, 1.0], &Options::default()).map(drop)
            }),
            "Shape",
            "flow-matching state",
        ),
        (
            "gradients through the stochastic-interpolant sampler",
            Box::new(|| {
                let g = GaussianToGaussian { mu: vec![1.0, 0.0], s: 0.5 };
                let (velocity, path) = (g.velocity(), ProbabilityPath::Linear { sigma: 0.0 });
                let sde_field = InterpolantSde {
                    velocity: &velocity,
                    score: ScoreSource::<physflow::fm::ModelField>::FromVelocity,
                    diffusion: Diffusion::Constant { eps: 0.5 },
                    path: &path,
                    base: BaseKind::Gaussian,
                };
                let bm = GridBrownian::new(0.0, 0.1, 10, [4, 2], 0)?;
                let opts = SdeOptions::fixed(SdeSolver::EulerHeun, 0.1);
                sde::sdeint_for_grad(&sde_field, tensor(4, 2), &[0.0, 1.0], &bm, &opts, SdeGradient::Adjoint).map(drop)
            }),
            "Unsupported",
            "no vector-Jacobian products",
        ),
        (
            "gradients through a field that has no VJP (as the forward-only fields)",
            Box::new(|| {
                // A field that says it has no VJP, as the forward-only fields do.
                struct Forward;
                impl ode::VectorField<2> for Forward {
                    type Params = ();
                    type Saved = ();
                    fn eval(&self, _: &ode::Time, y: &Tensor<2>) -> Tensor<2> {
                        y.clone()
                    }
                    fn eval_saving(&self, t: &ode::Time, y: &Tensor<2>) -> (Tensor<2>, ()) {
                        (self.eval(t, y), ())
                    }
                    fn has_vjp(&self) -> bool {
                        false
                    }
                    fn vjp_saved(&self, _: &(), _: &Tensor<2>, _: Option<(&mut (), f64)>) -> Tensor<2> {
                        unreachable!("has_vjp is false")
                    }
                    fn zero_params(&self) {}
                }
                ode::solve_for_grad(&Forward, tensor(2, 2), &[0.0, 1.0], &Options::default(), Gradient::Direct).map(drop)
            }),
            "Unsupported",
            "no vector-Jacobian product",
        ),
        (
            "flow parameters of the wrong length",
            Box::new(|| {
                let mut flow = FlowConfig::neural_spline(2, vec![8], 4, 3.0).build(2, 0)?;
                flow.set_params(&[0.0; 3])
            }),
            "Shape",
            "",
        ),
        ("coupling mask on one coordinate", Box::new(|| Mask::parity(1, 0).map(drop)), "InvalidArgument", "dim ≥ 2"),
        (
            "affine coupling with a negative scale bound",
            Box::new(|| AffineCoupling::new(Mask::parity(2, 0)?, &[4], -1.0, 0).map(drop)),
            "InvalidArgument",
            "scale_bound",
        ),
        ("spline coupling with one bin", Box::new(|| SplineCoupling::new(Mask::parity(2, 0)?, &[4], 1, 3.0, 0).map(drop)), "InvalidArgument", "bins"),
        (
            "coupling mask that is not a partition",
            Box::new(|| AffineCoupling::new(Mask { cond: vec![0, 0], trans: vec![1] }, &[4], 1.0, 0).map(drop)),
            "InvalidArgument",
            "partition",
        ),
        ("empty ensemble's moments", Box::new(|| physflow::pde::ensemble_moments(&Array2::<f64>::zeros((0, 4)).view()).map(drop)), "Shape", "ensemble"),
        (
            "ensemble with neither parameters nor initial states",
            Box::new(|| {
                let sys = physflow::sim::systems::by_name("robertson")?;
                physflow::sim::ensemble(sys.as_ref(), None, None, &[0.0, 1.0], &Default::default(), false).map(drop)
            }),
            "InvalidArgument",
            "give parameter sets",
        ),
        (
            "grouped PDEBench layout with zero channels",
            Box::new(|| {
                let g = Grouped { seeds: vec![Seed { name: "0000".into(), shape: vec![2, 3, 0], data: vec![] }], ..Grouped::default() };
                g.to_single().map(drop)
            }),
            "Shape",
            "channel",
        ),
        (
            "particle energy in nine dimensions",
            Box::new(|| {
                let lj = LennardJones { spatial_dim: 9, ..LennardJones::cluster(3) };
                physflow::energy::evaluate(&lj, Array2::zeros((2, 27)).view()).map(drop)
            }),
            "InvalidArgument",
            "1 ≤ d ≤ 8",
        ),
        (
            "configurations of the wrong width for DW4",
            Box::new(|| physflow::energy::evaluate(&MultiDoubleWell::dw4(), Array2::zeros((2, 6)).view()).map(drop)),
            "Shape",
            "configurations",
        ),
        (
            "a user energy returning the wrong number of values",
            Box::new(|| physflow::energy::evaluate_energy(&ShortEnergy, Array2::zeros((3, 2)).view()).map(drop)),
            "Shape",
            "energies returned by `short`",
        ),
        (
            "MALA on an energy that returns too few values",
            Box::new(|| {
                let cfg = boltzmann::mcmc::MalaConfig { chains: 3, samples: 2, ..Default::default() };
                boltzmann::mcmc::mala(&ShortEnergy, Array2::zeros((3, 2)).view(), &cfg).map(drop)
            }),
            "Shape",
            "energies returned",
        ),
        (
            "a stochastic flow block toward an invalid energy",
            Box::new(|| {
                let e: Arc<dyn Energy> = Arc::new(MultiDoubleWell { spatial_dim: 0, ..MultiDoubleWell::dw4() });
                physflow::flows::StochasticBlock::new(e, Default::default()).map(drop)
            }),
            "InvalidArgument",
            "particle",
        ),
        (
            "log weights from energies and log-densities of different lengths",
            Box::new(|| reweight::log_weights(1.0, Array1::zeros(3).view(), Array1::zeros(4).view()).map(drop)),
            "Shape",
            "log weights",
        ),
        ("npy data that does not fill its shape", Box::new(|| physflow::io::npy_bytes(&[2, 3], &[0.0; 5]).map(drop)), "Shape", "npy"),
        (
            "MLP whose weights are a system's parameters, with a zero width",
            Box::new(|| physflow::nn::MlpConfig::new(vec![1, 0, 1]).glorot_flat(0).map(drop)),
            "InvalidArgument",
            "zero",
        ),
    ]
}

#[test]
fn bad_input_is_a_typed_error() {
    let mut failures = Vec::new();
    let cases = cases();
    for (name, call, want, text) in &cases {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
            Err(_) => failures.push(format!("{name}: panicked")),
            Ok(Ok(())) => failures.push(format!("{name}: accepted")),
            Ok(Err(e)) => {
                if variant(&e) != *want || !e.to_string().contains(text) {
                    failures.push(format!("{name}: expected {want} containing `{text}`, got {} `{e}`", variant(&e)));
                } else {
                    eprintln!("ok  {name}: {e}");
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
