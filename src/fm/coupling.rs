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
        if dim == 0 || x0.len() != x1.len() || !x0.len().is_multiple_of(dim) {
            return Err(Error::invalid("coupling", format!("x0 ({}) and x1 ({}) must both be [n, {dim}]", x0.len(), x1.len())));
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
/// reduced costs `C[i, j] − uᵢ − vⱼ ≥ 0`. `O(n³)` worst case. Each search step is one pass over
/// the columns (relax and minimum together; AVX2 when the CPU has it), with the columns
/// already scanned masked by `+∞`.
///
/// # Panics
/// If `cost.len() != n²`.
pub fn assignment(cost: &[f64], n: usize) -> Vec<usize> {
    assert_eq!(cost.len(), n * n, "assignment: cost has {} entries, expected {n}²", cost.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { assignment_avx2(cost, n) };
        }
    }
    assignment_impl(cost, n, relax)
}

/// [`assignment_impl`] with the AVX2 relax pass.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn assignment_avx2(cost: &[f64], n: usize) -> Vec<usize> {
    // SAFETY: this function only runs on a CPU with AVX2 (its caller checks).
    assignment_impl(cost, n, |c, sh, v, m, spc, p, i| unsafe { relax_avx2(c, sh, v, m, spc, p, i) })
}

/// The relax pass of the search (see [`relax`]).
type RelaxFn = fn(&[f64], f64, &[f64], &[f64], &mut [f64], &mut [usize], usize) -> (f64, usize);

/// Body of [`assignment`]: one shortest-augmenting-path search per row, in the form with
/// lazily updated duals (Jonker & Volgenant 1987; Crouse 2016, Algorithm 1): a search keeps
/// the path lengths `spc[j]` of the columns it reached and updates `u`, `v` only for the rows
/// and columns it scanned, so each search step is one pass over the columns.
#[inline(always)]
fn assignment_impl(cost: &[f64], n: usize, relax: RelaxFn) -> Vec<usize> {
    const NONE: usize = usize::MAX;
    let mut u = vec![0.0f64; n];
    let mut v = vec![0.0f64; n];
    let mut row4col = vec![NONE; n];
    let mut col4row = vec![NONE; n];
    // Row through which each column was last reached.
    let mut path = vec![NONE; n];
    let mut spc = vec![f64::INFINITY; n];
    // +∞ on scanned columns, so the relax pass leaves them alone.
    let mut mask = vec![0.0f64; n];
    let mut scanned_rows: Vec<usize> = Vec::with_capacity(n);
    let mut scanned_cols: Vec<usize> = Vec::with_capacity(n);
    for cur in 0..n {
        spc.fill(f64::INFINITY);
        mask.fill(0.0);
        scanned_rows.clear();
        scanned_cols.clear();
        let mut min_val = 0.0;
        let mut i = cur;
        let sink = loop {
            scanned_rows.push(i);
            let crow = &cost[i * n..(i + 1) * n];
            let (lowest, j) = relax(crow, min_val - u[i], &v, &mask, &mut spc, &mut path, i);
            min_val = lowest;
            mask[j] = f64::INFINITY;
            scanned_cols.push(j);
            if row4col[j] == NONE {
                break j;
            }
            i = row4col[j];
        };
        // Duals: scanned rows and columns move by how far inside the shortest path they are.
        u[cur] += min_val;
        for &r in &scanned_rows[1..] {
            u[r] += min_val - spc[col4row[r]];
        }
        for &c in &scanned_cols {
            v[c] -= min_val - spc[c];
        }
        // Augment along the path back to `cur`.
        let mut j = sink;
        loop {
            let r = path[j];
            row4col[j] = r;
            let next = col4row[r];
            col4row[r] = j;
            if r == cur {
                break;
            }
            j = next;
        }
    }
    col4row
}

/// One relax pass of the search from row `i` (`crow` its costs, `shift` = path length so far
/// minus `u[i]`): `spc[j] ← min(spc[j], C[i, j] + shift − v[j])` with `path[j] ← i` where it
/// improves, for columns with `mask[j] = 0`; returns the smallest `spc[j]` over those columns
/// and its first column.
#[inline(always)]
fn relax(crow: &[f64], shift: f64, v: &[f64], mask: &[f64], spc: &mut [f64], path: &mut [usize], i: usize) -> (f64, usize) {
    let mut b = (f64::INFINITY, usize::MAX);
    for j in 0..crow.len() {
        let r = crow[j] + mask[j] + shift - v[j];
        if r < spc[j] {
            spc[j] = r;
            path[j] = i;
        }
        if spc[j] + mask[j] < b.0 {
            b = (spc[j], j);
        }
    }
    b
}

