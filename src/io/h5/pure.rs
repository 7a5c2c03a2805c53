//! The `hdf5-pure` backend.

use std::collections::BTreeMap;
use std::path::Path;

use hdf5_pure as hp;

use super::{filter_name, Attr, Compression, DType, Data, DatasetInfo, DatasetNode, GroupNode, H5Tree, Reader};
use crate::{Error, Result};

fn err(file: &Path, object: &str, e: impl std::fmt::Display) -> Error {
    Error::Hdf5 { file: file.display().to_string(), object: if object.is_empty() { "/".into() } else { object.to_string() }, reason: e.to_string() }
}

fn to_attr_value(a: &Attr) -> hp::AttrValue {
    match a {
        Attr::Int(v) => hp::AttrValue::I64(*v),
        Attr::Float(v) => hp::AttrValue::F64(*v),
        // Variable-length UTF-8, which is what h5py writes for a Python str.
        Attr::Str(s) => hp::AttrValue::VarLenString(s.clone()),
        Attr::Ints(v) => hp::AttrValue::I64Array(v.clone()),
        Attr::Floats(v) => hp::AttrValue::F64Array(v.clone()),
        Attr::Strs(v) => hp::AttrValue::VarLenStringArray(v.clone()),
    }
}

fn from_attr_value(a: &hp::AttrValue) -> Option<Attr> {
    use hp::AttrValue as A;
    Some(match a {
        A::F32(v) => Attr::Float(f64::from(*v)),
        A::F64(v) => Attr::Float(*v),
        A::I8(v) => Attr::Int(i64::from(*v)),
        A::I16(v) => Attr::Int(i64::from(*v)),
        A::I32(v) => Attr::Int(i64::from(*v)),
        A::I64(v) => Attr::Int(*v),
        A::U8(v) => Attr::Int(i64::from(*v)),
        A::U16(v) => Attr::Int(i64::from(*v)),
        A::U32(v) => Attr::Int(i64::from(*v)),
        A::U64(v) => Attr::Int(i64::try_from(*v).ok()?),
        A::F32Array(v) => Attr::Floats(v.iter().map(|x| f64::from(*x)).collect()),
        A::F64Array(v) => Attr::Floats(v.clone()),
        A::I8Array(v) => Attr::Ints(v.iter().map(|x| i64::from(*x)).collect()),
        A::I16Array(v) => Attr::Ints(v.iter().map(|x| i64::from(*x)).collect()),
        A::I32Array(v) => Attr::Ints(v.iter().map(|x| i64::from(*x)).collect()),
        A::I64Array(v) => Attr::Ints(v.clone()),
        A::U8Array(v) => Attr::Ints(v.iter().map(|x| i64::from(*x)).collect()),
        A::U16Array(v) => Attr::Ints(v.iter().map(|x| i64::from(*x)).collect()),
        A::U32Array(v) => Attr::Ints(v.iter().map(|x| i64::from(*x)).collect()),
        A::U64Array(v) => Attr::Ints(v.iter().map(|x| i64::try_from(*x).ok()).collect::<Option<Vec<_>>>()?),
        A::String(s) | A::AsciiString(s) | A::VarLenString(s) | A::VarLenAsciiString(s) => Attr::Str(s.clone()),
        A::StringSized { value, .. } | A::AsciiStringSized { value, .. } => Attr::Str(value.clone()),
        A::StringArray(v) | A::AsciiStringArray(v) | A::VarLenStringArray(v) | A::VarLenAsciiStringArray(v) | A::VarLenAsciiCharArray(v) => {
            Attr::Strs(v.clone())
        }
        A::StringArraySized { values, .. } | A::AsciiStringArraySized { values, .. } => Attr::Strs(values.clone()),
        _ => return None,
    })
}

fn configure(b: &mut hp::DatasetBuilder, path: &str, d: &DatasetNode) -> Result<()> {
    match &d.data {
        Data::F32(v) => b.with_f32_data(v),
        Data::F64(v) => b.with_f64_data(v),
        Data::I64(v) => b.with_i64_data(v),
    };
    let shape: Vec<u64> = d.shape.iter().map(|&s| s as u64).collect();
    b.with_shape(&shape);
    if let Some(c) = d.options.chunk_shape(path, &d.shape)? {
        let c: Vec<u64> = c.iter().map(|&s| s as u64).collect();
        b.with_chunks(&c);
    }
    if d.options.shuffle {
        b.with_shuffle();
    }
    match d.options.compression {
        Compression::None => {}
        Compression::Deflate(l) => {
            b.with_deflate(u32::from(l));
        }
        Compression::Lzf => {
            b.with_lzf();
        }
    }
    if d.options.fletcher32 {
        b.with_fletcher32();
    }
    for (k, v) in &d.attrs {
        b.set_attr(k, to_attr_value(v));
    }
    Ok(())
}

fn build_group(g: &mut hp::GroupBuilder, prefix: &str, node: &GroupNode) -> Result<()> {
    for (name, d) in &node.datasets {
        configure(g.create_dataset(name), &format!("{prefix}/{name}"), d)?;
    }
    for (name, child) in &node.groups {
        let mut cg = g.create_group(name);
        build_group(&mut cg, &format!("{prefix}/{name}"), child)?;
        g.add_group(cg.finish());
    }
    for (k, v) in &node.attrs {
        g.set_attr(k, to_attr_value(v));
    }
    Ok(())
}

