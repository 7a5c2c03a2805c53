use super::activation::*;
use super::*;

/// SplitMix64: tiny deterministic generator so tests need no `rand`.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-scale, scale).
    fn sym(&mut self, scale: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (2.0 * u - 1.0) * scale
    }
    fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.sym(scale)).collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum TimeKind {
    None,
    Shared,
    PerSample,
}

/// Shapes chosen to hit every kernel branch (THIN = 4): thin layers
/// (dot kernel) as hidden, output and input layers, wide layers with and
/// without the time column, a single linear layer and a time-only input
/// (dim 0); the last two have widths beyond one register tile (64 `f32`
/// lanes), with remainder vectors, so full and partial tiles both run.
fn configs() -> Vec<(Vec<usize>, TimeKind)> {
    vec![
        (vec![2, 16, 16, 2], TimeKind::None),
        (vec![4, 7, 9, 5], TimeKind::Shared),
        (vec![7, 3, 8, 1], TimeKind::PerSample),
        (vec![10, 12, 6], TimeKind::PerSample),
        (vec![10, 12, 6], TimeKind::Shared),
        (vec![5, 11], TimeKind::None),
        (vec![6, 5], TimeKind::Shared),
        (vec![6, 5], TimeKind::PerSample),
        (vec![1, 5, 1], TimeKind::PerSample),
        (vec![3, 70, 37, 6], TimeKind::PerSample),
        (vec![2, 64, 64, 2], TimeKind::None),
    ]
}

/// Weights scaled by 1.5/sqrt(fan_in) keep the tanh units out of saturation
/// so gradients are O(1).
fn random_params(rng: &mut Rng, sizes: &[usize]) -> Vec<f64> {
    let mut p = Vec::new();
    for w in sizes.windows(2) {
        p.extend(rng.vec(w[0] * w[1], 1.5 / (w[0] as f64).sqrt()));
        p.extend(rng.vec(w[1], 0.5));
    }
    p
}

struct Case {
    mlp: FusedMlp<f64>,
    x: Vec<f64>,
    ts: Vec<f64>,
    kind: TimeKind,
    batch: usize,
}

impl Case {
    fn time(&self) -> TimeArg<'_, f64> {
        match self.kind {
            TimeKind::None => TimeArg::None,
            TimeKind::Shared => TimeArg::Shared(self.ts[0]),
            TimeKind::PerSample => TimeArg::PerSample(&self.ts),
        }
    }
}

fn cases(seed: u64) -> Vec<Case> {
    let mut rng = Rng(seed);
    configs()
        .into_iter()
        .enumerate()
        .map(|(c, (sizes, kind))| {
            // Batches above and below the register tiles (4 or 6 rows),
            // with remainders.
            let batch = [5, 3, 19, 11, 6, 4, 13, 9, 7, 23, 10][c % 11];
            let time_input = kind != TimeKind::None;
            let params = random_params(&mut rng, &sizes);
            let mlp = FusedMlp::new(sizes, time_input, params);
            let x = rng.vec(batch * mlp.dim_in(), 1.5);
            let ts = rng.vec(batch, 2.0);
            Case { mlp, x, ts, kind, batch }
        })
        .collect()
}

