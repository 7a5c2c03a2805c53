//! The coupling flows of [`FlowConfig`] as one burn module, on any device and in any float
//! dtype: the same layers, parameters and numbers as the CPU [`super::Sequential`], with
//! gradients by burn's autodiff instead of the hand-written VJPs.
//!
//! The CPU `Sequential` (f64, fused conditioners, hand VJPs) stays the fast path on the CPU
//! and the f64 path for sampling and reweighting; [`FlowModule`] is what trains on a GPU. Both
//! are built from one `FlowConfig::resolve` and share one flat parameter layout, so a
//! checkpoint of either loads into the other ([`FlowModule::new`], [`FlowModule::flat_params`]).
//!
//! Tensor forms of the layers (`B` batch rows, `d` coordinates):
//! * coupling: the conditioner [`Mlp`] (the one MLP of [`crate::nn`], fused layout) reads
//!   `x.select(1, cond)`; the transformed columns are mapped and the columns put back in order
//!   by one `select` with the inverse of `cond ++ trans`.
//! * rational-quadratic spline (Durkan et al. 2019): knots by `softmax` and `cumsum`, the bin
//!   by counting knots `≤ v` (the CPU binary search, vectorised), the bin data by `gather`;
//!   identity tails by `mask_where`.
//! * LU linear: `W = P L U` assembled by `select` from the flat vector; the inverse
//!   `W⁻¹ = U⁻¹ L⁻¹ Pᵀ` without triangular solves (burn has none): for a unit triangular
//!   `T = I − M` with `M` nilpotent, `T⁻¹ = Π_{j < ⌈log₂ d⌉} (I + M^{2^j})`, which is the finite
//!   Neumann series `Σ_{k<d} M^k` in `⌈log₂ d⌉` pairs of matrix products.

use burn::module::{Module, Param};
use burn::tensor::activation::{softmax, softplus_with_threshold};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use super::sequential::LayerSpec;
use super::spline::{MIN_BIN_HEIGHT, MIN_BIN_WIDTH, MIN_DERIVATIVE};
use super::FlowConfig;
use crate::host::ToHost;
use crate::nn::{Mlp, MlpConfig};
use crate::{Error, Result};

/// How a layer acts; the indices are fixed at construction.
#[derive(Clone, Debug)]
enum LayerKind {
    Affine { cond: Vec<usize>, trans: Vec<usize>, scale_bound: f64 },
    Spline { cond: Vec<usize>, trans: Vec<usize>, bins: usize, bound: f64 },
    ActNorm,
    LuLinear { perm: Vec<usize> },
    Permutation { perm: Vec<usize> },
}

/// One layer: the conditioner network of a coupling, or the flat parameters of an ActNorm /
/// LU layer (`[2d]` and `[d(d−1) + 2d]`, the CPU layouts).
#[derive(Module, Debug)]
struct FlowLayer {
    net: Option<Mlp>,
    params: Option<Param<Tensor<1>>>,
    #[module(skip)]
    kind: LayerKind,
}

/// A [`FlowConfig`] flow as a burn module: `x = f(z)` and `z = f⁻¹(x)` with their
/// log-determinants on `[batch, dim]` tensors of any device.
#[derive(Module, Debug)]
pub struct FlowModule {
    layers: Vec<FlowLayer>,
    #[module(skip)]
    dim: usize,
}

/// `Tensor<1, Int>` of indices on the device of `like`.
fn index(ix: &[usize], like: &Tensor<2>) -> Tensor<1, Int> {
    let v: Vec<i64> = ix.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(v, [ix.len()]), &like.device())
}

/// `p` with `p[q[i]] = i`.
fn inverse_perm(q: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; q.len()];
    for (i, &j) in q.iter().enumerate() {
        inv[j] = i;
    }
    inv
}

