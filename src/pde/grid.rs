//! Fields on grids: `[batch, channels, x]` or `[batch, channels, x, y]`, with the grid's
//! metadata (coordinates, spacing, which axis is time, which are periodic) carried alongside.
//! A space-time solution `u(x, t)` of a 1D PDE is the 2D field with axes `[x, t]`, the layout
//! of PCFM and PDEBench (time last).
//!
//! Values are stored flattened row-major, `[batch, C·X·Y]` (channel slowest, the last axis
//! fastest), the layout the constraints and samplers work on.

use ndarray::{Array2, ArrayD, ArrayView1, ArrayView2, IxDyn};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What an axis of a field is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AxisKind {
    /// A spatial axis; `periodic` when the point after the last is the first.
    Space {
        /// Whether the axis wraps around.
        periodic: bool,
    },
    /// The physical time of a space-time field (PDEBench puts it last).
    Time,
}

/// One axis: `n` points `start + i·step`, `i = 0..n`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    /// Name (`"x"`, `"t"`).
    pub name: String,
    /// Number of points.
    pub n: usize,
    /// Coordinate of the first point.
    pub start: f64,
    /// Spacing (`> 0`).
    pub step: f64,
    /// Space or time.
    pub kind: AxisKind,
}

impl Axis {
    /// A spatial axis.
    pub fn space(name: &str, n: usize, start: f64, step: f64, periodic: bool) -> Self {
        Axis { name: name.into(), n, start, step, kind: AxisKind::Space { periodic } }
    }

    /// The time axis of `n` points on `[t0, t1]` (both ends included).
    pub fn time(n: usize, t0: f64, t1: f64) -> Self {
        Axis { name: "t".into(), n, start: t0, step: (t1 - t0) / (n.max(2) - 1) as f64, kind: AxisKind::Time }
    }

    /// The coordinates, `[n]`.
    pub fn coords(&self) -> Vec<f64> {
        (0..self.n).map(|i| self.start + i as f64 * self.step).collect()
    }
}

/// The grid of a field: named channels and one or two axes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Channel names (`["u"]`).
    pub channels: Vec<String>,
    /// `[x]` or `[x, y]` (`[x, t]` for space-time fields).
    pub axes: Vec<Axis>,
}

impl Grid {
    /// A single-channel space-time grid `u(x, t)`, axes `[x, t]`.
    pub fn space_time(x: Axis, t: Axis) -> Self {
        Grid { channels: vec!["u".into()], axes: vec![x, t] }
    }

    /// Checks the axes (one or two, at least one point, positive finite spacing, at most one
    /// time axis, and it is the last).
    ///
    /// # Errors
    /// `InvalidArgument` naming the axis.
    pub fn validate(&self) -> Result<()> {
        if self.channels.is_empty() || self.axes.is_empty() || self.axes.len() > 2 {
            return Err(Error::invalid(
                "grid",
                format!("need at least one channel and one or two axes, got {} channels and {} axes", self.channels.len(), self.axes.len()),
            ));
        }
        for (k, a) in self.axes.iter().enumerate() {
            if a.n == 0 || !(a.step > 0.0 && a.step.is_finite()) || !a.start.is_finite() {
                return Err(Error::invalid("grid", format!("axis `{}` needs n > 0 and a positive finite step, got n = {}, step = {}", a.name, a.n, a.step)));
            }
            if a.kind == AxisKind::Time && k + 1 != self.axes.len() {
                return Err(Error::invalid("grid", format!("the time axis `{}` must be the last axis", a.name)));
            }
        }
        Ok(())
    }

    /// `[C, X]` or `[C, X, Y]`.
    pub fn shape(&self) -> Vec<usize> {
        std::iter::once(self.channels.len()).chain(self.axes.iter().map(|a| a.n)).collect()
    }

    /// `[C, X, Y]` with `Y = 1` for a 1D grid: the shape the field models take.
    pub fn shape4(&self) -> [usize; 3] {
        [self.channels.len(), self.axes[0].n, self.axes.get(1).map_or(1, |a| a.n)]
    }

    /// Values per field, `C·X·Y`.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// Whether the grid holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flat index of `(channel, i, j)` (`j = 0` on a 1D grid).
    pub fn index(&self, c: usize, i: usize, j: usize) -> usize {
        let [_, nx, ny] = self.shape4();
        (c * nx + i) * ny + j
    }

    /// The time axis, if the last axis is one.
    pub fn time_axis(&self) -> Option<&Axis> {
        self.axes.last().filter(|a| a.kind == AxisKind::Time)
    }

