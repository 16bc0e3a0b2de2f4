//! File formats: safetensors input (lazy, validated) and the packed layout.
//!
//! Anything that reads bytes from outside goes through this module and its
//! validation; nothing else parses files.

pub mod error;
pub mod packed;
pub mod rotation;
pub mod safetensors;
pub mod stream;

pub use error::{FormatError, Result};
