//! Seeded, platform-independent randomness: the same seed gives the same
//! numbers natively and in wasm.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The engine's random generator.
pub type EngineRng = ChaCha8Rng;

/// A generator for one purpose, derived from the user's seed and a salt
/// (tensor name, group, phase), so that work done in another order or on
/// another thread draws the same numbers.
pub fn rng_for(seed: u64, salt: &str, index: u64) -> EngineRng {
    // FNV-1a over the salt, mixed with the seed and index.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mixed = seed ^ h.rotate_left(17) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ChaCha8Rng::seed_from_u64(mixed)
}

/// A uniform float in `[0, 1)`.
pub fn unit(rng: &mut EngineRng) -> f64 {
    rng.gen::<u64>() as f64 / (u64::MAX as f64 + 1.0)
}

/// Draw `m` distinct indices of `0..n` (all of them, in order, if `m >= n`),
/// returned in ascending order.
pub fn sample_indices(rng: &mut EngineRng, n: usize, m: usize) -> Vec<usize> {
    if m >= n {
        (0..n).collect()
    } else if n <= DENSE_SAMPLE_MAX || n / 8 <= m {
        sample_dense(rng, n, m)
    } else {
        sample_sparse(rng, n, m)
    }
}

/// Up to this many indices (or when the draw takes an eighth of them),
/// [`sample_indices`] keeps the permutation densely, 4 bytes an index.
const DENSE_SAMPLE_MAX: usize = 1 << 22;

/// Partial Fisher-Yates over the identity permutation of `0..n` (`m < n`,
/// `n < 2^32`), held densely; the picks are collected from a bit set, so in
/// ascending order without a sort.
fn sample_dense(rng: &mut EngineRng, n: usize, m: usize) -> Vec<usize> {
    let mut perm: Vec<u32> = (0..n as u32).collect();
    let mut picked = vec![0u64; n.div_ceil(64)];
    for i in 0..m {
        let j = i + (rng.gen::<u64>() % (n - i) as u64) as usize;
        let vj = perm[j];
        perm[j] = perm[i];
        picked[vj as usize / 64] |= 1 << (vj % 64);
    }
    let mut out = Vec::with_capacity(m);
    for (w, &word) in picked.iter().enumerate() {
        let mut b = word;
        while b != 0 {
            out.push(w * 64 + b.trailing_zeros() as usize);
            b &= b - 1;
        }
    }
    out
}

/// The same draw as [`sample_dense`], holding only the swapped positions.
fn sample_sparse(rng: &mut EngineRng, n: usize, m: usize) -> Vec<usize> {
    let mut swapped = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(m);
    for i in 0..m {
        let j = i + (rng.gen::<u64>() % (n - i) as u64) as usize;
        let vj = *swapped.get(&j).unwrap_or(&j);
        let vi = *swapped.get(&i).unwrap_or(&i);
        swapped.insert(j, vi);
        out.push(vj);
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_sparse_draws_are_the_same() {
        for (n, m) in [
            (2, 1),
            (10, 9),
            (100, 7),
            (1000, 999),
            (65, 64),
            (70_000, 65_536),
            (200_000, 3),
        ] {
            let a = sample_dense(&mut rng_for(7, "t", n as u64), n, m);
            let b = sample_sparse(&mut rng_for(7, "t", n as u64), n, m);
            assert_eq!(a, b, "n {n} m {m}");
            assert_eq!(a.len(), m);
            assert!(a.windows(2).all(|p| p[0] < p[1]) && a.iter().all(|&i| i < n));
        }
    }
}
