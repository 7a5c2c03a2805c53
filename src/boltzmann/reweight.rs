//! Importance reweighting of flow samples to the Boltzmann density, effective sample size,
//! bootstrap error bars, and free energies (exponential averaging, BAR, state differences,
//! profiles along a coordinate), and histograms of raw and reweighted samples.
//!
//! Units: `β` is in inverse energy units; free-energy *differences between states or along a
//! coordinate* are returned in energy units (`ΔF = −kT ln …`); exponential averaging and BAR
//! work with reduced (dimensionless, in units of kT) works and return reduced `Δf`.

use ndarray::{Array1, ArrayView1};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A value with its standard error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The estimate.
    pub value: f64,
    /// Its standard error.
    pub std_err: f64,
}

/// Log importance weights `log w = −β u(x) − log q(x)` of samples `x ~ q` for the target
/// `p ∝ exp(−β u)` (unnormalised: `E_q[w] = Z`). `u, log_q: [n]` → `[n]`.
///
/// # Errors
/// `Shape` when `u` and `log_q` have different lengths.
pub fn log_weights(beta: f64, u: ArrayView1<f64>, log_q: ArrayView1<f64>) -> Result<Array1<f64>> {
    if u.len() != log_q.len() {
        return Err(Error::Shape { what: "energies for the log weights (one per sample of log q)".into(), expected: vec![log_q.len()], got: vec![u.len()] });
    }
    Ok(-beta * &u - log_q)
}

fn check_log_w(log_w: ArrayView1<f64>) -> Result<f64> {
    if log_w.is_empty() {
        return Err(Error::InvalidArgument { name: "log_w", reason: "no samples".into() });
    }
    // −∞ is a zero weight (allowed); NaN and +∞ are not.
    if let Some(i) = log_w.iter().position(|l| l.is_nan() || *l == f64::INFINITY) {
        return Err(Error::NonFiniteInput { what: "log weights", index: i });
    }
    let m = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return Err(Error::InvalidArgument { name: "log_w", reason: "every weight is zero".into() });
    }
    Ok(m)
}

/// Kish's effective sample size `(Σ w)² / Σ w²` (computed after subtracting `max log w`).
///
/// # Errors
/// `NonFinite` for a NaN or `+∞` log weight (naming its index), `InvalidArgument` for no
/// samples or all-zero weights.
pub fn kish_ess(log_w: ArrayView1<f64>) -> Result<f64> {
    let m = check_log_w(log_w)?;
    let (s1, s2) = log_w.iter().fold((0.0, 0.0), |(a, b), l| {
        let w = (l - m).exp();
        (a + w, b + w * w)
    });
    Ok(s1 * s1 / s2)
}

/// Bootstrap (Efron 1979): `stat` on the samples as given, and the standard deviation of
/// `stat` over `n_boot` resamples of the indices `0..n` with replacement.
pub fn bootstrap(n: usize, n_boot: usize, seed: u64, stat: impl Fn(&[usize]) -> f64) -> Estimate {
    let all: Vec<usize> = (0..n).collect();
    let value = stat(&all);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut idx = vec![0; n];
    let vals: Vec<f64> = (0..n_boot)
        .map(|_| {
            idx.iter_mut().for_each(|i| *i = rng.random_range(0..n));
            stat(&idx)
        })
        .filter(|v| v.is_finite())
        .collect();
    let k = vals.len() as f64;
    let mean = vals.iter().sum::<f64>() / k;
    let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1.0).max(1.0);
    Estimate { value, std_err: var.sqrt() }
}

