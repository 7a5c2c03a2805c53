//! Field metrics.
//!
//! Ensemble metrics (ECI, Cheng et al. 2024, §5; PCFM, Utkarsh et al. 2025, §5): for a
//! generated ensemble and a reference ensemble of the same condition,
//! `MMSE = mean_p (ū_gen(p) − ū_ref(p))²` and `SMSE = mean_p (s_gen(p) − s_ref(p))²` over grid
//! points `p`, with `ū, s` the pointwise mean and (population) standard deviation.
//!
//! Paired metrics as PDEBench defines them (Takamoto et al. 2022, `metrics.py`), for a
//! prediction `p` and a target `q` on a grid with spatial points `x` and times `t` (one time
//! on a grid without a time axis):
//! * `RMSE = mean_{b,c,t} √(mean_x (p − q)²)`; `nRMSE = mean_{b,c,t} √(mean_x (p − q)²) / √(mean_x q²)`;
//! * `cRMSE = mean_{c,t} √(mean_b (Σ_x p − Σ_x q)²) / N_x` (the conserved quantity);
//! * `bRMSE`: 1D, `mean_{b,c,t} √(((p − q)²_{x₀} + (p − q)²_{x_end})/2)`; 2D,
//!   `mean_{b,c} √(Σ_edges (p − q)² / (2N_x + 2N_y))`.

use ndarray::{Array1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use super::constraint::Constraint;
use super::grid::Grid;
use crate::{Error, Result};

/// Pointwise mean and population standard deviation of an ensemble `[batch, n]`.
///
/// # Errors
/// `Shape` for an empty ensemble (no rows).
pub fn ensemble_moments(fields: &ArrayView2<'_, f64>) -> Result<(Array1<f64>, Array1<f64>)> {
    let Some(mean) = fields.mean_axis(Axis(0)) else {
        return Err(Error::Shape { what: "ensemble (at least one field)".into(), expected: vec![1, fields.ncols()], got: fields.shape().to_vec() });
    };
    let var = fields.var_axis(Axis(0), 0.0);
    Ok((mean, var.mapv(f64::sqrt)))
}

fn same_width(a: &ArrayView2<'_, f64>, b: &ArrayView2<'_, f64>) -> Result<()> {
    if a.ncols() != b.ncols() || a.nrows() == 0 || b.nrows() == 0 {
        return Err(Error::Shape { what: "ensembles".into(), expected: vec![a.nrows(), a.ncols()], got: b.shape().to_vec() });
    }
    Ok(())
}

/// `(MMSE, SMSE)` of `generated` against `reference` (both `[batch, n]`, any batch sizes).
///
/// # Errors
/// `Shape` for different widths or an empty ensemble.
pub fn mmse_smse(generated: &ArrayView2<'_, f64>, reference: &ArrayView2<'_, f64>) -> Result<(f64, f64)> {
    same_width(generated, reference)?;
    let (mg, sg) = ensemble_moments(generated)?;
    let (mr, sr) = ensemble_moments(reference)?;
    let n = mg.len() as f64;
    let mmse = mg.iter().zip(&mr).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / n;
    let smse = sg.iter().zip(&sr).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / n;
    Ok((mmse, smse))
}

/// How far fields are from satisfying a constraint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConstraintError {
    /// `mean_b ‖h(u_b)‖₂`.
    pub mean_l2: f64,
    /// `max_{b,r} |h_r(u_b)|`.
    pub max_abs: f64,
}

/// The constraint error of each row of `fields: [batch, n]`, summarised.
///
/// # Errors
/// `Shape` for fields of another size.
pub fn constraint_error(c: &dyn Constraint, fields: &ArrayView2<'_, f64>) -> Result<ConstraintError> {
    if fields.ncols() != c.dim() {
        return Err(Error::Shape { what: format!("fields for `{}`", c.name()), expected: vec![fields.nrows(), c.dim()], got: fields.shape().to_vec() });
    }
    let mut h = vec![0.0; c.rows()];
    let mut out = ConstraintError::default();
    for row in fields.outer_iter() {
        c.residual(&row.to_vec(), &mut h);
        out.mean_l2 += h.iter().map(|x| x * x).sum::<f64>().sqrt();
        out.max_abs = out.max_abs.max(h.iter().fold(0.0f64, |a, x| a.max(x.abs())));
    }
    out.mean_l2 /= fields.nrows().max(1) as f64;
    Ok(out)
}

/// PDEBench's paired errors of a prediction against its target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PairedErrors {
    /// RMSE.
    pub rmse: f64,
    /// Normalised RMSE.
    pub nrmse: f64,
    /// RMSE of the conserved quantity (the spatial sum).
    pub crmse: f64,
    /// RMSE on the boundary points.
    pub brmse: f64,
}

