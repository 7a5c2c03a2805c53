//! Step schedules for few-step sampling: the `k + 1` times at which a fixed-step solver
//! evaluates the probability-flow ODE (solved with [`crate::ode::StepSize::Grid`], one step per
//! interval), and a dynamic-programming optimiser that picks the grid from the model's own
//! trajectories.
//!
//! * [`Schedule::Uniform`]: equal steps.
//! * [`Schedule::Polynomial`]: Karras et al. 2022 ("Elucidating the design space of
//!   diffusion-based generative models", eq. 5) in the distance to the data end `u = 1 − t`:
//!   `u_i = (u₀^{1/ρ} + i/k (u_k^{1/ρ} − u₀^{1/ρ}))^ρ`; `ρ = 1` is uniform, `ρ > 1` crowds the
//!   steps towards the data (EDM's default is 7). For the linear path `u = σ/(1 + σ)` in EDM's
//!   noise level `σ = α/β`.
//! * [`Schedule::LogSnr`]: equal steps in `λ(t) = 2 log(β(t)/α(t))` (Lu et al. 2022,
//!   "DPM-Solver", §3.4), between `λ` at the ends moved inwards by `clip` (λ is infinite where
//!   `α` or `β` vanishes).
//! * [`Schedule::Times`]: a given grid, e.g. one found by [`StepErrors::optimise`].
//!
//! [`StepErrors`] follows BOSS (Nguyen et al. 2024, "Bellman optimal stepsize
//! straightening of flow-matching models"): on `m + 1` equally spaced candidate times it solves
//! a few trajectories of the model accurately, measures the error `c(i, j)` of one solver step
//! from the trajectory at `t_i` to `t_j` for every pair, and chooses the `k`-step path through
//! the candidates that minimises the summed one-step errors, by dynamic programming
//! (`O(k m²)` after the `m(m + 1)/2` one-step solves).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::path::Interpolant;
use crate::ode::{self, Options, Solver, VectorField};
use crate::{Error, Result};

/// How the `k + 1` sampling times on `[t₀, t₁]` are placed (module docs). Serde:
/// `schedule = { kind = "polynomial", rho = 7.0 }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields, from = "ScheduleToml")]
pub enum Schedule {
    /// Equal steps.
    #[default]
    Uniform,
    /// EDM's polynomial in `u = 1 − t` with exponent `ρ > 0`.
    Polynomial {
        /// The exponent `ρ` (1: uniform; EDM uses 7).
        rho: f64,
    },
    /// Equal steps in log signal-to-noise ratio `λ = 2 log(β/α)`.
    LogSnr {
        /// How far inside `(0, 1)` the ends of the `λ` range are taken (`0 < clip < 0.5`).
        clip: f64,
    },
    /// Given times, strictly increasing in `[0, 1]`; their first and last are the solve's ends.
    Times {
        /// The grid `t₀ < t₁ < … < t_k`.
        times: Vec<f64>,
    },
}

/// What [`Schedule`] reads from: `uniform` as an empty table, so that a field on it is
/// refused (serde ignores unknown fields on an internally tagged unit variant).
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum ScheduleToml {
    Uniform {},
    Polynomial { rho: f64 },
    LogSnr { clip: f64 },
    Times { times: Vec<f64> },
}

impl From<ScheduleToml> for Schedule {
    fn from(s: ScheduleToml) -> Self {
        match s {
            ScheduleToml::Uniform {} => Schedule::Uniform,
            ScheduleToml::Polynomial { rho } => Schedule::Polynomial { rho },
            ScheduleToml::LogSnr { clip } => Schedule::LogSnr { clip },
            ScheduleToml::Times { times } => Schedule::Times { times },
        }
    }
}

impl Schedule {
    /// Check the parameters.
    ///
    /// # Errors
    /// `InvalidArgument` for `ρ ≤ 0`, a `clip` outside `(0, 0.5)`, or given times that are not
    /// finite, strictly increasing and inside `[0, 1]` (at least two).
    pub fn validate(&self) -> Result<()> {
        match self {
            Schedule::Uniform => Ok(()),
            Schedule::Polynomial { rho } if !(rho.is_finite() && *rho > 0.0) => Err(Error::invalid("schedule.rho", format!("need a finite ρ > 0, got {rho}"))),
            Schedule::LogSnr { clip } if !(*clip > 0.0 && *clip < 0.5) => Err(Error::invalid("schedule.clip", format!("need 0 < clip < 0.5, got {clip}"))),
            Schedule::Times { times } => check_grid(times),
            _ => Ok(()),
        }
    }

