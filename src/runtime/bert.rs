//! The BERT encoder with mean pooling and L2 normalisation (the
//! sentence-transformers all-MiniLM-L6-v2 pipeline).
//!
//! A batch is a list of token-id sequences. Their tokens are laid end to end
//! (`T = Σ len` rows): every Linear layer runs once on all `T` rows, and
//! attention stays inside each sentence. This computes exactly what a padded
//! batch with an attention mask computes, without spending work on padding.

use super::config::BertConfig;
use super::error::{Result, RuntimeError};
use super::linear::{Linear, PackedStrategy};
use super::ops::{self, Activation};
use super::weights::{Table, WeightSource};
use crate::format::packed::PackedFile;

/// Receives the input of each Linear layer during a forward pass (the
/// calibration hook). Layers that share an input (query, key, value) are
/// reported once, with all their weight names.
pub trait LinearInputObserver {
    /// `x` is `rows x n_in` (row-major), one row per real (non-padding) token.
    fn observe(&mut self, weight_names: &[&str], x: &[f32], rows: usize);
}

/// LayerNorm parameters.
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    /// Tensor name prefix (`….LayerNorm`; `.weight` is gamma, `.bias` beta).
    pub(crate) name: String,
    pub(crate) gamma: Vec<f32>,
    pub(crate) beta: Vec<f32>,
}

impl LayerNorm {
    fn load(src: &mut WeightSource, prefix: &str, width: usize) -> Result<Self> {
        Ok(Self {
            name: prefix.to_string(),
            gamma: src.dense(&format!("{prefix}.weight"), &[width])?,
            beta: src.dense(&format!("{prefix}.bias"), &[width])?,
        })
    }
    fn apply(&self, x: &mut [f32], eps: f32) {
        ops::layer_norm(x, self.gamma.len(), &self.gamma, &self.beta, eps);
    }
}

/// One encoder layer.
#[derive(Debug, Clone)]
pub(crate) struct EncoderLayer {
    pub(crate) query: Linear,
    pub(crate) key: Linear,
    pub(crate) value: Linear,
    pub(crate) attention_output: Linear,
    pub(crate) attention_norm: LayerNorm,
    pub(crate) intermediate: Linear,
    pub(crate) output: Linear,
    pub(crate) output_norm: LayerNorm,
}

impl EncoderLayer {
    /// The layer's six Linear layers, in forward order.
    pub(crate) fn linears(&self) -> [&Linear; 6] {
        [
            &self.query,
            &self.key,
            &self.value,
            &self.attention_output,
            &self.intermediate,
            &self.output,
        ]
    }
}

/// A BERT-family encoder producing normalised mean-pooled sentence embeddings.
#[derive(Debug, Clone)]
pub struct BertModel {
    config: BertConfig,
    activation: Activation,
    word_embeddings: Table,
    position_embeddings: Table,
    token_type_embeddings: Table,
    embedding_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
}

impl BertModel {
    /// Load from `config.json` text and safetensors bytes: a dense file (the
    /// original `model.safetensors` or a decoded one) or a jlcm packed file,
    /// detected from its metadata. Packed Linear weights stay packed.
    pub fn from_safetensors(config_json: &str, weights: &[u8]) -> Result<Self> {
        let config = BertConfig::from_json(config_json)?;
        Self::from_source(config, WeightSource::from_bytes(weights)?)
    }

    /// Load from an already parsed packed file (its tensors are moved, not copied).
    pub fn from_packed(config_json: &str, file: PackedFile) -> Result<Self> {
        let config = BertConfig::from_json(config_json)?;
        Self::from_source(config, WeightSource::from_packed(file))
    }

