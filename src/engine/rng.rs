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

/// Draw `m` distinct indices of `0..n` (all of them, in order, if `m >= n`).
pub fn sample_indices(rng: &mut EngineRng, n: usize, m: usize) -> Vec<usize> {
    if m >= n {
        return (0..n).collect();
    }
    // Partial Fisher-Yates over a virtual identity permutation.
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
