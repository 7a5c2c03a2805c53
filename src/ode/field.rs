//! Vector fields `dy/dt = f(t, y)` on batched burn tensors, with the
//! vector–Jacobian products that every gradient strategy is built on.
//!
//! A field offers `eval` (the derivative) and `vjp` (the cotangent
//! `aᵀ ∂f/∂y` and, accumulated into a parameter cotangent, `aᵀ ∂f/∂θ`).
//! `eval_saving` / `vjp_saved` split the VJP so that a gradient strategy which
//! has just evaluated `f` at a point can reuse what the forward pass computed.

use crate::host::ToHost;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

/// The time argument of a field: one time for the whole batch, or one per
/// sample (per-sample step-size control puts samples at different times).
#[derive(Clone, Debug, PartialEq)]
pub enum Time {
    /// The same time for every sample.
    Shared(f64),
    /// One time per sample, `[batch]`.
    PerSample(Vec<f64>),
}

impl Time {
    /// The time of sample `i`.
    pub fn of(&self, i: usize) -> f64 {
        match self {
            Time::Shared(t) => *t,
            Time::PerSample(ts) => ts[i],
        }
    }

    /// The shared time, if all samples share one.
    pub fn shared(&self) -> Option<f64> {
        match self {
            Time::Shared(t) => Some(*t),
            Time::PerSample(_) => None,
        }
    }

    /// The times as a column `[batch, 1]`, for fields that take `t` as an input feature.
    pub fn column(&self, batch: usize, device: &Device, like: &Tensor<2>) -> Tensor<2> {
        let values: Vec<f64> = match self {
            Time::Shared(t) => vec![*t; batch],
            Time::PerSample(ts) => ts.clone(),
        };
        Tensor::<2>::from_data(TensorData::new(values, [batch, 1]), (device, like.dtype()))
    }
}

/// Parameter cotangents: what a VJP accumulates for `aᵀ ∂f/∂θ`.
pub trait ParamCotangent: Clone {
    /// `self += w · other`.
    fn add_scaled(&mut self, other: &Self, w: f64);
    /// Reset to zero, keeping allocations.
    fn set_zero(&mut self);
}

impl ParamCotangent for () {
    fn add_scaled(&mut self, _: &Self, _: f64) {}
    fn set_zero(&mut self) {}
}

impl ParamCotangent for Vec<f64> {
    fn add_scaled(&mut self, other: &Self, w: f64) {
        for (a, b) in self.iter_mut().zip(other) {
            *a += w * b;
        }
    }
    fn set_zero(&mut self) {
        self.iter_mut().for_each(|a| *a = 0.0);
    }
}

/// A vector field `f(t, y)` on a batched state `y: [batch, ...]` (rank `D`).
pub trait VectorField<const D: usize> {
    /// Accumulator for the parameter cotangent `aᵀ ∂f/∂θ`.
    type Params: ParamCotangent;
    /// What `eval_saving` keeps for `vjp_saved` (activations, or just `(t, y)`).
    type Saved;

    /// `f(t, y)`, same shape as `y`.
    fn eval(&self, t: &Time, y: &Tensor<D>) -> Tensor<D>;

    /// `f(t, y)` plus what a later [`vjp_saved`](Self::vjp_saved) at this point needs.
    fn eval_saving(&self, t: &Time, y: &Tensor<D>) -> (Tensor<D>, Self::Saved);

    /// `aᵀ ∂f/∂y` at the saved point (same shape as `y`); when `params` is given as
    /// `(acc, w)`, also `acc += w · aᵀ ∂f/∂θ`.
    fn vjp_saved(&self, saved: &Self::Saved, a: &Tensor<D>, params: Option<(&mut Self::Params, f64)>) -> Tensor<D>;

    /// A zero parameter cotangent.
    fn zero_params(&self) -> Self::Params;

    /// Rejects an initial state the field cannot take (a width that is not the field's own),
    /// before any evaluation; the default accepts every shape.
    ///
    /// # Errors
    /// `Shape` naming the expected shape.
    fn check_state(&self, y0: &Tensor<D>) -> crate::Result<()> {
        let _ = y0;
        Ok(())
    }

    /// Whether [`vjp_saved`](Self::vjp_saved) is implemented. A field for forward solves only
    /// says `false`, and [`crate::ode::solve_for_grad`] refuses it with a typed error instead of
    /// reaching the missing VJP.
    fn has_vjp(&self) -> bool {
        true
    }

    /// `(f(t, y), ∇·f(t, y))` with the exact divergence per sample (`[batch]`, the trace of
    /// `∂f/∂y` over each sample's entries), where the field has a faster way to form it than
    /// one VJP per dimension; `None` (the default) lets the caller take the `d` VJPs.
    fn exact_divergence(&self, t: &Time, y: &Tensor<D>) -> Option<(Tensor<D>, Vec<f64>)> {
        let _ = (t, y);
        None
    }

