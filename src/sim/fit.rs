//! Parameter estimation: fit a system's parameters to observed trajectories by
//! weighted least squares, with adjoint gradients and L-BFGS or Adam.

use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::sens::adjoint_gradient;
use super::solve::SimOptions;
use super::System;
use crate::train::{CheckpointReader, CheckpointWriter, Control, Every, Run, RunOptions, Trainer};
use crate::{Error, Result};

/// One observed trajectory: `data[k]` observed at `times[k]` from `y0`.
#[derive(Clone, Debug)]
pub struct Observation {
    /// Observation times `[T]` (after the solve's `t₀`).
    pub times: Vec<f64>,
    /// Initial state `[D]` (known).
    pub y0: Vec<f64>,
    /// Observed states `[T, D]`.
    pub data: Array2<f64>,
}

/// The optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// Limited-memory BFGS (Nocedal & Wright, Alg. 7.4–7.5) with a backtracking Armijo line search.
    #[default]
    Lbfgs,
    /// Adam (Kingma & Ba 2015) with a fixed learning rate.
    Adam,
}

/// How to fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FitConfig {
    /// L-BFGS or Adam.
    pub optimizer: Optimizer,
    /// Maximum iterations (gradient evaluations for Adam; line-search outer steps for L-BFGS).
    pub iterations: usize,
    /// Adam's learning rate (in the fitted coordinates).
    pub lr: f64,
    /// Fit `ln p` instead of `p` (positive parameters spanning decades, such as rate constants).
    pub log_params: bool,
    /// Indices of the parameters to fit; empty = all.
    pub fit: Vec<usize>,
    /// Per-component weights `w_i` of the squared residuals; empty = `1 / max_k |data_ki|²` per component.
    pub weights: Vec<f64>,
    /// Stop when the gradient's largest component falls below this.
    pub gtol: f64,
    /// L-BFGS memory.
    pub memory: usize,
    /// Solver options for every solve (forward and adjoint).
    pub sim: SimOptions,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            optimizer: Optimizer::Lbfgs,
            iterations: 100,
            lr: 1e-2,
            log_params: false,
            fit: vec![],
            weights: vec![],
            gtol: 1e-8,
            memory: 10,
            sim: SimOptions { rtol: 1e-8, atol: 1e-10, ..SimOptions::default() },
        }
    }
}

/// The outcome of [`fit`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FitResult {
    /// All parameters after fitting (unfitted ones unchanged).
    pub params: Vec<f64>,
    /// Loss after each iteration, the initial loss first.
    pub loss_history: Vec<f64>,
    /// Whether the gradient test was met before the iteration budget ran out.
    pub converged: bool,
}

/// The weighted least-squares loss `L(p) = (1/N) Σ_obs Σ_k Σ_i ½ w_i (y_i(t_k; p) − d_ki)²`
/// (`N` = number of observed values) and its gradient in `p`, by the adjoint,
/// observations in parallel.
pub fn loss_and_gradient(system: &dyn System, p: &[f64], obs: &[Observation], weights: &[f64], opts: &SimOptions) -> Result<(f64, Vec<f64>)> {
    let count: usize = obs.iter().map(|o| o.data.len()).sum();
    let scale = 1.0 / count as f64;
    let parts: Vec<Result<(f64, Vec<f64>)>> = obs
        .par_iter()
        .map(|o| {
            if o.data.dim() != (o.times.len(), system.dim()) {
                return Err(Error::Shape { what: "observation data".into(), expected: vec![o.times.len(), system.dim()], got: o.data.shape().to_vec() });
            }
            let g = adjoint_gradient(system, p, &o.y0, &o.times, opts, |y| {
                let r = y - &o.data;
                let mut dg = r.clone();
                let mut l = 0.0;
                for mut row in dg.rows_mut() {
                    for (i, v) in row.iter_mut().enumerate() {
                        l += 0.5 * weights[i] * *v * *v * scale;
                        *v *= weights[i] * scale;
                    }
                }
                (l, dg)
            })?;
            Ok((g.loss, g.params))
        })
        .collect();
    let mut loss = 0.0;
    let mut grad = vec![0.0; p.len()];
    for part in parts {
        let (l, g) = part?;
        loss += l;
        grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
    }
    Ok((loss, grad))
}