    /// The times `t₀ = τ₀ < τ₁ < … < τ_k = t₁` of a `steps`-step solve on `[t₀, t₁]` of the
    /// path `path` (used by [`Schedule::LogSnr`] only). A [`Schedule::Times`] grid gives its own
    /// times and must have `steps + 1` of them.
    ///
    /// # Errors
    /// `InvalidArgument` for zero steps, ends that are not `0 ≤ t₀ < t₁ ≤ 1`, bad parameters
    /// ([`Self::validate`]), a given grid of another length, or a path whose `λ` is not
    /// increasing on the clipped interval.
    pub fn times(&self, path: &dyn Interpolant, t0: f64, t1: f64, steps: usize) -> Result<Vec<f64>> {
        self.validate()?;
        if steps == 0 {
            return Err(Error::invalid("steps", "a schedule needs at least one step"));
        }
        if !(0.0 <= t0 && t0 < t1 && t1 <= 1.0) {
            return Err(Error::invalid("t0, t1", format!("need 0 ≤ t0 < t1 ≤ 1, got {t0}, {t1}")));
        }
        let k = steps as f64;
        let mut ts: Vec<f64> = match self {
            Schedule::Uniform => (0..=steps).map(|i| t0 + (t1 - t0) * i as f64 / k).collect(),
            Schedule::Polynomial { rho } => {
                let (a, b) = ((1.0 - t0).powf(1.0 / rho), (1.0 - t1).powf(1.0 / rho));
                (0..=steps).map(|i| 1.0 - (a + (b - a) * i as f64 / k).powf(*rho)).collect()
            }
            Schedule::LogSnr { clip } => {
                let lambda = |t: f64| {
                    let c = path.coefficients(t);
                    2.0 * (c.beta / c.alpha).ln()
                };
                let (lo, hi) = (t0.max(*clip), t1.min(1.0 - clip));
                let (la, lb) = (lambda(lo), lambda(hi));
                if !(lo < hi && la.is_finite() && lb.is_finite() && la < lb) {
                    return Err(Error::invalid(
                        "schedule",
                        format!("log-SNR steps need λ = 2 log(β/α) finite and increasing on [{lo}, {hi}], got λ = {la}, {lb}"),
                    ));
                }
                let mut ts = vec![t0];
                for i in 1..steps {
                    // λ is monotone on [lo, hi].
                    ts.push(invert_increasing(|t| Ok(lambda(t)), lo, hi, la + (lb - la) * i as f64 / k)?);
                }
                ts.push(t1);
                ts
            }
            Schedule::Times { times } => {
                if times.len() != steps + 1 {
                    return Err(Error::invalid("schedule.times", format!("a {steps}-step solve needs {} times, the schedule has {}", steps + 1, times.len())));
                }
                times.clone()
            }
        };
        // The ends exactly as asked (the closed forms round).
        if !matches!(self, Schedule::Times { .. }) {
            (ts[0], ts[steps]) = (t0, t1);
        }
        check_grid(&ts)?;
        Ok(ts)
    }
}

/// The `t ∈ [lo, hi]` where the increasing `f(t) = target`, by bisection to round-off (200
/// halvings), for time grids placed in `λ` ([`Schedule::LogSnr`], DPM-Solver's stages).
pub(crate) fn invert_increasing(mut f: impl FnMut(f64) -> Result<f64>, lo: f64, hi: f64, target: f64) -> Result<f64> {
    let (mut a, mut b) = (lo, hi);
    for _ in 0..200 {
        let m = 0.5 * (a + b);
        if f(m)? < target {
            a = m;
        } else {
            b = m;
        }
    }
    Ok(0.5 * (a + b))
}

/// Finite, strictly increasing, inside `[0, 1]`, at least two times.
pub(crate) fn check_grid(times: &[f64]) -> Result<()> {
    if times.len() < 2 || times.iter().any(|t| !(0.0..=1.0).contains(t)) || times.windows(2).any(|w| !(w[0] < w[1])) {
        return Err(Error::invalid("schedule.times", format!("need at least two strictly increasing times in [0, 1], got {times:?}")));
    }
    Ok(())
}

/// Settings of [`StepErrors::measure`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimiseSchedule {
    /// Number of candidate intervals `m` (the candidates are `m + 1` equally spaced times;
    /// `m ≥ k`).
    pub candidates: usize,
    /// The fixed-step solver the schedule is for.
    pub solver: Solver,
    /// Relative tolerance of the reference trajectories (Tsit5, adaptive; absolute `1e-3` of it).
    pub reference_rtol: f64,
}