fn log_sum_exp(vals: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = vals.collect();
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Self-normalised importance estimate `Σ w f / Σ w` of `E_p[f]`.
pub fn reweighted_mean(values: ArrayView1<f64>, log_w: ArrayView1<f64>) -> Result<f64> {
    let m = check_log_w(log_w)?;
    let (num, den) = values.iter().zip(log_w).fold((0.0, 0.0), |(a, b), (v, l)| {
        let w = (l - m).exp();
        (a + w * v, b + w)
    });
    Ok(num / den)
}

/// [`reweighted_mean`] with a bootstrap standard error.
pub fn reweighted_mean_bootstrap(values: ArrayView1<f64>, log_w: ArrayView1<f64>, n_boot: usize, seed: u64) -> Result<Estimate> {
    let m = check_log_w(log_w)?;
    let w: Vec<f64> = log_w.iter().map(|l| (l - m).exp()).collect();
    Ok(bootstrap(values.len(), n_boot, seed, |idx| {
        let (a, b) = idx.iter().fold((0.0, 0.0), |(a, b), &i| (a + w[i] * values[i], b + w[i]));
        a / b
    }))
}

/// `log Z_p / Z_q = log E_q[w]` by importance sampling (exponential averaging of the reduced
/// work `−log w`), with a bootstrap standard error. For a normalised flow `q`, this is
/// `log Z` of the target, i.e. `F = −kT log Z`.
pub fn log_partition(log_w: ArrayView1<f64>, n_boot: usize, seed: u64) -> Result<Estimate> {
    check_log_w(log_w)?;
    Ok(bootstrap(log_w.len(), n_boot, seed, |idx| log_sum_exp(idx.iter().map(|&i| log_w[i])) - (idx.len() as f64).ln()))
}

/// `ΔF_{A→B} = −(1/β) ln(Σ_{x∈B} w / Σ_{x∈A} w)` (energy units) between two states given as
/// membership masks, with a bootstrap standard error. Equal log weights give the unweighted
/// estimate from the raw samples.
///
/// # Errors
/// Shape mismatches; `InvalidArgument` if a state holds no sample (or only zero weights).
pub fn free_energy_difference(log_w: ArrayView1<f64>, in_a: &[bool], in_b: &[bool], beta: f64, n_boot: usize, seed: u64) -> Result<Estimate> {
    check_log_w(log_w)?;
    if in_a.len() != log_w.len() || in_b.len() != log_w.len() {
        return Err(Error::Shape { what: "state masks".into(), expected: vec![log_w.len()], got: vec![in_a.len(), in_b.len()] });
    }
    let stat = |idx: &[usize]| {
        let la = log_sum_exp(idx.iter().filter(|&&i| in_a[i]).map(|&i| log_w[i]));
        let lb = log_sum_exp(idx.iter().filter(|&&i| in_b[i]).map(|&i| log_w[i]));
        -(lb - la) / beta
    };
    let all: Vec<usize> = (0..log_w.len()).collect();
    if !stat(&all).is_finite() {
        return Err(Error::InvalidArgument { name: "in_a / in_b", reason: "a state has no sample with non-zero weight".into() });
    }
    Ok(bootstrap(log_w.len(), n_boot, seed, stat))
}

/// A free-energy profile along a coordinate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Profile {
    /// Bin centres.
    pub centres: Vec<f64>,
    /// `F(bin) = −kT ln P(bin)` with its minimum set to 0 (energy units); `+∞` for bins with no
    /// sample.
    pub f: Vec<f64>,
    /// Bootstrap standard errors (NaN for empty bins).
    pub std_err: Vec<f64>,
}

/// The reweighted free-energy profile `F(s) = −kT ln P(s ∈ bin) + const` of `coord: [n]` on
/// the bins `edges`, zero at its minimum bin `b*`; the bootstrap errors are those of
/// `F(b) − F(b*)`.
pub fn free_energy_profile(coord: ArrayView1<f64>, log_w: ArrayView1<f64>, edges: &[f64], beta: f64, n_boot: usize, seed: u64) -> Result<Profile> {
    check_log_w(log_w)?;
    if coord.len() != log_w.len() || edges.len() < 2 {
        return Err(Error::Shape { what: "profile coordinate / edges".into(), expected: vec![log_w.len()], got: vec![coord.len(), edges.len()] });
    }
    let nb = edges.len() - 1;
    let bin_of = |v: f64| if v >= edges[0] && v < edges[nb] { Some(edges.partition_point(|e| *e <= v) - 1) } else { None };
    let bins: Vec<Option<usize>> = coord.iter().map(|&v| bin_of(v)).collect();
    let profile = |idx: &[usize]| -> Vec<f64> {
        let mut acc = vec![Vec::new(); nb];
        for &i in idx {
            if let Some(b) = bins[i] {
                acc[b].push(log_w[i]);
            }
        }
        acc.into_iter().map(|v| if v.is_empty() { f64::INFINITY } else { -log_sum_exp(v.into_iter()) / beta }).collect()
    };
    let all: Vec<usize> = (0..coord.len()).collect();
    let full = profile(&all);
    let (ref_bin, fmin) = full.iter().enumerate().fold((0, f64::INFINITY), |(bi, bv), (i, &v)| if v < bv { (i, v) } else { (bi, bv) });
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sums = vec![(0.0, 0.0, 0usize); nb];
    let mut idx = vec![0; coord.len()];
    for _ in 0..n_boot {
        idx.iter_mut().for_each(|i| *i = rng.random_range(0..coord.len()));
        let p = profile(&idx);
        for b in 0..nb {
            let v = p[b] - p[ref_bin];
            if v.is_finite() {
                sums[b].0 += v;
                sums[b].1 += v * v;
                sums[b].2 += 1;
            }
        }
    }
    let std_err = sums.iter().map(|&(s, s2, k)| if k > 1 { ((s2 - s * s / k as f64) / (k - 1) as f64).max(0.0).sqrt() } else { f64::NAN }).collect();
    Ok(Profile { centres: edges.windows(2).map(|e| 0.5 * (e[0] + e[1])).collect(), f: full.iter().map(|v| v - fmin).collect(), std_err })
}

