//! Scalar reference kernel: the truth the SIMD kernels are tested against.

use crate::format::packed::{read_index, PackedTensor};

/// `y[b] = Ŵ x[b]`, reading each index and codeword directly: for every row,
/// `scale * Σ_s Σ_a codeword[idx[r, s]][a] * x[s*d + a]`, added in input order.
pub fn matmul(p: &PackedTensor, x: &[f32], batch: usize, y: &mut [f32]) {
    let (n_in, n_out, d) = (p.n_in, p.n_out, p.dim as usize);
    let k = p.k();
    let codebooks: Vec<f32> = p.codebooks.iter().map(|v| v.to_f32()).collect();
    for r in 0..n_out {
        let g = p.group_ids[r] as usize;
        let c = p.codebook_of_group(g);
        let cb = &codebooks[c * k * d..(c + 1) * k * d];
        let scale = p.scale(g);
        let row = p.row_indices(r);
        for b in 0..batch {
            let xb = &x[b * n_in..(b + 1) * n_in];
            let mut acc = 0f32;
            for s in 0..p.n_sub() {
                let kk = read_index(row, s, p.bits) as usize;
                debug_assert!(kk < k);
                for a in 0..d {
                    let j = s * d + a;
                    if j < n_in {
                        acc += cb[kk * d + a] * xb[j];
                    }
                }
            }
            y[b * n_out + r] = scale * acc;
        }
    }
}

/// `Σ_j |ŵ[r, j]| |x[j]|` for every row and input column (`batch x n_out`):
/// the scale of the rounding error of any order of summation, used by
/// [`super::error_budget`].
pub fn sum_abs_products(p: &PackedTensor, x: &[f32], batch: usize) -> Vec<f32> {
    let mut row = vec![0f32; p.n_in];
    let mut out = vec![0f32; batch * p.n_out];
    for r in 0..p.n_out {
        p.decode_row(r, &mut row);
        for b in 0..batch {
            let xb = &x[b * p.n_in..(b + 1) * p.n_in];
            out[b * p.n_out + r] = row.iter().zip(xb).map(|(w, v)| (w * v).abs()).sum();
        }
    }
    out
}
