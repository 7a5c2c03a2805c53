//! SDEs `dy = f(t, y) dt + g(t, y) dW` on batched states `y: [batch, dim]`, with the
//! vector–Jacobian products the gradient strategies are built on.
//!
//! The diffusion `g` is always a rank-2 tensor:
//! - [`Noise::Diagonal`]: `g: [batch, dim]`, `g dW = g ⊙ dW` with `dW: [batch, dim]`;
//! - [`Noise::General`]: `g: [batch, dim · noise_dim]`, each row the row-major matrix
//!   `[dim, noise_dim]`, `(g dW)_i = Σ_j g_ij dW_j` with `dW: [batch, noise_dim]`.
//!
//! Additive noise (`g` independent of `y`) is a property of either shape, declared by
//! [`SdeField::additive`]; SRA1 needs it, and for it Itô and Stratonovich coincide.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::ode::field::autodiff_vjp;
use crate::ode::{ParamCotangent, Time, VectorField};
use crate::{Error, Result};

/// The shape of the noise term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Noise {
    /// One Brownian motion per state component: `g: [batch, dim]`, `g ⊙ dW`.
    Diagonal,
    /// `noise_dim` Brownian motions mixed by a matrix: `g: [batch, dim · noise_dim]`.
    General {
        /// Number of Brownian motions `m`.
        noise_dim: usize,
    },
}

impl Noise {
    /// The Brownian path's width for a state of width `dim`.
    pub fn brownian_dim(self, dim: usize) -> usize {
        match self {
            Noise::Diagonal => dim,
            Noise::General { noise_dim } => noise_dim,
        }
    }

    /// The diffusion's width for a state of width `dim`.
    pub fn diffusion_dim(self, dim: usize) -> usize {
        match self {
            Noise::Diagonal => dim,
            Noise::General { noise_dim } => dim * noise_dim,
        }
    }

    /// `g dW`, `[batch, dim]`.
    pub(crate) fn prod(self, g: &Tensor<2>, dw: &Tensor<2>) -> Tensor<2> {
        match self {
            Noise::Diagonal => g.clone() * dw.clone(),
            Noise::General { noise_dim: m } => {
                let [b, dm] = g.dims();
                let d = dm / m;
                g.clone().reshape([b, d, m]).matmul(dw.clone().reshape([b, m, 1])).reshape([b, d])
            }
        }
    }

    /// The cotangent of `g` in `aᵀ (g dW)`: `a ⊙ dW` (diagonal) or `a dWᵀ` flattened (general).
    pub(crate) fn cotangent(self, a: &Tensor<2>, dw: &Tensor<2>) -> Tensor<2> {
        match self {
            Noise::Diagonal => a.clone() * dw.clone(),
            Noise::General { noise_dim: m } => {
                let [b, d] = a.dims();
                a.clone().reshape([b, d, 1]).matmul(dw.clone().reshape([b, 1, m])).reshape([b, d * m])
            }
        }
    }
}

/// An SDE `dy = f(t, y) dt + g(t, y) dW` on `y: [batch, dim]` (see the module docs for the
/// shapes of `g`), with VJPs of `f` and `g` for gradients.
pub trait SdeField {
    /// Accumulator for parameter cotangents.
    type Params: ParamCotangent;
    /// What [`drift_saving`](Self::drift_saving) keeps for [`drift_vjp`](Self::drift_vjp).
    type DriftSaved;
    /// What [`diffusion_saving`](Self::diffusion_saving) keeps for
    /// [`diffusion_vjp`](Self::diffusion_vjp).
    type DiffusionSaved;

    /// The noise shape.
    fn noise(&self) -> Noise;

    /// Rejects an initial state the field cannot take (a width that is not the field's own),
    /// before any evaluation; the default accepts every shape.
    ///
    /// # Errors
    /// `Shape` naming the expected shape.
    fn check_state(&self, y0: &Tensor<2>) -> crate::Result<()> {
        let _ = y0;
        Ok(())
    }

    /// Whether [`drift_vjp`](Self::drift_vjp) and [`diffusion_vjp`](Self::diffusion_vjp) are
    /// implemented; [`crate::sde::sdeint_for_grad`] refuses a field that says `false`.
    fn has_vjp(&self) -> bool {
        true
    }