/// Zwanzig's exponential averaging (free-energy perturbation, Zwanzig 1954):
/// `Δf = −ln ⟨exp(−w)⟩₀` from reduced works `w = u₁(x) − u₀(x)`, `x ~ state 0`.
pub fn exp_averaging(work: ArrayView1<f64>) -> f64 {
    -(log_sum_exp(work.iter().map(|w| -w)) - (work.len() as f64).ln())
}

/// Bennett's acceptance ratio (Bennett 1976) in its maximum-likelihood form (Shirts, Bair,
/// Hooker & Pande 2003): the reduced `Δf = f₁ − f₀` solving
/// `Σ_F 1/(1 + exp(ln(n_F/n_R) + w_F − Δf)) = Σ_R 1/(1 + exp(ln(n_R/n_F) + w_R + Δf))`
/// for forward works `w_F = u₁(x) − u₀(x)`, `x ~ 0`, and reverse works `w_R = u₀(x) − u₁(x)`,
/// `x ~ 1`. Solved by bisection on a bracket; the standard error is the asymptotic formula of
/// Shirts et al. (2003, eq. 10):
/// `σ² = 1/(n_F ⟨f(M + w_F − Δf)^{...}⟩)`… computed as
/// `σ² = [1 / Σ_{all} 1/(2 + 2 cosh(M + W − Δf))] − (1/n_F + 1/n_R)` with `W` the forward works and
/// minus the reverse works, `M = ln(n_F/n_R)`.
///
/// # Errors
/// `InvalidArgument` for empty inputs, `NonFinite` for a non-finite work.
pub fn bar(work_forward: ArrayView1<f64>, work_reverse: ArrayView1<f64>) -> Result<Estimate> {
    if work_forward.is_empty() || work_reverse.is_empty() {
        return Err(Error::InvalidArgument { name: "works", reason: "BAR needs forward and reverse works".into() });
    }
    for (what, w) in [("forward works", work_forward), ("reverse works", work_reverse)] {
        if let Some(i) = w.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteInput { what, index: i });
        }
    }
    let (nf, nr) = (work_forward.len() as f64, work_reverse.len() as f64);
    let m = (nf / nr).ln();
    let fermi = |x: f64| 1.0 / (1.0 + x.exp());
    // g(Δf) = Σ_F fermi(M + w_F − Δf) − Σ_R fermi(−M + w_R + Δf) is increasing in Δf.
    let g = |df: f64| work_forward.iter().map(|w| fermi(m + w - df)).sum::<f64>() - work_reverse.iter().map(|w| fermi(-m + w + df)).sum::<f64>();
    let lo0 = work_forward.iter().cloned().fold(f64::INFINITY, f64::min).min(-work_reverse.iter().cloned().fold(f64::NEG_INFINITY, f64::max)) - 10.0 - m.abs();
    let hi0 = work_forward.iter().cloned().fold(f64::NEG_INFINITY, f64::max).max(-work_reverse.iter().cloned().fold(f64::INFINITY, f64::min)) + 10.0 + m.abs();
    let (mut lo, mut hi) = (lo0, hi0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if g(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-12 * (1.0 + mid.abs()) {
            break;
        }
    }
    let df = 0.5 * (lo + hi);
    let s: f64 = work_forward.iter().map(|w| m + w - df).chain(work_reverse.iter().map(|w| m - w - df)).map(|x| 1.0 / (2.0 + 2.0 * x.cosh())).sum();
    let var = (1.0 / s - (1.0 / nf + 1.0 / nr)).max(0.0);
    Ok(Estimate { value: df, std_err: var.sqrt() })
}

