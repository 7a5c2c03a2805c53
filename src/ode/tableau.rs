//! Butcher tableaux of the explicit Runge–Kutta methods.
//!
//! A new method is one `Tableau` constant with its citation plus one line in
//! [`Solver::ALL`](super::Solver::ALL); the order tests loop over that list.
//!
//! Notation: stages `k_i = f(t + c_i h, y + h Σ_{j<i} a_ij k_j)`, solution
//! `y_{n+1} = y_n + h Σ b_i k_i`, local error estimate `h Σ e_i k_i` with
//! `e = b − b̂` (difference to the embedded lower-order weights), and dense output
//! `y(t_n + θh) = y_n + h Σ B_i(θ) k_i`.

/// An explicit Runge–Kutta method.
#[derive(Debug)]
pub struct Tableau {
    /// Short name (`"tsit5"`).
    pub name: &'static str,
    /// Classical order of the propagated solution.
    pub order: u32,
    /// Order of the embedded solution used for the error estimate (adaptive methods only).
    pub embedded_order: Option<u32>,
    /// Strictly lower triangular coefficients, row `i` holding `a_{i+1, 1..=i}` (zero-based: stage `i+1`).
    pub a: &'static [&'static [f64]],
    /// Solution weights `b_i`, one per stage.
    pub b: &'static [f64],
    /// Error weights `e_i = b_i − b̂_i`, one per stage, for adaptive methods.
    pub e: Option<&'static [f64]>,
    /// Nodes `c_i`, one per stage (`c_1 = 0`).
    pub c: &'static [f64],
    /// First-same-as-last: the last stage is `f(t_{n+1}, y_{n+1})` and is reused as the next step's first.
    pub fsal: bool,
    /// Dense output weights `B_i(θ)`, `θ ∈ [0, 1]`, written into a slice of one entry per stage.
    /// `None`: cubic Hermite interpolation from the end-point values and derivatives.
    pub dense: Option<fn(f64, &mut [f64])>,
    /// Where the coefficients come from.
    pub citation: &'static str,
}

impl Tableau {
    /// Number of stages `s`.
    pub fn stages(&self) -> usize {
        self.b.len()
    }

    /// Whether the method carries an error estimate (adaptive step size).
    pub fn is_adaptive(&self) -> bool {
        self.e.is_some()
    }

    /// Dense output weights `B_i(θ)`: the tableau's own interpolant, or for FSAL
    /// methods without one the cubic Hermite interpolant written in stage form
    /// (`y(θ) = h00 y_n + h01 y_{n+1} + h (h10 f_n + h11 f_{n+1})`, with
    /// `f_n = k_1`, `f_{n+1} = k_s`, `y_{n+1} − y_n = h Σ b_i k_i`).
    ///
    /// Returns `false` when the method has neither (non-FSAL fixed-step methods,
    /// whose outputs fall on step ends).
    pub fn dense_weights(&self, theta: f64, out: &mut [f64]) -> bool {
        if let Some(dense) = self.dense {
            dense(theta, out);
            return true;
        }
        if !self.fsal {
            return false;
        }
        let (h01, h10, h11) = hermite_basis(theta);
        let s = self.stages();
        for i in 0..s {
            out[i] = h01 * self.b[i];
        }
        out[0] += h10;
        out[s - 1] += h11;
        true
    }
}

/// Cubic Hermite basis `(h01, h10, h11)` at `θ`; `h00 = 1 − h01`.
pub(crate) fn hermite_basis(theta: f64) -> (f64, f64, f64) {
    let t2 = theta * theta;
    let t3 = t2 * theta;
    (3.0 * t2 - 2.0 * t3, t3 - 2.0 * t2 + theta, t3 - t2)
}

/// Forward Euler, order 1.
pub const EULER: Tableau = Tableau {
    name: "euler",
    order: 1,
    embedded_order: None,
    a: &[],
    b: &[1.0],
    e: None,
    c: &[0.0],
    fsal: false,
    dense: None,
    citation: "Euler (1768); Hairer, Nørsett & Wanner, Solving ODEs I, §II.1",
};