/// Textbook evaluation on the explicitly concatenated input `[x, t]`.
fn naive_forward(case: &Case, x: &[f64], ts: &[f64]) -> Vec<f64> {
    let sizes = case.mlp.sizes();
    let p = case.mlp.params();
    let dim = case.mlp.dim_in();
    let mut out = Vec::new();
    for i in 0..case.batch {
        let mut h: Vec<f64> = x[i * dim..(i + 1) * dim].to_vec();
        match case.kind {
            TimeKind::None => {}
            TimeKind::Shared => h.push(ts[0]),
            TimeKind::PerSample => h.push(ts[i]),
        }
        let mut off = 0;
        for l in 0..sizes.len() - 1 {
            let (k, n) = (sizes[l], sizes[l + 1]);
            let mut z = vec![0.0; n];
            for o in 0..n {
                let mut s = p[off + k * n + o];
                for j in 0..k {
                    s += h[j] * p[off + j * n + o];
                }
                z[o] = if l + 2 < sizes.len() { s.tanh() } else { s };
            }
            off += k * n + n;
            h = z;
        }
        out.extend(h);
    }
    out
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn rel_l2(approx: &[f64], exact: &[f64]) -> f64 {
    let num: f64 = approx.iter().zip(exact).map(|(a, e)| (a - e) * (a - e)).sum();
    let den: f64 = exact.iter().map(|e| e * e).sum();
    (num / den.max(1e-300)).sqrt()
}

#[test]
fn forward_matches_naive() {
    for case in cases(1) {
        let n = case.batch * case.mlp.dim_out();
        let reference = naive_forward(&case, &case.x, &case.ts);
        let mut out = vec![f64::NAN; n];
        case.mlp.forward(case.time(), &case.x, case.batch, &mut out);
        let err = max_abs_diff(&out, &reference);
        assert!(err <= 1e-12, "sizes {:?} {:?}: forward err {err:e}", case.mlp.sizes(), case.kind);
        let mut cache = MlpCache::new();
        let mut out2 = vec![f64::NAN; n];
        case.mlp.forward_cached(case.time(), &case.x, case.batch, &mut out2, &mut cache);
        assert_eq!(out, out2, "forward_cached differs from forward");
    }
}

/// Central differences of L = Σ a ⊙ f(t, x) against the VJP.
///
/// Step h = 1e-5 balances truncation (h²/6·|L'''| ≈ 1e-11) against
/// cancellation (ε·|L|/h ≈ 1e-10) for these O(1) tanh networks, so the
/// expected relative error is ~1e-9; the 1e-6 tolerance is the spec's
/// acceptance bound and leaves three orders of magnitude of margin.
#[test]
fn vjp_matches_finite_differences() {
    const H: f64 = 1e-5;
    const TOL: f64 = 1e-6;
    let mut rng = Rng(7);
    for case in cases(2) {
        let mlp = &case.mlp;
        let (batch, dim, dout) = (case.batch, mlp.dim_in(), mlp.dim_out());
        let a = rng.vec(batch * dout, 1.0);
        let loss = |m: &FusedMlp<f64>, x: &[f64], ts: &[f64]| -> f64 {
            let mut out = vec![0.0; batch * dout];
            let t = match case.kind {
                TimeKind::None => TimeArg::None,
                TimeKind::Shared => TimeArg::Shared(ts[0]),
                TimeKind::PerSample => TimeArg::PerSample(ts),
            };
            m.forward(t, x, batch, &mut out);
            out.iter().zip(&a).map(|(y, w)| y * w).sum()
        };

        let mut cache = MlpCache::new();
        let mut out = vec![0.0; batch * dout];
        mlp.forward_cached(case.time(), &case.x, batch, &mut out, &mut cache);
        let mut x_bar = vec![f64::NAN; batch * dim];
        let mut p_bar = vec![0.0; mlp.num_params()];
        let mut t_bar = vec![f64::NAN; batch];
        mlp.vjp(&mut cache, &a, &mut x_bar, &mut p_bar, Some(&mut t_bar));

        let ctx = format!("sizes {:?} {:?}", mlp.sizes(), case.kind);
        if dim > 0 {
            let fd: Vec<f64> = (0..x_bar.len())
                .map(|i| {
                    let (mut xp, mut xm) = (case.x.clone(), case.x.clone());
                    xp[i] += H;
                    xm[i] -= H;
                    (loss(mlp, &xp, &case.ts) - loss(mlp, &xm, &case.ts)) / (2.0 * H)
                })
                .collect();
            let e = rel_l2(&x_bar, &fd);
            assert!(e <= TOL, "{ctx}: x_bar rel err {e:e}");
        }

        let fd: Vec<f64> = (0..p_bar.len())
            .map(|i| {
                let (mut pp, mut pm) = (mlp.params().to_vec(), mlp.params().to_vec());
                pp[i] += H;
                pm[i] -= H;
                let mp = FusedMlp::new(mlp.sizes().to_vec(), mlp.time_input(), pp);
                let mm = FusedMlp::new(mlp.sizes().to_vec(), mlp.time_input(), pm);
                (loss(&mp, &case.x, &case.ts) - loss(&mm, &case.x, &case.ts)) / (2.0 * H)
            })
            .collect();
        let e = rel_l2(&p_bar, &fd);
        assert!(e <= TOL, "{ctx}: param_bar rel err {e:e}");

        match case.kind {
            TimeKind::None => assert!(t_bar.iter().all(|&v| v == 0.0), "{ctx}: t_bar not zero"),
            TimeKind::Shared => {
                // A shared time feeds every sample: its derivative is Σ_i t_bar_i.
                let (mut tp, mut tm) = (case.ts.clone(), case.ts.clone());
                tp[0] += H;
                tm[0] -= H;
                let fd = (loss(mlp, &case.x, &tp) - loss(mlp, &case.x, &tm)) / (2.0 * H);
                let sum: f64 = t_bar.iter().sum();
                let e = rel_l2(&[sum], &[fd]);
                assert!(e <= TOL, "{ctx}: shared t_bar rel err {e:e}");
            }
            TimeKind::PerSample => {
                let fd: Vec<f64> = (0..batch)
                    .map(|i| {
                        let (mut tp, mut tm) = (case.ts.clone(), case.ts.clone());
                        tp[i] += H;
                        tm[i] -= H;
                        (loss(mlp, &case.x, &tp) - loss(mlp, &case.x, &tm)) / (2.0 * H)
                    })
                    .collect();
                let e = rel_l2(&t_bar, &fd);
                assert!(e <= TOL, "{ctx}: t_bar rel err {e:e}");
            }
        }
    }
}

#[test]
fn vjp_accumulates_param_cotangent() {
    let mut rng = Rng(3);
    for case in cases(4) {
        let mlp = &case.mlp;
        let (batch, dim) = (case.batch, mlp.dim_in());
        let a = rng.vec(batch * mlp.dim_out(), 1.0);
        let mut cache = MlpCache::new();
        let mut out = vec![0.0; batch * mlp.dim_out()];
        mlp.forward_cached(case.time(), &case.x, batch, &mut out, &mut cache);

        let mut x1 = vec![0.0; batch * dim];
        let mut t1 = vec![0.0; batch];
        let mut once = vec![0.0; mlp.num_params()];
        mlp.vjp(&mut cache, &a, &mut x1, &mut once, Some(&mut t1));

        // Stale values in x_bar / t_bar must be overwritten, param_bar accumulated.
        let mut x2 = vec![123.0; batch * dim];
        let mut t2 = vec![123.0; batch];
        let mut twice = vec![0.0; mlp.num_params()];
        mlp.vjp(&mut cache, &a, &mut x2, &mut twice, None);
        mlp.vjp(&mut cache, &a, &mut x2, &mut twice, Some(&mut t2));

        let doubled: Vec<f64> = once.iter().map(|v| 2.0 * v).collect();
        let scale = doubled.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        assert!(max_abs_diff(&twice, &doubled) <= 1e-13 * scale, "sizes {:?}", mlp.sizes());
        assert_eq!(x1, x2);
        assert_eq!(t1, t2);
        // No parameter slot: the same input and time cotangents, bit for bit.
        let mut x3 = vec![123.0; batch * dim];
        let mut t3 = vec![123.0; batch];
        mlp.vjp(&mut cache, &a, &mut x3, &mut [], Some(&mut t3));
        assert_eq!(x1, x3);
        assert_eq!(t1, t3);
    }
}

#[test]
fn f32_matches_f64() {
    let mut rng = Rng(11);
    for case in cases(5) {
        let m64 = &case.mlp;
        let m32 = FusedMlp::new(m64.sizes().to_vec(), m64.time_input(), m64.params().iter().map(|&v| v as f32).collect());
        let batch = case.batch;
        let to32 = |v: &[f64]| v.iter().map(|&u| u as f32).collect::<Vec<f32>>();
        let up = |v: &[f32]| v.iter().map(|&u| u as f64).collect::<Vec<f64>>();
        // Evaluate f64 on the f32-rounded inputs so only the arithmetic differs.
        let x32 = to32(&case.x);
        let ts32 = to32(&case.ts);
        let x64 = up(&x32);
        let ts64 = up(&ts32);
        let (t32, t64) = match case.kind {
            TimeKind::None => (TimeArg::None, TimeArg::None),
            TimeKind::Shared => (TimeArg::Shared(ts32[0]), TimeArg::Shared(ts64[0])),
            TimeKind::PerSample => (TimeArg::PerSample(&ts32[..]), TimeArg::PerSample(&ts64[..])),
        };
        let params64 = up(&to32(m64.params()));
        let m64 = FusedMlp::new(m64.sizes().to_vec(), m64.time_input(), params64);

        let n = batch * m64.dim_out();
        let (mut y32, mut y64) = (vec![0f32; n], vec![0f64; n]);
        let (mut c32, mut c64) = (MlpCache::new(), MlpCache::new());
        m32.forward_cached(t32, &x32, batch, &mut y32, &mut c32);
        m64.forward_cached(t64, &x64, batch, &mut y64, &mut c64);
        let scale = y64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = max_abs_diff(&up(&y32), &y64) / scale;
        assert!(err <= 1e-5, "sizes {:?}: f32 forward rel err {err:e}", m64.sizes());

        // The f32 VJP should agree to f32 accuracy as well (looser: more roundings).
        let a64 = up(&to32(&rng.vec(n, 1.0)));
        let a32 = to32(&a64);
        let dim = m64.dim_in();
        let (mut xb32, mut xb64) = (vec![0f32; batch * dim], vec![0f64; batch * dim]);
        let (mut pb32, mut pb64) = (vec![0f32; m64.num_params()], vec![0f64; m64.num_params()]);
        m32.vjp(&mut c32, &a32, &mut xb32, &mut pb32, None);
        m64.vjp(&mut c64, &a64, &mut xb64, &mut pb64, None);
        if dim > 0 {
            assert!(rel_l2(&up(&xb32), &xb64) <= 1e-5, "sizes {:?}: f32 x_bar", m64.sizes());
        }
        assert!(rel_l2(&up(&pb32), &pb64) <= 1e-5, "sizes {:?}: f32 param_bar", m64.sizes());
    }
}

#[test]
fn tanh_f64_accuracy() {
    // Against libm's tanh on a 2⁻¹² grid over [−24, 24], at tiny and huge arguments, and
    // at the branch point 2|x| = 1.1: within 4 ulp (relative 4·2⁻⁵², or absolute near 0).
    let mut xs: Vec<f64> = (-(24 << 12)..=(24 << 12)).map(|i| i as f64 / 4096.0).collect();
    xs.extend([1e-300, -1e-300, 5e-324, 1e-8, 0.55, 0.55 - 1e-16, 0.55 + 1e-16, 22.0, 1e5, f64::MAX, -f64::MAX, f64::INFINITY, f64::NEG_INFINITY]);
    let mut ys = xs.clone();
    tanh_f64_slice(&mut ys);
    for (x, y) in xs.iter().zip(&ys) {
        let e = x.tanh();
        assert!((y - e).abs() <= 4.0 * f64::EPSILON * e.abs().max(f64::MIN_POSITIVE), "tanh({x}) = {y}, libm {e}");
    }
    let mut nan = [f64::NAN];
    tanh_f64_slice(&mut nan);
    assert!(nan[0].is_nan());
}

#[test]
fn tanh_f32_accuracy() {
    // Every multiple of 2^-13 in [-20, 20] (exact in f32), compared with
    // f64 tanh of the same f32 input; plus 64 floats either side of the
    // reduction step at ln2/4, the formula switch at 0.55 and the clamp at 9.
    let mut xs: Vec<f32> = (-(20 << 13)..=(20 << 13)).map(|i| i as f32 / 8192.0).collect();
    for c in [std::f32::consts::LN_2 / 4.0, 0.55, 9.0] {
        let mut v = c;
        for _ in 0..64 {
            xs.extend([v, -v]);
            v = f32::from_bits(v.to_bits() - 1);
        }
        let mut v = c;
        for _ in 0..64 {
            xs.extend([v, -v]);
            v = f32::from_bits(v.to_bits() + 1);
        }
    }
    xs.extend([1e-30, 1e-7, 3e-4, 1e3, 1e30, f32::MAX, f32::INFINITY, f32::MIN_POSITIVE]);
    let n = xs.len();
    xs.extend_from_slice(&xs.clone().iter().map(|v| -v).collect::<Vec<_>>());

    let mut ys = xs.clone();
    tanh_f32_slice(&mut ys);
    let mut max_err = 0.0f64;
    for (&x, &y) in xs.iter().zip(&ys) {
        let err = (y as f64 - (x as f64).tanh()).abs();
        max_err = max_err.max(err);
        assert!(y.abs() <= 1.0, "tanh({x}) = {y} outside [-1, 1]");
    }
    assert!(max_err <= 3e-7, "max abs err {max_err:e}");
    // Small arguments are accurate in relative terms too (1 − e is formed
    // without cancellation).
    for &x in &xs[n - 8..n - 5] {
        let mut y = [x];
        tanh_f32_slice(&mut y);
        assert!(((y[0] as f64) / (x as f64).tanh() - 1.0).abs() < 1e-6, "tanh({x})");
    }
    let mut nan = [f32::NAN];
    tanh_f32_slice(&mut nan);
    assert!(nan[0].is_nan());

    // The runtime-dispatched (SIMD) copy, and the AVX2 one where it is not
    // the dispatched one, agree with the portable code.
    let mut portable = xs.clone();
    tanh_f32_slice_generic::<16>(&mut portable);
    let mut copies = vec![ys.clone()];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        let mut v = xs.clone();
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { tanh_f32_slice_avx2(&mut v) };
        copies.push(v);
    }
    for copy in &copies {
        for (&p, &y) in portable.iter().zip(copy) {
            assert!((p - y).abs() <= 1e-6 * p.abs().max(1e-30) || (p.is_nan() && y.is_nan()));
        }
    }
}

