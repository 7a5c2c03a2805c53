//! Couplings of a minibatch of base samples `x₀` with data samples `x₁`: independent,
//! minibatch optimal transport (exact, and entropic by log-domain Sinkhorn), and given pairs;
//! plus the exact 2-Wasserstein distance between two equal-size point clouds.
//!
//! Minibatch OT follows Tong et al. 2024 ("Improving and generalizing flow-based generative
//! models with minibatch optimal transport") and Pooladian et al. 2023: within each batch the
//! pairs are those of the optimal plan for the squared Euclidean cost, which straightens the
//! learned paths.

use rand::rngs::StdRng;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How a minibatch of `x₀` is paired with a minibatch of `x₁`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Coupling {
    /// `x₀` and `x₁` drawn independently (I-CFM, rectified flow's first round).
    #[default]
    Independent,
    /// Exact minibatch OT: the assignment minimising `Σᵢ |x₀ᵢ − x₁σ(i)|²` (a permutation of the
    /// batch; OT-CFM of Tong et al. 2024). torchcfm instead draws pairs with replacement from
    /// the same plan; a permutation keeps every sample once.
    ExactOt,
    /// Entropic minibatch OT: the Sinkhorn plan for cost `|x₀ᵢ − x₁ⱼ|²` with regularisation
    /// `reg` (in units of the cost), computed in the log domain; each `x₀ᵢ` gets a partner drawn
    /// from row `i` of the plan.
    Sinkhorn {
        /// Entropic regularisation `ε > 0` (cost units).
        reg: f64,
        /// Iteration cap.
        #[serde(default = "default_sinkhorn_iters")]
        max_iter: usize,
        /// Stop when the row marginals are within this L1 distance of uniform.
        #[serde(default = "default_sinkhorn_tol")]
        tol: f64,
    },
    /// Given pairs: row `i` of the `x₀` data goes with row `i` of the `x₁` data (a state and a
    /// later state, a model's own samples for reflow).
    Paired,
}

fn default_sinkhorn_iters() -> usize {
    1000
}
fn default_sinkhorn_tol() -> f64 {
    1e-6
}

impl Coupling {
    /// Check the parameters.
    ///
    /// # Errors
    /// `InvalidArgument` for a non-positive regularisation or tolerance, or no iterations.
    pub fn validate(&self) -> Result<()> {
        if let Coupling::Sinkhorn { reg, max_iter, tol } = *self {
            if !(reg > 0.0 && reg.is_finite()) || !(tol > 0.0) || max_iter == 0 {
                return Err(Error::invalid(
                    "coupling",
                    format!("Sinkhorn needs reg > 0, tol > 0, max_iter ≥ 1; got reg = {reg}, tol = {tol}, max_iter = {max_iter}"),
                ));
            }
        }
        Ok(())
    }

    /// The partner `σ(i)` in `x₁` of each row `i` of `x₀` (both `[n, dim]`, row-major).
    /// Independent and paired couplings keep the order.
    ///
    /// # Errors
    /// `InvalidArgument` for mismatched lengths; `NonFinite` if Sinkhorn's potentials become
    /// non-finite.
    pub fn partners<R: Into<f64> + Copy>(&self, x0: &[R], x1: &[R], dim: usize, rng: &mut StdRng) -> Result<Vec<usize>> {
        if dim == 0 || x0.len() != x1.len() || x0.len() % dim != 0 {
            return Err(Error::invalid(
                "coupling",
                format!("x0 ({}) and x1 ({}) must both be [n, {dim}]", x0.len(), x1.len()),
            ));
        }
        let n = x0.len() / dim;
        match *self {
            Coupling::Independent | Coupling::Paired => Ok((0..n).collect()),
            Coupling::ExactOt => Ok(assignment(&sq_dist_matrix(x0, x1, dim), n)),
            Coupling::Sinkhorn { reg, max_iter, tol } => {
                let cost = sq_dist_matrix(x0, x1, dim);
                // A plan short of `tol` after `max_iter` is still a valid soft coupling for training.
                let (plan, _, _) = sinkhorn(&cost, n, n, reg, max_iter, tol)?;
                Ok((0..n)
                    .map(|i| {
                        let row = &plan[i * n..(i + 1) * n];
                        let total: f64 = row.iter().sum();
                        let mut u = rng.random::<f64>() * total;
                        for (j, p) in row.iter().enumerate() {
                            u -= p;
                            if u <= 0.0 {
                                return j;
                            }
                        }
                        n - 1
                    })
                    .collect())
            }
        }
    }
}

