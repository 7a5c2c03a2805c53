//! The study's report: its numbers, the Markdown summary and the figures.

use std::path::Path;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{MethodScores, PdeStudyConfig};
use crate::pde::{self, Constraint, Grid};
use crate::plot::{save_figure, save_heatmaps, Heatmap, Panel, Series};
use crate::train::read_json;
use crate::Result;

/// Numbers of a finished study.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PdeStudyReport {
    /// The configuration.
    pub config: PdeStudyConfig,
    /// The device trained on (`cpu`, `wgpu`, `cuda`).
    #[serde(default)]
    pub device: String,
    /// Field shape `[C, X, T]`.
    pub field_shape: Vec<usize>,
    /// The constraint (names and rows).
    pub constraint: String,
    /// Training seconds (all runs).
    pub train_seconds: f64,
    /// Final training loss (mean of the last 10 % of logged steps).
    pub final_loss: f64,
    /// Reference ensembles first, then one row per sampler.
    pub scores: Vec<MethodScores>,
    /// MMSE (and the other scores) by NFE, one curve per sampler of [`PdeStudyConfig::nfes`].
    #[serde(default)]
    pub mmse_by_nfe: Vec<NfeCurve>,
    /// Files written.
    pub files: Vec<String>,
}

/// One sampler's scores at each NFE of [`PdeStudyConfig::nfes`] it can take.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NfeCurve {
    /// The sampler (`unconstrained, euler`, `unconstrained, midpoint`, `pcfm`).
    pub sampler: String,
    /// Scores at each NFE (`nfe` holds the evaluations counted by the sampler).
    pub points: Vec<MethodScores>,
}

/// Reads a finished study's report.
///
/// # Errors
/// `Io`/`Format` when it is missing or unreadable.
pub fn read_report(out: &Path) -> Result<PdeStudyReport> {
    read_json(&out.join("report.json"))
}

/// `mean_b |h_r(u_b)|` per constraint row.
pub(super) fn mean_abs_rows(c: &dyn Constraint, fields: &Array2<f64>) -> Vec<f64> {
    let mut acc = vec![0.0; c.rows()];
    let mut h = vec![0.0; c.rows()];
    for row in fields.outer_iter() {
        c.residual(&row.to_vec(), &mut h);
        acc.iter_mut().zip(&h).for_each(|(a, v)| *a += v.abs() / fields.nrows() as f64);
    }
    acc
}

/// A heatmap of a field on `[x, t]` (x across, t up).
pub(super) fn heatmap(title: String, grid: &Grid, v: &[f64]) -> Heatmap {
    let (x, t) = (&grid.axes[0], &grid.axes[1]);
    let values = (0..t.n).flat_map(|k| (0..x.n).map(move |i| (i, k))).map(|(i, k)| v[grid.index(0, i, k)]).collect();
    Heatmap { title, xlabel: "x".into(), ylabel: "t".into(), xs: x.coords(), ys: t.coords(), values }
}

pub(super) fn draw_fields(path: &Path, grid: &Grid, reference: &Array2<f64>, generated: &[(String, Array2<f64>)]) -> Result<()> {
    let (rm, rs) = pde::ensemble_moments(&reference.view())?;
    let mut maps = vec![
        heatmap("reference: one field".into(), grid, &reference.row(0).to_vec()),
        heatmap("reference: mean".into(), grid, &rm.to_vec()),
        heatmap("reference: std".into(), grid, &rs.to_vec()),
    ];
    for (label, g) in generated {
        let (gm, gs) = pde::ensemble_moments(&g.view())?;
        maps.push(heatmap(format!("{label}: one field"), grid, &g.row(0).to_vec()));
        maps.push(heatmap(format!("{label}: mean"), grid, &gm.to_vec()));
        maps.push(heatmap(format!("{label}: std"), grid, &gs.to_vec()));
    }
    save_heatmaps(path, &maps, 3)
}

/// MMSE and constraint error by NFE (log₂ NFE against log₁₀ of each), one line per sampler.
pub(super) fn draw_nfe_curves(path: &Path, curves: &[NfeCurve]) -> Result<()> {
    let panel = |title: &str, ylabel: &str, value: fn(&MethodScores) -> f64| Panel {
        title: title.into(),
        xlabel: "log₂ NFE".into(),
        ylabel: ylabel.into(),
        series: curves
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.points.is_empty())
            .map(|(i, c)| {
                let xs = c.points.iter().map(|p| (p.nfe as f64).log2()).collect();
                let ys = c.points.iter().map(|p| value(p).max(1e-300).log10()).collect();
                Series::line(c.sampler.clone(), xs, ys, i)
            })
            .collect(),
        log_y: false,
    };
    save_figure(path, &[panel("MMSE by NFE", "log₁₀ MMSE", |p| p.mmse), panel("Constraint error by NFE", "log₁₀ mean ‖h‖₂", |p| p.constraint_l2)], 2)
}

