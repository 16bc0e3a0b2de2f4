//! The prepared layout of a packed matrix, and the portable kernels over it.
//!
//! [`PreparedLayout::new`] reads a validated [`PackedTensor`] once and picks a
//! [`Plan`]:
//!
//! - [`Plan::NibbleLut`] (`b <= 4`, any `d`): indices are cut into *slots*
//!   of `g = 4 / b` consecutive indices (`g = 1` for `b = 3`), i.e. `g * d`
//!   consecutive inputs, so that the `g` indices of one row in one slot form
//!   a 4-bit *slot index* `m = Σ_i idx[t*g + i] << (b*i)`. Two slots
//!   (`2p`, `2p+1`) make one byte per row, low nibble first: for
//!   `b = 1, 2, 4` that byte **is** byte `p` of the packed row (the layout
//!   packs indices little-endian), so the plan reads the packed rows
//!   themselves and holds no copy of the indices; only `b = 3` keeps a
//!   row-major repacked copy (one byte per two 3-bit indices, 4/3 of the
//!   packed bytes). Rows are sorted by codebook into blocks of 16 (the last
//!   block of a codebook padded with a zero row). Per input vector and
//!   codebook, a table holds for every slot the 16 partial sums
//!   `T[t][m] = Σ_i codeword[(m >> b*i) & (K-1)] · x[(t*g + i)*d ..][..d]`
//!   as f32 — the dot products of each input slice with every codeword (or
//!   every combination of `g` codewords), computed once per input — split
//!   into four byte planes so that one 16-byte shuffle per plane looks up
//!   the partial sums of 16 rows at once. The kernels load 16 bytes of each
//!   of the block's 16 rows and transpose the 16x16 bytes in registers, so
//!   each vector holds one slot pair of the 16 rows. Tables are built a
//!   chunk of [`LUT_CHUNK_PAIRS`] slot pairs at a time (a whole row up to
//!   4096 inputs at 4 bits), which every block of the codebook then reads
//!   from L2 (see [`lut_table_offset`]; the portable kernels keep whole f32s
//!   instead, [`portable_table_offset`]). The fixed-point tables
//!   ([`LutPrecision::FixedPoint`]) take chunks of [`FIXED_CHUNK_PAIRS`], the
//!   two-level ones ([`LutPrecision::TwoLevel`]) of [`TWO_LEVEL_CHUNK_PAIRS`].
//! - [`Plan::Decode`] (`b >= 5`, or too few rows per codebook): per row,
//!   unpack a chunk of indices and add `codeword · input slice`, `d` values
//!   at a time, straight from the packed bytes (codewords gathered from an
//!   f32 codebook that stays in L1: 4 KiB for `d = 4, b = 8`).
//!
//! Resident memory besides the packed tensor: f32 codebooks, a scale per
//! group and 4 bytes a row of block row ids (plus, for `b = 3` only, the
//! repacked indices).

use crate::format::packed::{read_index, PackedTensor};

use super::{simd128, x86, Isa};

/// Rows per block of the nibble-lookup plan (one byte shuffle covers 16 rows).
pub const BLOCK_ROWS: usize = 16;
/// Row id of a padding lane in a block.
pub const PAD_ROW: u32 = u32::MAX;
/// Bytes of the table of one slot pair: 4 byte planes x 2 slots x 16 entries.
pub const LUT_PAIR_BYTES: usize = 128;
/// Minimum average rows per codebook for the nibble-lookup plan: below it,
/// building a table per codebook and input (about 1.5 lookups of a 16-row
/// block) costs more than decoding the few rows directly.
pub const LUT_MIN_ROWS_PER_CODEBOOK: usize = 16;
/// Slot pairs per f32 table chunk: 2048 pairs are 256 KiB of table (in L2),
/// a whole 4096-input row at 4 bits. The chunk is not kept to L1: with the
/// table in L2 each block reads 2 KiB of every row in one go instead of 128
/// bytes at a time (16 KiB chunks, as before), which at 4096x4096, 16
/// codebooks (rows of a codebook spread over the matrix), 4-bit, took the
/// SIMD128 kernel from 4.48 to 3.63 ms in Node and the AVX2 one from 3.17
/// to 1.82 ms (BENCHMARKS.md, session 8). A multiple of 16 (the kernels
/// transpose 16 pairs of 16 rows at a time).
pub const LUT_CHUNK_PAIRS: usize = 2048;
/// Slot pairs per fixed-point table chunk: 2048 pairs are 128 KiB of table
/// (in L2), for the same reason as [`LUT_CHUNK_PAIRS`] (Node, 4096x4096,
/// 4-bit, 16 codebooks: 2.26 ms, against 3.26 with 128 pairs, 2.71 with
/// 512, 2.44 with 1024). At most 4096 slots, so a chunk's `i32` lane sums
/// stay below `4096 * 2047 < 2^24` (exact in f32).
pub const FIXED_CHUNK_PAIRS: usize = 2048;
/// Largest number of inputs one slot covers (`b = 1`, `d = 8`: 4 x 8).
pub const MAX_SLOT_INPUTS: usize = 32;
/// Indices unpacked at a time by the decode plan.
pub const DECODE_CHUNK: usize = 64;
/// Batch from which a product decodes tiles of [`TILE_ROWS`] rows to f32 and
/// runs a register-blocked micro-GEMM of each tile against every input,
/// instead of the per-input plans (whose per-input tables or per-row decode
/// cost grows with the batch). The tiled path decodes each weight once per
/// product and then streams f32 like a dense GEMM. Swept with
/// `benches/kernels.rs` (2-bit, 4096x4096, 1536x384, 384x1536; native AVX2,
/// Node, Chromium; BENCHMARKS.md `## Kernels`): at batch 1 the lookup plan
/// is 1.1-2.3x faster, at batch 2 the tiled path is 0.45-1.05x the lookup
/// time (0.7-0.8x geometric mean), from batch 3 on it wins everywhere but
/// one noisy Chromium point.
pub const TILE_MIN_BATCH: usize = 2;
/// Rows decoded at a time by the tiled path: `16 x n_in` f32 of scratch
/// (24 KiB for `n_in = 384`, 96 KiB for 1536), never a whole layer.
pub const TILE_ROWS: usize = 16;
/// Bytes of inputs the tiled path runs each decoded tile over before it
/// moves to the next block of inputs: 512 KiB stay in a 1-2 MiB L2 beside
/// the tile (a batch of 32 MiniLM sentences is 500 rows, 3 MB at
/// `n_in = 1536`, which streamed from L3 for every tile).
pub const TILE_INPUT_BYTES: usize = 512 * 1024;
/// Rows x inputs of one micro-GEMM call ([`gemm_4x2`]).
pub const MICRO_ROWS: usize = 4;
/// Inputs of one micro-GEMM call.
pub const MICRO_INPUTS: usize = 2;

