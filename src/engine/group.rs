//! Neuron grouping: rows whose value distributions look alike share a
//! codebook. Each row is described by its shape (quantiles of the row over
//! its RMS) and its scale (log RMS), both weighted by `diag H`; the
//! descriptors are clustered by k-means into `G` groups.

use super::kmeans::weighted_kmeans;
use super::rng::EngineRng;

/// Number of quantiles in a row descriptor.
pub const QUANTILES: usize = 8;

/// Descriptor of each row: `[log rms, q_1/rms, ..., q_Q/rms, max|w|/rms]`.
pub fn row_descriptors(w: &[f32], n_out: usize, n_in: usize, hdiag: &[f32]) -> Vec<f32> {
    let dim = QUANTILES + 2;
    let hsum: f64 = hdiag[..n_in]
        .iter()
        .map(|v| *v as f64)
        .sum::<f64>()
        .max(1e-30);
    let mut out = Vec::with_capacity(n_out * dim);
    let mut scratch = vec![0f32; n_in];
    for r in 0..n_out {
        let row = &w[r * n_in..(r + 1) * n_in];
        let rms = weighted_rms(row, hdiag, hsum);
        scratch.copy_from_slice(row);
        out.push(libm::log(rms) as f32);
        // The value of each quantile's rank in total_cmp order, by selection:
        // after selecting rank p, the ranks above p are all right of it.
        let (mut lo, mut last) = (0usize, 0f32);
        for q in 0..QUANTILES {
            let pos = ((q as f64 + 0.5) / QUANTILES as f64 * (n_in - 1) as f64).round() as usize;
            if pos >= lo {
                let (_, v, _) =
                    scratch[lo..].select_nth_unstable_by(pos - lo, |a, b| a.total_cmp(b));
                last = *v;
                lo = pos + 1;
            }
            out.push((last as f64 / rms) as f32);
        }
        let lo_hi = |f: fn(f32, f32) -> f32| row.iter().copied().reduce(f).unwrap_or(0.0);
        let (min, max) = (lo_hi(total_min), lo_hi(total_max));
        let maxabs = min.abs().max(max.abs()) as f64;
        out.push((libm::log(1.0 + maxabs / rms)) as f32);
    }
    out
}

/// `sqrt(sum h x^2 / hsum)` of a row, at least 1e-20.
fn weighted_rms(row: &[f32], hdiag: &[f32], hsum: f64) -> f64 {
    let ms: f64 = row
        .iter()
        .zip(hdiag)
        .map(|(x, h)| (*h as f64) * (*x as f64) * (*x as f64))
        .sum::<f64>()
        / hsum;
    libm::sqrt(ms).max(1e-20)
}

fn total_min(a: f32, b: f32) -> f32 {
    if b.total_cmp(&a).is_lt() {
        b
    } else {
        a
    }
}

fn total_max(a: f32, b: f32) -> f32 {
    if b.total_cmp(&a).is_gt() {
        b
    } else {
        a
    }
}

/// Group the rows into at most `g` groups. Returns the group id of each row
/// and the number of groups; groups are numbered by ascending mean log RMS so
/// the numbering does not depend on k-means' seeding order.
pub fn group_rows(
    w: &[f32],
    n_out: usize,
    n_in: usize,
    hdiag: &[f32],
    g: usize,
    rng: &mut EngineRng,
) -> (Vec<u8>, usize) {
    let g = g.clamp(1, n_out.min(256));
    if g == 1 {
        return (vec![0; n_out], 1);
    }
    let desc = row_descriptors(w, n_out, n_in, hdiag);
    let dim = QUANTILES + 2;
    let weights = vec![1f32; desc.len()];
    let km = weighted_kmeans(&desc, &weights, dim, g, 25, rng);
    // Canonical order: by mean log-rms, then by first row.
    let mut stats: Vec<(f64, usize, usize)> = (0..g).map(|_| (0.0, 0, usize::MAX)).collect();
    for (r, &c) in km.assignment.iter().enumerate() {
        let s = &mut stats[c as usize];
        s.0 += desc[r * dim] as f64;
        s.1 += 1;
        s.2 = s.2.min(r);
    }
    let mut order: Vec<usize> = (0..g).filter(|c| stats[*c].1 > 0).collect();
    order.sort_by(|a, b| {
        let ma = stats[*a].0 / stats[*a].1 as f64;
        let mb = stats[*b].0 / stats[*b].1 as f64;
        ma.total_cmp(&mb).then(stats[*a].2.cmp(&stats[*b].2))
    });
    let mut remap = vec![0u8; g];
    for (new, old) in order.iter().enumerate() {
        remap[*old] = new as u8;
    }
    let ids = km.assignment.iter().map(|c| remap[*c as usize]).collect();
    (ids, order.len())
}

#[cfg(test)]
mod tests {
    use super::{row_descriptors, weighted_rms, QUANTILES};

    /// The descriptors' quantiles and extremes are those of a full sort of
    /// each row (the definition the selection replaces), bit for bit.
    #[test]
    fn descriptors_are_those_of_a_sorted_row() {
        let mut s = 0x9e37_79b9u32;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        for n_in in [1usize, 2, 7, 8, 9, 16, 383, 384] {
            let n_out = 5;
            let w: Vec<f32> = (0..n_out * n_in)
                .map(|_| match next() % 6 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => ((next() % 3) as f32 - 1.0) * 0.5,
                    _ => (next() as i32) as f32 * 1e-10,
                })
                .collect();
            let h: Vec<f32> = (0..n_in).map(|j| 0.5 + j as f32 % 3.0).collect();
            let got = row_descriptors(&w, n_out, n_in, &h);
            for r in 0..n_out {
                let mut sorted = w[r * n_in..(r + 1) * n_in].to_vec();
                sorted.sort_by(|a, b| a.total_cmp(b));
                let d = &got[r * (QUANTILES + 2)..(r + 1) * (QUANTILES + 2)];
                let hsum = h.iter().map(|v| *v as f64).sum::<f64>().max(1e-30);
                let rms = weighted_rms(&w[r * n_in..(r + 1) * n_in], &h, hsum);
                assert_eq!(d[0], libm::log(rms) as f32);
                for q in 0..QUANTILES {
                    let pos =
                        ((q as f64 + 0.5) / QUANTILES as f64 * (n_in - 1) as f64).round() as usize;
                    assert_eq!(
                        d[1 + q],
                        (sorted[pos] as f64 / rms) as f32,
                        "n_in {n_in} row {r} q {q}"
                    );
                }
                let maxabs = sorted[0].abs().max(sorted[n_in - 1].abs()) as f64;
                assert_eq!(d[QUANTILES + 1], libm::log(1.0 + maxabs / rms) as f32);
            }
        }
    }
}
