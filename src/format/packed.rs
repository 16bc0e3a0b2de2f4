//! The packed layout: a valid safetensors file that any reader opens.
//!
//! # Layout (format version 1) — the one table
//!
//! For a compressed tensor `NAME` of original shape `[n_out, ...]` viewed as
//! `n_out x n_in`, with `b` bits per index, codeword dimension `d`, `G` groups,
//! `K = 2^b` codewords and `n_sub = ceil(n_in / d)` indices per row:
//!
//! | tensor               | dtype | shape                     | content |
//! |----------------------|-------|---------------------------|---------|
//! | `NAME.jlcm.idx`      | U8    | `[n_out, row_bytes]`      | row `r` holds its `n_sub` indices bit-packed little-endian: index `s` occupies bits `s*b .. s*b+b` of the row (bit `i` = bit `i % 8` of byte `i / 8`); `row_bytes = ceil(n_sub*b/8)`, padding bits zero |
//! | `NAME.jlcm.codebook` | F16   | `[C, K, d]`               | `C = G` (mode `codebook`) or `C = 1` (mode `scale`); for `d = 1` each codebook is sorted ascending |
//! | `NAME.jlcm.group`    | U8    | `[n_out]`                 | group id of each row, `< G` |
//! | `NAME.jlcm.scale`    | F16   | `[G]`                     | mode `scale` only: per-group scale |
//!
//! Decoding: `Q[r, s*d + a] = scale[g] * codebook[c, idx[r, s], a]` with
//! `g = group[r]`, `c = g` (codebook mode) or `0` (scale mode), `scale = 1`
//! in codebook mode; coordinates `s*d + a >= n_in` of the last sub-vector are
//! dropped. The weight is `Ŵ = Q`, or `Ŵ = Q R` when the parameters hold a
//! `rotation` (`R` = signs then a block Walsh–Hadamard transform, see
//! [`super::rotation`]; products compute `Q (R x)`).
//!
//! `__metadata__` holds `jlcm.format` = `"1"` and, per compressed tensor,
//! `jlcm:NAME` = `{"bits":b,"dim":d,"groups":G,"mode":"codebook"|"scale",
//! "shape":[...],"dtype":"F32"|"F16"|"BF16"[,"rotation":{"block":B,
//! "signs":"<hex>"}]}` (`rotation` only on rotated tensors, so files without
//! one are unchanged). Tensors that are not compressed keep their name,
//! dtype and bytes.
//!
//! Reading checks every part against the parameters (dtypes, shapes, lengths,
//! group ids `< G`, zero padding bits, finite codebooks and scales) before
//! anything is decoded. No `unwrap`, `expect`, indexing or panics on data
//! read from a file: the lints below enforce it.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

use std::collections::BTreeMap;

use half::f16;
use serde::{Deserialize, Serialize};

use super::error::{FormatError, Result};
use super::rotation::Rotation;
use super::safetensors::{self as st, Dtype, OwnedTensor};

/// The packed format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Metadata key holding the format version.
pub const VERSION_KEY: &str = "jlcm.format";
/// Prefix of the per-tensor parameter keys in `__metadata__`.
pub const PARAM_PREFIX: &str = "jlcm:";
/// Suffixes of the parts of a packed tensor.
pub const IDX_SUFFIX: &str = ".jlcm.idx";
/// Codebook part suffix.
pub const CODEBOOK_SUFFIX: &str = ".jlcm.codebook";
/// Group-id part suffix.
pub const GROUP_SUFFIX: &str = ".jlcm.group";
/// Scale part suffix.
pub const SCALE_SUFFIX: &str = ".jlcm.scale";

/// How groups are quantised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each group has its own codebook.
    Codebook,
    /// One codebook for the tensor, one scale per group.
    Scale,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "codebook" => Ok(Mode::Codebook),
            "scale" => Ok(Mode::Scale),
            _ => Err(format!("mode must be `codebook` or `scale`, not `{s}`")),
        }
    }
}

