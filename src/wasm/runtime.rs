//! The MiniLM sentence-embedding runtime on token ids: dense or packed
//! weights in, embeddings out. Text is tokenised by the package's second
//! module (`jlcm/text`, [`super::text`]), whose `SentenceEncoder` wraps this.

use wasm_bindgen::prelude::*;

use super::error::{BindingError, ErrorCode, JsResult};
use crate::runtime::BertModel;

/// A BERT-family encoder (all-MiniLM-L6-v2 and the like) on token ids:
/// `config.json` text and the weights, dense safetensors or a jlcm packed
/// file (packed Linear layers run on the packed SIMD128 kernels).
#[wasm_bindgen]
pub struct SentenceModel {
    pub(crate) model: BertModel,
}

#[wasm_bindgen]
impl SentenceModel {
    /// Load a model from `config.json` and its weights.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(js_name = configJson)] config_json: &str,
        weights: &[u8],
    ) -> Result<SentenceModel, JsValue> {
        let model =
            BertModel::from_safetensors(config_json, weights).map_err(BindingError::from)?;
        Ok(Self { model })
    }

    /// Tokens per sentence the model takes, special tokens included (256 for
    /// all-MiniLM-L6-v2): give it to the tokenizer as its truncation length.
    #[wasm_bindgen(getter, js_name = maxTokens)]
    pub fn max_tokens(&self) -> usize {
        self.model.config().sentence_max_tokens()
    }

    /// Width of one embedding.
    #[wasm_bindgen(getter, js_name = hiddenSize)]
    pub fn hidden_size(&self) -> usize {
        self.model.hidden_size()
    }

    /// Linear layers running on packed weights.
    #[wasm_bindgen(getter, js_name = packedLinears)]
    pub fn packed_linears(&self) -> usize {
        self.model.packed_linear_count().0
    }

    /// Linear layers in the model.
    #[wasm_bindgen(getter, js_name = totalLinears)]
    pub fn total_linears(&self) -> usize {
        self.model.packed_linear_count().1
    }

    /// Bytes of the weights held in memory.
    #[wasm_bindgen(getter, js_name = weightBytes)]
    pub fn weight_bytes(&self) -> usize {
        self.model.weight_bytes()
    }

    /// Embeddings of a batch of token-id sequences (`Tokenizer.encode`'s
    /// result): `sentences x hiddenSize` values, row-major, each mean-pooled
    /// and L2-normalised.
    #[wasm_bindgen(js_name = embedTokens)]
    pub fn embed_tokens(
        &self,
        #[wasm_bindgen(unchecked_param_type = "TokenBatch")] tokens: JsValue,
    ) -> Result<Vec<f32>, JsValue> {
        let sentences = token_batch(&tokens)?;
        Ok(self.model.embed(&sentences).map_err(BindingError::from)?)
    }
}

/// Split a `{ids: Uint32Array, lengths: Uint32Array}` batch (all sentences'
/// ids concatenated) into one id vector per sentence.
pub fn token_batch(tokens: &JsValue) -> JsResult<Vec<Vec<u32>>> {
    let field = |key: &str| -> JsResult<Vec<u32>> {
        let v = if tokens.is_object() {
            js_sys::Reflect::get(tokens, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
        } else {
            JsValue::UNDEFINED
        };
        if !v.is_instance_of::<js_sys::Uint32Array>() && !js_sys::Array::is_array(&v) {
            return Err(BindingError::new(
                ErrorCode::Argument,
                format!("tokens.{key} must be a Uint32Array (a TokenBatch from Tokenizer.encode)"),
            ));
        }
        Ok(js_sys::Uint32Array::new(&v).to_vec())
    };
    let ids = field("ids")?;
    let lengths = field("lengths")?;
    let total: u64 = lengths.iter().map(|&l| l as u64).sum();
    if total != ids.len() as u64 {
        return Err(BindingError::new(
            ErrorCode::Input,
            format!(
                "tokens.lengths add up to {total}, but tokens.ids holds {} ids",
                ids.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(lengths.len());
    let mut at = 0;
    for &l in &lengths {
        out.push(ids[at..at + l as usize].to_vec());
        at += l as usize;
    }
    Ok(out)
}
