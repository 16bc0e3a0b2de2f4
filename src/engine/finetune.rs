//! End-to-end tuning of the learned codebooks (and biases) of a compressed
//! BERT-family encoder.
//!
//! The engine fits every weight on its own layer's loss (ALGORITHM.md §3).
//! What a user sees is the model's output, and the errors of 36 layers
//! compound through attention, residuals and LayerNorm. Here the mappings
//! (indices) stay fixed and the continuous parameters that cost no extra
//! bit — every codeword of every compressed weight, the biases of those
//! layers and the encoder's LayerNorm gains and shifts (stored dense
//! anyway) — are tuned together by gradient descent (Adam) on the
//! distance between the compressed and the original model's last hidden
//! states on the calibration sentences:
//!
//! `L = Σ_tokens ‖h̃_L − h_L‖² / Σ_tokens ‖h_L‖²  +  α Σ_s ‖ẽ_s − e_s‖² / n_s`
//!
//! where `e_s` is sentence `s`'s embedding (mean-pooled, L2-normalised:
//! `‖ẽ − e‖² = 2 (1 − cos)`) and `α` is
//! [`FinetuneOptions::embedding_weight`]: the token term gives many
//! targets per sentence, the embedding term is what the user measures.
//!
//! The gradient of a codeword is the sum of `∂L/∂Ŵ_rj` over the weights
//! that map to it (times the group's scale in scale mode). The backward
//! pass (attention, GELU, LayerNorm, residuals) is written out here against
//! the runtime's forward pass; tests check it against finite differences.
//! `L` on all calibration sentences is measured before and after: if it did
//! not fall, the parameters are left as they were (never worse on the
//! calibration set). Codebooks are rounded to their stored f16 at the end
//! and `L` is measured after rounding.

use std::collections::BTreeMap;

use half::f16;

use super::compress::Control;
use crate::format::packed::{read_index, PackedTensor};
use crate::runtime::bert::LayerNorm;
use crate::runtime::dense::{matmul_transposed, transpose};
use crate::runtime::ops::{self, Activation};
use crate::runtime::{BertModel, Linear, LinearWeight, RuntimeError};

/// How [`finetune`] runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FinetuneOptions {
    /// Adam steps, each on one batch of calibration sentences (in order, cycling).
    pub steps: usize,
    /// Sentences per step.
    pub batch_size: usize,
    /// Adam step size, relative to the RMS of each tensor's codewords (and biases).
    pub lr: f32,
    /// Tune the biases of the compressed layers too.
    pub tune_biases: bool,
    /// Tune the encoder layers' LayerNorm parameters too.
    pub tune_norms: bool,
    /// Weight `α` of the embedding term in the objective (module docs).
    /// 0 by default: on MiniLM, `α` = 1 or 4 gave no held-out gain over
    /// the token term alone (BENCHMARKS.md, session 8).
    pub embedding_weight: f32,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        Self {
            steps: 96,
            batch_size: 32,
            lr: 0.003,
            tune_biases: true,
            tune_norms: true,
            embedding_weight: 0.0,
        }
    }
}

/// What [`finetune`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneReport {
    /// `L` on all calibration sentences before tuning.
    pub initial_loss: f64,
    /// `L` on all calibration sentences after (codebooks rounded to f16).
    pub final_loss: f64,
    /// `L` of each step's batch, before its update.
    pub step_losses: Vec<f64>,
    /// Whether the tuned parameters were kept (`final_loss < initial_loss`).
    pub kept: bool,
}

