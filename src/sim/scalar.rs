//! Scalars a right-hand side is written over once: `f64` to evaluate it,
//! [`Dual`] numbers for exact Jacobian products (forward mode), and [`Trace`]
//! values that record which inputs each output depends on (the sparsity
//! pattern of the Jacobian, in memory proportional to its non-zeros).
//!
//! A right-hand side generic over [`Scalar`] uses the arithmetic operators
//! between scalars and with `f64` on the right (`y[0] * 0.04`, `x / 2.0`),
//! [`Scalar::cst`] for a constant on the left (`S::cst(1.0) - y[0]`), and the
//! elementary functions below. Branching on [`Scalar::value`] is allowed (an
//! upwind flux, say); the Jacobian is then the derivative of the branch taken,
//! and the sparsity pattern is the one of the branch taken at the state where
//! it was traced, so branches must not change which inputs an output can read.

use std::cell::RefCell;
use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// The number type a closure-defined system is written over (see the module docs).
pub trait Scalar:
    Copy
    + Debug
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Add<f64, Output = Self>
    + Sub<f64, Output = Self>
    + Mul<f64, Output = Self>
    + Div<f64, Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
{
    /// A constant (zero derivative, no dependencies).
    fn cst(c: f64) -> Self;
    /// The value, for branching and printing.
    fn value(self) -> f64;
    /// `eˣ`.
    fn exp(self) -> Self;
    /// `ln x`.
    fn ln(self) -> Self;
    /// `√x`.
    fn sqrt(self) -> Self;
    /// `sin x`.
    fn sin(self) -> Self;
    /// `cos x`.
    fn cos(self) -> Self;
    /// `tanh x`.
    fn tanh(self) -> Self;
    /// `xⁿ`.
    fn powi(self, n: i32) -> Self;
    /// `xᵃ` for a constant `a`.
    fn powf(self, a: f64) -> Self;
    /// `|x|` (derivative `sign x`, 0 at 0).
    fn abs(self) -> Self;
    /// `1 / x`.
    fn recip(self) -> Self;
    /// The larger of two (the derivative of the one taken).
    fn max(self, other: Self) -> Self {
        if self.value() >= other.value() {
            self
        } else {
            other
        }
    }
    /// The smaller of two (the derivative of the one taken).
    fn min(self, other: Self) -> Self {
        if self.value() <= other.value() {
            self
        } else {
            other
        }
    }
}

