//! (placeholder until the reweighting module lands)
use ndarray::{Array1, ArrayView1};
pub fn log_weights(beta: f64, u: ArrayView1<f64>, log_q: ArrayView1<f64>) -> Array1<f64> {
    -beta * &u - &log_q
}
pub fn kish_ess(log_w: ArrayView1<f64>) -> crate::Result<f64> {
    let m = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let (s1, s2) = log_w.iter().fold((0.0, 0.0), |(a, b), l| { let w = (l - m).exp(); (a + w, b + w * w) });
    Ok(s1 * s1 / s2)
}