/// Tune the codebooks of `packed` (by weight name; each the compressed
/// version of that Linear weight of `model`, which holds the dense
/// originals) and, with `tune_biases`, those layers' biases, so the
/// compressed model's last hidden states approach the original's on
/// `sentences` (token ids with their special tokens). Returns the dense
/// tensors to write instead of the input's, by tensor name (the biases of
/// the compressed layers, `….bias`, and with `tune_norms` every encoder
/// LayerNorm's `.weight` and `.bias`; tuned or, if not kept, as they
/// were), and the report. `progress(step,
/// loss)` after each step; [`Control::Cancel`] stops and keeps what is
/// best so far by the same rule.
pub fn finetune(
    model: &BertModel,
    sentences: &[Vec<u32>],
    packed: &mut BTreeMap<String, PackedTensor>,
    opts: &FinetuneOptions,
    progress: &mut dyn FnMut(usize, f64) -> Control,
) -> Result<(BTreeMap<String, Vec<f32>>, FinetuneReport), RuntimeError> {
    if sentences.is_empty() {
        return Err(RuntimeError::Input("no calibration sentences".into()));
    }
    if opts.batch_size == 0 || !(opts.lr.is_finite() && opts.lr > 0.0) {
        return Err(RuntimeError::Input(format!(
            "finetune options: batch size {} and step size {} must be positive",
            opts.batch_size, opts.lr
        )));
    }
    let mut net = Net::new(model, packed)?;
    // Targets: the original model's last hidden states, per batch.
    let batches: Vec<&[Vec<u32>]> = sentences.chunks(opts.batch_size).collect();
    let mut targets = Vec::with_capacity(batches.len());
    for b in &batches {
        let (mut h, lens) = model.input_hidden(b)?;
        for l in 0..model.num_layers() {
            model.forward_layer(l, &mut h, &lens, &mut |_, _| Ok(None))?;
        }
        targets.push((h, lens));
    }
    let alpha = opts.embedding_weight as f64;
    let full_loss = |net: &Net| -> Result<f64, RuntimeError> {
        let (mut num, mut den, mut emb) = (0f64, 0f64, 0f64);
        for (b, (t, lens)) in batches.iter().zip(&targets) {
            let (h, _) = net.forward(model, b, None)?;
            let o = objective(&h, t, lens, None);
            num += o.hidden;
            den += o.hidden_norm;
            emb += o.embedding;
        }
        Ok(num / den.max(1e-30) + alpha * emb / sentences.len() as f64)
    };
    let initial_loss = full_loss(&net)?;
    let saved = net.snapshot();
    let mut step_losses = Vec::with_capacity(opts.steps);
    let mut adam = net.adam();
    for step in 0..opts.steps {
        let i = step % batches.len();
        let (t, lens) = &targets[i];
        let mut caches = Vec::new();
        let (h, _) = net.forward(model, batches[i], Some(&mut caches))?;
        let mut dh = vec![0f32; h.len()];
        let o = objective(&h, t, lens, Some((&mut dh, alpha)));
        let loss = o.hidden / o.hidden_norm.max(1e-30) + alpha * o.embedding / lens.len() as f64;
        let grads = net.backward(model, lens, &caches, dh, opts);
        net.adam_step(&mut adam, &grads, opts, step + 1);
        step_losses.push(loss);
        if progress(step + 1, loss) == Control::Cancel {
            break;
        }
    }
    net.round_codebooks();
    let final_loss = full_loss(&net)?;
    let kept = final_loss < initial_loss;
    if !kept {
        net.restore(&saved);
    }
    let mut dense = BTreeMap::new();
    for (l, t) in net
        .lins
        .iter()
        .filter_map(|l| l.tune.as_ref().map(|t| (l, t)))
    {
        packed.insert(l.name.clone(), t.packed.clone());
        let stem = l.name.strip_suffix(".weight").unwrap_or(&l.name);
        dense.insert(format!("{stem}.bias"), l.bias.clone());
    }
    if opts.tune_norms {
        for n in &net.norms {
            dense.insert(format!("{}.weight", n.name), n.gamma.clone());
            dense.insert(format!("{}.bias", n.name), n.beta.clone());
        }
    }
    Ok((
        dense,
        FinetuneReport {
            initial_loss,
            final_loss: if kept { final_loss } else { initial_loss },
            step_losses,
            kept,
        },
    ))
}

/// The objective's parts on one batch: `Σ ‖h̃ − h‖²`, `Σ ‖h‖²` and
/// `Σ_s ‖ẽ_s − e_s‖²`.
struct Objective {
    hidden: f64,
    hidden_norm: f64,
    embedding: f64,
}

