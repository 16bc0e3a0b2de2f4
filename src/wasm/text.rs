//! The package's second wasm module, `jlcm/text` (built with the
//! `text-module` feature): the `tokenizers` crate behind one class. It holds
//! no engine or runtime; its token ids feed the core module's
//! `SentenceModel` and `computeCalibration`.

use wasm_bindgen::prelude::*;

use super::error::{BindingError, ErrorCode};
use crate::runtime::{SentenceTokenizer, DEFAULT_MAX_TOKENS};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** Token ids of a batch of sentences: all ids concatenated, and each sentence's count. */
export interface TokenBatch { ids: Uint32Array; lengths: Uint32Array }
"#;

/// A Hugging Face tokenizer (`tokenizer.json`), set up as
/// sentence-transformers does: special tokens added, truncation to
/// `maxTokens`, no padding.
#[wasm_bindgen]
pub struct Tokenizer {
    tokenizer: SentenceTokenizer,
}

#[wasm_bindgen]
impl Tokenizer {
    /// Load `tokenizer.json` bytes; truncate every sentence to `maxTokens`
    /// (default 256; pass the core `SentenceModel.maxTokens`).
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(js_name = tokenizerJson)] tokenizer_json: &[u8],
        #[wasm_bindgen(js_name = maxTokens)] max_tokens: Option<usize>,
    ) -> Result<Tokenizer, JsValue> {
        let tokenizer =
            SentenceTokenizer::from_bytes(tokenizer_json, max_tokens.unwrap_or(DEFAULT_MAX_TOKENS))
                .map_err(BindingError::from)?;
        Ok(Self { tokenizer })
    }

    /// Tokens per sentence at most.
    #[wasm_bindgen(getter, js_name = maxTokens)]
    pub fn max_tokens(&self) -> usize {
        self.tokenizer.max_tokens()
    }

    /// Token ids of each text, with `[CLS]` and `[SEP]`.
    #[wasm_bindgen(unchecked_return_type = "TokenBatch")]
    pub fn encode(&self, texts: Vec<String>) -> Result<JsValue, JsValue> {
        let ids = self
            .tokenizer
            .encode_all(&texts)
            .map_err(BindingError::from)?;
        let lengths: Vec<u32> = ids.iter().map(|s| s.len() as u32).collect();
        let flat: Vec<u32> = ids.concat();
        let out = js_sys::Object::new();
        let set = |k: &str, v: &[u32]| {
            js_sys::Reflect::set(
                &out,
                &JsValue::from_str(k),
                &js_sys::Uint32Array::from(v).into(),
            )
            .map_err(|_| BindingError::new(ErrorCode::Argument, "cannot build the token batch"))
        };
        set("ids", &flat)?;
        set("lengths", &lengths)?;
        Ok(out.into())
    }
}
