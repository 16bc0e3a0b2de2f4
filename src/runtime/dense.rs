//! Dense f32 matrix product `Y = X Wᵀ + b`, blocked for the cache and
//! written so the compiler vectorises it (SSE/AVX2+FMA natively, SIMD128 in
//! wasm).
//!
//! The weight is stored transposed, `wt = Wᵀ` (`n_in x n_out`, row-major), so
//! the inner loop is an axpy over contiguous output columns: a register tile
//! of `MR` input rows by `NR` output columns accumulates `x[r, k] * wt[k, j..j+NR]`
//! over a block of `k`. No horizontal reductions, so plain loops vectorise.

/// Register tile height: input rows per micro-kernel.
const MR: usize = 4;
/// Register tile width: output columns per micro-kernel (two AVX vectors).
const NR: usize = 16;
/// Block of the reduction dimension kept hot in cache.
const KC: usize = 256;
/// Block of output columns: a `KC x NC` panel of `wt` (128 KiB) stays in L2.
const NC: usize = 128;

/// `y = x wt + bias`: `x` is `batch x n_in`, `wt` is `n_in x n_out`, `y` is
/// `batch x n_out`, all row-major. `bias` (if any) has `n_out` values.
///
/// # Panics
/// If a slice length disagrees with the dimensions (callers check shapes).
pub fn matmul_transposed(
    x: &[f32],
    batch: usize,
    n_in: usize,
    wt: &[f32],
    n_out: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    assert_eq!(x.len(), batch * n_in, "x is not batch x n_in");
    assert_eq!(wt.len(), n_in * n_out, "wt is not n_in x n_out");
    assert_eq!(y.len(), batch * n_out, "y is not batch x n_out");
    for row in y.chunks_exact_mut(n_out.max(1)) {
        match bias {
            Some(b) => row.copy_from_slice(b),
            None => row.fill(0.0),
        }
    }
    if batch == 0 || n_out == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { matmul_avx2_fma(x, batch, n_in, wt, n_out, y) };
            return;
        }
    }
    blocked::<false>(x, batch, n_in, wt, n_out, y);
}

/// The blocked product compiled with AVX2 and FMA enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn matmul_avx2_fma(
    x: &[f32],
    batch: usize,
    n_in: usize,
    wt: &[f32],
    n_out: usize,
    y: &mut [f32],
) {
    blocked::<true>(x, batch, n_in, wt, n_out, y);
}

/// `y += x wt`, cache-blocked. `FMA` picks fused multiply-add (only where
/// the hardware has it: otherwise `mul_add` is a slow library call).
#[inline(always)]
fn blocked<const FMA: bool>(
    x: &[f32],
    batch: usize,
    n_in: usize,
    wt: &[f32],
    n_out: usize,
    y: &mut [f32],
) {
    for k0 in (0..n_in).step_by(KC) {
        let k1 = (k0 + KC).min(n_in);
        for j0 in (0..n_out).step_by(NC) {
            let j1 = (j0 + NC).min(n_out);
            let mut r0 = 0;
            while r0 < batch {
                let mr = (batch - r0).min(MR);
                match mr {
                    4 => panel::<4, FMA>(x, n_in, wt, n_out, y, r0, k0, k1, j0, j1),
                    3 => panel::<3, FMA>(x, n_in, wt, n_out, y, r0, k0, k1, j0, j1),
                    2 => panel::<2, FMA>(x, n_in, wt, n_out, y, r0, k0, k1, j0, j1),
                    _ => panel::<1, FMA>(x, n_in, wt, n_out, y, r0, k0, k1, j0, j1),
                }
                r0 += mr;
            }
        }
    }
}

/// Rows `r0..r0+M` times the `k0..k1` x `j0..j1` panel of `wt`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn panel<const M: usize, const FMA: bool>(
    x: &[f32],
    n_in: usize,
    wt: &[f32],
    n_out: usize,
    y: &mut [f32],
    r0: usize,
    k0: usize,
    k1: usize,
    j0: usize,
    j1: usize,
) {
    let mut j = j0;
    while j + NR <= j1 {
        tile::<M, NR, FMA>(x, n_in, wt, n_out, y, r0, k0, k1, j);
        j += NR;
    }
    while j < j1 {
        tile::<M, 1, FMA>(x, n_in, wt, n_out, y, r0, k0, k1, j);
        j += 1;
    }
}

/// The register tile: `y[r0..r0+M, j..j+N] += x[r0..r0+M, k0..k1] wt[k0..k1, j..j+N]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<const M: usize, const N: usize, const FMA: bool>(
    x: &[f32],
    n_in: usize,
    wt: &[f32],
    n_out: usize,
    y: &mut [f32],
    r0: usize,
    k0: usize,
    k1: usize,
    j: usize,
) {
    let mut acc = [[0f32; N]; M];
    let xs: [&[f32]; M] = std::array::from_fn(|r| &x[(r0 + r) * n_in + k0..(r0 + r) * n_in + k1]);
    for (kk, k) in (k0..k1).enumerate() {
        let w: &[f32; N] = wt[k * n_out + j..k * n_out + j + N]
            .try_into()
            .expect("tile inside wt");
        for r in 0..M {
            let xv = xs[r][kk];
            for c in 0..N {
                acc[r][c] = if FMA {
                    xv.mul_add(w[c], acc[r][c])
                } else {
                    acc[r][c] + xv * w[c]
                };
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let dst = &mut y[(r0 + r) * n_out + j..(r0 + r) * n_out + j + N];
        for c in 0..N {
            dst[c] += a[c];
        }
    }
}

/// Transpose a `rows x cols` row-major matrix.
pub fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; a.len()];
    const B: usize = 32;
    for i0 in (0..rows).step_by(B) {
        for j0 in (0..cols).step_by(B) {
            for i in i0..(i0 + B).min(rows) {
                for j in j0..(j0 + B).min(cols) {
                    t[j * rows + i] = a[i * cols + j];
                }
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(
        x: &[f32],
        batch: usize,
        n_in: usize,
        w: &[f32],
        n_out: usize,
        bias: &[f32],
    ) -> Vec<f32> {
        let mut y = vec![0f32; batch * n_out];
        for b in 0..batch {
            for o in 0..n_out {
                let mut acc = bias[o] as f64;
                for i in 0..n_in {
                    acc += x[b * n_in + i] as f64 * w[o * n_in + i] as f64;
                }
                y[b * n_out + o] = acc as f32;
            }
        }
        y
    }

    #[test]
    fn blocked_matches_naive_on_ragged_shapes() {
        let mut seed = 12345u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for &(batch, n_in, n_out) in &[
            (1, 1, 1),
            (3, 17, 19),
            (5, 300, 33),
            (9, 513, 130),
            (4, 384, 1536),
            (2, 7, 16),
        ] {
            let x: Vec<f32> = (0..batch * n_in).map(|_| next()).collect();
            let w: Vec<f32> = (0..n_out * n_in).map(|_| next()).collect();
            let bias: Vec<f32> = (0..n_out).map(|_| next()).collect();
            let wt = transpose(&w, n_out, n_in);
            let mut y = vec![0f32; batch * n_out];
            matmul_transposed(&x, batch, n_in, &wt, n_out, Some(&bias), &mut y);
            let want = naive(&x, batch, n_in, &w, n_out, &bias);
            // Budget: f32 accumulation of n_in products of magnitude <= 0.25.
            let budget = 1e-6 * n_in as f32 + 1e-6;
            for (a, b) in y.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= budget,
                    "{batch}x{n_in}x{n_out}: {a} vs {b}"
                );
            }
        }
    }
}