/// The file's bytes.
pub(super) fn to_bytes(tree: &H5Tree, path: &Path) -> Result<Vec<u8>> {
    let mut fb = hp::FileBuilder::new();
    for (name, d) in &tree.root.datasets {
        configure(fb.create_dataset(name), name, d)?;
    }
    for (name, child) in &tree.root.groups {
        let mut g = fb.create_group(name);
        build_group(&mut g, name, child)?;
        fb.add_group(g.finish());
    }
    for (k, v) in &tree.root.attrs {
        fb.set_attr(k, to_attr_value(v));
    }
    fb.finish().map_err(|e| err(path, "/", e))
}

/// A file opened with `File::open_streaming` (metadata and chunks read on demand).
pub(super) struct PureReader {
    path: std::path::PathBuf,
    file: hp::File,
    /// Open dataset handles by path: a handle keeps the parsed object header, the
    /// chunk index and its chunk cache, so per-sample reads do not redo them.
    handles: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<hp::Dataset>>>,
}

fn rel(path: &str) -> &str {
    path.trim_start_matches('/')
}

impl PureReader {
    pub(super) fn open(path: &Path) -> Result<Self> {
        let file = hp::File::open_streaming(path).map_err(|e| err(path, "/", e))?;
        Ok(PureReader { path: path.to_path_buf(), file, handles: Default::default() })
    }

    fn group(&self, path: &str) -> Result<hp::Group> {
        let p = rel(path);
        if p.is_empty() {
            Ok(self.file.root())
        } else {
            self.file.group(p).map_err(|e| err(&self.path, path, e))
        }
    }

    fn dataset(&self, path: &str) -> Result<std::sync::Arc<hp::Dataset>> {
        let mut h = self.handles.lock().expect("no panic while holding the handle cache");
        if let Some(d) = h.get(path) {
            return Ok(d.clone());
        }
        let d = std::sync::Arc::new(self.file.dataset(rel(path)).map_err(|e| err(&self.path, path, e))?);
        h.insert(path.to_string(), d.clone());
        Ok(d)
    }
}

impl Reader for PureReader {
    fn is_group(&self, path: &str) -> bool {
        rel(path).is_empty() || self.file.group(rel(path)).is_ok()
    }

    fn info(&self, path: &str) -> Result<DatasetInfo> {
        let d = self.dataset(path)?;
        let e = |x| err(&self.path, path, x);
        let shape = d.shape().map_err(e)?.into_iter().map(|s| s as usize).collect();
        let dtype = match d.dtype().map_err(e)? {
            hp::DType::F32 => DType::F32,
            hp::DType::F64 => DType::F64,
            hp::DType::I8 | hp::DType::I16 | hp::DType::I32 | hp::DType::I64 => DType::Int,
            hp::DType::U8 | hp::DType::U16 | hp::DType::U32 | hp::DType::U64 => DType::UInt,
            hp::DType::String | hp::DType::VariableLengthString => DType::Str,
            _ => DType::Other,
        };
        let size = d.element_size().map_err(e)? as usize;
        let chunks = d.chunk_shape().map_err(e)?.map(|c| c.into_iter().map(|s| s as usize).collect());
        let filters = d.filters().into_iter().map(filter_name).collect();
        Ok(DatasetInfo { path: path.to_string(), shape, dtype, size, chunks, filters })
    }

    fn read_f32(&self, path: &str, rows: Option<(usize, usize)>) -> Result<Vec<f32>> {
        let d = self.dataset(path)?;
        match rows {
            None => d.read_f32(),
            Some((s, n)) => d.read_f32_rows(s as u64, n as u64),
        }
        .map_err(|e| err(&self.path, path, e))
    }

    fn read_f64(&self, path: &str, rows: Option<(usize, usize)>) -> Result<Vec<f64>> {
        let d = self.dataset(path)?;
        match rows {
            None => d.read_f64(),
            Some((s, n)) => d.read_f64_rows(s as u64, n as u64),
        }
        .map_err(|e| err(&self.path, path, e))
    }

    fn read_i64(&self, path: &str) -> Result<Vec<i64>> {
        self.dataset(path)?.read_i64().map_err(|e| err(&self.path, path, e))
    }

    fn attrs(&self, path: &str) -> Result<BTreeMap<String, Attr>> {
        let group = if rel(path).is_empty() { Some(self.file.root()) } else { self.file.group(rel(path)).ok() };
        let raw = match group {
            Some(g) => g.attrs(),
            None => self.dataset(path)?.attrs(),
        }
        .map_err(|e| err(&self.path, path, e))?;
        Ok(raw.iter().filter_map(|(k, v)| from_attr_value(v).map(|a| (k.clone(), a))).collect())
    }

    fn children(&self, path: &str) -> Result<(Vec<String>, Vec<String>)> {
        let g = self.group(path)?;
        let mut groups = g.groups().map_err(|e| err(&self.path, path, e))?;
        let mut datasets = g.datasets().map_err(|e| err(&self.path, path, e))?;
        groups.sort();
        datasets.sort();
        Ok((groups, datasets))
    }
}
