//! Linear layers: ActNorm, fixed permutations and an LU-parametrised invertible linear map.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{check_cotangents, check_input, Flow};
use crate::{Error, Result};

/// ActNorm (Kingma & Dhariwal 2018, "Glow"): `x = z ⊙ exp(s) + b` per coordinate,
/// `log|det| = Σ s`. Parameters `[s (dim), b (dim)]`, zero (identity) when fresh;
/// [`Flow::data_init`] sets them so that samples of `x` map to zero mean and unit variance.
#[derive(Clone, Debug)]
pub struct ActNorm {
    log_scale: Vec<f64>,
    shift: Vec<f64>,
}

impl ActNorm {
    /// The identity on `dim` coordinates.
    pub fn new(dim: usize) -> Self {
        ActNorm { log_scale: vec![0.0; dim], shift: vec![0.0; dim] }
    }
}

impl Flow for ActNorm {
    fn dim(&self) -> usize {
        self.shift.len()
    }

    fn name(&self) -> String {
        "act_norm".into()
    }

    fn num_params(&self) -> usize {
        2 * self.dim()
    }

    fn params(&self) -> Vec<f64> {
        [self.log_scale.as_slice(), &self.shift].concat()
    }

    fn set_params(&mut self, params: &[f64]) -> Result<()> {
        let d = self.dim();
        super::check_params("act_norm", params, 2 * d)?;
        self.log_scale.copy_from_slice(&params[..d]);
        self.shift.copy_from_slice(&params[d..]);
        Ok(())
    }

    fn data_init(&mut self, x: ArrayView2<f64>) -> Result<()> {
        check_input("act_norm init data", x, self.dim())?;
        if x.nrows() < 2 {
            return Err(Error::InvalidArgument { name: "x", reason: "ActNorm's data initialisation needs at least 2 samples".into() });
        }
        let mean = x.mean_axis(Axis(0)).expect("non-empty");
        let std = x.std_axis(Axis(0), 1.0);
        for k in 0..self.dim() {
            self.shift[k] = mean[k];
            self.log_scale[k] = std[k].max(1e-6).ln();
        }
        Ok(())
    }

    fn forward(&self, z: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        check_input("flow input z", z, self.dim())?;
        let mut x = z.to_owned();
        for mut row in x.rows_mut() {
            for k in 0..self.dim() {
                row[k] = row[k] * self.log_scale[k].exp() + self.shift[k];
            }
        }
        let ld = self.log_scale.iter().sum::<f64>();
        Ok((x, Array1::from_elem(z.nrows(), ld)))
    }

    fn inverse(&self, x: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        check_input("flow input x", x, self.dim())?;
        let mut z = x.to_owned();
        for mut row in z.rows_mut() {
            for k in 0..self.dim() {
                row[k] = (row[k] - self.shift[k]) * (-self.log_scale[k]).exp();
            }
        }
        let ld = -self.log_scale.iter().sum::<f64>();
        Ok((z, Array1::from_elem(x.nrows(), ld)))
    }

    fn forward_vjp(&self, z: ArrayView2<f64>, x_bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &mut [f64]) -> Result<Array2<f64>> {
        check_cotangents(z, x_bar, ld_bar, param_bar, self.num_params())?;
        let d = self.dim();
        let ldb = ld_bar.sum();
        let mut z_bar = x_bar.to_owned();
        for k in 0..d {
            let e = self.log_scale[k].exp();
            let (mut gs, mut gb) = (ldb, 0.0);
            for b in 0..z.nrows() {
                gs += x_bar[[b, k]] * z[[b, k]] * e;
                gb += x_bar[[b, k]];
                z_bar[[b, k]] *= e;
            }
            param_bar[k] += gs;
            param_bar[d + k] += gb;
        }
        Ok(z_bar)
    }