impl Scalar for f64 {
    fn cst(c: f64) -> Self {
        c
    }
    fn value(self) -> f64 {
        self
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn sin(self) -> Self {
        f64::sin(self)
    }
    fn cos(self) -> Self {
        f64::cos(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn powi(self, n: i32) -> Self {
        f64::powi(self, n)
    }
    fn powf(self, a: f64) -> Self {
        f64::powf(self, a)
    }
    fn abs(self) -> Self {
        f64::abs(self)
    }
    fn recip(self) -> Self {
        f64::recip(self)
    }
}

/// A dual number `re + eps·ε` with `ε² = 0`: evaluating `f` on `y + v ε` gives
/// `f(y) + (J v) ε` exactly (forward-mode automatic differentiation).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Dual {
    /// The value.
    pub re: f64,
    /// The directional derivative.
    pub eps: f64,
}

impl Dual {
    /// `re + eps·ε`.
    pub const fn new(re: f64, eps: f64) -> Self {
        Dual { re, eps }
    }
    /// `x + x'·ε` through a function with value `fx` and derivative `dfx` at `x`.
    #[inline]
    fn chain(self, fx: f64, dfx: f64) -> Self {
        Dual { re: fx, eps: dfx * self.eps }
    }
}

impl Add for Dual {
    type Output = Dual;
    #[inline]
    fn add(self, o: Dual) -> Dual {
        Dual { re: self.re + o.re, eps: self.eps + o.eps }
    }
}
impl Sub for Dual {
    type Output = Dual;
    #[inline]
    fn sub(self, o: Dual) -> Dual {
        Dual { re: self.re - o.re, eps: self.eps - o.eps }
    }
}
impl Mul for Dual {
    type Output = Dual;
    #[inline]
    fn mul(self, o: Dual) -> Dual {
        Dual { re: self.re * o.re, eps: self.eps * o.re + self.re * o.eps }
    }
}
impl Div for Dual {
    type Output = Dual;
    #[inline]
    fn div(self, o: Dual) -> Dual {
        let q = self.re / o.re;
        Dual { re: q, eps: (self.eps - q * o.eps) / o.re }
    }
}
impl Neg for Dual {
    type Output = Dual;
    #[inline]
    fn neg(self) -> Dual {
        Dual { re: -self.re, eps: -self.eps }
    }
}
impl Add<f64> for Dual {
    type Output = Dual;
    #[inline]
    fn add(self, c: f64) -> Dual {
        Dual { re: self.re + c, eps: self.eps }
    }
}
impl Sub<f64> for Dual {
    type Output = Dual;
    #[inline]
    fn sub(self, c: f64) -> Dual {
        Dual { re: self.re - c, eps: self.eps }
    }
}
impl Mul<f64> for Dual {
    type Output = Dual;
    #[inline]
    fn mul(self, c: f64) -> Dual {
        Dual { re: self.re * c, eps: self.eps * c }
    }
}
impl Div<f64> for Dual {
    type Output = Dual;
    #[inline]
    fn div(self, c: f64) -> Dual {
        Dual { re: self.re / c, eps: self.eps / c }
    }
}

/// `a op= b` as `a = a op b`, for a scalar type with the binary operators.
macro_rules! assign_ops {
    ($t:ty) => {
        impl AddAssign for $t {
            #[inline]
            fn add_assign(&mut self, o: $t) {
                *self = *self + o;
            }
        }
        impl SubAssign for $t {
            #[inline]
            fn sub_assign(&mut self, o: $t) {
                *self = *self - o;
            }
        }
        impl MulAssign for $t {
            #[inline]
            fn mul_assign(&mut self, o: $t) {
                *self = *self * o;
            }
        }
        impl DivAssign for $t {
            #[inline]
            fn div_assign(&mut self, o: $t) {
                *self = *self / o;
            }
        }
    };
}
assign_ops!(Dual);
assign_ops!(Trace);

impl Scalar for Dual {
    fn cst(c: f64) -> Self {
        Dual { re: c, eps: 0.0 }
    }
    fn value(self) -> f64 {
        self.re
    }
    fn exp(self) -> Self {
        let e = self.re.exp();
        self.chain(e, e)
    }
    fn ln(self) -> Self {
        self.chain(self.re.ln(), 1.0 / self.re)
    }
    fn sqrt(self) -> Self {
        let s = self.re.sqrt();
        self.chain(s, 0.5 / s)
    }
    fn sin(self) -> Self {
        self.chain(self.re.sin(), self.re.cos())
    }
    fn cos(self) -> Self {
        self.chain(self.re.cos(), -self.re.sin())
    }
    fn tanh(self) -> Self {
        let th = self.re.tanh();
        self.chain(th, 1.0 - th * th)
    }
    fn powi(self, n: i32) -> Self {
        match n {
            0 => Dual::cst(1.0),
            _ => self.chain(self.re.powi(n), n as f64 * self.re.powi(n - 1)),
        }
    }
    fn powf(self, a: f64) -> Self {
        if a == 0.0 {
            return Dual::cst(1.0);
        }
        self.chain(self.re.powf(a), a * self.re.powf(a - 1.0))
    }
    fn abs(self) -> Self {
        let s = if self.re > 0.0 {
            1.0
        } else if self.re < 0.0 {
            -1.0
        } else {
            0.0
        };
        self.chain(self.re.abs(), s)
    }
    fn recip(self) -> Self {
        let r = 1.0 / self.re;
        self.chain(r, -r * r)
    }
}

/// A value with the set of inputs it depends on, for detecting the sparsity
/// pattern of `∂f/∂y` from one evaluation of `f`.
///
/// The sets live in a per-thread arena (so `Trace` is `Copy`); they are built
/// while `trace_pattern` runs and dropped when it returns. A set larger than
/// the arena's cap marks the trace as dense, which stops the bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trace {
    value: f64,
    /// Index of the dependency set in the arena (0: the empty set).
    set: u32,
}

struct Arena {
    sets: Vec<Vec<u32>>,
    cap: usize,
    overflow: bool,
}

thread_local! {
    static ARENA: RefCell<Arena> = const { RefCell::new(Arena { sets: Vec::new(), cap: 0, overflow: false }) };
}

impl Trace {
    /// The union of the dependencies of `a` and `b` with the value `value`.
    fn union(value: f64, a: u32, b: u32) -> Trace {
        if a == b || b == 0 {
            return Trace { value, set: a };
        }
        if a == 0 {
            return Trace { value, set: b };
        }
        ARENA.with(|arena| {
            let mut arena = arena.borrow_mut();
            if arena.overflow {
                return Trace { value, set: 0 };
            }
            let (sa, sb) = (&arena.sets[a as usize], &arena.sets[b as usize]);
            let mut out = Vec::with_capacity(sa.len() + sb.len());
            let (mut i, mut j) = (0, 0);
            while i < sa.len() && j < sb.len() {
                match sa[i].cmp(&sb[j]) {
                    std::cmp::Ordering::Less => {
                        out.push(sa[i]);
                        i += 1;
                    }
                    std::cmp::Ordering::Greater => {
                        out.push(sb[j]);
                        j += 1;
                    }
                    std::cmp::Ordering::Equal => {
                        out.push(sa[i]);
                        i += 1;
                        j += 1;
                    }
                }
            }
            out.extend_from_slice(&sa[i..]);
            out.extend_from_slice(&sb[j..]);
            if out.len() > arena.cap || arena.sets.len() >= u32::MAX as usize {
                arena.overflow = true;
                return Trace { value, set: 0 };
            }
            arena.sets.push(out);
            Trace { value, set: (arena.sets.len() - 1) as u32 }
        })
    }
    fn unary(self, value: f64) -> Trace {
        Trace { value, set: self.set }
    }
}

/// The sparsity pattern of `∂f/∂y` traced from one evaluation: `rows[i]` lists
/// the inputs `j` (sorted) that output `i` depends on; `None` when some output
/// depends on more than `cap` inputs (the Jacobian is then treated as dense).
///
/// `eval(y, dy)` must evaluate `f` on the traced inputs. Memory is proportional
/// to the number of operations in `f` times the dependency-set sizes, never `n²`.
pub(crate) fn trace_pattern(y: &[f64], nout: usize, cap: usize, eval: impl FnOnce(&[Trace], &mut [Trace])) -> Option<Vec<Vec<u32>>> {
    ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        arena.sets.clear();
        arena.sets.push(Vec::new());
        arena.sets.extend((0..y.len() as u32).map(|j| vec![j]));
        arena.cap = cap.max(1);
        arena.overflow = false;
    });
    let inputs: Vec<Trace> = y.iter().enumerate().map(|(j, &v)| Trace { value: v, set: j as u32 + 1 }).collect();
    let mut out = vec![Trace::cst(0.0); nout];
    eval(&inputs, &mut out);
    ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        let rows = if arena.overflow {
            None
        } else {
            // Input j is set j + 1 of the arena, whose single entry is j itself.
            Some(out.iter().map(|o| arena.sets[o.set as usize].clone()).collect())
        };
        arena.sets = Vec::new();
        arena.overflow = false;
        rows
    })
}