impl FlowModule {
    /// The flow of `config` on `dim` coordinates, built with `seed` (which fixes masks and
    /// permutations, as [`FlowConfig::build`]), with parameters from `params` (the flat layout
    /// of [`super::Flow::params`] of the built `Sequential`), in `dtype` on `device`.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad configuration; `Shape` for a parameter vector of the wrong
    /// length.
    pub fn new(config: &FlowConfig, dim: usize, seed: u64, params: &[f64], device: &Device, dtype: DType) -> Result<Self> {
        let specs = config.resolve(dim, seed)?;
        let vec1 = |p: &[f64]| Param::from_tensor(Tensor::<1>::from_data(TensorData::new(p.to_vec(), [p.len()]).convert_dtype(dtype), (device, dtype)));
        let mut layers = Vec::with_capacity(specs.len());
        let mut off = 0;
        let mut take = |n: usize| -> Result<&[f64]> {
            let s =
                params.get(off..off + n).ok_or_else(|| Error::Shape { what: "flow parameters".into(), expected: vec![off + n], got: vec![params.len()] })?;
            off += n;
            Ok(s)
        };
        for (i, spec) in specs.into_iter().enumerate() {
            let layer = match spec {
                LayerSpec::Affine { mask, hidden, scale_bound, .. } => {
                    let cfg = conditioner(mask.cond.len(), &hidden, 2 * mask.trans.len());
                    let net = cfg.from_flat(take(cfg.num_params())?, device, dtype)?;
                    FlowLayer { net: Some(net), params: None, kind: LayerKind::Affine { cond: mask.cond, trans: mask.trans, scale_bound } }
                }
                LayerSpec::Spline { mask, hidden, bins, bound, .. } => {
                    let cfg = conditioner(mask.cond.len(), &hidden, (3 * bins - 1) * mask.trans.len());
                    let net = cfg.from_flat(take(cfg.num_params())?, device, dtype)?;
                    FlowLayer { net: Some(net), params: None, kind: LayerKind::Spline { cond: mask.cond, trans: mask.trans, bins, bound } }
                }
                LayerSpec::ActNorm => FlowLayer { net: None, params: Some(vec1(take(2 * dim)?)), kind: LayerKind::ActNorm },
                LayerSpec::LuLinear { perm } => {
                    FlowLayer { net: None, params: Some(vec1(take(dim * (dim - 1) + 2 * dim)?)), kind: LayerKind::LuLinear { perm } }
                }
                LayerSpec::Permutation { perm } => FlowLayer { net: None, params: None, kind: LayerKind::Permutation { perm } },
                // The blocks evaluate the energy between layers, on the host in f64; the device
                // module has no such layer.
                LayerSpec::Stochastic(_) => {
                    return Err(Error::Unsupported(format!(
                        "layer {i} is a stochastic block: flows with stochastic blocks train on the CPU device (`--device cpu`)"
                    )))
                }
            };
            layers.push(layer);
        }
        if off != params.len() {
            return Err(Error::Shape { what: "flow parameters".into(), expected: vec![off], got: vec![params.len()] });
        }
        Ok(FlowModule { layers, dim })
    }

    /// A module without layers: a placeholder while the optimizer owns the real one.
    pub(crate) fn empty(dim: usize) -> Self {
        FlowModule { layers: Vec::new(), dim }
    }

    /// The dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The parameters in the flat layout of the CPU flow, as f64.
    ///
    /// # Errors
    /// [`Error::Device`] when a parameter cannot be read back.
    pub fn flat_params(&self) -> Result<Vec<f64>> {
        let mut out = Vec::new();
        for l in &self.layers {
            if let Some(net) = &l.net {
                for layer in &net.layers {
                    out.extend(layer.weight.val().host_vec::<f64>()?);
                    if let Some(b) = &layer.bias {
                        out.extend(b.val().host_vec::<f64>()?);
                    }
                }
            }
            if let Some(p) = &l.params {
                out.extend(p.val().host_vec::<f64>()?);
            }
        }
        Ok(out)
    }

    /// The gradients of `grads` in the flat layout of [`Self::flat_params`] (zero for a
    /// parameter without one), as f64: what the device-parity tests compare.
    ///
    /// # Errors
    /// [`Error::Device`] when a gradient cannot be read back.
    pub fn flat_grads(&self, grads: &burn::optim::GradientsParams) -> Result<Vec<f64>> {
        fn one<const D: usize>(grads: &burn::optim::GradientsParams, p: &Param<Tensor<D>>, out: &mut Vec<f64>) -> Result<()> {
            match grads.get::<D>(p.id) {
                Some(g) => out.extend(g.host_vec::<f64>()?),
                None => out.extend(std::iter::repeat_n(0.0, p.val().shape().num_elements())),
            }
            Ok(())
        }
        let mut out = Vec::new();
        for l in &self.layers {
            if let Some(net) = &l.net {
                for layer in &net.layers {
                    one(grads, &layer.weight, &mut out)?;
                    if let Some(b) = &layer.bias {
                        one(grads, b, &mut out)?;
                    }
                }
            }
            if let Some(p) = &l.params {
                one(grads, p, &mut out)?;
            }
        }
        Ok(out)
    }

