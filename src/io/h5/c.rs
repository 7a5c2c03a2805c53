//! The HDF5 C library backend (`hdf5-metno`, feature `hdf5-c`).

use std::collections::BTreeMap;
use std::path::Path;

use h5::types::{FixedAscii, FixedUnicode, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5_metno as h5;
use ndarray::{ArrayViewD, IxDyn};

use super::{filter_name, Attr, Compression, DType, Data, DatasetInfo, DatasetNode, GroupNode, H5Tree, Reader};
use crate::{Error, Result};

fn err(file: &Path, object: &str, e: impl std::fmt::Display) -> Error {
    Error::Hdf5 { file: file.display().to_string(), object: if object.is_empty() { "/".into() } else { object.to_string() }, reason: e.to_string() }
}

fn vlu(file: &Path, s: &str) -> Result<VarLenUnicode> {
    s.parse::<VarLenUnicode>().map_err(|e| err(file, "/", format!("string attribute `{s}`: {e}")))
}

fn write_attr(file: &Path, loc: &h5::Location, name: &str, a: &Attr) -> Result<()> {
    let e = |x| err(file, name, x);
    match a {
        Attr::Int(v) => loc.new_attr::<i64>().create(name).and_then(|at| at.write_scalar(v)).map_err(e),
        Attr::Float(v) => loc.new_attr::<f64>().create(name).and_then(|at| at.write_scalar(v)).map_err(e),
        Attr::Str(s) => {
            let s = vlu(file, s)?;
            loc.new_attr::<VarLenUnicode>().create(name).and_then(|at| at.write_scalar(&s)).map_err(e)
        }
        Attr::Ints(v) => loc.new_attr_builder().with_data(v.as_slice()).create(name).map(|_| ()).map_err(e),
        Attr::Floats(v) => loc.new_attr_builder().with_data(v.as_slice()).create(name).map(|_| ()).map_err(e),
        Attr::Strs(v) => {
            let v = v.iter().map(|s| vlu(file, s)).collect::<Result<Vec<_>>>()?;
            loc.new_attr_builder().with_data(v.as_slice()).create(name).map(|_| ()).map_err(e)
        }
    }
}

fn write_dataset(file: &Path, g: &h5::Group, prefix: &str, name: &str, d: &DatasetNode) -> Result<()> {
    let path = format!("{prefix}/{name}");
    let e = |x| err(file, &path, x);
    fn view<'a, T>(shape: &[usize], v: &'a [T]) -> ArrayViewD<'a, T> {
        ArrayViewD::from_shape(IxDyn(shape), v).expect("H5Tree::add checked the length")
    }
    let chunks = d.options.chunk_shape(&path, &d.shape)?;
    macro_rules! create {
        ($data:expr) => {{
            let mut b = g.new_dataset_builder().with_data(view(&d.shape, $data));
            if let Some(c) = &chunks {
                b = b.chunk(c.clone());
            }
            if d.options.shuffle {
                b = b.shuffle();
            }
            match d.options.compression {
                Compression::None => {}
                Compression::Deflate(l) => b = b.deflate(l),
                Compression::Lzf => b = b.lzf(),
            }
            if d.options.fletcher32 {
                b = b.fletcher32();
            }
            b.create(name).map_err(e)?
        }};
    }
    let ds = match &d.data {
        Data::F32(v) => create!(v.as_slice()),
        Data::F64(v) => create!(v.as_slice()),
        Data::I64(v) => create!(v.as_slice()),
    };
    for (k, v) in &d.attrs {
        write_attr(file, &ds, k, v)?;
    }
    Ok(())
}

fn write_group(file: &Path, g: &h5::Group, prefix: &str, node: &GroupNode) -> Result<()> {
    for (k, v) in &node.attrs {
        write_attr(file, g, k, v)?;
    }
    for (name, d) in &node.datasets {
        write_dataset(file, g, prefix, name, d)?;
    }
    for (name, child) in &node.groups {
        let cg = g.create_group(name).map_err(|e| err(file, name, e))?;
        write_group(file, &cg, &format!("{prefix}/{name}"), child)?;
    }
    Ok(())
}