#[test]
fn set_params_refreshes_everything() {
    // The kernels read padded copies of W, Wᵀ and b: a stale W or Wᵀ could
    // pass the forward checks but give wrong cotangents, or the reverse.
    let mut rng = Rng(17);
    let sizes = vec![4, 9, 8, 3];
    let mut mlp = FusedMlp::new(sizes.clone(), true, random_params(&mut rng, &sizes));
    let fresh_params = random_params(&mut rng, &sizes);
    mlp.set_params(&fresh_params);
    let fresh = FusedMlp::new(sizes, true, fresh_params);
    let batch = 10;
    let x = rng.vec(batch * 3, 1.0);
    let a = rng.vec(batch * 3, 1.0);
    let ts = rng.vec(batch, 1.0);
    let run = |m: &FusedMlp<f64>| {
        let mut cache = MlpCache::new();
        let mut out = vec![0.0; batch * 3];
        m.forward_cached(TimeArg::PerSample(&ts), &x, batch, &mut out, &mut cache);
        let mut xb = vec![0.0; batch * 3];
        let mut pb = vec![0.0; m.num_params()];
        m.vjp(&mut cache, &a, &mut xb, &mut pb, None);
        (out, xb, pb)
    };
    assert_eq!(run(&mlp), run(&fresh));
}