/// PDEBench's RMSE, nRMSE, cRMSE and bRMSE of `pred` against `target` (both `[batch, n]` on
/// `grid`, paired by row).
///
/// # Errors
/// `Shape` when the arrays differ or do not fit the grid.
pub fn pdebench_errors(grid: &Grid, pred: &ArrayView2<'_, f64>, target: &ArrayView2<'_, f64>) -> Result<PairedErrors> {
    grid.check_flat("prediction", pred)?;
    grid.check_flat("target", target)?;
    if pred.dim() != target.dim() || pred.nrows() == 0 {
        return Err(Error::Shape { what: "prediction vs target".into(), expected: target.shape().to_vec(), got: pred.shape().to_vec() });
    }
    let [nc, nx, ny] = grid.shape4();
    let timed = grid.time_axis().is_some();
    // Spatial points per (c, t), and the number of times.
    let (ns, nt) = if timed { (nx, ny) } else { (nx * ny, 1) };
    let at = |c: usize, s: usize, t: usize| if timed { grid.index(c, s, t) } else { c * nx * ny + s };
    let nb = pred.nrows();
    let mut out = PairedErrors::default();
    let mut count = 0.0;
    for c in 0..nc {
        for t in 0..nt {
            let mut csv = 0.0;
            for b in 0..nb {
                let (p, q) = (pred.row(b), target.row(b));
                let mut se = 0.0;
                let mut sq = 0.0;
                let mut diff_sum = 0.0;
                for s in 0..ns {
                    let d = p[at(c, s, t)] - q[at(c, s, t)];
                    se += d * d;
                    sq += q[at(c, s, t)].powi(2);
                    diff_sum += d;
                }
                let rmse = (se / ns as f64).sqrt();
                out.rmse += rmse;
                out.nrmse += rmse / (sq / ns as f64).sqrt();
                csv += diff_sum * diff_sum;
                if timed || ny == 1 {
                    let d0 = p[at(c, 0, t)] - q[at(c, 0, t)];
                    let d1 = p[at(c, ns - 1, t)] - q[at(c, ns - 1, t)];
                    out.brmse += ((d0 * d0 + d1 * d1) / 2.0).sqrt();
                } else {
                    let idx = |i: usize, j: usize| c * nx * ny + i * ny + j;
                    let mut e = 0.0;
                    for i in 0..nx {
                        e += (p[idx(i, 0)] - q[idx(i, 0)]).powi(2) + (p[idx(i, ny - 1)] - q[idx(i, ny - 1)]).powi(2);
                    }
                    for j in 0..ny {
                        e += (p[idx(0, j)] - q[idx(0, j)]).powi(2) + (p[idx(nx - 1, j)] - q[idx(nx - 1, j)]).powi(2);
                    }
                    out.brmse += (e / (2 * nx + 2 * ny) as f64).sqrt();
                }
            }
            out.crmse += (csv / nb as f64).sqrt() / ns as f64;
            count += 1.0;
        }
    }
    let pairs = count * nb as f64;
    out.rmse /= pairs;
    out.nrmse /= pairs;
    out.brmse /= pairs;
    out.crmse /= count;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pde::grid::Axis;
    use ndarray::Array2;

    /// Hand-computed values on a 2-point space × 2-time grid, pred = target + offsets:
    /// batch 1, p − q = [[1, 0], [0, 0]] (x₀ at t₀ off by 1), q = 2 everywhere.
    /// RMSE per t: t₀ √(1/2), t₁ 0 → mean √2/4; nRMSE = that / 2; cRMSE per t: |Σ d|/2 = 1/2, 0
    /// → 1/4; bRMSE per t: √((1 + 0)/2), 0 → √2/4.
    #[test]
    fn pdebench_errors_by_hand() {
        let grid = Grid::space_time(Axis::space("x", 2, 0.0, 1.0, false), Axis::time(2, 0.0, 1.0));
        let q = Array2::from_elem((1, 4), 2.0);
        let mut p = q.clone();
        p[[0, grid.index(0, 0, 0)]] += 1.0;
        let e = pdebench_errors(&grid, &p.view(), &q.view()).unwrap();
        let s2 = 2f64.sqrt();
        assert!((e.rmse - s2 / 4.0).abs() < 1e-15);
        assert!((e.nrmse - s2 / 8.0).abs() < 1e-15);
        assert!((e.crmse - 0.25).abs() < 1e-15);
        assert!((e.brmse - s2 / 4.0).abs() < 1e-15);
    }

    /// MMSE and SMSE vanish for identical ensembles and equal the squared shift / squared
    /// scale change for shifted and scaled copies.
    #[test]
    fn ensemble_metrics_of_shifted_and_scaled_copies() {
        let a = Array2::from_shape_fn((50, 3), |(i, j)| ((i * 7 + j * 3) % 11) as f64);
        let (m0, s0) = mmse_smse(&a.view(), &a.view()).unwrap();
        assert_eq!((m0, s0), (0.0, 0.0));
        let shifted = &a + 0.5;
        let (m1, s1) = mmse_smse(&shifted.view(), &a.view()).unwrap();
        assert!((m1 - 0.25).abs() < 1e-12 && s1 < 1e-24);
        let (_, sd) = ensemble_moments(&a.view()).unwrap();
        let scaled = (&a - &a.mean_axis(Axis(0)).unwrap()) * 2.0 + &a.mean_axis(Axis(0)).unwrap();
        let (m2, s2) = mmse_smse(&scaled.view(), &a.view()).unwrap();
        let expect = sd.iter().map(|s| s * s).sum::<f64>() / 3.0;
        assert!(m2 < 1e-20 && (s2 - expect).abs() < 1e-10 * expect);
    }
}
