//! Square 2D FFTs on `n × n` grids (rustfft), planned once, with no allocation per transform.
//!
//! Physical arrays are row-major `[i][j]` (`i` along x, `j` along y, `j` fastest). Spectra are
//! kept *transposed*, `[ky][kx]`: a forward transform is "FFT the rows, transpose, FFT the rows",
//! so it needs one transpose instead of two, and the inverse undoes the same steps. Forward is
//! unnormalised (`f̂_k = Σ_x f(x) e^{−ik·x}`); [`Fft2::inverse`] divides by `n²`, so
//! `inverse(forward(f)) = f`.

use std::sync::Arc;

use rustfft::num_complex::Complex64;
use rustfft::{Fft, FftPlanner};

/// Planned forward and inverse transforms of one size, with their scratch.
pub struct Fft2 {
    n: usize,
    forward: Arc<dyn Fft<f64>>,
    inverse: Arc<dyn Fft<f64>>,
    scratch: Vec<Complex64>,
    tmp: Vec<Complex64>,
}

impl Fft2 {
    /// Plans the transforms of `n × n` arrays (`n ≥ 1`).
    pub fn new(n: usize) -> Self {
        let mut planner = FftPlanner::new();
        let forward = planner.plan_fft_forward(n);
        let inverse = planner.plan_fft_inverse(n);
        let len = forward.get_inplace_scratch_len().max(inverse.get_inplace_scratch_len());
        Fft2 { n, forward, inverse, scratch: vec![Complex64::default(); len], tmp: vec![Complex64::default(); n * n] }
    }

    /// Points per side.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `buf` (physical, `[i][j]`, length `n²`) becomes its spectrum `[ky][kx]`.
    pub fn forward(&mut self, buf: &mut [Complex64]) {
        debug_assert_eq!(buf.len(), self.n * self.n);
        self.forward.process_with_scratch(buf, &mut self.scratch);
        transpose(self.n, buf, &mut self.tmp);
        self.forward.process_with_scratch(&mut self.tmp, &mut self.scratch);
        buf.copy_from_slice(&self.tmp);
    }

    /// `buf` (a spectrum `[ky][kx]`) becomes the physical array `[i][j]` (divided by `n²`).
    pub fn inverse(&mut self, buf: &mut [Complex64]) {
        debug_assert_eq!(buf.len(), self.n * self.n);
        self.inverse.process_with_scratch(buf, &mut self.scratch);
        transpose(self.n, buf, &mut self.tmp);
        self.inverse.process_with_scratch(&mut self.tmp, &mut self.scratch);
        let s = 1.0 / (self.n * self.n) as f64;
        for (o, v) in buf.iter_mut().zip(&self.tmp) {
            *o = v * s;
        }
    }
}

/// `dst[j][i] = src[i][j]` in blocks of 16 (cache-friendly for the sizes used here).
fn transpose(n: usize, src: &[Complex64], dst: &mut [Complex64]) {
    const B: usize = 16;
    for ib in (0..n).step_by(B) {
        for jb in (0..n).step_by(B) {
            for i in ib..(ib + B).min(n) {
                for j in jb..(jb + B).min(n) {
                    dst[j * n + i] = src[i * n + j];
                }
            }
        }
    }
}

/// The signed frequency of FFT index `b` on `n` points: `b` below `n/2`, `b − n` above, and
/// `0` for the Nyquist index `n/2` of an even `n` (its derivative is not real; it is zero in
/// every dealiased field anyway).
pub fn frequency(b: usize, n: usize) -> f64 {
    if 2 * b < n {
        b as f64
    } else if 2 * b == n {
        0.0
    } else {
        b as f64 - n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forward transform against the DFT sum, and the round trip.
    #[test]
    fn forward_matches_the_dft_and_inverse_undoes_it() {
        let n = 6;
        let f: Vec<Complex64> = (0..n * n).map(|p| Complex64::new((p as f64 * 0.37).sin(), (p as f64 * 0.11).cos())).collect();
        let mut buf = f.clone();
        let mut fft = Fft2::new(n);
        fft.forward(&mut buf);
        for a in 0..n {
            for b in 0..n {
                // spectrum[ky = a][kx = b] = Σ_{i,j} f[i][j] e^{−2πi(b i + a j)/n}
                let mut s = Complex64::default();
                for i in 0..n {
                    for j in 0..n {
                        let ph = -std::f64::consts::TAU * ((b * i + a * j) as f64) / n as f64;
                        s += f[i * n + j] * Complex64::new(ph.cos(), ph.sin());
                    }
                }
                assert!((buf[a * n + b] - s).norm() < 1e-12, "({a}, {b}): {} vs {}", buf[a * n + b], s);
            }
        }
        fft.inverse(&mut buf);
        for (x, y) in buf.iter().zip(&f) {
            assert!((x - y).norm() < 1e-14);
        }
    }
}
