//! How a flow model is sampled: one typed choice of solver, step count and schedule for the
//! probability-flow ODE `dx/dt = b(t, x)` from `t = 0` to `1`, written to TOML/JSON and saved
//! beside a model (`sampler.json` in its checkpoint directory), so a grid fitted once
//! ([`super::StepErrors`]) travels with the model it was fitted to.
//!
//! ```toml
//! [sampler]
//! kind = "dpm"
//! solver = "dpmpp_2m"
//! steps = 8
//! schedule = { kind = "uniform" }
//! ```

use std::path::Path;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::bespoke::BespokeSolver;
use super::dpm::{dpm_solve, DpmSolver};
use super::path::Interpolant;
use super::schedule::Schedule;
use crate::host::ToHost;
use crate::ode::{self, Options, Solver, VectorField};
use crate::{Error, Result};

/// The file a sampler is saved to in a model's directory.
pub const SAMPLER_FILE: &str = "sampler.json";

/// A sampler of the probability-flow ODE on `[0, 1]` (module docs). Serde:
/// `{ kind = "ode", solver = "heun", steps = 4 }`, `{ kind = "dpm", solver = "dpmpp_2m",
/// steps = 8 }`, `{ kind = "bespoke", base = "midpoint", steps = 4, t = [...], ... }`,
/// `{ kind = "adaptive", solver = "tsit5", rtol = 1e-6, atol = 1e-8 }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Sampler {
    /// A Runge–Kutta solver of [`crate::ode`], one step per interval of the schedule
    /// ([`crate::ode::StepSize::Grid`]): `steps × stages` evaluations.
    Ode {
        /// The Runge–Kutta method.
        solver: Solver,
        /// Steps (`> 0`).
        steps: usize,
        /// Where the steps go (default equal steps).
        #[serde(default)]
        schedule: Schedule,
    },
    /// An exponential integrator of [`super::dpm`] for the model's (noise-free) path:
    /// `steps × evaluations_per_step` evaluations.
    Dpm {
        /// The DPM-Solver variant.
        solver: DpmSolver,
        /// Steps (`> 0`).
        steps: usize,
        /// Where the steps go (default equal steps).
        #[serde(default)]
        schedule: Schedule,
        /// The solve runs `[clip, 1 − clip]` (`0 ≤ clip < 0.5`; the singlestep DPM-Solver-2/3
        /// need `clip > 0`, e.g. `1e-3`). Default 0.
        #[serde(default)]
        clip: f64,
    },
    /// A bespoke solver ([`super::bespoke`]), fitted to the model by
    /// [`super::train_bespoke`]: `steps × stages` evaluations.
    Bespoke(BespokeSolver),
    /// An adaptive solve to tolerances, the reference the few-step samplers are measured
    /// against.
    Adaptive {
        /// A method with an error estimate (`bosh3`, `dopri5`, `tsit5`).
        solver: Solver,
        /// Relative tolerance.
        rtol: f64,
        /// Absolute tolerance.
        atol: f64,
    },
}

impl Default for Sampler {
    /// 100 Euler steps (torchcfm's sampler).
    fn default() -> Self {
        Sampler::Ode { solver: Solver::Euler, steps: 100, schedule: Schedule::Uniform }
    }
}

/// What [`Sampler::sample`] returns.
#[derive(Clone, Debug)]
pub struct Sampled {
    /// The samples at `t = 1` (or `1 − clip`), `[batch, d]`.
    pub x: Tensor<2>,
    /// Batched field evaluations spent.
    pub nfe: usize,
}