/// Default weights: `1 / max_k |d_ki|²` per component over all observations.
pub fn default_weights(obs: &[Observation], dim: usize) -> Vec<f64> {
    (0..dim)
        .map(|i| {
            let m = obs.iter().flat_map(|o| o.data.column(i).to_vec()).fold(0.0f64, |a, b| a.max(b.abs()));
            if m > 0.0 {
                1.0 / (m * m)
            } else {
                1.0
            }
        })
        .collect()
}

/// Parameter fitting as a [`Trainer`] of the one training loop ([`crate::train::fit`]): one
/// step is one Adam update or one L-BFGS iteration (two-loop recursion and a backtracking
/// Armijo line search) of the weighted least-squares loss ([`loss_and_gradient`]) in the fitted
/// coordinates `θ` (`p` or `ln p`, [`FitConfig::log_params`]). Full-batch and deterministic
/// (the step's RNG is not used); the loop's learning rate is Adam's, L-BFGS takes its own steps.
/// It reports convergence when the gradient's largest component falls below `gtol` (or the
/// line search finds no decrease: the noise floor of the solves), which stops the loop.
/// Checkpoints hold `θ` and the optimiser state (Adam's moments or L-BFGS's pairs).
pub struct FitTrainer<'a> {
    system: &'a dyn System,
    p0: Vec<f64>,
    obs: &'a [Observation],
    cfg: FitConfig,
    idx: Vec<usize>,
    weights: Vec<f64>,
    theta: Vec<f64>,
    opt: OptState,
    converged: bool,
}

/// The optimiser's state between steps.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum OptState {
    Adam(crate::train::Adam<f64>),
    /// The loss and gradient at `θ` (after the first step) and the curvature pairs
    /// `(s, y, 1/sᵀy)`, oldest first.
    Lbfgs {
        at: Option<(f64, Vec<f64>)>,
        pairs: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)>,
    },
}

impl<'a> FitTrainer<'a> {
    /// A fit of `system`'s parameters, starting from `p0`, to `obs`.
    ///
    /// # Errors
    /// `InvalidArgument` for no observations, a parameter index out of range, or a
    /// non-positive start with `log_params`; `Shape` for weights of the wrong length.
    pub fn new(system: &'a dyn System, p0: &[f64], obs: &'a [Observation], cfg: &FitConfig) -> Result<Self> {
        if obs.is_empty() {
            return Err(Error::invalid("observations", "nothing to fit to"));
        }
        if cfg.iterations == 0 {
            return Err(Error::invalid("iterations", "must be ≥ 1"));
        }
        let m = p0.len();
        let idx: Vec<usize> = if cfg.fit.is_empty() { (0..m).collect() } else { cfg.fit.clone() };
        if let Some(&bad) = idx.iter().find(|&&i| i >= m) {
            return Err(Error::invalid("fit", format!("parameter index {bad} out of range (the system has {m})")));
        }
        if cfg.log_params {
            if let Some(&i) = idx.iter().find(|&&i| p0[i] <= 0.0) {
                return Err(Error::invalid("log_params", format!("parameter {i} is {} but log fitting needs positive values", p0[i])));
            }
        }
        let weights = if cfg.weights.is_empty() { default_weights(obs, system.dim()) } else { cfg.weights.clone() };
        if weights.len() != system.dim() {
            return Err(Error::Shape { what: "fit weights".into(), expected: vec![system.dim()], got: vec![weights.len()] });
        }
        let theta: Vec<f64> = idx.iter().map(|&i| if cfg.log_params { p0[i].ln() } else { p0[i] }).collect();
        let opt = match cfg.optimizer {
            Optimizer::Adam => OptState::Adam(crate::train::Adam::<f64>::new(theta.len())),
            Optimizer::Lbfgs => OptState::Lbfgs { at: None, pairs: Default::default() },
        };
        Ok(FitTrainer { system, p0: p0.to_vec(), obs, cfg: cfg.clone(), idx, weights, theta, opt, converged: false })
    }

    /// The loop options of this configuration: `iterations` steps at Adam's rate, logged every
    /// step.
    pub fn run_options(cfg: &FitConfig) -> RunOptions {
        RunOptions { steps: cfg.iterations, batch_size: 1, lr: cfg.lr, log_every: 1, ..RunOptions::default() }
    }

    /// All parameters at the current `θ` (unfitted ones as in `p0`).
    pub fn params(&self) -> Vec<f64> {
        self.to_p(&self.theta)
    }

