//! GPTQ (Frantar, Ashkboos, Hoefler, Alistarh, 2022): quantise one column at a
//! time and spread its error over the columns not yet quantised, using the
//! upper Cholesky factor of `H^-1`.
//!
//! What this implementation does, in order (f64 throughout, deterministic):
//! 1. Columns with `diag H = 0` are dead: their weights are zeroed and their
//!    diagonal set to 1.
//! 2. With act-order, columns are permuted by descending `diag H` (ties keep
//!    the lower index first).
//! 3. Damping: `H += damping * mean(diag H) * I` (default 1 %); if `H` is
//!    still not positive definite the damping is multiplied by 10 and
//!    retried.
//! 4. `U` = upper Cholesky factor of `H^-1` (`H^-1 = Uᵀ U`).
//! 5. Blocks of 128 columns: inside a block each column is quantised, its
//!    error `e = (w - q) / U[i,i]` is subtracted from the block's later
//!    columns along `U[i, i+1..]`; after the block the accumulated errors
//!    update all later columns at once (the lazy batch update).
//! 6. The quantiser is asymmetric uniform with an f16 scale and an f16 zero
//!    per row and group of 128 columns (the same [`GroupQuantizer`] as RTN).
//!    [`GroupOrder`] says which columns form a group under act-order.

use super::rtn::{grouped_uniform_bits, GroupQuantizer};
use super::Quantized;
use crate::engine::hessian::Hessian;

/// Which columns share a quantiser when act-order permutes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupOrder {
    /// "Static groups" (GPTQ reference `--static-groups`): groups are runs of
    /// `group` columns in the *original* order, their grids fitted on the
    /// original weights before any update. Codes are stored in the original
    /// order: no permutation needs storing.
    Static,
    /// Groups are runs of `group` columns in *act-order*, each grid fitted on
    /// the updated weights when its first column is reached (AutoGPTQ's
    /// `desc_act`). The permutation must be stored (u16 per column, counted).
    Encountered,
}

/// GPTQ settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptqOptions {
    /// Bits per code.
    pub bits: u8,
    /// Columns per quantisation group.
    pub group: usize,
    /// Columns per lazy-update block.
    pub block: usize,
    /// Damping as a fraction of the mean diagonal of `H`.
    pub damping: f64,
    /// Process columns by descending `diag H`.
    pub act_order: bool,
    /// Group membership under act-order.
    pub order: GroupOrder,
}

impl GptqOptions {
    /// The standard setting: group 128, block 128, 1 % damping, act-order,
    /// static groups.
    pub fn standard(bits: u8) -> Self {
        Self {
            bits,
            group: 128,
            block: 128,
            damping: 0.01,
            act_order: true,
            order: GroupOrder::Static,
        }
    }
}

/// Dense `n x n` copy of `h` in f64.
fn dense(h: &Hessian) -> Vec<f64> {
    let n = h.n();
    let mut m = vec![0f64; n * n];
    match h {
        Hessian::Identity(_) => (0..n).for_each(|i| m[i * n + i] = 1.0),
        Hessian::Diagonal(d) => (0..n).for_each(|i| m[i * n + i] = d[i] as f64),
        Hessian::Dense { data, .. } => m.iter_mut().zip(data).for_each(|(a, b)| *a = *b as f64),
    }
    m
}