impl Sampler {
    /// Check the settings that do not depend on the path.
    ///
    /// # Errors
    /// `InvalidArgument` for zero steps, a bad schedule, a `clip` outside `[0, 0.5)`, or
    /// tolerances that are not positive and finite.
    pub fn validate(&self) -> Result<()> {
        match self {
            Sampler::Ode { steps, schedule, .. } | Sampler::Dpm { steps, schedule, .. } => {
                if *steps == 0 {
                    return Err(Error::invalid("sampler.steps", "a sampler needs at least one step"));
                }
                schedule.validate()?;
                if let Sampler::Dpm { clip, .. } = self {
                    if !(0.0..0.5).contains(clip) {
                        return Err(Error::invalid("sampler.clip", format!("need 0 ≤ clip < 0.5, got {clip}")));
                    }
                }
                Ok(())
            }
            Sampler::Bespoke(b) => b.validate(),
            Sampler::Adaptive { rtol, atol, .. } => {
                if !(*rtol > 0.0 && rtol.is_finite() && *atol > 0.0 && atol.is_finite()) {
                    return Err(Error::invalid("sampler.rtol, sampler.atol", format!("need positive finite tolerances, got {rtol}, {atol}")));
                }
                Ok(())
            }
        }
    }

    /// Carry `x0: [batch, d]` from `t = 0` to `t = 1` along `field`, the velocity of a model
    /// trained on `path`.
    ///
    /// # Errors
    /// As [`Self::validate`] and [`Schedule::times`]; a DPM-Solver that does not fit the
    /// path ([`dpm_solve`]); an adaptive solver without error estimate; solver errors.
    pub fn sample<F: VectorField<2>>(&self, field: &F, path: &dyn Interpolant, x0: Tensor<2>) -> Result<Sampled> {
        self.validate()?;
        match self {
            Sampler::Ode { solver, steps, schedule } => {
                let times = schedule.times(path, 0.0, 1.0, *steps)?;
                let (x, stats) = ode::solve(field, x0, &times, &Options::grid(*solver))?.into_end()?;
                Ok(Sampled { x, nfe: stats.nfe })
            }
            Sampler::Dpm { solver, steps, schedule, clip } => {
                let times = schedule.times(path, *clip, 1.0 - clip, *steps)?;
                let sol = dpm_solve(field, path, x0, &times, *solver)?;
                Ok(Sampled { x: sol.x, nfe: sol.nfe })
            }
            Sampler::Bespoke(b) => Ok(Sampled { x: b.solve(field, x0)?, nfe: b.nfe() }),
            Sampler::Adaptive { solver, rtol, atol } => {
                let (x, stats) = ode::solve(field, x0, &[0.0, 1.0], &Options::adaptive(*solver, *rtol, *atol))?.into_end()?;
                Ok(Sampled { x, nfe: stats.nfe })
            }
        }
    }

    /// Sample and score in one pass ([`super::sample_with_log_density`] through this
    /// sampler): the augmented state `[x, ℓ]` with `dℓ/dt = −∇·b` is carried by the sampler's
    /// method, so `ℓ(1)` estimates `log q₁(x(1))` from `ℓ(0) = log ρ₀(x0)` (`log_p0`, one per
    /// row) with the same steps as the samples. A bespoke solver applies its transformation to
    /// `ℓ` as to `x` (the scale cancels at `r = 1`). A DPM-Solver applies its update to `ℓ` as
    /// to `x`: that is the exponential integrator of `dℓ/dt = (α̇/α) ℓ + (−∇·b − (α̇/α) ℓ)`,
    /// an exact rewriting of `ℓ`'s equation with the path's linear part added and taken away,
    /// so `ℓ` is integrated to the solver's order (on the linear path DPM-Solver-1 is Euler for
    /// both; tests below). Returns `(x(1) [batch, d], log q₁ [batch], evaluations)`; the
    /// trace's evaluations count as one each.
    ///
    /// # Errors
    /// As [`Self::sample`]; `InvalidArgument` for zero Hutchinson probes; `Shape` for a
    /// `log_p0` of another length.
    pub fn sample_with_log_density<F: VectorField<2>>(
        &self,
        field: &F,
        path: &dyn Interpolant,
        x0: &Tensor<2>,
        log_p0: &[f64],
        trace: super::Trace,
    ) -> Result<(Vec<f64>, Vec<f64>, usize)> {
        super::sample::sample_augmented(field, x0, log_p0, trace, |aug, y0| {
            let out = self.sample(aug, path, y0)?;
            Ok((out.x, out.nfe))
        })
    }

