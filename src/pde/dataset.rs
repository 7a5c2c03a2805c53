//! Field datasets on disk in PDEBench's single-file layout (Takamoto et al. 2022), readable by
//! h5py and PDEBench's loaders: `tensor [N, T, X]` (time before space, as PDEBench stores
//! it; `T = 1` for a grid without time, `[N, 1, X, Y]` for a 2D spatial grid),
//! `x-coordinate [X]`, `t-coordinate [T]` (`y-coordinate [Y]`), optional `params [N, P]` with
//! their names in the attribute `param_names`, and physflow's grid as JSON in the root
//! attribute `physflow_grid`. Values are f64, so constraint residuals of reference data read
//! back keep their solver-tolerance size. Written atomically through [`crate::io::h5`].

use std::path::Path;

use ndarray::{Array2, ArrayView2};

use super::grid::{Fields, Grid};
use crate::io::h5::{Attr, DatasetOptions, H5File, H5Tree};
use crate::{Error, Result};

/// `[N, T, X(, Y)]` shape of the file and the permutation from the grid's flat layout.
fn file_shape(grid: &Grid, n: usize) -> Vec<usize> {
    let [_, nx, ny] = grid.shape4();
    match (grid.time_axis().is_some(), grid.axes.len()) {
        (true, _) => vec![n, ny, nx],
        (false, 1) => vec![n, 1, nx],
        (false, _) => vec![n, 1, nx, ny],
    }
}