/// [`Objective`] of last hidden states `h` against the original's `t`
/// (sentences of `lens` tokens end to end); with `grad = (dh, α)`, writes
/// the gradient of the batch's `L` (module docs) at `h` into `dh`.
fn objective(h: &[f32], t: &[f32], lens: &[usize], grad: Option<(&mut [f32], f64)>) -> Objective {
    let hidden: f64 = h.iter().zip(t).map(|(a, y)| ((a - y) as f64).powi(2)).sum();
    let hidden_norm: f64 = t.iter().map(|y| (*y as f64).powi(2)).sum();
    let width = h.len() / lens.iter().sum::<usize>().max(1);
    let pool = |x: &[f32], start: usize, len: usize| -> (Vec<f64>, f64) {
        let mut m = vec![0f64; width];
        for row in x[start * width..(start + len) * width].chunks_exact(width) {
            for (s, v) in m.iter_mut().zip(row) {
                *s += *v as f64 / len as f64;
            }
        }
        let norm = m.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        (m.iter().map(|v| v / norm).collect(), norm)
    };
    let mut embedding = 0f64;
    let mut start = 0;
    let mut grads = Vec::new();
    for &len in lens {
        let (e, norm) = pool(h, start, len);
        let (e0, _) = pool(t, start, len);
        let de: Vec<f64> = e.iter().zip(&e0).map(|(a, b)| 2.0 * (a - b)).collect();
        embedding += e.iter().zip(&e0).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
        grads.push((start, len, e, norm, de));
        start += len;
    }
    if let Some((dh, alpha)) = grad {
        let den = hidden_norm.max(1e-30);
        for ((d, a), y) in dh.iter_mut().zip(h).zip(t) {
            *d = (2.0 * (a - y) as f64 / den) as f32;
        }
        let n = lens.len() as f64;
        for (start, len, e, norm, de) in grads {
            let dot: f64 = e.iter().zip(&de).map(|(a, b)| a * b).sum();
            let dm: Vec<f64> = e
                .iter()
                .zip(&de)
                .map(|(e, d)| alpha / n * (d - e * dot) / norm / len as f64)
                .collect();
            for row in dh[start * width..(start + len) * width].chunks_exact_mut(width) {
                for (v, g) in row.iter_mut().zip(&dm) {
                    *v += *g as f32;
                }
            }
        }
    }
    Objective {
        hidden,
        hidden_norm,
        embedding,
    }
}

/// A Linear layer as the tuning runs it: `W` both ways round.
struct Lin {
    name: String,
    n_in: usize,
    n_out: usize,
    /// `n_out x n_in` (for `dx = dy W`).
    w: Vec<f32>,
    /// `n_in x n_out` (for `y = x Wᵀ`).
    wt: Vec<f32>,
    bias: Vec<f32>,
    tune: Option<Tunable>,
}

/// A compressed layer's trainable state.
struct Tunable {
    packed: PackedTensor,
    /// Unpacked indices, `n_out x n_sub`.
    idx: Vec<u8>,
    /// The codebooks in f32 (`n_codebooks x K x d`).
    books: Vec<f32>,
}

/// Gradients of one step, per layer (same order as `Net::lins`), and per
/// LayerNorm (`Net::norms`: gain, shift).
struct Grads {
    books: Vec<Vec<f32>>,
    biases: Vec<Vec<f32>>,
    norms: Vec<(Vec<f32>, Vec<f32>)>,
}

/// Adam moments per layer.
struct Adam {
    m: Grads,
    v: Grads,
}

/// Activations one layer keeps for its backward pass.
struct Cache {
    x0: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    probs: Vec<f32>,
    ctx: Vec<f32>,
    xhat1: Vec<f32>,
    inv1: Vec<f32>,
    a: Vec<f32>,
    u: Vec<f32>,
    g: Vec<f32>,
    xhat2: Vec<f32>,
    inv2: Vec<f32>,
}

struct Net {
    /// Six per encoder layer: query, key, value, attention output, intermediate, output.
    lins: Vec<Lin>,
    /// Two per encoder layer: after attention, after the MLP.
    norms: Vec<LayerNorm>,
    activation: Activation,
    heads: usize,
    hidden: usize,
    eps: f32,
}

impl Tunable {
    fn new(p: &PackedTensor) -> Self {
        let n_sub = p.n_sub();
        let mut idx = Vec::with_capacity(p.n_out * n_sub);
        for r in 0..p.n_out {
            let row = p.row_indices(r);
            idx.extend((0..n_sub).map(|s| read_index(row, s, p.bits)));
        }
        Self {
            packed: p.clone(),
            idx,
            books: p.codebooks.iter().map(|c| c.to_f32()).collect(),
        }
    }

