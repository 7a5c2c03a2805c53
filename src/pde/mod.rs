//! Physics-constrained generation of PDE fields: fields on grids, Gaussian-process base noise,
//! hard constraints (linear and nonlinear) with their Jacobians, Gauss–Newton projection,
//! constrained samplers (PCFM, ECI, gradient guidance), functional flow matching on FNO / CNN
//! field models, and field metrics.
//!
//! * [`grid`]: [`Grid`] (axes with spacing, periodicity, which is time) and [`Fields`]
//!   (`[batch, C, X(, Y)]`, stored flat as `[batch, C·X·Y]`).
//! * [`gp`]: the base of functional flow matching, RBF/Matérn GPs sampled by Cholesky or by
//!   circulant embedding with FFTs.
//! * [`constraint`]: the [`Constraint`] trait (`h(u)`, sparse `J`); initial condition,
//!   Dirichlet, Neumann, periodic, mass conservation ([`LinearConstraint`]); mass balance with
//!   sources and boundary fluxes ([`MassBalance`]); discretised PDE residuals
//!   ([`PdeResidual`]: Burgers' flux-form update, reaction–diffusion); constraints from burn
//!   autodiff ([`AutodiffConstraint`]); [`Stack`].
//! * [`darcy`]: the finite-volume Darcy balance of a permeability–pressure field `(a, u)`,
//!   global (one row, nonlinear) or per cell (the discrete PDE).
//! * [`mod@project`]: Gauss–Newton projection onto `h = 0` (faer), exact in one step for linear
//!   constraints.
//! * [`mod@sample`]: unconstrained, project-at-the-end, PCFM, ECI and guidance samplers.
//! * [`train`], [`model`]: functional flow matching with an optional PDE-residual term, and
//!   the trained [`FieldModel`] as a vector field in physical units.
//! * [`dataset`]: fields in PDEBench's single-file HDF5 layout (f64), with their grid.
//! * [`simulate`]: space-time fields from `sim`'s method-of-lines PDEs (diffsol).
//! * [`metrics`]: MMSE/SMSE of ensembles, constraint error, PDEBench's RMSE/nRMSE/cRMSE/bRMSE.
//!
//! ```
//! use physflow::pde::{self, Axis, Grid, LinearConstraint, Projector, ProjectOptions, Quadrature, Constraint};
//!
//! // u(x, t) on a periodic 16-point x axis and 8 times: fix the initial condition and
//! // conserve mass, then project a random field onto both.
//! let grid = Grid::space_time(Axis::space("x", 16, 0.0, 1.0 / 16.0, true), Axis::time(8, 0.0, 1.0));
//! let u0: Vec<f64> = (0..16).map(|i| 1.0 + (i as f64 / 16.0 * std::f64::consts::TAU).sin()).collect();
//! let ic = LinearConstraint::initial_condition(&grid, &u0).unwrap();
//! let mass = LinearConstraint::mass_conservation(&grid, 0, Quadrature::Uniform, None).unwrap();
//! let both = pde::Stack::new(vec![Box::new(ic), Box::new(mass)]).unwrap();
//! let mut u: Vec<f64> = (0..grid.len()).map(|i| ((i * 37) % 11) as f64 / 11.0).collect();
//! let report = Projector::new(&both, ProjectOptions::default()).unwrap().project(&mut u).unwrap();
//! assert_eq!(report.iterations, 1); // linear: one Gauss–Newton step is exact
//! let mut h = vec![0.0; both.rows()];
//! both.residual(&u, &mut h);
//! assert!(h.iter().all(|r| r.abs() < 1e-12));
//! ```

pub mod constraint;
pub mod darcy;
pub mod dataset;
pub mod gp;
pub mod grid;
pub mod metrics;
pub mod model;
pub mod problems;
pub mod project;
pub mod sample;
pub mod simulate;
pub mod train;

pub use constraint::{
    AutodiffConstraint, BoundaryFlux, Constraint, Jacobian, LinearConstraint, MassBalance, Operator, PdeResidual, Points, Quadrature, Side, SourceTerm,
    SparseRow, Stack, TimeValues,
};
pub use darcy::{darcy_grid, DarcyFlux, DarcyScope};
pub use dataset::{read_fields, write_fields};
pub use gp::{GpConfig, GpMethod, GpSampler, Kernel};
pub use grid::{Axis, AxisKind, Fields, Grid};
pub use metrics::{constraint_error, ensemble_moments, mmse_smse, pdebench_errors, ConstraintError, PairedErrors};
pub use model::{FieldModel, FieldModelMeta};
pub use problems::GaussianFlow;
pub use project::{project, ProjectMode, ProjectOptions, ProjectReport, Projector};
pub use sample::{sample, Anchor, PcfmOptions, Relax, SampleConfig, SampleStats, Sampler, Samples};
pub use simulate::{simulate_fields, space_time_field, space_time_grid};
pub use train::{train_ffm, FfmConfig, FfmProblem, FfmReport, FfmTrainer, FieldData};