    /// Whether `g` is independent of `y` (additive noise).
    fn additive(&self) -> bool {
        false
    }

    /// Drift `f(t, y)`, `[batch, dim]`.
    fn drift(&self, t: f64, y: &Tensor<2>) -> Tensor<2> {
        self.drift_saving(t, y).0
    }

    /// Diffusion `g(t, y)`.
    fn diffusion(&self, t: f64, y: &Tensor<2>) -> Tensor<2> {
        self.diffusion_saving(t, y).0
    }

    /// `f(t, y)` and what its VJP needs.
    fn drift_saving(&self, t: f64, y: &Tensor<2>) -> (Tensor<2>, Self::DriftSaved);

    /// `g(t, y)` and what its VJP needs.
    fn diffusion_saving(&self, t: f64, y: &Tensor<2>) -> (Tensor<2>, Self::DiffusionSaved);

    /// `aᵀ ∂f/∂y` (`a: [batch, dim]`); with `params = (acc, w)`, also `acc += w · aᵀ ∂f/∂θ`.
    fn drift_vjp(&self, saved: &Self::DriftSaved, a: &Tensor<2>, params: Option<(&mut Self::Params, f64)>) -> Tensor<2>;

    /// `aᵀ ∂g/∂y` (`a` shaped like `g`); with `params = (acc, w)`, also `acc += w · aᵀ ∂g/∂θ`.
    fn diffusion_vjp(&self, saved: &Self::DiffusionSaved, a: &Tensor<2>, params: Option<(&mut Self::Params, f64)>) -> Tensor<2>;

    /// A zero parameter cotangent.
    fn zero_params(&self) -> Self::Params;
}

/// Check that `f(t0, y0)` and `g(t0, y0)` have the shapes the noise type implies and that the
/// Brownian path is as wide as the noise.
pub(crate) fn check_shapes<S: SdeField>(field: &S, t0: f64, y0: &Tensor<2>, brownian: [usize; 2]) -> Result<()> {
    let [b, d] = y0.dims();
    let noise = field.noise();
    if let Noise::General { noise_dim: 0 } = noise {
        return Err(Error::invalid("noise_dim", "general noise needs at least one Brownian motion"));
    }
    let f = field.drift(t0, y0);
    if f.dims() != [b, d] {
        return Err(Error::Shape { what: "drift f(t, y)".into(), expected: vec![b, d], got: f.dims().to_vec() });
    }
    let g = field.diffusion(t0, y0);
    let gd = noise.diffusion_dim(d);
    if g.dims() != [b, gd] {
        return Err(Error::Shape { what: format!("diffusion g(t, y) for {noise:?} noise"), expected: vec![b, gd], got: g.dims().to_vec() });
    }
    let want = [b, noise.brownian_dim(d)];
    if brownian != want {
        return Err(Error::Shape { what: format!("Brownian path for {noise:?} noise"), expected: want.to_vec(), got: brownian.to_vec() });
    }
    Ok(())
}

/// An SDE from two closures written with burn tensor operations, without parameters; the VJPs
/// come from burn autodiff.
pub struct FnSde<F, G> {
    f: F,
    g: G,
    noise: Noise,
    additive: bool,
}

impl<F, G> FnSde<F, G>
where
    F: Fn(f64, Tensor<2>) -> Tensor<2>,
    G: Fn(f64, Tensor<2>) -> Tensor<2>,
{
    /// Drift `f(t, y)` and diagonal diffusion `g(t, y)`.
    pub fn new(f: F, g: G) -> Self {
        Self { f, g, noise: Noise::Diagonal, additive: false }
    }

    /// Declare the noise shape (the closure `g` must return the matching width).
    pub fn with_noise(mut self, noise: Noise) -> Self {
        self.noise = noise;
        self
    }

    /// Declare the noise additive (`g` independent of `y`).
    pub fn additive(mut self) -> Self {
        self.additive = true;
        self
    }
}