    /// `Ŵ` (`n_out x n_in`) from the f32 codebooks (`Q R` when rotated).
    fn decode(&self, out: &mut [f32]) {
        let p = &self.packed;
        let rot = p.rotation.as_ref().map(|r| r.prepare(p.n_in));
        let (d, k, n_sub, n_in) = (p.dim as usize, p.k(), p.n_sub(), p.n_in);
        for (r, row) in out.chunks_exact_mut(n_in).enumerate() {
            let g = p.group_ids[r] as usize;
            let book = &self.books[p.codebook_of_group(g) * k * d..][..k * d];
            let s = p.scale(g);
            for (j, &c) in self.idx[r * n_sub..(r + 1) * n_sub].iter().enumerate() {
                for e in 0..d {
                    if let Some(o) = row.get_mut(j * d + e) {
                        *o = s * book[c as usize * d + e];
                    }
                }
            }
            if let Some(rot) = &rot {
                rot.apply_transpose(row);
            }
        }
    }

    /// Fold `dW` (`n_out x n_in`) into the codeword gradients (through
    /// `∂L/∂Q = ∂L/∂Ŵ Rᵀ` when rotated).
    fn fold(&self, dw: &[f32], grad: &mut [f32]) {
        let p = &self.packed;
        let (d, k, n_sub, n_in) = (p.dim as usize, p.k(), p.n_sub(), p.n_in);
        let rotated = p.rotation.as_ref().map(|r| r.prepare(n_in).apply_rows(dw));
        let dw = rotated.as_deref().unwrap_or(dw);
        for (r, row) in dw.chunks_exact(n_in).enumerate() {
            let g = p.group_ids[r] as usize;
            let base = p.codebook_of_group(g) * k * d;
            let s = p.scale(g);
            for (j, &c) in self.idx[r * n_sub..(r + 1) * n_sub].iter().enumerate() {
                for e in 0..d {
                    if let Some(v) = row.get(j * d + e) {
                        grad[base + c as usize * d + e] += s * v;
                    }
                }
            }
        }
    }
}

impl Lin {
    fn new(lin: &Linear, packed: Option<&PackedTensor>) -> Result<Self, RuntimeError> {
        let bad = |problem: String| RuntimeError::Weight {
            name: lin.name.clone(),
            problem,
        };
        let (n_in, n_out) = (lin.n_in, lin.n_out);
        let (w, tune) = match packed {
            Some(p) => {
                p.validate().map_err(|e| bad(e.to_string()))?;
                if p.n_out != n_out || p.n_in != n_in {
                    return Err(bad(format!(
                        "compressed as {} x {}, the model has {n_out} x {n_in}",
                        p.n_out, p.n_in
                    )));
                }
                let t = Tunable::new(p);
                let mut w = vec![0f32; n_out * n_in];
                t.decode(&mut w);
                (w, Some(t))
            }
            None => match &lin.weight {
                LinearWeight::Dense { wt } => (transpose(wt, n_in, n_out), None),
                LinearWeight::Packed { matrix, .. } => (matrix.tensor.decode_f32(), None),
            },
        };
        Ok(Self {
            name: lin.name.clone(),
            n_in,
            n_out,
            wt: transpose(&w, n_out, n_in),
            w,
            bias: lin.bias.clone(),
            tune,
        })
    }

    fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut y = vec![0f32; rows * self.n_out];
        matmul_transposed(
            x,
            rows,
            self.n_in,
            &self.wt,
            self.n_out,
            Some(&self.bias),
            &mut y,
        );
        y
    }

    /// `dx += dy W`; the codeword and bias gradients of a tunable layer.
    fn backward(
        &self,
        x: &[f32],
        dy: &[f32],
        rows: usize,
        dx: &mut [f32],
        gbook: &mut [f32],
        gbias: &mut [f32],
    ) {
        let mut part = vec![0f32; rows * self.n_in];
        matmul_transposed(dy, rows, self.n_out, &self.w, self.n_in, None, &mut part);
        ops::add_in_place(dx, &part);
        if let Some(t) = &self.tune {
            let dyt = transpose(dy, rows, self.n_out);
            let mut dw = vec![0f32; self.n_out * self.n_in];
            matmul_transposed(&dyt, self.n_out, rows, x, self.n_in, None, &mut dw);
            t.fold(&dw, gbook);
            for row in dy.chunks_exact(self.n_out) {
                ops::add_in_place(gbias, row);
            }
        }
    }

    fn refresh(&mut self) {
        if let Some(t) = &self.tune {
            t.decode(&mut self.w);
            self.wt = transpose(&self.w, self.n_out, self.n_in);
        }
    }
}

