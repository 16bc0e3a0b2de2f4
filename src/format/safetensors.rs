//! safetensors input and output.
//!
//! The header is parsed on its own (the page reads only the first bytes of a
//! multi-GB file): the JSON is read into a raw shape ([`RawTensorInfo`]),
//! then validated here into [`TensorEntry`]s with checked arithmetic on every
//! number the file supplies (element counts, byte sizes, offsets), contiguous
//! offsets and an exact data length; every error names the tensor and the
//! problem. Then one tensor's bytes are read at a time. Output is written with
//! a deterministic header (the `safetensors` crate's writer orders metadata by
//! hash map, which would break byte-identical output).
//!
//! No `unwrap`, `expect`, indexing or panics on data read from a file: the
//! lints below enforce it (`cargo clippy --all-targets -- -D warnings`).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use half::{bf16, f16};
pub use safetensors::Dtype;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::error::{FormatError, Result};

/// Largest header accepted, as in the `safetensors` crate.
pub const MAX_HEADER_LEN: u64 = 100_000_000;
/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 8;

/// One tensor's entry in a validated header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    /// Tensor name.
    pub name: String,
    /// Stored dtype.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Byte range relative to the start of the data section.
    pub start: u64,
    /// End of the byte range (exclusive), relative to the data section.
    pub end: u64,
}

impl TensorEntry {
    /// Number of elements (checked when the header was validated; an entry
    /// built by hand whose count overflows reports `usize::MAX`).
    pub fn num_elements(&self) -> usize {
        self.shape
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .unwrap_or(usize::MAX)
    }

    /// Byte length of the tensor's data.
    pub fn byte_len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Bytes of the tensor read as f32 (`4 x` elements): what reading it with
    /// [`to_f32`] allocates, and the unit of [`check_fits`].
    pub fn f32_bytes(&self) -> u64 {
        (self.num_elements() as u64).saturating_mul(4)
    }

    /// `(n_out, n_in)` if the tensor is a weight the engine compresses:
    /// a 2-D matrix or a 4-D convolution `[out, in, kh, kw]` viewed as
    /// `[out, in*kh*kw]`, of a float dtype, with at least 2 rows and 8 columns.
    pub fn matrix_shape(&self) -> Option<(usize, usize)> {
        if !is_float(self.dtype) {
            return None;
        }
        let (n_out, n_in) = match self.shape.as_slice() {
            [o, i] => (*o, *i),
            [o, i, kh, kw] => (*o, i.checked_mul(*kh)?.checked_mul(*kw)?),
            _ => return None,
        };
        (n_out >= 2 && n_in >= 8).then_some((n_out, n_in))
    }

    /// Whether the engine compresses this tensor.
    pub fn is_compressible(&self) -> bool {
        self.matrix_shape().is_some()
    }
}

/// Whether the engine can read this dtype as f32.
pub fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16)
}

/// The dtype's safetensors name (`F32`, `BF16`, ...).
pub fn dtype_name(dtype: Dtype) -> String {
    format!("{dtype:?}")
}

/// Parse a dtype name as safetensors writes it.
pub fn parse_dtype(name: &str) -> Option<Dtype> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// A validated safetensors header.
#[derive(Debug, Clone)]
pub struct Header {
    /// Length of the JSON header in bytes (without the 8-byte prefix).
    pub header_len: u64,
    /// Tensors in file order (by offset).
    pub tensors: Vec<TensorEntry>,
    /// The free-form `__metadata__` map.
    pub metadata: BTreeMap<String, String>,
}

impl Header {
    /// Byte offset of the data section in the file.
    pub fn data_start(&self) -> u64 {
        PREFIX_LEN as u64 + self.header_len
    }

    /// Length of the data section, as the header declares it.
    pub fn data_len(&self) -> u64 {
        self.tensors.last().map_or(0, |t| t.end)
    }

    /// Total file length the header implies (checked not to overflow when
    /// the header was validated).
    pub fn file_len(&self) -> u64 {
        self.data_start().saturating_add(self.data_len())
    }