    fn check(&self, what: &str, x: &Tensor<2>) -> Result<()> {
        let [b, d] = x.dims();
        if d != self.dim {
            return Err(Error::Shape { what: what.into(), expected: vec![b, self.dim], got: vec![b, d] });
        }
        Ok(())
    }

    /// `x = f(z)` and `log|det ∂x/∂z|` for `z: [batch, dim]` → (`[batch, dim]`, `[batch]`).
    ///
    /// # Errors
    /// `Shape` when `z` has another width.
    pub fn forward(&self, z: Tensor<2>) -> Result<(Tensor<2>, Tensor<1>)> {
        self.check("flow input z", &z)?;
        let mut ld = z.zeros_like().sum_dim(1).squeeze_dim::<1>(1);
        let mut cur = z;
        for l in &self.layers {
            let (next, lld) = l.apply(cur, false);
            cur = next;
            ld = ld + lld;
        }
        Ok((cur, ld))
    }

    /// `z = f⁻¹(x)` and `log|det ∂z/∂x|` for `x: [batch, dim]` → (`[batch, dim]`, `[batch]`).
    ///
    /// # Errors
    /// `Shape` when `x` has another width.
    pub fn inverse(&self, x: Tensor<2>) -> Result<(Tensor<2>, Tensor<1>)> {
        self.check("flow input x", &x)?;
        let mut ld = x.zeros_like().sum_dim(1).squeeze_dim::<1>(1);
        let mut cur = x;
        for l in self.layers.iter().rev() {
            let (next, lld) = l.apply(cur, true);
            cur = next;
            ld = ld + lld;
        }
        Ok((cur, ld))
    }
}

fn conditioner(n_in: usize, hidden: &[usize], n_out: usize) -> MlpConfig {
    let mut sizes = vec![n_in];
    sizes.extend(hidden);
    sizes.push(n_out);
    MlpConfig::new(sizes)
}

impl FlowLayer {
    /// The layer forward (`inverse = false`) or inverse on `v: [B, d]`, with the
    /// log-determinant of that direction `[B]`.
    fn apply(&self, v: Tensor<2>, inverse: bool) -> (Tensor<2>, Tensor<1>) {
        let [b, d] = v.dims();
        match &self.kind {
            LayerKind::Affine { cond, trans, scale_bound } | LayerKind::Spline { cond, trans, bound: scale_bound, .. } => {
                let net = self.net.as_ref().expect("couplings have a conditioner");
                let nt = trans.len();
                let cond_ix = index(cond, &v);
                let xa = v.clone().select(1, cond_ix);
                let raw = net.forward_t(&crate::ode::Time::Shared(0.0), xa.clone());
                let vb = v.clone().select(1, index(trans, &v));
                let (yb, ld) = match &self.kind {
                    LayerKind::Affine { .. } => {
                        // `mul_scalar(1/s)`, not `div_scalar(s)`: burn 0.22's autodiff
                        // differentiates `div_scalar` with the scalar rounded to f32 (a 1e-8
                        // relative error in f64 gradients).
                        let s = raw.clone().narrow(1, 0, nt).mul_scalar(1.0 / *scale_bound).tanh().mul_scalar(*scale_bound);
                        let t = raw.narrow(1, nt, nt);
                        let ld = s.clone().sum_dim(1).squeeze_dim::<1>(1);
                        if inverse {
                            ((vb - t) * s.neg().exp(), ld.neg())
                        } else {
                            (vb * s.exp() + t, ld)
                        }
                    }
                    LayerKind::Spline { bins, bound, .. } => {
                        let raw = raw.reshape([b, nt, 3 * bins - 1]);
                        let (y, ld) = spline(vb.reshape([b, nt, 1]), raw, *bins, *bound, inverse);
                        (y.reshape([b, nt]), ld.sum_dim(1).reshape([b]))
                    }
                    _ => unreachable!(),
                };
                let order: Vec<usize> = cond.iter().chain(trans).copied().collect();
                let out = Tensor::cat(vec![xa, yb], 1).select(1, index(&inverse_perm(&order), &v));
                (out, ld)
            }
            LayerKind::ActNorm => {
                let p = self.params.as_ref().expect("ActNorm has parameters").val();
                let ls = p.clone().narrow(0, 0, d).reshape([1, d]);
                let shift = p.narrow(0, d, d).reshape([1, d]);
                let ld = ls.clone().sum_dim(1).reshape([1]).expand([b]);
                if inverse {
                    ((v - shift) * ls.neg().exp(), ld.neg())
                } else {
                    (v * ls.exp() + shift, ld)
                }
            }
            LayerKind::LuLinear { perm } => {
                let p = self.params.as_ref().expect("LU layers have parameters").val();
                let (l_inv_or_l, u_or_u_inv, s) = lu_factors(&p, d, inverse);
                let c = p.narrow(0, d * (d - 1) + d, d).reshape([1, d]);
                let ld = s.sum().reshape([1]).expand([b]);
                if inverse {
                    // z = W⁻¹ (x − c) row-wise: y = Pᵀ r, z = y (U⁻¹ L⁻¹)ᵀ.
                    let (l_inv, u_inv) = (l_inv_or_l, u_or_u_inv);
                    let r = v - c;
                    let y = r.clone().select(1, index(&inverse_perm(perm), &r));
                    (y.matmul(u_inv.matmul(l_inv).transpose()), ld.neg())
                } else {
                    // x = z Wᵀ + c with W = P (L U): row i of W is row perm[i] of L U.
                    let (l, u) = (l_inv_or_l, u_or_u_inv);
                    let w = l.matmul(u);
                    let w = w.clone().select(0, index(perm, &w));
                    (v.matmul(w.transpose()) + c, ld)
                }
            }
            LayerKind::Permutation { perm } => {
                let zero = v.zeros_like().sum_dim(1).reshape([b]);
                let idx = if inverse { inverse_perm(perm) } else { perm.clone() };
                (v.clone().select(1, index(&idx, &v)), zero)
            }
        }
    }
}

