//! Packed Linear layers on many input rows: decode a narrow panel of `Ŵ`
//! rows at a time into a small scratch buffer and run the dense blocked
//! kernel on it.
//!
//! Decoding costs one lookup per weight per call, while the product costs
//! one multiply-add per weight per input row, so from a few input rows on
//! this runs at dense speed while reading only the packed bytes. Memory: one
//! panel (`PANEL_ROWS x n_in` f32, at most 192 KiB for n_in = 1536), never a
//! dense copy of the layer.

use super::dense::matmul_transposed;
use crate::format::packed::{read_index, PackedTensor};

/// Rows of `Ŵ` decoded at a time.
pub const PANEL_ROWS: usize = 32;

/// Each group's codebook times its scale, as f32: `[G, K, d]`.
pub fn scaled_codebooks(p: &PackedTensor) -> Vec<f32> {
    let (k, d) = (p.k(), p.dim as usize);
    let mut out = Vec::with_capacity(p.groups as usize * k * d);
    for g in 0..p.groups as usize {
        let scale = p.scale(g);
        out.extend(
            p.codebook(p.codebook_of_group(g))
                .iter()
                .map(|v| scale * v.to_f32()),
        );
    }
    out
}

/// Decode rows `r0..r0+width` of `Ŵ` transposed into `panel` (`n_in x width`).
fn decode_panel(p: &PackedTensor, codebooks: &[f32], r0: usize, width: usize, panel: &mut [f32]) {
    let (n_in, d, bits) = (p.n_in, p.dim as usize, p.bits);
    let kd = p.k() * d;
    for c in 0..width {
        let r = r0 + c;
        let cb = &codebooks[p.group_ids[r] as usize * kd..][..kd];
        let row = p.row_indices(r);
        if d == 1 && 8 % bits == 0 {
            // Whole indices per byte: shift them out of each byte.
            let per_byte = (8 / bits) as usize;
            let mask = ((1u16 << bits) - 1) as u8;
            for (b, &byte) in row.iter().enumerate() {
                for t in 0..per_byte {
                    let j = b * per_byte + t;
                    if j >= n_in {
                        break;
                    }
                    panel[j * width + c] = cb[((byte >> (t as u8 * bits)) & mask) as usize];
                }
            }
        } else {
            for s in 0..p.n_sub() {
                let word = &cb[read_index(row, s, bits) as usize * d..][..d];
                for (a, &v) in word.iter().enumerate() {
                    let j = s * d + a;
                    if j < n_in {
                        panel[j * width + c] = v;
                    }
                }
            }
        }
    }
}

/// `y = x Ŵᵀ + bias` (`x`: `rows x n_in`, `y`: `rows x n_out`), decoding
/// `PANEL_ROWS` rows of `Ŵ` at a time. `codebooks` from [`scaled_codebooks`].
pub fn matmul_decoded_panels(
    p: &PackedTensor,
    codebooks: &[f32],
    x: &[f32],
    rows: usize,
    bias: &[f32],
    y: &mut [f32],
) {
    let (n_in, n_out) = (p.n_in, p.n_out);
    let mut panel = vec![0f32; n_in * PANEL_ROWS];
    let mut y_panel = vec![0f32; rows * PANEL_ROWS];
    for r0 in (0..n_out).step_by(PANEL_ROWS) {
        let width = PANEL_ROWS.min(n_out - r0);
        let panel = &mut panel[..n_in * width];
        let y_panel = &mut y_panel[..rows * width];
        decode_panel(p, codebooks, r0, width, panel);
        matmul_transposed(
            x,
            rows,
            n_in,
            panel,
            width,
            Some(&bias[r0..r0 + width]),
            y_panel,
        );
        for (dst, src) in y.chunks_exact_mut(n_out).zip(y_panel.chunks_exact(width)) {
            dst[r0..r0 + width].copy_from_slice(src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::packed::{pack_indices, Mode};
    use crate::format::safetensors::Dtype;
    use half::f16;

    fn tensor(n_out: usize, n_in: usize, bits: u8, dim: u8, mode: Mode) -> PackedTensor {
        let groups = 3u16;
        let (k, d) = (1usize << bits, dim as usize);
        let n_sub = n_in.div_ceil(d);
        let idx: Vec<u8> = (0..n_out * n_sub)
            .map(|i| ((i * 37 + i / 7) % k) as u8)
            .collect();
        let n_cb = if mode == Mode::Codebook {
            groups as usize
        } else {
            1
        };
        PackedTensor {
            name: "w".into(),
            shape: vec![n_out, n_in],
            dtype: Dtype::F32,
            bits,
            dim,
            groups,
            mode,
            n_out,
            n_in,
            indices: pack_indices(&idx, n_sub, bits),
            codebooks: (0..n_cb * k * d)
                .map(|i| f16::from_f32((i as f32 * 0.37).sin()))
                .collect(),
            group_ids: (0..n_out).map(|r| (r % groups as usize) as u8).collect(),
            scales: if mode == Mode::Scale {
                (0..groups).map(|g| f16::from_f32(0.5 + g as f32)).collect()
            } else {
                vec![]
            },
            rotation: None,
        }
    }

    #[test]
    fn panels_match_decoded_dense_for_every_layout() {
        for (bits, dim, mode) in [
            (2, 1, Mode::Codebook),
            (3, 1, Mode::Scale),
            (4, 1, Mode::Codebook),
            (1, 1, Mode::Scale),
            (8, 1, Mode::Codebook),
            (2, 4, Mode::Codebook),
            (3, 8, Mode::Scale),
            (1, 2, Mode::Codebook),
        ] {
            let (n_out, n_in, rows) = (70, 45, 5);
            let p = tensor(n_out, n_in, bits, dim, mode);
            p.validate().unwrap();
            let w = p.decode_f32();
            let x: Vec<f32> = (0..rows * n_in)
                .map(|i| ((i * 13) % 17) as f32 / 17.0 - 0.5)
                .collect();
            let bias: Vec<f32> = (0..n_out).map(|o| o as f32 * 0.01).collect();
            let mut want = vec![0f32; rows * n_out];
            let wt = super::super::dense::transpose(&w, n_out, n_in);
            matmul_transposed(&x, rows, n_in, &wt, n_out, Some(&bias), &mut want);
            let mut got = vec![0f32; rows * n_out];
            matmul_decoded_panels(&p, &scaled_codebooks(&p), &x, rows, &bias, &mut got);
            // Same decoded values, same kernel: the only difference is the
            // scale multiply order (scale * codeword vs the decoder's), so a few ulps.
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "b{bits} d{dim} {mode:?}: {a} vs {b}"
                );
            }
        }
    }
}