    /// Find a tensor by name.
    pub fn get(&self, name: &str) -> Result<&TensorEntry> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| FormatError::TensorNotFound(name.to_string()))
    }

    /// Absolute byte range of a tensor in the file.
    pub fn file_range(&self, entry: &TensorEntry) -> (u64, u64) {
        (
            self.data_start().saturating_add(entry.start),
            self.data_start().saturating_add(entry.end),
        )
    }
}

/// Read the header length from the first 8 bytes and check it against the cap
/// and (when known) the file length. Returns the JSON length.
pub fn read_header_len(prefix: &[u8], file_len: Option<u64>) -> Result<u64> {
    let bytes: [u8; PREFIX_LEN] = prefix
        .get(..PREFIX_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(FormatError::TooShort {
            len: prefix.len() as u64,
        })?;
    let len = u64::from_le_bytes(bytes);
    if len > MAX_HEADER_LEN {
        return Err(FormatError::HeaderTooLarge {
            len,
            cap: MAX_HEADER_LEN,
        });
    }
    if let Some(file_len) = file_len {
        if len
            .checked_add(PREFIX_LEN as u64)
            .is_none_or(|end| end > file_len)
        {
            return Err(FormatError::HeaderPastEnd { len, file_len });
        }
    }
    Ok(len)
}

/// Parse and validate a header from the file's first `8 + n` bytes (more is
/// fine). With `file_len`, also check that the data section has exactly the
/// declared length.
pub fn parse_header(bytes: &[u8], file_len: Option<u64>) -> Result<Header> {
    let header_len = read_header_len(bytes, file_len.or(Some(bytes.len() as u64)))?;
    let past_end = || FormatError::HeaderPastEnd {
        len: header_len,
        file_len: bytes.len() as u64,
    };
    // header_len <= MAX_HEADER_LEN, so it fits a usize on every target.
    let end = usize::try_from(header_len)
        .ok()
        .and_then(|n| n.checked_add(PREFIX_LEN))
        .ok_or_else(past_end)?;
    let json = bytes.get(PREFIX_LEN..end).ok_or_else(past_end)?;
    let text = std::str::from_utf8(json).map_err(|e| FormatError::HeaderUtf8 {
        at: e.valid_up_to(),
    })?;
    if !text.trim_start().starts_with('{') {
        return Err(FormatError::HeaderInvalid(
            "header is not a JSON object".into(),
        ));
    }
    let raw: RawHeader =
        serde_json::from_str(text).map_err(|e| FormatError::HeaderInvalid(e.to_string()))?;
    let header = validate_header(header_len, raw)?;
    if let Some(file_len) = file_len {
        let actual = file_len.saturating_sub(header.data_start());
        if actual != header.data_len() {
            return Err(FormatError::DataLength {
                expected: header.data_len(),
                actual,
            });
        }
    }
    Ok(header)
}

/// One tensor's entry as the JSON states it, before any check.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawTensorInfo {
    /// Dtype name as written (`F32`, `BF16`, ...; unknown names are kept).
    pub dtype: String,
    /// Shape, as 64-bit numbers (checked against `usize` later).
    pub shape: Vec<u64>,
    /// `[start, end)` relative to the data section.
    pub data_offsets: (u64, u64),
}

/// The header JSON as stated: tensors in the order written and the
/// `__metadata__` map. Duplicate names are refused while parsing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawHeader {
    /// Tensors in the order the JSON lists them.
    pub tensors: Vec<(String, RawTensorInfo)>,
    /// The free-form `__metadata__` map (string values only).
    pub metadata: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_map(RawHeaderVisitor)
    }
}

struct RawHeaderVisitor;