/// `(L, U, s)` of an LU layer's flat parameters `p` (`[d(d−1) + 2d]`, see
/// [`super::LuLinear`]), or `(L⁻¹, U⁻¹, s)` when `inverse`.
fn lu_factors(p: &Tensor<1>, d: usize, inverse: bool) -> (Tensor<2>, Tensor<2>, Tensor<1>) {
    let t = d * (d - 1) / 2;
    let s = p.clone().narrow(0, 2 * t, d);
    // Gather the strictly triangular parts from [params …, 0]: index 2t+… would be s, so the
    // zero slot is appended and every other entry points at it.
    let ext = Tensor::cat(vec![p.clone().narrow(0, 0, 2 * t), p.zeros_like().narrow(0, 0, 1)], 0);
    let (mut li, mut ui) = (vec![2 * t; d * d], vec![2 * t; d * d]);
    let (mut il, mut iu) = (0, t);
    for i in 0..d {
        for j in 0..i {
            li[i * d + j] = il;
            il += 1;
        }
        for j in i + 1..d {
            ui[i * d + j] = iu;
            iu += 1;
        }
    }
    let gather = |ix: &[usize]| -> Tensor<2> {
        let v: Vec<i64> = ix.iter().map(|&i| i as i64).collect();
        ext.clone().select(0, Tensor::<1, Int>::from_data(TensorData::new(v, [d * d]), &p.device())).reshape([d, d])
    };
    let (n_l, n_u) = (gather(&li), gather(&ui));
    let eye = Tensor::<2>::from_data(
        TensorData::new((0..d * d).map(|k| f64::from(u8::from(k % (d + 1) == 0))).collect::<Vec<_>>(), [d, d]),
        (&p.device(), p.dtype()),
    );
    let diag = s.clone().exp().reshape([1, d]);
    if !inverse {
        let l = eye.clone() + n_l;
        let u = eye * diag + n_u;
        return (l, u, s);
    }
    // L = I + N_L: L⁻¹ = unit_inverse(−N_L). U = (I + N_U D⁻¹) D: U⁻¹ = D⁻¹ (I + N_U D⁻¹)⁻¹.
    let l_inv = unit_inverse(n_l.neg(), &eye, d);
    let inv_diag = s.clone().neg().exp().reshape([1, d]);
    let m = (n_u * inv_diag.clone()).neg();
    let u_inv = unit_inverse(m, &eye, d) * inv_diag.reshape([d, 1]);
    (l_inv, u_inv, s)
}

/// `(I − M)⁻¹ = Σ_{k<d} M^k = Π_{j<⌈log₂ d⌉} (I + M^{2^j})` for nilpotent `M` (`M^d = 0`).
fn unit_inverse(m: Tensor<2>, eye: &Tensor<2>, d: usize) -> Tensor<2> {
    let mut acc = eye.clone() + m.clone();
    let mut pow = m;
    let mut covered = 2; // acc = Σ_{k < covered} M^k
    while covered < d {
        pow = pow.clone().matmul(pow);
        acc = acc.clone() + acc.matmul(pow.clone());
        covered *= 2;
    }
    acc
}