/// Table precision of the nibble-lookup plan.
///
/// - `Exact`: f32 partial sums, split into 4 byte planes (4 swizzles per slot
///   and 16 rows), within [`super::error_budget`] of the reference.
/// - `FixedPoint`: per table chunk ([`FIXED_CHUNK_PAIRS`] slot pairs of one
///   codebook and input), the f32 partial sums are quantised to integers
///   `q = round(T * FIXED_POINT_MAX / B)` (`|q| <= 2047`, 12 bits) with one
///   f32 scale `B / FIXED_POINT_MAX` per chunk, where `B >= max|T|` is
///   [`fixed_point_bound`] (`max|T|` itself for one input a slot), known
///   before the entries, so the table is built in one pass; stored as a low
///   and a high byte plane (2 swizzles per slot and 16 rows). Lanes add `i16`
///   sums over [`FIXED_GROUP_SLOTS`] slots (`16 * 2047 < 2^15`: no
///   overflow), widen them to `i32` (exact: a chunk sums at most
///   `4096 * 2047 < 2^24`, so its conversion to f32 is exact too) and scale
///   once per chunk. Within [`super::fixed_point_error_budget`] of the
///   reference; the portable and SIMD variants agree bit for bit.
/// - `TwoLevel`: per chunk one step `s = B / TWO_LEVEL_MAX` (the same bound
///   `B`), and each entry a 20-bit integer `Q = round(T / s)`,
///   `|Q| <= 127 * 4096`, split into an 8-bit `hi = (Q + 2048) >> 12` and a
///   12-bit `lo = Q - 4096 hi` ([`build_two_level_table`]): 3 byte planes (3 swizzles per
///   slot and 16 rows, against 4 for `Exact` and 2 for `FixedPoint`). Lanes
///   add `hi` and `lo` in `i16` over [`FIXED_GROUP_SLOTS`] slots, then each
///   row's `4096 Σhi + Σlo = ΣQ` (`|ΣQ| < 2^24`: exact) is converted to f32
///   and added; the chunk's sum is scaled by `s`. The quantisation error of
///   an entry is `s / 2 < 8.1 f32::EPSILON B` (1/250 of `FixedPoint`'s),
///   within [`super::two_level_error_budget`]; the portable and SIMD
///   variants agree bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LutPrecision {
    /// f32 tables.
    #[default]
    Exact,
    /// 12-bit fixed-point tables with one scale per chunk.
    FixedPoint,
    /// 20-bit fixed-point tables stored in two levels, an 8-bit `hi` and a
    /// 12-bit `lo` per entry (see [`build_two_level_table`]).
    TwoLevel,
}

/// Largest magnitude of a fixed-point table entry (12-bit signed).
pub const FIXED_POINT_MAX: f32 = 2047.0;
/// Slots whose `i16` lane sums are added before widening to `i32`
/// (`FIXED_GROUP_SLOTS * 2047 <= i16::MAX`); 8 slot pairs, one transpose of
/// the SIMD kernel.
pub const FIXED_GROUP_SLOTS: usize = 16;
/// Bytes of the fixed-point table of one slot pair: 2 byte planes x 2
/// slots x 16 entries.
pub const FIXED_PAIR_BYTES: usize = 64;

/// Bits of the `lo` level of a two-level table entry ([`LutPrecision::TwoLevel`]):
/// an entry is one 20-bit integer `Q = 4096 hi + lo`, `lo` in `-2048..=2047`.
pub const TWO_LEVEL_LO_BITS: u32 = 12;
/// Largest magnitude of the `hi` level of a two-level entry (8-bit signed).
pub const TWO_LEVEL_HI_MAX: f32 = 127.0;
/// Largest magnitude of a two-level entry `Q`, `127 * 4096`.
pub const TWO_LEVEL_MAX: f32 = TWO_LEVEL_HI_MAX * (1 << TWO_LEVEL_LO_BITS) as f32;
/// Slot pairs per two-level table chunk: 2048 pairs are 192 KiB (in L2),
/// as [`LUT_CHUNK_PAIRS`].
pub const TWO_LEVEL_CHUNK_PAIRS: usize = 2048;
/// Bytes of the two-level table of one slot pair: 3 byte planes (`hi`,
/// then the low and high bytes of `lo`) x 2 slots x 16 entries, laid out by
/// [`two_level_table_offset`].
pub const TWO_LEVEL_PAIR_BYTES: usize = 96;

/// Byte offset, inside a two-level table chunk, of byte plane `plane`
/// (0 = `hi`, 1 = low byte of `lo`, 2 = high byte) of slot `t`: 16 bytes,
/// entry `m` at `+ m`; per slot pair 96 bytes `[plane][t % 2][16]`.
#[inline]
pub fn two_level_table_offset(t: usize, plane: usize) -> usize {
    (t / 2) * TWO_LEVEL_PAIR_BYTES + plane * 32 + (t % 2) * 16
}

/// Byte offset, inside a fixed-point table chunk, of byte plane `plane`
/// (0 = low byte of the `i16` entry, 1 = high byte) of slot `t`: 16 bytes,
/// entry `m` at `+ m`; per slot pair 64 bytes `[plane][t % 2][16]`. Portable
/// and SIMD variants share this layout.
#[inline]
pub fn fixed_table_offset(t: usize, plane: usize) -> usize {
    (t / 2) * FIXED_PAIR_BYTES + plane * 32 + (t % 2) * 16
}

/// Byte offset, inside the table of one codebook, of byte plane `plane`
/// (0 = least significant byte of the f32) of slot `t`: 16 bytes, entry `m`
/// at `+ m`. Per slot pair `p = t / 2`, 128 bytes ordered plane-major then
/// slot (`[plane][t % 2][16]`), so that one 32-byte load holds one plane of
/// both slots.
#[inline]
pub fn lut_table_offset(t: usize, plane: usize) -> usize {
    (t / 2) * LUT_PAIR_BYTES + plane * 32 + (t % 2) * 16
}

/// One block of 16 rows sharing a codebook.
#[derive(Debug, Clone, PartialEq)]
pub struct LutBlock {
    /// Codebook of every row of the block.
    pub codebook: u32,
    /// Original row of each lane, [`PAD_ROW`] for padding.
    pub rows: [u32; BLOCK_ROWS],
}

/// The nibble-lookup plan (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct NibbleLut {
    /// Bits per index (1..=4).
    pub bits: u8,
    /// Codeword dimension `d`.
    pub dim: usize,
    /// Indices per slot, `g`.
    pub indices_per_slot: usize,
    /// Slot pairs per row, `ceil(ceil(n_sub / g) / 2)`: the packed row
    /// bytes for `b = 1, 2, 4`.
    pub n_pairs: usize,
    /// Blocks, sorted by codebook.
    pub blocks: Vec<LutBlock>,
    /// `b = 3` only: slot-pair bytes, row-major (`n_out x n_pairs`); empty
    /// otherwise (the packed rows are read directly).
    pub repacked: Vec<u8>,
}

