//! PDEBench's HDF5 layouts (Takamoto et al. 2022, "PDEBench: An Extensive
//! Benchmark for Scientific Machine Learning"), read and written faithfully so that
//! files move between h5py, PDEBench's loaders and physflow unchanged.
//!
//! - **Single file** ([`SingleFile`]): fields of shape `[N, T, X]` (1D) or
//!   `[N, T, X, Y]` (2D) at the root — `tensor` for scalar equations, or
//!   `density`, `pressure`, `Vx`, `Vy`, `Vz` for compressible flow — plus
//!   `x-coordinate [X]`, `y-coordinate [Y]` and `t-coordinate` (`[T]`, or `[T+1]`
//!   as in PDEBench's advection and Burgers files), all `f32`, and scalar root
//!   attributes with the equation's parameters (`beta`, `Nu`, `rho`, ...).
//! - **Grouped per seed** ([`Grouped`]): root groups `0000`, `0001`, … each with
//!   `data [T, X(, Y), C]` and `grid/x`, `grid/y`, `grid/t` (PDEBench's 2D
//!   diffusion–reaction, shallow water and Darcy-like files).
//!
//! physflow writes fields as `f32` with one sample per chunk (single file) or one
//! seed per chunk (grouped), deflate-compressed by default.

use std::collections::BTreeMap;
use std::path::Path;

use super::h5::{Attr, DatasetOptions, H5File, H5Tree};
use crate::{Error, Result};

/// The coordinate datasets of the single-file layout.
pub const COORDINATES: [&str; 3] = ["x-coordinate", "y-coordinate", "t-coordinate"];
/// PDEBench's compressible-flow field names, in the order they are read.
pub const CFD_FIELDS: [&str; 5] = ["density", "pressure", "Vx", "Vy", "Vz"];

/// One field of a [`SingleFile`]: `[N, T, X]` or `[N, T, X, Y]`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// Dataset name (`tensor`, `density`, ...).
    pub name: String,
    /// `[N, T, X]` or `[N, T, X, Y]`.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// A PDEBench single-file dataset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SingleFile {
    /// Fields, all of one shape.
    pub fields: Vec<Field>,
    /// `x-coordinate`, `[X]`.
    pub x: Option<Vec<f32>>,
    /// `y-coordinate`, `[Y]` (2D).
    pub y: Option<Vec<f32>>,
    /// `t-coordinate`, `[T]` or `[T+1]`.
    pub t: Option<Vec<f32>>,
    /// Root attributes (parameters, and physflow's schema when physflow wrote it).
    pub attrs: BTreeMap<String, Attr>,
}

/// One seed of a [`Grouped`] file: `data [T, X(, Y), C]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Seed {
    /// The group name (`0000`, ...).
    pub name: String,
    /// `[T, X, C]` or `[T, X, Y, C]`.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// A PDEBench grouped (per-seed) dataset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Grouped {
    /// Seeds, sorted by group name, all of one shape.
    pub seeds: Vec<Seed>,
    /// `grid/x`.
    pub x: Option<Vec<f32>>,
    /// `grid/y`.
    pub y: Option<Vec<f32>>,
    /// `grid/t`.
    pub t: Option<Vec<f32>>,
    /// Root attributes.
    pub attrs: BTreeMap<String, Attr>,
}

/// Which layout a file has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Layout {
    /// Fields at the root ([`SingleFile`]).
    Single,
    /// One group per seed ([`Grouped`]).
    Grouped,
}

fn mismatch(path: &Path, dataset: &str, expected: String, got: String) -> Error {
    Error::DatasetMismatch { file: path.display().to_string(), dataset: dataset.to_string(), expected, got }
}

/// Tells the layout of an open file: root fields → single, groups holding `data` → grouped.
pub fn detect(file: &H5File) -> Result<Layout> {
    let (groups, datasets) = file.children("/")?;
    let named = match file.attrs("/")?.get("fields") {
        Some(Attr::Strs(names)) => names.first().is_some_and(|n| datasets.contains(n)),
        _ => false,
    };
    if named || datasets.iter().any(|d| d == "tensor" || CFD_FIELDS.contains(&d.as_str())) {
        return Ok(Layout::Single);
    }
    if let Some(g) = groups.first() {
        if file.has_dataset(&format!("{g}/data")) {
            return Ok(Layout::Grouped);
        }
    }
    Err(Error::MissingDataset {
        file: file.path().display().to_string(),
        dataset: "tensor".into(),
        hint: format!(
            "not a PDEBench file: no `tensor`, no CFD fields and no seed groups with `data`; root has datasets [{}] and groups [{}]",
            datasets.join(", "),
            groups.join(", ")
        ),
    })
}

