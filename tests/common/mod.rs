//! Helpers shared by the integration tests.

#![allow(dead_code)]

use ndarray::Array2;

/// `log|det M|` by Gaussian elimination with partial pivoting.
pub fn log_abs_det(mut m: Array2<f64>) -> f64 {
    let n = m.nrows();
    let mut ld = 0.0;
    for c in 0..n {
        let p = (c..n).max_by(|&a, &b| m[[a, c]].abs().total_cmp(&m[[b, c]].abs())).unwrap();
        if p != c {
            for j in 0..n {
                m.swap([p, j], [c, j]);
            }
        }
        let piv = m[[c, c]];
        ld += piv.abs().ln();
        for r in c + 1..n {
            let f = m[[r, c]] / piv;
            for j in c..n {
                m[[r, j]] -= f * m[[c, j]];
            }
        }
    }
    ld
}
