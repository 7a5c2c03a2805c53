//! Exponential integrators for the probability-flow ODE of a noise-free Gaussian-type path
//! `x_t = α(t) x₀ + β(t) x₁` (`γ ≡ 0`): DPM-Solver-1/2/3 (Lu et al. 2022, "DPM-Solver: a fast
//! ODE solver for diffusion probabilistic model sampling in around 10 steps", Algorithms 1–2)
//! and DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2).
//!
//! **Why they are not [`crate::ode::Solver`]s.** On such a path the model's velocity splits
//! into a part linear in `x` and a prediction: with the Wronskian `W = αβ' − α'β > 0`,
//!
//! * data prediction `D(t, x) = E[x₁ | x_t = x] = (α b − α' x)/W`,
//! * noise (base) prediction `E(t, x) = E[x₀ | x_t = x] = (β' x − β b)/W`,
//!
//! (both from `x = α x₀ + β x₁` and `b = α' x₀ + β' x₁` in conditional expectation, so they
//! hold for any base density, not only a Gaussian). In `λ = log(β/α)` (half the log
//! signal-to-noise ratio; DPM-Solver's `α_t, σ_t` are this path's `β, α`) the ODE solves
//! exactly as
//!
//! `x_t = (α_t/α_s) x_s + α_t ∫_{λ_s}^{λ_t} e^{λ} D dλ = (β_t/β_s) x_s − β_t ∫_{λ_s}^{λ_t} e^{−λ} E dλ`,
//!
//! and the solvers expand `D` or `E` in `λ`. The step needs `α, β, α', β'` of the path, which
//! a plain vector field does not carry; so they live here and take the path with the field
//! (the field is any [`VectorField`] giving `b`: flow-matching, interpolant or PDE-field
//! models alike).
//!
//! **Ends of the path.** At `t = 0` (`β = 0`, `λ = −∞`) and `t = 1` (`α = 0`, `λ = +∞`) the
//! first-order step has finite limits, `x_t = (α_t/α_s) x_s + (β_t − α_t β_s/α_s) D_s`, so
//! DPM-Solver-1 (which is DDIM) and DPM-Solver++(2M) run on the whole `[0, 1]`. DPM-Solver++(2M)
//! takes a first-order step where a neighbouring `λ` is infinite (its first step from `t = 0`,
//! its last to `t = 1`: the "lower order final" of the reference implementation, because the
//! linear extrapolation of `D` in `λ` diverges there). The singlestep DPM-Solver-2/3 place
//! their stages at fractions of the step in `λ`, so every step of theirs needs finite `λ` at
//! both ends: start them at `t₀ > 0` and stop at `t₁ < 1` (e.g. `[10⁻³, 1 − 10⁻³]`, as
//! diffusion samplers do).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::path::{Coefficients, Interpolant};
use super::schedule::{check_grid, invert_increasing};
use crate::ode::{Time, VectorField};
use crate::{Error, Result};

/// Which exponential integrator (serde: `"dpm1"`, `"dpm2"`, `"dpm3"`, `"dpmpp_2m"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DpmSolver {
    /// DPM-Solver-1 = DDIM (Song et al. 2021): one evaluation per step, order 1.
    #[serde(rename = "dpm1")]
    Dpm1,
    /// Singlestep DPM-Solver-2 (noise prediction, `r₁ = 1/2`): two evaluations per step, order 2.
    #[serde(rename = "dpm2")]
    Dpm2,
    /// Singlestep DPM-Solver-3 (noise prediction, `r₁ = 1/3`, `r₂ = 2/3`): three evaluations per
    /// step, order 3.
    #[serde(rename = "dpm3")]
    Dpm3,
    /// Multistep DPM-Solver++(2M) (data prediction): one evaluation per step, order 2.
    #[serde(rename = "dpmpp_2m")]
    DpmPp2M,
}

impl DpmSolver {
    /// Every solver; tests loop over this list.
    pub const ALL: [DpmSolver; 4] = [DpmSolver::Dpm1, DpmSolver::Dpm2, DpmSolver::Dpm3, DpmSolver::DpmPp2M];

