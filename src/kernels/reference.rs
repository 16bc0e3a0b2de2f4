//! Scalar reference kernel: the truth the SIMD kernels are tested against.

use crate::format::packed::{read_index, PackedTensor};

/// `y[b] = Ŵ x[b]`, reading each index and codeword directly.
pub fn matmul(p: &PackedTensor, x: &[f32], batch: usize, y: &mut [f32]) {
    let (n_in, n_out, d) = (p.n_in, p.n_out, p.dim as usize);
    let k = p.k();
    for r in 0..n_out {
        let g = p.group_ids[r] as usize;
        let cb: Vec<f32> = p
            .codebook(p.codebook_of_group(g))
            .iter()
            .map(|v| v.to_f32())
            .collect();
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
