//! Energies of the registered systems (hand values, forces vs finite differences, invariances),
//! centre-of-mass-free coordinates, and reweighting of exact samples.

use ndarray::{array, Array2};
use physflow::boltzmann::{reweight, BoltzmannGenerator};
use physflow::energy::Energy;
use physflow::energy::{systems, DoubleWell2D, InternalEnergy, LennardJones, MeanFree, MuellerBrown, MultiDoubleWell, PairSum};
use physflow::flows::{Base, FlowConfig};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Random configurations without clashes: particles on a perturbed cubic lattice of spacing
/// 1.15 (LJ) or 3 (double-well pairs), anything else uniform in [−1.5, 1.5].
fn configs(e: &dyn Energy, n: usize, rng: &mut StdRng) -> Array2<f64> {
    let particles = e.particles();
    let name = e.name();
    let (np, d, spacing) = match particles {
        Some((np, d)) => (np, d, if name.starts_with("lj") { 1.15 } else { 3.0 }),
        None if e.dim() == 2 => return Array2::from_shape_simple_fn((n, 2), || rng.random_range(-1.5..1.5)),
        None => {
            // Internal coordinates of a particle system: map Cartesian lattice configurations.
            let (np, d, spacing) = if name.starts_with("lj") { (5, 3, 1.15) } else { (4, 2, 3.0) };
            let cart = lattice(np, d, spacing, n, rng);
            return MeanFree { n_particles: np, spatial_dim: d }.to_internal(cart.view()).unwrap();
        }
    };
    lattice(np, d, spacing, n, rng)
}

fn lattice(np: usize, d: usize, spacing: f64, n: usize, rng: &mut StdRng) -> Array2<f64> {
    let side = (np as f64).powf(1.0 / d as f64).ceil() as usize;
    Array2::from_shape_fn((n, np * d), |(_, c)| {
        let (i, k) = (c / d, c % d);
        let idx = (i / side.pow(k as u32)) % side;
        spacing * idx as f64 + rng.random_range(-0.15..0.15)
    })
}

#[test]
fn energies_at_hand_computed_points() {
    // Double well: (1, 2) → −4·1 + 1 + ½·4 = −1; (√2, 0) → −4·2 + 4 = −4 (a minimum).
    let u = DoubleWell2D::default().energy(array![[1.0, 2.0], [2f64.sqrt(), 0.0]].view());
    assert!((u[0] + 1.0).abs() < 1e-14 && (u[1] + 4.0).abs() < 1e-13);
    // Müller–Brown: the deepest minimum (−0.558, 1.442) has u = −146.699 (Müller & Brown 1979
    // list −146.70); at the origin the four terms sum to −48.4013 (evaluated by hand from the
    // formula with the published constants).
    let u = MuellerBrown::default().energy(array![[-0.558, 1.442], [0.0, 0.0]].view());
    assert!((u[0] + 146.699_489_200_587_78).abs() < 1e-9, "{}", u[0]);
    assert!((u[1] + 48.401_274_173_183_89).abs() < 1e-9, "{}", u[1]);
    // DW4 on a square of side d₀ = 4: the 4 sides contribute 0, the 2 diagonals
    // s = 4√2 − 4 each 0.9 s⁴ − 4 s²: total −8.396642530754047.
    let u = MultiDoubleWell::dw4().energy(array![[0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0]].view());
    assert!((u[0] + 8.396_642_530_754_047).abs() < 1e-12, "{}", u[0]);
    // Two LJ particles at r = r_m: pair −ε = −1; restraint ½·1·(0.5² + 0.5²) = 0.25 → −0.75;
    // counting ordered pairs doubles the pair term only: −1.75.
    let x = array![[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]];
    let lj = LennardJones::cluster(2);
    assert!((lj.energy(x.view())[0] + 0.75).abs() < 1e-14);
    let ordered = LennardJones { pair_sum: PairSum::Ordered, ..lj };
    assert!((ordered.energy(x.view())[0] + 1.75).abs() < 1e-14);
}

#[test]
fn forces_are_minus_the_gradient_for_every_system() {
    let mut rng = StdRng::seed_from_u64(1);
    for e in systems() {
        let x = configs(e.as_ref(), 3, &mut rng);
        let (u, f) = e.energy_and_force(x.view());
        assert!((&u - &e.energy(x.view())).iter().all(|d| d.abs() < 1e-12 * (1.0 + u[0].abs())), "{}: energy vs energy_and_force", e.name());
        // Central differences, h = 1e-6: truncation O(h²·u''') and round-off O(ε|u|/h) ≈ 1e-8 here.
        let h = 1e-6;
        for b in 0..3 {
            for k in 0..e.dim() {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[[b, k]] += h;
                xm[[b, k]] -= h;
                let fd = -(e.energy(xp.view())[b] - e.energy(xm.view())[b]) / (2.0 * h);
                assert!((f[[b, k]] - fd).abs() < 1e-6 * (1.0 + fd.abs()), "{}: force[{b},{k}] {} vs FD {fd}", e.name(), f[[b, k]]);
            }
        }
    }
}

