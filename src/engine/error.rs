//! Errors of the engine boundary.

use thiserror::Error;

use crate::format::FormatError;

/// What can go wrong while compressing.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EngineError {
    /// Options out of range or contradictory.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A tensor that cannot be compressed as asked.
    #[error("tensor `{name}`: {problem}")]
    Tensor { name: String, problem: String },
    /// A calibration matrix that does not fit its weight.
    #[error("calibration for `{name}`: {problem}")]
    Calibration { name: String, problem: String },
    /// The caller asked to stop.
    #[error("cancelled")]
    Cancelled,
    /// A file-format error.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// Result alias for the engine.
pub type Result<T> = std::result::Result<T, EngineError>;