/// Writes one-channel fields with optional per-field parameters and extra root attributes.
///
/// # Errors
/// `InvalidArgument` for multi-channel grids; `Shape` for parameters of the wrong row count;
/// `Hdf5`/`Io` when the file cannot be written.
pub fn write_fields(path: &Path, fields: &Fields, params: Option<(&[String], ArrayView2<'_, f64>)>, attrs: &[(&str, Attr)]) -> Result<()> {
    let grid = &fields.grid;
    if grid.channels.len() != 1 {
        return Err(Error::invalid("fields", "the single-file layout holds one channel (`tensor`)"));
    }
    let n = fields.batch();
    let shape = file_shape(grid, n);
    let [_, nx, ny] = grid.shape4();
    let timed = grid.time_axis().is_some();
    let data: Vec<f64> = if timed {
        // [N, X, T] → [N, T, X].
        (0..n).flat_map(|b| (0..ny).flat_map(move |k| (0..nx).map(move |i| (b, i, k)))).map(|(b, i, k)| fields.values[[b, grid.index(0, i, k)]]).collect()
    } else {
        fields.values.iter().copied().collect()
    };
    let mut tree = H5Tree::new();
    tree.add_f64("tensor", &shape, data, &DatasetOptions::samples())?;
    let plain = DatasetOptions::default();
    let x = &grid.axes[0];
    tree.add_f64("x-coordinate", &[x.n], x.coords(), &plain)?;
    match (grid.time_axis(), grid.axes.get(1)) {
        (Some(t), _) => {
            tree.add_f64("t-coordinate", &[t.n], t.coords(), &plain)?;
        }
        (None, Some(y)) => {
            tree.add_f64("y-coordinate", &[y.n], y.coords(), &plain)?;
            tree.add_f64("t-coordinate", &[1], vec![0.0], &plain)?;
        }
        (None, None) => {
            tree.add_f64("t-coordinate", &[1], vec![0.0], &plain)?;
        }
    }
    if let Some((names, p)) = params {
        if p.nrows() != n || p.ncols() != names.len() {
            return Err(Error::Shape { what: "params".into(), expected: vec![n, names.len()], got: p.shape().to_vec() });
        }
        tree.add_f64("params", &[n, names.len()], p.iter().copied().collect(), &plain)?;
        tree.set_attr("/", "param_names", Attr::Strs(names.to_vec()))?;
    }
    let grid_json = serde_json::to_string(grid).map_err(|e| Error::Format { path: path.display().to_string(), reason: e.to_string() })?;
    tree.set_attr("/", "physflow_grid", Attr::Str(grid_json))?;
    for (k, v) in attrs {
        tree.set_attr("/", k, v.clone())?;
    }
    tree.write(path)
}

/// Fields read back from [`write_fields`], with the parameters when the file has them.
pub type ReadFields = (Fields, Option<(Vec<String>, Array2<f64>)>);

/// Reads a file written by [`write_fields`].
///
/// # Errors
/// `Hdf5`/`Io` for unreadable files, `MissingDataset` without `tensor`, `Format` without a
/// readable `physflow_grid`, `DatasetMismatch` when `tensor` does not fit the grid.
pub fn read_fields(path: &Path) -> Result<ReadFields> {
    let file = H5File::open(path)?;
    let fmt = |reason: String| Error::Format { path: path.display().to_string(), reason };
    let grid: Grid = match file.attr("/", "physflow_grid")? {
        Attr::Str(s) => serde_json::from_str(&s).map_err(|e| fmt(format!("attribute physflow_grid: {e}")))?,
        other => return Err(fmt(format!("attribute physflow_grid is {other}, expected a JSON string"))),
    };
    grid.validate()?;
    if !file.has_dataset("tensor") {
        return Err(Error::MissingDataset { file: path.display().to_string(), dataset: "tensor".into(), hint: String::new() });
    }
    let (shape, data) = file.read_f64("tensor")?;
    let n = shape.first().copied().unwrap_or(0);
    let expected = file_shape(&grid, n);
    if shape != expected {
        return Err(Error::DatasetMismatch {
            file: path.display().to_string(),
            dataset: "tensor".into(),
            expected: format!("{expected:?} for grid {:?}", grid.shape()),
            got: format!("{shape:?}"),
        });
    }
    let [_, nx, ny] = grid.shape4();
    let mut values = Array2::zeros((n, grid.len()));
    if grid.time_axis().is_some() {
        for b in 0..n {
            for k in 0..ny {
                for i in 0..nx {
                    values[[b, grid.index(0, i, k)]] = data[(b * ny + k) * nx + i];
                }
            }
        }
    } else {
        values = Array2::from_shape_vec((n, grid.len()), data).expect("shape checked");
    }
    let params = if file.has_dataset("params") {
        let names = match file.attr("/", "param_names")? {
            Attr::Strs(v) => v,
            other => return Err(fmt(format!("attribute param_names is {other}, expected strings"))),
        };
        let (pshape, p) = file.read_f64("params")?;
        if pshape != [n, names.len()] {
            return Err(Error::DatasetMismatch {
                file: path.display().to_string(),
                dataset: "params".into(),
                expected: format!("[{n}, {}]", names.len()),
                got: format!("{pshape:?}"),
            });
        }
        Some((names, Array2::from_shape_vec((n, pshape[1]), p).expect("shape checked")))
    } else {
        None
    };
    Ok((Fields::from_flat(grid, values)?, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pde::grid::Axis;

    /// Write then read: the same fields (bit for bit, f64), parameters and grid; the file puts
    /// time before space (`tensor[b, k, i] = u(x_i, t_k)` of field b).
    #[test]
    fn round_trip_and_pdebench_layout() {
        let grid = Grid::space_time(Axis::space("x", 5, 0.0, 0.2, true), Axis::time(3, 0.0, 1.0));
        let values = Array2::from_shape_fn((2, 15), |(b, p)| (b * 100 + p) as f64 / 7.0);
        let fields = Fields::from_flat(grid.clone(), values.clone()).unwrap();
        let names = vec!["d".to_string()];
        let params = Array2::from_shape_vec((2, 1), vec![0.1, 0.2]).unwrap();
        let dir = std::env::temp_dir().join(format!("physflow-pde-ds-{}", std::process::id()));
        let path = dir.join("f.h5");
        write_fields(&path, &fields, Some((&names, params.view())), &[("equation", Attr::Str("heat".into()))]).unwrap();
        let (back, p) = read_fields(&path).unwrap();
        assert_eq!(back, fields);
        assert_eq!(p.unwrap(), (names, params));
        let file = H5File::open(&path).unwrap();
        let (shape, raw) = file.read_f64("tensor").unwrap();
        assert_eq!(shape, vec![2, 3, 5]);
        assert_eq!(raw[(3 + 2) * 5 + 4], values[[1, grid.index(0, 4, 2)]]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