    /// Save to `dir/sampler.json` (atomically), beside a model's checkpoint.
    ///
    /// # Errors
    /// `InvalidArgument` for a sampler that does not validate; `Io` / `Format`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.validate()?;
        crate::train::write_json(&dir.join(SAMPLER_FILE), self)
    }

    /// The sampler saved in `dir` by [`Self::save`], or `None` when there is none.
    ///
    /// # Errors
    /// `Io` / `Format` for an unreadable or foreign file; `InvalidArgument` for settings that
    /// do not validate.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let file = dir.join(SAMPLER_FILE);
        if !file.exists() {
            return Ok(None);
        }
        let s: Sampler = crate::train::read_json(&file)?;
        s.validate()?;
        Ok(Some(s))
    }
}

/// Where the states at `t = 0` of [`sample_checkpoint`] come from.
#[derive(Clone, Debug)]
pub enum BaseSamples {
    /// `n` draws of `N(0, I)` from `seed` (models with a Gaussian base).
    Gaussian {
        /// How many.
        n: usize,
        /// Seed of the draws.
        seed: u64,
    },
    /// Given states `[n, d]` (required for a model whose base is data).
    Given(ndarray::Array2<f64>),
}

/// What [`sample_checkpoint`] produced.
#[derive(Clone, Debug)]
pub struct CheckpointSamples {
    /// The samples at `t = 1`, `[n, d]`.
    pub x1: ndarray::Array2<f64>,
    /// `log q₁(x₁)` per sample, when asked for (Gaussian base only).
    pub log_density: Option<Vec<f64>>,
    /// The sampler used.
    pub sampler: Sampler,
    /// Batched field evaluations.
    pub nfe: usize,
}

