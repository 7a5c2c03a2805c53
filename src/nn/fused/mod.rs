//! Fused CPU forward pass and vector–Jacobian product (VJP) for small tanh MLPs.
//!
//! This is the fast path for MLP vector fields of neural ODEs (batch ~256,
//! widths ~64, single-threaded), where the per-op overhead of a tensor
//! framework dominates. It works on contiguous slices with its own small
//! matrix kernels (no packing, bias / `tanh` / `tanh'` fused into their passes)
//! and needs no other crate at run time (`matrixmultiply` only backs
//! [`Real::gemm`]).
//!
//! # Network and layouts
//!
//! `sizes = [s_0, s_1, ..., s_L]` describes `L` affine layers; layer `l` maps
//! width `s_l` to `s_{l+1}`:
//!
//! ```text
//! h_0 = input,   h_{l+1} = tanh(h_l @ W_l + b_l)  (l < L-1),   output = h_{L-1} @ W_{L-1} + b_{L-1}
//! ```
//!
//! * `W_l` is row-major with shape `[s_l, s_{l+1}]` (burn's `Linear` layout,
//!   forward is `x @ W + b`), `b_l` has shape `[s_{l+1}]`. The last layer is linear.
//! * Flat parameter vector: for each layer in order, `W_l` (row-major,
//!   `s_l * s_{l+1}` entries) followed by `b_l` (`s_{l+1}` entries). Parameter
//!   cotangents use the same layout.
//! * With `time_input`, the network input is `[x, t]`: `s_0 = dim + 1` and the
//!   LAST input column is the time. Callers pass the states `x: [batch, dim]`
//!   and the time separately ([`TimeArg`]).
//! * Caller-facing matrices are row-major: `x: [batch, dim]` means sample `i`
//!   occupies `x[i * dim .. (i + 1) * dim]`.
//!
//! # Internal layout and kernels
//!
//! Activations and cotangents are stored sample-major like the caller's
//! matrices (`[batch, width]`), each row padded with zeros to a whole number
//! of 64-byte cache lines and every buffer 64-byte aligned; the network input
//! is copied once into such a buffer together with its time column. The
//! weights are kept in the same padded form twice, as `W_l` and as `W_lᵀ`.
//!
//! Every product then has the shape `C[i, :] = Σ_p a(i, p) · M[p, :]` with the
//! rows of `M` contiguous and aligned: a register tile of `C` is accumulated
//! from broadcasts of `a` and aligned vector loads of `M`, with no packing or
//! transposition, at close to the FMA peak (alignment matters: a 64-byte load
//! that straddles two cache lines halved the kernel's speed).
//!
//! * forward: `H_{l+1}[i, :] = tanh(Σ_j H_l[i, j] W_l[j, :] + b_l)`, the bias
//!   added as each tile is stored and the `tanh` applied to each block of rows
//!   while it is in L1;
//! * input cotangent: `D[i, :] = (Σ_o G[i, o] W_lᵀ[o, :]) ⊙ (1 − H_l[i, :]²)`,
//!   the factor applied as each tile is stored;
//! * weight cotangent: `dW_l[j, :] += Σ_i H_l[i, j] G[i, :]`, the batch being
//!   the summed index (or its transpose `dW_lᵀ[o, :] += Σ_i G[i, o] H_l[i, :]`
//!   for a thin output), over blocks of samples that fit in L1.
//!
//! A layer whose output (forward) or input (input cotangent) width is at most
//! 4 would fill only a few lanes of each vector that way, so there the result
//! is formed as per-sample dot products with a horizontal sum, using the other
//! copy of the weights.
//!
//! The kernels are generic over a SIMD vector type: AVX-512 or AVX2+FMA for
//! `f32`/`f64` on x86-64, chosen at run time, and plain arrays elsewhere.
//! Results of the SIMD paths differ from the portable one by rounding only
//! (fused multiply–adds, summation order).
//!
//! # Files
//!
//! `real.rs` the element type ([`Real`]); `activation.rs` the `tanh` kernels;
//! `buffer.rs` the aligned, padded buffers; `simd.rs` the register abstraction
//! and the choice of instruction set, `x86.rs` its AVX-512 / AVX2 registers;
//! `kernels.rs` the outer-product, dot and column-sum kernels; `mlp.rs` the
//! network, its packed parameters and the forward pass; `vjp.rs` the
//! vector–Jacobian product; `tests.rs` their tests against plain loops.

/// A layer with output width (forward) or input width (input cotangent) at
/// most this uses per-sample dot products ([`dot`]) instead of the
/// outer-product kernel, which would leave most vector lanes idle.
const THIN: usize = 4;

/// Samples per block of the weight-cotangent product: both operand blocks
/// (`BATCH_BLOCK` rows of the layer input and of the cotangent, 8 KiB each at
/// width 64 in `f32`) then stay in the 32 KiB L1 cache while every register
/// tile of the result streams over them (the VJP ran ~3 % faster than with one
/// pass over a batch of 256; 32 and 64 were equally good).
const BATCH_BLOCK: usize = 32;

/// Samples per block of [`FusedMlp::forward_par`]: enough rows that a block's kernels run
/// at full speed (the register tiles are 4–6 rows) and its buffers' allocation is small next
/// to its arithmetic, few enough that a 2048-sample batch keeps every core of a workstation busy.
pub const PAR_BLOCK: usize = 256;

mod activation;
mod buffer;
mod kernels;
mod mlp;
mod real;
mod simd;
#[cfg(test)]
mod tests;
mod vjp;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use activation::{tanh_f32_slice, tanh_f64_slice};
pub use mlp::{FusedMlp, MlpCache, TimeArg};
pub use real::Real;

// The files reach each other's crate-private items through the parent (`use super::*`).
use buffer::*;
use kernels::*;
use simd::*;
