//! The optional input rotation of a packed tensor (incoherence processing).
//!
//! `R = B · S`: `S` flips the sign of the input columns whose bit is set,
//! then `B` applies an orthonormal Walsh–Hadamard transform to each block of
//! `block` consecutive columns (`block` a power of two dividing `n_in`).
//! The codes quantise `Q = W Rᵀ`, so `Ŵ = Q R` and `y = Ŵ x = Q (R x)`: a
//! product rotates its input once (`n_in log2 block` adds) and then runs the
//! lookup kernels on `Q` unchanged. Rotating spreads the few large weights
//! and input features of a row over a whole block, which a small codebook
//! quantises better (BENCHMARKS.md, session 10).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use serde::{Deserialize, Serialize};

/// Largest Hadamard block the engine uses (measured as good as 512 on
/// MiniLM's 1536-wide inputs, and it admits any `n_in` divisible by 128).
pub const MAX_BLOCK: usize = 128;
/// Smallest block worth rotating.
pub const MIN_BLOCK: usize = 8;

/// A rotation as stored in a tensor's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// Hadamard block size.
    pub block: usize,
    /// Sign bits as lowercase hex, two digits per byte: bit `j % 8` of byte
    /// `j / 8` set means input column `j` is negated; padding bits zero.
    pub signs: String,
}

/// The block the engine picks for `n_in` columns: the largest power of two
/// up to [`MAX_BLOCK`] dividing `n_in`, or `None` below [`MIN_BLOCK`].
pub fn block_for(n_in: usize) -> Option<usize> {
    let mut b = MAX_BLOCK;
    while b >= MIN_BLOCK {
        if n_in % b == 0 {
            return Some(b);
        }
        b /= 2;
    }
    None
}

impl Rotation {
    /// A rotation of `n_in` columns with sign bits drawn from `next_bit`.
    pub fn new(n_in: usize, block: usize, mut next_bit: impl FnMut() -> bool) -> Self {
        let mut bytes = vec![0u8; n_in.div_ceil(8)];
        for j in 0..n_in {
            if next_bit() {
                if let Some(b) = bytes.get_mut(j / 8) {
                    *b |= 1 << (j % 8);
                }
            }
        }
        Self {
            block,
            signs: bytes.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// Check the rotation against `n_in` columns.
    pub fn validate(&self, n_in: usize) -> Result<(), String> {
        if !self.block.is_power_of_two() || self.block < 2 || n_in % self.block != 0 {
            return Err(format!(
                "rotation block {} is not a power of two >= 2 dividing {n_in}",
                self.block
            ));
        }
        let want = n_in.div_ceil(8) * 2;
        if self.signs.len() != want {
            return Err(format!(
                "rotation signs have {} hex digits, expected {want}",
                self.signs.len()
            ));
        }
        let bytes = self.sign_bytes()?;
        if n_in % 8 != 0 {
            let mask = !((1u16 << (n_in % 8)) - 1) as u8;
            if bytes.last().is_some_and(|b| b & mask != 0) {
                return Err("rotation signs have non-zero padding bits".into());
            }
        }
        Ok(())
    }

    fn sign_bytes(&self) -> Result<Vec<u8>, String> {
        let s = self.signs.as_bytes();
        s.chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .filter(|t| {
                        t.len() == 2
                            && t.bytes()
                                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
                    })
                    .and_then(|t| u8::from_str_radix(t, 16).ok())
                    .ok_or_else(|| "rotation signs are not lowercase hex".to_string())
            })
            .collect()
    }

    /// The signs as ±1 per column (all +1 where the hex does not parse:
    /// only a rotation that validated is meaningful).
    pub fn sign_values(&self, n_in: usize) -> Vec<f32> {
        let bytes = self.sign_bytes().unwrap_or_default();
        (0..n_in)
            .map(|j| match bytes.get(j / 8) {
                Some(b) if b >> (j % 8) & 1 == 1 => -1.0,
                _ => 1.0,
            })
            .collect()
    }

    /// Prepared form for applying to vectors of `n_in`.
    pub fn prepare(&self, n_in: usize) -> Rotator {
        Rotator {
            block: self.block,
            signs: self.sign_values(n_in),
        }
    }
}

/// A rotation ready to apply (signs as ±1).
#[derive(Debug, Clone, PartialEq)]
pub struct Rotator {
    block: usize,
    signs: Vec<f32>,
}

impl Rotator {
    /// Columns.
    pub fn n(&self) -> usize {
        self.signs.len()
    }

    /// `x ← R x` (signs, then the block transform).
    pub fn apply(&self, x: &mut [f32]) {
        x.iter_mut().zip(&self.signs).for_each(|(v, s)| *v *= s);
        hadamard_blocks(x, self.block);
    }

    /// `x ← Rᵀ x` (the block transform, then the signs).
    pub fn apply_transpose(&self, x: &mut [f32]) {
        hadamard_blocks(x, self.block);
        x.iter_mut().zip(&self.signs).for_each(|(v, s)| *v *= s);
    }