/// Every kernel set this CPU supports (besides the portable one).
fn simd_isas() -> Vec<Isa> {
    #[allow(unused_mut)]
    let mut isas = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            isas.push(Isa::Avx2);
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            isas.push(Isa::Avx512);
        }
    }
    isas
}

#[test]
fn portable_matches_simd() {
    // The SIMD copies differ from the portable code only by rounding
    // (FMA, summation order); this also runs the portable code on
    // machines that have SIMD, in f32 and f64.
    fn check<R: Real>(case: &Case, a: &[f64], tol: f64) {
        let conv = |v: &[f64]| v.iter().map(|&u| R::from_f64(u)).collect::<Vec<R>>();
        let up = |v: &[R]| v.iter().map(|u| u.to_f64()).collect::<Vec<f64>>();
        let mlp = &case.mlp;
        let m = FusedMlp::new(mlp.sizes().to_vec(), mlp.time_input(), conv(mlp.params()));
        let (x, ts, a) = (conv(&case.x), conv(&case.ts), conv(a));
        let t = match case.kind {
            TimeKind::None => TimeArg::None,
            TimeKind::Shared => TimeArg::Shared(ts[0]),
            TimeKind::PerSample => TimeArg::PerSample(&ts[..]),
        };
        let run = |isa: Isa| {
            let mut cache = MlpCache::new();
            let mut out = vec![R::ZERO; case.batch * mlp.dim_out()];
            m.forward_with(isa, t, &x, case.batch, &mut out, &mut cache);
            let mut xb = vec![R::ZERO; x.len()];
            let mut pb = vec![R::ZERO; m.num_params()];
            let mut tb = vec![R::ZERO; case.batch];
            m.vjp_with(isa, &mut cache, &a, &mut xb, &mut pb, Some(&mut tb));
            [up(&out), up(&xb), up(&pb), up(&tb)]
        };
        let reference = run(Isa::Portable);
        for isa in simd_isas() {
            for (got, want) in run(isa).iter().zip(&reference) {
                if !want.is_empty() && want.iter().any(|&v| v != 0.0) {
                    let e = rel_l2(got, want);
                    assert!(e <= tol, "sizes {:?} {isa:?}: rel err {e:e}", mlp.sizes());
                } else {
                    assert!(got.iter().all(|&v| v == 0.0));
                }
            }
        }
    }
    let mut rng = Rng(23);
    for case in cases(6) {
        let a = rng.vec(case.batch * case.mlp.dim_out(), 1.0);
        check::<f32>(&case, &a, 1e-6);
        check::<f64>(&case, &a, 1e-13);
    }
}