impl<'de> Visitor<'de> for RawHeaderVisitor {
    type Value = RawHeader;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a safetensors header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<RawHeader, A::Error> {
        let mut out = RawHeader::default();
        let mut seen = HashSet::new();
        let mut metadata_seen = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "__metadata__" {
                if metadata_seen {
                    return Err(de::Error::custom("`__metadata__` appears twice"));
                }
                metadata_seen = true;
                out.metadata = map
                    .next_value::<Option<BTreeMap<String, String>>>()
                    .map_err(|e| de::Error::custom(format!("`__metadata__`: {e}")))?
                    .unwrap_or_default();
                continue;
            }
            let info = map
                .next_value::<RawTensorInfo>()
                .map_err(|e| de::Error::custom(format!("tensor `{key}`: {e}")))?;
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!(
                    "tensor `{key}` appears twice in the header"
                )));
            }
            out.tensors.push((key, info));
        }
        Ok(out)
    }
}

/// Bytes of `shape` elements of `dtype`, with checked arithmetic; `Err` says
/// what overflowed or why the size is not a whole number of bytes.
pub fn data_bytes(shape: &[u64], dtype: Dtype) -> std::result::Result<u64, String> {
    let numel = shape
        .iter()
        .try_fold(1u64, |a, &b| a.checked_mul(b))
        .ok_or_else(|| format!("element count of shape {shape:?} overflows"))?;
    let bits = numel
        .checked_mul(dtype.bitsize() as u64)
        .ok_or_else(|| format!("size of {numel} elements of {dtype:?} overflows"))?;
    if bits % 8 != 0 {
        return Err(format!(
            "{numel} elements of {dtype:?} are not a whole number of bytes"
        ));
    }
    Ok(bits / 8)
}

/// Turn a raw header into a validated one: known dtypes, element counts and
/// byte sizes without overflow (and within `usize`), offsets contiguous from
/// 0 with each range exactly the size its shape and dtype imply.
pub fn validate_header(header_len: u64, raw: RawHeader) -> Result<Header> {
    let invalid = |name: &str, problem: String| {
        FormatError::HeaderInvalid(format!("tensor `{name}`: {problem}"))
    };
    let mut tensors = Vec::with_capacity(raw.tensors.len());
    for (name, info) in raw.tensors {
        let dtype = parse_dtype(&info.dtype).ok_or_else(|| FormatError::UnsupportedDtype {
            name: name.clone(),
            dtype: info.dtype.clone(),
        })?;
        let bytes = data_bytes(&info.shape, dtype).map_err(|p| invalid(&name, p))?;
        let (start, end) = info.data_offsets;
        if end < start {
            return Err(invalid(
                &name,
                format!("data_offsets [{start}, {end}] end before they start"),
            ));
        }
        if end - start != bytes {
            return Err(invalid(
                &name,
                format!(
                    "data_offsets [{start}, {end}] hold {} bytes but shape {:?} of {} needs {bytes}",
                    end - start,
                    info.shape,
                    dtype_name(dtype)
                ),
            ));
        }
        let too_large = || FormatError::TooLarge {
            name: name.clone(),
            bytes,
            limit: usize::MAX as u64,
        };
        // Counts fit u64 (checked above); on 32-bit targets they must also
        // fit usize, or the tensor cannot be held in memory here.
        let numel = info.shape.iter().try_fold(1u64, |a, &b| a.checked_mul(b));
        if numel.and_then(|n| usize::try_from(n).ok()).is_none() || usize::try_from(bytes).is_err()
        {
            return Err(too_large());
        }
        let shape = info
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .map_err(|_| too_large())?;
        tensors.push(TensorEntry {
            name,
            dtype,
            shape,
            start,
            end,
        });
    }
    tensors.sort_by(|a, b| (a.start, a.end, &a.name).cmp(&(b.start, b.end, &b.name)));
    let mut prev: Option<&TensorEntry> = None;
    for t in &tensors {
        let prev_end = prev.map_or(0, |p| p.end);
        if t.start != prev_end {
            let what = if t.start > prev_end {
                "leave a gap after"
            } else {
                "overlap"
            };
            let other = match prev {
                Some(p) => format!("tensor `{}` (ending at byte {})", p.name, p.end),
                None => "the start of the data section".to_string(),
            };
            let problem = if t.start > prev_end {
                format!(
                    "data_offsets [{}, {}] {what} {other}: bytes {prev_end}..{} belong to no tensor",
                    t.start, t.end, t.start
                )
            } else {
                format!("data_offsets [{}, {}] {what} {other}", t.start, t.end)
            };
            return Err(invalid(&t.name, problem));
        }
        prev = Some(t);
    }
    let header = Header {
        header_len,
        tensors,
        metadata: raw.metadata,
    };
    if header.data_start().checked_add(header.data_len()).is_none() {
        return Err(FormatError::HeaderInvalid(format!(
            "data section of {} bytes overflows the file size",
            header.data_len()
        )));
    }
    Ok(header)
}

