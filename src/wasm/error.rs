//! Errors at the JS boundary: every failure becomes a JS `Error` whose
//! `code` property is one of the stable strings below, so callers can
//! branch on `err.code` without parsing messages.

use wasm_bindgen::JsValue;

use crate::engine::EngineError;
use crate::format::FormatError;
use crate::kernels::KernelError;
use crate::runtime::RuntimeError;

/// Stable error codes (documented in the package README and `types.d.ts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Bytes that are not a valid safetensors / packed file, or a tensor's
    /// bytes that do not match its shape and dtype.
    Format,
    /// A tensor name that the file does not hold.
    NotFound,
    /// A dtype the engine cannot read (only F32, F16, BF16).
    Dtype,
    /// NaN or infinite weights.
    NonFinite,
    /// More memory than wasm32 allows; use the native CLI.
    TooLarge,
    /// Options out of range, unknown keys, wrong types.
    Options,
    /// A tensor the engine cannot compress (not a matrix, too small).
    Tensor,
    /// A calibration matrix that does not fit the weight.
    Calibration,
    /// Buffers of the wrong length for a product.
    Shape,
    /// The caller cancelled (abort signal or `onProgress` returned `false`).
    Cancelled,
    /// A JS argument of the wrong kind.
    Argument,
    /// A kernel variant this build or engine lacks.
    Unsupported,
    /// A model config or weights the runtime cannot run.
    Model,
    /// A `tokenizer.json` that cannot be loaded or used.
    Tokenizer,
    /// Texts or batch shapes the model cannot take.
    Input,
}

impl ErrorCode {
    /// The string in `err.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Format => "E_FORMAT",
            ErrorCode::NotFound => "E_NOT_FOUND",
            ErrorCode::Dtype => "E_DTYPE",
            ErrorCode::NonFinite => "E_NON_FINITE",
            ErrorCode::TooLarge => "E_TOO_LARGE",
            ErrorCode::Options => "E_OPTIONS",
            ErrorCode::Tensor => "E_TENSOR",
            ErrorCode::Calibration => "E_CALIBRATION",
            ErrorCode::Shape => "E_SHAPE",
            ErrorCode::Cancelled => "E_CANCELLED",
            ErrorCode::Argument => "E_ARGUMENT",
            ErrorCode::Unsupported => "E_UNSUPPORTED",
            ErrorCode::Model => "E_MODEL",
            ErrorCode::Tokenizer => "E_TOKENIZER",
            ErrorCode::Input => "E_INPUT",
        }
    }
}

/// An error on its way to JS: a code and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingError {
    /// The stable code.
    pub code: ErrorCode,
    /// A readable message.
    pub message: String,
}

impl BindingError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Result of a binding function.
pub type JsResult<T> = std::result::Result<T, BindingError>;

impl From<FormatError> for BindingError {
    fn from(e: FormatError) -> Self {
        let code = match &e {
            FormatError::TensorNotFound(_) => ErrorCode::NotFound,
            FormatError::UnsupportedDtype { .. } => ErrorCode::Dtype,
            FormatError::NonFinite { .. } => ErrorCode::NonFinite,
            FormatError::TooLarge { .. } => ErrorCode::TooLarge,
            _ => ErrorCode::Format,
        };
        Self::new(code, e.to_string())
    }
}

impl From<EngineError> for BindingError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Format(f) => f.into(),
            EngineError::InvalidOptions(_) => Self::new(ErrorCode::Options, e.to_string()),
            EngineError::Tensor { .. } => Self::new(ErrorCode::Tensor, e.to_string()),
            EngineError::Calibration { .. } => Self::new(ErrorCode::Calibration, e.to_string()),
            EngineError::Cancelled => Self::new(ErrorCode::Cancelled, e.to_string()),
        }
    }
}

impl From<KernelError> for BindingError {
    fn from(e: KernelError) -> Self {
        match e {
            KernelError::Format(f) => f.into(),
            KernelError::Shape { .. } => Self::new(ErrorCode::Shape, e.to_string()),
            KernelError::Unavailable(_) => Self::new(ErrorCode::Unsupported, e.to_string()),
        }
    }
}

impl From<RuntimeError> for BindingError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Format(f) => f.into(),
            RuntimeError::Kernel(k) => k.into(),
            RuntimeError::Config(_) | RuntimeError::Weight { .. } => {
                Self::new(ErrorCode::Model, e.to_string())
            }
            RuntimeError::Tokenizer(_) => Self::new(ErrorCode::Tokenizer, e.to_string()),
            RuntimeError::Input(_) => Self::new(ErrorCode::Input, e.to_string()),
            RuntimeError::Npy(_) => Self::new(ErrorCode::Format, e.to_string()),
        }
    }
}

impl From<BindingError> for JsValue {
    fn from(e: BindingError) -> Self {
        let err = js_sys::Error::new(&e.message);
        // Setting a property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(
            &err,
            &JsValue::from_str("code"),
            &JsValue::from_str(e.code.as_str()),
        );
        err.into()
    }
}
