//! Heap buffers whose rows are padded to whole 64-byte cache lines and whose first element
//! is 64-byte aligned: the layout every fused kernel reads and writes.

use super::*;

/// Row length `w` rounded up to a whole number of 64-byte cache lines (16
/// `f32` or 8 `f64`; other element types round up to 8 elements, the portable
/// vector length). Padded entries are kept at zero, so vector loops may run
/// over whole padded rows.
#[inline(always)]
pub(super) fn pad<R>(w: usize) -> usize {
    let lanes = if std::mem::size_of::<R>() == 4 { 16 } else { 8 };
    w.div_ceil(lanes) * lanes
}

/// A heap buffer whose first element is 64-byte aligned (for `f32`/`f64`):
/// a `Vec` with some slack in front. Growing it discards the contents.
pub(super) struct AVec<R> {
    pub(super) buf: Vec<R>,
    pub(super) off: usize,
    pub(super) len: usize,
}

impl<R: Real> AVec<R> {
    pub(super) fn new() -> Self {
        AVec { buf: Vec::new(), off: 0, len: 0 }
    }

    /// Makes the buffer `len` elements long; when it has to grow, the new
    /// contents are all zero, otherwise they are left as they were.
    pub(super) fn resize(&mut self, len: usize) {
        let slack = 64 / std::mem::size_of::<R>().max(1);
        if self.buf.len() < len + slack {
            self.buf = vec![R::ZERO; len + slack];
            self.off = align_offset(&self.buf);
        }
        self.len = len;
    }

    pub(super) fn as_slice(&self) -> &[R] {
        &self.buf[self.off..self.off + self.len]
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [R] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// Offset of the first 64-byte aligned element within `buf`'s first `slack`
/// elements (0 if the element size does not allow one).
pub(super) fn align_offset<R>(buf: &[R]) -> usize {
    let size = std::mem::size_of::<R>().max(1);
    let mis = buf.as_ptr() as usize % 64;
    // For f32/f64 the distance to the next line is a multiple of the element
    // size (the allocation is aligned to it).
    if mis == 0 || !(64 - mis).is_multiple_of(size) {
        0
    } else {
        (64 - mis) / size
    }
}

impl<R: Clone> Clone for AVec<R> {
    /// A fresh allocation with the data moved to its own aligned offset (a
    /// derived clone would keep the offset of the original allocation).
    fn clone(&self) -> Self {
        let mut buf = self.buf.clone();
        let off = align_offset(&buf);
        if off > self.off {
            buf.rotate_right(off - self.off);
        } else {
            buf.rotate_left(self.off - off);
        }
        AVec { buf, off, len: self.len }
    }
}
