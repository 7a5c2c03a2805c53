//! Reference samplers of our own, so that training and reference data need no download:
//! the Metropolis-adjusted Langevin algorithm (MALA) and random-walk Metropolis–Hastings for
//! `p(x) ∝ exp(−β u(x))`. All chains advance together as one batch (one energy call per step).

use ndarray::{Array1, Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::energy::Energy;
use crate::{Error, Result};

/// Settings of [`mala`] and [`metropolis`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MalaConfig {
    /// Parallel chains.
    pub chains: usize,
    /// Steps discarded at the start (the step size adapts during them).
    pub burn_in: usize,
    /// Samples kept per chain.
    pub samples: usize,
    /// Steps between kept samples.
    pub thin: usize,
    /// Initial step size `h` (MALA: `x' = x + h β f + √(2h) ξ`; Metropolis: proposal s.d.).
    pub step_size: f64,
    /// Adapt the step size during burn-in toward the optimal acceptance rate (0.574 for MALA,
    /// Roberts & Rosenthal 1998; 0.234 for random-walk Metropolis, Roberts et al. 1997).
    pub adapt: bool,
    /// Inverse temperature β.
    pub beta: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for MalaConfig {
    fn default() -> Self {
        MalaConfig { chains: 64, burn_in: 1000, samples: 1000, thin: 1, step_size: 0.01, adapt: true, beta: 1.0, seed: 0 }
    }
}

/// Samples of a chain ensemble.
#[derive(Clone, Debug)]
pub struct McmcSamples {
    /// `[samples · chains, dim]`, draw-major: rows `k·chains .. (k+1)·chains` are draw `k` of
    /// every chain.
    pub samples: Array2<f64>,
    /// `u` of each sample, `[samples · chains]`.
    pub energies: Array1<f64>,
    /// Acceptance rate after burn-in.
    pub acceptance: f64,
    /// The step size in force after burn-in.
    pub step_size: f64,
}

impl McmcSamples {
    /// Writes the samples as reference data, atomically, to an HDF5 file that h5py reads:
    /// datasets `samples` `[samples · chains, dim]` (draw-major, as here) and `energies`
    /// `[samples · chains]`; root attributes naming the energy (`energy`, its
    /// [`Energy::name`], which fixes its conventions, e.g. `lj13` counts each pair once),
    /// `dim`, `n_particles` and `spatial_dim` where it is a particle system, `sampler`
    /// (`"mala"` or `"metropolis"`), every field of `cfg` (`samples` as
    /// `samples_per_chain`, `step_size` as `step_size_initial`), and the run's `acceptance`
    /// and final `step_size`.
    ///
    /// # Errors
    /// `Shape` if the samples do not fit `energy` or `cfg`; I/O errors.
    pub fn write_h5(&self, path: &std::path::Path, energy: &dyn Energy, sampler: &str, cfg: &MalaConfig) -> Result<()> {
        use crate::io::h5::{Attr, DatasetOptions, H5Tree};
        let (rows, dim) = self.samples.dim();
        if dim != energy.dim() || rows != self.energies.len() || rows != cfg.chains * cfg.samples {
            return Err(Error::Shape {
                what: "reference samples (rows = chains · samples, dim of the energy)".into(),
                expected: vec![cfg.chains * cfg.samples, energy.dim()],
                got: vec![rows, dim],
            });
        }
        let mut tree = H5Tree::new();
        let opts = DatasetOptions::default();
        tree.add_f64("samples", &[rows, dim], self.samples.iter().copied().collect(), &opts)?;
        tree.add_f64("energies", &[rows], self.energies.to_vec(), &opts)?;
        let mut attrs = vec![
            ("energy", Attr::Str(energy.name())),
            ("dim", Attr::Int(dim as i64)),
            ("sampler", Attr::Str(sampler.into())),
            ("layout", Attr::Str("draw-major: rows k·chains .. (k+1)·chains are draw k of every chain".into())),
            ("beta", Attr::Float(cfg.beta)),
            ("chains", Attr::Int(cfg.chains as i64)),
            ("burn_in", Attr::Int(cfg.burn_in as i64)),
            ("samples_per_chain", Attr::Int(cfg.samples as i64)),
            ("thin", Attr::Int(cfg.thin as i64)),
            ("step_size_initial", Attr::Float(cfg.step_size)),
            ("adapt", Attr::Int(cfg.adapt as i64)),
            // HDF5 has no unsigned 64-bit attribute here: the seed's bits, as i64.
            ("seed", Attr::Int(cfg.seed as i64)),
            ("acceptance", Attr::Float(self.acceptance)),
            ("step_size", Attr::Float(self.step_size)),
        ];
        if let Some((n, d)) = energy.particles() {
            attrs.push(("n_particles", Attr::Int(n as i64)));
            attrs.push(("spatial_dim", Attr::Int(d as i64)));
        }
        for (k, v) in attrs {
            tree.set_attr("/", k, v)?;
        }
        tree.write(path)
    }

    /// Reads a file written by [`McmcSamples::write_h5`] and checks it against `energy`:
    /// returns the samples, the sampler's name and its settings.
    ///
    /// # Errors
    /// `Format` if an attribute is missing or the file was made for another energy; `Shape`
    /// if the datasets do not fit each other or the energy's dimension; I/O errors.
    pub fn read_h5(path: &std::path::Path, energy: &dyn Energy) -> Result<(McmcSamples, String, MalaConfig)> {
        use crate::io::h5::H5File;
        let f = H5File::open(path)?;
        let bad = |reason: String| Error::Format { path: path.display().to_string(), reason };
        let attrs = f.attrs("/")?;
        let num = |k: &str| attrs.get(k).and_then(|a| a.as_f64()).ok_or_else(|| bad(format!("attribute `{k}` is missing or not a number")));
        let text = |k: &str| attrs.get(k).and_then(|a| a.as_str().map(str::to_owned)).ok_or_else(|| bad(format!("attribute `{k}` is missing or not a string")));
        let name = text("energy")?;
        if name != energy.name() {
            return Err(bad(format!("reference samples of `{name}`, not of `{}`", energy.name())));
        }
        let count = |k: &str| -> Result<usize> {
            let v = num(k)?;
            if v >= 0.0 && v.fract() == 0.0 {
                Ok(v as usize)
            } else {
                Err(bad(format!("attribute `{k}` = {v} is not a count")))
            }
        };
        let cfg = MalaConfig {
            chains: count("chains")?,
            burn_in: count("burn_in")?,
            samples: count("samples_per_chain")?,
            thin: count("thin")?,
            step_size: num("step_size_initial")?,
            adapt: num("adapt")? != 0.0,
            beta: num("beta")?,
            seed: num("seed").map(|v| v as i64 as u64)?,
        };
        let (shape, data) = f.read_f64("samples")?;
        let (eshape, energies) = f.read_f64("energies")?;
        let rows = cfg.chains * cfg.samples;
        if shape != [rows, energy.dim()] {
            return Err(Error::Shape { what: format!("`samples` in {}", path.display()), expected: vec![rows, energy.dim()], got: shape });
        }
        if eshape != [rows] {
            return Err(Error::Shape { what: format!("`energies` in {}", path.display()), expected: vec![rows], got: eshape });
        }
        let samples = Array2::from_shape_vec((rows, energy.dim()), data).map_err(|e| bad(e.to_string()))?;
        Ok((McmcSamples { samples, energies: Array1::from(energies), acceptance: num("acceptance")?, step_size: num("step_size")? }, text("sampler")?, cfg))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Mala,
    Metropolis,
}

/// MALA (Roberts & Tweedie 1996): propose `x' = x + h β f(x) + √(2h) ξ` and accept with
/// probability `min(1, p(x') k(x | x') / (p(x) k(x' | x)))`, `k` the Gaussian proposal density.
/// Chains start at the rows of `x0: [chains, dim]`.
///
/// # Errors
/// `InvalidArgument` for zero chains / samples / thin or a bad step size; `Shape` for a wrong
/// width; `NonFinite` if a starting energy is not finite (naming the chain).
pub fn mala(energy: &dyn Energy, x0: ArrayView2<f64>, cfg: &MalaConfig) -> Result<McmcSamples> {
    run(energy, x0, cfg, Kind::Mala)
}

/// Random-walk Metropolis–Hastings with a Gaussian proposal of s.d. `step_size`.
///
/// # Errors
/// As [`mala`].
pub fn metropolis(energy: &dyn Energy, x0: ArrayView2<f64>, cfg: &MalaConfig) -> Result<McmcSamples> {
    run(energy, x0, cfg, Kind::Metropolis)
}

fn run(energy: &dyn Energy, x0: ArrayView2<f64>, cfg: &MalaConfig, kind: Kind) -> Result<McmcSamples> {
    if cfg.chains == 0 || cfg.samples == 0 || cfg.thin == 0 || !(cfg.step_size > 0.0) || !(cfg.beta > 0.0) {
        return Err(Error::InvalidArgument { name: "mcmc", reason: format!("chains, samples and thin must be ≥ 1, step_size and beta > 0: {cfg:?}") });
    }
    let (c, d) = (cfg.chains, energy.dim());
    if x0.dim() != (c, d) {
        return Err(Error::Shape { what: "MCMC start".into(), expected: vec![c, d], got: vec![x0.nrows(), x0.ncols()] });
    }
    let beta = cfg.beta;
    let mut x = x0.to_owned();
    let (mut u, mut f) = crate::energy::evaluate(energy, x.view())?;
    if let Some(i) = u.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFiniteInput { what: "MCMC starting energy (index = chain)", index: i });
    }
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut h = cfg.step_size;
    let target = if kind == Kind::Mala { 0.574 } else { 0.234 };
    let total = cfg.burn_in + cfg.samples * cfg.thin;
    let mut samples = Array2::zeros((cfg.samples * c, d));
    let mut energies = Array1::zeros(cfg.samples * c);
    let (mut acc, mut tried) = (0usize, 0usize);
    let mut xp = Array2::zeros((c, d));
    for step in 0..total {
        let noise: Array2<f64> = Array2::from_shape_simple_fn((c, d), || StandardNormal.sample(&mut rng));
        match kind {
            Kind::Mala => xp.assign(&(&x + &(h * beta * &f) + &((2.0 * h).sqrt() * &noise))),
            Kind::Metropolis => xp.assign(&(&x + &(h * &noise))),
        }
        let (up, fp) = crate::energy::evaluate(energy, xp.view())?;
        let mut accepted = 0usize;
        for i in 0..c {
            let mut log_a = -beta * (up[i] - u[i]);
            if kind == Kind::Mala {
                // log k(x | x') − log k(x' | x) with k(b | a) ∝ exp(−|b − a − hβ f(a)|² / 4h).
                let (mut fwd, mut rev) = (0.0, 0.0);
                for k in 0..d {
                    let a = xp[[i, k]] - x[[i, k]] - h * beta * f[[i, k]];
                    let b = x[[i, k]] - xp[[i, k]] - h * beta * fp[[i, k]];
                    fwd += a * a;
                    rev += b * b;
                }
                log_a += (fwd - rev) / (4.0 * h);
            }
            if up[i].is_finite() && rng.random::<f64>().ln() < log_a {
                x.row_mut(i).assign(&xp.row(i));
                f.row_mut(i).assign(&fp.row(i));
                u[i] = up[i];
                accepted += 1;
            }
        }
        if step < cfg.burn_in {
            if cfg.adapt {
                // Robbins–Monro on log h with a decaying gain.
                let rate = accepted as f64 / c as f64;
                h *= ((rate - target) / (1.0 + step as f64).powf(0.6) * 2.0).exp();
            }
        } else {
            acc += accepted;
            tried += c;
            let k = step - cfg.burn_in;
            if (k + 1).is_multiple_of(cfg.thin) {
                let draw = k / cfg.thin;
                samples.slice_mut(ndarray::s![draw * c..(draw + 1) * c, ..]).assign(&x);
                energies.slice_mut(ndarray::s![draw * c..(draw + 1) * c]).assign(&u);
            }
        }
    }
    Ok(McmcSamples { samples, energies, acceptance: acc as f64 / tried.max(1) as f64, step_size: h })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::DoubleWell2D;
    use ndarray::Array2;

    /// `u = ½ |x|² / σ²`: p = N(0, σ² I).
    struct Gauss(f64);
    impl Energy for Gauss {
        fn dim(&self) -> usize {
            2
        }
        fn energy(&self, x: ArrayView2<f64>) -> Array1<f64> {
            x.rows().into_iter().map(|r| 0.5 * r.dot(&r) / (self.0 * self.0)).collect()
        }
        fn energy_and_force(&self, x: ArrayView2<f64>) -> (Array1<f64>, Array2<f64>) {
            (self.energy(x), -x.to_owned() / (self.0 * self.0))
        }
        fn name(&self) -> String {
            "gauss".into()
        }
    }

    /// Mean and standard error of `g` over samples, the SE from chain means (the chains are
    /// independent, so the spread of their means carries all autocorrelation).
    fn chain_mean(s: &McmcSamples, chains: usize, g: impl Fn(&[f64]) -> f64) -> (f64, f64) {
        let draws = s.samples.nrows() / chains;
        let means: Vec<f64> =
            (0..chains).map(|c| (0..draws).map(|k| g(s.samples.row(k * chains + c).as_slice().unwrap())).sum::<f64>() / draws as f64).collect();
        let m = means.iter().sum::<f64>() / chains as f64;
        let var = means.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (chains - 1) as f64;
        (m, (var / chains as f64).sqrt())
    }

    #[test]
    fn samplers_reproduce_gaussian_moments() {
        for kind in [Kind::Mala, Kind::Metropolis] {
            let cfg = MalaConfig { chains: 64, burn_in: 500, samples: 400, thin: 2, step_size: 0.1, ..MalaConfig::default() };
            let x0 = Array2::from_elem((64, 2), 1.0);
            let s = run(&Gauss(1.5), x0.view(), &cfg, kind).unwrap();
            assert!(s.acceptance > 0.1 && s.acceptance < 0.95, "acceptance {}", s.acceptance);
            let (m, se) = chain_mean(&s, 64, |x| x[0]);
            assert!(m.abs() < 4.0 * se, "mean {m} ± {se}");
            let (v, se) = chain_mean(&s, 64, |x| x[1] * x[1]);
            assert!((v - 2.25).abs() < 4.0 * se, "E[x²] {v} ± {se} vs 2.25");
        }
    }

    #[test]
    fn mala_matches_double_well_quadrature() {
        // x₁ separates; the x₀ factor exp(−β(x⁴ − 4x²)) is symmetric, so P(x₀ > 0) = ½, and
        // E[x₀²] = ∫ x² e^{−u₀} / ∫ e^{−u₀} by a trapezoid on [−4, 4] with 40 001 points.
        let u0 = |x: f64| x.powi(4) - 4.0 * x * x;
        let n = 40_001;
        let h = 8.0 / (n - 1) as f64;
        let (mut z, mut m2) = (0.0, 0.0);
        for i in 0..n {
            let x = -4.0 + h * i as f64;
            let w = if i == 0 || i == n - 1 { 0.5 } else { 1.0 } * (-u0(x)).exp();
            z += w;
            m2 += w * x * x;
        }
        let exact_m2 = m2 / z;
        let cfg = MalaConfig { chains: 128, burn_in: 1000, samples: 300, thin: 5, step_size: 0.05, seed: 3, ..MalaConfig::default() };
        let x0 = Array2::from_shape_fn((128, 2), |(i, k)| {
            if k == 0 {
                if i % 2 == 0 {
                    1.4
                } else {
                    -1.4
                }
            } else {
                0.0
            }
        });
        let s = mala(&DoubleWell2D::default(), x0.view(), &cfg).unwrap();
        let (m, se) = chain_mean(&s, 128, |x| x[0] * x[0]);
        assert!((m - exact_m2).abs() < 4.0 * se, "E[x₀²] {m} ± {se} vs {exact_m2}");
        let (p, se) = chain_mean(&s, 128, |x| (x[0] > 0.0) as u8 as f64);
        assert!((p - 0.5).abs() < 4.0 * se, "P(x₀ > 0) {p} ± {se}");
        // Bad input.
        assert!(matches!(mala(&DoubleWell2D::default(), Array2::zeros((3, 2)).view(), &cfg), Err(Error::Shape { .. })));
        let nan = Array2::from_elem((128, 2), f64::NAN);
        assert!(matches!(mala(&DoubleWell2D::default(), nan.view(), &cfg), Err(Error::NonFiniteInput { index: 0, .. })));
    }

    /// Reference data round-trips through HDF5 bit for bit with its settings, and a file is
    /// refused for another energy or with inconsistent shapes.
    #[test]
    fn reference_samples_round_trip_through_hdf5() {
        let cfg = MalaConfig { chains: 8, burn_in: 20, samples: 5, thin: 2, step_size: 0.05, seed: u64::MAX - 7, ..MalaConfig::default() };
        let s = mala(&DoubleWell2D::default(), Array2::from_elem((8, 2), 0.5).view(), &cfg).unwrap();
        let dir = std::env::temp_dir().join(format!("physflow-mcmc-h5-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ref.h5");
        s.write_h5(&path, &DoubleWell2D::default(), "mala", &cfg).unwrap();
        let (r, sampler, rcfg) = McmcSamples::read_h5(&path, &DoubleWell2D::default()).unwrap();
        assert_eq!(sampler, "mala");
        assert_eq!(rcfg, cfg);
        assert_eq!(r.samples, s.samples);
        assert_eq!(r.energies, s.energies);
        assert_eq!((r.acceptance, r.step_size), (s.acceptance, s.step_size));
        // Another energy's file.
        assert!(matches!(McmcSamples::read_h5(&path, &Gauss(1.0)), Err(Error::Format { .. })));
        // Settings that do not fit the samples.
        let wrong = MalaConfig { chains: 9, ..cfg.clone() };
        assert!(matches!(s.write_h5(&path, &DoubleWell2D::default(), "mala", &wrong), Err(Error::Shape { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