fn read_coord(file: &H5File, name: &str, len: usize, extra_ok: bool) -> Result<Option<Vec<f32>>> {
    if !file.has_dataset(name) {
        return Ok(None);
    }
    let (shape, v) = file.read_f32(name)?;
    let ok = shape.len() == 1 && (shape[0] == len || (extra_ok && shape[0] == len + 1));
    if !ok {
        let want = if extra_ok { format!("[{len}] or [{}]", len + 1) } else { format!("[{len}]") };
        return Err(mismatch(file.path(), name, want, format!("{shape:?}")));
    }
    Ok(Some(v))
}

impl SingleFile {
    /// The field names a file holds: the root attribute `fields` when present
    /// (physflow's multi-channel files), else `tensor`, else PDEBench's CFD fields.
    fn field_names(file: &H5File) -> Result<Vec<String>> {
        if let Some(Attr::Strs(names)) = file.attrs("/")?.get("fields") {
            return Ok(names.clone());
        }
        if file.has_dataset("tensor") {
            return Ok(vec!["tensor".into()]);
        }
        let cfd: Vec<String> = CFD_FIELDS.iter().filter(|f| file.has_dataset(f)).map(|f| f.to_string()).collect();
        if cfd.is_empty() {
            let (_, ds) = file.children("/")?;
            return Err(Error::MissingDataset {
                file: file.path().display().to_string(),
                dataset: "tensor".into(),
                hint: format!("root has: {}", ds.join(", ")),
            });
        }
        Ok(cfd)
    }

    /// Reads a single-file dataset, checking ranks and coordinate lengths.
    pub fn read(path: &Path) -> Result<SingleFile> {
        let file = H5File::open(path)?;
        let mut fields: Vec<Field> = Vec::new();
        for name in SingleFile::field_names(&file)? {
            let info = file.expect(&name, None, "")?;
            if !(3..=4).contains(&info.shape.len()) {
                return Err(mismatch(path, &name, "rank 3 [N, T, X] or rank 4 [N, T, X, Y]".into(), format!("rank {} {:?}", info.shape.len(), info.shape)));
            }
            if let Some(first) = fields.first() {
                if first.shape != info.shape {
                    return Err(mismatch(path, &name, format!("{:?} (the shape of `{}`)", first.shape, first.name), format!("{:?}", info.shape)));
                }
            }
            let (shape, data) = file.read_f32(&name)?;
            fields.push(Field { name, shape, data });
        }
        let shape = fields[0].shape.clone();
        let x = read_coord(&file, "x-coordinate", shape[2], false)?;
        let y = if shape.len() == 4 { read_coord(&file, "y-coordinate", shape[3], false)? } else { None };
        let t = read_coord(&file, "t-coordinate", shape[1], true)?;
        Ok(SingleFile { fields, x, y, t, attrs: file.attrs("/")? })
    }

    /// `[N, T, X(, Y)]` of the fields.
    pub fn shape(&self) -> Result<&[usize]> {
        let f = self.fields.first().ok_or_else(|| Error::invalid("fields", "a dataset needs at least one field"))?;
        Ok(&f.shape)
    }

    fn check(&self) -> Result<()> {
        let shape = self.shape()?.to_vec();
        if !(3..=4).contains(&shape.len()) {
            return Err(Error::invalid("fields", format!("fields are [N, T, X] or [N, T, X, Y], got {shape:?}")));
        }
        for f in &self.fields {
            if f.shape != shape || f.data.len() != shape.iter().product::<usize>() {
                return Err(Error::Shape { what: format!("field `{}`", f.name), expected: shape.clone(), got: f.shape.clone() });
            }
        }
        let check = |name: &str, v: &Option<Vec<f32>>, len: usize, extra: bool| -> Result<()> {
            match v {
                Some(v) if v.len() != len && !(extra && v.len() == len + 1) => Err(Error::Shape { what: name.into(), expected: vec![len], got: vec![v.len()] }),
                _ => Ok(()),
            }
        };
        check("x-coordinate", &self.x, shape[2], false)?;
        check("t-coordinate", &self.t, shape[1], true)?;
        if shape.len() == 4 {
            check("y-coordinate", &self.y, shape[3], false)?;
        }
        Ok(())
    }

