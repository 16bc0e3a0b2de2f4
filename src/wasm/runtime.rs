//! The MiniLM sentence-embedding runtime: dense or packed weights plus
//! `tokenizer.json`, texts in, embeddings out.

use wasm_bindgen::prelude::*;

use super::error::{BindingError, ErrorCode};
use crate::runtime::{RuntimeError, SentenceEncoder as CoreEncoder};

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

/// A sentence encoder (all-MiniLM-L6-v2 and other BERT-family models):
/// `config.json` text, `tokenizer.json` bytes and the weights, dense
/// safetensors or a jlcm packed file (packed Linear layers run on the packed
/// SIMD128 kernels).
#[wasm_bindgen]
pub struct SentenceEncoder {
    encoder: CoreEncoder,
}

#[wasm_bindgen]
impl SentenceEncoder {
    /// Load a model from its three files' contents.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(js_name = configJson)] config_json: &str,
        #[wasm_bindgen(js_name = tokenizerJson)] tokenizer_json: &[u8],
        weights: &[u8],
    ) -> Result<SentenceEncoder, JsValue> {
        let encoder = CoreEncoder::from_bytes(config_json, tokenizer_json, weights)
            .map_err(BindingError::from)?;
        Ok(Self { encoder })
    }

    /// Width of one embedding.
    #[wasm_bindgen(getter, js_name = hiddenSize)]
    pub fn hidden_size(&self) -> usize {
        self.encoder.hidden_size()
    }

    /// Linear layers running on packed weights.
    #[wasm_bindgen(getter, js_name = packedLinears)]
    pub fn packed_linears(&self) -> usize {
        self.encoder.model.packed_linear_count().0
    }

    /// Linear layers in the model.
    #[wasm_bindgen(getter, js_name = totalLinears)]
    pub fn total_linears(&self) -> usize {
        self.encoder.model.packed_linear_count().1
    }

    /// Bytes of the weights held in memory.
    #[wasm_bindgen(getter, js_name = weightBytes)]
    pub fn weight_bytes(&self) -> usize {
        self.encoder.model.weight_bytes()
    }

    /// Embeddings of `texts` (`texts.length x hiddenSize`, row-major), each
    /// mean-pooled and L2-normalised.
    pub fn embed(&self, texts: Vec<String>) -> Result<Vec<f32>, JsValue> {
        Ok(self.encoder.embed(&texts).map_err(BindingError::from)?)
    }
}