impl Default for OptimiseSchedule {
    fn default() -> Self {
        OptimiseSchedule { candidates: 64, solver: Solver::Euler, reference_rtol: 1e-7 }
    }
}

/// What [`StepErrors::optimise`] found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimisedSchedule {
    /// The chosen grid `t₀ = τ₀ < … < τ_k = t₁` (as a schedule: [`Self::schedule`]).
    pub times: Vec<f64>,
    /// Its summed one-step errors `Σ c(i, j)` (mean squared Euclidean norm per sample).
    pub error_sum: f64,
    /// The same sum for `k` equal steps when they fall on the candidates (`m` divisible by
    /// `k`), for comparison.
    pub uniform_error_sum: Option<f64>,
}

impl OptimisedSchedule {
    /// The grid as a [`Schedule::Times`] (to save in a config and reuse).
    pub fn schedule(&self) -> Schedule {
        Schedule::Times { times: self.times.clone() }
    }
}

/// The one-step errors `c(i, j)` of a fixed-step solver along accurate trajectories of a field,
/// between every pair of `m + 1` equally spaced candidate times (module docs); measured once,
/// they give the optimised grid for every number of steps `k ≤ m` ([`Self::optimise`]).
#[derive(Clone, Debug, PartialEq)]
pub struct StepErrors {
    grid: Vec<f64>,
    /// `cost[i][j]`, `i < j`: mean over samples of `|Φ(t_i → t_j, x(t_i)) − x(t_j)|²`.
    cost: Vec<Vec<f64>>,
}

/// Accurate states of `field`'s trajectories from `x0: [batch, d]` at `times[0]`, at every
/// time of `times`: adaptive Tsit5 at relative tolerance `rtol` and absolute `1e-3·rtol`. The
/// reference that step schedules and bespoke solvers are fitted to.
///
/// # Errors
/// The solver's errors.
pub(crate) fn reference_states<F: VectorField<2>>(field: &F, x0: Tensor<2>, times: &[f64], rtol: f64) -> Result<Vec<Tensor<2>>> {
    Ok(ode::solve(field, x0, times, &Options::adaptive(Solver::Tsit5, rtol, 1e-3 * rtol))?.ys)
}

impl StepErrors {
    /// Measure the one-step errors of `cfg.solver` for `field` on `[t₀, t₁]`, along the
    /// trajectories from the states `x0: [batch, d]` at `t₀` (solved by adaptive Tsit5 at
    /// `cfg.reference_rtol`).
    ///
    /// # Errors
    /// `InvalidArgument` for no candidates, bad ends or tolerance; the solver's errors from the
    /// reference or one-step solves.
    pub fn measure<F: VectorField<2>>(field: &F, x0: Tensor<2>, t0: f64, t1: f64, cfg: &OptimiseSchedule) -> Result<Self> {
        let m = cfg.candidates;
        if m == 0 {
            return Err(Error::invalid("candidates", "need at least one candidate interval"));
        }
        if !(0.0 <= t0 && t0 < t1 && t1 <= 1.0) {
            return Err(Error::invalid("t0, t1", format!("need 0 ≤ t0 < t1 ≤ 1, got {t0}, {t1}")));
        }
        if !(cfg.reference_rtol > 0.0 && cfg.reference_rtol < 1.0) {
            return Err(Error::invalid("reference_rtol", format!("need 0 < rtol < 1, got {}", cfg.reference_rtol)));
        }
        let grid: Vec<f64> = (0..=m).map(|i| if i == m { t1 } else { t0 + (t1 - t0) * i as f64 / m as f64 }).collect();
        let reference = reference_states(field, x0, &grid, cfg.reference_rtol)?;
        let one_step = Options::grid(cfg.solver);
        let mut cost = vec![vec![f64::INFINITY; m + 1]; m + 1];
        for i in 0..m {
            for j in i + 1..=m {
                let y = ode::solve(field, reference[i].clone(), &[grid[i], grid[j]], &one_step)?.ys.swap_remove(1);
                let e = (y - reference[j].clone()).square().sum_dim(1).mean().into_scalar::<f64>();
                cost[i][j] = if e.is_finite() { e } else { f64::INFINITY };
            }
        }
        Ok(StepErrors { grid, cost })
    }