/// The squared-distance matrix `C[i, j] = |aᵢ − bⱼ|²`, `[n_a, n_b]` row-major.
pub fn sq_dist_matrix<R: Into<f64> + Copy>(a: &[R], b: &[R], dim: usize) -> Vec<f64> {
    let (na, nb) = (a.len() / dim, b.len() / dim);
    let mut c = vec![0.0; na * nb];
    for i in 0..na {
        let ai = &a[i * dim..(i + 1) * dim];
        for j in 0..nb {
            let bj = &b[j * dim..(j + 1) * dim];
            c[i * nb + j] = ai.iter().zip(bj).map(|(&x, &y)| (x.into() - y.into()).powi(2)).sum();
        }
    }
    c
}

/// The exact linear assignment: the permutation `σ` minimising `Σᵢ C[i, σ(i)]` for a square
/// cost `[n, n]` (row-major). Returns `σ` as `σ[i]` = column of row `i`.
///
/// The Hungarian method in its shortest-augmenting-path form with dual potentials (Kuhn 1955;
/// Jonker & Volgenant 1987): rows are added one at a time, each by a Dijkstra search over
/// reduced costs `C[i, j] − uᵢ − vⱼ ≥ 0`. `O(n³)` worst case.
///
/// # Panics
/// If `cost.len() != n²`.
pub fn assignment(cost: &[f64], n: usize) -> Vec<usize> {
    assert_eq!(cost.len(), n * n, "assignment: cost has {} entries, expected {n}²", cost.len());
    if n == 0 {
        return Vec::new();
    }
    // 1-based rows and columns; column 0 is the search's virtual start.
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; n + 1];
    let mut row_of = vec![0usize; n + 1];
    let mut way = vec![0usize; n + 1];
    let mut minv = vec![0.0f64; n + 1];
    let mut used = vec![false; n + 1];
    for i in 1..=n {
        row_of[0] = i;
        let mut j0 = 0usize;
        minv.iter_mut().for_each(|m| *m = f64::INFINITY);
        used.iter_mut().for_each(|b| *b = false);
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let crow = &cost[(i0 - 1) * n..i0 * n];
            let ui = u[i0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = crow[j - 1] - ui - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if row_of[j0] == 0 {
                break;
            }
        }
        // Flip the augmenting path.
        loop {
            let j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut sigma = vec![0usize; n];
    for j in 1..=n {
        sigma[row_of[j] - 1] = j - 1;
    }
    sigma
}

/// The entropic OT plan between uniform marginals on `n_a` and `n_b` points for cost `C`
/// (`[n_a, n_b]` row-major): `P = argmin ⟨P, C⟩ − ε H(P)`, by Sinkhorn's iterations on the
/// dual potentials in the log domain (stable for small `ε`; Peyré & Cuturi 2019, §4.4):
///
/// `fᵢ = ε log aᵢ − ε LSEⱼ((gⱼ − Cᵢⱼ)/ε)`, `gⱼ = ε log bⱼ − ε LSEᵢ((fᵢ − Cᵢⱼ)/ε)`,
/// `Pᵢⱼ = exp((fᵢ + gⱼ − Cᵢⱼ)/ε)`.
///
/// Returns the plan, the number of iterations and the L1 error of its row marginals (it stops
/// when that error is below `tol`; the column marginals are exact after each `g` update). An
/// error above `tol` means `max_iter` ran out first: the plan is then only approximately
/// feasible, and the caller decides whether that is good enough.
///
/// # Errors
/// `InvalidArgument` for bad sizes or `reg`; `NonFinite` for a non-finite potential (a cost
/// with NaN or infinity; `step` is the iteration).
pub fn sinkhorn(cost: &[f64], n_a: usize, n_b: usize, reg: f64, max_iter: usize, tol: f64) -> Result<(Vec<f64>, usize, f64)> {
    if cost.len() != n_a * n_b || n_a == 0 || n_b == 0 {
        return Err(Error::invalid("cost", format!("{} entries for a {n_a} x {n_b} plan", cost.len())));
    }
    if !(reg > 0.0 && reg.is_finite()) {
        return Err(Error::invalid("reg", format!("need ε > 0, got {reg}")));
    }
    let (la, lb) = (-(n_a as f64).ln(), -(n_b as f64).ln());
    let mut f = vec![0.0; n_a];
    let mut g = vec![0.0; n_b];
    let mut col = vec![0.0; n_a];
    let lse = |xs: &mut dyn Iterator<Item = f64>, buf: &mut Vec<f64>| -> f64 {
        buf.clear();
        buf.extend(xs);
        let m = buf.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !m.is_finite() {
            return m;
        }
        m + buf.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
    };
    let mut buf = Vec::with_capacity(n_a.max(n_b));
    let (mut iters, mut err) = (0, f64::INFINITY);
    for it in 1..=max_iter {
        iters = it;
        for i in 0..n_a {
            let row = &cost[i * n_b..(i + 1) * n_b];
            f[i] = reg * la - reg * lse(&mut (0..n_b).map(|j| (g[j] - row[j]) / reg), &mut buf);
        }
        for j in 0..n_b {
            for i in 0..n_a {
                col[i] = (f[i] - cost[i * n_b + j]) / reg;
            }
            g[j] = reg * lb - reg * lse(&mut col.iter().copied(), &mut buf);
        }
        if f.iter().chain(&g).any(|x| !x.is_finite()) {
            return Err(Error::NonFinite { what: "Sinkhorn potential", step: it, t: f64::NAN });
        }
        // Row marginal error; the columns are exact after the g update.
        err = (0..n_a)
            .map(|i| {
                let s: f64 = (0..n_b).map(|j| ((f[i] + g[j] - cost[i * n_b + j]) / reg).exp()).sum();
                (s - 1.0 / n_a as f64).abs()
            })
            .sum::<f64>();
        if err < tol {
            break;
        }
    }
    let mut plan = vec![0.0; n_a * n_b];
    for i in 0..n_a {
        for j in 0..n_b {
            plan[i * n_b + j] = ((f[i] + g[j] - cost[i * n_b + j]) / reg).exp();
        }
    }
    Ok((plan, iters, err))
}

/// The exact 2-Wasserstein distance between two equal-size empirical measures with uniform
/// weights, `a, b: [n, dim]` row-major: `W₂ = (minσ (1/n) Σᵢ |aᵢ − bσ(i)|²)^{1/2}` (for equal
/// sizes and uniform weights an optimal plan is a permutation, Birkhoff–von Neumann).
///
/// # Errors
/// `InvalidArgument` for unequal sizes or non-finite points.
pub fn wasserstein2(a: &[f64], b: &[f64], dim: usize) -> Result<f64> {
    if dim == 0 || a.len() != b.len() || a.len() % dim != 0 || a.is_empty() {
        return Err(Error::invalid("wasserstein2", format!("need two [n, {dim}] sets of equal size, got {} and {} values", a.len(), b.len())));
    }
    if a.iter().chain(b).any(|x| !x.is_finite()) {
        return Err(Error::NonFinite { what: "wasserstein2 input", step: 0, t: f64::NAN });
    }
    let n = a.len() / dim;
    let c = sq_dist_matrix(a, b, dim);
    let sigma = assignment(&c, n);
    Ok(((0..n).map(|i| c[i * n + sigma[i]]).sum::<f64>() / n as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn brute_force(cost: &[f64], n: usize) -> f64 {
        fn rec(cost: &[f64], n: usize, i: usize, used: &mut Vec<bool>, acc: f64, best: &mut f64) {
            if i == n {
                *best = best.min(acc);
                return;
            }
            for j in 0..n {
                if !used[j] {
                    used[j] = true;
                    rec(cost, n, i + 1, used, acc + cost[i * n + j], best);
                    used[j] = false;
                }
            }
        }
        let mut best = f64::INFINITY;
        rec(cost, n, 0, &mut vec![false; n], 0.0, &mut best);
        best
    }

    /// The Hungarian method's cost equals the minimum over all n! permutations (n ≤ 7), on
    /// random costs and on squared distances with ties.
    #[test]
    fn assignment_equals_brute_force() {
        let mut rng = StdRng::seed_from_u64(1);
        for n in 1..=7 {
            for trial in 0..20 {
                let cost: Vec<f64> = if trial % 2 == 0 {
                    (0..n * n).map(|_| rng.random::<f64>() * 10.0 - 3.0).collect()
                } else {
                    // Integer points: many equal costs.
                    let pts: Vec<f64> = (0..4 * n).map(|_| rng.random_range(0..3) as f64).collect();
                    sq_dist_matrix(&pts[..2 * n], &pts[2 * n..], 2)
                };
                let sigma = assignment(&cost, n);
                let mut seen = vec![false; n];
                sigma.iter().for_each(|&j| seen[j] = true);
                assert!(seen.iter().all(|&s| s), "not a permutation: {sigma:?}");
                let got: f64 = (0..n).map(|i| cost[i * n + sigma[i]]).sum();
                let want = brute_force(&cost, n);
                assert!((got - want).abs() < 1e-12, "n = {n}: {got} vs brute force {want}");
            }
        }
    }

    /// As ε → 0 the Sinkhorn plan converges to the exact plan (a permutation scaled by 1/n)
    /// on a batch with a unique optimum; its transport cost stays above the exact one. The
    /// batch has a clear gap (x₀ᵢ = (i, 0), x₁ᵢ = (i, ½), both jittered by ≤ 0.1: swapping two
    /// partners costs ≥ 1.2 more), so the plan's distance to the permutation decays like
    /// exp(−gap/(nε)) and is below 1e-3 at ε = 0.1; on random points a near-tie can make the
    /// convergence arbitrarily slow.
    #[test]
    fn sinkhorn_converges_to_exact_plan() {
        let mut rng = StdRng::seed_from_u64(2);
        let n = 6;
        let mut jitter = || 0.2 * rng.random::<f64>() - 0.1;
        let x0: Vec<f64> = (0..n).flat_map(|i| [i as f64 + jitter(), jitter()]).collect();
        let x1: Vec<f64> = (0..n).rev().flat_map(|i| [i as f64 + jitter(), 0.5 + jitter()]).collect();
        let cost = sq_dist_matrix(&x0, &x1, 2);
        let sigma = assignment(&cost, n);
        let exact_cost: f64 = (0..n).map(|i| cost[i * n + sigma[i]]).sum::<f64>() / n as f64;
        let mut prev_dist = f64::INFINITY;
        for reg in [1.0, 0.5, 0.3, 0.2, 0.15, 0.1] {
            // Near a permutation the potentials couple only through the off-plan mass
            // (~exp(−gap/(nε))), so Sinkhorn needs ~exp(gap/(nε)) iterations (10⁵ at ε = 0.1);
            // a marginal error of 1e-6 is far below the plan distances compared here.
            let (plan, iters, err) = sinkhorn(&cost, n, n, reg, 400_000, 1e-9).unwrap();
            assert!(err < 1e-6, "ε = {reg}: marginal error {err} after {iters} iterations");
            // Marginals.
            for i in 0..n {
                let r: f64 = plan[i * n..(i + 1) * n].iter().sum();
                assert!((r - 1.0 / n as f64).abs() < 1e-6, "row {i}: {r}");
            }
            let dist: f64 = (0..n * n)
                .map(|k| (plan[k] - if sigma[k / n] == k % n { 1.0 / n as f64 } else { 0.0 }).abs())
                .sum();
            assert!(dist <= prev_dist + 1e-12, "L1 distance to the exact plan grew: {dist} > {prev_dist} at ε = {reg}");
            prev_dist = dist;
            let c: f64 = plan.iter().zip(&cost).map(|(p, c)| p * c).sum();
            assert!(c >= exact_cost - 1e-9, "entropic cost {c} below the exact optimum {exact_cost}");
        }
        assert!(prev_dist < 1e-3, "at ε = 0.1 the plan is {prev_dist} (L1) from the exact one");
    }

    /// Sinkhorn with ε small enough to underflow a non-log implementation (exp(−C/ε) = 0 for
    /// C/ε > 745) stays finite.
    #[test]
    fn sinkhorn_is_log_stable() {
        let cost = vec![0.0, 100.0, 100.0, 0.0];
        let (plan, _, err) = sinkhorn(&cost, 2, 2, 0.01, 100, 1e-12).unwrap();
        assert!(err < 1e-12);
        assert!(plan.iter().all(|p| p.is_finite()));
        assert!((plan[0] - 0.5).abs() < 1e-12 && (plan[3] - 0.5).abs() < 1e-12);
    }

    /// W₂ between a point cloud and its translate by `s` equals `|s|` (the identity pairing is
    /// optimal for a translation), and W₂ of a set with itself after shuffling is 0.
    #[test]
    fn wasserstein2_of_translate() {
        let mut rng = StdRng::seed_from_u64(3);
        let a: Vec<f64> = (0..2 * 50).map(|_| rng.random::<f64>()).collect();
        let b: Vec<f64> = a.chunks(2).flat_map(|p| [p[0] + 0.3, p[1] - 0.4]).collect();
        assert!((wasserstein2(&a, &b, 2).unwrap() - 0.5).abs() < 1e-12);
        let mut rows: Vec<&[f64]> = a.chunks(2).collect();
        rows.reverse();
        let c: Vec<f64> = rows.concat();
        assert!(wasserstein2(&a, &c, 2).unwrap() < 1e-12);
        assert!(wasserstein2(&a, &a[..10], 2).is_err());
    }

    #[test]
    fn bad_sinkhorn_parameters_are_errors() {
        assert!(Coupling::Sinkhorn { reg: 0.0, max_iter: 10, tol: 1e-6 }.validate().is_err());
        assert!(sinkhorn(&[f64::NAN, 0.0, 0.0, 0.0], 2, 2, 0.1, 10, 1e-9).is_err());
    }
}