/// A histogram of raw and reweighted samples, both normalised as densities over the edges.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Histogram {
    /// Bin edges.
    pub edges: Vec<f64>,
    /// Density of the raw samples.
    pub raw: Vec<f64>,
    /// Density of the reweighted samples (equal to `raw` without weights).
    pub reweighted: Vec<f64>,
}

/// Histogram of `values: [n]` on `edges`, raw and weighted by `exp(log_w)`; samples outside the
/// edges count in the normalisation (so the densities integrate to the fraction inside).
pub fn histogram(values: ArrayView1<f64>, log_w: Option<ArrayView1<f64>>, edges: &[f64]) -> Histogram {
    let nb = edges.len().saturating_sub(1);
    let mut raw = vec![0.0; nb];
    let mut rw = vec![0.0; nb];
    let m = log_w.map(|l| l.iter().cloned().filter(|v| !v.is_nan()).fold(f64::NEG_INFINITY, f64::max)).unwrap_or(0.0);
    let (mut total_w, n) = (0.0, values.len() as f64);
    for (i, &v) in values.iter().enumerate() {
        let w = log_w.map(|l| if l[i].is_nan() { 0.0 } else { (l[i] - m).exp() }).unwrap_or(1.0);
        total_w += w;
        if nb > 0 && v >= edges[0] && v < edges[nb] {
            let b = edges.partition_point(|e| *e <= v) - 1;
            raw[b] += 1.0;
            rw[b] += w;
        }
    }
    for b in 0..nb {
        let width = edges[b + 1] - edges[b];
        raw[b] /= n * width;
        rw[b] /= total_w * width;
    }
    Histogram { edges: edges.to_vec(), raw, reweighted: rw }
}

/// `bins + 1` equally spaced edges on `[lo, hi]`.
pub fn linspace_edges(lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    (0..=bins).map(|i| lo + (hi - lo) * i as f64 / bins as f64).collect()
}