    /// `aᵀ ∂f/∂y` (like [`vjp_saved`](Self::vjp_saved), without parameters) and, per
    /// sample, `aᵢᵀ ∂fᵢ/∂t` (`[batch]`) at the saved point, where the field forms the time
    /// derivative exactly in the same pass (a network that takes the time as an input);
    /// `None` (the default) when it cannot, and the caller differences in `t`.
    fn vjp_with_time_saved(&self, saved: &Self::Saved, a: &Tensor<D>) -> Option<(Tensor<D>, Vec<f64>)> {
        let _ = (saved, a);
        None
    }

    /// `aᵀ ∂f/∂y` at `(t, y)`, accumulating `w · aᵀ ∂f/∂θ` into `params` if given.
    fn vjp(&self, t: &Time, y: &Tensor<D>, a: &Tensor<D>, params: Option<(&mut Self::Params, f64)>) -> Tensor<D> {
        let (_, saved) = self.eval_saving(t, y);
        self.vjp_saved(&saved, a, params)
    }
}

/// `aᵀ ∂g/∂y` of a tensor function by burn's reverse-mode autodiff on one evaluation.
pub(crate) fn autodiff_vjp<const D: usize>(
    y: &Tensor<D>,
    a: &Tensor<D>,
    g: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> (Tensor<D>, burn::tensor::Gradients, Tensor<D>) {
    let y_ad = y.clone().detach().autodiff().require_grad();
    let out = g(y_ad.clone());
    let a_ad = a.clone().autodiff();
    let grads = (out * a_ad).sum().backward();
    let gy = y_ad.grad(&grads).unwrap_or_else(|| y.clone().without_autodiff().zeros_like());
    (gy, grads, y_ad)
}

/// A parameter-free field from a closure `f(t, y)`; its VJP comes from burn autodiff.
///
/// The closure must be written with burn tensor operations so that autodiff can
/// trace it (it is called on autodiff tensors inside `vjp`).
pub struct FnField<F> {
    f: F,
}

impl<F> FnField<F> {
    /// Wrap a closure `f(t, y) -> dy/dt`.
    pub fn new<const D: usize>(f: F) -> Self
    where
        F: Fn(&Time, Tensor<D>) -> Tensor<D>,
    {
        Self { f }
    }
}

impl<const D: usize, F> VectorField<D> for FnField<F>
where
    F: Fn(&Time, Tensor<D>) -> Tensor<D>,
{
    type Params = ();
    type Saved = (Time, Tensor<D>);

    fn eval(&self, t: &Time, y: &Tensor<D>) -> Tensor<D> {
        (self.f)(t, y.clone())
    }
    fn eval_saving(&self, t: &Time, y: &Tensor<D>) -> (Tensor<D>, Self::Saved) {
        ((self.f)(t, y.clone()), (t.clone(), y.clone()))
    }
    fn vjp_saved(&self, saved: &Self::Saved, a: &Tensor<D>, _: Option<(&mut (), f64)>) -> Tensor<D> {
        let (t, y) = saved;
        autodiff_vjp(y, a, |y| (self.f)(t, y)).0.without_autodiff()
    }
    fn zero_params(&self) {}
}

/// A field from a closure `f(t, y, θ)` with explicit parameter tensors `θ` (each
/// flattened to rank 1); the parameter cotangent is one `Vec<f64>` per tensor.
pub struct ParamFnField<F> {
    f: F,
    params: Vec<Tensor<1>>,
}

impl<F> ParamFnField<F> {
    /// Wrap a closure and its parameters.
    pub fn new<const D: usize>(params: Vec<Tensor<1>>, f: F) -> Self
    where
        F: Fn(&Time, Tensor<D>, &[Tensor<1>]) -> Tensor<D>,
    {
        Self { f, params }
    }

    /// The parameters.
    pub fn params(&self) -> &[Tensor<1>] {
        &self.params
    }
}

/// Cotangents of a list of flat parameter tensors, as host vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct FlatGrads(pub Vec<Vec<f64>>);

impl ParamCotangent for FlatGrads {
    fn add_scaled(&mut self, other: &Self, w: f64) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            a.add_scaled(b, w);
        }
    }
    fn set_zero(&mut self) {
        self.0.iter_mut().for_each(|v| v.set_zero());
    }
}