pub(super) fn draw_residuals(path: &Path, rows: &[(String, Vec<f64>)], losses: &[(usize, f64, f64)]) -> Result<()> {
    let mut res = Panel {
        title: "mean |h_r| per constraint row".into(),
        xlabel: "constraint row (blocks as in the report)".into(),
        ylabel: "|h_r|".into(),
        log_y: true,
        ..Panel::default()
    };
    for (k, (label, r)) in rows.iter().enumerate() {
        // Exact zeros cannot be drawn on a log axis: floor at 1e-17.
        let ys: Vec<f64> = r.iter().map(|v| v.max(1e-17)).collect();
        res.series.push(Series::line(label.clone(), (0..ys.len()).map(|i| i as f64).collect(), ys, k));
    }
    let loss = Panel {
        title: "training loss (flow matching)".into(),
        xlabel: "step".into(),
        ylabel: "MSE".into(),
        log_y: true,
        series: vec![Series::line("", losses.iter().map(|l| l.0 as f64).collect(), losses.iter().map(|l| l.1).collect(), 0)],
    };
    save_figure(path, &[res, loss], 2)
}

/// The report as Markdown: one table of scores.
pub fn markdown(r: &PdeStudyReport) -> String {
    let c = &r.config;
    let mut s = format!(
        "# PDE-field study: {}\n\nTrained on device `{}`.\n\nField {:?} ([C, X, T]), {} training fields, {} conditions × {} fields, {} sampling steps, FFM {} steps ({:.0} s, final loss {:.4}).\n\
         Constraint: {}.\n\n\
         | method | MMSE | SMSE | CE ‖h‖₂ | max \\|h\\| | nRMSE (mean) | cRMSE (mean) | bRMSE (mean) | ms / field | of which projection | NFE | max GN iter |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        c.problem.name(),
        r.device,
        r.field_shape,
        c.n_train,
        c.conditions,
        c.ensemble,
        c.sample_steps,
        c.train.run.steps,
        r.train_seconds,
        r.final_loss,
        r.constraint
    );
    for m in &r.scores {
        if m.method.starts_with("reference") {
            s += &format!("| {} | — | — | {:.2e} | {:.2e} | — | — | — | — | — | — | — |\n", m.method, m.constraint_l2, m.constraint_max);
        } else {
            s += &format!(
                "| {} | {:.3e} | {:.3e} | {:.2e} | {:.2e} | {:.3e} | {:.3e} | {:.3e} | {:.2} | {:.2} | {} | {} |\n",
                m.method,
                m.mmse,
                m.smse,
                m.constraint_l2,
                m.constraint_max,
                m.nrmse_mean,
                m.crmse_mean,
                m.brmse_mean,
                m.ms_per_field,
                m.projection_ms_per_field,
                m.nfe,
                m.max_gn_iterations
            );
        }
    }
    if r.mmse_by_nfe.iter().any(|c| !c.points.is_empty()) {
        s += "\n## MMSE by NFE\n\nSame conditions and noise as above; NFE = model evaluations per field.\n\n| sampler | NFE | MMSE | SMSE | CE ‖h‖₂ | max \\|h\\| | ms / field |\n|---|---:|---:|---:|---:|---:|---:|\n";
        for c in &r.mmse_by_nfe {
            for p in &c.points {
                s += &format!(
                    "| {} | {} | {:.3e} | {:.3e} | {:.2e} | {:.2e} | {:.2} |\n",
                    c.sampler, p.nfe, p.mmse, p.smse, p.constraint_l2, p.constraint_max, p.ms_per_field
                );
            }
        }
    }
    s += "\nFigures: `fields.png` (first condition: reference and generated fields, means, standard deviations), `residuals.png` (mean |h_r| per constraint row, training loss)";
    s += if r.mmse_by_nfe.iter().any(|c| !c.points.is_empty()) { ", `mmse_by_nfe.png` (MMSE and constraint error by NFE).\n" } else { ".\n" };
    s
}
