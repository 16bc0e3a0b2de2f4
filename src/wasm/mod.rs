//! The JS binding (wasm32 only): thin conversions over the plain-Rust core.
//!
//! Everything takes and returns plain objects, typed arrays or the classes
//! below; every error is a JS `Error` with a stable `code` (see
//! [`error::ErrorCode`]). The TypeScript shapes of the plain objects live in
//! `pkg-config/types.d.ts` and are emitted into the package's `.d.ts`.
//!
//! | JS                                   | core                                   |
//! |--------------------------------------|----------------------------------------|
//! | `headerByteLength`, `parseHeader`    | `format::safetensors::parse_header`    |
//! | `readTensor`, `analyseTensor`        | `to_f32`, `engine::group::group_rows`  |
//! | `compressTensor` → `CompressedTensor`| `engine::compress_matrix`              |
//! | `PackedFileBuilder`                  | `format::packed::PackedFile::to_bytes` |
//! | `decodePackedFile`, `inspectPackedFile` | `PackedFile::{from_bytes, decode}`  |
//! | `PackedMatrix`                       | `kernels::PackedMatrix`                |
//! | `SentenceModel`                      | `runtime::BertModel` (token ids in)    |
//! | `computeCalibration`                 | `engine::calib::calibrate_tokens`      |
//!
//! The npm package's one wasm module is built from this crate
//! (`scripts/build-wasm.sh`). Text is tokenised in JavaScript by the
//! package's `jlcm/text` entry (`pkg-config/text.js`, Hugging Face's
//! `@huggingface/tokenizers`), whose token ids feed `SentenceModel` and
//! `computeCalibration`.

pub mod analyse;
pub mod calibrate;
pub mod compress;
pub mod convert;
pub mod error;
pub mod header;
pub mod matvec;
pub mod packfile;
pub mod runtime;

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = include_str!("../../pkg-config/types.d.ts");

/// `object[key]`, or `undefined` when `object` is not an object (options
/// and contexts passed from JavaScript are optional plain objects).
fn get(object: &JsValue, key: &str) -> JsValue {
    if object.is_object() {
        js_sys::Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

/// The result of a call that runs JavaScript callbacks: an exception a
/// callback threw wins over the call's own result, else the binding error
/// becomes the `Error` with a `code`.
fn settle<T>(out: error::JsResult<T>, thrown: Option<JsValue>) -> Result<T, JsValue> {
    match (out, thrown) {
        (_, Some(js_error)) => Err(js_error),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(e.into()),
    }
}

/// Runs once when the module is instantiated: panics (bugs) are logged to
/// the console with their message before the `RuntimeError`.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Whether this build uses WebAssembly SIMD128 kernels.
#[wasm_bindgen(js_name = simd128Enabled)]
pub fn simd128_enabled() -> bool {
    cfg!(target_feature = "simd128")
}

/// The crate version.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// The packed format version this build reads and writes.
#[wasm_bindgen(js_name = formatVersion)]
pub fn format_version() -> u32 {
    crate::format::packed::FORMAT_VERSION
}
