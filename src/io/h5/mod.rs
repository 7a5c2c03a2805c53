//! HDF5 files behind one API, two backends.
//!
//! - [`H5Backend::Pure`] (default): the pure-Rust `hdf5-pure` crate, which builds
//!   with cargo alone and reads what h5py writes by default (gzip, LZF, shuffle,
//!   fletcher32, groups, attributes, variable-length strings). Files are opened
//!   in streaming mode, so opening a large file does not load it into memory;
//!   partial reads are windows of rows along axis 0 (one sample at a time).
//! - [`H5Backend::C`] (feature `hdf5-c`): the HDF5 C library through `hdf5-metno`,
//!   for what the pure crate lacks (`libver="latest"` chunk indices written by
//!   HDF5 2.x, parallel HDF5, very large files).
//!
//! Writing builds the whole file in memory ([`H5Tree`]) and writes it under a
//! temporary name before renaming it, so a reader never sees half a file.
//!
//! ```
//! use physflow::io::h5::{Attr, Compression, DatasetOptions, H5File, H5Tree};
//! let dir = std::env::temp_dir().join(format!("physflow-doc-h5-{}", std::process::id()));
//! let path = dir.join("demo.h5");
//! let mut tree = H5Tree::new();
//! let opts = DatasetOptions { chunks: Some(vec![1, 3]), compression: Compression::Deflate(4), shuffle: true, ..Default::default() };
//! tree.add_f32("fields/u", &[2, 3], (0..6).map(|v| v as f32).collect(), &opts).unwrap();
//! tree.set_attr("/", "system", Attr::Str("heat1d".into())).unwrap();
//! tree.write(&path).unwrap();
//! let file = H5File::open(&path).unwrap();
//! assert_eq!(file.info("fields/u").unwrap().shape, vec![2, 3]);
//! assert_eq!(file.read_f32_rows("fields/u", 1, 1).unwrap().1, vec![3.0, 4.0, 5.0]);
//! assert_eq!(file.attr("/", "system").unwrap(), Attr::Str("heat1d".into()));
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

#[cfg(feature = "hdf5-c")]
mod c;
mod pure;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Which HDF5 implementation reads or writes a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum H5Backend {
    /// `hdf5-pure` (pure Rust, always available).
    #[default]
    Pure,
    /// The HDF5 C library via `hdf5-metno` (feature `hdf5-c`).
    C,
}

impl H5Backend {
    /// The backends compiled into this build.
    pub fn available() -> Vec<H5Backend> {
        let mut v = vec![H5Backend::Pure];
        if cfg!(feature = "hdf5-c") {
            v.push(H5Backend::C);
        }
        v
    }

    /// Parses `pure` or `c`, refusing a backend this build lacks.
    pub fn parse(s: &str) -> Result<H5Backend> {
        match s {
            "pure" => Ok(H5Backend::Pure),
            "c" if cfg!(feature = "hdf5-c") => Ok(H5Backend::C),
            "c" => Err(Error::Unsupported("the HDF5 C backend needs the `hdf5-c` feature (cargo build --features hdf5-c)".into())),
            other => Err(Error::invalid("backend", format!("unknown HDF5 backend `{other}` (pure, c)"))),
        }
    }
}

/// Chunk compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Stored as is.
    #[default]
    None,
    /// zlib/deflate at level 0–9 (HDF5 filter 1; h5py's `compression="gzip"`).
    Deflate(u8),
    /// LZF (filter 32000, the compressor h5py ships): fast, lower ratio.
    Lzf,
}

/// Storage of one dataset. Compression needs chunks; when `chunks` is `None` and
/// compression is on, one chunk per row of axis 0 is used (one sample per chunk,
/// so reading a sample decompresses exactly one chunk).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct DatasetOptions {
    /// Chunk shape (same rank as the dataset), or `None`.
    pub chunks: Option<Vec<usize>>,
    /// Compression filter.
    pub compression: Compression,
    /// Byte shuffle before compression (usually better ratios on floats).
    pub shuffle: bool,
    /// Fletcher-32 checksum of every chunk: corruption is detected on read.
    pub fletcher32: bool,
}

