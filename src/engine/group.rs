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
    let mut sorted = vec![0f32; n_in];
    for r in 0..n_out {
        let row = &w[r * n_in..(r + 1) * n_in];
        let ms: f64 = row
            .iter()
            .zip(hdiag)
            .map(|(x, h)| (*h as f64) * (*x as f64) * (*x as f64))
            .sum::<f64>()
            / hsum;
        let rms = libm::sqrt(ms).max(1e-20);
        sorted.copy_from_slice(row);
        // Values equal under total_cmp are bit-identical: unstable is exact.
        sorted.sort_unstable_by(|a, b| a.total_cmp(b));
        out.push(libm::log(rms) as f32);
        for q in 0..QUANTILES {
            let pos = ((q as f64 + 0.5) / QUANTILES as f64 * (n_in - 1) as f64).round() as usize;
            out.push((sorted[pos] as f64 / rms) as f32);
        }
        let maxabs = sorted[0].abs().max(sorted[n_in - 1].abs()) as f64;
        out.push((libm::log(1.0 + maxabs / rms)) as f32);
    }
    out
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