    /// Whether the last step met the gradient test (or found no decrease).
    pub fn is_converged(&self) -> bool {
        self.converged
    }

    fn to_p(&self, theta: &[f64]) -> Vec<f64> {
        let mut p = self.p0.clone();
        for (k, &i) in self.idx.iter().enumerate() {
            p[i] = if self.cfg.log_params { theta[k].exp() } else { theta[k] };
        }
        p
    }

    /// Loss and gradient in the fitted coordinates `θ`.
    fn eval(&self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let p = self.to_p(theta);
        let (l, g) = loss_and_gradient(self.system, &p, self.obs, &self.weights, &self.cfg.sim)?;
        let gt = self.idx.iter().map(|&i| if self.cfg.log_params { g[i] * p[i] } else { g[i] }).collect();
        Ok((l, gt))
    }

    /// The loss at the current `θ`.
    ///
    /// # Errors
    /// Solver errors.
    pub fn loss(&self) -> Result<f64> {
        match &self.opt {
            OptState::Lbfgs { at: Some((f, _)), .. } => Ok(*f),
            _ => Ok(self.eval(&self.theta)?.0),
        }
    }
}

impl Trainer for FitTrainer<'_> {
    fn kind(&self) -> &'static str {
        "parameter fit"
    }

    fn config(&self) -> serde_json::Value {
        let c = &self.cfg;
        serde_json::json!({
            "p0": self.p0,
            "dim": self.system.dim(),
            "observations": self.obs.iter().map(|o| o.times.len()).collect::<Vec<_>>(),
            "optimizer": c.optimizer,
            "log_params": c.log_params,
            "fit": self.idx,
            "weights": self.weights,
            "gtol": c.gtol,
            "memory": c.memory,
            "sim": c.sim,
        })
    }

    /// The loss at the start of the step.
    fn step(&mut self, step: usize, lr: f64, _rng: &mut rand::rngs::StdRng) -> Result<Vec<f64>> {
        match &mut self.opt {
            OptState::Adam(_) => {
                let (l, g) = self.eval(&self.theta)?;
                crate::train::check_loss(step, l)?;
                if inf_norm(&g) < self.cfg.gtol {
                    self.converged = true;
                } else if let OptState::Adam(adam) = &mut self.opt {
                    adam.step(&mut self.theta, &g, lr);
                }
                Ok(vec![l])
            }
            OptState::Lbfgs { at, .. } => {
                let (f, g) = match at.take() {
                    Some(v) => v,
                    None => self.eval(&self.theta)?,
                };
                crate::train::check_loss(step, f)?;
                let next = if inf_norm(&g) < self.cfg.gtol {
                    self.converged = true;
                    None
                } else {
                    let OptState::Lbfgs { pairs, .. } = &mut self.opt else { unreachable!() };
                    let mut pairs = std::mem::take(pairs);
                    let r = lbfgs_step(&self.theta, f, &g, &mut pairs, self.cfg.memory, &|t| self.eval(t));
                    if let OptState::Lbfgs { pairs: p, .. } = &mut self.opt {
                        *p = pairs;
                    }
                    r?
                };
                let at_next = match next {
                    Some((theta, ft, gt)) => {
                        self.theta = theta;
                        (ft, gt)
                    }
                    None => {
                        // No decrease along the search direction: the noise floor of the solves.
                        self.converged = true;
                        (f, g)
                    }
                };
                if let OptState::Lbfgs { at, .. } = &mut self.opt {
                    *at = Some(at_next);
                }
                Ok(vec![f])
            }
        }
    }

    fn converged(&self) -> bool {
        self.converged
    }

    fn save(&self, w: &mut CheckpointWriter) -> Result<()> {
        w.json("theta", &self.theta)?;
        w.json("optimizer", &self.opt)
    }

    fn load(&mut self, r: &CheckpointReader) -> Result<()> {
        let theta: Vec<f64> = r.json("theta")?;
        if theta.len() != self.theta.len() {
            return Err(Error::Shape { what: "checkpoint parameters".into(), expected: vec![self.theta.len()], got: vec![theta.len()] });
        }
        self.theta = theta;
        self.opt = r.json("optimizer")?;
        Ok(())
    }
}