impl DatasetOptions {
    /// One sample per chunk, deflate level 4 with shuffle, checksummed: what
    /// physflow writes for datasets of samples.
    pub fn samples() -> Self {
        DatasetOptions { chunks: None, compression: Compression::Deflate(4), shuffle: true, fletcher32: true }
    }

    /// The chunk shape to use for a dataset of `shape`: the given one (checked),
    /// or `[1, shape[1..]]` when filters need chunking, or `None` (contiguous).
    pub(crate) fn chunk_shape(&self, path: &str, shape: &[usize]) -> Result<Option<Vec<usize>>> {
        match &self.chunks {
            Some(c) => {
                if c.len() != shape.len() || c.contains(&0) {
                    return Err(Error::invalid("chunks", format!("chunk shape {c:?} does not fit dataset `{path}` of shape {shape:?}")));
                }
                Ok(Some(c.clone()))
            }
            None if self.compression != Compression::None || self.shuffle || self.fletcher32 => {
                if shape.is_empty() || shape.contains(&0) {
                    return Ok(None);
                }
                let mut c = shape.to_vec();
                c[0] = 1;
                Ok(Some(c))
            }
            None => Ok(None),
        }
    }
}

/// An attribute value (the types physflow reads and writes; h5py's scalars,
/// 1D numeric arrays and strings of either kind map onto these).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Attr {
    /// Any integer scalar.
    Int(i64),
    /// Any float scalar.
    Float(f64),
    /// A string (fixed or variable length, ASCII or UTF-8).
    Str(String),
    /// A 1D integer array.
    Ints(Vec<i64>),
    /// A 1D float array.
    Floats(Vec<f64>),
    /// A 1D string array.
    Strs(Vec<String>),
}

impl Attr {
    /// The value as a float, when it is a numeric scalar.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Attr::Int(v) => Some(*v as f64),
            Attr::Float(v) => Some(*v),
            _ => None,
        }
    }
    /// The value as a string, when it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Attr::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attr::Int(v) => write!(f, "{v}"),
            Attr::Float(v) => write!(f, "{v}"),
            Attr::Str(s) => write!(f, "{s:?}"),
            Attr::Ints(v) => write!(f, "{v:?}"),
            Attr::Floats(v) => write!(f, "{v:?}"),
            Attr::Strs(v) => write!(f, "{v:?}"),
        }
    }
}

/// Element type of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// Signed integer of any width.
    Int,
    /// Unsigned integer of any width.
    UInt,
    /// Strings.
    Str,
    /// Anything else (compound, enum, reference, ...): listed but not readable here.
    Other,
}

impl DType {
    /// Floats and integers: readable as numbers.
    pub fn is_numeric(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::Int | DType::UInt)
    }
}

/// Data of one dataset, row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
    /// 64-bit signed integers.
    I64(Vec<i64>),
}

impl Data {
    fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }
}

/// What a file says about one dataset, without reading its data.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatasetInfo {
    /// Path inside the file.
    pub path: String,
    /// Extent per axis.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Element size in bytes.
    pub size: usize,
    /// Chunk shape, `None` when contiguous or compact.
    pub chunks: Option<Vec<usize>>,
    /// Filter pipeline in order (`deflate`, `shuffle`, `fletcher32`, `lzf`, ...).
    pub filters: Vec<String>,
}