    /// The spatial axes (all but a trailing time axis).
    pub fn space_axes(&self) -> &[Axis] {
        let n = self.axes.len() - usize::from(self.time_axis().is_some());
        &self.axes[..n]
    }

    /// The 1D space-time layout `[x, t]` as `(x axis, t axis)`, or an error naming what the
    /// caller (`what`) needs.
    pub(crate) fn as_space_time(&self, what: &str) -> Result<(&Axis, &Axis)> {
        match (self.axes.as_slice(), self.time_axis()) {
            ([x, _], Some(t)) if matches!(x.kind, AxisKind::Space { .. }) => Ok((x, t)),
            _ => Err(Error::invalid(
                "grid",
                format!("{what} needs a space-time grid with axes [x, t], got {:?}", self.axes.iter().map(|a| a.name.as_str()).collect::<Vec<_>>()),
            )),
        }
    }

    /// Checks that `values` is `[batch, len]` for this grid.
    ///
    /// # Errors
    /// `Shape` with the expected width.
    pub fn check_flat(&self, what: &str, values: &ArrayView2<'_, f64>) -> Result<()> {
        if values.ncols() != self.len() {
            return Err(Error::Shape { what: what.into(), expected: vec![values.nrows(), self.len()], got: values.shape().to_vec() });
        }
        Ok(())
    }
}

/// A batch of fields on one grid, flattened to `[batch, C·X·Y]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Fields {
    /// The grid.
    pub grid: Grid,
    /// `[batch, C·X·Y]`, row-major per field.
    pub values: Array2<f64>,
}

impl Fields {
    /// From an array `[batch, C, X]` or `[batch, C, X, Y]`.
    ///
    /// # Errors
    /// `Shape` when the array does not match the grid; `InvalidArgument` for an invalid grid.
    pub fn new(grid: Grid, values: ArrayD<f64>) -> Result<Self> {
        grid.validate()?;
        let mut expected = vec![values.shape().first().copied().unwrap_or(0)];
        expected.extend(grid.shape());
        if values.shape() != expected.as_slice() {
            return Err(Error::Shape { what: "fields".into(), expected, got: values.shape().to_vec() });
        }
        let b = expected[0];
        let n = grid.len();
        let flat = values.as_standard_layout().iter().copied().collect::<Vec<_>>();
        Ok(Fields { grid, values: Array2::from_shape_vec((b, n), flat).expect("sizes checked") })
    }

    /// From flat rows `[batch, C·X·Y]`.
    ///
    /// # Errors
    /// `Shape` for a wrong width.
    pub fn from_flat(grid: Grid, values: Array2<f64>) -> Result<Self> {
        grid.validate()?;
        grid.check_flat("fields", &values.view())?;
        Ok(Fields { grid, values })
    }

    /// Number of fields.
    pub fn batch(&self) -> usize {
        self.values.nrows()
    }

    /// Field `i`, flat.
    pub fn sample(&self, i: usize) -> ArrayView1<'_, f64> {
        self.values.row(i)
    }

    /// As `[batch, C, X]` or `[batch, C, X, Y]`.
    pub fn to_array(&self) -> ArrayD<f64> {
        let mut shape = vec![self.batch()];
        shape.extend(self.grid.shape());
        ArrayD::from_shape_vec(IxDyn(&shape), self.values.iter().copied().collect()).expect("sizes match")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row-major flattening: `(c, i, j)` of a `[2, 3, 4]` field sits at `(c·3 + i)·4 + j`, and
    /// `Fields::new` then `to_array` is the identity.
    #[test]
    fn flat_layout_round_trip() {
        let grid = Grid { channels: vec!["u".into(), "v".into()], axes: vec![Axis::space("x", 3, 0.0, 0.5, true), Axis::time(4, 0.0, 1.0)] };
        let a = ArrayD::from_shape_fn(IxDyn(&[2, 2, 3, 4]), |ix| (1000 * ix[0] + 100 * ix[1] + 10 * ix[2] + ix[3]) as f64);
        let f = Fields::new(grid.clone(), a.clone()).unwrap();
        assert_eq!(f.values[[1, grid.index(1, 2, 3)]], 1123.0);
        assert_eq!(f.to_array(), a);
        assert_eq!(grid.time_axis().unwrap().coords()[3], 1.0);
        assert!(Fields::new(grid, ArrayD::zeros(IxDyn(&[2, 2, 3, 5]))).is_err());
    }
}