/// Sample the flow-matching model saved in the checkpoint directory `dir` (written by
/// [`super::train()`]) with `sampler`, else the sampler saved beside it ([`Sampler::load`]),
/// else the default (100 Euler steps), on the CPU in f64. With `log_density`, the samples'
/// log-densities come in the same pass ([`Sampler::sample_with_log_density`], exact trace).
///
/// # Errors
/// `Io` / `Format` for an unreadable checkpoint or sampler file; `InvalidArgument` for a
/// conditional model (it needs a condition), a data-base model without given states, a
/// log-density without a Gaussian base, zero samples; `Shape` for given states of another
/// width; the sampler's errors.
pub fn sample_checkpoint(dir: &Path, sampler: Option<Sampler>, base: BaseSamples, log_density: bool) -> Result<CheckpointSamples> {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let model = super::load_model(dir)?;
    if model.cond_dim > 0 {
        return Err(Error::invalid(
            "model",
            format!("{} holds a conditional model (condition width {}); sampling it needs a condition", dir.display(), model.cond_dim),
        ));
    }
    let sampler = match sampler {
        Some(s) => s,
        None => Sampler::load(dir)?.unwrap_or_default(),
    };
    sampler.validate()?;
    let d = model.dim;
    let x0 = match base {
        BaseSamples::Gaussian { n, seed } => {
            if model.base != super::BaseKind::Gaussian {
                return Err(Error::invalid("x0", "the model's base is data: give the states at t = 0 (a .npy file of [n, d])"));
            }
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            ndarray::Array2::from_shape_simple_fn((n, d), || rand_distr::StandardNormal.sample(&mut rng))
        }
        BaseSamples::Given(x0) => {
            if log_density {
                return Err(Error::invalid("log_density", "given base states have no known density; log-densities need the Gaussian base"));
            }
            if x0.ncols() != d {
                return Err(Error::Shape { what: "x0".into(), expected: vec![x0.nrows(), d], got: vec![x0.nrows(), x0.ncols()] });
            }
            x0
        }
    };
    if x0.nrows() == 0 {
        return Err(Error::invalid("samples", "need at least one sample"));
    }
    let device = crate::device::reference_cpu();
    let x0t = crate::host::tensor_from_array2(&x0.view(), &device, burn::tensor::DType::F64);
    let field = model.field();
    let (x1, log_q, nfe) = if log_density {
        let flat: Vec<f64> = x0.iter().copied().collect();
        let lp0 = super::standard_normal_log_density(&flat, d);
        let (x1, lq, nfe) = sampler.sample_with_log_density(&field, &model.path, &x0t, &lp0, super::Trace::Exact)?;
        (x1, Some(lq), nfe)
    } else {
        let out = sampler.sample(&field, &model.path, x0t)?;
        (out.x.host_vec::<f64>()?, None, out.nfe)
    };
    let x1 = ndarray::Array2::from_shape_vec((x0.nrows(), d), x1).map_err(|e| Error::invalid("samples", e.to_string()))?;
    Ok(CheckpointSamples { x1, log_density: log_q, sampler, nfe })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fm::path::ProbabilityPath;
    use crate::fm::problems::GaussianToGaussian;
    use crate::host::ToHost;
    use burn::tensor::{DType, TensorData};

    fn states(x0: &[f64]) -> Tensor<2> {
        Tensor::<2>::from_data(TensorData::new(x0.to_vec(), [x0.len(), 1]).convert_dtype(DType::F64), (&crate::device::cpu_f64().unwrap(), DType::F64))
    }

    /// Each kind runs the solver it names (the same bits as calling it directly), counts its
    /// evaluations, and carries the Gaussian reference problem to its exact flow map
    /// `X₁ = μ + s x₀` within its discretisation error (adaptive rtol 1e-8: 1e-6; RK4 and
    /// DPM-Solver++(2M) at 32 steps: 1e-2, measured 2e-6 and 8e-4).
    #[test]
    fn samplers_run_the_solvers_they_name() {
        let problem = GaussianToGaussian { mu: vec![2.0], s: 0.3 };
        let field = problem.velocity();
        let path = ProbabilityPath::default();
        let x0: Vec<f64> = (0..8).map(|i| -2.0 + 0.5 * i as f64).collect();
        let exact = problem.flow_map(&x0);
        let cases = [
            (Sampler::Ode { solver: Solver::Rk4, steps: 32, schedule: Schedule::Polynomial { rho: 2.0 } }, 1e-2, Some(128)),
            (Sampler::Dpm { solver: DpmSolver::DpmPp2M, steps: 32, schedule: Schedule::Polynomial { rho: 2.0 }, clip: 0.0 }, 1e-2, Some(32)),
            (Sampler::Adaptive { solver: Solver::Tsit5, rtol: 1e-8, atol: 1e-10 }, 1e-6, None),
        ];
        for (sampler, tol, nfe) in &cases {
            let out = sampler.sample(&field, &path, states(&x0)).unwrap();
            let x: Vec<f64> = out.x.to_vec_as();
            let err = x.iter().zip(&exact).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < *tol, "{sampler:?}: error {err}");
            if let Some(n) = nfe {
                assert_eq!(out.nfe, *n, "{sampler:?}");
            }
        }
        // Bit for bit against the direct call.
        let times = Schedule::Polynomial { rho: 2.0 }.times(&path, 0.0, 1.0, 32).unwrap();
        let direct: Vec<f64> = dpm_solve(&field, &path, states(&x0), &times, DpmSolver::DpmPp2M).unwrap().x.to_vec_as();
        let via: Vec<f64> = cases[1].0.sample(&field, &path, states(&x0)).unwrap().x.to_vec_as();
        assert_eq!(direct, via);
    }

    /// One-pass log-densities through a sampler, on the Gaussian problem whose flow is affine,
    /// so `log q₁(X₁) = log N(x₀) − d log s` exactly (`target_log_density`): RK4 at 32 steps
    /// within 1e-6; a bespoke midpoint solver trained on the samples (4 steps) closer than the
    /// midpoint method's 4 steps (measured 7.3e-3 vs 1.0e-2), though it was trained on `x`
    /// only; the identity bespoke solver equal to its base method's `ode` solve to round-off;
    /// DPM-Solver-1 equal to Euler to round-off (on the linear path both are the same update);
    /// DPM-Solver++(2M) below half of Euler's error at 32 steps (measured 9.6e-3 vs 4.8e-2) and
    /// of second order in `ℓ` once asymptotic (within 1e-3 at 128 steps and at least 3×
    /// below 64 steps; measured 7.7e-4 and 3.6×, the ratio rising towards 4 from 2.6 at
    /// 16 → 32). `x` is exact here (straight paths), so the error is `ℓ`'s.
    #[test]
    fn samplers_carry_log_densities() {
        let problem = GaussianToGaussian { mu: vec![1.0, -0.5], s: 0.6 };
        let field = problem.velocity();
        let path = ProbabilityPath::default();
        let x0h: Vec<f64> = (0..16).map(|i| ((i as f64) * 0.9).sin() * 1.3).collect();
        let x0 = Tensor::<2>::from_data(TensorData::new(x0h.clone(), [8, 2]).convert_dtype(DType::F64), (&crate::device::cpu_f64().unwrap(), DType::F64));
        let lp0 = crate::fm::standard_normal_log_density(&x0h, 2);
        let error = |sampler: &Sampler| {
            let (x1, lq, _) = sampler.sample_with_log_density(&field, &path, &x0, &lp0, crate::fm::Trace::Exact).unwrap();
            let exact = problem.target_log_density(&x1);
            (lq.iter().zip(&exact).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max), lq)
        };
        let check = |sampler: &Sampler, tol: f64| {
            let (err, lq) = error(sampler);
            assert!(err < tol, "{sampler:?}: {err}");
            lq
        };
        check(&Sampler::Ode { solver: Solver::Rk4, steps: 32, schedule: Schedule::Uniform }, 1e-6);
        let (trained, _) = crate::fm::train_bespoke(&field, x0.clone(), &crate::fm::BespokeConfig::default()).unwrap();
        let (learned, _) = error(&Sampler::Bespoke(trained));
        let (midpoint, _) = error(&Sampler::Ode { solver: Solver::Midpoint, steps: 4, schedule: Schedule::Uniform });
        assert!(learned < midpoint, "bespoke {learned} vs midpoint {midpoint}");
        let a = check(&Sampler::Bespoke(crate::fm::BespokeSolver::identity(Solver::Heun, 8).unwrap()), 1e-1);
        let b = check(&Sampler::Ode { solver: Solver::Heun, steps: 8, schedule: Schedule::Uniform }, 1e-1);
        assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-12), "{a:?} vs {b:?}");
        let a = check(&Sampler::Dpm { solver: DpmSolver::Dpm1, steps: 8, schedule: Schedule::Uniform, clip: 0.0 }, 1.0);
        let b = check(&Sampler::Ode { solver: Solver::Euler, steps: 8, schedule: Schedule::Uniform }, 1.0);
        assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-12), "DPM-Solver-1 {a:?} vs Euler {b:?}");
        let dpm = |steps| Sampler::Dpm { solver: DpmSolver::DpmPp2M, steps, schedule: Schedule::Uniform, clip: 0.0 };
        let (e32, e64, e128) = (error(&dpm(32)).0, error(&dpm(64)).0, error(&dpm(128)).0);
        let euler32 = error(&Sampler::Ode { solver: Solver::Euler, steps: 32, schedule: Schedule::Uniform }).0;
        assert!(e32 < 0.5 * euler32, "DPM-Solver++(2M) at 32 steps {e32:.2e} vs Euler {euler32:.2e}");
        assert!(e128 < 1e-3 && e64 > 3.0 * e128, "DPM-Solver++(2M) log-density error: 64 steps {e64:.2e}, 128 steps {e128:.2e}");
    }

    /// TOML round trips, refusals at configuration time, and save/load beside a model.
    #[test]
    fn samplers_parse_validate_and_travel_with_a_model() {
        let toml_text = "kind = \"dpm\"\nsolver = \"dpmpp_2m\"\nsteps = 8\nschedule = { kind = \"polynomial\", rho = 2.0 }\n";
        let s: Sampler = toml::from_str(toml_text).unwrap();
        assert_eq!(s, Sampler::Dpm { solver: DpmSolver::DpmPp2M, steps: 8, schedule: Schedule::Polynomial { rho: 2.0 }, clip: 0.0 });
        let bespoke = Sampler::Bespoke(crate::fm::BespokeSolver::identity(Solver::Midpoint, 2).unwrap());
        for s in [Sampler::default(), s.clone(), Sampler::Adaptive { solver: Solver::Tsit5, rtol: 1e-6, atol: 1e-8 }, bespoke.clone()] {
            assert_eq!(toml::from_str::<Sampler>(&toml::to_string(&s).unwrap()).unwrap(), s);
            assert_eq!(serde_json::from_str::<Sampler>(&serde_json::to_string(&s).unwrap()).unwrap(), s);
        }
        let typo = toml::to_string(&bespoke).unwrap().replace("s_dot", "sdot");
        assert!(toml::from_str::<Sampler>(&typo).is_err(), "{typo}");
        for bad in
            ["kind = \"ode\"\nsolver = \"euler\"\nsteps = 8\nrtol = 1e-3\n", "kind = \"dpm\"\nsolver = \"dpm4\"\nsteps = 8\n", "kind = \"euler\"\nsteps = 8\n"]
        {
            assert!(toml::from_str::<Sampler>(bad).is_err(), "{bad}");
        }
        let path = ProbabilityPath::default();
        let field = GaussianToGaussian { mu: vec![1.0], s: 0.5 };
        let field = field.velocity();
        for bad in [
            Sampler::Ode { solver: Solver::Euler, steps: 0, schedule: Schedule::Uniform },
            Sampler::Dpm { solver: DpmSolver::Dpm2, steps: 4, schedule: Schedule::Uniform, clip: 0.0 },
            Sampler::Dpm { solver: DpmSolver::Dpm2, steps: 4, schedule: Schedule::Uniform, clip: 0.7 },
            Sampler::Ode { solver: Solver::Euler, steps: 2, schedule: Schedule::Polynomial { rho: -1.0 } },
            Sampler::Adaptive { solver: Solver::Tsit5, rtol: 0.0, atol: 1e-8 },
            Sampler::Adaptive { solver: Solver::Rk4, rtol: 1e-6, atol: 1e-8 },
        ] {
            assert!(matches!(bad.sample(&field, &path, states(&[0.0])), Err(Error::InvalidArgument { .. })), "{bad:?}");
        }
        let dir = std::env::temp_dir().join(format!("physflow-sampler-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(Sampler::load(&dir).unwrap(), None);
        let s = Sampler::Ode { solver: Solver::Euler, steps: 3, schedule: Schedule::Times { times: vec![0.0, 0.7, 0.9, 1.0] } };
        s.save(&dir).unwrap();
        assert_eq!(Sampler::load(&dir).unwrap(), Some(s));
        bespoke.save(&dir).unwrap();
        assert_eq!(Sampler::load(&dir).unwrap(), Some(bespoke));
        std::fs::write(dir.join(SAMPLER_FILE), "{\"kind\": \"ode\", \"solver\": \"euler\", \"steps\": 0}").unwrap();
        assert!(Sampler::load(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
