//! SDE solves with ndarray in and out: drift and diffusion written as plain functions of one
//! row, the Brownian path from `sde::VirtualBrownianTree` or `sde::GridBrownian` (seeded,
//! reproducible), outputs as one array. Same solvers and numbers as [`sdeint`](super::sdeint).
//!
//! ```
//! use ndarray::Array2;
//! use physflow::sde::{self, Noise, SdeOptions, SdeSolver, VirtualBrownianTree};
//!
//! // Ornstein–Uhlenbeck dy = -θ y dt + σ dW, 1000 paths from y = 1.
//! let (theta, sigma) = (2.0, 0.5);
//! let y0 = Array2::from_elem((1000, 1), 1.0);
//! let w = VirtualBrownianTree::new(0.0, 1.0, 1e-6, [1000, 1], 7).unwrap();
//! let opts = SdeOptions::fixed(SdeSolver::EulerMaruyama, 1e-3);
//! let (ys, _stats) = sde::sdeint_array(
//!     |_t, y, mut f| f[0] = -theta * y[0],
//!     |_t, _y, mut g| g[0] = sigma,
//!     Noise::Diagonal,
//!     y0.view(), &[0.0, 1.0], &w, &opts,
//! ).unwrap();
//! let mean = ys.index_axis(ndarray::Axis(0), 1).mean().unwrap();
//! assert!((mean - (-theta).exp()).abs() < 0.02); // E y(1) = e^{-θ}
//! ```

use burn::tensor::{Tensor, TensorData};
use ndarray::{Array3, ArrayView1, ArrayView2, ArrayViewMut1};

use super::brownian::BrownianPath;
use super::field::{Noise, SdeField};
use super::solve::{sdeint_with_stats, SdeOptions, SdeStats};
use crate::host::{solution_array, tensor_from_array2, ToHost};
use crate::{Error, Result};

/// Drift and diffusion as host closures applied row by row.
struct RowSde<F, G> {
    f: F,
    g: G,
    noise: Noise,
    dim: usize,
}

impl<F, G> RowSde<F, G> {
    fn rows(&self, width: usize, t: f64, y: &Tensor<2>, op: impl Fn(f64, ArrayView1<'_, f64>, ArrayViewMut1<'_, f64>)) -> Tensor<2> {
        let b = y.dims()[0];
        let host = y.to_vec_as::<f64>();
        let mut out = vec![0.0; b * width];
        for (yi, oi) in host.chunks_exact(self.dim).zip(out.chunks_exact_mut(width)) {
            op(t, ArrayView1::from(yi), ArrayViewMut1::from(oi));
        }
        Tensor::<2>::from_data(TensorData::new(out, [b, width]), (&y.device(), y.dtype()))
    }
}

impl<F, G> SdeField for RowSde<F, G>
where
    F: Fn(f64, ArrayView1<'_, f64>, ArrayViewMut1<'_, f64>),
    G: Fn(f64, ArrayView1<'_, f64>, ArrayViewMut1<'_, f64>),
{
    type Params = ();
    type DriftSaved = ();
    type DiffusionSaved = ();

    fn noise(&self) -> Noise {
        self.noise
    }
    fn drift_saving(&self, t: f64, y: &Tensor<2>) -> (Tensor<2>, ()) {
        (self.rows(self.dim, t, y, &self.f), ())
    }
    fn diffusion_saving(&self, t: f64, y: &Tensor<2>) -> (Tensor<2>, ()) {
        (self.rows(self.noise.diffusion_dim(self.dim), t, y, &self.g), ())
    }
    fn has_vjp(&self) -> bool {
        false
    }
    fn drift_vjp(&self, _: &(), _: &Tensor<2>, _: Option<(&mut (), f64)>) -> Tensor<2> {
        unreachable!("RowSde is private to sdeint_array, which rejects the solvers that take VJPs")
    }
    fn diffusion_vjp(&self, _: &(), _: &Tensor<2>, _: Option<(&mut (), f64)>) -> Tensor<2> {
        unreachable!("RowSde is private to sdeint_array, which rejects the solvers that take VJPs")
    }
    fn zero_params(&self) {}
}

