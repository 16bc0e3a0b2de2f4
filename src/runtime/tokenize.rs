//! Tokenisation with the `tokenizers` crate, set up as sentence-transformers
//! does: special tokens added, truncation to `max_seq_length`, no padding.

use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use super::error::{Result, RuntimeError};

pub use super::config::DEFAULT_MAX_TOKENS;

/// A Hugging Face tokenizer (from `tokenizer.json`) that truncates to a
/// maximum number of tokens, special tokens included.
pub struct SentenceTokenizer {
    tokenizer: Tokenizer,
    max_tokens: usize,
}

impl std::fmt::Debug for SentenceTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceTokenizer")
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

impl SentenceTokenizer {
    /// Load `tokenizer.json` bytes; truncate to `max_tokens` (256 for
    /// all-MiniLM-L6-v2). The file's own padding setting is removed.
    pub fn from_bytes(tokenizer_json: &[u8], max_tokens: usize) -> Result<Self> {
        if max_tokens < 2 {
            return Err(RuntimeError::Tokenizer(format!(
                "max_tokens must be at least 2, got {max_tokens}"
            )));
        }
        let mut tokenizer = Tokenizer::from_bytes(tokenizer_json)
            .map_err(|e| RuntimeError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None::<PaddingParams>);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| RuntimeError::Tokenizer(e.to_string()))?;
        Ok(Self {
            tokenizer,
            max_tokens,
        })
    }

    /// Maximum tokens per sentence, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Token ids of one text, with `[CLS]` and `[SEP]`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| RuntimeError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of each text (one at a time: no threads, so it runs in wasm).
    pub fn encode_all<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        texts.iter().map(|t| self.encode(t.as_ref())).collect()
    }
}
