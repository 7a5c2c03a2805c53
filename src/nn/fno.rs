//! The Fourier neural operator (Li et al. 2021, "Fourier Neural Operator for Parametric Partial
//! Differential Equations", ICLR) on fields `[batch, channels, x, y]`, with a time input for flow
//! matching. A 1D field is the case `y = 1`.
//!
//! Each layer is `h ← σ(K h + W h + b(t))`: `K` a spectral convolution that keeps the lowest
//! `modes = [m_x, m_y]` Fourier modes (frequencies `|k_x| < m_x`, `0 ≤ k_y < m_y`) and mixes
//! channels with one complex matrix per mode, `W` a pointwise linear map, `b(t)` a per-channel
//! bias from a Fourier-feature embedding of the flow time `t`.
//!
//! The truncated transforms are matrix products with precomputed cosine/sine tables rather than
//! FFTs: for the grids of this crate (tens of points per axis, `m ≪ n`) a product with an
//! `[n, 2m]` table costs `O(n m)` per line, needs no power-of-two sizes (burn's `rfft` does),
//! only computes the kept modes, and runs unchanged on every burn backend with autodiff.

use std::f64::consts::TAU;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::init::{linear, uniform, Activation};
use super::Mlp;

/// Architecture of an [`Fno`]; every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FnoConfig {
    /// Field channels in.
    pub in_channels: usize,
    /// Field channels out.
    pub out_channels: usize,
    /// Hidden channels of the spectral layers.
    pub width: usize,
    /// Kept Fourier modes `[m_x, m_y]`; `m_y = 1` for 1D fields. Needs `2 m_x − 1 ≤ X + p_x`
    /// and `2 m_y − 1 ≤ Y + p_y` (no mode beyond the Nyquist frequency).
    pub modes: [usize; 2],
    /// Spectral layers.
    pub layers: usize,
    /// Zero padding appended along `[x, y]` inside the network (for non-periodic axes: the
    /// spectral layers see a periodic extension).
    pub padding: [usize; 2],
    /// Fourier features `sin(2πkt), cos(2πkt)`, `k = 1..F`, of the time input (0: no time input).
    pub time_features: usize,
    /// Hidden width of the pointwise output MLP.
    pub projection: usize,
    /// Nonlinearity.
    pub activation: Activation,
}

impl Default for FnoConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            out_channels: 1,
            width: 32,
            modes: [8, 8],
            layers: 4,
            padding: [0, 0],
            time_features: 8,
            projection: 64,
            activation: Activation::Gelu,
        }
    }
}

/// One spectral convolution `K`: complex weights `[K, c_in, c_out]` per kept mode.
#[derive(Module, Debug)]
pub struct SpectralConv {
    /// Real parts, `[K, c_in, c_out]`, `K = (2 m_x − 1) m_y`, modes ordered `(k_y, k_x)`.
    pub weight_re: Param<Tensor<3>>,
    /// Imaginary parts, same shape.
    pub weight_im: Param<Tensor<3>>,
    /// `[m_x, m_y]`.
    pub modes: [usize; 2],
}

/// The Fourier neural operator: lift, spectral layers, pointwise projection.
#[derive(Module, Debug)]
pub struct Fno {
    /// Lift `[c_in + 2 coordinates] → width`.
    pub lift: Linear,
    /// Spectral parts of the layers.
    pub spectral: Vec<SpectralConv>,
    /// Pointwise parts of the layers.
    pub pointwise: Vec<Linear>,
    /// Time embedding `[2F + 1] → width` (absent without a time input).
    pub time_embed: Option<Linear>,
    /// Per-layer time biases `width → width`.
    pub time_bias: Vec<Linear>,
    /// The pointwise output MLP `width → projection → c_out` (one hidden layer, the FNO's
    /// nonlinearity, no time input).
    pub projection: Mlp,
    /// `[p_x, p_y]`.
    pub padding: [usize; 2],
    /// Fourier features of `t`.
    pub time_features: usize,
    /// Nonlinearity.
    #[module(skip)]
    pub activation: Activation,
}