    fn inverse_vjp(&self, x: ArrayView2<f64>, z_bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &mut [f64]) -> Result<Array2<f64>> {
        check_cotangents(x, z_bar, ld_bar, param_bar, self.num_params())?;
        let d = self.dim();
        let ldb = ld_bar.sum();
        let mut x_bar = z_bar.to_owned();
        for k in 0..d {
            let e = (-self.log_scale[k]).exp();
            let (mut gs, mut gb) = (-ldb, 0.0);
            for b in 0..x.nrows() {
                let zk = (x[[b, k]] - self.shift[k]) * e;
                gs -= z_bar[[b, k]] * zk;
                gb -= z_bar[[b, k]] * e;
                x_bar[[b, k]] *= e;
            }
            param_bar[k] += gs;
            param_bar[d + k] += gb;
        }
        Ok(x_bar)
    }
}

/// A fixed permutation of the coordinates: `x[:, i] = z[:, perm[i]]`, `log|det| = 0`.
#[derive(Clone, Debug)]
pub struct Permutation {
    perm: Vec<usize>,
}

impl Permutation {
    /// From an explicit permutation of `0..dim`.
    ///
    /// # Errors
    /// `InvalidArgument` if `perm` is not a permutation.
    pub fn new(perm: Vec<usize>) -> Result<Self> {
        let mut seen = vec![false; perm.len()];
        for &p in &perm {
            if p >= perm.len() || seen[p] {
                return Err(Error::InvalidArgument { name: "perm", reason: format!("{perm:?} is not a permutation of 0..{}", perm.len()) });
            }
            seen[p] = true;
        }
        Ok(Permutation { perm })
    }

    /// Reverses the order of the coordinates.
    pub fn reverse(dim: usize) -> Self {
        Permutation { perm: (0..dim).rev().collect() }
    }

    /// A uniformly random permutation from `seed`.
    pub fn random(dim: usize, seed: u64) -> Self {
        Permutation { perm: Self::random_order(dim, seed) }
    }

    /// The shuffled order `[dim]` that [`Self::random`] uses.
    pub(crate) fn random_order(dim: usize, seed: u64) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..dim).collect();
        perm.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        perm
    }

    fn apply(&self, z: ArrayView2<f64>) -> Array2<f64> {
        Array2::from_shape_fn(z.dim(), |(b, i)| z[[b, self.perm[i]]])
    }

    fn apply_inverse(&self, x: ArrayView2<f64>) -> Array2<f64> {
        let mut z = Array2::zeros(x.dim());
        for (i, &p) in self.perm.iter().enumerate() {
            z.column_mut(p).assign(&x.column(i));
        }
        z
    }
}

impl Flow for Permutation {
    fn dim(&self) -> usize {
        self.perm.len()
    }

    fn name(&self) -> String {
        format!("permutation({:?})", self.perm)
    }

    fn forward(&self, z: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        check_input("flow input z", z, self.dim())?;
        Ok((self.apply(z), Array1::zeros(z.nrows())))
    }

    fn inverse(&self, x: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        check_input("flow input x", x, self.dim())?;
        Ok((self.apply_inverse(x), Array1::zeros(x.nrows())))
    }

    fn forward_vjp(&self, z: ArrayView2<f64>, x_bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &mut [f64]) -> Result<Array2<f64>> {
        check_cotangents(z, x_bar, ld_bar, param_bar, 0)?;
        Ok(self.apply_inverse(x_bar))
    }

    fn inverse_vjp(&self, x: ArrayView2<f64>, z_bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &mut [f64]) -> Result<Array2<f64>> {
        check_cotangents(x, z_bar, ld_bar, param_bar, 0)?;
        Ok(self.apply(z_bar))
    }
}

/// An invertible linear map with an LU parametrisation (Kingma & Dhariwal 2018, "Glow",
/// §3.2): `x = W z + c` with `W = P L U`, `P` a fixed permutation, `L` unit lower triangular,
/// `U` upper triangular with diagonal `exp(s)`; `log|det W| = Σ s`, and inverting costs two
/// triangular solves.
///
/// Parameters `[L below the diagonal (row-major, d(d−1)/2), U above the diagonal (row-major,
/// d(d−1)/2), s (d), c (d)]`, zero (`W = P`) when fresh.
#[derive(Clone, Debug)]
pub struct LuLinear {
    dim: usize,
    perm: Vec<usize>,
    params: Vec<f64>,
}

