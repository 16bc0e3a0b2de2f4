//! Plain-object conversions between JS and Rust (serde-wasm-bindgen).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;

use super::error::{BindingError, ErrorCode, JsResult};
use crate::format::safetensors::{self as st, Dtype, TensorEntry};

/// Serialize a value to a plain JS object (maps as objects, 64-bit integers
/// as numbers).
pub fn to_js<T: Serialize + ?Sized>(value: &T) -> JsResult<JsValue> {
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    value
        .serialize(&serializer)
        .map_err(|e| BindingError::new(ErrorCode::Argument, format!("cannot convert result: {e}")))
}

/// Read a plain JS object as `T` through JSON, so that `deny_unknown_fields`
/// catches misspelt keys (serde-wasm-bindgen would skip them silently);
/// `undefined`/`null` give `T::default()`.
pub fn from_js<T: DeserializeOwned + Default>(
    value: JsValue,
    what: &str,
    code: ErrorCode,
) -> JsResult<T> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    if !value.is_object() || js_sys::Array::is_array(&value) {
        return Err(BindingError::new(
            code,
            format!("{what}: expected a plain object"),
        ));
    }
    let json = js_sys::JSON::stringify(&value)
        .ok()
        .and_then(|s| s.as_string())
        .ok_or_else(|| BindingError::new(code, format!("{what}: not representable as JSON")))?;
    serde_json::from_str(&json).map_err(|e| BindingError::new(code, format!("{what}: {e}")))
}

/// What the binding needs to know about a tensor to read its bytes: the
/// entries `parseHeader` returns fit (extra keys are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// safetensors dtype name (`F32`, `F16`, `BF16`, ...).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Read a spec from JS.
    pub fn from_js(value: JsValue) -> JsResult<Self> {
        if value.is_undefined() || value.is_null() {
            return Err(BindingError::new(
                ErrorCode::Argument,
                "tensor: expected {name, dtype, shape}",
            ));
        }
        serde_wasm_bindgen::from_value(value).map_err(|e| {
            BindingError::new(
                ErrorCode::Argument,
                format!("tensor: expected {{name, dtype, shape}}: {e}"),
            )
        })
    }

    /// The spec as a header entry covering `byte_len` bytes.
    pub fn entry(&self, byte_len: usize) -> JsResult<TensorEntry> {
        let dtype: Dtype = st::parse_dtype(&self.dtype).ok_or_else(|| {
            BindingError::new(
                ErrorCode::Dtype,
                format!("tensor `{}`: unknown dtype `{}`", self.name, self.dtype),
            )
        })?;
        Ok(TensorEntry {
            name: self.name.clone(),
            dtype,
            shape: self.shape.clone(),
            start: 0,
            end: byte_len as u64,
        })
    }
}

/// The tensor's values as f32, with the byte length checked.
pub fn tensor_values(spec: &TensorSpec, bytes: &[u8]) -> JsResult<(TensorEntry, Vec<f32>)> {
    let entry = spec.entry(bytes.len())?;
    check_wasm_budget(&entry.name, entry.num_elements() as u64)?;
    let values = st::to_f32(&entry, bytes)?;
    Ok((entry, values))
}

/// Working-set cap for one tensor in wasm32 (4 GiB of linear memory): the
/// learner holds about six f32 copies of the matrix.
pub const WASM_TENSOR_BUDGET_BYTES: u64 = 3 << 30;

/// Refuse tensors whose working set cannot fit in wasm memory.
pub fn check_wasm_budget(name: &str, elements: u64) -> JsResult<()> {
    let bytes = elements.saturating_mul(4 * 6);
    if bytes > WASM_TENSOR_BUDGET_BYTES {
        return Err(crate::format::FormatError::TooLarge {
            name: name.to_string(),
            bytes,
            limit: WASM_TENSOR_BUDGET_BYTES,
        }
        .into());
    }
    Ok(())
}