impl<F, G> SdeField for FnSde<F, G>
where
    F: Fn(f64, Tensor<2>) -> Tensor<2>,
    G: Fn(f64, Tensor<2>) -> Tensor<2>,
{
    type Params = ();
    type DriftSaved = (f64, Tensor<2>);
    type DiffusionSaved = (f64, Tensor<2>);

    fn noise(&self) -> Noise {
        self.noise
    }
    fn additive(&self) -> bool {
        self.additive
    }
    fn drift(&self, t: f64, y: &Tensor<2>) -> Tensor<2> {
        (self.f)(t, y.clone())
    }
    fn diffusion(&self, t: f64, y: &Tensor<2>) -> Tensor<2> {
        (self.g)(t, y.clone())
    }
    fn drift_saving(&self, t: f64, y: &Tensor<2>) -> (Tensor<2>, Self::DriftSaved) {
        ((self.f)(t, y.clone()), (t, y.clone()))
    }
    fn diffusion_saving(&self, t: f64, y: &Tensor<2>) -> (Tensor<2>, Self::DiffusionSaved) {
        ((self.g)(t, y.clone()), (t, y.clone()))
    }
    fn drift_vjp(&self, saved: &Self::DriftSaved, a: &Tensor<2>, _: Option<(&mut (), f64)>) -> Tensor<2> {
        let (t, y) = saved;
        autodiff_vjp(y, a, |y| (self.f)(*t, y)).0.without_autodiff()
    }
    fn diffusion_vjp(&self, saved: &Self::DiffusionSaved, a: &Tensor<2>, _: Option<(&mut (), f64)>) -> Tensor<2> {
        let (t, y) = saved;
        if self.additive {
            return y.zeros_like();
        }
        // `g` may change the width (general noise), so `a` is not shaped like `y`.
        let y_ad = y.clone().detach().autodiff().require_grad();
        let out = (self.g)(*t, y_ad.clone());
        let grads = (out * a.clone().autodiff()).sum().backward();
        y_ad.grad(&grads).map(|g| g.without_autodiff()).unwrap_or_else(|| y.zeros_like())
    }
    fn zero_params(&self) {}
}

/// Parameter cotangents of a [`NeuralSde`]: the drift's and the diffusion's.
#[derive(Clone, Debug)]
pub struct SdeParams<A, B> {
    /// Cotangent of the drift's parameters.
    pub drift: A,
    /// Cotangent of the diffusion's parameters.
    pub diffusion: B,
}

impl<A: ParamCotangent, B: ParamCotangent> ParamCotangent for SdeParams<A, B> {
    fn add_scaled(&mut self, other: &Self, w: f64) {
        self.drift.add_scaled(&other.drift, w);
        self.diffusion.add_scaled(&other.diffusion, w);
    }
    fn set_zero(&mut self) {
        self.drift.set_zero();
        self.diffusion.set_zero();
    }
}

/// An SDE whose drift and diffusion are vector fields with parameters (networks, or any
/// [`VectorField`]): `f(t, y) = drift(t, y)`, `g(t, y) = diffusion(t, y)`.
///
/// For general noise the diffusion field maps `[batch, dim]` to `[batch, dim · noise_dim]`
/// (an MLP with that output width).
pub struct NeuralSde<F, G> {
    /// The drift field.
    pub drift: F,
    /// The diffusion field.
    pub diffusion: G,
    noise: Noise,
    additive: bool,
}

impl<F: VectorField<2>, G: VectorField<2>> NeuralSde<F, G> {
    /// Drift and diagonal diffusion.
    pub fn new(drift: F, diffusion: G) -> Self {
        Self { drift, diffusion, noise: Noise::Diagonal, additive: false }
    }

    /// Declare the noise shape.
    pub fn with_noise(mut self, noise: Noise) -> Self {
        self.noise = noise;
        self
    }

    /// Declare the noise additive (the diffusion field ignores `y`, e.g. a [`StateFree`]).
    pub fn additive(mut self) -> Self {
        self.additive = true;
        self
    }
}

impl<F: VectorField<2>, G: VectorField<2>> SdeField for NeuralSde<F, G> {
    type Params = SdeParams<F::Params, G::Params>;
    type DriftSaved = F::Saved;
    type DiffusionSaved = G::Saved;