/// Names an HDF5 filter id.
/// The HDF5 signature, found at byte 0 or at 512, 1024, 2048, … (a user block before it).
const SIGNATURE: [u8; 8] = [0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n'];

/// Refuses a file shorter than the end-of-file address its superblock records, as the HDF5
/// library does ("truncated file"): a file cut short (a copy interrupted, a writer killed)
/// would otherwise open, and objects past the cut would be missing or fail one by one.
/// Superblock layouts from the HDF5 File Format Specification, §II.A: versions 0 and 1 store
/// the base, free-space, end-of-file and driver addresses after 16 (v0) or 20 (v1) bytes of
/// versions and sizes; versions 2 and 3 store base, extension, end-of-file and root addresses
/// after 4 bytes. The address is relative to the base address; all-ones means undefined.
fn check_end_of_file(path: &Path) -> Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let bad = |reason: String| Error::Hdf5 { file: path.display().to_string(), object: "/".into(), reason };
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut at = 0u64;
    let mut head = [0u8; 64];
    loop {
        if at + 8 > len {
            return Err(bad(format!("no HDF5 signature in the file's {len} bytes (not an HDF5 file, or truncated)")));
        }
        f.seek(SeekFrom::Start(at)).map_err(|e| Error::io(path, e))?;
        let mut filled = 0;
        while filled < head.len() {
            let m = f.read(&mut head[filled..]).map_err(|e| Error::io(path, e))?;
            if m == 0 {
                break;
            }
            filled += m;
        }
        if filled >= 8 && head[..8] == SIGNATURE {
            if filled < 16 {
                return Err(bad(format!("truncated inside the superblock ({len} bytes)")));
            }
            let version = head[8];
            let (offsets_at, addr_at, eof_index) = match version {
                0 => (13, 24, 2),
                1 => (13, 28, 2),
                2 | 3 => (9, 12, 2),
                v => return Err(bad(format!("unknown superblock version {v}"))),
            };
            let size = head[offsets_at] as usize;
            if !matches!(size, 2 | 4 | 8) {
                return Err(bad(format!("superblock gives a size of offsets of {size} bytes (expected 2, 4 or 8)")));
            }
            let addr = |k: usize| -> Option<u64> {
                let start = addr_at + k * size;
                let b = head[..filled].get(start..start + size)?;
                Some(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
            };
            let undefined = if size == 8 { u64::MAX } else { (1u64 << (8 * size)) - 1 };
            let (Some(base), Some(eof)) = (addr(0), addr(eof_index)) else {
                return Err(bad(format!("truncated inside the superblock ({len} bytes)")));
            };
            if eof == undefined {
                return Ok(len);
            }
            let base = if base == undefined { 0 } else { base };
            // The base address is absolute (usually the signature's position); eof is relative to it.
            let end = base.saturating_add(eof);
            if len < end {
                return Err(bad(format!("truncated file: {len} bytes, but the superblock records its end at byte {end}")));
            }
            return Ok(len);
        }
        at = if at == 0 { 512 } else { at * 2 };
    }
}

pub(crate) fn filter_name(id: u16) -> String {
    match id {
        1 => "deflate".into(),
        2 => "shuffle".into(),
        3 => "fletcher32".into(),
        4 => "szip".into(),
        5 => "nbit".into(),
        6 => "scaleoffset".into(),
        32000 => "lzf".into(),
        32001 => "blosc".into(),
        other => format!("filter {other}"),
    }
}

/// One dataset of an [`H5Tree`].
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetNode {
    /// Extent per axis.
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: Data,
    /// Storage.
    pub options: DatasetOptions,
    /// Attributes.
    pub attrs: BTreeMap<String, Attr>,
}

/// One group of an [`H5Tree`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupNode {
    /// Attributes.
    pub attrs: BTreeMap<String, Attr>,
    /// Child groups by name.
    pub groups: BTreeMap<String, GroupNode>,
    /// Child datasets by name.
    pub datasets: BTreeMap<String, DatasetNode>,
}

/// An HDF5 file to be written: groups, datasets and attributes by path
/// (`"a/b/data"`; `"/"` or `""` is the root). Missing parent groups are created.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct H5Tree {
    /// The root group.
    pub root: GroupNode,
}

