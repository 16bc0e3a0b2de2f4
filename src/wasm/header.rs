//! Reading a safetensors header without the data: the page reads the first
//! 8 bytes, then `headerByteLength` bytes, then one tensor at a time with
//! `File.slice(t.start, t.end)`.

use std::collections::BTreeMap;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::convert::to_js;
use super::error::JsResult;
use crate::format::safetensors::{self as st, Header};

/// One tensor of a header, as JS sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// safetensors dtype name.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Absolute byte offset of the tensor's data in the file.
    pub start: u64,
    /// Absolute end offset (exclusive).
    pub end: u64,
    /// `end - start`.
    pub byte_length: u64,
    /// Whether the engine compresses this tensor.
    pub compressible: bool,
    /// Rows of the matrix view (compressible tensors only).
    pub rows: Option<usize>,
    /// Columns of the matrix view (compressible tensors only).
    pub cols: Option<usize>,
}

/// A parsed header, as JS sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderInfo {
    /// Bytes before the data section (8 + JSON length).
    pub data_start: u64,
    /// File length the header implies.
    pub file_length: u64,
    /// Tensors in file order.
    pub tensors: Vec<TensorInfo>,
    /// The `__metadata__` map.
    pub metadata: BTreeMap<String, String>,
}

impl HeaderInfo {
    /// Convert a validated header.
    pub fn from_header(h: &Header) -> Self {
        let tensors = h
            .tensors
            .iter()
            .map(|t| {
                let (start, end) = h.file_range(t);
                let m = t.matrix_shape();
                TensorInfo {
                    name: t.name.clone(),
                    dtype: st::dtype_name(t.dtype),
                    shape: t.shape.clone(),
                    start,
                    end,
                    byte_length: end - start,
                    compressible: m.is_some(),
                    rows: m.map(|m| m.0),
                    cols: m.map(|m| m.1),
                }
            })
            .collect();
        Self {
            data_start: h.data_start(),
            file_length: h.file_len(),
            tensors,
            metadata: h.metadata.clone(),
        }
    }
}

/// How many bytes from the start of the file hold the header (8-byte length
/// prefix plus JSON), read from the first 8 bytes.
#[wasm_bindgen(js_name = headerByteLength)]
pub fn header_byte_length(prefix: &[u8]) -> Result<f64, JsValue> {
    let len = st::read_header_len(prefix, None).map_err(super::error::BindingError::from)?;
    Ok((len + st::PREFIX_LEN as u64) as f64)
}

/// Parse and validate a safetensors header. `bytes` is the whole file or
/// only its first `headerByteLength` bytes; `fileLength` (the whole file's
/// size) lets the data section's length be checked too.
#[wasm_bindgen(js_name = parseHeader, unchecked_return_type = "SafetensorsHeader")]
pub fn parse_header(
    bytes: &[u8],
    #[wasm_bindgen(js_name = fileLength)] file_length: Option<f64>,
) -> Result<JsValue, JsValue> {
    Ok(parse_header_impl(bytes, file_length)?)
}

fn parse_header_impl(bytes: &[u8], file_length: Option<f64>) -> JsResult<JsValue> {
    let file_len = file_length
        .map(|f| f.max(0.0) as u64)
        .or(Some(bytes.len() as u64));
    let header = st::parse_header(bytes, file_len)?;
    to_js(&HeaderInfo::from_header(&header))
}
