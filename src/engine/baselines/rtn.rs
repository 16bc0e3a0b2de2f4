//! Round-to-nearest uniform asymmetric quantisation per group of consecutive
//! weights along the input axis, with an f16 scale and an f16 zero per group.
//!
//! A group's values `x` decode as `x̂ = z + s * q`, `q` in `0..2^b`. The zero
//! `z` is the group minimum rounded *down* to f16 and the scale `s` is
//! rounded *up* so that `z + (2^b - 1) s` reaches the maximum: every value of
//! the group lies inside the grid and its error is at most `s / 2`.

use half::f16;

use super::{code_bytes, header_bytes, Quantized};

/// The uniform grid of one group: f16-representable scale and zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupQuantizer {
    /// Step `s` (an f16 value, >= 0).
    pub scale: f32,
    /// Offset `z` (an f16 value): the decoded value of code 0.
    pub zero: f32,
    /// Largest code, `2^b - 1`.
    pub max_code: u32,
}

/// The f16 value next to `h` in the given direction (finite inputs).
fn f16_step(h: f16, up: bool) -> f16 {
    let b = h.to_bits();
    if h.to_f32() == 0.0 {
        return if up {
            f16::from_bits(1)
        } else {
            f16::from_bits(0x8001)
        };
    }
    let positive = b & 0x8000 == 0;
    f16::from_bits(if positive == up { b + 1 } else { b - 1 })
}

/// The largest f16 value `<= x`.
pub fn f16_at_most(x: f32) -> f32 {
    let mut h = f16::from_f32(x);
    while h.to_f32() > x {
        h = f16_step(h, false);
    }
    h.to_f32()
}

/// The smallest f16 value `>= x`.
pub fn f16_at_least(x: f32) -> f32 {
    let mut h = f16::from_f32(x);
    while h.to_f32() < x {
        h = f16_step(h, true);
    }
    h.to_f32()
}

impl GroupQuantizer {
    /// The grid covering `values` (min to max) with `bits`-bit codes.
    pub fn fit(values: impl Iterator<Item = f32>, bits: u8) -> Self {
        let max_code = (1u32 << bits) - 1;
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            return Self {
                scale: 0.0,
                zero: 0.0,
                max_code,
            };
        }
        let zero = f16_at_most(lo);
        let mut scale = f16_at_least((hi - zero) / max_code as f32);
        while zero + max_code as f32 * scale < hi {
            scale = f16_step(f16::from_f32(scale), true).to_f32();
        }
        Self {
            scale,
            zero,
            max_code,
        }
    }

    /// Nearest code of `x`.
    #[inline]
    pub fn code(&self, x: f32) -> u32 {
        if self.scale == 0.0 {
            return 0;
        }
        let q = ((x - self.zero) / self.scale).round();
        q.clamp(0.0, self.max_code as f32) as u32
    }

    /// Decoded value of code `q`.
    #[inline]
    pub fn decode(&self, q: u32) -> f32 {
        self.zero + self.scale * q as f32
    }

    /// `x` quantised and decoded.
    #[inline]
    pub fn quantize(&self, x: f32) -> f32 {
        self.decode(self.code(x))
    }
}

/// Number of groups of `group` columns in a row of `n_in` (the last may be
/// partial).
pub fn groups_per_row(n_in: usize, group: usize) -> usize {
    n_in.div_ceil(group)
}

/// Stored bits of a tensor with `bits`-bit codes and an f16 scale and zero
/// per row and group of `group` columns (`extra_parts` adds e.g. a
/// permutation), header included.
pub fn grouped_uniform_bits(
    name: &str,
    n_out: usize,
    n_in: usize,
    bits: u8,
    group: usize,
    extra: &[(&str, Vec<usize>, usize)],
) -> u64 {
    let g = groups_per_row(n_in, group);
    let mut parts: Vec<(&str, Vec<usize>)> = vec![
        (".codes", vec![n_out, (n_in * bits as usize).div_ceil(8)]),
        (".scale", vec![n_out, g]),
        (".zero", vec![n_out, g]),
    ];
    let mut data = code_bytes(n_out, n_in, bits) + 2 * n_out * g + 2 * n_out * g;
    for (suffix, shape, bytes) in extra {
        parts.push((suffix, shape.clone()));
        data += bytes;
    }
    ((data + header_bytes(name, &parts)) * 8) as u64
}

/// Round-to-nearest with `bits`-bit codes per group of `group` consecutive
/// weights of a row (the standard setting is `group = 128`).
pub fn rtn(name: &str, w: &[f32], n_out: usize, n_in: usize, bits: u8, group: usize) -> Quantized {
    assert!((1..=8).contains(&bits) && group >= 1 && w.len() == n_out * n_in);
    let mut out = vec![0f32; w.len()];
    for r in 0..n_out {
        let row = &w[r * n_in..(r + 1) * n_in];
        for (c, chunk) in row.chunks(group).enumerate() {
            let q = GroupQuantizer::fit(chunk.iter().copied(), bits);
            let start = r * n_in + c * group;
            for (o, x) in out[start..start + chunk.len()].iter_mut().zip(chunk) {
                *o = q.quantize(*x);
            }
        }
    }
    Quantized {
        n_out,
        n_in,
        weights: out,
        stored_bits: grouped_uniform_bits(name, n_out, n_in, bits, group, &[]),
    }
}