impl FnoConfig {
    /// Checks the settings against a field grid `[X, Y]`: positive width, layers and modes, and
    /// no kept mode beyond the Nyquist frequency of the padded grid (`2 m_x − 1 ≤ X + p_x`,
    /// `2 m_y − 1 ≤ Y + p_y`) — before any network is built or trained.
    ///
    /// # Errors
    /// `InvalidArgument` naming the setting and the grid.
    pub fn check_grid(&self, nx: usize, ny: usize) -> crate::Result<()> {
        self.check()?;
        let (px, py) = (nx + self.padding[0], ny + self.padding[1]);
        if 2 * self.modes[0] - 1 > px || 2 * self.modes[1] - 1 > py {
            return Err(crate::Error::invalid(
                "fno.modes",
                format!("modes {:?} need a padded grid of at least {} × {} points; the field grid is {nx} × {ny} with padding {:?} (lower the modes or refine the grid)", self.modes, 2 * self.modes[0] - 1, 2 * self.modes[1] - 1, self.padding),
            ));
        }
        Ok(())
    }

    /// Checks the settings that do not depend on the grid: positive channels, width, layers,
    /// projection and modes.
    ///
    /// # Errors
    /// `InvalidArgument` naming the settings.
    pub fn check(&self) -> crate::Result<()> {
        if self.in_channels == 0
            || self.out_channels == 0
            || self.width == 0
            || self.layers == 0
            || self.modes[0] == 0
            || self.modes[1] == 0
            || self.projection == 0
        {
            return Err(crate::Error::invalid(
                "fno",
                format!(
                    "channels, width, layers, projection and modes must be positive, got channels {} → {}, width {}, layers {}, projection {}, modes {:?}",
                    self.in_channels, self.out_channels, self.width, self.layers, self.projection, self.modes
                ),
            ));
        }
        Ok(())
    }

    /// The network with weights from `seed`: affine layers `U(±1/√fan_in)` (PyTorch's
    /// `nn.Linear`), spectral weights `U(0, 1)/(c_in c_out)` as in the reference implementation.
    ///
    /// # Errors
    /// The settings' error from [`FnoConfig::check`]. The grid is checked where it is known
    /// ([`FnoConfig::check_grid`]).
    pub fn init(&self, seed: u64, device: &Device) -> crate::Result<Fno> {
        self.check()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let w = self.width;
        let k = (2 * self.modes[0] - 1) * self.modes[1];
        let scale = 1.0 / (w * w) as f64;
        let lift = linear(&mut rng, self.in_channels + 2, w, device);
        let mut spectral = Vec::new();
        let mut pointwise = Vec::new();
        for _ in 0..self.layers {
            spectral.push(SpectralConv {
                weight_re: uniform(&mut rng, [k, w, w], 0.0, scale, device),
                weight_im: uniform(&mut rng, [k, w, w], 0.0, scale, device),
                modes: self.modes,
            });
            pointwise.push(linear(&mut rng, w, w, device));
        }
        let (time_embed, time_bias) = if self.time_features > 0 {
            let embed = linear(&mut rng, 2 * self.time_features + 1, w, device);
            (Some(embed), (0..self.layers).map(|_| linear(&mut rng, w, w, device)).collect())
        } else {
            (None, Vec::new())
        };
        // Drawn layer by layer, as `MlpConfig::init` draws, from the FNO's one generator.
        let layers = vec![linear(&mut rng, w, self.projection, device), linear(&mut rng, self.projection, self.out_channels, device)];
        Ok(Fno {
            lift,
            spectral,
            pointwise,
            time_embed,
            time_bias,
            projection: Mlp { layers, time_input: false, activation: self.activation },
            padding: self.padding,
            time_features: self.time_features,
            activation: self.activation,
        })
    }
}

/// `[rows, cols]` table `f(r, c)` as a constant tensor in `dtype` on `device`.
fn table(rows: usize, cols: usize, (device, dtype): (&Device, DType), f: impl Fn(usize, usize) -> f64) -> Tensor<2> {
    let v: Vec<f64> = (0..rows * cols).map(|i| f(i / cols, i % cols)).collect();
    Tensor::<2>::from_data(TensorData::new(v, [rows, cols]), (device, dtype))
}

