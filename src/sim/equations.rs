//! A [`System`] that states its Jacobian's sparsity pattern as diffsol
//! equations, so that a sparse solve starts without diffsol's pattern probe
//! (which evaluates `J` on `n` NaN-seeded copies of the state at once, `n²`
//! numbers: 8 GiB at 32,768 states) and assembles the Jacobian with one
//! coloured product per colour.
//!
//! Used by the plain solves ([`super::simulate_events`]) when
//! [`System::jacobian_pattern`] is `Some` and the storage is sparse.

use std::cell::RefCell;

use diffsol::matrix::sparsity::MatrixSparsity;
use diffsol::op::OpStatistics;
use diffsol::{ConstantOp, JacobianColoring, Matrix, NonLinearOp, NonLinearOpJacobian, OdeEquations, OdeEquationsRef, Op, UnitCallable, Vector};

use super::system::System;

/// The equations `dy/dt = f(t, y, p)`, `y(t₀) = y₀` of a system with a known pattern.
pub(crate) struct PatternEqn<'s, M: Matrix<T = f64>> {
    system: &'s dyn System,
    y0: &'s [f64],
    p: M::V,
    ctx: M::C,
    sparsity: M::Sparsity,
    coloring: JacobianColoring<M>,
    stats: RefCell<OpStatistics>,
}

impl<'s, M: Matrix<T = f64>> PatternEqn<'s, M> {
    /// The equations of `system` at parameters `p` from `y0`, with the pattern
    /// `rows` (`rows[i]`: the columns of row `i`). `Err` if the pattern does not
    /// fit the system's dimension.
    pub(crate) fn new(system: &'s dyn System, p: &[f64], y0: &'s [f64], rows: &[Vec<u32>], ctx: M::C) -> crate::Result<Self> {
        let n = system.dim();
        if rows.len() != n || rows.iter().flatten().any(|&j| j as usize >= n) {
            return Err(crate::Error::invalid(
                "jacobian_pattern",
                format!("`{}` gave a pattern of {} rows (or a column out of range) for {n} states", system.name(), rows.len()),
            ));
        }
        let non_zeros: Vec<(usize, usize)> = rows.iter().enumerate().flat_map(|(i, r)| r.iter().map(move |&j| (i, j as usize))).collect();
        let sparsity = M::Sparsity::try_from_indices(n, n, non_zeros.clone())
            .map_err(|e| crate::Error::invalid("jacobian_pattern", format!("`{}`: {e}", system.name())))?;
        let coloring = JacobianColoring::new(&sparsity, &non_zeros, ctx.clone());
        Ok(PatternEqn { system, y0, p: M::V::from_slice(p, ctx.clone()), ctx, sparsity, coloring, stats: RefCell::new(OpStatistics::default()) })
    }
}

impl<M: Matrix<T = f64>> Op for PatternEqn<'_, M> {
    type T = f64;
    type V = M::V;
    type M = M;
    type C = M::C;
    fn context(&self) -> &M::C {
        &self.ctx
    }
    fn nstates(&self) -> usize {
        self.system.dim()
    }
    fn nout(&self) -> usize {
        self.system.dim()
    }
    fn nparams(&self) -> usize {
        self.p.len()
    }
    fn statistics(&self) -> OpStatistics {
        self.stats.borrow().clone()
    }
}

/// The right-hand side of a [`PatternEqn`], borrowed for one solver call.
pub(crate) struct PatternRhs<'a, 's, M: Matrix<T = f64>>(&'a PatternEqn<'s, M>);
/// The initial state of a [`PatternEqn`].
pub(crate) struct PatternInit<'a, 's, M: Matrix<T = f64>>(&'a PatternEqn<'s, M>);

macro_rules! op_of_eqn {
    ($t:ident) => {
        impl<M: Matrix<T = f64>> Op for $t<'_, '_, M> {
            type T = f64;
            type V = M::V;
            type M = M;
            type C = M::C;
            fn context(&self) -> &M::C {
                &self.0.ctx
            }
            fn nstates(&self) -> usize {
                self.0.nstates()
            }
            fn nout(&self) -> usize {
                self.0.nout()
            }
            fn nparams(&self) -> usize {
                self.0.nparams()
            }
            fn statistics(&self) -> OpStatistics {
                self.0.statistics()
            }
        }
    };
}
op_of_eqn!(PatternRhs);
op_of_eqn!(PatternInit);

impl<M: Matrix<T = f64>> NonLinearOp for PatternRhs<'_, '_, M> {
    fn call_inplace(&self, x: &M::V, t: f64, y: &mut M::V) {
        self.0.stats.borrow_mut().increment_call();
        let system = self.0.system;
        y.for_each_batch_host([x, &self.0.p], |y, [x, p], _| system.rhs(t, x, p, y));
    }
}

impl<M: Matrix<T = f64>> NonLinearOpJacobian for PatternRhs<'_, '_, M> {
    fn jac_mul_inplace(&self, x: &M::V, t: f64, v: &M::V, y: &mut M::V) {
        self.0.stats.borrow_mut().increment_jac_mul();
        let system = self.0.system;
        y.for_each_batch_host([x, &self.0.p, v], |y, [x, p, v], _| system.jvp(t, x, p, v, y));
    }
    fn jacobian_sparsity(&self) -> Option<M::Sparsity> {
        Some(self.0.sparsity.clone())
    }
    fn jacobian_inplace(&self, x: &M::V, t: f64, y: &mut M) {
        self.0.stats.borrow_mut().increment_matrix();
        self.0.coloring.jacobian_inplace(self, x, t, y);
    }
}

impl<M: Matrix<T = f64>> ConstantOp for PatternInit<'_, '_, M> {
    fn call_inplace(&self, _t: f64, y: &mut M::V) {
        for (i, &v) in self.0.y0.iter().enumerate() {
            y.set_index(i, v);
        }
    }
}

impl<'a, 's, M: Matrix<T = f64>> OdeEquationsRef<'a> for PatternEqn<'s, M> {
    type Mass = UnitCallable<M>;
    type Rhs = PatternRhs<'a, 's, M>;
    type Root = UnitCallable<M>;
    type Init = PatternInit<'a, 's, M>;
    type Out = UnitCallable<M>;
    type Reset = UnitCallable<M>;
}

impl<'s, M: Matrix<T = f64>> OdeEquations for PatternEqn<'s, M> {
    fn rhs(&self) -> PatternRhs<'_, 's, M> {
        PatternRhs(self)
    }
    fn mass(&self) -> Option<UnitCallable<M>> {
        None
    }
    fn init(&self) -> PatternInit<'_, 's, M> {
        PatternInit(self)
    }
    fn set_params(&mut self, p: &M::V) {
        self.p.copy_from(p);
    }
    fn get_params(&self, p: &mut M::V) {
        p.copy_from(&self.p);
    }
}
