//! Ensembles: many parameter sets or initial states of one system, in parallel.

use ndarray::{Array2, Array3, Axis};
use rayon::prelude::*;

use super::solve::{simulate_with, SimOptions};
use super::System;
use crate::{Error, Result};

/// Solves `system` for each row of `params` (`[N, P]`) and of `y0s` (`[N, D]`);
/// either may be `None` for the system's own values. Runs on rayon's pool; each
/// member is an independent solve, so the result is bit-identical to solving
/// them one after another. Returns the states `[N, T, D]`. With `progress`,
/// a progress bar ([`crate::train::Progress`]) counts finished members. The first failing member's error
/// is returned as is (an [`Error::SolverFailed`] names the system and time).
pub fn ensemble(
    system: &dyn System,
    params: Option<&Array2<f64>>,
    y0s: Option<&Array2<f64>>,
    times: &[f64],
    opts: &SimOptions,
    progress: bool,
) -> Result<Array3<f64>> {
    let n = match (params, y0s) {
        (Some(p), Some(y)) if p.nrows() != y.nrows() => {
            return Err(Error::Shape { what: "ensemble y0s (rows must match params)".into(), expected: vec![p.nrows(), system.dim()], got: y.shape().to_vec() })
        }
        (Some(p), _) => p.nrows(),
        (None, Some(y)) => y.nrows(),
        (None, None) => return Err(Error::invalid("ensemble", "give parameter sets, initial states, or both")),
    };
    let p_default = system.params();
    let y_default = system.initial_state();
    let bar = crate::train::progress(n as u64, &format!("ensemble of {}", system.name()), !progress);
    let members: Vec<Result<Array2<f64>>> = (0..n)
        .into_par_iter()
        .map(|k| {
            let p = params.map(|a| a.row(k).to_vec()).unwrap_or_else(|| p_default.clone());
            let y0 = y0s.map(|a| a.row(k).to_vec()).unwrap_or_else(|| y_default.clone());
            let out = simulate_with(system, &p, &y0, times, opts).map(|t| t.states);
            bar.inc(1);
            out
        })
        .collect();
    bar.finish_and_clear();
    let mut out = Array3::zeros((n, times.len(), system.dim()));
    for (k, m) in members.into_iter().enumerate() {
        out.index_axis_mut(Axis(0), k).assign(&m?);
    }
    Ok(out)
}
