//! Weighted k-means with k-means++ seeding and Lloyd iterations.
//!
//! Points have `dim` coordinates and one weight per coordinate; the distance
//! is `sum_a w_a (x_a - c_a)^2` and a centroid coordinate is the weighted
//! mean. Deterministic for a given generator.

use super::rng::{unit, EngineRng};

/// Result of a k-means run.
#[derive(Debug, Clone)]
pub struct KMeans {
    /// `k * dim` centroid coordinates.
    pub centroids: Vec<f32>,
    /// Cluster of each point.
    pub assignment: Vec<u32>,
    /// Weighted sum of squared distances at the end.
    pub inertia: f64,
}

#[inline]
fn dist(x: &[f32], w: &[f32], c: &[f32]) -> f64 {
    let mut s = 0f64;
    for a in 0..x.len() {
        let d = (x[a] - c[a]) as f64;
        s += w[a] as f64 * d * d;
    }
    s
}

/// Nearest centroid of `x` under weights `w`; ties go to the lower index.
#[inline]
pub fn nearest(x: &[f32], w: &[f32], centroids: &[f32], dim: usize) -> (u32, f64) {
    let mut best = (0u32, f64::INFINITY);
    for (k, c) in centroids.chunks_exact(dim).enumerate() {
        let d = dist(x, w, c);
        if d < best.1 {
            best = (k as u32, d);
        }
    }
    best
}

/// Weighted k-means of `points` (`n * dim`) with per-coordinate `weights`
/// (`n * dim`, non-negative) into `k` clusters. If there are fewer distinct
/// points than `k`, the spare centroids repeat existing ones.
pub fn weighted_kmeans(
    points: &[f32],
    weights: &[f32],
    dim: usize,
    k: usize,
    iters: usize,
    rng: &mut EngineRng,
) -> KMeans {
    let n = points.len() / dim;
    assert!(k >= 1 && dim >= 1 && weights.len() == points.len());
    if n == 0 {
        return KMeans {
            centroids: vec![0.0; k * dim],
            assignment: vec![],
            inertia: 0.0,
        };
    }
    let pw: Vec<f64> = weights
        .chunks_exact(dim)
        .map(|w| w.iter().map(|v| *v as f64).sum::<f64>() + 1e-30)
        .collect();
    let point = |i: usize| &points[i * dim..(i + 1) * dim];
    let wt = |i: usize| &weights[i * dim..(i + 1) * dim];

    // k-means++ seeding, D^2 weighted by the point's weight.
    let mut centroids: Vec<f32> = Vec::with_capacity(k * dim);
    let first = pick(&pw, unit(rng));
    centroids.extend_from_slice(point(first));
    let mut d2: Vec<f64> = (0..n)
        .map(|i| dist(point(i), wt(i), point(first)))
        .collect();
    while centroids.len() < k * dim {
        let scores: Vec<f64> = d2.iter().zip(&pw).map(|(d, w)| d * w).collect();
        let total: f64 = scores.iter().sum();
        let c = if total > 0.0 {
            pick(&scores, unit(rng))
        } else {
            // All points coincide with centroids: repeat one.
            first
        };
        let start = centroids.len();
        centroids.extend_from_slice(point(c));
        let newc = centroids[start..].to_vec();
        for i in 0..n {
            let d = dist(point(i), wt(i), &newc);
            if d < d2[i] {
                d2[i] = d;
            }
        }
    }

    let mut assignment = vec![0u32; n];
    let mut inertia = 0f64;
    for it in 0..=iters {
        // Assign.
        let mut changed = false;
        inertia = 0.0;
        for i in 0..n {
            let (c, d) = nearest(point(i), wt(i), &centroids, dim);
            if c != assignment[i] || it == 0 {
                changed |= c != assignment[i];
                assignment[i] = c;
            }
            inertia += d;
        }
        if it == iters || (it > 0 && !changed) {
            break;
        }
        // Update: weighted mean per coordinate.
        let mut num = vec![0f64; k * dim];
        let mut den = vec![0f64; k * dim];
        for i in 0..n {
            let c = assignment[i] as usize;
            for a in 0..dim {
                let w = wt(i)[a] as f64;
                num[c * dim + a] += w * point(i)[a] as f64;
                den[c * dim + a] += w;
            }
        }
        let mut counts = vec![0usize; k];
        for &c in &assignment {
            counts[c as usize] += 1;
        }
        for c in 0..k {
            if counts[c] == 0 {
                // Empty cluster: move it to the point that costs most now.
                let (far, _) = (0..n)
                    .map(|i| (i, nearest(point(i), wt(i), &centroids, dim).1 * 1.0))
                    .fold((0, -1.0), |b, x| if x.1 > b.1 { x } else { b });
                centroids[c * dim..(c + 1) * dim].copy_from_slice(point(far));
                continue;
            }
            for a in 0..dim {
                if den[c * dim + a] > 0.0 {
                    centroids[c * dim + a] = (num[c * dim + a] / den[c * dim + a]) as f32;
                }
            }
        }
    }
    KMeans {
        centroids,
        assignment,
        inertia,
    }
}