/// The rational-quadratic spline with identity tails (as [`super::spline::forward`] /
/// [`super::spline::inverse`]) on `v: [B, n, 1]` with raw parameters `raw: [B, n, 3K − 1]`:
/// the mapped values `[B, n, 1]` and log-derivatives `[B, n, 1]` of the chosen direction.
fn spline(v: Tensor<3>, raw: Tensor<3>, bins: usize, bound: f64, inverse: bool) -> (Tensor<3>, Tensor<3>) {
    let k = bins;
    let [bsz, n, _] = v.dims();
    let knots = |r: Tensor<3>, min: f64| -> Tensor<3> {
        let w = softmax(r, 2).mul_scalar(1.0 - min * k as f64).add_scalar(min);
        let inner = w.narrow(2, 0, k - 1).cumsum(2).mul_scalar(2.0 * bound).sub_scalar(bound);
        let lo = inner.zeros_like().narrow(2, 0, 1).sub_scalar(bound);
        let hi = lo.clone().neg();
        Tensor::cat(vec![lo, inner, hi], 2)
    };
    let xk = knots(raw.clone().narrow(2, 0, k), MIN_BIN_WIDTH);
    let yk = knots(raw.clone().narrow(2, k, k), MIN_BIN_HEIGHT);
    let c0 = (1.0 - MIN_DERIVATIVE).exp_m1().ln();
    let inner_d = softplus_with_threshold(raw.narrow(2, 2 * k, k - 1).add_scalar(c0), 1.0, 30.0).add_scalar(MIN_DERIVATIVE);
    let one = inner_d.zeros_like().narrow(2, 0, 1).add_scalar(1.0);
    let dk = Tensor::cat(vec![one.clone(), inner_d, one], 2);

    let outside = v.clone().abs().greater_elem(bound);
    let vc = v.clone().clamp(-bound, bound);
    // The bin: the number of interior knots ≤ v (the last knot ≤ v among knots[0..K]).
    let search = if inverse { &yk } else { &xk };
    let bin = vc.clone().expand([bsz, n, k - 1]).greater_equal(search.clone().narrow(2, 1, k - 1)).int().sum_dim(2);
    let at = |t: &Tensor<3>, shift: i64| t.clone().gather(2, bin.clone().add_scalar(shift));
    let (x0, x1, y0, y1, d0, d1) = (at(&xk, 0), at(&xk, 1), at(&yk, 0), at(&yk, 1), at(&dk, 0), at(&dk, 1));
    let w = x1 - x0.clone();
    let h = y1 - y0.clone();
    let s = h.clone() / w.clone();
    let xi = if inverse {
        // ξ = 2c / (−b − √(b² − 4ac)), the cancellation-free root (Durkan et al. 2019, app. A).
        let dy = (vc - y0.clone()).clamp_min(0.0);
        let dy = dy.clone() - (dy - h.clone()).clamp_min(0.0);
        let e = d0.clone() + d1.clone() - s.clone().mul_scalar(2.0);
        let a = dy.clone() * e.clone() + h.clone() * (s.clone() - d0.clone());
        let bq = h.clone() * d0.clone() - dy.clone() * e;
        let c = (s.clone() * dy).neg();
        let disc = (bq.clone().square() - a.mul_scalar(4.0) * c.clone()).clamp_min(0.0);
        let denom = bq.neg() - disc.sqrt();
        let zero = denom.clone().equal_elem(0.0);
        let safe = denom.mask_fill(zero.clone(), -1.0);
        (c.mul_scalar(2.0) / safe).mask_fill(zero, 0.0).clamp(0.0, 1.0)
    } else {
        ((vc - x0.clone()) / w.clone()).clamp(0.0, 1.0)
    };
    let q = xi.clone() * xi.clone().neg().add_scalar(1.0);
    let den = s.clone() + (d0.clone() + d1.clone() - s.clone().mul_scalar(2.0)) * q.clone();
    let p = d1 * xi.clone().square() + s.clone().mul_scalar(2.0) * q.clone() + d0.clone() * xi.clone().neg().add_scalar(1.0).square();
    let log_deriv = s.clone().log().mul_scalar(2.0) + p.log() - den.clone().log().mul_scalar(2.0);
    let (mapped, ld) = if inverse {
        (x0 + xi * w, log_deriv.neg())
    } else {
        let num = h * (s * xi.clone().square() + d0 * q);
        (y0 + num / den, log_deriv)
    };
    (mapped.mask_where(outside.clone(), v), ld.mask_fill(outside, 0.0))
}