/// The kept frequencies along x: `0, 1, …, m−1, −(m−1), …, −1`.
fn x_frequencies(m: usize) -> Vec<f64> {
    (0..m).map(|k| k as f64).chain((1..m).rev().map(|k| -(k as f64))).collect()
}

impl SpectralConv {
    /// `K h` for a channels-last state.
    ///
    /// # Shapes
    /// `h: [batch, X, Y, c_in]` → `[batch, X, Y, c_out]`.
    ///
    /// # Panics
    /// If a mode lies beyond the Nyquist frequency of its axis.
    pub fn forward(&self, h: Tensor<4>) -> Tensor<4> {
        let [b, nx, ny, c] = h.dims();
        let [mx, my] = self.modes;
        let kx = 2 * mx - 1;
        let o = self.weight_re.dims()[2];
        assert!(kx <= nx && 2 * my - 1 <= ny, "SpectralConv: modes {:?} need at least {kx} × {} points, the grid is {nx} × {ny}", self.modes, 2 * my - 1);
        let fx = x_frequencies(mx);
        let (nxf, nyf) = (nx as f64, ny as f64);
        // Forward along y (real → half spectrum): columns [Re | Im] of Σ_y h e^{−2πi k y/Y}.
        let (device, dtype) = (h.device(), h.dtype());
        let on = (&device, dtype);
        let fy = table(ny, 2 * my, on, |y, j| {
            let (k, im) = (j % my, j >= my);
            let th = TAU * (k * y) as f64 / nyf;
            if im {
                -th.sin()
            } else {
                th.cos()
            }
        });
        let hy = h.permute([0, 1, 3, 2]).reshape([b * nx * c, ny]).matmul(fy);
        // Forward along x (complex → complex): rows [Re; Im] of the input, columns [Re | Im] of
        // the output, e^{−iθ} = cos θ − i sin θ.
        let mfx = table(2 * nx, 2 * kx, on, |r, j| {
            let (x, g_im) = (r % nx, r >= nx);
            let (k, v_im) = (j % kx, j >= kx);
            let th = TAU * fx[k] * x as f64 / nxf;
            match (g_im, v_im) {
                (false, false) => th.cos(),
                (false, true) => -th.sin(),
                (true, false) => th.sin(),
                (true, true) => th.cos(),
            }
        });
        let g = hy.reshape([b, nx, c, 2, my]).permute([0, 2, 4, 3, 1]).reshape([b * c * my, 2 * nx]).matmul(mfx);
        // Channel mixing per mode as one real block product [Vr | Vi] [[Wr, Wi], [−Wi, Wr]].
        let v = g.reshape([b, c, my, 2, kx]).permute([2, 4, 0, 3, 1]).reshape([my * kx, b, 2 * c]);
        let (wr, wi) = (self.weight_re.val(), self.weight_im.val());
        let block = Tensor::cat(vec![Tensor::cat(vec![wr.clone(), wi.clone()], 2), Tensor::cat(vec![wi.neg(), wr], 2)], 1);
        let out = v.matmul(block); // [K, b, 2o] = [Or | Oi]
                                   // Inverse along x: U = Σ_k O e^{+iθ}: Ur = Or cos − Oi sin, Ui = Or sin + Oi cos.
        let mix = table(2 * kx, 2 * nx, on, |r, j| {
            let (k, o_im) = (r % kx, r >= kx);
            let (x, u_im) = (j % nx, j >= nx);
            let th = TAU * fx[k] * x as f64 / nxf;
            match (o_im, u_im) {
                (false, false) => th.cos(),
                (false, true) => th.sin(),
                (true, false) => -th.sin(),
                (true, true) => th.cos(),
            }
        });
        let u = out.reshape([my, kx, b, 2, o]).permute([2, 4, 0, 3, 1]).reshape([b * o * my, 2 * kx]).matmul(mix);
        // Inverse along y (half spectrum → real): (1/XY) Σ_k c_k (Ur cos − Ui sin), c_0 = 1, c_k = 2.
        let giy = table(2 * my, ny, on, |r, y| {
            let (k, im) = (r % my, r >= my);
            let ck = if k == 0 { 1.0 } else { 2.0 };
            let th = TAU * (k * y) as f64 / nyf;
            ck / (nxf * nyf) * if im { -th.sin() } else { th.cos() }
        });
        u.reshape([b, o, my, 2, nx]).permute([0, 4, 1, 3, 2]).reshape([b * nx * o, 2 * my]).matmul(giy).reshape([b, nx, o, ny]).permute([0, 1, 3, 2])
    }
}

