//! Baseline quantisers the benchmark compares JLCM with (ALGORITHM.md §3,
//! "expected result"): round-to-nearest per group of 128, weighted k-means
//! palettisation (per tensor and per row), and GPTQ with act-order.
//!
//! Each returns a [`Quantized`]: the dequantised weight as the baseline's
//! storage would decode it (scales, zeros and codewords already rounded to
//! f16) and its stored bits with everything counted the same way
//! [`crate::format::packed::PackedTensor::stored_bits`] counts JLCM's:
//! codes bit-packed with rows padded to whole bytes, every f16 scale, zero
//! and codeword, any permutation, and a header allowance per stored part.

pub mod gptq;
pub mod kmeans;
pub mod rtn;

use half::f16;

pub use gptq::{gptq, GptqOptions, GroupOrder};
pub use kmeans::{kmeans_per_row, kmeans_per_tensor};
pub use rtn::{rtn, GroupQuantizer};

/// A baseline's result for one `n_out x n_in` matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    /// Rows.
    pub n_out: usize,
    /// Columns.
    pub n_in: usize,
    /// Dequantised weight, row-major `n_out x n_in`.
    pub weights: Vec<f32>,
    /// Every stored bit: codes, scales, zeros, codebooks, permutations, header.
    pub stored_bits: u64,
}

impl Quantized {
    /// Bits per weight, everything counted.
    pub fn bpw(&self) -> f64 {
        self.stored_bits as f64 / (self.n_out * self.n_in) as f64
    }
}

/// Header bytes one stored part (a safetensors entry such as
/// `NAME.rtn.scale`) costs: its name plus `{"dtype":..,"shape":[..],
/// "data_offsets":[..]}` with 10-digit offsets, the same estimate JLCM's
/// packed tensors use.
pub fn part_header_bytes(tensor_name: &str, suffix: &str, shape: &[usize]) -> usize {
    tensor_name.len()
        + suffix.len()
        + shape.iter().map(|s| s.to_string().len() + 1).sum::<usize>()
        + 60
}

/// Header bytes for a tensor stored as the given parts, plus a metadata
/// entry of the tensor's parameters (name and ~64 bytes of JSON).
pub fn header_bytes(tensor_name: &str, parts: &[(&str, Vec<usize>)]) -> usize {
    parts
        .iter()
        .map(|(s, shape)| part_header_bytes(tensor_name, s, shape))
        .sum::<usize>()
        + tensor_name.len()
        + 64
}

/// Bytes of `n_codes` `bits`-bit codes per row, rows padded to whole bytes.
pub fn code_bytes(n_out: usize, n_codes_per_row: usize, bits: u8) -> usize {
    n_out * (n_codes_per_row * bits as usize).div_ceil(8)
}

/// `x` rounded to f16 and back.
#[inline]
pub fn to_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// Relative error under a dense metric: `sqrt(tr(E H E^T) / tr(W H W^T))`
/// with `E = Ŵ - W`; `h` is row-major `n_in x n_in`.
pub fn relative_h_error(w: &[f32], w_hat: &[f32], n_out: usize, n_in: usize, h: &[f32]) -> f64 {
    let quad = |v: &[f64]| -> f64 {
        let mut s = 0f64;
        for i in 0..n_in {
            if v[i] == 0.0 {
                continue;
            }
            let hi = &h[i * n_in..(i + 1) * n_in];
            let mut t = 0f64;
            for j in 0..n_in {
                t += hi[j] as f64 * v[j];
            }
            s += v[i] * t;
        }
        s
    };
    let (mut num, mut den) = (0f64, 0f64);
    for r in 0..n_out {
        let wr = &w[r * n_in..(r + 1) * n_in];
        let e: Vec<f64> = wr
            .iter()
            .zip(&w_hat[r * n_in..(r + 1) * n_in])
            .map(|(a, b)| (*b - *a) as f64)
            .collect();
        let v: Vec<f64> = wr.iter().map(|a| *a as f64).collect();
        num += quad(&e);
        den += quad(&v);
    }
    (num / den.max(1e-300)).sqrt()
}
