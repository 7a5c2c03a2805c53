//! Parameter estimation: fit a system's parameters to observed trajectories by
//! weighted least squares, with adjoint gradients and L-BFGS or Adam.

use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::sens::adjoint_gradient;
use super::solve::SimOptions;
use super::System;
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

/// Fits `system`'s parameters, starting from `p0`, to `obs`. `on_iteration`
/// is called with `(iteration, loss)` after each iteration (for progress bars).
pub fn fit(system: &dyn System, p0: &[f64], obs: &[Observation], cfg: &FitConfig, mut on_iteration: impl FnMut(usize, f64)) -> Result<FitResult> {
    if obs.is_empty() {
        return Err(Error::invalid("observations", "nothing to fit to"));
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
    let to_p = |theta: &[f64]| {
        let mut p = p0.to_vec();
        for (k, &i) in idx.iter().enumerate() {
            p[i] = if cfg.log_params { theta[k].exp() } else { theta[k] };
        }
        p
    };
    // Loss and gradient in the fitted coordinates θ.
    let eval = |theta: &[f64]| -> Result<(f64, Vec<f64>)> {
        let p = to_p(theta);
        let (l, g) = loss_and_gradient(system, &p, obs, &weights, &cfg.sim)?;
        let gt = idx.iter().map(|&i| if cfg.log_params { g[i] * p[i] } else { g[i] }).collect();
        Ok((l, gt))
    };
    let theta0: Vec<f64> = idx.iter().map(|&i| if cfg.log_params { p0[i].ln() } else { p0[i] }).collect();
    let (theta, history, converged) = match cfg.optimizer {
        Optimizer::Adam => adam(theta0, cfg, &eval, &mut on_iteration)?,
        Optimizer::Lbfgs => lbfgs(theta0, cfg, &eval, &mut on_iteration)?,
    };
    Ok(FitResult { params: to_p(&theta), loss_history: history, converged })
}

type Eval<'a> = dyn Fn(&[f64]) -> Result<(f64, Vec<f64>)> + 'a;

fn inf_norm(g: &[f64]) -> f64 {
    g.iter().fold(0.0f64, |a, b| a.max(b.abs()))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn adam(mut theta: Vec<f64>, cfg: &FitConfig, eval: &Eval, on_iteration: &mut dyn FnMut(usize, f64)) -> Result<(Vec<f64>, Vec<f64>, bool)> {
    let (b1, b2, eps) = (0.9, 0.999, 1e-8);
    let (mut mom, mut var) = (vec![0.0; theta.len()], vec![0.0; theta.len()]);
    let mut history = Vec::with_capacity(cfg.iterations + 1);
    for it in 0..cfg.iterations {
        let (l, g) = eval(&theta)?;
        crate::train::check_loss(it, l)?;
        history.push(l);
        on_iteration(it, l);
        if inf_norm(&g) < cfg.gtol {
            return Ok((theta, history, true));
        }
        let t = (it + 1) as i32;
        for k in 0..theta.len() {
            mom[k] = b1 * mom[k] + (1.0 - b1) * g[k];
            var[k] = b2 * var[k] + (1.0 - b2) * g[k] * g[k];
            let (mh, vh) = (mom[k] / (1.0 - b1.powi(t)), var[k] / (1.0 - b2.powi(t)));
            theta[k] -= cfg.lr * mh / (vh.sqrt() + eps);
        }
    }
    let (l, _) = eval(&theta)?;
    history.push(l);
    Ok((theta, history, false))
}

fn lbfgs(mut theta: Vec<f64>, cfg: &FitConfig, eval: &Eval, on_iteration: &mut dyn FnMut(usize, f64)) -> Result<(Vec<f64>, Vec<f64>, bool)> {
    let (mut f, mut g) = eval(&theta)?;
    crate::train::check_loss(0, f)?;
    let mut history = vec![f];
    let mut pairs: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = Default::default();
    for it in 0..cfg.iterations {
        if inf_norm(&g) < cfg.gtol {
            return Ok((theta, history, true));
        }
        // Two-loop recursion: d = −H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(pairs.len());
        for (s, y, rho) in pairs.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        let gamma = pairs.back().map(|(s, y, _)| dot(s, y) / dot(y, y)).unwrap_or_else(|| 1.0 / inf_norm(&g).max(1.0));
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), a) in pairs.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let mut d: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction (curvature information went bad): restart.
            pairs.clear();
            d = g.iter().map(|v| -v / inf_norm(&g).max(1.0)).collect();
            slope = dot(&g, &d);
        }
        // Backtracking Armijo line search; a failed solve at a trial point counts as a rejection.
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
        let Some((trial, ft, gt)) = accepted else {
            // No decrease along d: we are at the noise floor of the solves.
            return Ok((theta, history, inf_norm(&g) < cfg.gtol));
        };
        let s: Vec<f64> = trial.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gt.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
            if pairs.len() == cfg.memory.max(1) {
                pairs.pop_front();
            }
            pairs.push_back((s, y, 1.0 / sy));
        }
        theta = trial;
        f = ft;
        g = gt;
        history.push(f);
        on_iteration(it, f);
    }
    Ok((theta, history, inf_norm(&g) < cfg.gtol))
}
