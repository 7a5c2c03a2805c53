//! `physflow simulate`: ensembles of a library system written to files.

use std::path::Path;

use ndarray::Array2;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::{write_csv, write_npy};
use crate::sim::{ensemble, systems, SimOptions};
use crate::train::write_json;
use crate::{Error, Result};

/// The file format of [`simulate_to_files`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ArrayFormat {
    /// NumPy `.npy` files (`states.npy [N, T, D]`, `times.npy`, `params.npy`, `y0.npy`).
    Npy,
    /// One `trajectories.csv` (sample, t, y0..y{D-1}).
    Csv,
}

/// How many trajectories, over which times, and how they vary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulateSpec {
    /// Number of trajectories `N`.
    pub samples: usize,
    /// Final time (outputs uniform on `[0, t_end]`).
    pub t_end: f64,
    /// Number of output times `T`.
    pub n_times: usize,
    /// Initial states `y₀ (1 + s ξ)`, `ξ ~ N(0, I)`; sample 0 keeps the system's own.
    pub y0_spread: f64,
    /// Parameters `p exp(s ξ)`; sample 0 keeps the system's own.
    pub param_spread: f64,
    /// Seed of the perturbations.
    pub seed: u64,
}

/// Simulates `system` (a [`systems::by_name`] name) per `spec` and writes the
/// trajectories under `out` as `npy` (states `[N, T, D]`, times, params, y0) or
/// `csv` (one row per sample and time), plus `meta.json`. Returns the files written.
pub fn simulate_to_files(system: &str, spec: &SimulateSpec, opts: &SimOptions, out: &Path, format: ArrayFormat, progress: bool) -> Result<Vec<String>> {
    if spec.samples == 0 || spec.n_times < 2 {
        return Err(Error::invalid("samples", "need at least one sample and two output times"));
    }
    let sys = systems::by_name(system)?;
    let (n, d) = (spec.samples, sys.dim());
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let (p0, y0) = (sys.params(), sys.initial_state());
    let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
    let params = Array2::from_shape_fn((n, p0.len()), |(k, j)| if k == 0 { p0[j] } else { p0[j] * (spec.param_spread * normal()).exp() });
    let y0s = Array2::from_shape_fn((n, d), |(k, i)| if k == 0 { y0[i] } else { y0[i] * (1.0 + spec.y0_spread * normal()) });
    let times: Vec<f64> = (0..spec.n_times).map(|k| spec.t_end * k as f64 / (spec.n_times - 1) as f64).collect();
    let states = ensemble(sys.as_ref(), Some(&params), Some(&y0s), &times, opts, progress)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut files = Vec::new();
    let mut put = |name: &str| {
        let p = out.join(name);
        files.push(p.display().to_string());
        p
    };
    if format == ArrayFormat::Npy {
        write_npy(&put("states.npy"), &[n, spec.n_times, d], states.as_slice().expect("contiguous"))?;
        write_npy(&put("times.npy"), &[spec.n_times], &times)?;
        write_npy(&put("params.npy"), &[n, p0.len()], params.as_slice().expect("contiguous"))?;
        write_npy(&put("y0.npy"), &[n, d], y0s.as_slice().expect("contiguous"))?;
    } else {
        let mut header = vec!["sample".to_string(), "t".to_string()];
        header.extend((0..d).map(|i| format!("y{i}")));
        let rows: Vec<Vec<f64>> = (0..n)
            .flat_map(|k| (0..spec.n_times).map(move |t| (k, t)))
            .map(|(k, t)| {
                let mut r = vec![k as f64, times[t]];
                r.extend(states.slice(ndarray::s![k, t, ..]).iter());
                r
            })
            .collect();
        write_csv(&put("trajectories.csv"), &header, &rows)?;
    }
    let meta = serde_json::json!({
        "system": sys.name(),
        "param_names": sys.param_names(),
        "default_params": p0,
        "spec": spec,
        "options": opts,
        "generator": format!("physflow {}", env!("CARGO_PKG_VERSION")),
        "layout": if format == ArrayFormat::Npy { "states.npy [samples, times, dim]; times.npy [times]; params.npy [samples, params]; y0.npy [samples, dim]" } else { "trajectories.csv: sample, t, y0..y{D-1}" },
    });
    write_json(&put("meta.json"), &meta)?;
    Ok(files)
}