impl<const D: usize, F> VectorField<D> for ParamFnField<F>
where
    F: Fn(&Time, Tensor<D>, &[Tensor<1>]) -> Tensor<D>,
{
    type Params = FlatGrads;
    type Saved = (Time, Tensor<D>);

    fn eval(&self, t: &Time, y: &Tensor<D>) -> Tensor<D> {
        (self.f)(t, y.clone(), &self.params)
    }
    fn eval_saving(&self, t: &Time, y: &Tensor<D>) -> (Tensor<D>, Self::Saved) {
        (self.eval(t, y), (t.clone(), y.clone()))
    }
    fn vjp_saved(&self, saved: &Self::Saved, a: &Tensor<D>, params: Option<(&mut FlatGrads, f64)>) -> Tensor<D> {
        let (t, y) = saved;
        let p_ad: Vec<Tensor<1>> = self.params.iter().map(|p| p.clone().detach().autodiff().require_grad()).collect();
        let (gy, grads, _) = autodiff_vjp(y, a, |y| (self.f)(t, y, &p_ad));
        if let Some((acc, w)) = params {
            for (slot, p) in acc.0.iter_mut().zip(&p_ad) {
                if let Some(g) = p.grad(&grads) {
                    let g: Vec<f64> = g.to_vec_as::<f64>();
                    slot.add_scaled(&g, w);
                }
            }
        }
        gy.without_autodiff()
    }
    fn zero_params(&self) -> FlatGrads {
        FlatGrads(self.params.iter().map(|p| vec![0.0; p.dims()[0]]).collect())
    }
}

/// A burn module that is a vector field: `forward(t, y)`.
pub trait FieldModule<const D: usize>: Module + Clone {
    /// `f(t, y)`, same shape as `y`.
    fn forward(&self, t: &Time, y: Tensor<D>) -> Tensor<D>;
}

/// Parameter cotangents of a burn module, one flat tensor per float parameter,
/// convertible to burn's [`GradientsParams`] for its optimizers.
#[derive(Clone, Debug)]
pub struct ModuleGrads {
    entries: Vec<(ParamId, Vec<usize>, Tensor<1>)>,
}

struct CollectParams<'a> {
    out: &'a mut Vec<(ParamId, Vec<usize>, Tensor<1>)>,
}

impl ModuleVisitor for CollectParams<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().without_autodiff();
        let shape = value.dims().to_vec();
        let n: usize = shape.iter().product();
        let zero = Tensor::<1>::zeros([n], (&value.device(), value.dtype()));
        self.out.push((param.id, shape, zero));
    }
}

impl ModuleGrads {
    /// Zero cotangents for every float parameter of `module`.
    pub fn zeros<M: Module>(module: &M) -> Self {
        let mut entries = Vec::new();
        module.visit(&mut CollectParams { out: &mut entries });
        Self { entries }
    }

    /// Add `w ·` the gradients found in `grads` for this module's parameters.
    pub fn add_gradients<M: Module>(&mut self, module: &M, grads: &burn::tensor::Gradients, w: f64) {
        struct Adder<'a> {
            grads: &'a burn::tensor::Gradients,
            entries: &'a mut Vec<(ParamId, Vec<usize>, Tensor<1>)>,
            w: f64,
        }
        impl ModuleVisitor for Adder<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = param.val().grad(self.grads) {
                    let n = g.shape().num_elements();
                    let g = g.reshape([n]);
                    if let Some(e) = self.entries.iter_mut().find(|e| e.0 == param.id) {
                        e.2 = e.2.clone() + g.mul_scalar(self.w);
                    }
                }
            }
        }
        module.visit(&mut Adder { grads, entries: &mut self.entries, w });
    }

    /// Flat cotangent of the parameter with this id.
    pub fn get(&self, id: ParamId) -> Option<&Tensor<1>> {
        self.entries.iter().find(|e| e.0 == id).map(|e| &e.2)
    }

    /// Set the flat cotangent of a parameter (used by fused paths).
    pub(crate) fn set(&mut self, id: ParamId, value: Tensor<1>) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == id) {
            e.2 = value;
        }
    }

    /// All cotangents concatenated in visiting order, as `f64`.
    pub fn to_flat(&self) -> Vec<f64> {
        let mut out = Vec::new();
        for (_, _, t) in &self.entries {
            out.extend(t.to_vec_as::<f64>());
        }
        out
    }

    /// burn's gradient container, for `optim.step(lr, module, grads)`.
    ///
    /// # Panics
    /// For parameters of rank above 4.
    pub fn into_gradients_params(self) -> GradientsParams {
        let mut out = GradientsParams::new();
        self.register_into(&mut out);
        out
    }

    /// Add these cotangents to an existing gradient container (for a module made of several
    /// fields, e.g. an SDE's drift and diffusion networks under one optimizer).
    ///
    /// # Panics
    /// For parameters of rank above 4.
    pub fn register_into(self, out: &mut GradientsParams) {
        for (id, shape, t) in self.entries {
            match shape.len() {
                1 => out.register::<1>(id, t),
                2 => out.register::<2>(id, t.reshape([shape[0], shape[1]])),
                3 => out.register::<3>(id, t.reshape([shape[0], shape[1], shape[2]])),
                4 => out.register::<4>(id, t.reshape([shape[0], shape[1], shape[2], shape[3]])),
                r => panic!("ModuleGrads: parameter of rank {r} not supported"),
            }
        }
    }
}