    fn noise(&self) -> Noise {
        self.noise
    }
    fn additive(&self) -> bool {
        self.additive
    }
    fn drift(&self, t: f64, y: &Tensor<2>) -> Tensor<2> {
        self.drift.eval(&Time::Shared(t), y)
    }
    fn diffusion(&self, t: f64, y: &Tensor<2>) -> Tensor<2> {
        self.diffusion.eval(&Time::Shared(t), y)
    }
    fn drift_saving(&self, t: f64, y: &Tensor<2>) -> (Tensor<2>, F::Saved) {
        self.drift.eval_saving(&Time::Shared(t), y)
    }
    fn diffusion_saving(&self, t: f64, y: &Tensor<2>) -> (Tensor<2>, G::Saved) {
        self.diffusion.eval_saving(&Time::Shared(t), y)
    }
    fn drift_vjp(&self, saved: &F::Saved, a: &Tensor<2>, params: Option<(&mut Self::Params, f64)>) -> Tensor<2> {
        self.drift.vjp_saved(saved, a, params.map(|(p, w)| (&mut p.drift, w)))
    }
    fn diffusion_vjp(&self, saved: &G::Saved, a: &Tensor<2>, params: Option<(&mut Self::Params, f64)>) -> Tensor<2> {
        self.diffusion.vjp_saved(saved, a, params.map(|(p, w)| (&mut p.diffusion, w)))
    }
    fn zero_params(&self) -> Self::Params {
        SdeParams { drift: self.drift.zero_params(), diffusion: self.diffusion.zero_params() }
    }
}

/// A field followed by the logistic sigmoid, `σ(v(t, y))`: a bounded, positive diffusion
/// (torchsde's and the latent-SDE examples' choice for diagonal noise).
pub struct Sigmoid<V> {
    inner: V,
}

impl<V> Sigmoid<V> {
    /// `σ ∘ inner`.
    pub fn new(inner: V) -> Self {
        Self { inner }
    }
}

impl<V: VectorField<2>> VectorField<2> for Sigmoid<V> {
    type Params = V::Params;
    /// The inner field's saved state and `σ(v)`.
    type Saved = (V::Saved, Tensor<2>);

    fn eval(&self, t: &Time, y: &Tensor<2>) -> Tensor<2> {
        burn::tensor::activation::sigmoid(self.inner.eval(t, y))
    }
    fn eval_saving(&self, t: &Time, y: &Tensor<2>) -> (Tensor<2>, Self::Saved) {
        let (v, saved) = self.inner.eval_saving(t, y);
        let s = burn::tensor::activation::sigmoid(v);
        (s.clone(), (saved, s))
    }
    fn vjp_saved(&self, saved: &Self::Saved, a: &Tensor<2>, params: Option<(&mut V::Params, f64)>) -> Tensor<2> {
        let (inner, s) = saved;
        // σ' = σ (1 − σ).
        let a_inner = a.clone() * s.clone() * (s.clone().neg().add_scalar(1.0));
        self.inner.vjp_saved(inner, &a_inner, params)
    }
    fn zero_params(&self) -> V::Params {
        self.inner.zero_params()
    }
}

/// A field evaluated at `y = 0` whatever the state: `v(t, 0)`, shaped like `y`. Its parameters
/// (and time, if the inner field takes it) still act, its `y`-Jacobian is zero — an additive
/// diffusion `g(t)` built from any field, e.g. an MLP with a time input.
pub struct StateFree<V> {
    inner: V,
}

impl<V> StateFree<V> {
    /// `v(t, 0)`.
    pub fn new(inner: V) -> Self {
        Self { inner }
    }
}

impl<V: VectorField<2>> VectorField<2> for StateFree<V> {
    type Params = V::Params;
    type Saved = V::Saved;

    fn eval(&self, t: &Time, y: &Tensor<2>) -> Tensor<2> {
        self.inner.eval(t, &y.zeros_like())
    }
    fn eval_saving(&self, t: &Time, y: &Tensor<2>) -> (Tensor<2>, Self::Saved) {
        self.inner.eval_saving(t, &y.zeros_like())
    }
    fn vjp_saved(&self, saved: &Self::Saved, a: &Tensor<2>, params: Option<(&mut V::Params, f64)>) -> Tensor<2> {
        self.inner.vjp_saved(saved, a, params).zeros_like()
    }
    fn zero_params(&self) -> V::Params {
        self.inner.zero_params()
    }
}