/// Lower Cholesky factor `L` (`A = L Lᵀ`) of a symmetric `n x n` matrix, or
/// `None` if it is not positive definite.
pub fn cholesky_lower(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; n * n];
    for j in 0..n {
        let lj = &mut l[j * n..(j + 1) * n];
        let s = a[j * n + j] - lj[..j].iter().map(|v| v * v).sum::<f64>();
        if s.is_nan() || s <= 0.0 || s.is_infinite() {
            return None;
        }
        let d = s.sqrt();
        lj[j] = d;
        // Four rows at a time: each dot product is still summed in column
        // order (bit-identical to one row at a time), but the four
        // independent chains overlap instead of waiting on one add each.
        let (head, tail) = l.split_at_mut((j + 1) * n);
        let lj = &head[j * n..j * n + j];
        let mut blocks = tail.chunks_exact_mut(4 * n);
        let mut i = j + 1;
        for block in &mut blocks {
            let (r0, rest) = block.split_at_mut(n);
            let (r1, rest) = rest.split_at_mut(n);
            let (r2, r3) = rest.split_at_mut(n);
            let [d0, d1, d2, d3] = dot4(lj, [&r0[..j], &r1[..j], &r2[..j], &r3[..j]]);
            r0[j] = (a[i * n + j] - d0) / d;
            r1[j] = (a[(i + 1) * n + j] - d1) / d;
            r2[j] = (a[(i + 2) * n + j] - d2) / d;
            r3[j] = (a[(i + 3) * n + j] - d3) / d;
            i += 4;
        }
        for li in blocks.into_remainder().chunks_exact_mut(n) {
            let dot: f64 = li[..j].iter().zip(lj).map(|(x, y)| x * y).sum();
            li[j] = (a[i * n + j] - dot) / d;
            i += 1;
        }
    }
    Some(l)
}

/// Four dot products of `x` with `ys[q]`, each summed in index order from
/// -0.0 exactly like `iter().map(y * x).sum::<f64>()` (bit-identical).
#[inline]
fn dot4(x: &[f64], ys: [&[f64]; 4]) -> [f64; 4] {
    let n = x.len();
    let [y0, y1, y2, y3] = ys.map(|y| &y[..n]);
    let mut s = [-0.0f64; 4];
    for p in 0..n {
        let xp = x[p];
        s[0] += y0[p] * xp;
        s[1] += y1[p] * xp;
        s[2] += y2[p] * xp;
        s[3] += y3[p] * xp;
    }
    s
}

/// `H^-1` from the lower Cholesky factor of `H`: `L^-ᵀ L^-1`.
fn inverse_from_cholesky(l: &[f64], n: usize) -> Vec<f64> {
    // Rows of X = L^-1 by forward substitution: X[i] = (e_i - sum_k L[i,k] X[k]) / L[i,i].
    let mut x = vec![0f64; n * n];
    for i in 0..n {
        let (prev, cur) = x.split_at_mut(i * n);
        let xi = &mut cur[..n];
        xi[i] = 1.0;
        for k in 0..i {
            let c = l[i * n + k];
            if c != 0.0 {
                let xk = &prev[k * n..k * n + k + 1];
                for (a, b) in xi[..=k].iter_mut().zip(xk) {
                    *a -= c * b;
                }
            }
        }
        let d = l[i * n + i];
        xi[..=i].iter_mut().for_each(|v| *v /= d);
    }
    // H^-1 = Xᵀ X = sum_k X[k]ᵀ X[k]; fill the lower half, then mirror.
    let mut inv = vec![0f64; n * n];
    for k in 0..n {
        let xk = &x[k * n..k * n + k + 1];
        for a in 0..=k {
            let ca = xk[a];
            if ca != 0.0 {
                let row = &mut inv[a * n..a * n + a + 1];
                for (r, b) in row.iter_mut().zip(&xk[..=a]) {
                    *r += ca * b;
                }
            }
        }
    }
    for a in 0..n {
        for b in 0..a {
            inv[b * n + a] = inv[a * n + b];
        }
    }
    inv
}

/// Upper Cholesky factor `U` of `H^-1` (`H^-1 = Uᵀ U`), row-major, after
/// damping; the damping is raised tenfold until `H` is positive definite.
fn upper_cholesky_of_inverse(h: &mut [f64], n: usize, damping: f64) -> Vec<f64> {
    let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
    let mean = if mean > 0.0 { mean } else { 1.0 };
    let mut damp = damping * mean;
    let mut added = 0.0;
    loop {
        for i in 0..n {
            h[i * n + i] += damp - added;
        }
        added = damp;
        if let Some(l) = cholesky_lower(h, n) {
            let inv = inverse_from_cholesky(&l, n);
            if let Some(l2) = cholesky_lower(&inv, n) {
                let mut u = vec![0f64; n * n];
                for i in 0..n {
                    for j in i..n {
                        u[i * n + j] = l2[j * n + i];
                    }
                }
                return u;
            }
        }
        damp = if damp > 0.0 { damp * 10.0 } else { mean * 1e-6 };
    }
}

