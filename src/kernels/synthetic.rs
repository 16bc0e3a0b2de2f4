//! Random packed tensors for kernel tests and benchmarks: random indices and
//! codebooks straight into a [`PackedTensor`], without the engine's learning.

use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::format::packed::{pack_indices, Mode, PackedTensor};
use crate::format::safetensors::Dtype;

/// The shape and layout of a random packed tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PackedSpec {
    /// Rows.
    pub n_out: usize,
    /// Columns.
    pub n_in: usize,
    /// Bits per index, 1..=8.
    pub bits: u8,
    /// Codeword dimension: 1, 2, 4 or 8.
    pub dim: u8,
    /// Row groups, 1..=256.
    pub groups: u16,
    /// Codebook per group, or one codebook with a scale per group.
    pub mode: Mode,
}

/// A valid packed tensor with uniform random indices, group ids and
/// codebook values (in `[-1, 1)`, F16), and scales in `[0.5, 2)`.
pub fn random_packed(spec: PackedSpec, seed: u64) -> PackedTensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let PackedSpec {
        n_out,
        n_in,
        bits,
        dim,
        groups,
        mode,
    } = spec;
    let k = 1usize << bits;
    let n_sub = n_in.div_ceil(dim as usize);
    let raw: Vec<u8> = (0..n_out * n_sub)
        .map(|_| rng.gen_range(0..k) as u8)
        .collect();
    let n_cb = if mode == Mode::Codebook {
        groups as usize
    } else {
        1
    };
    let mut codebooks: Vec<f16> = (0..n_cb * k * dim as usize)
        .map(|_| f16::from_f32(rng.gen_range(-1.0..1.0)))
        .collect();
    if dim == 1 {
        // The layout keeps scalar codebooks sorted ascending.
        for cb in codebooks.chunks_mut(k) {
            cb.sort_by(|a, b| a.total_cmp(b));
        }
    }
    let scales = if mode == Mode::Scale {
        (0..groups)
            .map(|_| f16::from_f32(rng.gen_range(0.5..2.0)))
            .collect()
    } else {
        Vec::new()
    };
    PackedTensor {
        name: format!("random.{n_out}x{n_in}.b{bits}.d{dim}.g{groups}"),
        shape: vec![n_out, n_in],
        dtype: Dtype::F32,
        bits,
        dim,
        groups,
        mode,
        n_out,
        n_in,
        indices: pack_indices(&raw, n_sub, bits),
        codebooks,
        group_ids: (0..n_out)
            .map(|_| rng.gen_range(0..groups as u32) as u8)
            .collect(),
        scales,
        rotation: None,
    }
}

/// Uniform random inputs in `[-1, 1)`.
pub fn random_inputs(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect()
}
