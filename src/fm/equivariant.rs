//! Alignment of particle configurations over their symmetry group, for equivariant optimal-
//! transport couplings (Klein, Krämer & Noé 2023, "Equivariant flow matching", §3.2): before two
//! configurations are paired, one is relabelled (a permutation of identical particles, by the
//! Hungarian method) and rotated (by Kabsch's method) to the other, so that the transport cost
//! is the distance between the orbits, not between arbitrary representatives.
//!
//! A configuration is `[N·d]`, particle-major, centred (mean-free), as
//! [`crate::flows::Base::MeanFreeNormal`] samples.

use super::coupling::assignment;
use crate::{Error, Result};

/// Which orthogonal maps an alignment may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Orthogonal {
    /// Rotations only (`det R = +1`).
    Rotations,
    /// Rotations and reflections (`O(d)`): for energies of distances only, which are also
    /// invariant under reflections.
    WithReflections,
}

/// The orthogonal `R` (`[d, d]` row-major) minimising `Σᵢ |R xᵢ − yᵢ|²` for centred
/// configurations `x`, `y` (`[N·d]`): Kabsch (1976). With `H = Σᵢ yᵢ xᵢᵀ = U Σ Vᵀ`,
/// `R = U diag(1, …, 1, s) Vᵀ` where `s = sign det(U Vᵀ)` for rotations and `s = 1` with
/// reflections.
///
/// # Errors
/// `Shape` when the lengths are not `N·d`; `InvalidArgument` if the SVD fails (non-finite input).
pub fn kabsch(x: &[f64], y: &[f64], d: usize, group: Orthogonal) -> Result<Vec<f64>> {
    if d == 0 || x.len() != y.len() || !x.len().is_multiple_of(d) {
        return Err(Error::Shape { what: "configurations to align".into(), expected: vec![x.len()], got: vec![y.len()] });
    }
    let n = x.len() / d;
    if d == 2 {
        return Ok(kabsch_2d(x, y, n, group));
    }
    let h = faer::Mat::<f64>::from_fn(d, d, |a, b| (0..n).map(|i| y[i * d + a] * x[i * d + b]).sum());
    let svd = h.svd().map_err(|e| Error::invalid("configurations", format!("Kabsch SVD failed: {e:?}")))?;
    let (u, v) = (svd.U(), svd.V());
    let mut sign = 1.0;
    if group == Orthogonal::Rotations {
        let uvt = faer::Mat::<f64>::from_fn(d, d, |a, b| (0..d).map(|k| u[(a, k)] * v[(b, k)]).sum());
        if uvt.determinant() < 0.0 {
            sign = -1.0;
        }
    }
    Ok((0..d * d)
        .map(|ab| {
            let (a, b) = (ab / d, ab % d);
            (0..d).map(|k| u[(a, k)] * v[(b, k)] * if k + 1 == d { sign } else { 1.0 }).sum()
        })
        .collect())
}

/// Kabsch in 2D in closed form: with `H = Σᵢ yᵢ xᵢᵀ`, the rotation by `θ` has
/// `tr(Rᵀ H) = cos θ (H₀₀ + H₁₁) + sin θ (H₁₀ − H₀₁)`, maximal at
/// `θ = atan2(H₁₀ − H₀₁, H₀₀ + H₁₁)`; the reflection `[[c, s], [s, −c]]` has
/// `tr = c (H₀₀ − H₁₁) + s (H₀₁ + H₁₀)`, maximal at `atan2(H₀₁ + H₁₀, H₀₀ − H₁₁)`; the larger
/// maximum wins (the SVD route gives the same map, without allocating).
fn kabsch_2d(x: &[f64], y: &[f64], n: usize, group: Orthogonal) -> Vec<f64> {
    let mut h = [0.0; 4];
    for i in 0..n {
        for a in 0..2 {
            for b in 0..2 {
                h[a * 2 + b] += y[i * 2 + a] * x[i * 2 + b];
            }
        }
    }
    let (rc, rs) = (h[0] + h[3], h[2] - h[1]);
    let (fc, fs) = (h[0] - h[3], h[1] + h[2]);
    if group == Orthogonal::WithReflections && fc.hypot(fs) > rc.hypot(rs) {
        let th = fs.atan2(fc);
        let (c, s) = (th.cos(), th.sin());
        vec![c, s, s, -c]
    } else {
        let th = rs.atan2(rc);
        let (c, s) = (th.cos(), th.sin());
        vec![c, -s, s, c]
    }
}