/// Fits `system`'s parameters, starting from `p0`, to `obs`, through the training loop with
/// `run` (checkpoints, time budgets, callbacks, progress; [`FitTrainer`]). The loss history
/// is the loss at the start of each step and, last, the loss at the result.
///
/// # Errors
/// As [`FitTrainer::new`]; `Diverged` for a non-finite loss; solver errors; a checkpoint
/// written with other settings is refused.
pub fn fit_with<'a>(system: &'a dyn System, p0: &[f64], obs: &'a [Observation], cfg: &FitConfig, run: &mut Run<'_, FitTrainer<'a>>) -> Result<FitResult> {
    let mut trainer = FitTrainer::new(system, p0, obs, cfg)?;
    if run.label == "train" {
        run.label = "fit".into();
    }
    let report = crate::train::fit(&mut trainer, &FitTrainer::run_options(cfg), run)?;
    let mut loss_history: Vec<f64> = report.log.iter().map(|r| r.values[0]).collect();
    loss_history.push(trainer.loss()?);
    Ok(FitResult { params: trainer.params(), loss_history, converged: trainer.is_converged() })
}

/// [`fit_with`] without checkpoints or progress bar; `on_iteration(step, loss)` is called
/// after each step (for the caller's progress display).
///
/// # Errors
/// As [`fit_with`].
pub fn fit(system: &dyn System, p0: &[f64], obs: &[Observation], cfg: &FitConfig, mut on_iteration: impl FnMut(usize, f64)) -> Result<FitResult> {
    let mut run = Run::quiet().on(Every::Steps(1), move |_, info| {
        on_iteration(info.step - 1, info.losses[0]);
        Ok(Control::Continue)
    });
    fit_with(system, p0, obs, cfg, &mut run)
}

fn inf_norm(g: &[f64]) -> f64 {
    g.iter().fold(0.0f64, |a, b| a.max(b.abs()))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

type Pairs = std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)>;