    /// The file's contents as an [`H5Tree`]; fields use `options` (chunks default to one sample).
    pub fn to_tree(&self, options: &DatasetOptions) -> Result<H5Tree> {
        self.check()?;
        let mut tree = H5Tree::new();
        for f in &self.fields {
            tree.add_f32(&f.name, &f.shape, f.data.clone(), options)?;
        }
        let plain = DatasetOptions::default();
        for (name, v) in COORDINATES.iter().zip([&self.x, &self.y, &self.t]) {
            if let Some(v) = v {
                tree.add_f32(name, &[v.len()], v.clone(), &plain)?;
            }
        }
        for (k, v) in &self.attrs {
            tree.set_attr("/", k, v.clone())?;
        }
        if self.fields.len() > 1 || self.fields[0].name != "tensor" {
            tree.set_attr("/", "fields", Attr::Strs(self.fields.iter().map(|f| f.name.clone()).collect()))?;
        }
        Ok(tree)
    }

    /// Writes the file atomically.
    pub fn write(&self, path: &Path, options: &DatasetOptions) -> Result<()> {
        self.to_tree(options)?.write(path)
    }

    /// The same data in the grouped layout: seed `n` gets `data[t, x, (y), c] = field_c[n, t, x, (y)]`.
    pub fn to_grouped(&self) -> Result<Grouped> {
        self.check()?;
        let shape = self.shape()?.to_vec();
        let (n, per) = (shape[0], shape[1..].iter().product::<usize>());
        let c = self.fields.len();
        let mut seed_shape = shape[1..].to_vec();
        seed_shape.push(c);
        let seeds = (0..n)
            .map(|s| {
                let mut data = vec![0.0f32; per * c];
                for (k, f) in self.fields.iter().enumerate() {
                    for (i, v) in f.data[s * per..(s + 1) * per].iter().enumerate() {
                        data[i * c + k] = *v;
                    }
                }
                Seed { name: format!("{s:04}"), shape: seed_shape.clone(), data }
            })
            .collect();
        let mut attrs = self.attrs.clone();
        attrs.insert("fields".into(), Attr::Strs(self.fields.iter().map(|f| f.name.clone()).collect()));
        Ok(Grouped { seeds, x: self.x.clone(), y: self.y.clone(), t: self.t.clone(), attrs })
    }
}

impl Grouped {
    /// Reads a grouped dataset: every root group holding `data`, sorted by name.
    pub fn read(path: &Path) -> Result<Grouped> {
        let file = H5File::open(path)?;
        let (groups, _) = file.children("/")?;
        let mut seeds: Vec<Seed> = Vec::new();
        for g in &groups {
            let name = format!("{g}/data");
            let info = file.expect(&name, None, "")?;
            if !(3..=4).contains(&info.shape.len()) {
                return Err(mismatch(path, &name, "rank 3 [T, X, C] or rank 4 [T, X, Y, C]".into(), format!("rank {} {:?}", info.shape.len(), info.shape)));
            }
            if let Some(first) = seeds.first() {
                if first.shape != info.shape {
                    return Err(mismatch(path, &name, format!("{:?} (the shape of `{}/data`)", first.shape, first.name), format!("{:?}", info.shape)));
                }
            }
            let (shape, data) = file.read_f32(&name)?;
            seeds.push(Seed { name: g.clone(), shape, data });
        }
        let Some(first) = seeds.first() else {
            return Err(Error::MissingDataset { file: path.display().to_string(), dataset: "0000/data".into(), hint: "the file has no groups".into() });
        };
        let (shape, g) = (first.shape.clone(), first.name.clone());
        let x = read_coord(&file, &format!("{g}/grid/x"), shape[1], false)?;
        let y = if shape.len() == 4 { read_coord(&file, &format!("{g}/grid/y"), shape[2], false)? } else { None };
        let t = read_coord(&file, &format!("{g}/grid/t"), shape[0], true)?;
        Ok(Grouped { seeds, x, y, t, attrs: file.attrs("/")? })
    }

