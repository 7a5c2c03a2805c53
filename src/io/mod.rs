//! Reading and writing arrays and datasets: HDF5 files ([`h5`], two backends behind
//! one API), PDEBench's layouts ([`pdebench`]), sharded simulation datasets with a
//! manifest ([`dataset`]), batches streamed into training ([`loader`]), and NumPy
//! `.npy` (format 1.0, little-endian f64, C order) and CSV, into which `physflow simulate`
//! writes ensembles of a library system ([`simulate_to_files`]). Every file is written
//! atomically (temporary name, then rename).

pub mod dataset;
pub mod h5;
pub mod loader;
pub mod pdebench;
mod simulate;

pub use simulate::{simulate_to_files, ArrayFormat, SimulateSpec};

use std::path::Path;

use crate::train::write_atomic;
use crate::Result;

/// The bytes of a `.npy` file holding `data` (row-major) with `shape`
/// (NumPy format 1.0: magic, header dict padded to a multiple of 64 bytes, data).
///
/// # Errors
/// `Shape` when the shape's product is not the number of values.
pub fn npy_bytes(shape: &[usize], data: &[f64]) -> Result<Vec<u8>> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(crate::Error::Shape { what: format!("npy data ({} values)", data.len()), expected: shape.to_vec(), got: vec![data.len()] });
    }
    let dims = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
    let shape_str = if shape.len() == 1 { format!("({dims},)") } else { format!("({dims})") };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape_str}, }}");
    // As numpy does: room for the first axis to grow to 21 digits, then pad so that
    // magic (6) + version (2) + header length (2) + header + '\n' ≡ 0 mod 64.
    let first = shape.first().map(|d| d.to_string().len()).unwrap_or(1);
    header.push_str(&" ".repeat(21usize.saturating_sub(first)));
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 8 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Writes `data` with `shape` to a `.npy` file atomically.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f64]) -> Result<()> {
    write_atomic(path, &npy_bytes(shape, data)?)
}

/// Reads a `.npy` file of little-endian f64 in C order (what [`write_npy`] and `np.save` of a
/// float64 array write; format 1.0, 2.0 or 3.0): `(shape, data)` row-major.
///
/// # Errors
/// `Io` for an unreadable file; `Format` naming the problem for anything else (not a `.npy`,
/// another dtype, Fortran order, a data length that does not match the shape).
pub fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).map_err(|e| crate::Error::io(path, e))?;
    let bad = |reason: String| crate::Error::Format { path: path.display().to_string(), reason };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(format!("unsupported .npy format version {v}"))),
    };
    let header = bytes.get(start..start + header_len).ok_or_else(|| bad("header runs past the end of the file".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text".into()))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}':"))? + key.len() + 3;
        Some(header[at..].trim_start())
    };
    let descr = field("descr").and_then(|v| v.split('\'').nth(1)).ok_or_else(|| bad(format!("no dtype in header {header:?}")))?;
    if descr != "<f8" && descr != "f8" {
        return Err(bad(format!("dtype {descr}: physflow reads float64 ('<f8'); convert with arr.astype('<f8')")));
    }
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(bad("Fortran-ordered array; save it with np.ascontiguousarray".into()));
    }
    let shape_text =
        field("shape").and_then(|v| v.strip_prefix('(')).and_then(|v| v.split(')').next()).ok_or_else(|| bad(format!("no shape in header {header:?}")))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>().map_err(|_| bad(format!("shape entry {d:?} is not a size"))))
        .collect::<Result<Vec<usize>>>()?;
    let data = &bytes[start + header_len..];
    let bytes_needed = shape.iter().try_fold(8usize, |acc, &d| acc.checked_mul(d));
    if bytes_needed != Some(data.len()) {
        return Err(bad(format!(
            "shape {shape:?} needs {} bytes of data, the file has {}",
            bytes_needed.map_or("more than usize::MAX".into(), |b| b.to_string()),
            data.len()
        )));
    }
    Ok((shape, data.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect()))
}

/// Writes a CSV with a header row and one row per record, atomically.
pub fn write_csv(path: &Path, header: &[String], rows: &[Vec<f64>]) -> Result<()> {
    let mut s = header.join(",");
    s.push('\n');
    for r in rows {
        s += &r.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>().join(",");
        s.push('\n');
    }
    write_atomic(path, s.as_bytes())
}

#[cfg(test)]
mod tests {
    /// `read_npy` reads back what `write_npy` writes (1D, 2D, 0 rows), and refuses other
    /// dtypes, Fortran order, truncated data and non-npy files, naming the problem.
    #[test]
    fn npy_round_trip_and_refusals() {
        let dir = std::env::temp_dir().join(format!("physflow-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.npy");
        for (shape, data) in [(vec![2, 3], vec![1.0, -2.5, 3.0, 1e-300, f64::MAX, 0.0]), (vec![4], vec![0.5; 4]), (vec![0, 2], vec![])] {
            super::write_npy(&f, &shape, &data).unwrap();
            assert_eq!(super::read_npy(&f).unwrap(), (shape, data));
        }
        let good = super::npy_bytes(&[2], &[1.0, 2.0]).unwrap();
        // The header with `from` replaced by `to` (same length, so the layout stays valid).
        let edit = |from: &[u8], to: &[u8]| {
            let at = good.windows(from.len()).position(|w| w == from).unwrap();
            let mut b = good.clone();
            b[at..at + to.len()].copy_from_slice(to);
            b
        };
        for (bytes, why) in [
            (good[..good.len() - 3].to_vec(), "bytes of data"),
            (edit(b"<f8", b"<f4"), "dtype <f4"),
            (edit(b"'fortran_order': False", b"'fortran_order': True "), "Fortran"),
            (b"hello world, not numpy".to_vec(), "magic"),
            (edit(b"(2,)", b"(9,)"), "bytes of data"),
            (edit(b"(2,), }", b"(4611686018427387904, 4), }"), "more than usize::MAX"),
        ] {
            std::fs::write(&f, &bytes).unwrap();
            let e = super::read_npy(&f).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The header of a 2×3 array is exactly what numpy 2 writes (checked with
    /// `np.save` on `np.zeros((2, 3))`: the dict, padded to 118 bytes + newline).
    #[test]
    fn npy_header_matches_numpy() {
        let b = super::npy_bytes(&[2, 3], &[0.0; 6]).unwrap();
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!(hlen, 118, "numpy 2.4.6 writes a 118-byte header for shape (2, 3)");
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(header.starts_with("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        assert_eq!(b.len(), 10 + hlen + 48);
    }
}