/// Refuse a tensor whose f32 copy ([`TensorEntry::f32_bytes`]) needs more
/// than `limit` bytes: the wasm layer calls this with what its memory can
/// hold, before anything is allocated.
pub fn check_fits(entry: &TensorEntry, limit: u64) -> Result<()> {
    let bytes = entry.f32_bytes();
    if bytes > limit {
        return Err(FormatError::TooLarge {
            name: entry.name.clone(),
            bytes,
            limit,
        });
    }
    Ok(())
}

/// A whole safetensors file held in memory (or memory-mapped).
#[derive(Debug)]
pub struct SafetensorsFile<'a> {
    /// The validated header.
    pub header: Header,
    bytes: &'a [u8],
}

impl<'a> SafetensorsFile<'a> {
    /// Parse and validate a complete file.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let header = parse_header(bytes, Some(bytes.len() as u64))?;
        Ok(Self { header, bytes })
    }

    /// Raw bytes of a tensor. The range was validated against the file for
    /// entries of this header; an entry from elsewhere whose range is not in
    /// the file gets an empty slice (which [`to_f32`] then refuses).
    pub fn tensor_bytes(&self, entry: &TensorEntry) -> &'a [u8] {
        let (s, e) = self.header.file_range(entry);
        match (usize::try_from(s), usize::try_from(e)) {
            (Ok(s), Ok(e)) => self.bytes.get(s..e).unwrap_or_default(),
            _ => &[],
        }
    }

    /// A tensor converted to f32.
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let entry = self.header.get(name)?;
        to_f32(entry, self.tensor_bytes(entry))
    }
}

/// Convert a tensor's raw bytes to f32, checking the length.
pub fn to_f32(entry: &TensorEntry, bytes: &[u8]) -> Result<Vec<f32>> {
    let shape: Vec<u64> = entry.shape.iter().map(|&d| d as u64).collect();
    if data_bytes(&shape, entry.dtype).ok() != Some(bytes.len() as u64) {
        return Err(FormatError::ShapeMismatch {
            name: entry.name.clone(),
            shape: entry.shape.clone(),
            dtype: dtype_name(entry.dtype),
            bytes: bytes.len(),
        });
    }
    let out = match entry.dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(le_array(c)))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes(le_array(c)).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes(le_array(c)).to_f32())
            .collect(),
        other => {
            return Err(FormatError::UnsupportedDtype {
                name: entry.name.clone(),
                dtype: dtype_name(other),
            })
        }
    };
    Ok(out)
}

/// The first `N` bytes of `chunk` as an array (zero-filled if it is shorter,
/// which `chunks_exact` callers never see).
#[inline]
pub(crate) fn le_array<const N: usize>(chunk: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    for (d, s) in a.iter_mut().zip(chunk) {
        *d = *s;
    }
    a
}

/// Check that every value is finite; name the tensor otherwise.
pub fn check_finite(name: &str, values: &[f32]) -> Result<()> {
    let mut count = 0;
    let mut first = usize::MAX;
    for (i, v) in values.iter().enumerate() {
        if !v.is_finite() {
            count += 1;
            first = first.min(i);
        }
    }
    if count > 0 {
        return Err(FormatError::NonFinite {
            name: name.to_string(),
            count,
            first,
        });
    }
    Ok(())
}