impl Add for Trace {
    type Output = Trace;
    fn add(self, o: Trace) -> Trace {
        Trace::union(self.value + o.value, self.set, o.set)
    }
}
impl Sub for Trace {
    type Output = Trace;
    fn sub(self, o: Trace) -> Trace {
        Trace::union(self.value - o.value, self.set, o.set)
    }
}
impl Mul for Trace {
    type Output = Trace;
    fn mul(self, o: Trace) -> Trace {
        Trace::union(self.value * o.value, self.set, o.set)
    }
}
impl Div for Trace {
    type Output = Trace;
    fn div(self, o: Trace) -> Trace {
        Trace::union(self.value / o.value, self.set, o.set)
    }
}
impl Neg for Trace {
    type Output = Trace;
    fn neg(self) -> Trace {
        self.unary(-self.value)
    }
}
impl Add<f64> for Trace {
    type Output = Trace;
    fn add(self, c: f64) -> Trace {
        self.unary(self.value + c)
    }
}
impl Sub<f64> for Trace {
    type Output = Trace;
    fn sub(self, c: f64) -> Trace {
        self.unary(self.value - c)
    }
}
impl Mul<f64> for Trace {
    type Output = Trace;
    fn mul(self, c: f64) -> Trace {
        // Kept even for c = 0: the pattern must not depend on values.
        self.unary(self.value * c)
    }
}
impl Div<f64> for Trace {
    type Output = Trace;
    fn div(self, c: f64) -> Trace {
        self.unary(self.value / c)
    }
}