/// Parameters of one packed tensor, as stored in `__metadata__`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackedParams {
    /// Bits per index, 1..=8.
    pub bits: u8,
    /// Codeword dimension: 1, 2, 4 or 8.
    pub dim: u8,
    /// Number of row groups, 1..=256.
    pub groups: u16,
    /// Grouping mode.
    pub mode: Mode,
    /// Original shape.
    pub shape: Vec<usize>,
    /// Original dtype name (`F32`, `F16`, `BF16`).
    pub dtype: String,
    /// Input rotation, when the codes quantise `W Rᵀ` (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
}

/// Check bits, dim and groups are in range.
pub fn check_params(bits: u8, dim: u8, groups: u16) -> std::result::Result<(), String> {
    if !(1..=8).contains(&bits) {
        return Err(format!("bits must be 1..=8, got {bits}"));
    }
    if ![1, 2, 4, 8].contains(&dim) {
        return Err(format!("dim must be 1, 2, 4 or 8, got {dim}"));
    }
    if !(1..=256).contains(&groups) {
        return Err(format!("groups must be 1..=256, got {groups}"));
    }
    Ok(())
}

/// One compressed tensor: indices, codebooks, group ids and scales.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedTensor {
    /// Original tensor name.
    pub name: String,
    /// Original shape.
    pub shape: Vec<usize>,
    /// Original dtype.
    pub dtype: Dtype,
    /// Bits per index.
    pub bits: u8,
    /// Codeword dimension.
    pub dim: u8,
    /// Number of groups.
    pub groups: u16,
    /// Mode.
    pub mode: Mode,
    /// Rows.
    pub n_out: usize,
    /// Columns (`in*kh*kw` for convolutions).
    pub n_in: usize,
    /// Bit-packed indices, `n_out * row_bytes()` bytes.
    pub indices: Vec<u8>,
    /// Codebooks, `[C, K, d]` row-major.
    pub codebooks: Vec<f16>,
    /// Group id per row.
    pub group_ids: Vec<u8>,
    /// Per-group scales (scale mode), empty otherwise.
    pub scales: Vec<f16>,
    /// Input rotation `R` (`Ŵ = Q R`, the codes decode to `Q`), if any.
    pub rotation: Option<Rotation>,
}

impl PackedTensor {
    /// Codewords per codebook, `2^bits` (0 if `bits` is out of range).
    pub fn k(&self) -> usize {
        1usize.checked_shl(self.bits as u32).unwrap_or(0)
    }
    /// Indices per row (0 if `dim` is 0).
    pub fn n_sub(&self) -> usize {
        match self.dim {
            0 => 0,
            d => self.n_in.div_ceil(d as usize),
        }
    }
    /// Bytes per packed row.
    pub fn row_bytes(&self) -> usize {
        row_bytes(self.n_sub(), self.bits)
    }
    /// Number of codebooks stored.
    pub fn n_codebooks(&self) -> usize {
        match self.mode {
            Mode::Codebook => self.groups as usize,
            Mode::Scale => 1,
        }
    }
    /// Codebook index used by row group `g`.
    pub fn codebook_of_group(&self, g: usize) -> usize {
        match self.mode {
            Mode::Codebook => g,
            Mode::Scale => 0,
        }
    }
    /// The codebook slice `[K, d]` of codebook `c` (empty if `c` is out of
    /// range of a tensor that did not validate).
    pub fn codebook(&self, c: usize) -> &[f16] {
        let len = self.k() * self.dim as usize;
        c.checked_mul(len)
            .and_then(|s| self.codebooks.get(s..s.checked_add(len)?))
            .unwrap_or_default()
    }
    /// The packed bytes of row `r` (empty if `r` is out of range).
    pub fn row_indices(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        r.checked_mul(rb)
            .and_then(|s| self.indices.get(s..s.checked_add(rb)?))
            .unwrap_or_default()
    }
    /// Scale of group `g` (1 in codebook mode; 0 if `g` is out of range).
    pub fn scale(&self, g: usize) -> f32 {
        match self.mode {
            Mode::Codebook => 1.0,
            Mode::Scale => self.scales.get(g).map_or(0.0, |v| v.to_f32()),
        }
    }