/// [`relax`] with AVX2 intrinsics, four columns per instruction (written as plain loops, LLVM
/// kept the selects as branches and conditional stores, and the pass scalar).
///
/// # Safety
/// The CPU must have AVX2; all slices have `crow.len()` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn relax_avx2(crow: &[f64], shift: f64, v: &[f64], mask: &[f64], spc: &mut [f64], path: &mut [usize], i: usize) -> (f64, usize) {
    use std::arch::x86_64::*;
    let n = crow.len();
    assert!(v.len() >= n && mask.len() >= n && spc.len() >= n && path.len() >= n);
    let whole = n / 4 * 4;
    let (mut best, mut at);
    // SAFETY: every load and store is at j + 4 <= whole <= n within slices of length >= n;
    // `usize` is 64 bits on x86-64, so `way` holds four lanes per 256-bit vector.
    unsafe {
        let vshift = _mm256_set1_pd(shift);
        let vi = _mm256_castsi256_pd(_mm256_set1_epi64x(i as i64));
        let mut vbest = _mm256_set1_pd(f64::INFINITY);
        let mut vat = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
        let mut idx = _mm256_setr_epi64x(0, 1, 2, 3);
        let four = _mm256_set1_epi64x(4);
        let mut j = 0;
        while j < whole {
            let mk = _mm256_loadu_pd(mask.as_ptr().add(j));
            let c = _mm256_add_pd(_mm256_loadu_pd(crow.as_ptr().add(j)), mk);
            let r = _mm256_sub_pd(_mm256_add_pd(c, vshift), _mm256_loadu_pd(v.as_ptr().add(j)));
            let old = _mm256_loadu_pd(spc.as_ptr().add(j));
            let lt = _mm256_cmp_pd::<_CMP_LT_OQ>(r, old);
            let new = _mm256_blendv_pd(old, r, lt);
            _mm256_storeu_pd(spc.as_mut_ptr().add(j), new);
            let pp = path.as_mut_ptr().add(j) as *mut f64;
            _mm256_storeu_pd(pp, _mm256_blendv_pd(_mm256_loadu_pd(pp), vi, lt));
            // Scanned columns (mask +∞) never win the minimum.
            let cand = _mm256_add_pd(new, mk);
            let better = _mm256_cmp_pd::<_CMP_LT_OQ>(cand, vbest);
            vbest = _mm256_blendv_pd(vbest, new, better);
            vat = _mm256_blendv_pd(vat, _mm256_castsi256_pd(idx), better);
            idx = _mm256_add_epi64(idx, four);
            j += 4;
        }
        best = [0.0f64; 4];
        at = [0u64; 4];
        _mm256_storeu_pd(best.as_mut_ptr(), vbest);
        _mm256_storeu_si256(at.as_mut_ptr() as *mut __m256i, _mm256_castpd_si256(vat));
    }
    let mut b = (f64::INFINITY, usize::MAX);
    for k in 0..4 {
        let (val, col) = (best[k], at[k] as usize);
        if val < b.0 || (val == b.0 && col < b.1) {
            b = (val, col);
        }
    }
    // The tail, scalar.
    let (tb, tj) = relax(&crow[whole..], shift, &v[whole..n], &mask[whole..n], &mut spc[whole..n], &mut path[whole..n], i);
    if tb < b.0 {
        b = (tb, whole + tj);
    }
    b
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
    if dim == 0 || a.len() != b.len() || !a.len().is_multiple_of(dim) || a.is_empty() {
        return Err(Error::invalid("wasserstein2", format!("need two [n, {dim}] sets of equal size, got {} and {} values", a.len(), b.len())));
    }
    if a.iter().chain(b).any(|x| !x.is_finite()) {
        return Err(Error::NonFiniteInput { what: "wasserstein2 input", index: 0 });
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
    /// random costs and on squared distances with ties, with both relax passes.
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
                // The portable relax pass (the dispatch above takes AVX2 where present).
                let portable = assignment_impl(&cost, n, relax);
                let cost_of = |s: &[usize]| (0..n).map(|i| cost[i * n + s[i]]).sum::<f64>();
                assert!((cost_of(&portable) - cost_of(&sigma)).abs() < 1e-12);
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
            let dist: f64 = (0..n * n).map(|k| (plan[k] - if sigma[k / n] == k % n { 1.0 / n as f64 } else { 0.0 }).abs()).sum();
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