/// `x`'s bits mapped so that unsigned order is `f32::total_cmp` order.
#[inline]
fn total_order_bits(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The indices of `xs` ordered by `f32::total_cmp`, ties by index (`xs.len()
/// < 2^32`): a stable LSD radix sort of the order-preserving keys, three
/// passes of 11, 11 and 10 bits, a pass skipped when every key shares its
/// digit. The order is total, so any correct sort gives the same indices.
pub fn total_order_argsort(xs: &[f32]) -> Vec<u32> {
    let n = xs.len();
    let mut keys: Vec<u32> = xs.iter().map(|x| total_order_bits(*x)).collect();
    let mut idx: Vec<u32> = (0..n as u32).collect();
    let (mut keys2, mut idx2) = (vec![0u32; n], vec![0u32; n]);
    for (shift, width) in [(0u32, 11u32), (11, 11), (22, 10)] {
        let mask = (1u32 << width) - 1;
        let mut count = vec![0usize; (1 << width) + 1];
        for k in &keys {
            count[((k >> shift) & mask) as usize + 1] += 1;
        }
        if count.contains(&n) {
            continue;
        }
        for d in 1..count.len() {
            count[d] += count[d - 1];
        }
        for (k, i) in keys.iter().zip(&idx) {
            let slot = &mut count[((k >> shift) & mask) as usize];
            keys2[*slot] = *k;
            idx2[*slot] = *i;
            *slot += 1;
        }
        std::mem::swap(&mut keys, &mut keys2);
        std::mem::swap(&mut idx, &mut idx2);
    }
    idx
}

/// Index drawn with probability proportional to `scores`, from `u` in [0, 1).
fn pick(scores: &[f64], u: f64) -> usize {
    let total: f64 = scores.iter().sum();
    let target = u * total;
    let mut acc = 0.0;
    for (i, s) in scores.iter().enumerate() {
        acc += s;
        if acc > target {
            return i;
        }
    }
    scores.iter().rposition(|s| *s > 0.0).unwrap_or(0)
}

/// Weighted k-means of scalar `points` (one weight each) into `k` clusters:
/// k-means++ seeding, then Lloyd iterations on the sorted points using
/// prefix sums, so an iteration costs `O(k log n)` instead of `O(n k)`.
/// Returns the centroids in ascending order.
pub fn weighted_kmeans_1d(
    points: &[f32],
    weights: &[f32],
    k: usize,
    iters: usize,
    rng: &mut EngineRng,
) -> Vec<f32> {
    let n = points.len();
    if n == 0 {
        return vec![0.0; k];
    }
    assert!(n <= u32::MAX as usize, "too many points for one k-means");
    // Ascending by value (total order), ties by index.
    let order = total_order_argsort(points);
    let xs: Vec<f64> = order.iter().map(|&i| points[i as usize] as f64).collect();
    let ws: Vec<f64> = order
        .iter()
        .map(|&i| weights[i as usize] as f64 + 1e-30)
        .collect();
    let mut pw = vec![0f64; n + 1];
    let mut pwx = vec![0f64; n + 1];
    for i in 0..n {
        pw[i + 1] = pw[i] + ws[i];
        pwx[i + 1] = pwx[i] + ws[i] * xs[i];
    }
    // k-means++ seeding.
    let mut cs: Vec<f64> = vec![xs[pick(&ws, unit(rng))]];
    let mut d2: Vec<f64> = xs.iter().map(|x| (x - cs[0]) * (x - cs[0])).collect();
    while cs.len() < k {
        let scores: Vec<f64> = d2.iter().zip(&ws).map(|(d, w)| d * w).collect();
        let c = if scores.iter().sum::<f64>() > 0.0 {
            xs[pick(&scores, unit(rng))]
        } else {
            cs[0]
        };
        for (d, x) in d2.iter_mut().zip(&xs) {
            let e = (x - c) * (x - c);
            if e < *d {
                *d = e;
            }
        }
        cs.push(c);
    }
    cs.sort_by(|a, b| a.total_cmp(b));
    // Lloyd: cluster j holds the sorted points between the midpoints.
    for _ in 0..iters {
        let mut next = cs.clone();
        let mut start = 0usize;
        for j in 0..k {
            let end = if j + 1 < k {
                let mid = 0.5 * (cs[j] + cs[j + 1]);
                start.max(xs.partition_point(|x| *x <= mid))
            } else {
                n
            };
            let w = pw[end] - pw[start];
            if end > start && w > 0.0 {
                next[j] = (pwx[end] - pwx[start]) / w;
            }
            start = end;
        }
        next.sort_by(|a, b| a.total_cmp(b));
        let moved = next.iter().zip(&cs).any(|(a, b)| a != b);
        cs = next;
        if !moved {
            break;
        }
    }
    cs.iter().map(|c| *c as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::{total_order_argsort, total_order_bits};

    /// The radix argsort is the comparison sort's order, on values with many
    /// ties, both signs, zeros of both signs, subnormals and infinities.
    #[test]
    fn radix_argsort_is_the_total_cmp_sort() {
        let mut s = 0x1234_5678u32;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        for n in [0usize, 1, 2, 3, 100, 4097, 70_000] {
            let xs: Vec<f32> = (0..n)
                .map(|_| match next() % 8 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => ((next() % 5) as f32 - 2.0) * 0.25,
                    3 => f32::from_bits(next() % 1000),
                    4 => f32::INFINITY,
                    _ => (next() as i32) as f32 * 1e-9,
                })
                .collect();
            let mut want: Vec<u32> = (0..n as u32).collect();
            want.sort_by(|a, b| xs[*a as usize].total_cmp(&xs[*b as usize]).then(a.cmp(b)));
            assert_eq!(total_order_argsort(&xs), want, "n {n}");
        }
        // Every key the same: every pass skipped, the identity order.
        assert_eq!(total_order_argsort(&[1.5; 9]), (0..9).collect::<Vec<u32>>());
    }

    /// The integer key orders floats exactly as `f32::total_cmp`.
    #[test]
    fn total_order_bits_is_total_cmp() {
        let xs = [
            f32::NEG_INFINITY,
            -3.5,
            -1e-40,
            -0.0,
            0.0,
            1e-40,
            2.0,
            f32::INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MIN,
            f32::MAX,
        ];
        for a in xs {
            for b in xs {
                assert_eq!(
                    total_order_bits(a).cmp(&total_order_bits(b)),
                    a.total_cmp(&b),
                    "{a} vs {b}"
                );
            }
        }
    }
}