/// Writes through the C library to a temporary name, then renames.
pub(super) fn write(tree: &H5Tree, path: &Path) -> Result<()> {
    let tmp = crate::train::temp_path(path)?;
    {
        let f = h5::File::create(&tmp).map_err(|e| err(&tmp, "/", e))?;
        write_group(&tmp, &f, "", &tree.root)?;
        f.close().map_err(|e| err(&tmp, "/", e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

pub(super) struct CReader {
    path: std::path::PathBuf,
    file: h5::File,
}

// `Reader` needs `Send`: checked here at compile time (hdf5-metno serialises every
// library call behind its global lock, so a handle may move between threads).
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<h5::File>();
};

fn rel(path: &str) -> &str {
    path.trim_start_matches('/')
}

impl CReader {
    pub(super) fn open(path: &Path) -> Result<Self> {
        let file = h5::File::open(path).map_err(|e| err(path, "/", e))?;
        Ok(CReader { path: path.to_path_buf(), file })
    }

    fn group(&self, path: &str) -> Result<h5::Group> {
        let p = rel(path);
        self.file.group(if p.is_empty() { "/" } else { p }).map_err(|e| err(&self.path, path, e))
    }

    fn dataset(&self, path: &str) -> Result<h5::Dataset> {
        self.file.dataset(rel(path)).map_err(|e| err(&self.path, path, e))
    }

    fn read_rows<T: h5::H5Type + Copy>(&self, path: &str, rows: Option<(usize, usize)>) -> Result<Vec<T>> {
        let d = self.dataset(path)?;
        let e = |x| err(&self.path, path, x);
        match rows {
            None => d.read_raw::<T>().map_err(e),
            Some((s, n)) => {
                use h5::{Hyperslab, Selection, SliceOrIndex};
                let shape = d.shape();
                let mut sel = vec![SliceOrIndex::SliceTo { start: s, step: 1, end: s + n, block: 1 }];
                sel.extend(shape[1..].iter().map(|&k| SliceOrIndex::SliceTo { start: 0, step: 1, end: k, block: 1 }));
                let a = d.read_slice::<T, _, IxDyn>(Selection::from(Hyperslab::from(sel))).map_err(e)?;
                Ok(a.iter().copied().collect())
            }
        }
    }
}

fn read_attr(a: &h5::Attribute) -> h5::Result<Option<Attr>> {
    let td = a.dtype()?.to_descriptor()?;
    let scalar = a.ndim() == 0;
    Ok(Some(match (td, scalar) {
        (TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) | TypeDescriptor::Boolean, true) => Attr::Int(a.read_scalar::<i64>()?),
        (TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_), false) => Attr::Ints(a.read_raw::<i64>()?),
        (TypeDescriptor::Float(_), true) => Attr::Float(a.read_scalar::<f64>()?),
        (TypeDescriptor::Float(_), false) => Attr::Floats(a.read_raw::<f64>()?),
        (TypeDescriptor::VarLenUnicode, true) => Attr::Str(a.read_scalar::<VarLenUnicode>()?.to_string()),
        (TypeDescriptor::VarLenUnicode, false) => Attr::Strs(a.read_raw::<VarLenUnicode>()?.iter().map(|s| s.to_string()).collect()),
        (TypeDescriptor::VarLenAscii, true) => Attr::Str(a.read_scalar::<VarLenAscii>()?.to_string()),
        (TypeDescriptor::VarLenAscii, false) => Attr::Strs(a.read_raw::<VarLenAscii>()?.iter().map(|s| s.to_string()).collect()),
        (TypeDescriptor::FixedAscii(_), true) => Attr::Str(a.read_scalar::<FixedAscii<4096>>()?.to_string()),
        (TypeDescriptor::FixedAscii(_), false) => Attr::Strs(a.read_raw::<FixedAscii<4096>>()?.iter().map(|s| s.to_string()).collect()),
        (TypeDescriptor::FixedUnicode(_), true) => Attr::Str(a.read_scalar::<FixedUnicode<4096>>()?.to_string()),
        (TypeDescriptor::FixedUnicode(_), false) => Attr::Strs(a.read_raw::<FixedUnicode<4096>>()?.iter().map(|s| s.to_string()).collect()),
        _ => return Ok(None),
    }))
}

impl Reader for CReader {
    fn is_group(&self, path: &str) -> bool {
        let p = rel(path);
        p.is_empty() || self.file.group(p).is_ok()
    }

    fn info(&self, path: &str) -> Result<DatasetInfo> {
        let d = self.dataset(path)?;
        let e = |x| err(&self.path, path, x);
        let dt = d.dtype().map_err(e)?;
        let dtype = match dt.to_descriptor() {
            Ok(TypeDescriptor::Float(s)) if s as usize == 4 => DType::F32,
            Ok(TypeDescriptor::Float(_)) => DType::F64,
            Ok(TypeDescriptor::Integer(_)) => DType::Int,
            Ok(TypeDescriptor::Unsigned(_)) => DType::UInt,
            Ok(TypeDescriptor::VarLenUnicode | TypeDescriptor::VarLenAscii | TypeDescriptor::FixedAscii(_) | TypeDescriptor::FixedUnicode(_)) => DType::Str,
            _ => DType::Other,
        };
        let filters = d.filters().iter().map(|f| filter_name(filter_id(f))).collect();
        Ok(DatasetInfo { path: path.to_string(), shape: d.shape(), dtype, size: dt.size(), chunks: d.chunk(), filters })
    }

    fn read_f32(&self, path: &str, rows: Option<(usize, usize)>) -> Result<Vec<f32>> {
        self.read_rows::<f32>(path, rows)
    }

    fn read_f64(&self, path: &str, rows: Option<(usize, usize)>) -> Result<Vec<f64>> {
        self.read_rows::<f64>(path, rows)
    }

    fn read_i64(&self, path: &str) -> Result<Vec<i64>> {
        self.read_rows::<i64>(path, None)
    }

    fn attrs(&self, path: &str) -> Result<BTreeMap<String, Attr>> {
        let e = |x| err(&self.path, path, x);
        let loc: h5::Location = if self.is_group(path) { (*self.group(path)?).clone() } else { (**self.dataset(path)?).clone() };
        let mut out = BTreeMap::new();
        for name in loc.attr_names().map_err(e)? {
            let a = loc.attr(&name).map_err(e)?;
            if let Some(v) = read_attr(&a).map_err(e)? {
                out.insert(name, v);
            }
        }
        Ok(out)
    }

    fn children(&self, path: &str) -> Result<(Vec<String>, Vec<String>)> {
        let g = self.group(path)?;
        let e = |x| err(&self.path, path, x);
        let (mut groups, mut datasets) = (Vec::new(), Vec::new());
        for name in g.member_names().map_err(e)? {
            if g.group(&name).is_ok() {
                groups.push(name);
            } else if g.dataset(&name).is_ok() {
                datasets.push(name);
            }
        }
        groups.sort();
        datasets.sort();
        Ok((groups, datasets))
    }
}

fn filter_id(f: &h5::filters::Filter) -> u16 {
    use h5::filters::Filter as F;
    match f {
        F::Deflate(_) => 1,
        F::Shuffle => 2,
        F::Fletcher32 => 3,
        F::SZip(..) => 4,
        F::NBit => 5,
        F::ScaleOffset(_) => 6,
        F::LZF => 32000,
        F::User(id, _) => *id as u16,
        #[allow(unreachable_patterns)]
        _ => 0,
    }
}