/// LayerNorm in place, keeping `x̂` and `1/σ` per row.
fn norm_forward(x: &mut [f32], n: &LayerNorm, eps: f32, xhat: &mut Vec<f32>, inv: &mut Vec<f32>) {
    let w = n.gamma.len();
    xhat.clear();
    inv.clear();
    for row in x.chunks_exact_mut(w) {
        let mean = row.iter().sum::<f32>() / w as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / w as f32;
        let s = 1.0 / (var + eps).sqrt();
        inv.push(s);
        for ((v, g), b) in row.iter_mut().zip(&n.gamma).zip(&n.beta) {
            let h = (*v - mean) * s;
            xhat.push(h);
            *v = h * g + b;
        }
    }
}

/// `dx` of LayerNorm from `dy`, in place; adds the gain's and shift's gradients to `dn`.
fn norm_backward(
    dy: &mut [f32],
    n: &LayerNorm,
    xhat: &[f32],
    inv: &[f32],
    dn: &mut (Vec<f32>, Vec<f32>),
) {
    let w = n.gamma.len();
    for ((row, xh), s) in dy.chunks_exact_mut(w).zip(xhat.chunks_exact(w)).zip(inv) {
        let mut m1 = 0f32;
        let mut m2 = 0f32;
        for ((((d, g), h), dg), db) in row
            .iter_mut()
            .zip(&n.gamma)
            .zip(xh)
            .zip(dn.0.iter_mut())
            .zip(dn.1.iter_mut())
        {
            *dg += *d * h;
            *db += *d;
            *d *= g;
            m1 += *d;
            m2 += *d * h;
        }
        let (m1, m2) = (m1 / w as f32, m2 / w as f32);
        for (d, h) in row.iter_mut().zip(xh) {
            *d = s * (*d - m1 - h * m2);
        }
    }
}