impl NibbleLut {
    /// Inputs one slot covers, `g * d`.
    pub fn inputs_per_slot(&self) -> usize {
        self.indices_per_slot * self.dim
    }
    /// Inputs covered by the table (`n_in` rounded up to whole slot pairs).
    pub fn padded_inputs(&self) -> usize {
        self.n_pairs * 2 * self.inputs_per_slot()
    }
    /// The slot-pair bytes of every lane of every block (`zeros`, at least
    /// `n_pairs` bytes, for padding lanes).
    pub fn block_rows<'a>(
        &'a self,
        p: &'a PackedTensor,
        zeros: &'a [u8],
    ) -> Vec<[&'a [u8]; BLOCK_ROWS]> {
        self.blocks
            .iter()
            .map(|blk| {
                blk.rows.map(|r| {
                    if r == PAD_ROW {
                        zeros
                    } else {
                        self.row_pairs(p, r as usize)
                    }
                })
            })
            .collect()
    }
    /// End of the run of blocks sharing block `first`'s codebook (blocks are
    /// sorted by codebook).
    pub fn codebook_end(&self, first: usize) -> usize {
        let codebook = self.blocks[first].codebook;
        self.blocks[first..]
            .iter()
            .position(|blk| blk.codebook != codebook)
            .map_or(self.blocks.len(), |n| first + n)
    }
    /// The `n_pairs` slot-pair bytes of row `r`.
    pub fn row_pairs<'a>(&'a self, p: &'a PackedTensor, r: usize) -> &'a [u8] {
        if self.repacked.is_empty() {
            p.row_indices(r)
        } else {
            &self.repacked[r * self.n_pairs..(r + 1) * self.n_pairs]
        }
    }
}

/// Which path a product takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProductPath {
    /// The plan's per-input kernels below [`TILE_MIN_BATCH`] inputs, the
    /// tiled path from there on.
    #[default]
    Auto,
    /// Always the plan's per-input kernels.
    PerInput,
    /// Always the tiled path (decode 16 rows, micro-GEMM).
    Tiled,
}

/// How products are computed.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Lookup of partial sums of 16 rows at once.
    NibbleLut(NibbleLut),
    /// Per row, codewords times input slices.
    Decode,
}

/// A packed matrix prepared for products: codebooks as f32, group scales
/// and the plan (block row ids; repacked indices for `b = 3` only).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedLayout {
    n_out: usize,
    n_in: usize,
    bits: u8,
    dim: usize,
    /// Codebooks as f32, `[C, K, d]`.
    codebooks: Vec<f32>,
    /// Scale of each group (1 in codebook mode).
    group_scale: Vec<f32>,
    /// The plan.
    pub plan: Plan,
}

impl PreparedLayout {
    /// Prepare a validated packed tensor.
    pub fn new(p: &PackedTensor) -> Self {
        let codebooks: Vec<f32> = p.codebooks.iter().map(|v| v.to_f32()).collect();
        let group_scale: Vec<f32> = (0..p.groups as usize).map(|g| p.scale(g)).collect();
        let n_cb = p.n_codebooks();
        let lut_fits = p.bits <= 4 && p.n_out >= LUT_MIN_ROWS_PER_CODEBOOK * n_cb;
        let plan = if lut_fits {
            Plan::NibbleLut(build_nibble_lut(p))
        } else {
            Plan::Decode
        };
        Self {
            n_out: p.n_out,
            n_in: p.n_in,
            bits: p.bits,
            dim: p.dim as usize,
            codebooks,
            group_scale,
            plan,
        }
    }

    /// Heap bytes held by this layout (besides the packed tensor).
    pub fn heap_bytes(&self) -> usize {
        let lut = match &self.plan {
            Plan::NibbleLut(l) => {
                l.repacked.len() + l.blocks.len() * std::mem::size_of::<LutBlock>()
            }
            Plan::Decode => 0,
        };
        4 * (self.codebooks.len() + self.group_scale.len()) + lut
    }

