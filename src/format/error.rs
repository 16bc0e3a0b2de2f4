//! Errors of the file-format boundary: everything that reads or writes bytes.

use thiserror::Error;

/// What can go wrong while reading, validating or writing a safetensors or
/// packed file. Every variant names the tensor (where there is one) and the
/// problem, so the message alone tells the user what to fix.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum FormatError {
    /// The buffer is shorter than the 8-byte header-length prefix.
    #[error("file too short: {len} bytes, a safetensors file starts with an 8-byte header length")]
    TooShort { len: u64 },
    /// The declared header length exceeds the cap.
    #[error("header of {len} bytes is over the {cap}-byte cap")]
    HeaderTooLarge { len: u64, cap: u64 },
    /// The declared header length runs past the end of the file.
    #[error("header length {len} runs past the end of the file ({file_len} bytes)")]
    HeaderPastEnd { len: u64, file_len: u64 },
    /// The header bytes are not UTF-8.
    #[error("header is not valid UTF-8 at byte {at}")]
    HeaderUtf8 { at: usize },
    /// The header is not valid safetensors JSON (includes offset/shape checks
    /// done by the `safetensors` crate).
    #[error("invalid header: {0}")]
    HeaderInvalid(String),
    /// The data section has a different length than the header declares.
    #[error("data section is {actual} bytes but the header declares {expected} (truncated or padded file)")]
    DataLength { expected: u64, actual: u64 },
    /// A tensor name was asked for that the file does not hold.
    #[error("tensor `{0}` not found")]
    TensorNotFound(String),
    /// A tensor has a dtype this tool cannot convert to f32.
    #[error("tensor `{name}`: unsupported dtype {dtype} (F32, F16 and BF16 are supported)")]
    UnsupportedDtype { name: String, dtype: String },
    /// A tensor's byte range does not match its shape and dtype.
    #[error("tensor `{name}`: {bytes} bytes do not match shape {shape:?} of {dtype}")]
    ShapeMismatch {
        name: String,
        shape: Vec<usize>,
        dtype: String,
        bytes: usize,
    },
    /// A size computed from the file overflows.
    #[error("tensor `{name}`: size overflows ({what})")]
    Overflow { name: String, what: String },
    /// A tensor holds NaN or infinite values.
    #[error("tensor `{name}`: {count} non-finite values (NaN or Inf), first at element {first}")]
    NonFinite {
        name: String,
        count: usize,
        first: usize,
    },
    /// A tensor too large for this environment (wasm memory).
    #[error("tensor `{name}` needs {bytes} bytes, more than the {limit} this environment allows; use the native CLI")]
    TooLarge {
        name: String,
        bytes: u64,
        limit: u64,
    },
    /// The packed file's metadata is missing, from another version or malformed.
    #[error("packed file: {0}")]
    PackedMeta(String),
    /// A packed tensor's parts are inconsistent (shapes, indices, codebooks).
    #[error("packed tensor `{name}`: {problem}")]
    PackedTensor { name: String, problem: String },
    /// A sharded model index is malformed or names a missing shard.
    #[error("shard index: {0}")]
    ShardIndex(String),
    /// An I/O error (native only), with the path.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl FormatError {
    /// A stable snake_case code per variant (`header_invalid`, `too_large`,
    /// ...), for bindings and tests that match on the kind of error rather
    /// than on the message (`tests/bad-files/manifest.json` uses it).
    pub fn code(&self) -> &'static str {
        match self {
            FormatError::TooShort { .. } => "too_short",
            FormatError::HeaderTooLarge { .. } => "header_too_large",
            FormatError::HeaderPastEnd { .. } => "header_past_end",
            FormatError::HeaderUtf8 { .. } => "header_utf8",
            FormatError::HeaderInvalid(_) => "header_invalid",
            FormatError::DataLength { .. } => "data_length",
            FormatError::TensorNotFound(_) => "tensor_not_found",
            FormatError::UnsupportedDtype { .. } => "unsupported_dtype",
            FormatError::ShapeMismatch { .. } => "shape_mismatch",
            FormatError::Overflow { .. } => "overflow",
            FormatError::NonFinite { .. } => "non_finite",
            FormatError::TooLarge { .. } => "too_large",
            FormatError::PackedMeta(_) => "packed_meta",
            FormatError::PackedTensor { .. } => "packed_tensor",
            FormatError::ShardIndex(_) => "shard_index",
            FormatError::Io { .. } => "io",
        }
    }
}

/// Result alias for the format boundary.
pub type Result<T> = std::result::Result<T, FormatError>;