fn split_path(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

impl H5Tree {
    /// An empty file.
    pub fn new() -> Self {
        H5Tree::default()
    }

    fn group_mut(&mut self, parts: &[&str], path: &str) -> Result<&mut GroupNode> {
        let mut g = &mut self.root;
        for p in parts {
            if g.datasets.contains_key(*p) {
                return Err(Error::invalid("path", format!("`{p}` in `{path}` is a dataset, not a group")));
            }
            g = g.groups.entry(p.to_string()).or_default();
        }
        Ok(g)
    }

    /// Adds a dataset at `path` with `shape` and `data` (row-major).
    pub fn add(&mut self, path: &str, shape: &[usize], data: Data, options: &DatasetOptions) -> Result<&mut DatasetNode> {
        let parts = split_path(path);
        let Some((name, parents)) = parts.split_last() else {
            return Err(Error::invalid("path", "a dataset needs a name"));
        };
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Shape { what: format!("data of dataset `{path}`"), expected: shape.to_vec(), got: vec![data.len()] });
        }
        options.chunk_shape(path, shape)?;
        if let Compression::Deflate(l) = options.compression {
            if l > 9 {
                return Err(Error::invalid("compression", format!("deflate level {l} is not in 0..=9")));
            }
        }
        let g = self.group_mut(parents, path)?;
        if g.groups.contains_key(*name) || g.datasets.contains_key(*name) {
            return Err(Error::invalid("path", format!("`{path}` already exists")));
        }
        let node = DatasetNode { shape: shape.to_vec(), data, options: options.clone(), attrs: BTreeMap::new() };
        Ok(g.datasets.entry(name.to_string()).or_insert(node))
    }

    /// [`H5Tree::add`] for `f32` data.
    pub fn add_f32(&mut self, path: &str, shape: &[usize], data: Vec<f32>, options: &DatasetOptions) -> Result<&mut DatasetNode> {
        self.add(path, shape, Data::F32(data), options)
    }

    /// [`H5Tree::add`] for `f64` data.
    pub fn add_f64(&mut self, path: &str, shape: &[usize], data: Vec<f64>, options: &DatasetOptions) -> Result<&mut DatasetNode> {
        self.add(path, shape, Data::F64(data), options)
    }

    /// Creates the group at `path` (and its parents) if it does not exist.
    pub fn group(&mut self, path: &str) -> Result<&mut GroupNode> {
        let parts = split_path(path);
        self.group_mut(&parts, path)
    }

    /// Sets attribute `name` on the group or dataset at `path`.
    pub fn set_attr(&mut self, path: &str, name: &str, value: Attr) -> Result<()> {
        let parts = split_path(path);
        if let Some((last, parents)) = parts.split_last() {
            let g = self.group_mut(parents, path)?;
            if let Some(d) = g.datasets.get_mut(*last) {
                d.attrs.insert(name.to_string(), value);
                return Ok(());
            }
        }
        self.group_mut(&parts, path)?.attrs.insert(name.to_string(), value);
        Ok(())
    }

    /// Writes the file with the default backend, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        self.write_with(path, H5Backend::default())
    }

    /// Writes the file with `backend`: to a temporary name beside `path`, then renamed.
    pub fn write_with(&self, path: &Path, backend: H5Backend) -> Result<()> {
        match backend {
            H5Backend::Pure => {
                let bytes = pure::to_bytes(self, path)?;
                crate::train::write_atomic(path, &bytes)
            }
            #[cfg(feature = "hdf5-c")]
            H5Backend::C => c::write(self, path),
            #[cfg(not(feature = "hdf5-c"))]
            H5Backend::C => Err(Error::Unsupported("the HDF5 C backend needs the `hdf5-c` feature".into())),
        }
    }
}

/// What a backend's open file can do (the reading half of the API).
pub(crate) trait Reader: Send {
    fn is_group(&self, path: &str) -> bool;
    fn info(&self, path: &str) -> Result<DatasetInfo>;
    /// Rows `[start, start + count)` of axis 0, or everything when `rows` is `None`.
    fn read_f32(&self, path: &str, rows: Option<(usize, usize)>) -> Result<Vec<f32>>;
    fn read_f64(&self, path: &str, rows: Option<(usize, usize)>) -> Result<Vec<f64>>;
    fn read_i64(&self, path: &str) -> Result<Vec<i64>>;
    fn attrs(&self, path: &str) -> Result<BTreeMap<String, Attr>>;
    /// Child groups and child datasets of the group at `path`, sorted.
    fn children(&self, path: &str) -> Result<(Vec<String>, Vec<String>)>;
}