    /// A short name of the plan (`nibble-lut`, `decode`).
    pub fn plan_name(&self) -> &'static str {
        match self.plan {
            Plan::NibbleLut(_) => "nibble-lut",
            Plan::Decode => "decode",
        }
    }

    fn codebook(&self, c: usize) -> &[f32] {
        let len = (1usize << self.bits) * self.dim;
        &self.codebooks[c * len..(c + 1) * len]
    }

    /// Codebook of row `r`.
    #[inline]
    fn row_codebook(p: &PackedTensor, r: usize) -> usize {
        p.codebook_of_group(p.group_ids[r] as usize)
    }

    /// Scale of row `r` (1 in codebook mode).
    #[inline]
    fn row_scale(&self, p: &PackedTensor, r: usize) -> f32 {
        self.group_scale[p.group_ids[r] as usize]
    }

    /// `y[b] = Ŵ x[b]`; shapes were checked by the caller; `p` is the tensor
    /// this layout was prepared from.
    pub fn matmul(
        &self,
        p: &PackedTensor,
        isa: Isa,
        path: ProductPath,
        precision: LutPrecision,
        x: &[f32],
        batch: usize,
        y: &mut [f32],
    ) {
        let tiled = match path {
            ProductPath::Auto => batch >= TILE_MIN_BATCH,
            ProductPath::PerInput => false,
            ProductPath::Tiled => true,
        };
        if tiled {
            return self.matmul_tiled(p, isa, x, batch, y);
        }
        match &self.plan {
            Plan::NibbleLut(lut) => match precision {
                LutPrecision::Exact => self.matmul_nibble_lut(p, lut, isa, x, batch, y),
                LutPrecision::FixedPoint | LutPrecision::TwoLevel => {
                    self.matmul_nibble_fixed(p, lut, isa, precision, x, batch, y)
                }
            },
            Plan::Decode => self.matmul_decode(p, isa, x, batch, y),
        }
    }

    fn matmul_nibble_lut(
        &self,
        p: &PackedTensor,
        lut: &NibbleLut,
        isa: Isa,
        x: &[f32],
        batch: usize,
        y: &mut [f32],
    ) {
        let w2 = 2 * lut.inputs_per_slot();
        let mut x_pad = vec![0f32; lut.padded_inputs()];
        let mut table = vec![0u8; LUT_CHUNK_PAIRS.min(lut.n_pairs) * LUT_PAIR_BYTES];
        let mut acc = vec![0f32; lut.blocks.len() * BLOCK_ROWS];
        // The slot-pair bytes of every lane of every block (a zero row for padding).
        let zeros = vec![0u8; lut.n_pairs];
        let block_rows = lut.block_rows(p, &zeros);
        for b in 0..batch {
            x_pad[..self.n_in].copy_from_slice(&x[b * self.n_in..(b + 1) * self.n_in]);
            acc.fill(0.0);
            // Blocks of one codebook are contiguous; for each chunk of slots,
            // build that part of the codebook's table, then run every block
            // over it while it sits in L2.
            let mut first = 0;
            while first < lut.blocks.len() {
                let codebook = lut.blocks[first].codebook;
                let end = lut.codebook_end(first);
                let cb = self.codebook(codebook as usize);
                for p0 in (0..lut.n_pairs).step_by(LUT_CHUNK_PAIRS) {
                    let p1 = (p0 + LUT_CHUNK_PAIRS).min(lut.n_pairs);
                    let table = &mut table[..(p1 - p0) * LUT_PAIR_BYTES];
                    let xs = &x_pad[p0 * w2..p1 * w2];
                    match isa {
                        Isa::Portable => build_lut_table(lut, cb, xs, table),
                        Isa::Simd128 => simd128::build_lut_table(lut, cb, xs, table),
                        // SAFETY: `Isa::Avx2` is only chosen when the CPU has AVX2 and FMA.
                        Isa::Avx2 => unsafe { x86::build_lut_table(lut, cb, xs, table) },
                    }
                    for bi in first..end {
                        let rows = block_rows[bi].map(|r| &r[p0..p1]);
                        let sums = match isa {
                            Isa::Portable => lut_block_sums(&rows, table),
                            Isa::Simd128 => simd128::lut_block_sums(&rows, table),
                            // SAFETY: as above.
                            Isa::Avx2 => unsafe { x86::lut_block_sums(&rows, table) },
                        };
                        for (a, s) in acc[bi * BLOCK_ROWS..(bi + 1) * BLOCK_ROWS]
                            .iter_mut()
                            .zip(sums)
                        {
                            *a += s;
                        }
                    }
                }
                first = end;
            }
            let yb = &mut y[b * self.n_out..(b + 1) * self.n_out];
            for (block, sums) in lut.blocks.iter().zip(acc.chunks_exact(BLOCK_ROWS)) {
                for (&row, &s) in block.rows.iter().zip(sums) {
                    if row != PAD_ROW {
                        yb[row as usize] = self.row_scale(p, row as usize) * s;
                    }
                }
            }
        }
    }

    /// The nibble-lookup plan on fixed-point tables ([`LutPrecision::FixedPoint`]
    /// or [`LutPrecision::TwoLevel`]).
    #[allow(clippy::too_many_arguments)]
    fn matmul_nibble_fixed(
        &self,
        p: &PackedTensor,
        lut: &NibbleLut,
        isa: Isa,
        precision: LutPrecision,
        x: &[f32],
        batch: usize,
        y: &mut [f32],
    ) {
        let two_level = precision == LutPrecision::TwoLevel;
        let (chunk_pairs, pair_bytes) = if two_level {
            (TWO_LEVEL_CHUNK_PAIRS, TWO_LEVEL_PAIR_BYTES)
        } else {
            (FIXED_CHUNK_PAIRS, FIXED_PAIR_BYTES)
        };
        let w2 = 2 * lut.inputs_per_slot();
        let chunk = chunk_pairs.min(lut.n_pairs);
        let mut x_pad = vec![0f32; lut.padded_inputs()];
        let mut table = vec![0u8; chunk * pair_bytes];
        let mut acc = vec![0f32; lut.blocks.len() * BLOCK_ROWS];
        let zeros = vec![0u8; lut.n_pairs];
        let block_rows = lut.block_rows(p, &zeros);
        for b in 0..batch {
            x_pad[..self.n_in].copy_from_slice(&x[b * self.n_in..(b + 1) * self.n_in]);
            acc.fill(0.0);
            let mut first = 0;
            while first < lut.blocks.len() {
                let codebook = lut.blocks[first].codebook;
                let end = lut.codebook_end(first);
                let cb = self.codebook(codebook as usize);
                let a = slot_coefficient_bounds(lut, cb);
                for p0 in (0..lut.n_pairs).step_by(chunk_pairs) {
                    let p1 = (p0 + chunk_pairs).min(lut.n_pairs);
                    let table = &mut table[..(p1 - p0) * pair_bytes];
                    let xs = &x_pad[p0 * w2..p1 * w2];
                    // No AVX2 variants: the native CLI stays exact (AVX2
                    // forced to a fixed-point precision runs the portable code).
                    let scale = match (isa, two_level) {
                        (Isa::Simd128, false) => simd128::build_fixed_table(lut, cb, &a, xs, table),
                        (Isa::Simd128, true) => {
                            simd128::build_two_level_table(lut, cb, &a, xs, table)
                        }
                        (Isa::Portable | Isa::Avx2, false) => {
                            build_fixed_table(lut, cb, &a, xs, table)
                        }
                        (Isa::Portable | Isa::Avx2, true) => {
                            build_two_level_table(lut, cb, &a, xs, table)
                        }
                    };
                    for bi in first..end {
                        let rows = block_rows[bi].map(|r| &r[p0..p1]);
                        let sums = match (isa, two_level) {
                            (Isa::Simd128, false) => simd128::fixed_block_sums(&rows, table, scale),
                            (Isa::Simd128, true) => {
                                simd128::two_level_block_sums(&rows, table, scale)
                            }
                            (Isa::Portable | Isa::Avx2, false) => {
                                fixed_block_sums(&rows, table, scale)
                            }
                            (Isa::Portable | Isa::Avx2, true) => {
                                two_level_block_sums(&rows, table, scale)
                            }
                        };
                        for (a, s) in acc[bi * BLOCK_ROWS..(bi + 1) * BLOCK_ROWS]
                            .iter_mut()
                            .zip(sums)
                        {
                            *a += s;
                        }
                    }
                }
                first = end;
            }
            let yb = &mut y[b * self.n_out..(b + 1) * self.n_out];
            for (block, sums) in lut.blocks.iter().zip(acc.chunks_exact(BLOCK_ROWS)) {
                for (&row, &s) in block.rows.iter().zip(sums) {
                    if row != PAD_ROW {
                        yb[row as usize] = self.row_scale(p, row as usize) * s;
                    }
                }
            }
        }
    }

    /// Decode row `r` (scale not applied) into `out` (`>= n_sub * d`
    /// values); values past `n_in` are set to zero.
    fn decode_row(&self, p: &PackedTensor, isa: Isa, r: usize, out: &mut [f32]) {
        let d = self.dim;
        let n_sub = self.n_in.div_ceil(d);
        let cb = self.codebook(Self::row_codebook(p, r));
        let row = p.row_indices(r);
        let bits = self.bits as usize;
        if 8 % bits == 0 {
            // Whole indices per byte: one byte read gives 8 / bits of them.
            let per = 8 / bits;
            let mask = ((1u32 << bits) - 1) as u8;
            let full = n_sub / per;
            if d == 1 && bits == 2 {
                let (bytes, o) = (&row[..full], &mut out[..full * 4]);
                match isa {
                    Isa::Portable => decode_bytes_b2(cb, bytes, o),
                    Isa::Simd128 => simd128::decode_bytes_b2(cb, bytes, o),
                    // SAFETY: `Isa::Avx2` is only chosen when the CPU has AVX2 and FMA.
                    Isa::Avx2 => unsafe { x86::decode_bytes_b2(cb, bytes, o) },
                }
            } else if d == 1 {
                for (o, &byte) in out[..full * per].chunks_exact_mut(per).zip(row) {
                    for (k, v) in o.iter_mut().enumerate() {
                        *v = cb[((byte as u32 >> (bits * k)) as u8 & mask) as usize];
                    }
                }
            } else {
                for (o, &byte) in out[..full * per * d].chunks_exact_mut(per * d).zip(row) {
                    for (k, v) in o.chunks_exact_mut(d).enumerate() {
                        let i = ((byte as u32 >> (bits * k)) as u8 & mask) as usize;
                        v.copy_from_slice(&cb[i * d..i * d + d]);
                    }
                }
            }
            for s in full * per..n_sub {
                let i = read_index(row, s, self.bits) as usize;
                out[s * d..s * d + d].copy_from_slice(&cb[i * d..i * d + d]);
            }
        } else {
            let mut idx = [0u8; DECODE_CHUNK];
            for s0 in (0..n_sub).step_by(DECODE_CHUNK) {
                let n = DECODE_CHUNK.min(n_sub - s0);
                unpack_indices(row, s0, self.bits, &mut idx[..n]);
                let dst = &mut out[s0 * d..(s0 + n) * d];
                for (o, &k) in dst.chunks_exact_mut(d).zip(&idx[..n]) {
                    o.copy_from_slice(&cb[k as usize * d..k as usize * d + d]);
                }
            }
        }
        out[self.n_in..].fill(0.0);
    }

    /// The batched path: decode [`TILE_ROWS`] rows at a time into a small
    /// f32 tile, then a [`MICRO_ROWS`] x [`MICRO_INPUTS`] register-blocked
    /// micro-GEMM of the tile against every input.
    fn matmul_tiled(&self, p: &PackedTensor, isa: Isa, x: &[f32], batch: usize, y: &mut [f32]) {
        let (n_in, n_out) = (self.n_in, self.n_out);
        // A multiple of 8 (one AVX2 vector), and room for a padded sub-vector.
        let stride = (self.n_in.div_ceil(self.dim) * self.dim).div_ceil(8) * 8;
        let padded_batch = batch.div_ceil(MICRO_INPUTS) * MICRO_INPUTS;
        let mut xp = vec![0f32; padded_batch * stride];
        for b in 0..batch {
            xp[b * stride..b * stride + n_in].copy_from_slice(&x[b * n_in..(b + 1) * n_in]);
        }
        let mut tile = vec![0f32; TILE_ROWS * stride];
        // Inputs per block: the block's inputs stay in L2 while every tile
        // of the layer runs over them (a tile is decoded once per block).
        let block = (TILE_INPUT_BYTES / (4 * stride))
            .max(1)
            .div_ceil(MICRO_INPUTS)
            * MICRO_INPUTS;
        for b_start in (0..batch).step_by(block) {
            let b_end = (b_start + block).min(batch);
            for r0 in (0..n_out).step_by(TILE_ROWS) {
                let rows = TILE_ROWS.min(n_out - r0);
                for i in 0..rows {
                    self.decode_row(p, isa, r0 + i, &mut tile[i * stride..(i + 1) * stride]);
                }
                tile[rows * stride..].fill(0.0);
                let quads = rows.div_ceil(MICRO_ROWS);
                for b0 in (b_start..b_end).step_by(MICRO_INPUTS) {
                    let xs = &xp[b0 * stride..(b0 + MICRO_INPUTS) * stride];
                    for q in 0..quads {
                        let ws = &tile[q * MICRO_ROWS * stride..(q + 1) * MICRO_ROWS * stride];
                        let sums = match isa {
                            Isa::Portable => gemm_4x2(ws, xs, stride),
                            Isa::Simd128 => simd128::gemm_4x2(ws, xs, stride),
                            // SAFETY: `Isa::Avx2` is only chosen when the CPU has AVX2 and FMA.
                            Isa::Avx2 => unsafe { x86::gemm_4x2(ws, xs, stride) },
                        };
                        for i in 0..MICRO_ROWS {
                            let r = r0 + q * MICRO_ROWS + i;
                            if r >= n_out {
                                break;
                            }
                            for j in 0..MICRO_INPUTS.min(batch - b0) {
                                y[(b0 + j) * n_out + r] =
                                    self.row_scale(p, r) * sums[i * MICRO_INPUTS + j];
                            }
                        }
                    }
                }
            }
        }
    }

    fn matmul_decode(&self, p: &PackedTensor, isa: Isa, x: &[f32], batch: usize, y: &mut [f32]) {
        let d = self.dim;
        let n_sub = self.n_in.div_ceil(d);
        let padded = n_sub * d;
        // Inputs padded to whole sub-vectors, one column after another.
        let mut x_pad = vec![0f32; batch * padded];
        for b in 0..batch {
            x_pad[b * padded..b * padded + self.n_in]
                .copy_from_slice(&x[b * self.n_in..(b + 1) * self.n_in]);
        }
        let mut acc = vec![0f32; batch];
        let mut idx = [0u8; DECODE_CHUNK];
        // Four rows at a time share the input loads; the rest one by one.
        let quads = self.n_out / 4;
        let mut acc4 = vec![[0f32; 4]; batch];
        let mut idx4 = [[0u8; DECODE_CHUNK]; 4];
        for r0 in (0..quads * 4).step_by(4) {
            let cbs: [&[f32]; 4] =
                std::array::from_fn(|i| self.codebook(Self::row_codebook(p, r0 + i)));
            acc4.fill([0.0; 4]);
            for s0 in (0..n_sub).step_by(DECODE_CHUNK) {
                let n = DECODE_CHUNK.min(n_sub - s0);
                let ids: [&[u8]; 4] = if self.bits == 8 {
                    // Whole bytes: the packed row is the index list.
                    std::array::from_fn(|i| &p.row_indices(r0 + i)[s0..s0 + n])
                } else {
                    for (i, out) in idx4.iter_mut().enumerate() {
                        unpack_indices(p.row_indices(r0 + i), s0, self.bits, &mut out[..n]);
                    }
                    std::array::from_fn(|i| &idx4[i][..n])
                };
                for (b, a) in acc4.iter_mut().enumerate() {
                    let xs = &x_pad[b * padded + s0 * d..b * padded + (s0 + n) * d];
                    let sums = match isa {
                        Isa::Portable => decode_dot4(cbs, d, ids, xs),
                        Isa::Simd128 => simd128::decode_dot4(cbs, d, ids, xs),
                        // SAFETY: `Isa::Avx2` is only chosen when the CPU has AVX2 and FMA.
                        Isa::Avx2 => unsafe { x86::decode_dot4(cbs, d, ids, xs) },
                    };
                    for (ai, si) in a.iter_mut().zip(sums) {
                        *ai += si;
                    }
                }
            }
            for (b, a) in acc4.iter().enumerate() {
                for (i, ai) in a.iter().enumerate() {
                    y[b * self.n_out + r0 + i] = self.row_scale(p, r0 + i) * ai;
                }
            }
        }
        for r in quads * 4..self.n_out {
            let cb = self.codebook(Self::row_codebook(p, r));
            let row = p.row_indices(r);
            acc.fill(0.0);
            for s0 in (0..n_sub).step_by(DECODE_CHUNK) {
                let n = DECODE_CHUNK.min(n_sub - s0);
                unpack_indices(row, s0, self.bits, &mut idx[..n]);
                for (b, a) in acc.iter_mut().enumerate() {
                    let xs = &x_pad[b * padded + s0 * d..b * padded + (s0 + n) * d];
                    *a += match isa {
                        Isa::Portable => decode_dot(cb, d, &idx[..n], xs),
                        Isa::Simd128 => simd128::decode_dot(cb, d, &idx[..n], xs),
                        // SAFETY: as above.
                        Isa::Avx2 => unsafe { x86::decode_dot(cb, d, &idx[..n], xs) },
                    };
                }
            }
            for (b, a) in acc.iter().enumerate() {
                y[b * self.n_out + r] = self.row_scale(p, r) * a;
            }
        }
    }
}