    /// Build from a config and a weight source.
    pub fn from_source(config: BertConfig, mut src: WeightSource) -> Result<Self> {
        config.validate()?;
        // Checkpoints saved from `BertForX` prefix every name with `bert.`.
        let p = if src.contains("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let (h, inter) = (config.hidden_size, config.intermediate_size);
        let word_embeddings = src.table(
            &format!("{p}embeddings.word_embeddings.weight"),
            config.vocab_size,
            h,
        )?;
        let position_embeddings = src.table(
            &format!("{p}embeddings.position_embeddings.weight"),
            config.max_position_embeddings,
            h,
        )?;
        let token_type_embeddings = src.table(
            &format!("{p}embeddings.token_type_embeddings.weight"),
            config.type_vocab_size,
            h,
        )?;
        let embedding_norm = LayerNorm::load(&mut src, &format!("{p}embeddings.LayerNorm"), h)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let base = format!("{p}encoder.layer.{l}");
            layers.push(EncoderLayer {
                query: src.linear(&format!("{base}.attention.self.query"), h, h)?,
                key: src.linear(&format!("{base}.attention.self.key"), h, h)?,
                value: src.linear(&format!("{base}.attention.self.value"), h, h)?,
                attention_output: src.linear(&format!("{base}.attention.output.dense"), h, h)?,
                attention_norm: LayerNorm::load(
                    &mut src,
                    &format!("{base}.attention.output.LayerNorm"),
                    h,
                )?,
                intermediate: src.linear(&format!("{base}.intermediate.dense"), inter, h)?,
                output: src.linear(&format!("{base}.output.dense"), h, inter)?,
                output_norm: LayerNorm::load(&mut src, &format!("{base}.output.LayerNorm"), h)?,
            });
        }
        let activation = Activation::from_name(&config.hidden_act);
        Ok(Self {
            config,
            activation,
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embedding_norm,
            layers,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Width of an embedding.
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    /// All Linear layers, in forward order.
    pub fn linears(&self) -> impl Iterator<Item = &Linear> {
        self.layers.iter().flat_map(EncoderLayer::linears)
    }

    /// All Linear layers, in forward order, mutable (e.g. to swap one weight
    /// for a quantised copy and measure the effect end to end).
    pub fn linears_mut(&mut self) -> impl Iterator<Item = &mut Linear> {
        self.layers.iter_mut().flat_map(|l| {
            [
                &mut l.query,
                &mut l.key,
                &mut l.value,
                &mut l.attention_output,
                &mut l.intermediate,
                &mut l.output,
            ]
        })
    }

    /// Choose how every packed Linear layer multiplies (default [`PackedStrategy::Auto`]).
    pub fn set_packed_strategy(&mut self, strategy: PackedStrategy) {
        for l in &mut self.layers {
            for lin in [
                &mut l.query,
                &mut l.key,
                &mut l.value,
                &mut l.attention_output,
                &mut l.intermediate,
                &mut l.output,
            ] {
                lin.strategy = strategy;
            }
        }
    }

    /// How many Linear layers run on packed weights, of how many.
    pub fn packed_linear_count(&self) -> (usize, usize) {
        (
            self.linears().filter(|l| l.is_packed()).count(),
            self.linears().count(),
        )
    }

    /// Bytes held by all weights (packed parts counted as stored).
    pub fn weight_bytes(&self) -> usize {
        let norms = (2 + 4 * self.layers.len()) * self.config.hidden_size * 4;
        let biases: usize = self.linears().map(|l| 4 * l.bias.len()).sum();
        self.linears().map(Linear::weight_bytes).sum::<usize>()
            + self.word_embeddings.bytes()
            + self.position_embeddings.bytes()
            + self.token_type_embeddings.bytes()
            + norms
            + biases
    }

    /// Embeddings of a batch of token-id sequences (each with its `[CLS]`
    /// and `[SEP]`): `sentences.len() x hidden` values, row-major, each row
    /// mean-pooled over its tokens and L2-normalised.
    pub fn embed(&self, sentences: &[Vec<u32>]) -> Result<Vec<f32>> {
        self.embed_observed(sentences, None)
    }

    /// A padded batch: `input_ids` and `attention_mask` are `batch x seq`
    /// (right padding: each mask row is ones then zeros).
    pub fn embed_padded(
        &self,
        input_ids: &[u32],
        attention_mask: &[u32],
        batch: usize,
        seq: usize,
    ) -> Result<Vec<f32>> {
        if input_ids.len() != batch * seq || attention_mask.len() != batch * seq {
            return Err(RuntimeError::Input(format!(
                "input_ids has {} and attention_mask {} values, expected {batch} x {seq}",
                input_ids.len(),
                attention_mask.len()
            )));
        }
        let mut sentences = Vec::with_capacity(batch);
        for b in 0..batch {
            let mask = &attention_mask[b * seq..(b + 1) * seq];
            let len = mask.iter().take_while(|&&m| m != 0).count();
            if mask[len..].iter().any(|&m| m != 0) {
                return Err(RuntimeError::Input(format!(
                    "attention_mask row {b} is not right-padded (ones, then zeros)"
                )));
            }
            sentences.push(input_ids[b * seq..b * seq + len].to_vec());
        }
        self.embed(&sentences)
    }

    /// [`Self::embed`], reporting every Linear layer's input to `observer`.
    pub fn embed_observed(
        &self,
        sentences: &[Vec<u32>],
        mut observer: Option<&mut (dyn LinearInputObserver + '_)>,
    ) -> Result<Vec<f32>> {
        let (mut hidden, lens) = self.input_hidden(sentences)?;
        let mut bufs = LayerBuffers::new(&self.config, &lens);
        for l in 0..self.layers.len() {
            self.run_layer(l, &mut hidden, &lens, &mut bufs, &mut |lins, x| {
                if let Some(o) = observer.as_deref_mut() {
                    let names: Vec<&str> = lins.iter().map(|l| l.name.as_str()).collect();
                    o.observe(&names, x, x.len() / lins[0].n_in);
                }
                Ok(None)
            })?;
        }
        Ok(self.pool(&hidden, &lens))
    }

    /// The encoder layers (the engine's end-to-end tuning runs them itself).
    pub(crate) fn layers(&self) -> &[EncoderLayer] {
        &self.layers
    }

    /// The MLP's activation.
    pub(crate) fn activation(&self) -> Activation {
        self.activation
    }

    /// Number of encoder layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The encoder's input: token, position and type embeddings after their
    /// LayerNorm, `T x hidden` for the `T = Σ len` tokens of `sentences` laid
    /// end to end, and the sentence lengths. Checks the token ids.
    pub fn input_hidden(&self, sentences: &[Vec<u32>]) -> Result<(Vec<f32>, Vec<usize>)> {
        let c = &self.config;
        let h = c.hidden_size;
        for (i, s) in sentences.iter().enumerate() {
            if s.is_empty() {
                return Err(RuntimeError::Input(format!("sentence {i} has no tokens")));
            }
            if s.len() > c.max_position_embeddings {
                return Err(RuntimeError::Input(format!(
                    "sentence {i} has {} tokens, the model takes at most {}",
                    s.len(),
                    c.max_position_embeddings
                )));
            }
            if let Some(&id) = s.iter().find(|&&id| id as usize >= c.vocab_size) {
                return Err(RuntimeError::Input(format!(
                    "sentence {i}: token id {id} is outside the vocabulary ({})",
                    c.vocab_size
                )));
            }
        }
        let lens: Vec<usize> = sentences.iter().map(Vec::len).collect();
        let t: usize = lens.iter().sum();
        let eps = c.layer_norm_eps as f32;

        // Embeddings: word + position + token type 0, then LayerNorm.
        let mut hidden = vec![0f32; t * h];
        let mut scratch = vec![0f32; h];
        let mut row = 0;
        for s in sentences {
            for (pos, &id) in s.iter().enumerate() {
                let out = &mut hidden[row * h..(row + 1) * h];
                self.word_embeddings.add_row(id as usize, out, &mut scratch);
                self.position_embeddings.add_row(pos, out, &mut scratch);
                self.token_type_embeddings.add_row(0, out, &mut scratch);
                row += 1;
            }
        }
        self.embedding_norm.apply(&mut hidden, eps);
        Ok((hidden, lens))
    }

    /// Run encoder layer `l` on `hidden` (`T x hidden`, sentences of `lens`
    /// tokens end to end; replaced by the layer's output). Before each of its
    /// four Linear stages — query/key/value (one shared input), attention
    /// output, intermediate, output — `stage(linears, x)` sees the stage's
    /// layers and their input `x` (`T x n_in`); it may return replacements
    /// (same order and shapes) that this pass uses instead. The model is not
    /// changed. This is the hook of sequential calibration: fit each stage
    /// to inputs that already went through replaced earlier stages.
    pub fn forward_layer(
        &self,
        l: usize,
        hidden: &mut [f32],
        lens: &[usize],
        stage: &mut StageHook<'_>,
    ) -> Result<()> {
        if l >= self.layers.len() {
            return Err(RuntimeError::Input(format!(
                "layer {l} of a {}-layer model",
                self.layers.len()
            )));
        }
        let t: usize = lens.iter().sum();
        if hidden.len() != t * self.config.hidden_size {
            return Err(RuntimeError::Input(format!(
                "{} hidden values for {t} tokens of width {}",
                hidden.len(),
                self.config.hidden_size
            )));
        }
        let mut bufs = LayerBuffers::new(&self.config, lens);
        self.run_layer(l, hidden, lens, &mut bufs, stage)
    }

    /// Mean-pool each sentence of `hidden` and L2-normalise: the embeddings.
    pub fn pool(&self, hidden: &[f32], lens: &[usize]) -> Vec<f32> {
        let h = self.config.hidden_size;
        let mut out = vec![0f32; lens.len() * h];
        let mut start = 0;
        for (i, &len) in lens.iter().enumerate() {
            ops::mean_pool_normalize(
                &hidden[start * h..(start + len) * h],
                len,
                h,
                &mut out[i * h..(i + 1) * h],
            );
            start += len;
        }
        out
    }

    fn run_layer(
        &self,
        l: usize,
        hidden: &mut [f32],
        lens: &[usize],
        b: &mut LayerBuffers,
        stage: &mut StageHook<'_>,
    ) -> Result<()> {
        let c = &self.config;
        let (h, eps) = (c.hidden_size, c.layer_norm_eps as f32);
        let t: usize = lens.iter().sum();
        let layer = &self.layers[l];
        let check = |lins: &[&Linear], r: &Option<Vec<Linear>>| -> Result<()> {
            match r {
                Some(r)
                    if r.len() != lins.len()
                        || r.iter()
                            .zip(lins)
                            .any(|(a, b)| a.n_in != b.n_in || a.n_out != b.n_out) =>
                {
                    Err(RuntimeError::Input(format!(
                        "replacement layers for `{}` do not match their shapes",
                        lins[0].name
                    )))
                }
                _ => Ok(()),
            }
        };
        let qkv = [&layer.query, &layer.key, &layer.value];
        let r = stage(&qkv, hidden)?;
        check(&qkv, &r)?;
        let (q, k, v) = match &r {
            Some(v) => (&v[0], &v[1], &v[2]),
            None => (&layer.query, &layer.key, &layer.value),
        };
        q.forward(hidden, t, &mut b.q)?;
        k.forward(hidden, t, &mut b.k)?;
        v.forward(hidden, t, &mut b.v)?;
        self_attention(
            &b.q,
            &b.k,
            &b.v,
            lens,
            h,
            c.num_attention_heads,
            &mut b.scores,
            &mut b.context,
        );
        let one = |orig: &Linear, x: &[f32], stage: &mut StageHook<'_>| -> Result<Option<Linear>> {
            let lins = [orig];
            let r = stage(&lins, x)?;
            check(&lins, &r)?;
            Ok(r.and_then(|mut v| v.pop()))
        };
        let r = one(&layer.attention_output, &b.context, stage)?;
        r.as_ref()
            .unwrap_or(&layer.attention_output)
            .forward(&b.context, t, &mut b.attn)?;
        ops::add_in_place(&mut b.attn, hidden);
        layer.attention_norm.apply(&mut b.attn, eps);
        let r = one(&layer.intermediate, &b.attn, stage)?;
        r.as_ref()
            .unwrap_or(&layer.intermediate)
            .forward(&b.attn, t, &mut b.inter)?;
        self.activation.apply(&mut b.inter);
        let r = one(&layer.output, &b.inter, stage)?;
        r.as_ref()
            .unwrap_or(&layer.output)
            .forward(&b.inter, t, hidden)?;
        ops::add_in_place(hidden, &b.attn);
        layer.output_norm.apply(hidden, eps);
        Ok(())
    }
}

/// What [`BertModel::forward_layer`] calls before each Linear stage: the
/// stage's layers and their input; `Some(layers)` replaces them for this pass.
pub type StageHook<'a> = dyn FnMut(&[&Linear], &[f32]) -> Result<Option<Vec<Linear>>> + 'a;

/// Work buffers of one encoder layer over `T` tokens.
struct LayerBuffers {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    context: Vec<f32>,
    attn: Vec<f32>,
    inter: Vec<f32>,
    scores: Vec<f32>,
}

impl LayerBuffers {
    fn new(c: &BertConfig, lens: &[usize]) -> Self {
        let t: usize = lens.iter().sum();
        let th = t * c.hidden_size;
        Self {
            q: vec![0f32; th],
            k: vec![0f32; th],
            v: vec![0f32; th],
            context: vec![0f32; th],
            attn: vec![0f32; th],
            inter: vec![0f32; t * c.intermediate_size],
            scores: vec![0f32; lens.iter().copied().max().unwrap_or(0)],
        }
    }
}

/// Multi-head self-attention within each sentence: `context = softmax(q kᵀ / √d) v`
/// per head, for sentences of `lens` tokens laid end to end.
#[allow(clippy::too_many_arguments)]
fn self_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    lens: &[usize],
    h: usize,
    heads: usize,
    scores: &mut [f32],
    context: &mut [f32],
) {
    let dh = h / heads;
    let scale = 1.0 / (dh as f32).sqrt();
    context.fill(0.0);
    let mut start = 0;
    for &len in lens {
        for head in 0..heads {
            let off = head * dh;
            for i in 0..len {
                let qi = &q[(start + i) * h + off..(start + i) * h + off + dh];
                let sc = &mut scores[..len];
                for (j, s) in sc.iter_mut().enumerate() {
                    let kj = &k[(start + j) * h + off..(start + j) * h + off + dh];
                    *s = dot(qi, kj) * scale;
                }
                ops::softmax(sc);
                let ci = &mut context[(start + i) * h + off..(start + i) * h + off + dh];
                for (j, &p) in sc.iter().enumerate() {
                    let vj = &v[(start + j) * h + off..(start + j) * h + off + dh];
                    for (c, &x) in ci.iter_mut().zip(vj) {
                        *c += p * x;
                    }
                }
            }
        }
        start += len;
    }
}

/// Dot product with eight partial sums (vectorises without reassociation).
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}