/// An HDF5 file open for reading.
pub struct H5File {
    path: PathBuf,
    inner: Box<dyn Reader>,
    /// The file's length in bytes, for the plausibility check of declared dataset sizes.
    len: u64,
    /// Dataset descriptions already looked up (per-sample reads check shapes each time).
    infos: std::sync::Mutex<BTreeMap<String, DatasetInfo>>,
}

impl fmt::Debug for H5File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H5File").field("path", &self.path).finish()
    }
}

/// One object in [`H5File::tree`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Node {
    /// A group with its attributes.
    Group {
        /// Path from the root (`/` for the root).
        path: String,
        /// Attributes.
        attrs: BTreeMap<String, Attr>,
    },
    /// A dataset with its description and attributes.
    Dataset {
        /// Shape, type, chunks, filters.
        info: DatasetInfo,
        /// Attributes.
        attrs: BTreeMap<String, Attr>,
    },
}

impl H5File {
    /// Opens `path` with the default backend.
    pub fn open(path: &Path) -> Result<H5File> {
        H5File::open_with(path, H5Backend::default())
    }

    /// Opens `path` with `backend`. A missing, truncated or non-HDF5 file is an error naming it.
    pub fn open_with(path: &Path, backend: H5Backend) -> Result<H5File> {
        if !path.exists() {
            return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
        }
        let len = check_end_of_file(path)?;
        let inner: Box<dyn Reader> = match backend {
            H5Backend::Pure => Box::new(pure::PureReader::open(path)?),
            #[cfg(feature = "hdf5-c")]
            H5Backend::C => Box::new(c::CReader::open(path)?),
            #[cfg(not(feature = "hdf5-c"))]
            H5Backend::C => return Err(Error::Unsupported("the HDF5 C backend needs the `hdf5-c` feature".into())),
        };
        Ok(H5File { path: path.to_path_buf(), inner, len, infos: Default::default() })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn missing(&self, dataset: &str) -> Error {
        let parent = dataset.rsplit_once('/').map(|(p, _)| p).unwrap_or("/");
        let hint = match self.inner.children(parent) {
            Ok((_, ds)) if !ds.is_empty() => format!("`{}` has datasets: {}", if parent.is_empty() { "/" } else { parent }, ds.join(", ")),
            _ => String::new(),
        };
        Error::MissingDataset { file: self.path.display().to_string(), dataset: dataset.to_string(), hint }
    }

    /// Whether a dataset exists at `path`.
    pub fn has_dataset(&self, path: &str) -> bool {
        self.inner.info(path).is_ok()
    }

    /// Whether a group exists at `path`.
    pub fn has_group(&self, path: &str) -> bool {
        self.inner.is_group(path)
    }

    /// Shape, type, chunks and filters of the dataset at `path`.
    pub fn info(&self, path: &str) -> Result<DatasetInfo> {
        if let Some(i) = self.infos.lock().expect("no panic while holding the info cache").get(path) {
            return Ok(i.clone());
        }
        if self.inner.is_group(path) {
            return Err(self.mismatch(path, "a dataset", "a group".into()));
        }
        if !self.dataset_exists(path) {
            return Err(self.missing(path));
        }
        let info = self.inner.info(path)?;
        self.infos.lock().expect("no panic while holding the info cache").insert(path.to_string(), info.clone());
        Ok(info)
    }

    fn dataset_exists(&self, path: &str) -> bool {
        let parts = split_path(path);
        let Some((name, parents)) = parts.split_last() else { return false };
        match self.inner.children(&parents.join("/")) {
            Ok((_, ds)) => ds.iter().any(|d| d == name),
            Err(_) => false,
        }
    }

    fn mismatch(&self, dataset: &str, expected: &str, got: String) -> Error {
        Error::DatasetMismatch { file: self.path.display().to_string(), dataset: dataset.to_string(), expected: expected.to_string(), got }
    }

    /// The dataset's info after checking that it is numeric and, when `rank` is
    /// given, of that rank (`what` describes the axes for the error, e.g. `[N, T, X]`).
    pub fn expect(&self, path: &str, rank: Option<usize>, what: &str) -> Result<DatasetInfo> {
        let info = self.info(path)?;
        if !info.dtype.is_numeric() {
            return Err(self.mismatch(path, "numeric", format!("{:?}", info.dtype).to_lowercase()));
        }
        if let Some(r) = rank {
            if info.shape.len() != r {
                return Err(self.mismatch(path, &format!("rank {r} {what}"), format!("rank {} {:?}", info.shape.len(), info.shape)));
            }
        }
        // A damaged dataspace can declare exabytes; refuse what the file cannot hold before a
        // reader tries to allocate it. Deflate expands at most 1032:1, so data stored in this
        // file (compressed or not) fits in 1100 times its length (1 MiB at least, for sparse
        // datasets of small files). Found by tests/h5_mutation.rs.
        let declared = info.shape.iter().try_fold(info.size as u64, |acc, &n| acc.checked_mul(n as u64));
        let limit = self.len.saturating_mul(1100).max(1 << 20);
        if declared.is_none_or(|d| d > limit) {
            return Err(Error::Hdf5 {
                file: self.path.display().to_string(),
                object: path.to_string(),
                reason: format!(
                    "the dataset declares {:?} values of {} bytes, more than a file of {} bytes can hold (a damaged dataspace?)",
                    info.shape, info.size, self.len
                ),
            });
        }
        Ok(info)
    }

    /// The whole dataset as `f32` (converted from its stored type), with its shape.
    pub fn read_f32(&self, path: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let info = self.expect(path, None, "")?;
        let v = self.inner.read_f32(path, None)?;
        self.check_len(path, &info.shape, v.len())?;
        Ok((info.shape, v))
    }

    /// The whole dataset as `f64`, with its shape.
    pub fn read_f64(&self, path: &str) -> Result<(Vec<usize>, Vec<f64>)> {
        let info = self.expect(path, None, "")?;
        let v = self.inner.read_f64(path, None)?;
        self.check_len(path, &info.shape, v.len())?;
        Ok((info.shape, v))
    }

    /// The whole integer dataset, with its shape.
    pub fn read_i64(&self, path: &str) -> Result<(Vec<usize>, Vec<i64>)> {
        let info = self.expect(path, None, "")?;
        let v = self.inner.read_i64(path)?;
        self.check_len(path, &info.shape, v.len())?;
        Ok((info.shape, v))
    }

    /// Rows `[start, start + count)` of axis 0 as `f32`, with their shape
    /// `[count, shape[1..]]`; only the chunks holding them are read.
    pub fn read_f32_rows(&self, path: &str, start: usize, count: usize) -> Result<(Vec<usize>, Vec<f32>)> {
        let info = self.expect(path, None, "")?;
        let shape = self.window_shape(path, &info, start, count)?;
        let v = self.inner.read_f32(path, Some((start, count)))?;
        self.check_len(path, &shape, v.len())?;
        Ok((shape, v))
    }

    /// Rows `[start, start + count)` of axis 0 as `f64`, with their shape.
    pub fn read_f64_rows(&self, path: &str, start: usize, count: usize) -> Result<(Vec<usize>, Vec<f64>)> {
        let info = self.expect(path, None, "")?;
        let shape = self.window_shape(path, &info, start, count)?;
        let v = self.inner.read_f64(path, Some((start, count)))?;
        self.check_len(path, &shape, v.len())?;
        Ok((shape, v))
    }

    fn window_shape(&self, path: &str, info: &DatasetInfo, start: usize, count: usize) -> Result<Vec<usize>> {
        if info.shape.is_empty() || start + count > info.shape[0] {
            return Err(self.mismatch(path, &format!("at least {} rows along axis 0", start + count), format!("shape {:?}", info.shape)));
        }
        let mut s = info.shape.clone();
        s[0] = count;
        Ok(s)
    }

    fn check_len(&self, path: &str, shape: &[usize], len: usize) -> Result<()> {
        let n: usize = shape.iter().product();
        if n != len {
            return Err(Error::Hdf5 {
                file: self.path.display().to_string(),
                object: path.to_string(),
                reason: format!("read {len} values for shape {shape:?} ({n})"),
            });
        }
        Ok(())
    }

    /// Attributes of the group or dataset at `path`.
    pub fn attrs(&self, path: &str) -> Result<BTreeMap<String, Attr>> {
        if !self.inner.is_group(path) && !self.dataset_exists(path) {
            return Err(Error::Hdf5 { file: self.path.display().to_string(), object: path.to_string(), reason: "no such group or dataset".into() });
        }
        self.inner.attrs(path)
    }

    /// One attribute; a missing one is an error naming the object and attribute.
    pub fn attr(&self, path: &str, name: &str) -> Result<Attr> {
        self.attrs(path)?.remove(name).ok_or_else(|| Error::Hdf5 {
            file: self.path.display().to_string(),
            object: path.to_string(),
            reason: format!("attribute `{name}` is missing"),
        })
    }

    /// Child groups and datasets of the group at `path`, each sorted by name.
    pub fn children(&self, path: &str) -> Result<(Vec<String>, Vec<String>)> {
        if !self.inner.is_group(path) {
            return Err(Error::Hdf5 { file: self.path.display().to_string(), object: path.to_string(), reason: "not a group".into() });
        }
        self.inner.children(path)
    }

    /// Every group and dataset, depth first, groups before datasets, names sorted.
    pub fn tree(&self) -> Result<Vec<Node>> {
        let mut out = Vec::new();
        self.walk("/", 0, &mut out)?;
        Ok(out)
    }

    fn walk(&self, path: &str, depth: usize, out: &mut Vec<Node>) -> Result<()> {
        // A damaged file can link a group to one of its ancestors: bound the walk instead of
        // recursing until the stack overflows (found by tests/h5_mutation.rs).
        const MAX_DEPTH: usize = 64;
        const MAX_NODES: usize = 1 << 22;
        if depth > MAX_DEPTH || out.len() >= MAX_NODES {
            return Err(Error::Hdf5 {
                file: self.path.display().to_string(),
                object: path.chars().take(200).collect(),
                reason: format!("groups nested deeper than {MAX_DEPTH} or more than {MAX_NODES} objects: a link cycle in a damaged file?"),
            });
        }
        out.push(Node::Group { path: path.to_string(), attrs: self.inner.attrs(path)? });
        let (groups, datasets) = self.inner.children(path)?;
        let join = |n: &str| if path == "/" { format!("/{n}") } else { format!("{path}/{n}") };
        for d in &datasets {
            let p = join(d);
            out.push(Node::Dataset { info: self.inner.info(&p)?, attrs: self.inner.attrs(&p)? });
        }
        for g in &groups {
            self.walk(&join(g), depth + 1, out)?;
        }
        Ok(())
    }
}

/// A human-readable listing of [`H5File::tree`] (what `physflow data inspect` prints).
pub fn describe(file: &H5File) -> Result<String> {
    let mut s = format!("{}\n", file.path().display());
    for node in file.tree()? {
        match node {
            Node::Group { path, attrs } => {
                s += &format!("{}  (group)\n", if path == "/" { "/".to_string() } else { format!("{path}/") });
                for (k, v) in attrs {
                    s += &format!("    @{k} = {v}\n");
                }
            }
            Node::Dataset { info, attrs } => {
                let chunks = info.chunks.as_ref().map(|c| format!("chunks {c:?}")).unwrap_or_else(|| "contiguous".into());
                let filters = if info.filters.is_empty() { String::new() } else { format!(", filters [{}]", info.filters.join(", ")) };
                s += &format!("{}  {:?} {:?} ({} B/elem), {chunks}{filters}\n", info.path, info.shape, info.dtype, info.size);
                for (k, v) in attrs {
                    s += &format!("    @{k} = {v}\n");
                }
            }
        }
    }
    Ok(s)
}
