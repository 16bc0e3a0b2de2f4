//! Tokenizer + encoder: texts in, sentence embeddings out.

use super::bert::{BertModel, LinearInputObserver};
use super::error::Result;
use super::tokenize::SentenceTokenizer;

/// A sentence encoder: `tokenizer.json` + `config.json` + weights.
#[derive(Debug)]
pub struct SentenceEncoder {
    /// The tokenizer.
    pub tokenizer: SentenceTokenizer,
    /// The model.
    pub model: BertModel,
}

impl SentenceEncoder {
    /// Load from the three files' contents. `weights` is dense safetensors
    /// or a jlcm packed file (packed Linear weights run on the packed kernels).
    pub fn from_bytes(config_json: &str, tokenizer_json: &[u8], weights: &[u8]) -> Result<Self> {
        let model = BertModel::from_safetensors(config_json, weights)?;
        let tokenizer =
            SentenceTokenizer::from_bytes(tokenizer_json, model.config().sentence_max_tokens())?;
        Ok(Self { tokenizer, model })
    }

    /// Width of an embedding.
    pub fn hidden_size(&self) -> usize {
        self.model.hidden_size()
    }

    /// Embeddings of `texts`, `texts.len() x hidden` row-major, each mean-pooled
    /// and L2-normalised, computed in one batch.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<f32>> {
        self.model.embed(&self.tokenizer.encode_all(texts)?)
    }

    /// [`Self::embed`] in batches of `batch_size` texts, calling `progress(done)`.
    pub fn embed_batched<S: AsRef<str>>(
        &self,
        texts: &[S],
        batch_size: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<f32>> {
        self.embed_batched_observed(texts, batch_size, None, progress)
    }

    /// [`Self::embed_batched`], reporting every Linear layer's input to `observer`.
    pub fn embed_batched_observed<S: AsRef<str>>(
        &self,
        texts: &[S],
        batch_size: usize,
        mut observer: Option<&mut (dyn LinearInputObserver + '_)>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(texts.len() * self.hidden_size());
        let mut done = 0;
        for chunk in texts.chunks(batch_size.max(1)) {
            let ids = self.tokenizer.encode_all(chunk)?;
            out.extend(self.model.embed_observed(&ids, observer.as_deref_mut())?);
            done += chunk.len();
            progress(done);
        }
        Ok(out)
    }
}