impl ParamCotangent for ModuleGrads {
    fn add_scaled(&mut self, other: &Self, w: f64) {
        for (a, b) in self.entries.iter_mut().zip(&other.entries) {
            a.2 = a.2.clone() + b.2.clone().mul_scalar(w);
        }
    }
    fn set_zero(&mut self) {
        for e in &mut self.entries {
            e.2 = e.2.zeros_like();
        }
    }
}

/// Any [`FieldModule`] as a vector field, with the VJP from burn autodiff on one evaluation.
pub struct ModuleField<M> {
    /// Parameters on autodiff with gradients required, for the VJPs.
    module: M,
    /// The same parameters without autodiff, for plain evaluations: a forward pass on tracked
    /// parameters registers graph nodes that only a backward pass frees, so sampling without
    /// gradients (flow perturbation: two solves per step) grew by the whole graph of every
    /// step — a DW4 run went past 23 GB.
    plain: M,
}

impl<M: Module> ModuleField<M> {
    /// Wrap a module: a copy with autodiff and gradients required (burn's `Module::train`)
    /// for the VJP, and one without (`Module::valid`) for evaluations.
    pub fn new(module: M) -> Self {
        Self { plain: module.valid(), module: module.train() }
    }
    /// The module.
    pub fn module(&self) -> &M {
        &self.module
    }
}

impl<const D: usize, M: FieldModule<D>> VectorField<D> for ModuleField<M> {
    type Params = ModuleGrads;
    type Saved = (Time, Tensor<D>);

    fn eval(&self, t: &Time, y: &Tensor<D>) -> Tensor<D> {
        self.plain.forward(t, y.clone().without_autodiff())
    }
    fn eval_saving(&self, t: &Time, y: &Tensor<D>) -> (Tensor<D>, Self::Saved) {
        (self.eval(t, y), (t.clone(), y.clone()))
    }
    fn vjp_saved(&self, saved: &Self::Saved, a: &Tensor<D>, params: Option<(&mut ModuleGrads, f64)>) -> Tensor<D> {
        let (t, y) = saved;
        let (gy, grads, _) = autodiff_vjp(y, a, |y| self.module.forward(t, y));
        if let Some((acc, w)) = params {
            acc.add_gradients(&self.module, &grads, w);
        }
        gy.without_autodiff()
    }
    fn zero_params(&self) -> ModuleGrads {
        ModuleGrads::zeros(&self.module)
    }

    /// One backward pass per chunk of dimensions instead of one per dimension: the batch is
    /// replicated `k` times (`[k·batch, …]`), copy `j` gets the one-hot cotangent of dimension
    /// `j`, and the diagonal entries of the gradient sum to the trace. Samples are independent
    /// rows, so the copies do not mix. Chunks keep the replicated batch near
    /// `DIVERGENCE_ROWS` rows.
    fn exact_divergence(&self, t: &Time, y: &Tensor<D>) -> Option<(Tensor<D>, Vec<f64>)> {
        let dims = y.dims();
        let b = dims[0];
        let m: usize = dims[1..].iter().product();
        if b == 0 || m == 0 {
            return None;
        }
        let v = self.eval(t, y);
        let mut div = vec![0.0; b];
        let per = (DIVERGENCE_ROWS / b).clamp(1, m);
        let mut k0 = 0;
        while k0 < m {
            let kk = per.min(m - k0);
            let rep = y.clone().repeat_dim(0, kk);
            let t_rep = match t {
                Time::Shared(s) => Time::Shared(*s),
                Time::PerSample(ts) => Time::PerSample((0..kk).flat_map(|_| ts.iter().copied()).collect()),
            };
            let mut a = vec![0.0; kk * b * m];
            for j in 0..kk {
                for i in 0..b {
                    a[(j * b + i) * m + k0 + j] = 1.0;
                }
            }
            let mut shape = dims;
            shape[0] = kk * b;
            let a = Tensor::<D>::from_data(TensorData::new(a, shape), (&y.device(), y.dtype()));
            let (gy, _, _) = autodiff_vjp(&rep, &a, |y| self.module.forward(&t_rep, y));
            let g: Vec<f64> = gy.without_autodiff().to_vec_as();
            for j in 0..kk {
                for (i, d) in div.iter_mut().enumerate() {
                    *d += g[(j * b + i) * m + k0 + j];
                }
            }
            k0 += kk;
        }
        Some((v, div))
    }
}

/// Rows of the replicated batch in one pass of [`ModuleField`]'s exact divergence.
pub const DIVERGENCE_ROWS: usize = 4096;
