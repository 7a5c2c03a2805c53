//! The SDE solvers, one file each. A solver is a type implementing [`SdeMethod`] (its facts,
//! one step, and the step's discrete adjoint) plus one line in the `solvers!` list at the
//! end of this file, which makes it an [`SdeSolver`] variant: `SdeSolver::ALL`, serde, the
//! checks of every solve and the shared test suites (`tests/sde_solvers.rs`) pick it up.
//!
//! Reversible Heun carries an auxiliary state across steps, so it has its own integration
//! loop ([`reversible_heun::reversible_forward`]) and adjoint; the one-step methods share
//! the fixed and adaptive loops of `sde::solve`.

mod euler_heun;
mod euler_maruyama;
mod milstein;
pub(crate) mod reversible_heun;
mod sra1;

use burn::tensor::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::field::SdeField;
use super::solve::Calculus;
use super::BrownianPath;
use crate::ode::Stats;
use crate::Result;

/// What the solve loops and checks need to know about a method.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Facts {
    /// The calculus the method converges to.
    pub calculus: Calculus,
    /// Strong order for commutative diagonal noise and for additive noise; `None` where the
    /// method does not apply.
    pub strong_order: (Option<f64>, Option<f64>),
    /// Applies to additive noise only (`g` independent of `y`).
    pub additive_only: bool,
    /// Needs `∂g/∂y` (through the diffusion VJP): diagonal noise and an `SdeField` only.
    pub needs_dg: bool,
    /// Queries the space-time Lévy area of each step.
    pub levy_area: bool,
    /// Implements [`SdeMethod::step_vjp`].
    pub discrete_adjoint: bool,
}

/// The Brownian quantities of one step: `W_{t,t+h}` and, where the method asks, `H_{t,t+h}`.
pub(crate) struct Increment {
    pub dw: Tensor<2>,
    pub area: Option<Tensor<2>>,
}

impl Increment {
    pub(crate) fn query<B: BrownianPath>(solver: SdeSolver, brownian: &B, t: f64, t_next: f64, device: &Device, dtype: DType) -> Result<Self> {
        if solver.facts().levy_area {
            let (dw, area) = brownian.levy(t, t_next, device, dtype)?;
            Ok(Self { dw, area: Some(area) })
        } else {
            Ok(Self { dw: brownian.increment(t, t_next, device, dtype)?, area: None })
        }
    }
}

/// What a step kept for its discrete adjoint: the field's saved states at each drift and
/// diffusion evaluation, in the order the method evaluated them.
pub(crate) struct Saves<S: SdeField> {
    pub f: Vec<S::DriftSaved>,
    pub g: Vec<S::DiffusionSaved>,
}

impl<S: SdeField> Saves<S> {
    pub(crate) fn none() -> Self {
        Self { f: Vec::new(), g: Vec::new() }
    }
}

/// One SDE method.
pub(crate) trait SdeMethod {
    /// Its facts.
    fn facts(&self) -> Facts;

    /// One step from `(t, y)` to `t + h` with the Brownian increment `inc`; also returns what
    /// the discrete adjoint needs.
    ///
    /// # Errors
    /// `Unsupported` for a method that cannot take a step alone (reversible Heun).
    fn step<S: SdeField>(&self, field: &S, t: f64, h: f64, y: &Tensor<2>, inc: &Increment) -> Result<(Tensor<2>, Saves<S>)>;

    /// The discrete adjoint of [`step`](Self::step): `aᵀ ∂y'/∂y`, accumulating `aᵀ ∂y'/∂θ`
    /// into `p`. `None` where `Facts::discrete_adjoint` is false.
    #[allow(clippy::too_many_arguments)]
    fn step_vjp<S: SdeField>(
        &self,
        _field: &S,
        _saved: &Saves<S>,
        _a: &Tensor<2>,
        _h: f64,
        _inc: &Increment,
        _p: &mut S::Params,
        _stats: &mut Stats,
    ) -> Option<Tensor<2>> {
        None
    }
}

/// The registry: `Variant => method value`, each line one [`SdeSolver`] variant (its doc
/// comment first). Serde names are the variants in snake case.
macro_rules! solvers {
    ($($(#[doc = $doc:literal])* $variant:ident => $method:expr,)+) => {
        /// The SDE solvers. [`SdeSolver::ALL`] is the list the tests loop over.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum SdeSolver {
            $($(#[doc = $doc])* $variant,)+
        }

        impl SdeSolver {
            /// Every solver.
            pub const ALL: [SdeSolver; [$(stringify!($variant)),+].len()] = [$(SdeSolver::$variant),+];

            pub(crate) fn facts(self) -> Facts {
                match self {
                    $(SdeSolver::$variant => SdeMethod::facts(&$method),)+
                }
            }

            pub(crate) fn step<S: SdeField>(self, field: &S, t: f64, h: f64, y: &Tensor<2>, inc: &Increment) -> Result<(Tensor<2>, Saves<S>)> {
                match self {
                    $(SdeSolver::$variant => SdeMethod::step(&$method, field, t, h, y, inc),)+
                }
            }

            #[allow(clippy::too_many_arguments)]
            pub(crate) fn step_vjp<S: SdeField>(self, field: &S, saved: &Saves<S>, a: &Tensor<2>, h: f64, inc: &Increment, p: &mut S::Params, stats: &mut Stats) -> Option<Tensor<2>> {
                match self {
                    $(SdeSolver::$variant => SdeMethod::step_vjp(&$method, field, saved, a, h, inc, p, stats),)+
                }
            }
        }
    };
}

impl SdeSolver {
    /// The calculus the solver converges to (SRA1 needs additive noise, where the two agree;
    /// it is listed as Itô).
    pub fn calculus(self) -> Calculus {
        self.facts().calculus
    }

    /// Whether the solver only applies to additive noise.
    pub fn needs_additive_noise(self) -> bool {
        self.facts().additive_only
    }

    /// Strong order for commutative diagonal noise (`additive = false`) or additive noise; `None`
    /// where the solver does not apply (SRA1 on non-additive noise).
    pub fn strong_order(self, additive: bool) -> Option<f64> {
        let (commutative, additive_order) = self.facts().strong_order;
        if additive {
            additive_order
        } else {
            commutative
        }
    }
}

solvers! {
    /// Euler–Maruyama (Itô).
    EulerMaruyama => euler_maruyama::EulerMaruyama,
    /// Euler–Heun (Stratonovich).
    EulerHeun => euler_heun::EulerHeun,
    /// Milstein for diagonal noise, Itô.
    MilsteinIto => milstein::Milstein { calculus: Calculus::Ito },
    /// Milstein for diagonal noise, Stratonovich.
    MilsteinStratonovich => milstein::Milstein { calculus: Calculus::Stratonovich },
    /// Rößler's SRA1 for additive noise (uses the space-time Lévy area).
    Sra1 => sra1::Sra1,
    /// Reversible Heun (Stratonovich), algebraically reversible.
    ReversibleHeun => reversible_heun::ReversibleHeun,
}