    /// The `steps`-step grid through the candidates with the least summed one-step error.
    ///
    /// # Errors
    /// `InvalidArgument` for zero steps, more steps than candidate intervals, or when every
    /// grid has a non-finite one-step error.
    pub fn optimise(&self, steps: usize) -> Result<OptimisedSchedule> {
        let m = self.grid.len() - 1;
        if steps == 0 || m < steps {
            return Err(Error::invalid("steps", format!("need 1 ≤ steps ≤ candidates, got {steps} steps on {m} candidates")));
        }
        let (path, error_sum) = cheapest_path(&self.cost, steps).ok_or_else(|| Error::invalid("schedule", "every grid has a non-finite one-step error"))?;
        let uniform_error_sum = m.is_multiple_of(steps).then(|| (0..steps).map(|s| self.cost[s * m / steps][(s + 1) * m / steps]).sum());
        Ok(OptimisedSchedule { times: path.iter().map(|&i| self.grid[i]).collect(), error_sum, uniform_error_sum })
    }
}

/// The path `0 = i₀ < i₁ < … < i_k = m` with the least `Σ cost[i_s][i_{s+1}]` over a cost
/// matrix `[m + 1, m + 1]` (upper triangle used), by dynamic programming; `None` when every
/// such path has an infinite cost.
fn cheapest_path(cost: &[Vec<f64>], k: usize) -> Option<(Vec<usize>, f64)> {
    let m = cost.len() - 1;
    // best[s][j]: least cost of reaching candidate j in s steps; from[s][j]: the step before.
    let mut best = vec![vec![f64::INFINITY; m + 1]; k + 1];
    let mut from = vec![vec![0usize; m + 1]; k + 1];
    best[0][0] = 0.0;
    for s in 1..=k {
        for j in s..=m {
            for i in s - 1..j {
                let c = best[s - 1][i] + cost[i][j];
                if c < best[s][j] {
                    (best[s][j], from[s][j]) = (c, i);
                }
            }
        }
    }
    if !best[k][m].is_finite() {
        return None;
    }
    let mut path = vec![m];
    for s in (1..=k).rev() {
        path.push(from[s][*path.last().expect("non-empty")]);
    }
    path.reverse();
    Some((path, best[k][m]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fm::path::ProbabilityPath;
    use crate::fm::problems::GaussianToGaussian;
    use crate::host::ToHost;
    use burn::tensor::TensorData;
    use rand::{RngExt, SeedableRng};

    /// Dynamic programming against enumerating every `k`-subset of the interior candidates
    /// (exact: the same sums in the same order).
    #[test]
    fn dynamic_programming_finds_the_cheapest_path() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let m = 8;
        let cost: Vec<Vec<f64>> = (0..=m).map(|_| (0..=m).map(|_| rng.random_range(0.0..1.0)).collect()).collect();
        for k in 1..=m {
            let (path, sum) = cheapest_path(&cost, k).unwrap();
            assert_eq!((path.len(), path[0], path[k]), (k + 1, 0, m));
            let mut brute = f64::INFINITY;
            for mask in 0u32..(1 << (m - 1)) {
                if mask.count_ones() as usize != k - 1 {
                    continue;
                }
                let mut p = vec![0];
                p.extend((1..m).filter(|i| mask & (1 << (i - 1)) != 0));
                p.push(m);
                brute = brute.min(p.windows(2).map(|w| cost[w[0]][w[1]]).sum());
            }
            assert_eq!(sum, brute, "k = {k}");
            assert_eq!(path.windows(2).map(|w| cost[w[0]][w[1]]).sum::<f64>(), sum);
        }
    }

    /// The closed forms: uniform; the polynomial with `ρ = 1` is uniform and with `ρ = 7`
    /// crowds the data end; log-SNR on the linear path is `t = 1/(1 + e^{−λ/2})` at equal steps
    /// of `λ` (to bisection round-off).
    #[test]
    fn schedules_follow_their_closed_forms() {
        let path = ProbabilityPath::Linear { sigma: 0.0 };
        let u = Schedule::Uniform.times(&path, 0.0, 1.0, 4).unwrap();
        assert_eq!(u, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let p1 = Schedule::Polynomial { rho: 1.0 }.times(&path, 0.0, 1.0, 4).unwrap();
        assert!(p1.iter().zip(&u).all(|(a, b)| (a - b).abs() < 1e-15), "{p1:?}");
        let p7 = Schedule::Polynomial { rho: 7.0 }.times(&path, 0.0, 1.0, 4).unwrap();
        // u_i = (1 − i/4)^7: the last step is from 1 − 0.25^7.
        assert!((p7[3] - (1.0 - 0.25f64.powi(7))).abs() < 1e-15 && p7[1] > 0.25, "{p7:?}");
        let clip = 1e-3;
        let l = Schedule::LogSnr { clip }.times(&path, 0.0, 1.0, 5).unwrap();
        let (la, lb) = (2.0 * (clip / (1.0 - clip)).ln(), 2.0 * ((1.0 - clip) / clip).ln());
        for i in 1..5 {
            let lam = la + (lb - la) * i as f64 / 5.0;
            assert!((l[i] - 1.0 / (1.0 + (-lam / 2.0).exp())).abs() < 1e-12, "{i}: {}", l[i]);
        }
        assert_eq!((l[0], l[5]), (0.0, 1.0));
    }

    /// Bad schedules are refused before any work.
    #[test]
    fn bad_schedules_are_refused() {
        let path = ProbabilityPath::default();
        let bad: Vec<(Schedule, usize)> = vec![
            (Schedule::Uniform, 0),
            (Schedule::Polynomial { rho: 0.0 }, 4),
            (Schedule::Polynomial { rho: f64::NAN }, 4),
            (Schedule::LogSnr { clip: 0.0 }, 4),
            (Schedule::Times { times: vec![0.0, 0.5, 0.4, 1.0] }, 3),
            (Schedule::Times { times: vec![0.0, 0.5, 1.5] }, 2),
            (Schedule::Times { times: vec![0.0, 0.5, 1.0] }, 3),
        ];
        for (s, k) in bad {
            assert!(matches!(s.times(&path, 0.0, 1.0, k), Err(Error::InvalidArgument { .. })), "{s:?} with {k} steps");
        }
        assert!(Schedule::Uniform.times(&path, 0.5, 0.5, 2).is_err());
        let toml = "kind = \"polynomial\"\nrho = 7.0\n";
        assert_eq!(toml::from_str::<Schedule>(toml).unwrap(), Schedule::Polynomial { rho: 7.0 });
        assert!(toml::from_str::<Schedule>("kind = \"uniform\"\nrho = 7.0\n").is_err());
        for s in [Schedule::Uniform, Schedule::LogSnr { clip: 1e-3 }, Schedule::Times { times: vec![0.0, 0.3, 1.0] }] {
            assert_eq!(toml::from_str::<Schedule>(&toml::to_string(&s).unwrap()).unwrap(), s);
        }
    }

    /// On the Gaussian reference problem ([`crate::fm::problems::GaussianToGaussian`]: exact
    /// velocity and flow map `X₁(x₀) = μ + s x₀`), the optimised 4-step Euler grid beats 4
    /// equal steps in the endpoint error against the exact map, and its summed one-step error
    /// is at most the uniform grid's (the DP's optimality).
    #[test]
    fn optimised_grid_beats_uniform_steps_on_a_gaussian_path() {
        let problem = GaussianToGaussian { mu: vec![2.0], s: 0.1 };
        let field = problem.velocity();
        let device = crate::device::cpu_f64().unwrap();
        let x0: Vec<f64> = (0..64).map(|i| -2.0 + 4.0 * (i as f64 + 0.5) / 64.0).collect();
        let x = Tensor::<2>::from_data(TensorData::new(x0.clone(), [64, 1]).convert_dtype(burn::tensor::DType::F64), (&device, burn::tensor::DType::F64));
        let cfg = OptimiseSchedule { candidates: 32, ..OptimiseSchedule::default() };
        let errors = StepErrors::measure(&field, x.clone(), 0.0, 1.0, &cfg).unwrap();
        assert!(errors.optimise(0).is_err() && errors.optimise(33).is_err());
        let opt = errors.optimise(4).unwrap();
        assert!(opt.error_sum <= opt.uniform_error_sum.unwrap(), "{opt:?}");
        let path = ProbabilityPath::default();
        let endpoint_error = |schedule: &Schedule| {
            let ts = schedule.times(&path, 0.0, 1.0, 4).unwrap();
            let y: Vec<f64> = ode::solve(&field, x.clone(), &ts, &Options::grid(Solver::Euler)).unwrap().ys[4].to_vec_as();
            (y.iter().zip(problem.flow_map(&x0)).map(|(y, x1)| (y - x1).powi(2)).sum::<f64>() / 64.0).sqrt()
        };
        let (e_opt, e_uni) = (endpoint_error(&opt.schedule()), endpoint_error(&Schedule::Uniform));
        // Measured: RMS endpoint error 0.083 uniform, 0.032 optimised (grid 0, 0.78, 0.91, 0.97,
        // 1: the steps crowd towards t = 1, where σ'/σ grows); summed one-step errors 6.8e-3 vs
        // 6.5e-4.
        assert!(e_opt < 0.5 * e_uni, "optimised {e_opt} vs uniform {e_uni}: {opt:?}");
    }
}