/// Explicit midpoint rule, order 2.
pub const MIDPOINT: Tableau = Tableau {
    name: "midpoint",
    order: 2,
    embedded_order: None,
    a: &[&[0.5]],
    b: &[0.0, 1.0],
    e: None,
    c: &[0.0, 0.5],
    fsal: false,
    dense: None,
    citation: "Runge (1895); Hairer, Nørsett & Wanner, Solving ODEs I, §II.1",
};

/// Heun's method (explicit trapezoidal rule), order 2.
pub const HEUN: Tableau = Tableau {
    name: "heun",
    order: 2,
    embedded_order: None,
    a: &[&[1.0]],
    b: &[0.5, 0.5],
    e: None,
    c: &[0.0, 1.0],
    fsal: false,
    dense: None,
    citation: "Heun (1900); Hairer, Nørsett & Wanner, Solving ODEs I, §II.1",
};

/// Kutta's third-order method, the classical RK3: order 3 with three stages.
pub const RK3: Tableau = Tableau {
    name: "rk3",
    order: 3,
    embedded_order: None,
    a: &[&[0.5], &[-1.0, 2.0]],
    b: &[1.0 / 6.0, 2.0 / 3.0, 1.0 / 6.0],
    e: None,
    c: &[0.0, 0.5, 1.0],
    fsal: false,
    dense: None,
    citation: "Kutta (1901); Hairer, Nørsett & Wanner, Solving ODEs I, Table II.1.1",
};

