//! `config.json` of a BERT-family encoder.

use serde::Deserialize;

use super::error::{Result, RuntimeError};

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2.
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// The fields of a Hugging Face BERT `config.json` the runtime uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    /// Width of the hidden states (384 for MiniLM-L6).
    pub hidden_size: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest position the position table covers.
    pub max_position_embeddings: usize,
    /// Token types (segments).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Activation of the MLP: `gelu` (erf) is what BERT uses.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Only `absolute` is supported.
    #[serde(default = "default_pos")]
    pub position_embedding_type: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_pos() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Parse and check a `config.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        let c: Self =
            serde_json::from_str(json).map_err(|e| RuntimeError::Config(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Check the model is one this runtime runs.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(RuntimeError::Config(m));
        if self.hidden_size == 0
            || self.num_attention_heads == 0
            || self.hidden_size % self.num_attention_heads != 0
        {
            return bad(format!(
                "hidden_size {} is not a positive multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.intermediate_size == 0
            || self.vocab_size == 0
            || self.max_position_embeddings == 0
            || self.type_vocab_size == 0
        {
            return bad("intermediate_size, vocab_size, max_position_embeddings and type_vocab_size must be positive".into());
        }
        if self.hidden_size > 1 << 16
            || self.intermediate_size > 1 << 18
            || self.num_hidden_layers > 1024
        {
            return bad("model dimensions are implausibly large".into());
        }
        if !matches!(
            self.hidden_act.as_str(),
            "gelu" | "gelu_new" | "gelu_pytorch_tanh" | "relu"
        ) {
            return bad(format!(
                "hidden_act `{}` is not supported (gelu, gelu_new, relu)",
                self.hidden_act
            ));
        }
        if self.position_embedding_type != "absolute" {
            return bad(format!(
                "position_embedding_type `{}` is not supported (absolute)",
                self.position_embedding_type
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(format!(
                "layer_norm_eps {} must be positive",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }

    /// Tokens per sentence the sentence encoder keeps (special tokens
    /// included): [`DEFAULT_MAX_TOKENS`], or fewer if the position table is shorter.
    pub fn sentence_max_tokens(&self) -> usize {
        DEFAULT_MAX_TOKENS.min(self.max_position_embeddings)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