impl Scalar for Trace {
    fn cst(c: f64) -> Self {
        Trace { value: c, set: 0 }
    }
    fn value(self) -> f64 {
        self.value
    }
    fn exp(self) -> Self {
        self.unary(self.value.exp())
    }
    fn ln(self) -> Self {
        self.unary(self.value.ln())
    }
    fn sqrt(self) -> Self {
        self.unary(self.value.sqrt())
    }
    fn sin(self) -> Self {
        self.unary(self.value.sin())
    }
    fn cos(self) -> Self {
        self.unary(self.value.cos())
    }
    fn tanh(self) -> Self {
        self.unary(self.value.tanh())
    }
    fn powi(self, n: i32) -> Self {
        if n == 0 {
            Trace::cst(1.0)
        } else {
            self.unary(self.value.powi(n))
        }
    }
    fn powf(self, a: f64) -> Self {
        if a == 0.0 {
            Trace::cst(1.0)
        } else {
            self.unary(self.value.powf(a))
        }
    }
    fn abs(self) -> Self {
        self.unary(self.value.abs())
    }
    fn recip(self) -> Self {
        self.unary(self.value.recip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g<S: Scalar>(x: S, y: S) -> S {
        (x * y).sin() + (x / y).exp() - x.powi(3) * 2.0 + y.sqrt().ln() + (x - y).tanh() + S::cst(1.5) / x + y.powf(1.5)
    }

    #[test]
    fn dual_derivatives_match_central_differences() {
        // Reference: central differences of the f64 evaluation, h = 1e-6 (error O(h²) ≈ 1e-11 here).
        let (x, y) = (0.7, 1.3);
        let h = 1e-6;
        let dx = g(Dual::new(x, 1.0), Dual::cst(y)).eps;
        let dy = g(Dual::cst(x), Dual::new(y, 1.0)).eps;
        let fdx = (g(x + h, y) - g(x - h, y)) / (2.0 * h);
        let fdy = (g(x, y + h) - g(x, y - h)) / (2.0 * h);
        assert!((dx - fdx).abs() < 1e-8, "{dx} vs {fdx}");
        assert!((dy - fdy).abs() < 1e-8, "{dy} vs {fdy}");
        assert_eq!(g(Dual::new(x, 1.0), Dual::cst(y)).re, g(x, y));
    }

    #[test]
    fn traces_find_each_outputs_inputs_and_overflow_to_dense() {
        let y = [1.0, 2.0, 3.0, 4.0];
        let rows = trace_pattern(&y, 3, 4, |y, out| {
            out[0] = y[0] * y[2];
            out[1] = Trace::cst(2.0) + y[3].exp() - y[3];
            out[2] = Trace::cst(7.0);
        })
        .unwrap();
        assert_eq!(rows, vec![vec![0, 2], vec![3], vec![]]);
        // The traced values are the f64 values (so branches follow the real path).
        let rows = trace_pattern(&y, 1, 2, |y, out| out[0] = y[0] + y[1] + y[2]);
        assert!(rows.is_none(), "a row of 3 inputs exceeds the cap of 2");
    }
}