/// The 2-Wasserstein distance between two weighted empirical distributions on the line,
/// `W₂² = ∫₀¹ (F_a⁻¹(q) − F_b⁻¹(q))² dq` (exact for 1D, where the monotone coupling is optimal),
/// computed by merging the two step quantile functions. `log_w_a` weights `a` (e.g. the log
/// importance weights of reweighted samples; `None`: uniform); `b` is uniform (the reference).
///
/// Used as the energy-W2 of the Boltzmann-generator literature (the ASBS and iDEM tables:
/// `W₂` between the energies of generated samples and of reference samples).
///
/// # Errors
/// `InvalidArgument` for an empty set or weights of the wrong length; `NonFinite` for a
/// non-finite value or weight.
pub fn wasserstein2_1d(a: ArrayView1<f64>, log_w_a: Option<ArrayView1<f64>>, b: ArrayView1<f64>) -> Result<f64> {
    if a.is_empty() || b.is_empty() {
        return Err(Error::invalid("wasserstein2_1d", "need non-empty sets"));
    }
    if log_w_a.is_some_and(|w| w.len() != a.len()) {
        return Err(Error::invalid("log_w_a", format!("{} weights for {} values", log_w_a.map_or(0, |w| w.len()), a.len())));
    }
    if a.iter().chain(b.iter()).any(|v| !v.is_finite()) {
        return Err(Error::NonFiniteInput { what: "wasserstein2_1d input", index: 0 });
    }
    let wa: Vec<f64> = match log_w_a {
        Some(lw) => {
            let m = lw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            if !m.is_finite() {
                return Err(Error::NonFiniteInput { what: "wasserstein2_1d weights", index: 0 });
            }
            let w: Vec<f64> = lw.iter().map(|l| (l - m).exp()).collect();
            let s: f64 = w.iter().sum();
            w.into_iter().map(|v| v / s).collect()
        }
        None => vec![1.0 / a.len() as f64; a.len()],
    };
    let mut ia: Vec<usize> = (0..a.len()).collect();
    ia.sort_by(|&i, &j| a[i].total_cmp(&a[j]));
    let mut vb: Vec<f64> = b.to_vec();
    vb.sort_by(f64::total_cmp);
    let wb = 1.0 / vb.len() as f64;
    // Walk both step functions: at each step the mass is the smaller remaining one.
    let (mut i, mut j) = (0, 0);
    let (mut ra, mut rb) = (wa[ia[0]], wb);
    let mut sum = 0.0;
    while i < ia.len() && j < vb.len() {
        let m = ra.min(rb);
        let dv = a[ia[i]] - vb[j];
        sum += m * dv * dv;
        ra -= m;
        rb -= m;
        if ra <= 1e-15 {
            i += 1;
            if i < ia.len() {
                ra = wa[ia[i]];
            }
        }
        if rb <= 1e-15 {
            j += 1;
            rb = wb;
        }
    }
    Ok(sum.max(0.0).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn kish_ess_limits_and_errors() {
        // Equal weights: ESS = N exactly; one non-zero weight: ESS = 1.
        let eq = Array1::from_elem(100, -3.7);
        assert!((kish_ess(eq.view()).unwrap() - 100.0).abs() < 1e-9);
        let mut one = Array1::from_elem(10, f64::NEG_INFINITY);
        one[3] = 5.0;
        assert_eq!(kish_ess(one.view()).unwrap(), 1.0);
        // Direct formula for w = (1, 2, 3): 36 / 14.
        let w = Array1::from(vec![0.0, 2f64.ln(), 3f64.ln()]);
        assert!((kish_ess(w.view()).unwrap() - 36.0 / 14.0).abs() < 1e-12);
        let bad = Array1::from(vec![0.0, f64::NAN]);
        assert!(matches!(kish_ess(bad.view()), Err(Error::NonFiniteInput { index: 1, .. })));
    }

    /// Target N(0, 1) (`u = x²/2`, β = 1, `Z = √(2π)`), proposal N(0, s²). The weights are
    /// `w ∝ exp(−x²/2 + x²/(2s²))`; `E_q[w²]/E_q[w]²` = `s² / √(2s² − 1)` (Gaussian integral
    /// with precision `2 − 1/s²`), so ESS/N → `√(2s² − 1) / s²`.
    #[test]
    fn importance_weights_for_gaussians_match_closed_forms() {
        let mut rng = StdRng::seed_from_u64(4);
        let n = 40_000;
        for s in [1.0f64, 1.5] {
            let q = Normal::new(0.0, s).unwrap();
            let x: Array1<f64> = (0..n).map(|_| q.sample(&mut rng)).collect();
            let log_q = x.mapv(|v| -0.5 * v * v / (s * s) - (s * (2.0 * std::f64::consts::PI).sqrt()).ln());
            let lw = log_weights(1.0, x.mapv(|v| 0.5 * v * v).view(), log_q.view()).unwrap();
            let ess = kish_ess(lw.view()).unwrap() / n as f64;
            let lz = log_partition(lw.view(), 200, 1).unwrap();
            let exact_lz = 0.5 * (2.0 * std::f64::consts::PI).ln();
            if s == 1.0 {
                // Exact samples: every weight equals Z.
                assert!((ess - 1.0).abs() < 1e-12);
                assert!((lz.value - exact_lz).abs() < 1e-12 && lz.std_err < 1e-12);
            } else {
                let expect = (2.0 * s * s - 1.0).sqrt() / (s * s);
                // ESS/N is a ratio of sample moments; 0.02 is ~5 SE at n = 40000 (delta method).
                assert!((ess - expect).abs() < 0.02, "ESS/N {ess} vs {expect}");
                assert!((lz.value - exact_lz).abs() < 4.0 * lz.std_err, "{lz:?} vs {exact_lz}");
                let m2 = reweighted_mean_bootstrap(x.mapv(|v| v * v).view(), lw.view(), 200, 2).unwrap();
                assert!((m2.value - 1.0).abs() < 4.0 * m2.std_err, "E_p[x²] {m2:?}");
            }
        }
    }

    /// Harmonic states `u_k = ½ κ_k x²` (reduced): `Δf = f₁ − f₀ = ½ ln(κ₁/κ₀)`.
    #[test]
    fn exp_averaging_and_bar_recover_harmonic_free_energies() {
        let mut rng = StdRng::seed_from_u64(9);
        let (k0, k1) = (1.0f64, 4.0f64);
        let exact = 0.5 * (k1 / k0).ln();
        let n = 5000;
        let x0: Vec<f64> = (0..n).map(|_| Normal::new(0.0, 1.0 / k0.sqrt()).unwrap().sample(&mut rng)).collect();
        let x1: Vec<f64> = (0..n).map(|_| Normal::new(0.0, 1.0 / k1.sqrt()).unwrap().sample(&mut rng)).collect();
        let wf: Array1<f64> = x0.iter().map(|x| 0.5 * (k1 - k0) * x * x).collect();
        let wr: Array1<f64> = x1.iter().map(|x| 0.5 * (k0 - k1) * x * x).collect();
        let b = bar(wf.view(), wr.view()).unwrap();
        assert!((b.value - exact).abs() < 4.0 * b.std_err, "BAR {b:?} vs {exact}");
        assert!(b.std_err > 0.0 && b.std_err < 0.05);
        // Forward FEP from the wide state to the narrow one converges (overlap is fine here).
        let fep = exp_averaging(wf.view());
        assert!((fep - exact).abs() < 0.05, "FEP {fep} vs {exact}");
        // Poor overlap (κ₁/κ₀ = 400, reverse FEP): BAR stays within its error, and its error is
        // far smaller than the bias of one-sided averaging from the narrow state.
        let k1 = 400.0f64;
        let exact = 0.5 * (k1 / k0).ln();
        let x1: Vec<f64> = (0..n).map(|_| Normal::new(0.0, 1.0 / k1.sqrt()).unwrap().sample(&mut rng)).collect();
        let wf: Array1<f64> = x0.iter().map(|x| 0.5 * (k1 - k0) * x * x).collect();
        let wr: Array1<f64> = x1.iter().map(|x| 0.5 * (k0 - k1) * x * x).collect();
        let b = bar(wf.view(), wr.view()).unwrap();
        assert!((b.value - exact).abs() < 4.0 * b.std_err, "BAR {b:?} vs {exact}");
        let reverse_fep = -exp_averaging(wr.view());
        assert!((reverse_fep - exact).abs() > 4.0 * b.std_err, "reverse FEP {reverse_fep} should be biased here");
    }

    #[test]
    fn state_free_energies_profiles_and_histograms() {
        // Raw samples from a 3:1 mixture of states: ΔF(A→B) = −ln(1/3) = ln 3 at β = 1.
        let n = 40_000;
        let in_a: Vec<bool> = (0..n).map(|i| i % 4 != 0).collect();
        let in_b: Vec<bool> = in_a.iter().map(|a| !a).collect();
        let flat = Array1::zeros(n);
        let df = free_energy_difference(flat.view(), &in_a, &in_b, 1.0, 100, 0).unwrap();
        assert!((df.value - 3f64.ln()).abs() < 1e-12);
        // Weights 3 on B make the states equally likely: ΔF = 0; at β = 2 the same ratio halves.
        let lw: Array1<f64> = in_b.iter().map(|&b| if b { 3f64.ln() } else { 0.0 }).collect();
        assert!(free_energy_difference(lw.view(), &in_a, &in_b, 2.0, 100, 0).unwrap().value.abs() < 1e-12);
        assert!(free_energy_difference(flat.view(), &in_a, &vec![false; n], 1.0, 10, 0).is_err());
        // Profile of uniform samples on [0, 1): flat to within bootstrap noise.
        let mut rng = StdRng::seed_from_u64(1);
        let c: Array1<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
        let p = free_energy_profile(c.view(), flat.view(), &linspace_edges(0.0, 1.0, 10), 1.0, 100, 0).unwrap();
        for (f, e) in p.f.iter().zip(&p.std_err) {
            assert!(*f < 5.0 * e.max(0.01), "profile {:?} ± {:?}", p.f, p.std_err);
        }
        // Histogram densities integrate to the fraction of samples inside the edges (here 1).
        let h = histogram(c.view(), Some(c.mapv(|v| v.ln()).view()), &linspace_edges(0.0, 1.0, 20));
        let integral = |d: &[f64]| d.iter().sum::<f64>() * 0.05;
        assert!((integral(&h.raw) - 1.0).abs() < 1e-12 && (integral(&h.reweighted) - 1.0).abs() < 1e-12);
        // Weights w = x turn U(0, 1) into density 2x: the last bin's mean density is 2·0.975;
        // its ~2000 samples give a relative SE of about 1/√2000, so 4 SE ≈ 0.175.
        assert!((h.reweighted[19] - 1.95).abs() < 4.0 * 1.95 / 2000f64.sqrt(), "{}", h.reweighted[19]);
    }

    /// Against references: the Hungarian W2 on equal-size uniform sets (`fm::coupling`, exact
    /// by Birkhoff–von Neumann); a hand-computed unequal case; equal weights given as log
    /// weights; and two Gaussians, whose W2² is `(μ₁ − μ₂)² + (σ₁ − σ₂)²` (quantile sets, so the
    /// only error is the quantile discretisation).
    #[test]
    fn wasserstein2_1d_against_references() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let a: Vec<f64> = (0..40).map(|_| rng.random_range(-2.0..3.0)).collect();
        let b: Vec<f64> = (0..40).map(|_| rng.random_range(-1.0..1.0)).collect();
        let exact = crate::fm::coupling::wasserstein2(&a, &b, 1).unwrap();
        let w = wasserstein2_1d(ArrayView1::from(&a), None, ArrayView1::from(&b)).unwrap();
        assert!((w - exact).abs() < 1e-12, "{w} vs {exact}");
        let lw = Array1::from_elem(40, -3.7);
        let ww = wasserstein2_1d(ArrayView1::from(&a), Some(lw.view()), ArrayView1::from(&b)).unwrap();
        assert!((ww - exact).abs() < 1e-12);
        // a = {0, 1} uniform, b = {0, 0, 3}: quantiles a: 0 on [0, ½), 1 on [½, 1);
        // b: 0 on [0, ⅔), 3 on [⅔, 1). W2² = ⅙·1 + ⅓·(1 − 3)² = 1/6 + 4/3 = 3/2.
        let w = wasserstein2_1d(ndarray::array![1.0, 0.0].view(), None, ndarray::array![3.0, 0.0, 0.0].view()).unwrap();
        assert!((w * w - 1.5).abs() < 1e-12, "{}", w * w);
        // Weights: a = {0 (weight ¾), 4 (weight ¼)} against b = {0, 0, 0, 4}: identical laws.
        let lw = ndarray::array![(0.75f64).ln(), (0.25f64).ln()];
        let w = wasserstein2_1d(ndarray::array![0.0, 4.0].view(), Some(lw.view()), ndarray::array![0.0, 4.0, 0.0, 0.0].view()).unwrap();
        assert!(w < 1e-7, "{w}");
        // Affine images of one sample z: a = 1 + 2z, b = −0.5 + z (both monotone, so the sorted
        // coupling pairs a_k with b_k): W2² = mean((1.5 + z_k)²) exactly, and → 1.5² + 1 (the
        // Gaussian formula (μ₁ − μ₂)² + (σ₁ − σ₂)²) for standard normal z.
        let z: Vec<f64> = (0..3000).map(|_| rand_distr::Distribution::<f64>::sample(&rand_distr::StandardNormal, &mut rng)).collect();
        let (ga, gb): (Vec<f64>, Vec<f64>) = z.iter().map(|v| (1.0 + 2.0 * v, -0.5 + v)).unzip();
        let w = wasserstein2_1d(ArrayView1::from(&ga), None, ArrayView1::from(&gb)).unwrap();
        let exact = (z.iter().map(|v| (1.5 + v) * (1.5 + v)).sum::<f64>() / z.len() as f64).sqrt();
        assert!((w - exact).abs() < 1e-10, "{w} vs {exact}");
        assert!(wasserstein2_1d(ArrayView1::from(&a[..0]), None, ArrayView1::from(&b)).is_err());
        assert!(wasserstein2_1d(ndarray::array![f64::NAN].view(), None, ArrayView1::from(&b)).is_err());
    }
}