/// GPTQ of the `n_out x n_in` matrix `w` under the metric `h`.
pub fn gptq(
    name: &str,
    w: &[f32],
    n_out: usize,
    n_in: usize,
    h: &Hessian,
    opts: &GptqOptions,
) -> Quantized {
    assert!((1..=8).contains(&opts.bits) && opts.group >= 1 && opts.block >= 1);
    assert!(w.len() == n_out * n_in && h.n() == n_in);
    let n = n_in;
    // Static grids on the original weights (dead columns zeroed as the sweep does).
    let n_groups = n.div_ceil(opts.group);
    let static_grids: Vec<GroupQuantizer> = match opts.order {
        GroupOrder::Static => (0..n_out)
            .flat_map(|r| {
                let row: Vec<f32> = (0..n)
                    .map(|j| if h.diag(j) > 0.0 { w[r * n + j] } else { 0.0 })
                    .collect();
                row.chunks(opts.group)
                    .map(|c| GroupQuantizer::fit(c.iter().copied(), opts.bits))
                    .collect::<Vec<_>>()
            })
            .collect(),
        GroupOrder::Encountered => vec![],
    };
    let mut grids: Vec<GroupQuantizer> = vec![
        GroupQuantizer {
            scale: 0.0,
            zero: 0.0,
            max_code: 0
        };
        n_out
    ];
    let mut quantize = |r: usize, orig: usize, i: usize, row: &[f64], x: f64| -> f64 {
        let grid = match opts.order {
            GroupOrder::Static => static_grids[r * n_groups + orig / opts.group],
            GroupOrder::Encountered => {
                if i % opts.group == 0 {
                    let end = (i + opts.group).min(n);
                    grids[r] =
                        GroupQuantizer::fit(row[i..end].iter().map(|v| *v as f32), opts.bits);
                }
                grids[r]
            }
        };
        grid.quantize(x as f32) as f64
    };
    let out = gptq_sweep(
        w,
        n_out,
        n_in,
        h,
        opts.act_order,
        opts.block,
        opts.damping,
        &mut quantize,
    );
    let extra: Vec<(&str, Vec<usize>, usize)> = match opts.order {
        GroupOrder::Static => vec![],
        GroupOrder::Encountered => vec![(".perm", vec![n], 2 * n)],
    };
    Quantized {
        n_out,
        n_in,
        weights: out,
        stored_bits: grouped_uniform_bits(name, n_out, n_in, opts.bits, opts.group, &extra),
    }
}

/// GPTQ's error-compensating sweep with a caller's quantiser: each weight is
/// mapped to the nearest codeword of its row's sorted codebook
/// (`codebook_of_row(r)`), e.g. JLCM's learned codebooks. Returns the
/// dequantised weight; the storage is the codebook format's.
pub fn gptq_codebook_mapping(
    w: &[f32],
    n_out: usize,
    n_in: usize,
    h: &Hessian,
    act_order: bool,
    damping: f64,
    codebook_of_row: &dyn Fn(usize) -> Vec<f32>,
) -> Vec<f32> {
    let books: Vec<Vec<f32>> = (0..n_out).map(codebook_of_row).collect();
    let mut quantize = |r: usize, _orig: usize, _i: usize, _row: &[f64], x: f64| -> f64 {
        let cb = &books[r];
        let x = x as f32;
        let pos = cb.partition_point(|c| *c < x);
        let v = if pos == 0 {
            cb[0]
        } else if pos >= cb.len() {
            cb[cb.len() - 1]
        } else if x - cb[pos - 1] <= cb[pos] - x {
            cb[pos - 1]
        } else {
            cb[pos]
        };
        v as f64
    };
    gptq_sweep(w, n_out, n_in, h, act_order, 128, damping, &mut quantize)
}

/// `(row, original column, processed position, current permuted row, value)`
/// to the decoded value.
type ColumnQuantizer<'a> = dyn FnMut(usize, usize, usize, &[f64], f64) -> f64 + 'a;

