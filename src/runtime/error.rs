//! The runtime's error enum.

use thiserror::Error;

/// Errors of the runtime boundary (loading a model, tokenising, embedding).
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// `config.json` is unreadable or describes an unsupported model.
    #[error("model config: {0}")]
    Config(String),
    /// A weight is missing or has the wrong shape or dtype.
    #[error("weight `{name}`: {problem}")]
    Weight {
        /// Tensor name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The weights file is not valid safetensors / packed format.
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),
    /// A packed kernel refused its input.
    #[error(transparent)]
    Kernel(#[from] crate::kernels::KernelError),
    /// The tokenizer could not be loaded or failed on a text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Token ids or batch shapes that the model cannot take.
    #[error("input: {0}")]
    Input(String),
    /// A .npy buffer that cannot be read.
    #[error("npy: {0}")]
    Npy(String),
}

/// Result with [`RuntimeError`].
pub type Result<T> = std::result::Result<T, RuntimeError>;