/// One L-BFGS iteration from `θ` with loss `f` and gradient `g` (Nocedal & Wright, Alg. 7.4
/// two-loop recursion, Alg. 7.5 update): the accepted `(θ', f', g')`, or `None` when the
/// backtracking Armijo search finds no decrease. A failed solve at a trial point counts as a
/// rejection. Updates the curvature pairs (at most `memory`).
fn lbfgs_step(
    theta: &[f64],
    f: f64,
    g: &[f64],
    pairs: &mut Pairs,
    memory: usize,
    eval: &dyn Fn(&[f64]) -> Result<(f64, Vec<f64>)>,
) -> Result<Option<(Vec<f64>, f64, Vec<f64>)>> {
    // Two-loop recursion: d = −H g.
    let mut q = g.to_vec();
    let mut alphas = Vec::with_capacity(pairs.len());
    for (s, y, rho) in pairs.iter().rev() {
        let a = rho * dot(s, &q);
        q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
        alphas.push(a);
    }
    let gamma = pairs.back().map(|(s, y, _)| dot(s, y) / dot(y, y)).unwrap_or_else(|| 1.0 / inf_norm(g).max(1.0));
    q.iter_mut().for_each(|v| *v *= gamma);
    for ((s, y, rho), a) in pairs.iter().zip(alphas.iter().rev()) {
        let b = rho * dot(y, &q);
        q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
    }
    let mut d: Vec<f64> = q.iter().map(|v| -v).collect();
    let mut slope = dot(g, &d);
    if slope >= 0.0 {
        // Not a descent direction (curvature information went bad): restart.
        pairs.clear();
        d = g.iter().map(|v| -v / inf_norm(g).max(1.0)).collect();
        slope = dot(g, &d);
    }
    let mut step = 1.0;
    let mut accepted = None;
    for _ in 0..30 {
        let trial: Vec<f64> = theta.iter().zip(&d).map(|(t, di)| t + step * di).collect();
        match eval(&trial) {
            Ok((ft, gt)) if ft.is_finite() && ft <= f + 1e-4 * step * slope => {
                accepted = Some((trial, ft, gt));
                break;
            }
            Ok(_) | Err(Error::SolverFailed { .. }) | Err(Error::NonFinite { .. }) => step *= 0.5,
            Err(e) => return Err(e),
        }
    }
    let Some((trial, ft, gt)) = accepted else { return Ok(None) };
    let s: Vec<f64> = trial.iter().zip(theta).map(|(a, b)| a - b).collect();
    let y: Vec<f64> = gt.iter().zip(g).map(|(a, b)| a - b).collect();
    let sy = dot(&s, &y);
    if sy > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
        if pairs.len() == memory.max(1) {
            pairs.pop_front();
        }
        pairs.push_back((s, y, 1.0 / sy));
    }
    Ok(Some((trial, ft, gt)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::systems::LotkaVolterra;
    use crate::sim::{simulate_with, SimOptions};

    /// Noise-free Lotka–Volterra data on t ∈ (0, 4] from the true `p = [1.5, 1, 1, 3]`.
    fn data(sys: &LotkaVolterra) -> Vec<Observation> {
        let times: Vec<f64> = (1..=20).map(|k| 0.2 * k as f64).collect();
        let opts = SimOptions { rtol: 1e-10, atol: 1e-12, ..SimOptions::default() };
        let tr = simulate_with(sys, &sys.p, &sys.y0, &times, &opts).unwrap();
        vec![Observation { times, y0: sys.y0.to_vec(), data: tr.states }]
    }

    /// From a start 20 % off, L-BFGS (in log coordinates) recovers the true parameters of
    /// noise-free data to 1e-4 relative and reports convergence; Adam lowers the loss. The
    /// reference is the data-generating parameters themselves (an identifiable problem: 20
    /// observations of both species).
    #[test]
    fn recovers_true_parameters() {
        let sys = LotkaVolterra::default();
        let obs = data(&sys);
        let p0 = [1.8, 0.8, 1.2, 2.5];
        let cfg = FitConfig { iterations: 60, log_params: true, gtol: 1e-9, ..FitConfig::default() };
        let r = fit(&sys, &p0, &obs, &cfg, |_, _| {}).unwrap();
        for (a, b) in r.params.iter().zip(&sys.p) {
            assert!((a - b).abs() < 1e-4 * b, "fitted {:?} vs true {:?}", r.params, sys.p);
        }
        assert!(r.converged, "L-BFGS did not report convergence; history {:?}", r.loss_history);
        let adam = FitConfig { optimizer: Optimizer::Adam, iterations: 30, lr: 2e-2, log_params: true, ..FitConfig::default() };
        let r = fit(&sys, &p0, &obs, &adam, |_, _| {}).unwrap();
        assert_eq!(r.loss_history.len(), 31);
        assert!(r.loss_history[30] < 0.5 * r.loss_history[0], "Adam: {:?}", r.loss_history);
    }

    /// A fit stopped after 3 steps and resumed from its checkpoint ends bit for bit where an
    /// uninterrupted one does (L-BFGS with its curvature pairs, Adam with its moments).
    #[test]
    fn resume_is_exact() {
        let sys = LotkaVolterra::default();
        let obs = data(&sys);
        let p0 = [1.8, 0.8, 1.2, 2.5];
        let dir = std::env::temp_dir().join(format!("physflow-simfit-{}", std::process::id()));
        for optimizer in [Optimizer::Lbfgs, Optimizer::Adam] {
            let _ = std::fs::remove_dir_all(&dir);
            let cfg = FitConfig { optimizer, iterations: 8, gtol: 0.0, ..FitConfig::default() };
            let full = fit(&sys, &p0, &obs, &cfg, |_, _| {}).unwrap();
            let first = fit_with(&sys, &p0, &obs, &cfg, &mut Run { stop_after: Some(3), ..Run::quiet().with_checkpoint(&dir) }).unwrap();
            assert_ne!(first.params, full.params);
            let resumed = fit_with(&sys, &p0, &obs, &cfg, &mut Run::quiet().with_checkpoint(&dir)).unwrap();
            assert!(resumed.params == full.params, "{optimizer:?}: resumed {:?} vs {:?}", resumed.params, full.params);
            assert_eq!(resumed.loss_history, full.loss_history);
        }
        std::fs::remove_dir_all(&dir).unwrap();
        // Bad input is an error naming it.
        assert!(matches!(fit(&sys, &p0, &[], &FitConfig::default(), |_, _| {}), Err(Error::InvalidArgument { name: "observations", .. })));
        let bad = FitConfig { fit: vec![7], ..FitConfig::default() };
        assert!(matches!(fit(&sys, &p0, &obs, &bad, |_, _| {}), Err(Error::InvalidArgument { name: "fit", .. })));
    }
}