/// Steps 1-5 of the module docs with `quantize(row, original column,
/// processed position, current permuted row, value) -> decoded value`.
#[allow(clippy::too_many_arguments)]
fn gptq_sweep(
    w: &[f32],
    n_out: usize,
    n_in: usize,
    h: &Hessian,
    act_order: bool,
    block: usize,
    damping: f64,
    quantize: &mut ColumnQuantizer,
) -> Vec<f32> {
    let n = n_in;
    let mut hd = dense(h);
    let mut w0: Vec<f64> = w.iter().map(|v| *v as f64).collect();
    for j in 0..n {
        if hd[j * n + j] <= 0.0 {
            hd[j * n + j] = 1.0;
            (0..n_out).for_each(|r| w0[r * n + j] = 0.0);
        }
    }
    // Column order.
    let mut perm: Vec<usize> = (0..n).collect();
    if act_order {
        perm.sort_by(|a, b| hd[b * n + b].total_cmp(&hd[a * n + a]).then(a.cmp(b)));
    }
    // Permuted W and H.
    let mut wp = vec![0f64; n_out * n];
    for r in 0..n_out {
        for i in 0..n {
            wp[r * n + i] = w0[r * n + perm[i]];
        }
    }
    let mut hp = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            hp[i * n + j] = hd[perm[i] * n + perm[j]];
        }
    }
    drop(hd);
    let u = upper_cholesky_of_inverse(&mut hp, n, damping);
    drop(hp);

    let mut q = vec![0f64; n_out * n];
    let bs = block;
    let mut err = vec![0f64; n_out * bs];
    for i1 in (0..n).step_by(bs) {
        let i2 = (i1 + bs).min(n);
        let count = i2 - i1;
        for r in 0..n_out {
            let row = &mut wp[r * n..(r + 1) * n];
            for i in i1..i2 {
                let x = row[i];
                let qx = quantize(r, perm[i], i, row, x);
                q[r * n + i] = qx;
                let e = (x - qx) / u[i * n + i];
                err[r * bs + (i - i1)] = e;
                let ui = &u[i * n + i + 1..i * n + i2];
                for (v, c) in row[i + 1..i2].iter_mut().zip(ui) {
                    *v -= e * c;
                }
            }
        }
        // Lazy batch update of the columns after the block.
        if i2 < n {
            for r in 0..n_out {
                let row = &mut wp[r * n + i2..(r + 1) * n];
                for t in 0..count {
                    let e = err[r * bs + t];
                    if e != 0.0 {
                        let ut = &u[(i1 + t) * n + i2..(i1 + t + 1) * n];
                        for (v, c) in row.iter_mut().zip(ut) {
                            *v -= e * c;
                        }
                    }
                }
            }
        }
    }
    let mut out = vec![0f32; n_out * n];
    for r in 0..n_out {
        for i in 0..n {
            out[r * n + perm[i]] = q[r * n + i] as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::dot4;

    /// `dot4` sums exactly like the iterator sum it replaced, signed zeros
    /// and empty inputs included.
    #[test]
    fn dot4_matches_the_iterator_sum_bit_for_bit() {
        let mut s = 7u64;
        let mut next = || {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 1e3
        };
        for n in [0usize, 1, 2, 3, 5, 17, 64] {
            let x: Vec<f64> = (0..n).map(|_| next()).collect();
            let ys: Vec<Vec<f64>> = (0..4).map(|_| (0..n).map(|_| next()).collect()).collect();
            let got = dot4(&x, [&ys[0], &ys[1], &ys[2], &ys[3]]);
            for q in 0..4 {
                let want: f64 = ys[q].iter().zip(&x).map(|(a, b)| a * b).sum();
                assert_eq!(got[q].to_bits(), want.to_bits(), "n={n} q={q}");
            }
        }
        let zeros = [-0.0f64, 0.0];
        let neg = [0.0f64, -0.0];
        let got = dot4(&zeros, [&neg, &zeros, &neg, &zeros]);
        let want: f64 = neg.iter().zip(&zeros).map(|(a, b)| a * b).sum();
        assert_eq!(got[0].to_bits(), want.to_bits());
        let empty: f64 = [0f64; 0].iter().sum();
        assert_eq!(
            dot4(&[], [&[], &[], &[], &[]])[0].to_bits(),
            empty.to_bits()
        );
    }
}