/// Solve `dy = f(t, y) dt + g(t, y) ∘ dW` (Itô or Stratonovich as the solver says) for every
/// row of `y0: [batch, dim]` and return the states at `times`, `[n_times, batch, dim]`, with
/// step counts. `f(t, y, out)` writes the drift of one row (`dim` wide); `g(t, y, out)` its
/// diffusion: `dim` wide for [`Noise::Diagonal`], `dim · m` for [`Noise::General`] (row-major
/// `[dim, m]`). The Brownian path is `[batch, dim]` (diagonal) or `[batch, m]` wide.
///
/// [`SdeSolver::Sra1`](super::SdeSolver::Sra1) is taken on the caller's word that `g` does not depend on `y`
/// (additive noise), which a closure cannot declare.
///
/// # Errors
/// As [`sdeint`](super::sdeint); `Shape` for an empty `y0`; `Unsupported` for the Milstein
/// solvers, which need `∂g/∂y` that plain closures do not give (use an
/// [`SdeField`] with derivatives, or Euler–Heun / SRA1).
#[allow(clippy::too_many_arguments)]
pub fn sdeint_array<F, G, B: BrownianPath>(
    drift: F,
    diffusion: G,
    noise: Noise,
    y0: ArrayView2<'_, f64>,
    times: &[f64],
    brownian: &B,
    opts: &SdeOptions,
) -> Result<(Array3<f64>, SdeStats)>
where
    F: Fn(f64, ArrayView1<'_, f64>, ArrayViewMut1<'_, f64>),
    G: Fn(f64, ArrayView1<'_, f64>, ArrayViewMut1<'_, f64>),
{
    if opts.solver.facts().needs_dg {
        return Err(Error::Unsupported(format!(
            "{:?} with closures: Milstein needs ∂g/∂y, which a plain closure does not give; use EulerHeun, EulerMaruyama or SRA1, or an SdeField with derivatives",
            opts.solver
        )));
    }
    let (b, n) = y0.dim();
    if b == 0 || n == 0 {
        return Err(Error::Shape { what: "y0 [batch, dim]".into(), expected: vec![1, 1], got: vec![b, n] });
    }
    let device = crate::device::cpu_f64()?;
    let y0 = tensor_from_array2(&y0, &device, burn::tensor::DType::F64);
    let sde = RowSde { f: drift, g: diffusion, noise, dim: n };
    // SRA1 needs additive noise; closures cannot declare it, so the solver's check would
    // refuse it: SRA1 is accepted here on the caller's word that g does not depend on y.
    let (ys, stats) = if opts.solver.facts().additive_only {
        sdeint_with_stats(&Additive(sde), y0, times, brownian, opts)?
    } else {
        sdeint_with_stats(&sde, y0, times, brownian, opts)?
    };
    Ok((solution_array(&ys)?, stats))
}

/// A [`RowSde`] declared additive (for SRA1).
struct Additive<S>(S);

impl<S: SdeField<Params = (), DriftSaved = (), DiffusionSaved = ()>> SdeField for Additive<S> {
    type Params = ();
    type DriftSaved = ();
    type DiffusionSaved = ();

    fn noise(&self) -> Noise {
        self.0.noise()
    }
    fn additive(&self) -> bool {
        true
    }
    fn drift_saving(&self, t: f64, y: &Tensor<2>) -> (Tensor<2>, ()) {
        self.0.drift_saving(t, y)
    }
    fn diffusion_saving(&self, t: f64, y: &Tensor<2>) -> (Tensor<2>, ()) {
        self.0.diffusion_saving(t, y)
    }
    fn drift_vjp(&self, s: &(), a: &Tensor<2>, p: Option<(&mut (), f64)>) -> Tensor<2> {
        self.0.drift_vjp(s, a, p)
    }
    fn diffusion_vjp(&self, s: &(), a: &Tensor<2>, p: Option<(&mut (), f64)>) -> Tensor<2> {
        self.0.diffusion_vjp(s, a, p)
    }
    fn zero_params(&self) {}
}