/// `R x` for every particle of `x` (`[N·d]`).
fn rotate(x: &[f64], r: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for (xi, oi) in x.chunks(d).zip(out.chunks_mut(d)) {
        for a in 0..d {
            oi[a] = (0..d).map(|b| r[a * d + b] * xi[b]).sum();
        }
    }
    out
}

/// Squared distance between two `[N·d]` configurations.
pub fn sq_dist(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum()
}

/// The principal axes of a centred configuration: the eigenvectors (columns, `[d, d]`
/// row-major, eigenvalues ascending) of `Σᵢ xᵢ xᵢᵀ`.
fn principal_axes(x: &[f64], d: usize) -> Result<Vec<f64>> {
    let n = x.len() / d;
    let m = faer::Mat::<f64>::from_fn(d, d, |a, b| (0..n).map(|i| x[i * d + a] * x[i * d + b]).sum());
    let eig = m.self_adjoint_eigen(faer::Side::Lower).map_err(|e| Error::invalid("configurations", format!("eigen-decomposition failed: {e:?}")))?;
    let u = eig.U();
    Ok((0..d * d).map(|ab| u[(ab / d, ab % d)]).collect())
}

/// `x` relabelled and rotated to `y`.
///
/// The joint problem over permutations and rotations is not convex, so it is started from
/// every map that takes `x`'s principal axes to `y`'s (all sign choices allowed by `group`:
/// 2^(d−1) rotations, 2^d with reflections), and from the identity; from each start, the
/// particle assignment minimising `Σᵢ |xᵢ − y_{σ(i)}|²` (Hungarian) and the Kabsch map
/// alternate for `rounds` rounds (each lowers the cost). The best over all starts is kept: an
/// exact rotated, relabelled copy is recovered whenever the principal moments are distinct.
/// Returns the aligned copy of `x` (`[N·d]`; particle `j` of the result is the particle of `x`
/// assigned to `yⱼ`) and its squared distance to `y`.
///
/// # Errors
/// As [`kabsch`].
pub fn align(x: &[f64], y: &[f64], d: usize, group: Orthogonal, rounds: usize) -> Result<(Vec<f64>, f64)> {
    check_pair(x, y, d)?;
    let (ax, ay) = (principal_axes(x, d)?, principal_axes(y, d)?);
    let mut starts: Vec<Vec<f64>> = vec![identity(d)];
    for signs in 0..1usize << d {
        // R = A_y S A_xᵀ with S = diag(±1): x's k-th axis onto ±y's k-th axis.
        let r: Vec<f64> = (0..d * d)
            .map(|ab| {
                let (a, b) = (ab / d, ab % d);
                (0..d).map(|k| ay[a * d + k] * ax[b * d + k] * if signs >> k & 1 == 1 { -1.0 } else { 1.0 }).sum()
            })
            .collect();
        let det = faer::Mat::<f64>::from_fn(d, d, |a, b| r[a * d + b]).determinant();
        if group == Orthogonal::WithReflections || det > 0.0 {
            starts.push(r);
        }
    }
    align_from(x, y, d, group, rounds, &starts)
}