/// Sort rows by codebook into blocks of 16; for `b = 3`, repack the indices
/// into slot-pair bytes.
fn build_nibble_lut(p: &PackedTensor) -> NibbleLut {
    let bits = p.bits;
    let g = if bits == 3 { 1 } else { 4 / bits as usize };
    let n_sub = p.n_sub();
    let n_pairs = n_sub.div_ceil(g).div_ceil(2);
    let mut blocks = Vec::new();
    for c in 0..p.n_codebooks() {
        let rows: Vec<u32> = (0..p.n_out)
            .filter(|&r| p.codebook_of_group(p.group_ids[r] as usize) == c)
            .map(|r| r as u32)
            .collect();
        for chunk in rows.chunks(BLOCK_ROWS) {
            let mut lanes = [PAD_ROW; BLOCK_ROWS];
            lanes[..chunk.len()].copy_from_slice(chunk);
            blocks.push(LutBlock {
                codebook: c as u32,
                rows: lanes,
            });
        }
    }
    let mut repacked = Vec::new();
    if bits == 3 {
        repacked = vec![0u8; p.n_out * n_pairs];
        for (r, out) in repacked
            .chunks_exact_mut(n_pairs.max(1))
            .enumerate()
            .take(p.n_out)
        {
            let packed = p.row_indices(r);
            for s in 0..n_sub {
                out[s / 2] |= read_index(packed, s, bits) << (4 * (s % 2));
            }
        }
    } else {
        debug_assert_eq!(n_pairs, p.row_bytes());
    }
    NibbleLut {
        bits,
        dim: p.dim as usize,
        indices_per_slot: g,
        n_pairs,
        blocks,
        repacked,
    }
}

