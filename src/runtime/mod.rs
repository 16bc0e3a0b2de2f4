//! The sentence-embedding runtime: a BERT-family encoder (all-MiniLM-L6-v2
//! is the reference) in plain Rust, running every Linear layer on dense f32
//! weights or straight from packed indices and codebooks.
//!
//! No file system here: everything is loaded from bytes, so the same code
//! runs natively (the CLI) and in wasm (the npm package and the page).
//!
//! ```no_run
//! # fn demo(config: &str, tokenizer: &[u8], weights: &[u8]) -> Result<(), jlcm::runtime::RuntimeError> {
//! use jlcm::runtime::SentenceEncoder;
//! let encoder = SentenceEncoder::from_bytes(config, tokenizer, weights)?;
//! let emb = encoder.embed(&["A man is eating food.", "A man is riding a horse."])?;
//! assert_eq!(emb.len(), 2 * encoder.hidden_size());
//! # Ok(()) }
//! ```

pub mod bert;
pub mod config;
pub mod dense;
#[cfg(feature = "tokenizer")]
pub mod encoder;
pub mod error;
pub mod linear;
pub mod npy;
pub mod ops;
pub mod panel;
#[cfg(feature = "tokenizer")]
pub mod tokenize;
pub mod weights;

pub use bert::{BertModel, LinearInputObserver, StageHook};
pub use config::BertConfig;
pub use config::DEFAULT_MAX_TOKENS;
#[cfg(feature = "tokenizer")]
pub use encoder::SentenceEncoder;
pub use error::RuntimeError;
pub use linear::{Linear, LinearWeight, PackedStrategy, AUTO_PANELS, PANEL_MIN_ROWS};
#[cfg(feature = "tokenizer")]
pub use tokenize::SentenceTokenizer;