/// `x` relabelled and rotated to `y` from the identity alone: `rounds` alternations of the
/// Hungarian assignment and Kabsch (Klein et al.'s pairing cost). Cheaper than [`align`] by
/// the number of principal-axis starts, and an upper bound on its cost.
///
/// # Errors
/// As [`kabsch`].
pub fn align_from_identity(x: &[f64], y: &[f64], d: usize, group: Orthogonal, rounds: usize) -> Result<(Vec<f64>, f64)> {
    check_pair(x, y, d)?;
    align_from(x, y, d, group, rounds, &[identity(d)])
}

fn check_pair(x: &[f64], y: &[f64], d: usize) -> Result<()> {
    if d == 0 || x.len() != y.len() || !x.len().is_multiple_of(d) {
        return Err(Error::Shape { what: "configurations to align".into(), expected: vec![x.len()], got: vec![y.len()] });
    }
    Ok(())
}

fn identity(d: usize) -> Vec<f64> {
    (0..d * d).map(|ab| f64::from(u8::from(ab / d == ab % d))).collect()
}

/// The best alignment over `starts` (the loop of [`align`]).
fn align_from(x: &[f64], y: &[f64], d: usize, group: Orthogonal, rounds: usize, starts: &[Vec<f64>]) -> Result<(Vec<f64>, f64)> {
    let n = x.len() / d;
    let mut best = (x.to_vec(), sq_dist(x, y));
    for r0 in starts {
        let mut cur = rotate(x, r0, d);
        for _ in 0..rounds.max(1) {
            let cost: Vec<f64> = (0..n * n).map(|ij| sq_dist(&cur[(ij / n) * d..(ij / n + 1) * d], &y[(ij % n) * d..(ij % n + 1) * d])).collect();
            let sigma = assignment(&cost, n);
            let mut permuted = vec![0.0; x.len()];
            for (i, &j) in sigma.iter().enumerate() {
                permuted[j * d..(j + 1) * d].copy_from_slice(&cur[i * d..(i + 1) * d]);
            }
            // The Kabsch map from the relabelled original (not the rotated copy), so rotations
            // do not accumulate round-off.
            let r = kabsch(&permuted, y, d, group)?;
            cur = rotate(&permuted, &r, d);
            let c = sq_dist(&cur, y);
            if c < best.1 {
                best = (cur.clone(), c);
            }
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn centred(n: usize, d: usize, rng: &mut StdRng) -> Vec<f64> {
        let mut x: Vec<f64> = (0..n * d).map(|_| rng.random_range(-2.0..2.0)).collect();
        for k in 0..d {
            let m = (0..n).map(|i| x[i * d + k]).sum::<f64>() / n as f64;
            (0..n).for_each(|i| x[i * d + k] -= m);
        }
        x
    }

    /// A rotation about a random axis (3D) or by a random angle (2D).
    fn rotation(d: usize, rng: &mut StdRng) -> Vec<f64> {
        let th: f64 = rng.random_range(-3.0..3.0);
        let (c, s) = (th.cos(), th.sin());
        if d == 2 {
            return vec![c, -s, s, c];
        }
        let mut a: Vec<f64> = (0..3).map(|_| rng.random_range(-1.0..1.0)).collect();
        let norm = a.iter().map(|v| v * v).sum::<f64>().sqrt();
        a.iter_mut().for_each(|v| *v /= norm);
        // Rodrigues: R = c I + s [a]× + (1 − c) a aᵀ.
        let k = [[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]];
        (0..9)
            .map(|ij| {
                let (i, j) = (ij / 3, ij % 3);
                c * f64::from(u8::from(i == j)) + s * k[i][j] + (1.0 - c) * a[i] * a[j]
            })
            .collect()
    }

    /// A configuration rotated and relabelled is aligned back exactly (cost ~0), in 2D and 3D;
    /// with a reflection, only the group that includes reflections recovers it. Reference: the
    /// construction itself (the orbit contains `y`).
    #[test]
    fn recovers_a_rotated_relabelled_copy() {
        let mut rng = StdRng::seed_from_u64(4);
        for (n, d) in [(4, 2), (13, 3)] {
            let y = centred(n, d, &mut rng);
            let r = rotation(d, &mut rng);
            let mut perm: Vec<usize> = (0..n).collect();
            rand::seq::SliceRandom::shuffle(perm.as_mut_slice(), &mut rng);
            // x_i = R y_{perm(i)}: aligning x to y must undo both.
            let mut x = vec![0.0; n * d];
            for i in 0..n {
                let yi = &y[perm[i] * d..(perm[i] + 1) * d];
                for a in 0..d {
                    x[i * d + a] = (0..d).map(|b| r[a * d + b] * yi[b]).sum();
                }
            }
            // Any rotation angle: the starts from the principal axes find the orbit member,
            // whose cost is 0.
            let (aligned, cost) = align(&x, &y, d, Orthogonal::Rotations, 4).unwrap();
            assert!(cost < 1e-18 * n as f64 || cost < 1e-20, "n={n} d={d}: cost {cost}");
            assert!(sq_dist(&aligned, &y) < 1e-18 * n as f64 + 1e-20);
            // A mirror image: rotations alone cannot undo it, rotations with reflections can.
            let mirrored: Vec<f64> = x.iter().enumerate().map(|(k, v)| if k % d == 0 { -v } else { *v }).collect();
            let (_, c_refl) = align(&mirrored, &y, d, Orthogonal::WithReflections, 4).unwrap();
            assert!(c_refl < 1e-18 * n as f64 + 1e-20, "with reflections: {c_refl}");
            let (_, c_rot) = align(&mirrored, &y, d, Orthogonal::Rotations, 4).unwrap();
            assert!(c_rot > 1e-3, "rotations alone undid a reflection: {c_rot}");
        }
    }

    /// Kabsch's map (SVD in 3D, closed form in 2D) is orthogonal with the requested
    /// determinant, and is the least-squares optimum: no random rotation does better (Kabsch
    /// 1976); with reflections allowed it is at least as good as the best rotation of either
    /// the configuration or its mirror image.
    #[test]
    fn kabsch_is_optimal_and_orthogonal() {
        let mut rng = StdRng::seed_from_u64(9);
        for d in [2, 3] {
            let (x, y) = (centred(6, d, &mut rng), centred(6, d, &mut rng));
            let r = kabsch(&x, &y, d, Orthogonal::Rotations).unwrap();
            for a in 0..d {
                for b in 0..d {
                    let dot: f64 = (0..d).map(|k| r[a * d + k] * r[b * d + k]).sum();
                    assert!((dot - f64::from(u8::from(a == b))).abs() < 1e-12);
                }
            }
            let m = faer::Mat::<f64>::from_fn(d, d, |a, b| r[a * d + b]);
            assert!((m.determinant() - 1.0).abs() < 1e-12);
            let best = sq_dist(&rotate(&x, &r, d), &y);
            for _ in 0..200 {
                let q = rotation(d, &mut rng);
                assert!(sq_dist(&rotate(&x, &q, d), &y) >= best - 1e-12);
            }
            // With reflections allowed: orthogonal, and at least as good as the best rotation.
            let rr = kabsch(&x, &y, d, Orthogonal::WithReflections).unwrap();
            let det = faer::Mat::<f64>::from_fn(d, d, |a, b| rr[a * d + b]).determinant();
            assert!((det.abs() - 1.0).abs() < 1e-12);
            assert!(sq_dist(&rotate(&x, &rr, d), &y) <= best + 1e-12);
            let mut mirrored = x.clone();
            (0..6).for_each(|i| mirrored[i * d] = -mirrored[i * d]);
            assert!(sq_dist(&rotate(&x, &rr, d), &y) <= sq_dist(&rotate(&mirrored, &kabsch(&mirrored, &y, d, Orthogonal::Rotations).unwrap(), d), &y) + 1e-12);
            assert!(matches!(kabsch(&x, &y[..5], d, Orthogonal::Rotations), Err(Error::Shape { .. })));
        }
    }
}
