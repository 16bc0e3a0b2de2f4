//! k-means palettisation: scalar codewords (f16) found by weighted k-means,
//! each weight replaced by its nearest codeword.
//!
//! - per tensor: one codebook of `2^b` codewords for the whole matrix;
//! - per row: one codebook per output row (ALGORITHM.md §7's "k-means per
//!   row weighted by diag H" baseline).
//!
//! Each weight `W[r, j]` is weighted by `diag H[j]`, the importance of its
//! input, so the codewords minimise the diagonal part of the output loss.

use super::{code_bytes, header_bytes, to_f16, Quantized};
use crate::engine::kmeans::weighted_kmeans;
use crate::engine::rng::rng_for;

/// Lloyd iterations (at most; k-means stops when assignments settle).
pub const KMEANS_ITERS: usize = 50;

/// Sorted f16 codebook from k-means centroids.
fn f16_codebook(centroids: &[f32]) -> Vec<f32> {
    let mut cb: Vec<f32> = centroids.iter().map(|c| to_f16(*c)).collect();
    cb.sort_by(|a, b| a.total_cmp(b));
    cb
}

/// Nearest codeword of `x` in a sorted codebook.
#[inline]
fn nearest_codeword(cb: &[f32], x: f32) -> f32 {
    let mut best = cb[0];
    for &c in &cb[1..] {
        if (x - c).abs() < (x - best).abs() {
            best = c;
        }
    }
    best
}

/// Fit a weighted codebook of `2^bits` codewords to `values` (weights
/// `weights`) and write the nearest codeword of each value to `out`.
fn palettise(
    values: &[f32],
    weights: &[f32],
    bits: u8,
    seed: u64,
    name: &str,
    index: u64,
    out: &mut [f32],
) {
    let k = 1usize << bits;
    let mut rng = rng_for(seed, name, index);
    let km = weighted_kmeans(values, weights, 1, k, KMEANS_ITERS, &mut rng);
    let cb = f16_codebook(&km.centroids);
    for (o, x) in out.iter_mut().zip(values) {
        *o = nearest_codeword(&cb, *x);
    }
}

fn checked(w: &[f32], n_out: usize, n_in: usize, hdiag: &[f32], bits: u8) {
    assert!((1..=8).contains(&bits) && w.len() == n_out * n_in && hdiag.len() == n_in);
}

/// One weighted k-means codebook (`2^bits` f16 codewords) for the whole
/// matrix; `hdiag` (length `n_in`) weights each column.
pub fn kmeans_per_tensor(
    name: &str,
    w: &[f32],
    n_out: usize,
    n_in: usize,
    hdiag: &[f32],
    bits: u8,
    seed: u64,
) -> Quantized {
    checked(w, n_out, n_in, hdiag, bits);
    let weights: Vec<f32> = (0..n_out).flat_map(|_| hdiag.iter().copied()).collect();
    let mut out = vec![0f32; w.len()];
    palettise(
        w,
        &weights,
        bits,
        seed,
        &format!("{name}/kmeans-tensor"),
        0,
        &mut out,
    );
    let k = 1usize << bits;
    let parts = [
        (".codes", vec![n_out, (n_in * bits as usize).div_ceil(8)]),
        (".codebook", vec![k]),
    ];
    let bytes = code_bytes(n_out, n_in, bits) + 2 * k + header_bytes(name, &parts);
    Quantized {
        n_out,
        n_in,
        weights: out,
        stored_bits: (bytes * 8) as u64,
    }
}

/// One weighted k-means codebook (`2^bits` f16 codewords) per row.
pub fn kmeans_per_row(
    name: &str,
    w: &[f32],
    n_out: usize,
    n_in: usize,
    hdiag: &[f32],
    bits: u8,
    seed: u64,
) -> Quantized {
    checked(w, n_out, n_in, hdiag, bits);
    let mut out = vec![0f32; w.len()];
    let salt = format!("{name}/kmeans-row");
    for r in 0..n_out {
        let range = r * n_in..(r + 1) * n_in;
        palettise(
            &w[range.clone()],
            hdiag,
            bits,
            seed,
            &salt,
            r as u64,
            &mut out[range],
        );
    }
    let k = 1usize << bits;
    let parts = [
        (".codes", vec![n_out, (n_in * bits as usize).div_ceil(8)]),
        (".codebook", vec![n_out, k]),
    ];
    let bytes = code_bytes(n_out, n_in, bits) + 2 * k * n_out + header_bytes(name, &parts);
    Quantized {
        n_out,
        n_in,
        weights: out,
        stored_bits: (bytes * 8) as u64,
    }
}