/// Fourier features `[t, sin(2πkt), cos(2πkt)]`, `k = 1..F`, of per-sample times.
///
/// # Shapes
/// `t: [batch]` → `[batch, 2F + 1]`.
pub fn time_features(t: &Tensor<1>, features: usize) -> Tensor<2> {
    let [b] = t.dims();
    let t2 = t.clone().reshape([b, 1]);
    let mut cols = vec![t2.clone()];
    for k in 1..=features {
        let arg = t2.clone().mul_scalar(TAU * k as f64);
        cols.push(arg.clone().sin());
        cols.push(arg.cos());
    }
    Tensor::cat(cols, 1)
}

/// Coordinates `((i + ½)/X, (j + ½)/Y)` as two channels-last feature columns.
///
/// # Shapes
/// → `[batch, X, Y, 2]`.
pub(crate) fn coordinates(b: usize, nx: usize, ny: usize, like: &Tensor<4>) -> Tensor<4> {
    let mut v = Vec::with_capacity(nx * ny * 2);
    for i in 0..nx {
        for j in 0..ny {
            v.push((i as f64 + 0.5) / nx as f64);
            v.push((j as f64 + 0.5) / ny as f64);
        }
    }
    Tensor::<4>::from_data(TensorData::new(v, [1, nx, ny, 2]), (&like.device(), like.dtype())).repeat_dim(0, b)
}

impl Fno {
    /// The operator applied to fields at flow times `t`.
    ///
    /// # Shapes
    /// `u: [batch, c_in, X, Y]`, `t: [batch]` → `[batch, c_out, X, Y]`.
    pub fn forward(&self, u: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let [b, _, nx, ny] = u.dims();
        let x = u.permute([0, 2, 3, 1]);
        let coords = coordinates(b, nx, ny, &x);
        let mut h = self.lift.forward(Tensor::cat(vec![x, coords], 3));
        let [px, py] = self.padding;
        let w = h.dims()[3];
        if px > 0 {
            let z = Tensor::<4>::zeros([b, px, ny, w], (&h.device(), h.dtype()));
            h = Tensor::cat(vec![h, z], 1);
        }
        if py > 0 {
            let z = Tensor::<4>::zeros([b, nx + px, py, w], (&h.device(), h.dtype()));
            h = Tensor::cat(vec![h, z], 2);
        }
        let emb = self.time_embed.as_ref().map(|lin| self.activation.apply(lin.forward(time_features(&t, self.time_features))));
        let n = self.spectral.len();
        for l in 0..n {
            let mut z = self.spectral[l].forward(h.clone()) + self.pointwise[l].forward(h);
            if let Some(e) = &emb {
                z = z + self.time_bias[l].forward(e.clone()).reshape([b, 1, 1, w]);
            }
            h = if l + 1 < n { self.activation.apply(z) } else { z };
        }
        if px > 0 || py > 0 {
            h = h.narrow(1, 0, nx).narrow(2, 0, ny);
        }
        self.projection.forward_last_axis(h).permute([0, 3, 1, 2])
    }
}

/// An [`Fno`] as saved before its projection became an [`Mlp`]: the same parameters, the
/// projection's two layers named `proj1` and `proj2` (today `projection.layers.0` and
/// `.1`). Only read, to load such records ([`super::FieldNet::load`]).
#[derive(Module, Debug)]
pub(crate) struct FnoV1 {
    lift: Linear,
    spectral: Vec<SpectralConv>,
    pointwise: Vec<Linear>,
    time_embed: Option<Linear>,
    time_bias: Vec<Linear>,
    proj1: Linear,
    proj2: Linear,
    padding: [usize; 2],
    time_features: usize,
    #[module(skip)]
    activation: Activation,
}

