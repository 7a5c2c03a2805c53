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