impl LuLinear {
    /// A fresh layer (`W = P`, `P` random from `seed`).
    pub fn new(dim: usize, seed: u64) -> Self {
        Self::with_perm(Permutation::random_order(dim, seed))
    }

    /// A fresh layer (`W = P`) with the row order `perm` (a permutation of `0..dim`, as
    /// [`FlowConfig::resolve`](super::FlowConfig) makes).
    pub(crate) fn with_perm(perm: Vec<usize>) -> Self {
        let dim = perm.len();
        LuLinear { dim, perm, params: vec![0.0; dim * (dim - 1) + 2 * dim] }
    }

    /// `(L, U)` as dense `[d, d]` matrices (unit diagonal in `L`, `exp(s)` in `U`).
    fn factors(&self) -> (Array2<f64>, Array2<f64>) {
        let d = self.dim;
        let t = d * (d - 1) / 2;
        let mut l = Array2::eye(d);
        let mut u = Array2::zeros((d, d));
        let (mut il, mut iu) = (0, t);
        for i in 0..d {
            for j in 0..i {
                l[[i, j]] = self.params[il];
                il += 1;
            }
            u[[i, i]] = self.params[2 * t + i].exp();
            for j in i + 1..d {
                u[[i, j]] = self.params[iu];
                iu += 1;
            }
        }
        (l, u)
    }

    fn bias(&self) -> &[f64] {
        &self.params[self.dim * (self.dim - 1) + self.dim..]
    }

    fn log_det(&self) -> f64 {
        let t = self.dim * (self.dim - 1);
        self.params[t..t + self.dim].iter().sum()
    }

    /// `W = P L U` with `W[i, :] = (L U)[perm[i], :]`.
    fn weight(&self, l: &Array2<f64>, u: &Array2<f64>) -> Array2<f64> {
        let a = l.dot(u);
        Array2::from_shape_fn((self.dim, self.dim), |(i, j)| a[[self.perm[i], j]])
    }

    /// Solves `W z = r` for each row `r` of `rhs`.
    fn solve(&self, l: &Array2<f64>, u: &Array2<f64>, rhs: ArrayView2<f64>) -> Array2<f64> {
        let d = self.dim;
        let mut out = Array2::zeros(rhs.dim());
        let mut y = vec![0.0; d];
        for (r, mut o) in rhs.rows().into_iter().zip(out.rows_mut()) {
            // L y = Pᵀ r, with (Pᵀ r)[perm[i]] = r[i].
            for (i, &p) in self.perm.iter().enumerate() {
                y[p] = r[i];
            }
            for i in 0..d {
                let s: f64 = (0..i).map(|j| l[[i, j]] * y[j]).sum();
                y[i] -= s;
            }
            for i in (0..d).rev() {
                let s: f64 = (i + 1..d).map(|j| u[[i, j]] * o[j]).sum();
                o[i] = (y[i] - s) / u[[i, i]];
            }
        }
        out
    }

    /// Solves `Wᵀ v = g` for each row `g`: `Uᵀ w = g`, `Lᵀ y = w`, `v = P y`.
    fn solve_transpose(&self, l: &Array2<f64>, u: &Array2<f64>, rhs: ArrayView2<f64>) -> Array2<f64> {
        let d = self.dim;
        let mut out = Array2::zeros(rhs.dim());
        let mut w = vec![0.0; d];
        for (g, mut o) in rhs.rows().into_iter().zip(out.rows_mut()) {
            for i in 0..d {
                let s: f64 = (0..i).map(|j| u[[j, i]] * w[j]).sum();
                w[i] = (g[i] - s) / u[[i, i]];
            }
            for i in (0..d).rev() {
                let s: f64 = (i + 1..d).map(|j| l[[j, i]] * w[j]).sum();
                w[i] -= s;
            }
            for (i, &p) in self.perm.iter().enumerate() {
                o[i] = w[p];
            }
        }
        out
    }