    /// `M ← R M Rᵀ` of a square `n x n` matrix (row-major): every row is
    /// rotated (`M Rᵀ`), then every column (`R ·`), the column transform
    /// running its butterflies on whole rows.
    pub fn conjugate(&self, m: &mut [f32]) {
        let n = self.n();
        if n == 0 || m.len() != n * n {
            return;
        }
        m.chunks_exact_mut(n).for_each(|row| self.apply(row));
        for (row, s) in m.chunks_exact_mut(n).zip(&self.signs) {
            row.iter_mut().for_each(|v| *v *= s);
        }
        let b = self.block;
        if b < 2 {
            return;
        }
        let norm = 1.0 / (b as f32).sqrt();
        for blk in m.chunks_exact_mut(b * n) {
            let mut h = 1;
            while h < b {
                for pair in blk.chunks_exact_mut(2 * h * n) {
                    let (lo, hi) = pair.split_at_mut(h * n);
                    for (a, c) in lo.iter_mut().zip(hi.iter_mut()) {
                        let (u, v) = (*a, *c);
                        *a = u + v;
                        *c = u - v;
                    }
                }
                h *= 2;
            }
            blk.iter_mut().for_each(|v| *v *= norm);
        }
    }

    /// `R x` of every row of `x` (`rows x n`), into a new buffer.
    pub fn apply_rows(&self, x: &[f32]) -> Vec<f32> {
        let mut out = x.to_vec();
        for row in out.chunks_exact_mut(self.n().max(1)) {
            self.apply(row);
        }
        out
    }
}

/// Orthonormal Walsh–Hadamard transform of each block of `b` values (in
/// place; the transform is its own inverse).
fn hadamard_blocks(x: &mut [f32], b: usize) {
    if b < 2 {
        return;
    }
    let norm = 1.0 / (b as f32).sqrt();
    for blk in x.chunks_exact_mut(b) {
        let mut h = 1;
        while h < b {
            for pair in blk.chunks_exact_mut(2 * h) {
                let (lo, hi) = pair.split_at_mut(h);
                for (a, c) in lo.iter_mut().zip(hi.iter_mut()) {
                    let (u, v) = (*a, *c);
                    *a = u + v;
                    *c = u - v;
                }
            }
            h *= 2;
        }
        blk.iter_mut().for_each(|v| *v *= norm);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn rot(n: usize, block: usize) -> Rotation {
        let mut s = 12345u64;
        Rotation::new(n, block, || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s & 1 == 1
        })
    }

    #[test]
    fn rotation_is_orthonormal_and_its_transpose_inverts_it() {
        for (n, b) in [(384, 128), (24, 8), (64, 64), (40, 8)] {
            let r = rot(n, b);
            r.validate(n).unwrap();
            let p = r.prepare(n);
            let x: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
            let mut y = x.clone();
            p.apply(&mut y);
            let nx: f32 = x.iter().map(|v| v * v).sum();
            let ny: f32 = y.iter().map(|v| v * v).sum();
            assert!((nx - ny).abs() <= 1e-4 * nx, "{n}/{b}: norm {nx} -> {ny}");
            assert_ne!(x, y);
            p.apply_transpose(&mut y);
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn conjugate_is_r_m_rt() {
        let (n, b) = (24, 8);
        let p = rot(n, b).prepare(n);
        let m: Vec<f32> = (0..n * n).map(|i| ((i * 31) % 17) as f32 - 8.0).collect();
        // Columns of R = R e_j; R M Rᵀ [i][k] = Σ_a Σ_c R[i][a] M[a][c] R[k][c].
        let mut r = vec![0f32; n * n];
        for j in 0..n {
            let mut e = vec![0f32; n];
            e[j] = 1.0;
            p.apply(&mut e);
            for i in 0..n {
                r[i * n + j] = e[i];
            }
        }
        let mut want = vec![0f32; n * n];
        for i in 0..n {
            for k in 0..n {
                let mut acc = 0f32;
                for a in 0..n {
                    for c in 0..n {
                        acc += r[i * n + a] * m[a * n + c] * r[k * n + c];
                    }
                }
                want[i * n + k] = acc;
            }
        }
        let mut got = m.clone();
        p.conjugate(&mut got);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-3, "{g} vs {w}");
        }
    }

    #[test]
    fn bad_rotations_are_refused() {
        let r = rot(384, 128);
        assert!(r.validate(256).is_err());
        let mut bad = r.clone();
        bad.block = 96;
        assert!(bad.validate(384).is_err());
        bad = r.clone();
        bad.signs.replace_range(0..1, "G");
        assert!(bad.validate(384).is_err());
        bad = r.clone();
        bad.signs.pop();
        assert!(bad.validate(384).is_err());
        let mut pad = rot(12, 4);
        pad.signs = "ff".to_string() + "ff";
        assert!(pad.validate(12).unwrap_err().contains("padding"));
        assert_eq!(block_for(384), Some(128));
        assert_eq!(block_for(1536), Some(128));
        assert_eq!(block_for(40), Some(8));
        assert_eq!(block_for(45), None);
    }
}