/// Encode f32 values in a float dtype (little-endian).
pub fn from_f32(dtype: Dtype, values: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F16 => values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// A tensor to write: dtype, shape and little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedTensor {
    /// Stored dtype.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Raw little-endian bytes.
    pub data: Vec<u8>,
}

/// Build the header bytes (8-byte length prefix + JSON padded with spaces to
/// a multiple of 8) for tensors of the given dtypes, shapes and byte lengths,
/// laid out in the given order, and `__metadata__` first. The bytes are the
/// same on every platform and run (no hash-map order).
pub fn header_bytes(
    tensors: &[(&str, Dtype, &[usize], u64)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    use serde_json::json;
    let mut json = String::from("{");
    let mut first = true;
    if !metadata.is_empty() {
        json.push_str("\"__metadata__\":");
        json.push_str(
            &serde_json::to_string(metadata)
                .map_err(|e| FormatError::HeaderInvalid(e.to_string()))?,
        );
        first = false;
    }
    let mut offset = 0u64;
    for (name, dtype, shape, len) in tensors {
        if !first {
            json.push(',');
        }
        first = false;
        let end = offset
            .checked_add(*len)
            .ok_or_else(|| FormatError::Overflow {
                name: name.to_string(),
                what: "data offsets".into(),
            })?;
        let entry =
            json!({"dtype": dtype_name(*dtype), "shape": shape, "data_offsets": [offset, end]});
        json.push_str(
            &serde_json::to_string(name).map_err(|e| FormatError::HeaderInvalid(e.to_string()))?,
        );
        json.push(':');
        json.push_str(&entry.to_string());
        offset = end;
    }
    json.push('}');
    while (json.len() + PREFIX_LEN) % 8 != 0 {
        json.push(' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    Ok(out)
}

/// Serialize tensors (in the given order) and metadata into safetensors bytes.
pub fn write(
    tensors: &[(String, OwnedTensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    for (name, t) in tensors {
        let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
        if data_bytes(&shape, t.dtype).ok() != Some(t.data.len() as u64) {
            return Err(FormatError::ShapeMismatch {
                name: name.clone(),
                shape: t.shape.clone(),
                dtype: dtype_name(t.dtype),
                bytes: t.data.len(),
            });
        }
    }
    let specs: Vec<(&str, Dtype, &[usize], u64)> = tensors
        .iter()
        .map(|(n, t)| (n.as_str(), t.dtype, t.shape.as_slice(), t.data.len() as u64))
        .collect();
    let mut out = header_bytes(&specs, metadata)?;
    for (_, t) in tensors {
        out.extend_from_slice(&t.data);
    }
    Ok(out)
}

/// A sharded model's `model.safetensors.index.json`: tensor name to shard file.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardIndex {
    /// Tensor name to shard file name, in name order.
    pub weight_map: BTreeMap<String, String>,
}

impl ShardIndex {
    /// Parse an index file's JSON.
    pub fn parse(json: &str) -> Result<Self> {
        #[derive(serde::Deserialize)]
        struct Raw {
            weight_map: BTreeMap<String, String>,
        }
        let raw: Raw =
            serde_json::from_str(json).map_err(|e| FormatError::ShardIndex(e.to_string()))?;
        for file in raw.weight_map.values() {
            if file.contains("..") || file.starts_with('/') || file.contains('\\') {
                return Err(FormatError::ShardIndex(format!(
                    "shard path `{file}` leaves the model folder"
                )));
            }
        }
        Ok(Self {
            weight_map: raw.weight_map,
        })
    }

    /// Shard file names in order, without repeats.
    pub fn shards(&self) -> Vec<String> {
        let mut s: Vec<String> = self.weight_map.values().cloned().collect();
        s.sort();
        s.dedup();
        s
    }
}