    /// Field evaluations per step.
    pub fn evaluations_per_step(self) -> usize {
        match self {
            DpmSolver::Dpm1 | DpmSolver::DpmPp2M => 1,
            DpmSolver::Dpm2 => 2,
            DpmSolver::Dpm3 => 3,
        }
    }

    /// Order of convergence on a smooth problem.
    pub fn order(self) -> usize {
        match self {
            DpmSolver::Dpm1 => 1,
            DpmSolver::Dpm2 | DpmSolver::DpmPp2M => 2,
            DpmSolver::Dpm3 => 3,
        }
    }

    /// The name used in reports ("DPM-Solver++(2M)").
    pub fn label(self) -> &'static str {
        match self {
            DpmSolver::Dpm1 => "DPM-Solver-1",
            DpmSolver::Dpm2 => "DPM-Solver-2",
            DpmSolver::Dpm3 => "DPM-Solver-3",
            DpmSolver::DpmPp2M => "DPM-Solver++(2M)",
        }
    }

    fn singlestep(self) -> bool {
        matches!(self, DpmSolver::Dpm2 | DpmSolver::Dpm3)
    }
}

/// The end state of [`dpm_solve`] and what it cost.
#[derive(Clone, Debug)]
pub struct DpmSolution {
    /// `x` at the last time of the grid, `[batch, d]`.
    pub x: Tensor<2>,
    /// Field evaluations, `steps × evaluations_per_step`.
    pub nfe: usize,
}

/// Path quantities at one time, checked for an exponential integrator.
#[derive(Clone, Copy, Debug)]
struct Point {
    t: f64,
    c: Coefficients,
    /// `αβ' − α'β`.
    w: f64,
}

impl Point {
    fn at(path: &dyn Interpolant, t: f64) -> Result<Self> {
        let c = path.coefficients(t);
        if c.gamma != 0.0 || c.d_gamma != 0.0 {
            return Err(Error::invalid(
                "path",
                format!(
                    "DPM-Solver needs a path without a noise term (γ ≡ 0): γ({t}) = {}, γ' = {}; it has no exponential-integrator form",
                    c.gamma, c.d_gamma
                ),
            ));
        }
        if !(c.alpha >= 0.0 && c.beta >= 0.0 && c.alpha.is_finite() && c.beta.is_finite()) || (c.alpha == 0.0 && c.beta == 0.0) {
            return Err(Error::invalid("path", format!("DPM-Solver needs α(t), β(t) ≥ 0, not both zero: α({t}) = {}, β = {}", c.alpha, c.beta)));
        }
        Ok(Point { t, c, w: c.alpha * c.d_beta - c.d_alpha * c.beta })
    }

    /// `λ = log(β/α)`, `±∞` at the ends.
    fn lambda(&self) -> f64 {
        (self.c.beta / self.c.alpha).ln()
    }

    /// Where the field is evaluated: `W` must be finite and positive (`λ` increasing).
    fn check_eval(&self) -> Result<()> {
        if !(self.w > 0.0 && self.w.is_finite()) {
            return Err(Error::invalid(
                "path",
                format!("DPM-Solver needs λ = log(β/α) increasing with finite derivatives where it evaluates: αβ' − α'β = {} at t = {}", self.w, self.t),
            ));
        }
        Ok(())
    }
}

/// `D(t, x)` and/or `E(t, x)` from the velocity at the point.
struct Predictor<'a, F> {
    field: &'a F,
    nfe: usize,
}

impl<F: VectorField<2>> Predictor<'_, F> {
    /// `D = (α b − α' x)/W`.
    fn data(&mut self, p: &Point, x: &Tensor<2>) -> Tensor<2> {
        self.nfe += 1;
        let b = self.field.eval(&Time::Shared(p.t), x);
        b.mul_scalar(p.c.alpha / p.w) - x.clone().mul_scalar(p.c.d_alpha / p.w)
    }

    /// `E = (β' x − β b)/W`.
    fn noise(&mut self, p: &Point, x: &Tensor<2>) -> Tensor<2> {
        self.nfe += 1;
        let b = self.field.eval(&Time::Shared(p.t), x);
        x.clone().mul_scalar(p.c.d_beta / p.w) - b.mul_scalar(p.c.beta / p.w)
    }
}