#[test]
fn particle_energies_are_invariant_under_rotation_translation_and_permutation() {
    let mut rng = StdRng::seed_from_u64(2);
    let cases: Vec<Box<dyn Energy>> = vec![
        Box::new(MultiDoubleWell::dw4()),
        Box::new(LennardJones::lj13()),
        Box::new(LennardJones { pair_sum: PairSum::Ordered, ..LennardJones::cluster(5) }),
    ];
    for e in cases {
        let (n, d) = e.particles().unwrap();
        let x = configs(e.as_ref(), 4, &mut rng);
        let u = e.energy(x.view());
        // A rotation: in 2D by 0.7 rad; in 3D, about the axis (1, 2, 2)/3 by 1.1 rad (Rodrigues).
        let r: Array2<f64> = if d == 2 {
            let (c, s) = (0.7f64.cos(), 0.7f64.sin());
            array![[c, -s], [s, c]]
        } else {
            let k = [1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0];
            let (c, s) = (1.1f64.cos(), 1.1f64.sin());
            Array2::from_shape_fn((3, 3), |(i, j)| {
                let kx = [[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]];
                (if i == j { c } else { 0.0 }) + s * kx[i][j] + (1.0 - c) * k[i] * k[j]
            })
        };
        let shift: Vec<f64> = (0..d).map(|k| 0.3 + k as f64).collect();
        let perm: Vec<usize> = (0..n).rev().collect();
        let moved = Array2::from_shape_fn(x.dim(), |(b, c)| {
            let (i, k) = (c / d, c % d);
            let src = perm[i];
            (0..d).map(|j| r[[k, j]] * x[[b, src * d + j]]).sum::<f64>() + shift[k]
        });
        let u2 = e.energy(moved.view());
        for b in 0..4 {
            assert!((u[b] - u2[b]).abs() < 1e-10 * (1.0 + u[b].abs()), "{}: {} vs {}", e.name(), u[b], u2[b]);
        }
        // The pair-sum conventions differ by exactly the pair part (restraint unchanged).
        if e.name().starts_with("lj") {
            let unique = LennardJones { n_particles: n, pair_sum: PairSum::Unique, ..LennardJones::lj13() };
            let ordered = LennardJones { pair_sum: PairSum::Ordered, ..unique };
            let no_pairs = |lj: LennardJones| lj.energy(x.view()) - LennardJones { epsilon: 0.0, ..lj }.energy(x.view());
            assert!((&no_pairs(ordered) - &(2.0 * &no_pairs(unique))).iter().all(|v| v.abs() < 1e-10));
        }
    }
}

#[test]
fn mean_free_coordinates_are_orthonormal() {
    let mut rng = StdRng::seed_from_u64(3);
    let mf = MeanFree { n_particles: 5, spatial_dim: 3 };
    let y = Array2::from_shape_simple_fn((7, 12), || rng.random_range(-2.0..2.0));
    let x = mf.to_cartesian(y.view()).unwrap();
    // QᵀQ = I: back to y exactly, norms kept, and zero centre of mass.
    assert!((&mf.to_internal(x.view()).unwrap() - &y).iter().all(|e| e.abs() < 1e-12));
    for b in 0..7 {
        assert!((x.row(b).dot(&x.row(b)) - y.row(b).dot(&y.row(b))).abs() < 1e-11);
        for k in 0..3 {
            assert!((0..5).map(|i| x[[b, i * 3 + k]]).sum::<f64>().abs() < 1e-12);
        }
    }
    // QQᵀ removes the centre of mass.
    let xr = Array2::from_shape_simple_fn((3, 15), || rng.random_range(-2.0..2.0));
    let back = mf.to_cartesian(mf.to_internal(xr.view()).unwrap().view()).unwrap();
    for b in 0..3 {
        for c in 0..15 {
            let k = c % 3;
            let com = (0..5).map(|i| xr[[b, i * 3 + k]]).sum::<f64>() / 5.0;
            assert!((back[[b, c]] - (xr[[b, c]] - com)).abs() < 1e-12);
        }
    }
    // The mean-free normal's density is the standard normal's in the internal coordinates.
    let base = Base::MeanFreeNormal { particles: 5, spatial_dim: 3 };
    let std = Base::StandardNormal { dim: 12 };
    assert!((&base.log_prob(x.view()).unwrap() - &std.log_prob(y.view()).unwrap()).iter().all(|e| e.abs() < 1e-11));
    assert!(InternalEnergy::new(DoubleWell2D::default()).is_err(), "not a particle system");
    assert!(mf.to_internal(Array2::zeros((1, 14)).view()).is_err());
}

#[test]
fn exact_samples_have_ess_n_and_recover_log_z() {
    // A fresh generator is the identity, so q = N(0, I); with u = ½|x|² (the double well with
    // a = c = 0, b = ½) the target is q itself: every log w = log Z = log 2π, ESS = N exactly.
    let e = DoubleWell2D { a: 0.0, b: 0.5, c: 0.0 };
    let bg = BoltzmannGenerator::new(&FlowConfig::real_nvp(2, vec![8]), 2, 0).unwrap();
    let w = bg.sample_weighted(&e, 1.0, 5000, &mut StdRng::seed_from_u64(4)).unwrap();
    let n = 5000.0;
    assert!((reweight::kish_ess(w.log_w.view()).unwrap() - n).abs() < 1e-8 * n);
    let lz = reweight::log_partition(w.log_w.view(), 50, 0).unwrap();
    assert!((lz.value - (2.0 * std::f64::consts::PI).ln()).abs() < 1e-12);
    // Raw and reweighted histograms coincide for equal weights.
    let h = reweight::histogram(w.x.column(0), Some(w.log_w.view()), &reweight::linspace_edges(-3.0, 3.0, 12));
    assert!(h.raw.iter().zip(&h.reweighted).all(|(a, b)| (a - b).abs() < 1e-12));
}