    /// Accumulates the parameter cotangent from `W_bar` (`[d, d]`), the bias cotangent and the
    /// `Σ s` cotangent: with `A = L U` and `A_bar = Pᵀ W_bar`, `L_bar = A_bar Uᵀ` (below the
    /// diagonal), `U_bar = Lᵀ A_bar` (on and above), `s_bar = diag(U_bar) ⊙ exp(s)`.
    fn param_vjp(&self, l: &Array2<f64>, u: &Array2<f64>, w_bar: &Array2<f64>, c_bar: ArrayView1<f64>, logdet_bar: f64, param_bar: &mut [f64]) {
        let d = self.dim;
        let t = d * (d - 1) / 2;
        let mut a_bar = Array2::zeros((d, d));
        for i in 0..d {
            a_bar.row_mut(self.perm[i]).assign(&w_bar.row(i));
        }
        let l_bar = a_bar.dot(&u.t());
        let u_bar = l.t().dot(&a_bar);
        let (mut il, mut iu) = (0, t);
        for i in 0..d {
            for j in 0..i {
                param_bar[il] += l_bar[[i, j]];
                il += 1;
            }
            param_bar[2 * t + i] += u_bar[[i, i]] * u[[i, i]] + logdet_bar;
            for j in i + 1..d {
                param_bar[iu] += u_bar[[i, j]];
                iu += 1;
            }
        }
        for (k, g) in c_bar.iter().enumerate() {
            param_bar[2 * t + d + k] += g;
        }
    }
}

impl Flow for LuLinear {
    fn dim(&self) -> usize {
        self.dim
    }

    fn name(&self) -> String {
        "lu_linear".into()
    }

    fn num_params(&self) -> usize {
        self.params.len()
    }

    fn params(&self) -> Vec<f64> {
        self.params.clone()
    }

    fn set_params(&mut self, params: &[f64]) -> Result<()> {
        super::check_params("lu_linear", params, self.params.len())?;
        self.params.copy_from_slice(params);
        Ok(())
    }

    fn forward(&self, z: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        check_input("flow input z", z, self.dim)?;
        let (l, u) = self.factors();
        let w = self.weight(&l, &u);
        let mut x = z.dot(&w.t());
        let c = ArrayView1::from(self.bias());
        x.rows_mut().into_iter().for_each(|mut r| r += &c);
        Ok((x, Array1::from_elem(z.nrows(), self.log_det())))
    }

    fn inverse(&self, x: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        check_input("flow input x", x, self.dim)?;
        let (l, u) = self.factors();
        let r = &x - &ArrayView1::from(self.bias());
        Ok((self.solve(&l, &u, r.view()), Array1::from_elem(x.nrows(), -self.log_det())))
    }

    fn forward_vjp(&self, z: ArrayView2<f64>, x_bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &mut [f64]) -> Result<Array2<f64>> {
        check_cotangents(z, x_bar, ld_bar, param_bar, self.num_params())?;
        let (l, u) = self.factors();
        let w = self.weight(&l, &u);
        // x = W z + c: z_bar = x_bar W, W_bar = Σ_b x_bar_b z_bᵀ, c_bar = Σ_b x_bar_b.
        let w_bar = x_bar.t().dot(&z);
        self.param_vjp(&l, &u, &w_bar, x_bar.sum_axis(Axis(0)).view(), ld_bar.sum(), param_bar);
        Ok(x_bar.dot(&w))
    }

    fn inverse_vjp(&self, x: ArrayView2<f64>, z_bar: ArrayView2<f64>, ld_bar: ArrayView1<f64>, param_bar: &mut [f64]) -> Result<Array2<f64>> {
        check_cotangents(x, z_bar, ld_bar, param_bar, self.num_params())?;
        let (l, u) = self.factors();
        let r = &x - &ArrayView1::from(self.bias());
        let z = self.solve(&l, &u, r.view());
        // z = W⁻¹ (x − c): x_bar = W⁻ᵀ z_bar, W_bar = −Σ_b x_bar_b z_bᵀ, c_bar = −Σ_b x_bar_b.
        let x_bar = self.solve_transpose(&l, &u, z_bar);
        let w_bar = -x_bar.t().dot(&z);
        let c_bar = -x_bar.sum_axis(Axis(0));
        self.param_vjp(&l, &u, &w_bar, c_bar.view(), -ld_bar.sum(), param_bar);
        Ok(x_bar)
    }
}