impl Fno {
    /// The same parameters under the names of [`FnoV1`], or `None` when the projection does
    /// not have exactly two layers (no earlier record has another shape).
    pub(crate) fn into_v1(self) -> Option<FnoV1> {
        let Fno { lift, spectral, pointwise, time_embed, time_bias, projection, padding, time_features, activation } = self;
        let [proj1, proj2]: [Linear; 2] = projection.layers.try_into().ok()?;
        Some(FnoV1 { lift, spectral, pointwise, time_embed, time_bias, proj1, proj2, padding, time_features, activation })
    }
}

impl From<FnoV1> for Fno {
    fn from(v: FnoV1) -> Self {
        let FnoV1 { lift, spectral, pointwise, time_embed, time_bias, proj1, proj2, padding, time_features, activation } = v;
        let projection = Mlp { layers: vec![proj1, proj2], time_input: false, activation };
        Fno { lift, spectral, pointwise, time_embed, time_bias, projection, padding, time_features, activation }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ToHost;

    /// With one channel and identity mode weights, `K` is the orthogonal projection onto the
    /// kept modes: a field made of kept modes comes back unchanged, a mode beyond `m` is removed.
    /// Reference: the DFT of `cos(2π(k_x x/X + k_y y/Y))` is supported on `±(k_x, k_y)`.
    #[test]
    fn spectral_conv_is_the_low_pass_projection_for_identity_weights() {
        let device = crate::device::cpu_f64().unwrap();
        let (nx, ny) = (12, 10);
        let modes = [3, 3];
        let k = (2 * modes[0] - 1) * modes[1];
        let ones = Tensor::<3>::ones([k, 1, 1], &device);
        let conv = SpectralConv { weight_re: Param::from_tensor(ones), weight_im: Param::from_tensor(Tensor::<3>::zeros([k, 1, 1], &device)), modes };
        let wave = |kx: f64, ky: f64, ph: f64| -> Vec<f64> {
            (0..nx * ny).map(|i| (TAU * (kx * (i / ny) as f64 / nx as f64 + ky * (i % ny) as f64 / ny as f64) + ph).cos()).collect()
        };
        let field = |v: Vec<f64>| Tensor::<4>::from_data(TensorData::new(v, [1, nx, ny, 1]), &device);
        for (kx, ky) in [(0.0, 0.0), (2.0, 1.0), (-2.0, 2.0), (1.0, 0.0)] {
            let v = wave(kx, ky, 0.3);
            let out = conv.forward(field(v.clone())).to_vec_as::<f64>();
            let err = out.iter().zip(&v).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 1e-12, "kept mode ({kx}, {ky}) changed by {err}");
        }
        for (kx, ky) in [(4.0, 0.0), (0.0, 4.0), (3.0, 3.0)] {
            let out = conv.forward(field(wave(kx, ky, 0.7))).to_vec_as::<f64>();
            let max = out.iter().fold(0.0f64, |m, a| m.max(a.abs()));
            assert!(max < 1e-12, "dropped mode ({kx}, {ky}) leaked {max}");
        }
    }

    /// A 1D field is the case `Y = 1`: the network runs, keeps shapes, and is translation
    /// equivariant along a periodic x in its spectral part (shifting the input shifts `K h`).
    #[test]
    fn fno_shapes_and_spectral_shift_equivariance() {
        let device = crate::device::cpu_f64().unwrap();
        let cfg = FnoConfig { width: 6, modes: [4, 1], layers: 2, time_features: 2, projection: 8, ..FnoConfig::default() };
        let fno = cfg.init(1, &device).unwrap();
        let u = Tensor::<4>::random([3, 1, 16, 1], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<1>::from_floats([0.1, 0.5, 0.9], &device);
        assert_eq!(fno.forward(u.clone(), t).dims(), [3, 1, 16, 1]);
        let h = Tensor::<4>::random([1, 16, 1, 6], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let shift = |x: Tensor<4>| Tensor::cat(vec![x.clone().narrow(1, 3, 13), x.narrow(1, 0, 3)], 1);
        let a = fno.spectral[0].forward(shift(h.clone())).to_vec_as::<f64>();
        let b = shift(fno.spectral[0].forward(h)).to_vec_as::<f64>();
        let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(err < 1e-12, "shift equivariance violated by {err}");
    }
}