/// Byte offset of entry `m` of slot `t` in the portable table layout: the
/// same size as the byte-plane layout ([`lut_table_offset`]), but entry-major
/// (64 bytes a slot, 4 an entry), since plain Rust reads whole f32s. Tables
/// are always built and read by the same instruction set.
#[inline]
pub fn portable_table_offset(t: usize, m: usize) -> usize {
    t * 64 + m * 4
}

/// Codebook value that input `j` of a slot (index `j / d`, coordinate
/// `j % d`) takes in entry `m` of the slot's table.
#[inline]
pub fn slot_coefficient(lut: &NibbleLut, codebook: &[f32], m: usize, j: usize) -> f32 {
    let (bits, d) = (lut.bits as usize, lut.dim);
    let k = (m >> (bits * (j / d))) & ((1usize << bits) - 1);
    codebook[k * d + j % d]
}

/// Fill a chunk of the table of one codebook (`[K, d]` f32): the 16 partial
/// sums of each of the `table.len() / 64` slots it holds, whose inputs start
/// at `x_pad[0]` (portable layout, see [`portable_table_offset`]; the SIMD
/// variants write byte planes, [`lut_table_offset`]). Entry `m` of slot `t`
/// adds, input after input, `slot_coefficient(m, j) * x[t*w + j]` over the
/// slot's `w = g * d` inputs.
pub fn build_lut_table(lut: &NibbleLut, codebook: &[f32], x_pad: &[f32], table: &mut [u8]) {
    let w = lut.inputs_per_slot();
    for t in 0..table.len() / (LUT_PAIR_BYTES / 2) {
        let xs = &x_pad[t * w..(t + 1) * w];
        for m in 0..16 {
            let mut v = 0f32;
            for (j, &xj) in xs.iter().enumerate() {
                v += slot_coefficient(lut, codebook, m, j) * xj;
            }
            let at = portable_table_offset(t, m);
            table[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// Partial sums of the 16 rows of one block over a chunk of slot pairs:
/// `rows[i]` holds the slot-pair bytes of lane `i` (one per pair, low
/// nibble the even slot), `table` the chunk's table; lane `i` is
/// `Σ_t T[t][slot index of row i in slot t]`, added slot after slot.
pub fn lut_block_sums(rows: &[&[u8]; BLOCK_ROWS], table: &[u8]) -> [f32; BLOCK_ROWS] {
    let mut acc = [0f32; BLOCK_ROWS];
    for (pair, slots) in table.chunks_exact(LUT_PAIR_BYTES).enumerate() {
        let (even, odd) = slots.split_at(64);
        for (row, a) in rows.iter().zip(acc.iter_mut()) {
            let nib = row[pair];
            let entry = |slot: &[u8], m: u8| {
                let at = 4 * m as usize;
                f32::from_le_bytes([slot[at], slot[at + 1], slot[at + 2], slot[at + 3]])
            };
            *a += entry(even, nib & 15);
            *a += entry(odd, nib >> 4);
        }
    }
    acc
}

/// The f32 partial sums of one slot whose inputs are `xs` (`g * d` of
/// them): entry `m` at `entries[m]`, added input after input as
/// [`build_lut_table`] does.
#[inline]
pub fn slot_entries(lut: &NibbleLut, codebook: &[f32], xs: &[f32]) -> [f32; 16] {
    std::array::from_fn(|m| {
        let mut v = 0f32;
        for (j, &xj) in xs.iter().enumerate() {
            v += slot_coefficient(lut, codebook, m, j) * xj;
        }
        v
    })
}

/// `a[j] = max_m |slot_coefficient(m, j)|` for the `g * d` inputs `j` of a
/// slot (the rest 0): the largest weight input `j` of a slot meets.
pub fn slot_coefficient_bounds(lut: &NibbleLut, codebook: &[f32]) -> [f32; MAX_SLOT_INPUTS] {
    let mut a = [0f32; MAX_SLOT_INPUTS];
    for (j, aj) in a.iter_mut().enumerate().take(lut.inputs_per_slot()) {
        for m in 0..16 {
            *aj = aj.max(slot_coefficient(lut, codebook, m, j).abs());
        }
    }
    a
}

/// The bound on the entries of a fixed-point table chunk whose `n_slots`
/// slots have their inputs from `x_pad[0]`: `max_t Σ_j a[j] |x[t w + j]|`
/// (`a` from [`slot_coefficient_bounds`], `w = g * d`; the sum in `j`
/// order, starting from `a[0] |x[t w]|`; NaN propagates). Every entry
/// `T[t][m] = Σ_j c · x` of the chunk, rounded as [`slot_entries`] adds it,
/// has `|T[t][m]| <= bound` (f32 rounding is monotonic), and for one input
/// a slot (`w = 1`: 3 and 4 bits, `d = 1`) the bound is the largest
/// `|T|` itself. It costs `w` products a slot where the largest `|T|`
/// costs `16 w`, and lets the table be quantised in the same pass that
/// computes it.
pub fn fixed_point_bound(
    a: &[f32; MAX_SLOT_INPUTS],
    w: usize,
    x_pad: &[f32],
    n_slots: usize,
) -> f32 {
    let mut bound = 0f32;
    for xs in x_pad[..n_slots * w].chunks_exact(w) {
        let mut s = a[0] * xs[0].abs();
        for (aj, xj) in a[1..w].iter().zip(&xs[1..]) {
            s += aj * xj.abs();
        }
        // NaN-propagating, like SIMD `f32x4.max`.
        if s > bound || s.is_nan() {
            bound = s;
        }
    }
    bound
}

/// The inverse quantisation step of a fixed-point chunk whose entries are
/// bounded by `bound` in magnitude (0 for an all-zero, infinite or NaN
/// bound: then every entry is 0 and the scale `bound / FIXED_POINT_MAX`
/// makes the sums 0 or NaN).
#[inline]
pub fn fixed_point_inverse_step(bound: f32) -> f32 {
    if bound > 0.0 && bound.is_finite() {
        FIXED_POINT_MAX / bound
    } else {
        0.0
    }
}

/// Fill a fixed-point table chunk of one codebook (see [`LutPrecision`]) in
/// one pass: the 16 partial sums of each of the `table.len() / 32` slots,
/// computed as [`slot_entries`] and quantised with one step for the chunk,
/// `FIXED_POINT_MAX / bound` ([`fixed_point_bound`]), as low and high byte
/// planes ([`fixed_table_offset`]). `a` is [`slot_coefficient_bounds`] of
/// the codebook. Returns the chunk's scale (`bound / FIXED_POINT_MAX`; NaN
/// propagates).
pub fn build_fixed_table(
    lut: &NibbleLut,
    codebook: &[f32],
    a: &[f32; MAX_SLOT_INPUTS],
    x_pad: &[f32],
    table: &mut [u8],
) -> f32 {
    let w = lut.inputs_per_slot();
    let n_slots = table.len() / (FIXED_PAIR_BYTES / 2);
    let bound = fixed_point_bound(a, w, x_pad, n_slots);
    let inv = fixed_point_inverse_step(bound);
    for t in 0..n_slots {
        let entries = slot_entries(lut, codebook, &x_pad[t * w..(t + 1) * w]);
        for (m, &v) in entries.iter().enumerate() {
            // Saturating, NaN to 0 (`inv = 0` for a bound that is not finite).
            let q = ((v * inv).round_ties_even() as i32).clamp(-32768, 32767) as i16;
            let [lo, hi] = q.to_le_bytes();
            table[fixed_table_offset(t, 0) + m] = lo;
            table[fixed_table_offset(t, 1) + m] = hi;
        }
    }
    bound / FIXED_POINT_MAX
}

/// [`lut_block_sums`] over a fixed-point table chunk: integer sums of the
/// looked-up entries per lane, times the chunk's `scale`.
pub fn fixed_block_sums(rows: &[&[u8]; BLOCK_ROWS], table: &[u8], scale: f32) -> [f32; BLOCK_ROWS] {
    let mut acc = [0i32; BLOCK_ROWS];
    for (pair, planes) in table.chunks_exact(FIXED_PAIR_BYTES).enumerate() {
        let entry = |t: usize, m: u8| {
            let at = t * 16 + m as usize;
            i32::from(i16::from_le_bytes([planes[at], planes[32 + at]]))
        };
        for (row, a) in rows.iter().zip(acc.iter_mut()) {
            let nib = row[pair];
            *a += entry(0, nib & 15) + entry(1, nib >> 4);
        }
    }
    acc.map(|a| a as f32 * scale)
}

/// The inverse step of a two-level chunk bounded by `bound`,
/// `TWO_LEVEL_MAX / bound` (0 as [`fixed_point_inverse_step`]).
#[inline]
pub fn two_level_inverse_step(bound: f32) -> f32 {
    if bound > 0.0 && bound.is_finite() {
        TWO_LEVEL_MAX / bound
    } else {
        0.0
    }
}

/// The two levels of a two-level entry `Q`: `hi = (Q + 2048) >> 12`
/// (`|hi| <= 127` for `|Q| <= TWO_LEVEL_MAX`), `lo = Q - 4096 hi` in
/// `-2048..=2047`.
#[inline]
pub fn two_level_split(q: i32) -> (i8, i16) {
    let half = 1 << (TWO_LEVEL_LO_BITS - 1);
    let hi = (q + half) >> TWO_LEVEL_LO_BITS;
    (
        hi.clamp(-128, 127) as i8,
        (q - (hi << TWO_LEVEL_LO_BITS)) as i16,
    )
}

/// Fill a two-level table chunk of one codebook ([`LutPrecision::TwoLevel`])
/// in one pass. With `inv = TWO_LEVEL_MAX / bound` (the bound of
/// [`build_fixed_table`]) folded into the coefficients, `c' = c * inv`,
/// entry `m` of slot `t` is `Q = round(Σ_j c'_mj x[t w + j])` (the sum in
/// `j` order from the first product; ties to even, saturating, NaN to 0),
/// split by [`two_level_split`] into byte planes 0 (`hi`) and 1-2 (`lo`,
/// low and high bytes) at [`two_level_table_offset`], for the
/// `table.len() / 48` slots. Returns the chunk's step, `bound /
/// TWO_LEVEL_MAX` ([`two_level_scale`]; NaN propagates).
pub fn build_two_level_table(
    lut: &NibbleLut,
    codebook: &[f32],
    a: &[f32; MAX_SLOT_INPUTS],
    x_pad: &[f32],
    table: &mut [u8],
) -> f32 {
    let w = lut.inputs_per_slot();
    let n_slots = table.len() / (TWO_LEVEL_PAIR_BYTES / 2);
    let bound = fixed_point_bound(a, w, x_pad, n_slots);
    let inv = two_level_inverse_step(bound);
    let scaled: [[f32; MAX_SLOT_INPUTS]; 16] = std::array::from_fn(|m| {
        std::array::from_fn(|j| {
            if j < w {
                slot_coefficient(lut, codebook, m, j) * inv
            } else {
                0.0
            }
        })
    });
    for t in 0..n_slots {
        let xs = &x_pad[t * w..(t + 1) * w];
        for (m, c) in scaled.iter().enumerate() {
            let mut u = c[0] * xs[0];
            for (cj, xj) in c[1..w].iter().zip(&xs[1..]) {
                u += cj * xj;
            }
            let (hi, lo) = two_level_split(u.round_ties_even() as i32);
            let [l0, l1] = lo.to_le_bytes();
            table[two_level_table_offset(t, 0) + m] = hi as u8;
            table[two_level_table_offset(t, 1) + m] = l0;
            table[two_level_table_offset(t, 2) + m] = l1;
        }
    }
    two_level_scale(bound)
}

/// The step of a two-level chunk bounded by `bound`.
#[inline]
pub fn two_level_scale(bound: f32) -> f32 {
    bound / TWO_LEVEL_MAX
}

/// [`lut_block_sums`] over a two-level table chunk: per lane and group of
/// [`FIXED_GROUP_SLOTS`] slots, the integer `4096 Σhi + Σlo` (exact in
/// `i32`), converted to f32 and added group after group; the sum times
/// `scale` ([`two_level_scale`]).
pub fn two_level_block_sums(
    rows: &[&[u8]; BLOCK_ROWS],
    table: &[u8],
    scale: f32,
) -> [f32; BLOCK_ROWS] {
    let mut acc = [0f32; BLOCK_ROWS];
    let group_pairs = FIXED_GROUP_SLOTS / 2;
    for (g, group) in table.chunks(group_pairs * TWO_LEVEL_PAIR_BYTES).enumerate() {
        let mut hi = [0i32; BLOCK_ROWS];
        let mut lo = [0i32; BLOCK_ROWS];
        for (k, planes) in group.chunks_exact(TWO_LEVEL_PAIR_BYTES).enumerate() {
            let pair = g * group_pairs + k;
            let high = |t: usize, m: u8| i32::from(planes[t * 16 + m as usize] as i8);
            let low = |t: usize, m: u8| {
                let at = 32 + t * 16 + m as usize;
                i32::from(i16::from_le_bytes([planes[at], planes[at + 32]]))
            };
            for (i, row) in rows.iter().enumerate() {
                let nib = row[pair];
                hi[i] += high(0, nib & 15) + high(1, nib >> 4);
                lo[i] += low(0, nib & 15) + low(1, nib >> 4);
            }
        }
        for (a, (h, l)) in acc.iter_mut().zip(hi.iter().zip(&lo)) {
            *a += ((h << TWO_LEVEL_LO_BITS) + l) as f32;
        }
    }
    acc.map(|a| a * scale)
}

/// Unpack indices `s0 .. s0 + out.len()` of a packed row.
#[inline]
pub fn unpack_indices(row: &[u8], s0: usize, bits: u8, out: &mut [u8]) {
    match bits {
        8 => out.copy_from_slice(&row[s0..s0 + out.len()]),
        4 => {
            for (i, o) in out.iter_mut().enumerate() {
                let s = s0 + i;
                *o = (row[s / 2] >> (4 * (s % 2))) & 15;
            }
        }
        _ => {
            let b = bits as usize;
            let mask = (1u64 << b) - 1;
            for (i, o) in out.iter_mut().enumerate() {
                let bit = (s0 + i) * b;
                let byte = bit / 8;
                *o = match row.get(byte..byte + 8) {
                    Some(w) => {
                        let w =
                            u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                        ((w >> (bit % 8)) & mask) as u8
                    }
                    None => read_index(row, s0 + i, bits),
                };
            }
        }
    }
}

/// For each byte of 2-bit indices, the 16-byte shuffle that turns a 4-entry
/// f32 codebook (16 bytes) into the byte's 4 decoded weights: lane `4k + j`
/// is byte `j` of codeword `(byte >> 2k) & 3`. 4 KiB, shared by every
/// codebook (SIMD128 `i8x16.swizzle`, SSSE3 `pshufb`).
pub static B2_SHUFFLES: [[u8; 16]; 256] = b2_shuffles();

const fn b2_shuffles() -> [[u8; 16]; 256] {
    let mut table = [[0u8; 16]; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut k = 0;
        while k < 4 {
            let i = ((byte >> (2 * k)) & 3) as u8;
            let mut j = 0;
            while j < 4 {
                table[byte][4 * k + j] = 4 * i + j as u8;
                j += 1;
            }
            k += 1;
        }
        byte += 1;
    }
    table
}

/// Decode whole bytes of 2-bit indices (`d = 1`) with a 4-entry codebook:
/// `out[4i + k] = codebook[(bytes[i] >> 2k) & 3]` (`out.len() == 4 * bytes.len()`).
pub fn decode_bytes_b2(codebook: &[f32], bytes: &[u8], out: &mut [f32]) {
    for (o, &byte) in out.chunks_exact_mut(4).zip(bytes) {
        for (k, v) in o.iter_mut().enumerate() {
            *v = codebook[((byte >> (2 * k)) & 3) as usize];
        }
    }
}

/// `Σ_s codeword[idx[s]] · x[s*d .. s*d + d]` (`x.len() == idx.len() * d`).
pub fn decode_dot(codebook: &[f32], d: usize, idx: &[u8], x: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (&k, xs) in idx.iter().zip(x.chunks_exact(d)) {
        let c = &codebook[k as usize * d..k as usize * d + d];
        for (ci, xi) in c.iter().zip(xs) {
            acc += ci * xi;
        }
    }
    acc
}

/// Four rows of the decode plan at once: `out[i] = decode_dot(codebooks[i],
/// d, idx[i], x)` (all `idx[i]` as long), so that SIMD variants load each
/// input slice once for four rows.
pub fn decode_dot4(codebooks: [&[f32]; 4], d: usize, idx: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
    std::array::from_fn(|i| decode_dot(codebooks[i], d, idx[i], x))
}

/// The micro-GEMM of the tiled path: `w` holds 4 rows and `x` 2 inputs,
/// each `stride` values (a multiple of 8); returns the 8 dot products,
/// row-major (`out[2 * row + input]`).
pub fn gemm_4x2(w: &[f32], x: &[f32], stride: usize) -> [f32; MICRO_ROWS * MICRO_INPUTS] {
    let mut acc = [[0f32; 4]; MICRO_ROWS * MICRO_INPUTS];
    let (x0, x1) = x.split_at(stride);
    for j in (0..stride).step_by(4) {
        for i in 0..MICRO_ROWS {
            let wr = &w[i * stride + j..i * stride + j + 4];
            for l in 0..4 {
                acc[2 * i][l] += wr[l] * x0[j + l];
                acc[2 * i + 1][l] += wr[l] * x1[j + l];
            }
        }
    }
    acc.map(|a| (a[0] + a[1]) + (a[2] + a[3]))
}

/// Dense `y = W x` for a row-major `W` of `y.len()` rows and `n_in` columns.
pub fn dense_matvec(w: &[f32], n_in: usize, x: &[f32], y: &mut [f32]) {
    for (row, yr) in w.chunks_exact(n_in).zip(y.iter_mut()) {
        let mut acc = [0f32; 8];
        let mut chunks = row.chunks_exact(8);
        let mut xc = x.chunks_exact(8);
        for (wc, xv) in (&mut chunks).zip(&mut xc) {
            for i in 0..8 {
                acc[i] += wc[i] * xv[i];
            }
        }
        let mut s: f32 = acc.iter().sum();
        for (a, b) in chunks.remainder().iter().zip(xc.remainder()) {
            s += a * b;
        }
        *yr = s;
    }
}