/// The point in `[a.t, b.t]` where `λ = target` (`λ` is increasing on the step, checked at
/// its ends).
fn time_at_lambda(path: &dyn Interpolant, a: &Point, b: &Point, target: f64) -> Result<Point> {
    let t = invert_increasing(|t| Ok(Point::at(path, t)?.lambda()), a.t, b.t, target)?;
    let p = Point::at(path, t)?;
    p.check_eval()?;
    Ok(p)
}

/// The first-order (DDIM) step from `s` to `t` with data prediction `d`:
/// `x_t = (α_t/α_s) x_s + (β_t − α_t β_s/α_s) D_s`, finite at `λ_s = −∞` and `λ_t = +∞`.
fn first_order(s: &Point, t: &Point, x: Tensor<2>, d: Tensor<2>) -> Tensor<2> {
    let r = t.c.alpha / s.c.alpha;
    x.mul_scalar(r) + d.mul_scalar(t.c.beta - r * s.c.beta)
}

/// Solve the probability-flow ODE `dx/dt = b(t, x)` of the field on the grid `times`
/// (`t₀ < t₁ < … < t_k`, one step per interval, e.g. from [`super::Schedule::times`]) with an
/// exponential integrator for `path` (module docs), from `x0: [batch, d]` at `t₀`.
///
/// # Errors
/// `InvalidArgument` before any evaluation for a grid that is not strictly increasing in
/// `[0, 1]`, a path with a noise term (`γ ≠ 0`: linear with `σ > 0`, the Schrödinger bridge),
/// a path whose `λ = log(β/α)` is not increasing, or a singlestep solver on a step with an
/// infinite `λ` at an end; `Shape` for a state the field refuses; `NonFinite` for a state
/// that blows up (naming the step).
pub fn dpm_solve<F: VectorField<2>>(field: &F, path: &dyn Interpolant, x0: Tensor<2>, times: &[f64], solver: DpmSolver) -> Result<DpmSolution> {
    check_grid(times)?;
    field.check_state(&x0)?;
    let points: Vec<Point> = times.iter().map(|&t| Point::at(path, t)).collect::<Result<_>>()?;
    let k = points.len() - 1;
    for (i, w) in points.windows(2).enumerate() {
        w[0].check_eval()?;
        let (la, lb) = (w[0].lambda(), w[1].lambda());
        if !(la < lb) {
            return Err(Error::invalid("path", format!("DPM-Solver needs λ = log(β/α) increasing: step {i} goes from λ = {la} to {lb}")));
        }
        if solver.singlestep() && !(la.is_finite() && lb.is_finite()) {
            return Err(Error::invalid(
                "times",
                format!(
                    "{} places its stages in λ = log(β/α), which is infinite at t = {} (step {i}); start at t₀ > 0 and stop at t₁ < 1 (e.g. 1e-3 and 1 − 1e-3), or use dpm1 / dpmpp_2m",
                    solver.label(),
                    if la.is_finite() { w[1].t } else { w[0].t }
                ),
            ));
        }
    }
    if !crate::ode::solve::all_finite(&x0) {
        return Err(Error::NonFiniteInput { what: "x0", index: 0 });
    }
    let mut pred = Predictor { field, nfe: 0 };
    let mut x = x0;
    // DPM-Solver++(2M)'s previous data prediction and λ step.
    let mut previous: Option<(Tensor<2>, f64)> = None;
    for i in 0..k {
        let (s, t) = (&points[i], &points[i + 1]);
        let (ls, lt) = (s.lambda(), t.lambda());
        let h = lt - ls;
        x = match solver {
            DpmSolver::Dpm1 => {
                let d = pred.data(s, &x);
                first_order(s, t, x, d)
            }
            DpmSolver::DpmPp2M => {
                let d = pred.data(s, &x);
                let next = match &previous {
                    // D ≈ D_s + (D_s − D_prev)/(2r) with r = h_prev/h: the 2M combination.
                    Some((d_prev, h_prev)) if h_prev.is_finite() && h.is_finite() => {
                        let c = h / (2.0 * h_prev);
                        let dd = d.clone().mul_scalar(1.0 + c) - d_prev.clone().mul_scalar(c);
                        first_order(s, t, x, dd)
                    }
                    _ => first_order(s, t, x, d.clone()),
                };
                previous = Some((d, h));
                next
            }
            DpmSolver::Dpm2 => {
                // Algorithm 1 with r₁ = 1/2, in this path's names (α_DPM = β, σ_DPM = α).
                let r1 = 0.5;
                let m = time_at_lambda(path, s, t, ls + r1 * h)?;
                let e = pred.noise(s, &x);
                let u = x.clone().mul_scalar(m.c.beta / s.c.beta) - e.clone().mul_scalar(m.c.alpha * (r1 * h).exp_m1());
                let em = pred.noise(&m, &u);
                let g = t.c.alpha * h.exp_m1();
                x.mul_scalar(t.c.beta / s.c.beta) - e.clone().mul_scalar(g) - (em - e).mul_scalar(g / (2.0 * r1))
            }
            DpmSolver::Dpm3 => {
                // Algorithm 2 (DPM-Solver-3) with r₁ = 1/3, r₂ = 2/3.
                let (r1, r2) = (1.0 / 3.0, 2.0 / 3.0);
                let m1 = time_at_lambda(path, s, t, ls + r1 * h)?;
                let m2 = time_at_lambda(path, s, t, ls + r2 * h)?;
                let e = pred.noise(s, &x);
                let u1 = x.clone().mul_scalar(m1.c.beta / s.c.beta) - e.clone().mul_scalar(m1.c.alpha * (r1 * h).exp_m1());
                let d1 = pred.noise(&m1, &u1) - e.clone();
                let phi2 = (r2 * h).exp_m1() / (r2 * h) - 1.0;
                let u2 = x.clone().mul_scalar(m2.c.beta / s.c.beta)
                    - e.clone().mul_scalar(m2.c.alpha * (r2 * h).exp_m1())
                    - d1.mul_scalar(r2 * m2.c.alpha / r1 * phi2);
                let d2 = pred.noise(&m2, &u2) - e.clone();
                let phi = h.exp_m1() / h - 1.0;
                x.mul_scalar(t.c.beta / s.c.beta) - e.mul_scalar(t.c.alpha * h.exp_m1()) - d2.mul_scalar(t.c.alpha / r2 * phi)
            }
        };
        if !crate::ode::solve::all_finite(&x) {
            return Err(Error::NonFinite { what: "state", step: i, t: t.t });
        }
    }
    Ok(DpmSolution { x, nfe: pred.nfe })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fm::path::ProbabilityPath;
    use crate::fm::problems::GaussianToGaussian;
    use crate::fm::schedule::Schedule;
    use crate::host::ToHost;
    use burn::tensor::{DType, TensorData};

    fn states(x0: &[f64]) -> Tensor<2> {
        // The f64 reference device (configured once per process; a plain `Device::flex()`
        // would lock the CPU's default float type to f32 for the tests that need f64).
        let device = crate::device::cpu_f64().unwrap();
        Tensor::<2>::from_data(TensorData::new(x0.to_vec(), [x0.len(), 1]).convert_dtype(DType::F64), (&device, DType::F64))
    }

    /// `x₀ ~ N(0, 1)`, `x₁ ~ N(μ, s²)` independent on a noise-free `path`: `x_t ~ N(βμ, σ_t²)`,
    /// `σ_t² = α² + β²s²`, so the velocity `α' E[x₀|x] + β' E[x₁|x]` is
    /// `b = β'μ + (αα' + ββ's²)/σ_t² (x − βμ)` and the flow is `x_t = β_t μ + σ_t z`:
    /// `X_b(x) = β_b μ + (σ_b/σ_a)(x − β_a μ)`. On the linear path this is
    /// [`GaussianToGaussian`].
    const MU: f64 = 2.0;
    const S: f64 = 0.3;

    fn sd(path: &ProbabilityPath, t: f64) -> f64 {
        let c = path.coefficients(t);
        (c.alpha * c.alpha + c.beta * c.beta * S * S).sqrt()
    }

    fn exact(path: &ProbabilityPath, ta: f64, tb: f64, x: f64) -> f64 {
        let (ba, bb) = (path.coefficients(ta).beta, path.coefficients(tb).beta);
        bb * MU + sd(path, tb) / sd(path, ta) * (x - ba * MU)
    }

    /// Max endpoint error against the exact flow on `steps` steps of `[ta, tb]`.
    fn endpoint_error(path: &ProbabilityPath, solver: DpmSolver, schedule: &Schedule, steps: usize, ta: f64, tb: f64) -> (f64, usize) {
        let p = *path;
        let field = crate::ode::FnField::new(move |t: &Time, x: Tensor<2>| {
            let c = p.coefficients(t.shared().unwrap());
            let var = c.alpha * c.alpha + c.beta * c.beta * S * S;
            let k = (c.alpha * c.d_alpha + c.beta * c.d_beta * S * S) / var;
            x.sub_scalar(c.beta * MU).mul_scalar(k).add_scalar(c.d_beta * MU)
        });
        let x0: Vec<f64> = (0..32).map(|i| -2.5 + 5.0 * (i as f64 + 0.5) / 32.0).collect();
        let ts = schedule.times(path, ta, tb, steps).unwrap();
        let sol = dpm_solve(&field, path, states(&x0), &ts, solver).unwrap();
        let y: Vec<f64> = sol.x.to_vec_as();
        (y.iter().zip(&x0).map(|(y, x)| (y - exact(path, ta, tb, *x)).abs()).fold(0.0, f64::max), sol.nfe)
    }

    /// Convergence orders on the Gaussian problem of each noise-free path (linear,
    /// trigonometric, variance preserving; exact velocity and flow above): the observed order
    /// `log₂(e_{n}/e_{2n})` of the finest doubling is the solver's order ± 0.2, and the
    /// evaluations are counted. Measured (linear / trigonometric / VP): DPM-Solver-1 0.999 /
    /// 0.999 / 0.999, -2 2.002 / 2.002 / 2.002, -3 3.012 / 3.011 / 3.004, ++(2M) 2.067 / 2.138 /
    /// 1.844.
    ///
    /// * DPM-Solver-1 and ++(2M) on the linear and trigonometric paths run the whole `[0, 1]`,
    ///   through both infinite ends of `λ`, on EDM's polynomial grid with `ρ = 2`, 128 → 1024
    ///   steps. (On equal steps of `t` the first steps span a fixed `λ` interval, `log 2` from
    ///   `t = 1/k` to `2/k` whatever `k`, and ++(2M)'s rate reaches 2 only slowly: 1.7 at 512
    ///   steps.)
    /// * The singlestep solvers, and every solver on the VP path (whose `α'` is singular at
    ///   `t = 1`; ++(2M) on its whole interval measured 1.74), run `[10⁻², 1 − 10⁻²]` on equal
    ///   steps of `λ`, 128 → 1024 steps. At fewer steps the ratios are still pre-asymptotic
    ///   (DPM-Solver-3 on equal steps of `t`, 8 → 64: slope 2.6; ++(2M) on VP, 16 → 128:
    ///   ratios 11, 16, 11 from its first-order first step).
    #[test]
    fn solvers_converge_at_their_orders_on_a_gaussian_path() {
        for path in [ProbabilityPath::default(), ProbabilityPath::Trigonometric, ProbabilityPath::VariancePreserving] {
            for solver in DpmSolver::ALL {
                let (ta, tb, schedule, steps) = if solver.singlestep() || path == ProbabilityPath::VariancePreserving {
                    (1e-2, 1.0 - 1e-2, Schedule::LogSnr { clip: 1e-2 }, [128usize, 256, 512, 1024])
                } else {
                    (0.0, 1.0, Schedule::Polynomial { rho: 2.0 }, [128, 256, 512, 1024])
                };
                let errs: Vec<f64> = steps
                    .iter()
                    .map(|&n| {
                        let (e, nfe) = endpoint_error(&path, solver, &schedule, n, ta, tb);
                        assert_eq!(nfe, n * solver.evaluations_per_step());
                        e
                    })
                    .collect();
                // The observed order of the finest doubling (the fit over all four is still
                // pre-asymptotic from above for ++(2M) on the trigonometric path: 2.21).
                let order = (errs[2] / errs[3]).log2();
                eprintln!("{path:?} {}: errors {errs:?}, observed order {order:.3}", solver.label());
                assert!((order - solver.order() as f64).abs() < 0.2, "{path:?} {}: order {order}, errors {errs:?}", solver.label());
            }
        }
    }

    /// On the linear path a first-order (DDIM) step is an Euler step: with `α = 1 − t`,
    /// `b = (D − x)/(1 − t)`, both give `x' = ((1 − t')/(1 − t)) x + ((t' − t)/(1 − t)) D`. So
    /// DPM-Solver-1 matches [`crate::ode::solve`]'s Euler on any grid, here a field that is not
    /// affine (`b = sin(3x) + t x²`), to round-off.
    #[test]
    fn first_order_step_is_euler_on_the_linear_path() {
        let field = crate::ode::FnField::new(|t: &Time, x: Tensor<2>| x.clone().mul_scalar(3.0).sin() + x.powi_scalar(2).mul_scalar(t.shared().unwrap()));
        let x0: Vec<f64> = (0..16).map(|i| -1.0 + 2.0 * i as f64 / 15.0).collect();
        let times = [0.0, 0.1, 0.35, 0.5, 0.8, 0.9, 1.0];
        let dpm: Vec<f64> = dpm_solve(&field, &ProbabilityPath::default(), states(&x0), &times, DpmSolver::Dpm1).unwrap().x.to_vec_as();
        let opts = crate::ode::Options::grid(crate::ode::Solver::Euler);
        let euler: Vec<f64> = crate::ode::solve(&field, states(&x0), &times, &opts).unwrap().ys[6].to_vec_as();
        for (a, b) in dpm.iter().zip(&euler) {
            assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    /// Bad configurations are refused before any evaluation.
    #[test]
    fn solvers_that_do_not_fit_are_refused() {
        let problem = GaussianToGaussian { mu: vec![1.0], s: 0.5 };
        let field = problem.velocity();
        let x = states(&[0.0, 1.0]);
        let linear = ProbabilityPath::default();
        let bad = |path: &dyn Interpolant, ts: &[f64], solver| matches!(dpm_solve(&field, path, x.clone(), ts, solver), Err(Error::InvalidArgument { .. }));
        // A noise term has no exponential-integrator form.
        assert!(bad(&ProbabilityPath::Linear { sigma: 0.1 }, &[0.0, 0.5, 1.0], DpmSolver::DpmPp2M));
        assert!(bad(&ProbabilityPath::SchrodingerBridge { sigma: 1.0 }, &[0.1, 0.5, 0.9], DpmSolver::Dpm1));
        // Grids that are not increasing or leave [0, 1], or have no step.
        assert!(bad(&linear, &[0.0, 0.6, 0.5, 1.0], DpmSolver::Dpm1));
        assert!(bad(&linear, &[0.0, 1.5], DpmSolver::Dpm1));
        assert!(bad(&linear, &[0.0], DpmSolver::Dpm1));
        // Singlestep solvers need finite λ at the ends of every step.
        for solver in [DpmSolver::Dpm2, DpmSolver::Dpm3] {
            assert!(bad(&linear, &[0.0, 0.5, 0.9], solver));
            assert!(bad(&linear, &[0.1, 0.5, 1.0], solver));
            assert!(dpm_solve(&field, &linear, x.clone(), &[0.1, 0.5, 0.9], solver).is_ok());
        }
        assert_eq!(serde_json::from_str::<DpmSolver>("\"dpmpp_2m\"").unwrap(), DpmSolver::DpmPp2M);
        assert!(serde_json::from_str::<DpmSolver>("\"dpm4\"").is_err());
    }
}