/// The activation's derivative at `u`.
fn activation_grad(a: Activation, u: f32) -> f32 {
    match a {
        Activation::GeluErf => {
            let cdf = 0.5 * (1.0 + libm::erff(u * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = (-0.5 * u * u).exp() / (2.0 * std::f32::consts::PI).sqrt();
            cdf + u * pdf
        }
        Activation::GeluTanh => {
            const C: f32 = 0.797_884_6;
            let inner = C * (u + 0.044_715 * u * u * u);
            let t = libm::tanhf(inner);
            0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * C * (1.0 + 3.0 * 0.044_715 * u * u)
        }
        Activation::Relu => {
            if u > 0.0 {
                1.0
            } else {
                0.0
            }
        }
    }
}

impl Net {
    fn new(
        model: &BertModel,
        packed: &BTreeMap<String, PackedTensor>,
    ) -> Result<Self, RuntimeError> {
        let mut lins = Vec::new();
        let mut norms = Vec::new();
        for layer in model.layers() {
            for lin in layer.linears() {
                lins.push(Lin::new(lin, packed.get(&lin.name))?);
            }
            norms.push(layer.attention_norm.clone());
            norms.push(layer.output_norm.clone());
        }
        let known: Vec<&str> = lins.iter().map(|l| l.name.as_str()).collect();
        if let Some(name) = packed.keys().find(|n| !known.contains(&n.as_str())) {
            return Err(RuntimeError::Input(format!(
                "`{name}` is not a Linear weight of the encoder"
            )));
        }
        let c = model.config();
        Ok(Self {
            lins,
            norms,
            activation: model.activation(),
            heads: c.num_attention_heads,
            hidden: c.hidden_size,
            eps: c.layer_norm_eps as f32,
        })
    }

    /// The last hidden states (`T x hidden`) and sentence lengths; with
    /// `caches`, what the backward pass needs.
    fn forward(
        &self,
        model: &BertModel,
        sentences: &[Vec<u32>],
        mut caches: Option<&mut Vec<Cache>>,
    ) -> Result<(Vec<f32>, Vec<usize>), RuntimeError> {
        let (mut x, lens) = model.input_hidden(sentences)?;
        let t: usize = lens.iter().sum();
        let (h, heads) = (self.hidden, self.heads);
        let dh = h / heads;
        let scale = 1.0 / (dh as f32).sqrt();
        for l in 0..model.num_layers() {
            let lin = &self.lins[l * 6..l * 6 + 6];
            let q = lin[0].forward(&x, t);
            let k = lin[1].forward(&x, t);
            let v = lin[2].forward(&x, t);
            let mut probs = Vec::new();
            let mut ctx = vec![0f32; t * h];
            let mut start = 0;
            for &len in &lens {
                for head in 0..heads {
                    let off = head * dh;
                    for i in 0..len {
                        let qi = &q[(start + i) * h + off..][..dh];
                        let mut sc: Vec<f32> = (0..len)
                            .map(|j| {
                                let kj = &k[(start + j) * h + off..][..dh];
                                qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale
                            })
                            .collect();
                        ops::softmax(&mut sc);
                        let ci = &mut ctx[(start + i) * h + off..][..dh];
                        for (j, &p) in sc.iter().enumerate() {
                            let vj = &v[(start + j) * h + off..][..dh];
                            for (c, &y) in ci.iter_mut().zip(vj) {
                                *c += p * y;
                            }
                        }
                        probs.extend_from_slice(&sc);
                    }
                }
                start += len;
            }
            let mut a = lin[3].forward(&ctx, t);
            ops::add_in_place(&mut a, &x);
            let (mut xhat1, mut inv1) = (Vec::new(), Vec::new());
            norm_forward(&mut a, &self.norms[2 * l], self.eps, &mut xhat1, &mut inv1);
            let u = lin[4].forward(&a, t);
            let mut g = u.clone();
            self.activation.apply(&mut g);
            let mut out = lin[5].forward(&g, t);
            ops::add_in_place(&mut out, &a);
            let (mut xhat2, mut inv2) = (Vec::new(), Vec::new());
            norm_forward(
                &mut out,
                &self.norms[2 * l + 1],
                self.eps,
                &mut xhat2,
                &mut inv2,
            );
            let x0 = std::mem::replace(&mut x, out);
            if let Some(c) = caches.as_deref_mut() {
                c.push(Cache {
                    x0,
                    q,
                    k,
                    v,
                    probs,
                    ctx,
                    xhat1,
                    inv1,
                    a,
                    u,
                    g,
                    xhat2,
                    inv2,
                });
            }
        }
        Ok((x, lens))
    }

    fn zero_grads(&self) -> Grads {
        Grads {
            books: self
                .lins
                .iter()
                .map(|l| vec![0f32; l.tune.as_ref().map_or(0, |t| t.books.len())])
                .collect(),
            biases: self
                .lins
                .iter()
                .map(|l| vec![0f32; if l.tune.is_some() { l.n_out } else { 0 }])
                .collect(),
            norms: self
                .norms
                .iter()
                .map(|n| (vec![0f32; n.gamma.len()], vec![0f32; n.beta.len()]))
                .collect(),
        }
    }

    /// Gradients of the loss whose gradient at the last hidden states is `dout`.
    fn backward(
        &self,
        model: &BertModel,
        lens: &[usize],
        caches: &[Cache],
        mut dout: Vec<f32>,
        opts: &FinetuneOptions,
    ) -> Grads {
        let mut gr = self.zero_grads();
        let t: usize = lens.iter().sum();
        let (h, heads) = (self.hidden, self.heads);
        let dh = h / heads;
        let scale = 1.0 / (dh as f32).sqrt();
        for l in (0..model.num_layers()).rev() {
            let c = &caches[l];
            let base = l * 6;
            let lin = &self.lins[base..base + 6];
            let (gb, gc) = (
                &mut gr.books[base..base + 6],
                &mut gr.biases[base..base + 6],
            );
            // Output LayerNorm, residual from `a`, output dense, activation.
            let (dn1, dn2) = gr.norms[2 * l..2 * l + 2].split_at_mut(1);
            norm_backward(
                &mut dout,
                &self.norms[2 * l + 1],
                &c.xhat2,
                &c.inv2,
                &mut dn2[0],
            );
            let mut da = dout.clone();
            let mut dg = vec![0f32; t * lin[5].n_in];
            lin[5].backward(&c.g, &dout, t, &mut dg, &mut gb[5], &mut gc[5]);
            for (d, u) in dg.iter_mut().zip(&c.u) {
                *d *= activation_grad(self.activation, *u);
            }
            lin[4].backward(&c.a, &dg, t, &mut da, &mut gb[4], &mut gc[4]);
            // Attention LayerNorm, residual from `x0`, attention output.
            norm_backward(&mut da, &self.norms[2 * l], &c.xhat1, &c.inv1, &mut dn1[0]);
            let mut dx0 = da.clone();
            let mut dctx = vec![0f32; t * h];
            lin[3].backward(&c.ctx, &da, t, &mut dctx, &mut gb[3], &mut gc[3]);
            // Softmax attention.
            let (mut dq, mut dk, mut dv) =
                (vec![0f32; t * h], vec![0f32; t * h], vec![0f32; t * h]);
            let mut start = 0;
            let mut p_at = 0;
            for &len in lens {
                for head in 0..heads {
                    let off = head * dh;
                    for i in 0..len {
                        let p = &c.probs[p_at..p_at + len];
                        p_at += len;
                        let dci = &dctx[(start + i) * h + off..][..dh];
                        let dp: Vec<f32> = (0..len)
                            .map(|j| {
                                let vj = &c.v[(start + j) * h + off..][..dh];
                                dci.iter().zip(vj).map(|(a, b)| a * b).sum()
                            })
                            .collect();
                        let dot: f32 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
                        for j in 0..len {
                            let ds = p[j] * (dp[j] - dot) * scale;
                            let (qi, kj) = ((start + i) * h + off, (start + j) * h + off);
                            for e in 0..dh {
                                dv[kj + e] += p[j] * dci[e];
                                dq[qi + e] += ds * c.k[kj + e];
                                dk[kj + e] += ds * c.q[qi + e];
                            }
                        }
                    }
                }
                start += len;
            }
            lin[0].backward(&c.x0, &dq, t, &mut dx0, &mut gb[0], &mut gc[0]);
            lin[1].backward(&c.x0, &dk, t, &mut dx0, &mut gb[1], &mut gc[1]);
            lin[2].backward(&c.x0, &dv, t, &mut dx0, &mut gb[2], &mut gc[2]);
            dout = dx0;
        }
        if !opts.tune_biases {
            gr.biases.iter_mut().for_each(|b| b.fill(0.0));
        }
        gr
    }

    fn adam(&self) -> Adam {
        Adam {
            m: self.zero_grads(),
            v: self.zero_grads(),
        }
    }

    fn adam_step(&mut self, st: &mut Adam, g: &Grads, opts: &FinetuneOptions, step: usize) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        let (c1, c2) = (1.0 - B1.powi(step as i32), 1.0 - B2.powi(step as i32));
        let update = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], lr: f32| {
            for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = B1 * *m + (1.0 - B1) * g;
                *v = B2 * *v + (1.0 - B2) * g * g;
                *p -= lr * (*m / c1) / ((*v / c2).sqrt() + 1e-12);
            }
        };
        for (i, lin) in self.lins.iter_mut().enumerate() {
            let Some(t) = lin.tune.as_mut() else {
                continue;
            };
            let rms =
                |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt();
            let lr = opts.lr * rms(&t.books).max(1e-6);
            update(
                &mut t.books,
                &g.books[i],
                &mut st.m.books[i],
                &mut st.v.books[i],
                lr,
            );
            if opts.tune_biases {
                let lr = opts.lr * rms(&lin.bias).max(rms(&t.books)).max(1e-6);
                update(
                    &mut lin.bias,
                    &g.biases[i],
                    &mut st.m.biases[i],
                    &mut st.v.biases[i],
                    lr,
                );
            }
            lin.refresh();
        }
        if opts.tune_norms {
            for (i, n) in self.norms.iter_mut().enumerate() {
                let (gg, gb) = &g.norms[i];
                let (mg, mb) = &mut st.m.norms[i];
                let (vg, vb) = &mut st.v.norms[i];
                update(&mut n.gamma, gg, mg, vg, opts.lr);
                update(&mut n.beta, gb, mb, vb, opts.lr);
            }
        }
    }

    /// Store the f32 codebooks as the packed f16 and use the rounded values.
    fn round_codebooks(&mut self) {
        for lin in &mut self.lins {
            if let Some(t) = lin.tune.as_mut() {
                t.packed.codebooks = t.books.iter().map(|&v| f16::from_f32(v)).collect();
                t.books = t.packed.codebooks.iter().map(|c| c.to_f32()).collect();
            }
            lin.refresh();
        }
    }

    fn snapshot(&self) -> Vec<(Vec<f32>, Vec<f32>)> {
        self.lins
            .iter()
            .map(|l| {
                (
                    l.tune.as_ref().map_or(Vec::new(), |t| t.books.clone()),
                    l.bias.clone(),
                )
            })
            .collect()
    }

    fn restore(&mut self, s: &[(Vec<f32>, Vec<f32>)]) {
        for (lin, (books, bias)) in self.lins.iter_mut().zip(s) {
            if let Some(t) = lin.tune.as_mut() {
                t.books = books.clone();
                t.packed.codebooks = books.iter().map(|&v| f16::from_f32(v)).collect();
            }
            lin.bias = bias.clone();
            lin.refresh();
        }
    }
}