    /// Check that all parts agree with each other (lengths, ranges).
    pub fn validate(&self) -> Result<()> {
        let bad = |problem: String| FormatError::PackedTensor {
            name: self.name.clone(),
            problem,
        };
        check_params(self.bits, self.dim, self.groups).map_err(bad)?;
        let numel = self
            .shape
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .ok_or_else(|| bad("shape overflows".into()))?;
        if self.n_out.checked_mul(self.n_in) != Some(numel) || self.n_out == 0 || self.n_in == 0 {
            return Err(bad(format!(
                "shape {:?} is not {} x {}",
                self.shape, self.n_out, self.n_in
            )));
        }
        let used_bits = self
            .n_sub()
            .checked_mul(self.bits as usize)
            .ok_or_else(|| bad("index size overflows".into()))?;
        let idx_len = self
            .n_out
            .checked_mul(used_bits.div_ceil(8))
            .ok_or_else(|| bad("index size overflows".into()))?;
        if self.indices.len() != idx_len {
            return Err(bad(format!(
                "{} index bytes, expected {idx_len}",
                self.indices.len()
            )));
        }
        let cb_len = self.n_codebooks() * self.k() * self.dim as usize;
        if self.codebooks.len() != cb_len {
            return Err(bad(format!(
                "{} codebook values, expected {cb_len}",
                self.codebooks.len()
            )));
        }
        if let Some(v) = self.codebooks.iter().find(|v| !v.is_finite()) {
            return Err(bad(format!("codebook holds a non-finite value {v}")));
        }
        if self.group_ids.len() != self.n_out {
            return Err(bad(format!(
                "{} group ids for {} rows",
                self.group_ids.len(),
                self.n_out
            )));
        }
        if let Some((r, g)) = self
            .group_ids
            .iter()
            .enumerate()
            .find(|(_, g)| **g as u16 >= self.groups)
        {
            return Err(bad(format!(
                "row {r} has group {g}, only {} groups",
                self.groups
            )));
        }
        let want_scales = if self.mode == Mode::Scale {
            self.groups as usize
        } else {
            0
        };
        if self.scales.len() != want_scales {
            return Err(bad(format!(
                "{} scales, expected {want_scales}",
                self.scales.len()
            )));
        }
        if let Some(v) = self.scales.iter().find(|v| !v.is_finite()) {
            return Err(bad(format!("scale holds a non-finite value {v}")));
        }
        if let Some(r) = &self.rotation {
            r.validate(self.n_in).map_err(bad)?;
        }
        // Padding bits of every row must be zero, so a round trip is exact.
        if used_bits % 8 != 0 {
            let rb = self.row_bytes();
            let mask: u8 = !((1u16 << (used_bits % 8)) - 1) as u8;
            for (r, row) in self.indices.chunks_exact(rb.max(1)).enumerate() {
                if row.last().is_some_and(|b| b & mask != 0) {
                    return Err(bad(format!(
                        "row {r} has non-zero padding bits (an index slot past the row's {} indices)",
                        self.n_sub()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Refuse a tensor whose decoded f32 matrix needs more than `limit`
    /// bytes (the wasm layer calls this with what its memory can hold).
    pub fn check_fits(&self, limit: u64) -> Result<()> {
        let bytes = (self.n_out as u64)
            .saturating_mul(self.n_in as u64)
            .saturating_mul(4);
        if bytes > limit {
            return Err(FormatError::TooLarge {
                name: self.name.clone(),
                bytes,
                limit,
            });
        }
        Ok(())
    }

    /// Stored bits of this tensor: indices, codebooks, scales, group ids and
    /// its share of the header (its entries and metadata as JSON).
    pub fn stored_bits(&self) -> u64 {
        let data = self.indices.len()
            + 2 * self.codebooks.len()
            + self.group_ids.len()
            + 2 * self.scales.len();
        (data as u64 + self.header_bytes() as u64) * 8
    }

    /// Bits per weight, everything counted.
    pub fn bpw(&self) -> f64 {
        self.stored_bits() as f64 / (self.n_out as f64 * self.n_in as f64)
    }

    /// Bytes this tensor adds to the JSON header.
    pub fn header_bytes(&self) -> usize {
        let (parts, _) = self.parts();
        let mut n = 0;
        for (name, t) in &parts {
            // "name":{"dtype":"U8","shape":[..],"data_offsets":[a,b]}, with
            // 10-digit offsets as an upper estimate.
            n += name.len()
                + t.shape
                    .iter()
                    .map(|s| s.to_string().len() + 1)
                    .sum::<usize>()
                + 60;
        }
        n + PARAM_PREFIX.len() + self.name.len() + self.params_json().len() + 8
    }

    /// The stored parameters.
    pub fn params(&self) -> PackedParams {
        PackedParams {
            bits: self.bits,
            dim: self.dim,
            groups: self.groups,
            mode: self.mode,
            shape: self.shape.clone(),
            dtype: st::dtype_name(self.dtype),
            rotation: self.rotation.clone(),
        }
    }

    fn params_json(&self) -> String {
        serde_json::to_string(&self.params()).unwrap_or_default()
    }

    /// The safetensors parts and the metadata entry of this tensor.
    pub fn parts(&self) -> (Vec<(String, OwnedTensor)>, (String, String)) {
        let k = self.k();
        let d = self.dim as usize;
        let mut parts = vec![
            (
                format!("{}{IDX_SUFFIX}", self.name),
                OwnedTensor {
                    dtype: Dtype::U8,
                    shape: vec![self.n_out, self.row_bytes()],
                    data: self.indices.clone(),
                },
            ),
            (
                format!("{}{CODEBOOK_SUFFIX}", self.name),
                OwnedTensor {
                    dtype: Dtype::F16,
                    shape: vec![self.n_codebooks(), k, d],
                    data: self
                        .codebooks
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect(),
                },
            ),
            (
                format!("{}{GROUP_SUFFIX}", self.name),
                OwnedTensor {
                    dtype: Dtype::U8,
                    shape: vec![self.n_out],
                    data: self.group_ids.clone(),
                },
            ),
        ];
        if self.mode == Mode::Scale {
            parts.push((
                format!("{}{SCALE_SUFFIX}", self.name),
                OwnedTensor {
                    dtype: Dtype::F16,
                    shape: vec![self.groups as usize],
                    data: self.scales.iter().flat_map(|v| v.to_le_bytes()).collect(),
                },
            ));
        }
        (
            parts,
            (format!("{PARAM_PREFIX}{}", self.name), self.params_json()),
        )
    }

    /// Row `r` of the weight `Ŵ` (the codes of [`Self::decode_row`], times
    /// `R` when the tensor is rotated).
    pub fn decode_weight_row(&self, r: usize, out: &mut [f32]) {
        self.decode_row(r, out);
        if let Some(rot) = &self.rotation {
            rot.prepare(self.n_in).apply_transpose(out);
        }
    }

    /// Reconstruct row `r` of the codes `Q` into `out` (`n_in` values): the
    /// weight row itself unless the tensor is rotated (`Ŵ = Q R`, see
    /// [`Self::decode_weight_row`]). On a tensor that did not validate,
    /// values it cannot look up are left as they are.
    pub fn decode_row(&self, r: usize, out: &mut [f32]) {
        let d = self.dim as usize;
        if d == 0 {
            return;
        }
        let Some(&g) = self.group_ids.get(r) else {
            return;
        };
        let g = g as usize;
        let cb = self.codebook(self.codebook_of_group(g));
        let scale = self.scale(g);
        let row = self.row_indices(r);
        // Sub-vector `s` covers out[s*d .. s*d+d]; the last one may be cut.
        for (s, dst) in out.chunks_mut(d).enumerate().take(self.n_sub()) {
            let k = read_index(row, s, self.bits) as usize;
            let Some(word) = k.checked_mul(d).and_then(|at| cb.get(at..at + d)) else {
                continue;
            };
            for (o, c) in dst.iter_mut().zip(word) {
                *o = scale * c.to_f32();
            }
        }
    }

    /// Reconstruct the weight `Ŵ` `[n_out, n_in]` as f32 (rotation undone).
    pub fn decode_f32(&self) -> Vec<f32> {
        if self.n_in == 0 {
            return Vec::new();
        }
        let rot = self.rotation.as_ref().map(|r| r.prepare(self.n_in));
        let mut out = vec![0f32; self.n_out.saturating_mul(self.n_in)];
        for (r, row) in out.chunks_exact_mut(self.n_in).enumerate() {
            self.decode_row(r, row);
            if let Some(rot) = &rot {
                rot.apply_transpose(row);
            }
        }
        out
    }
}

/// Bytes of a packed row of `n_sub` indices of `bits` bits (saturating: a
/// size that overflows never matches a real buffer).
pub fn row_bytes(n_sub: usize, bits: u8) -> usize {
    n_sub.saturating_mul(bits as usize).div_ceil(8)
}

/// Mask of the low `bits` bits (`bits` in 1..=8).
#[inline]
fn index_mask(bits: u8) -> u16 {
    1u16.checked_shl(bits as u32).map_or(u16::MAX, |m| m - 1)
}

/// Read index `s` of a packed row (bits past the end of `row` read as 0).
#[inline]
pub fn read_index(row: &[u8], s: usize, bits: u8) -> u8 {
    let bit = s.saturating_mul(bits as usize);
    let byte = bit / 8;
    let shift = bit % 8;
    let lo = row.get(byte).copied().unwrap_or(0) as u16;
    let hi = if shift + bits as usize > 8 {
        row.get(byte + 1).copied().unwrap_or(0) as u16
    } else {
        0
    };
    (((lo | (hi << 8)) >> shift) & index_mask(bits)) as u8
}

/// Bit-pack one row of indices (each `< 2^bits`) into `out` (`row_bytes` long, zeroed).
pub fn pack_row(indices: &[u8], bits: u8, out: &mut [u8]) {
    out.fill(0);
    let mask = index_mask(bits) as u8;
    for (s, &v) in indices.iter().enumerate() {
        let bit = s.saturating_mul(bits as usize);
        let byte = bit / 8;
        let shift = bit % 8;
        let v = ((v & mask) as u16) << shift;
        if let Some(o) = out.get_mut(byte) {
            *o |= v as u8;
        }
        if shift + bits as usize > 8 {
            if let Some(o) = out.get_mut(byte + 1) {
                *o |= (v >> 8) as u8;
            }
        }
    }
}

/// Bit-pack `n_out` rows of `n_sub` indices each.
pub fn pack_indices(indices: &[u8], n_sub: usize, bits: u8) -> Vec<u8> {
    let rb = row_bytes(n_sub, bits);
    let n_out = indices.len().checked_div(n_sub).unwrap_or(0);
    let mut out = vec![0u8; n_out.saturating_mul(rb)];
    for (row, dst) in indices.chunks_exact(n_sub).zip(out.chunks_exact_mut(rb)) {
        pack_row(row, bits, dst);
    }
    out
}

/// Unpack one row of `n_sub` indices.
pub fn unpack_row(row: &[u8], n_sub: usize, bits: u8, out: &mut [u8]) {
    for (s, o) in out.iter_mut().enumerate().take(n_sub) {
        *o = read_index(row, s, bits);
    }
}

/// A tensor of a packed file: compressed, or copied through.
#[derive(Debug, Clone, PartialEq)]
pub enum PackedEntry {
    /// A compressed tensor.
    Packed(PackedTensor),
    /// A tensor copied through byte for byte.
    Raw {
        /// Name.
        name: String,
        /// The tensor as read.
        tensor: OwnedTensor,
    },
}

impl PackedEntry {
    /// The original tensor name.
    pub fn name(&self) -> &str {
        match self {
            PackedEntry::Packed(p) => &p.name,
            PackedEntry::Raw { name, .. } => name,
        }
    }
}

/// A whole packed model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PackedFile {
    /// Entries in output order.
    pub entries: Vec<PackedEntry>,
    /// Extra metadata copied from the input (without `jlcm` keys).
    pub metadata: BTreeMap<String, String>,
}

impl PackedFile {
    /// Serialize to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut tensors = Vec::new();
        let mut metadata = self.metadata.clone();
        metadata.insert(VERSION_KEY.to_string(), FORMAT_VERSION.to_string());
        let mut entries: Vec<&PackedEntry> = self.entries.iter().collect();
        entries.sort_by(|a, b| a.name().cmp(b.name()));
        for e in entries {
            match e {
                PackedEntry::Packed(p) => {
                    p.validate()?;
                    let (parts, (k, v)) = p.parts();
                    tensors.extend(parts);
                    metadata.insert(k, v);
                }
                PackedEntry::Raw { name, tensor } => tensors.push((name.clone(), tensor.clone())),
            }
        }
        st::write(&tensors, &metadata)
    }

    /// Parse and validate packed safetensors bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let file = st::SafetensorsFile::parse(bytes)?;
        let header = &file.header;
        let version = header.metadata.get(VERSION_KEY).ok_or_else(|| {
            FormatError::PackedMeta(format!(
                "no `{VERSION_KEY}` in metadata: not a jlcm packed file"
            ))
        })?;
        if version != &FORMAT_VERSION.to_string() {
            return Err(FormatError::PackedMeta(format!(
                "format version {version} is not supported by this build (it reads version {FORMAT_VERSION})"
            )));
        }
        let mut metadata = BTreeMap::new();
        let mut packed_names = Vec::new();
        for (k, v) in &header.metadata {
            if let Some(name) = k.strip_prefix(PARAM_PREFIX) {
                let params: PackedParams = serde_json::from_str(v).map_err(|e| {
                    FormatError::PackedMeta(format!("tensor `{name}`: bad parameters: {e}"))
                })?;
                packed_names.push((name.to_string(), params));
            } else if k != VERSION_KEY {
                metadata.insert(k.clone(), v.clone());
            }
        }
        let mut part_of = std::collections::HashSet::new();
        let mut packed = BTreeMap::new();
        for (name, params) in packed_names {
            let get = |suffix: &str| -> Result<(&st::TensorEntry, &[u8])> {
                let n = format!("{name}{suffix}");
                let e = header.get(&n).map_err(|_| FormatError::PackedTensor {
                    name: name.clone(),
                    problem: format!("part `{n}` is missing"),
                })?;
                Ok((e, file.tensor_bytes(e)))
            };
            let bad = |problem: String| FormatError::PackedTensor {
                name: name.clone(),
                problem,
            };
            let dtype = st::parse_dtype(&params.dtype)
                .filter(|d| st::is_float(*d))
                .ok_or_else(|| bad(format!("unsupported original dtype `{}`", params.dtype)))?;
            check_params(params.bits, params.dim, params.groups).map_err(bad)?;
            let probe = st::TensorEntry {
                name: name.clone(),
                dtype,
                shape: params.shape.clone(),
                start: 0,
                end: 0,
            };
            let (n_out, n_in) = probe.matrix_shape().ok_or_else(|| {
                bad(format!(
                    "original shape {:?} is not a compressible matrix",
                    params.shape
                ))
            })?;
            let (idx_e, idx) = get(IDX_SUFFIX)?;
            let (cb_e, cb) = get(CODEBOOK_SUFFIX)?;
            let (gr_e, gr) = get(GROUP_SUFFIX)?;
            if idx_e.dtype != Dtype::U8 || gr_e.dtype != Dtype::U8 || cb_e.dtype != Dtype::F16 {
                return Err(bad(
                    "parts have the wrong dtypes (U8 idx, F16 codebook, U8 group)".into(),
                ));
            }
            let k = 1usize << params.bits;
            let n_cb = if params.mode == Mode::Codebook {
                params.groups as usize
            } else {
                1
            };
            if cb_e.shape != [n_cb, k, params.dim as usize] {
                return Err(bad(format!(
                    "codebook shape {:?}, expected {:?}",
                    cb_e.shape,
                    [n_cb, k, params.dim as usize]
                )));
            }
            let n_sub = n_in.div_ceil(params.dim as usize);
            let idx_shape = [n_out, row_bytes(n_sub, params.bits)];
            if idx_e.shape != idx_shape {
                return Err(bad(format!(
                    "index shape {:?}, expected {idx_shape:?}",
                    idx_e.shape
                )));
            }
            if gr_e.shape != [n_out] {
                return Err(bad(format!(
                    "group-id shape {:?}, expected [{n_out}]",
                    gr_e.shape
                )));
            }
            let scales = if params.mode == Mode::Scale {
                let (sc_e, sc) = get(SCALE_SUFFIX)?;
                if sc_e.dtype != Dtype::F16 {
                    return Err(bad("scale part is not F16".into()));
                }
                if sc_e.shape != [params.groups as usize] {
                    return Err(bad(format!(
                        "scale shape {:?}, expected [{}]",
                        sc_e.shape, params.groups
                    )));
                }
                part_of.insert(format!("{name}{SCALE_SUFFIX}"));
                f16s(sc)
            } else {
                Vec::new()
            };
            for s in [IDX_SUFFIX, CODEBOOK_SUFFIX, GROUP_SUFFIX] {
                part_of.insert(format!("{name}{s}"));
            }
            let p = PackedTensor {
                name: name.clone(),
                shape: params.shape.clone(),
                dtype,
                bits: params.bits,
                dim: params.dim,
                groups: params.groups,
                mode: params.mode,
                n_out,
                n_in,
                indices: idx.to_vec(),
                codebooks: f16s(cb),
                group_ids: gr.to_vec(),
                scales,
                rotation: params.rotation.clone(),
            };
            p.validate()?;
            packed.insert(name, p);
        }
        // Entries in name order (safetensors' writer orders tensors by dtype
        // alignment, so file order carries no meaning).
        let mut entries = Vec::new();
        for t in &header.tensors {
            if let Some(base) = t.name.strip_suffix(IDX_SUFFIX) {
                if let Some(p) = packed.remove(base) {
                    entries.push(PackedEntry::Packed(p));
                    continue;
                }
            }
            if part_of.contains(&t.name) {
                continue;
            }
            entries.push(PackedEntry::Raw {
                name: t.name.clone(),
                tensor: OwnedTensor {
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    data: file.tensor_bytes(t).to_vec(),
                },
            });
        }
        entries.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(Self { entries, metadata })
    }

    /// Decode to a dense safetensors file with the original names, shapes and dtypes.
    pub fn decode(&self) -> Result<Vec<u8>> {
        let tensors: Vec<(String, OwnedTensor)> = self
            .entries
            .iter()
            .map(|e| match e {
                PackedEntry::Packed(p) => (
                    p.name.clone(),
                    OwnedTensor {
                        dtype: p.dtype,
                        shape: p.shape.clone(),
                        data: st::from_f32(p.dtype, &p.decode_f32()),
                    },
                ),
                PackedEntry::Raw { name, tensor } => (name.clone(), tensor.clone()),
            })
            .collect();
        st::write(&tensors, &self.metadata)
    }

    /// Total stored bits of compressed tensors and their weight count.
    pub fn packed_bits_and_weights(&self) -> (u64, u64) {
        self.entries.iter().fold((0, 0), |(b, w), e| match e {
            PackedEntry::Packed(p) => (b + p.stored_bits(), w + (p.n_out * p.n_in) as u64),
            PackedEntry::Raw { .. } => (b, w),
        })
    }
}

fn f16s(bytes: &[u8]) -> Vec<f16> {
    bytes
        .chunks_exact(2)
        .map(|c| f16::from_le_bytes(st::le_array(c)))
        .collect()
}