/// The classical fourth-order Runge–Kutta method.
pub const RK4: Tableau = Tableau {
    name: "rk4",
    order: 4,
    embedded_order: None,
    a: &[&[0.5], &[0.0, 0.5], &[0.0, 0.0, 1.0]],
    b: &[1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
    e: None,
    c: &[0.0, 0.5, 0.5, 1.0],
    fsal: false,
    dense: None,
    citation: "Kutta (1901); Hairer, Nørsett & Wanner, Solving ODEs I, Table II.1.2",
};

/// Bogacki–Shampine 3(2), FSAL, Hermite dense output.
pub const BOSH3: Tableau = Tableau {
    name: "bosh3",
    order: 3,
    embedded_order: Some(2),
    a: &[&[0.5], &[0.0, 0.75], &[2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0]],
    b: &[2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0, 0.0],
    e: Some(&[2.0 / 9.0 - 7.0 / 24.0, 1.0 / 3.0 - 0.25, 4.0 / 9.0 - 1.0 / 3.0, -0.125]),
    c: &[0.0, 0.5, 0.75, 1.0],
    fsal: true,
    dense: None,
    citation: "Bogacki & Shampine, A 3(2) pair of Runge–Kutta formulas, Appl. Math. Lett. 2 (1989) 321–325",
};

/// Dormand–Prince 5(4), FSAL, with the error weights of Shampine (1986) and
/// Hairer's fourth-order continuous extension (`CONTD5` of `DOPRI5`).
pub const DOPRI5: Tableau = Tableau {
    name: "dopri5",
    order: 5,
    embedded_order: Some(4),
    a: &[
        &[1.0 / 5.0],
        &[3.0 / 40.0, 9.0 / 40.0],
        &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
        &[19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0],
        &[9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0],
        &[35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0],
    ],
    b: &[35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0, 0.0],
    e: Some(&[
        35.0 / 384.0 - 1951.0 / 21600.0,
        0.0,
        500.0 / 1113.0 - 22642.0 / 50085.0,
        125.0 / 192.0 - 451.0 / 720.0,
        -2187.0 / 6784.0 + 12231.0 / 42400.0,
        11.0 / 84.0 - 649.0 / 6300.0,
        -1.0 / 60.0,
    ]),
    c: &[0.0, 0.2, 0.3, 0.8, 8.0 / 9.0, 1.0, 1.0],
    fsal: true,
    dense: Some(dopri5_dense),
    citation: "Dormand & Prince, J. Comput. Appl. Math. 6 (1980) 19–26; error weights Shampine, Math. Comp. 46 (1986) 135–150; dense output Hairer, Nørsett & Wanner, Solving ODEs I, §II.6",
};

/// Hairer's dense output of DOPRI5,
/// `y(θ) = y_n + θ r2 + θ(1−θ) r3 + θ²(1−θ) r4 + θ²(1−θ)² r5` with
/// `r2 = y_{n+1} − y_n`, `r3 = h k_1 − r2`, `r4 = 2 r2 − h k_1 − h k_7`, `r5 = h Σ d_i k_i`,
/// rewritten as weights of `h k_i`.
fn dopri5_dense(theta: f64, out: &mut [f64]) {
    const D: [f64; 7] = [
        -12715105075.0 / 11282082432.0,
        0.0,
        87487479700.0 / 32700410799.0,
        -10690763975.0 / 1880347072.0,
        701980252875.0 / 199316789632.0,
        -1453857185.0 / 822651844.0,
        69997945.0 / 29380423.0,
    ];
    let b = DOPRI5.b;
    let w3 = theta * (1.0 - theta);
    let w4 = theta * theta * (1.0 - theta);
    let w5 = w4 * (1.0 - theta);
    for i in 0..7 {
        let delta1 = if i == 0 { 1.0 } else { 0.0 };
        let delta7 = if i == 6 { 1.0 } else { 0.0 };
        out[i] = theta * b[i] + w3 * (delta1 - b[i]) + w4 * (2.0 * b[i] - delta1 - delta7) + w5 * D[i];
    }
}

/// Tsitouras 5(4), FSAL, with its own dense output.
pub const TSIT5: Tableau = Tableau {
    name: "tsit5",
    order: 5,
    embedded_order: Some(4),
    a: &[
        &[0.161],
        &[-0.008480655492356989, 0.335480655492357],
        &[2.897153057105493, -6.359448489975075, 4.3622954328695815],
        &[5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525],
        &[5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401, -0.028269050394068383],
        &[0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081, 2.324710524099774],
    ],
    b: &[0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081, 2.324710524099774, 0.0],
    e: Some(&[
        0.09646076681806523 - 0.09468075576583946,
        0.01 - 0.009183565540343253,
        0.4798896504144996 - 0.48777052842476157,
        1.379008574103742 - 1.234297566930479,
        -3.290069515436081 + 2.7077123499835256,
        2.324710524099774 - 1.866628418170587,
        -1.0 / 66.0,
    ]),
    c: &[0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0],
    fsal: true,
    dense: Some(tsit5_dense),
    citation: "Tsitouras, Runge–Kutta pairs of order 5(4) satisfying only the first column simplifying assumption, Comput. Math. Appl. 62 (2011) 770–775 (tableau and continuous extension)",
};

/// Tsitouras's continuous extension, in the factored form of the paper's `b_i(θ)`.
fn tsit5_dense(t: f64, out: &mut [f64]) {
    let t2 = t * t;
    out[0] = -1.0530884977290216 * t * (t - 1.3299890189751412) * (t2 - 1.4364028541716351 * t + 0.7139816917074209);
    out[1] = 0.1017 * t2 * (t2 - 2.1966568338249754 * t + 1.2949852507374631);
    out[2] = 2.490627285651252793 * t2 * (t2 - 2.38535645472061657 * t + 1.57803468208092486);
    out[3] = -16.54810288924490272 * (t - 1.21712927295533244) * (t - 0.61620406037800089) * t2;
    out[4] = 47.37952196281928122 * (t - 1.203071208372362603) * (t - 0.658047292653547382) * t2;
    out[5] = -34.87065786149660974 * (t - 1.2) * (t - 0.666666666666666667) * t2;
    out[6] = 2.5 * (t - 1.0) * (t - 0.6) * t2;
}

#[cfg(test)]
mod tests {
    use super::super::Solver;
    use super::*;

    /// Σ_j a_ij = c_i (row-sum condition) for every method.
    #[test]
    fn row_sums_equal_nodes() {
        for solver in Solver::ALL {
            let tab = solver.tableau();
            assert_eq!(tab.a.len() + 1, tab.stages(), "{}", tab.name);
            assert_eq!(tab.c.len(), tab.stages(), "{}", tab.name);
            for (i, row) in tab.a.iter().enumerate() {
                let sum: f64 = row.iter().sum();
                assert!((sum - tab.c[i + 1]).abs() < 1e-14, "{} row {}: {} vs {}", tab.name, i + 1, sum, tab.c[i + 1]);
            }
        }
    }

    /// The classical order conditions up to order 4 (Hairer, Nørsett & Wanner,
    /// Solving ODEs I, Table II.2.2) for weights `w` evaluated against `θ^k`:
    /// for the solution weights θ = 1; for dense output any θ.
    fn order_conditions(tab: &Tableau, w: &[f64], theta: f64, order: u32) -> Vec<(String, f64, f64)> {
        let s = tab.stages();
        let a = |i: usize, j: usize| -> f64 {
            if i == 0 || j >= i {
                0.0
            } else {
                tab.a[i - 1][j]
            }
        };
        let c = tab.c;
        let mut out = Vec::new();
        let dot = |f: &dyn Fn(usize) -> f64| -> f64 { (0..s).map(|i| w[i] * f(i)).sum() };
        out.push(("Σb".into(), dot(&|_| 1.0), theta));
        if order >= 2 {
            out.push(("Σbc".into(), dot(&|i| c[i]), theta.powi(2) / 2.0));
        }
        if order >= 3 {
            out.push(("Σbc²".into(), dot(&|i| c[i] * c[i]), theta.powi(3) / 3.0));
            let ac = |i: usize| (0..s).map(|j| a(i, j) * c[j]).sum::<f64>();
            out.push(("Σbac".into(), dot(&ac), theta.powi(3) / 6.0));
        }
        if order >= 4 {
            let ac = |i: usize| (0..s).map(|j| a(i, j) * c[j]).sum::<f64>();
            let acc = |i: usize| (0..s).map(|j| a(i, j) * c[j] * c[j]).sum::<f64>();
            let aac = |i: usize| (0..s).map(|j| a(i, j) * ac(j)).sum::<f64>();
            out.push(("Σbc³".into(), dot(&|i| c[i].powi(3)), theta.powi(4) / 4.0));
            out.push(("Σbcac".into(), dot(&|i| c[i] * ac(i)), theta.powi(4) / 8.0));
            out.push(("Σbac²".into(), dot(&acc), theta.powi(4) / 12.0));
            out.push(("Σbaac".into(), dot(&aac), theta.powi(4) / 24.0));
        }
        out
    }

    #[test]
    fn solution_weights_satisfy_order_conditions() {
        for solver in Solver::ALL {
            let tab = solver.tableau();
            let order = tab.order.min(4);
            for (name, got, want) in order_conditions(tab, tab.b, 1.0, order) {
                // Tsit5's coefficients are given to 16 significant digits.
                assert!((got - want).abs() < 1e-13, "{} {name}: {got} vs {want}", tab.name);
            }
        }
    }

    #[test]
    fn embedded_weights_satisfy_their_order_conditions() {
        for solver in Solver::ALL {
            let tab = solver.tableau();
            let (Some(e), Some(emb)) = (tab.e, tab.embedded_order) else { continue };
            let bhat: Vec<f64> = tab.b.iter().zip(e).map(|(b, e)| b - e).collect();
            for (name, got, want) in order_conditions(tab, &bhat, 1.0, emb.min(4)) {
                assert!((got - want).abs() < 1e-13, "{} embedded {name}: {got} vs {want}", tab.name);
            }
        }
    }

    /// Dense output: Σ B_i(θ) c^k conditions of order 4 for Dopri5 and Tsit5
    /// (both continuous extensions are of order 4), order 3 for the Hermite form,
    /// and B(1) = b so the interpolant ends on y_{n+1}.
    #[test]
    fn dense_output_conditions() {
        for solver in Solver::ALL {
            let tab = solver.tableau();
            let mut w = vec![0.0; tab.stages()];
            if !tab.dense_weights(0.5, &mut w) {
                continue;
            }
            let order = if tab.dense.is_some() { 4 } else { 3.min(tab.order) };
            for &theta in &[0.1, 0.37, 0.5, 0.8, 1.0] {
                tab.dense_weights(theta, &mut w);
                for (name, got, want) in order_conditions(tab, &w, theta, order) {
                    assert!((got - want).abs() < 1e-9, "{} dense θ={theta} {name}: {got} vs {want}", tab.name);
                }
            }
            tab.dense_weights(1.0, &mut w);
            for i in 0..tab.stages() {
                assert!((w[i] - tab.b[i]).abs() < 1e-9, "{} B_{i}(1) = {} vs b = {}", tab.name, w[i], tab.b[i]);
            }
        }
    }
}