#[test]
fn empty_batch() {
    let mut rng = Rng(19);
    let sizes = vec![3, 6, 6, 2];
    let mlp = FusedMlp::new(sizes.clone(), true, random_params(&mut rng, &sizes));
    let mut cache = MlpCache::new();
    mlp.forward_cached(TimeArg::PerSample(&[]), &[], 0, &mut [], &mut cache);
    let mut p_bar = vec![0.0; mlp.num_params()];
    mlp.vjp(&mut cache, &[], &mut [], &mut p_bar, Some(&mut []));
    assert!(p_bar.iter().all(|&v| v == 0.0));
}

#[test]
fn transpose_matches_definition() {
    for rows in 1..=19 {
        for cols in 1..=19 {
            let src: Vec<f64> = (0..rows * cols).map(|i| i as f64).collect();
            let src32: Vec<f32> = src.iter().map(|&v| v as f32).collect();
            let mut d64 = vec![f64::NAN; rows * cols];
            let mut d32 = vec![f32::NAN; rows * cols];
            <f64 as Real>::transpose(&src, rows, cols, &mut d64);
            <f32 as Real>::transpose(&src32, rows, cols, &mut d32);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(d64[c * rows + r], src[r * cols + c], "f64 {rows}x{cols}");
                    assert_eq!(d32[c * rows + r], src32[r * cols + c], "f32 {rows}x{cols}");
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "sizes [2, 3, 1]")]
fn wrong_param_count_names_sizes() {
    let _ = FusedMlp::<f64>::new(vec![2, 3, 1], false, vec![0.0; 5]);
}

/// `forward_par` on a batch of 2.3 blocks (a partial last block, per-sample times shifted per
/// block) in pools of 2 and 3 threads equals `forward` bit for bit, in f64 and f32; below two
/// blocks it is `forward` itself.
#[test]
fn parallel_blocks_equal_one_pass() {
    let mut rng = Rng(21);
    for (sizes, kind) in configs() {
        let time_input = kind != TimeKind::None;
        let mlp = FusedMlp::new(sizes.clone(), time_input, random_params(&mut rng, &sizes));
        let m32 = FusedMlp::new(sizes, time_input, mlp.params().iter().map(|&v| v as f32).collect());
        let batch = 2 * PAR_BLOCK + PAR_BLOCK / 3 + 1;
        let x = rng.vec(batch * mlp.dim_in(), 1.5);
        let ts = rng.vec(batch, 2.0);
        let (x32, ts32): (Vec<f32>, Vec<f32>) = (x.iter().map(|&v| v as f32).collect(), ts.iter().map(|&v| v as f32).collect());
        fn time_of<R: Copy>(kind: TimeKind, ts: &[R]) -> TimeArg<'_, R> {
            match kind {
                TimeKind::None => TimeArg::None,
                TimeKind::Shared => TimeArg::Shared(ts[0]),
                TimeKind::PerSample => TimeArg::PerSample(ts),
            }
        }
        let time = |ts| time_of(kind, ts);
        let time32 = |ts| time_of(kind, ts);
        let mut one = vec![0.0; batch * mlp.dim_out()];
        mlp.forward(time(&ts), &x, batch, &mut one);
        let mut one32 = vec![0.0f32; batch * mlp.dim_out()];
        m32.forward(time32(&ts32), &x32, batch, &mut one32);
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut par = vec![7.0; batch * mlp.dim_out()];
            let mut par32 = vec![7.0f32; batch * mlp.dim_out()];
            pool.install(|| {
                mlp.forward_par(time(&ts), &x, batch, &mut par);
                m32.forward_par(time32(&ts32), &x32, batch, &mut par32);
            });
            assert_eq!(one, par, "sizes {:?}, {threads} threads", mlp.sizes());
            assert_eq!(one32, par32, "f32 sizes {:?}, {threads} threads", mlp.sizes());
        }
    }
}