    /// The file's contents as an [`H5Tree`] (each seed's `data` in one chunk when
    /// `options.chunks` is `None`).
    pub fn to_tree(&self, options: &DatasetOptions) -> Result<H5Tree> {
        let first = self.seeds.first().ok_or_else(|| Error::invalid("seeds", "a grouped dataset needs at least one seed"))?;
        let mut opts = options.clone();
        if opts.chunks.is_none() && opts.chunk_shape("data", &first.shape)?.is_some() {
            opts.chunks = Some(first.shape.clone());
        }
        let mut tree = H5Tree::new();
        let plain = DatasetOptions::default();
        for s in &self.seeds {
            if s.shape != first.shape {
                return Err(Error::Shape { what: format!("seed `{}`", s.name), expected: first.shape.clone(), got: s.shape.clone() });
            }
            tree.add_f32(&format!("{}/data", s.name), &s.shape, s.data.clone(), &opts)?;
            for (axis, v) in ["x", "y", "t"].iter().zip([&self.x, &self.y, &self.t]) {
                if let Some(v) = v {
                    tree.add_f32(&format!("{}/grid/{axis}", s.name), &[v.len()], v.clone(), &plain)?;
                }
            }
        }
        for (k, v) in &self.attrs {
            tree.set_attr("/", k, v.clone())?;
        }
        Ok(tree)
    }

    /// Writes the file atomically.
    pub fn write(&self, path: &Path, options: &DatasetOptions) -> Result<()> {
        self.to_tree(options)?.write(path)
    }

    /// The same data in the single-file layout: channel `c` becomes the field named
    /// by the root attribute `fields` (when it has `C` names), else `tensor` (`C = 1`)
    /// or `channel_c`.
    pub fn to_single(&self) -> Result<SingleFile> {
        let first = self.seeds.first().ok_or_else(|| Error::invalid("seeds", "a grouped dataset needs at least one seed"))?;
        let c = match first.shape.last() {
            Some(&c) if c > 0 => c,
            _ => {
                return Err(Error::Shape {
                    what: format!("seed `{}` (a trailing channel axis of at least one)", first.name),
                    expected: vec![1],
                    got: first.shape.clone(),
                })
            }
        };
        let per = first.data.len() / c;
        let names: Vec<String> = match self.attrs.get("fields") {
            Some(Attr::Strs(v)) if v.len() == c => v.clone(),
            _ if c == 1 => vec!["tensor".into()],
            _ => (0..c).map(|k| format!("channel_{k}")).collect(),
        };
        let mut shape = vec![self.seeds.len()];
        shape.extend_from_slice(&first.shape[..first.shape.len() - 1]);
        let mut fields: Vec<Field> =
            names.into_iter().map(|name| Field { name, shape: shape.clone(), data: Vec::with_capacity(per * self.seeds.len()) }).collect();
        for s in &self.seeds {
            if s.shape != first.shape {
                return Err(Error::Shape { what: format!("seed `{}`", s.name), expected: first.shape.clone(), got: s.shape.clone() });
            }
            for (k, f) in fields.iter_mut().enumerate() {
                f.data.extend(s.data.iter().skip(k).step_by(c));
            }
        }
        let mut attrs = self.attrs.clone();
        attrs.remove("fields");
        Ok(SingleFile { fields, x: self.x.clone(), y: self.y.clone(), t: self.t.clone(), attrs })
    }
}

/// Converts `input` to the other layout (or to `to` when given), writing `output` atomically.
pub fn convert(input: &Path, output: &Path, to: Option<Layout>, options: &DatasetOptions) -> Result<Layout> {
    let from = detect(&H5File::open(input)?)?;
    let to = to.unwrap_or(match from {
        Layout::Single => Layout::Grouped,
        Layout::Grouped => Layout::Single,
    });
    match (from, to) {
        (Layout::Single, Layout::Grouped) => SingleFile::read(input)?.to_grouped()?.write(output, options)?,
        (Layout::Grouped, Layout::Single) => Grouped::read(input)?.to_single()?.write(output, options)?,
        (Layout::Single, Layout::Single) => SingleFile::read(input)?.write(output, options)?,
        (Layout::Grouped, Layout::Grouped) => Grouped::read(input)?.write(output, options)?,
    }
    Ok(to)
}