/// Not a public API: the backward pass against finite differences (tests).
#[doc(hidden)]
pub fn gradient_check(
    model: &BertModel,
    sentences: &[Vec<u32>],
    packed: &BTreeMap<String, PackedTensor>,
    probes: &[(String, usize)],
) -> Result<Vec<(f64, f64)>, RuntimeError> {
    let mut net = Net::new(model, packed)?;
    let (mut target, lens) = model.input_hidden(sentences)?;
    for l in 0..model.num_layers() {
        model.forward_layer(l, &mut target, &lens, &mut |_, _| Ok(None))?;
    }
    let loss = |net: &Net| -> Result<f64, RuntimeError> {
        let (h, _) = net.forward(model, sentences, None)?;
        Ok(h.iter()
            .zip(&target)
            .map(|(a, y)| ((a - y) as f64).powi(2))
            .sum())
    };
    let mut caches = Vec::new();
    let (h, _) = net.forward(model, sentences, Some(&mut caches))?;
    let dh: Vec<f32> = h.iter().zip(&target).map(|(a, y)| 2.0 * (a - y)).collect();
    let g = net.backward(model, &lens, &caches, dh, &FinetuneOptions::default());
    let mut out = Vec::new();
    for (name, at) in probes {
        let eps = 1e-3f32;
        // A LayerNorm gain or shift (`….LayerNorm.weight` / `.bias`), or a codeword.
        let norm = net.norms.iter().position(|n| {
            name.strip_prefix(n.name.as_str())
                .is_some_and(|r| r == ".weight" || r == ".bias")
        });
        if let Some(k) = norm {
            let gain = name.ends_with(".weight");
            fn slot(net: &mut Net, k: usize, gain: bool, at: usize) -> &mut f32 {
                let n = &mut net.norms[k];
                if gain {
                    &mut n.gamma[at]
                } else {
                    &mut n.beta[at]
                }
            }
            let orig = *slot(&mut net, k, gain, *at);
            let at_value = |net: &mut Net, v: f32| -> Result<f64, RuntimeError> {
                *slot(net, k, gain, *at) = v;
                loss(net)
            };
            let plus = at_value(&mut net, orig + eps)?;
            let minus = at_value(&mut net, orig - eps)?;
            at_value(&mut net, orig)?;
            let (gg, gb) = &g.norms[k];
            let analytic = if gain { gg[*at] } else { gb[*at] };
            out.push((analytic as f64, (plus - minus) / (2.0 * eps as f64)));
            continue;
        }
        let i = net
            .lins
            .iter()
            .position(|l| &l.name == name && l.tune.is_some())
            .ok_or_else(|| RuntimeError::Input(format!("`{name}` is not tuned")))?;
        let orig = net.lins[i].tune.as_ref().map_or(0.0, |t| t.books[*at]);
        let at_value = |net: &mut Net, v: f32| -> Result<f64, RuntimeError> {
            if let Some(t) = net.lins[i].tune.as_mut() {
                t.books[*at] = v;
            }
            net.lins[i].refresh();
            loss(net)
        };
        let plus = at_value(&mut net, orig + eps)?;
        let minus = at_value(&mut net, orig - eps)?;
        at_value(&mut net, orig)?;
        out.push((g.books[i][*at] as f64, (plus - minus) / (2.0 * eps as f64)));
    }
    Ok(out)
}
