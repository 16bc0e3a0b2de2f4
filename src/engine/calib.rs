//! Calibration: the second moment `H = XᵀX / n` of every Linear layer's
//! input, gathered by running the model (the runtime's
//! [`LinearInputObserver`] hook) over calibration sentences.
//!
//! The result is what `--calib` reads: one F32 `[n_in, n_in]` tensor per
//! weight name (query, key and value share their input, and each still gets
//! its own tensor), averaged over every real token position (no padding:
//! the runtime never computes padding positions).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::compress::{compress_matrix, Calibration, CompressOptions, Control};
use super::hessian::Hessian;
use crate::format::safetensors::{self as st, Dtype, OwnedTensor};
use crate::runtime::bert::LinearInputObserver;
use crate::runtime::dense::{matmul_transposed, transpose};
use crate::runtime::{BertModel, LinearWeight, RuntimeError};

/// Rows folded into the f64 sums at a time (bounds the f32 rounding of each partial XᵀX).
const ROWS_PER_CHUNK: usize = 256;

/// Running sums `Σ xxᵀ` and `Σ x` per distinct layer input.
#[derive(Debug, Default)]
pub struct CalibrationAccumulator {
    /// Per input (keyed by its first weight name): width, sum of outer products, rows seen.
    sums: BTreeMap<String, InputMoments>,
    /// Weight name to the input it reads.
    input_of: BTreeMap<String, String>,
}

#[derive(Debug)]
struct InputMoments {
    n_in: usize,
    sum: Vec<f64>,
    sum_x: Vec<f64>,
    rows: u64,
}

impl CalibrationAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fold `rows` input rows (`rows x n_in`) into the sums of the layers `weight_names`.
    pub fn add(&mut self, weight_names: &[&str], x: &[f32], rows: usize) {
        if rows == 0 || weight_names.is_empty() {
            return;
        }
        let n_in = x.len() / rows;
        let key = weight_names[0].to_string();
        for name in weight_names {
            self.input_of.insert(name.to_string(), key.clone());
        }
        let m = self.sums.entry(key).or_insert_with(|| InputMoments {
            n_in,
            sum: vec![0.0; n_in * n_in],
            sum_x: vec![0.0; n_in],
            rows: 0,
        });
        for row in x.chunks_exact(n_in) {
            for (s, v) in m.sum_x.iter_mut().zip(row) {
                *s += *v as f64;
            }
        }
        let mut gram = vec![0f32; n_in * n_in];
        for chunk in x.chunks(ROWS_PER_CHUNK * n_in) {
            let r = chunk.len() / n_in;
            // XᵀX as (Xᵀ: n_in x r) times (X: r x n_in), with X in the kernel's transposed-weight slot.
            let xt = transpose(chunk, r, n_in);
            matmul_transposed(&xt, n_in, r, chunk, n_in, None, &mut gram);
            for (s, g) in m.sum.iter_mut().zip(&gram) {
                *s += *g as f64;
            }
        }
        m.rows += rows as u64;
    }

    /// Token positions seen by the layer `weight_name`.
    pub fn rows(&self, weight_name: &str) -> u64 {
        self.input_of
            .get(weight_name)
            .and_then(|k| self.sums.get(k))
            .map_or(0, |m| m.rows)
    }

    /// `H = XᵀX / n` per weight name, exactly symmetric, as f32 `[n_in, n_in]`.
    pub fn finish(&self) -> Calibration {
        let mut out = BTreeMap::new();
        for (name, key) in &self.input_of {
            let m = &self.sums[key];
            let n = m.n_in;
            let inv = 1.0 / m.rows.max(1) as f64;
            let mut h = vec![0f32; n * n];
            for i in 0..n {
                for j in 0..n {
                    h[i * n + j] = (0.5 * (m.sum[i * n + j] + m.sum[j * n + i]) * inv) as f32;
                }
            }
            out.insert(name.clone(), (vec![n, n], h));
        }
        out
    }
}

impl CalibrationAccumulator {
    /// `E[x] = Σx / n` per weight name, f32 `[n_in]`: what bias correction
    /// ([`super::compress::correct_bias`]) needs beside `H`.
    pub fn means(&self) -> InputMeans {
        self.input_of
            .iter()
            .map(|(name, key)| {
                let m = &self.sums[key];
                let inv = 1.0 / m.rows.max(1) as f64;
                (
                    name.clone(),
                    m.sum_x.iter().map(|s| (s * inv) as f32).collect(),
                )
            })
            .collect()
    }
}

/// Mean input `E[x]` per weight name.
pub type InputMeans = BTreeMap<String, Vec<f32>>;

impl LinearInputObserver for CalibrationAccumulator {
    fn observe(&mut self, weight_names: &[&str], x: &[f32], rows: usize) {
        self.add(weight_names, x, rows);
    }
}

/// Run `encoder` over `texts` (in batches of `batch_size`) and return `H` per
/// Linear weight name. `progress(done)` is called after each batch.
#[cfg(feature = "tokenizer")]
pub fn calibrate<S: AsRef<str>>(
    encoder: &crate::runtime::SentenceEncoder,
    texts: &[S],
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Calibration, RuntimeError> {
    if texts.is_empty() {
        return Err(RuntimeError::Input("no calibration sentences".into()));
    }
    let ids = encoder.tokenizer.encode_all(texts)?;
    let out = calibrate_tokens(&encoder.model, &ids, batch_size, &mut |done| {
        progress(done);
        Control::Continue
    })?;
    Ok(out.expect("never cancelled"))
}

/// [`calibrate`] on token ids (each sentence with its special tokens, as the
/// tokenizer gives them): the same batches, so the same matrices. This is
/// the entry without a tokenizer (the npm package's core module).
/// `progress(done)` is called after each batch; [`Control::Cancel`] stops
/// and returns `Ok(None)`.
pub fn calibrate_tokens(
    model: &BertModel,
    sentences: &[Vec<u32>],
    batch_size: usize,
    progress: &mut dyn FnMut(usize) -> Control,
) -> Result<Option<Calibration>, RuntimeError> {
    if sentences.is_empty() {
        return Err(RuntimeError::Input("no calibration sentences".into()));
    }
    let mut acc = CalibrationAccumulator::new();
    let mut done = 0;
    for chunk in sentences.chunks(batch_size.max(1)) {
        model.embed_observed(chunk, Some(&mut acc))?;
        done += chunk.len();
        if progress(done) == Control::Cancel {
            return Ok(None);
        }
    }
    Ok(Some(acc.finish()))
}

/// Serialise calibration matrices as safetensors (one F32 tensor per name,
/// in name order), the format `--calib` and `read_calibration` read.
pub fn calibration_to_safetensors(calib: &Calibration) -> Result<Vec<u8>, RuntimeError> {
    calibration_with_sensitivity_to_safetensors(calib, None)
}

/// [`calibration_to_safetensors`], with end-to-end sensitivities (if any)
/// in the header's `__metadata__` under [`SENSITIVITY_KEY`].
pub fn calibration_with_sensitivity_to_safetensors(
    calib: &Calibration,
    sensitivity: Option<&Sensitivities>,
) -> Result<Vec<u8>, RuntimeError> {
    let tensors: Vec<(String, OwnedTensor)> = calib
        .iter()
        .map(|(name, (shape, h))| {
            (
                name.clone(),
                OwnedTensor {
                    dtype: st::Dtype::F32,
                    shape: shape.clone(),
                    data: st::from_f32(st::Dtype::F32, h),
                },
            )
        })
        .collect();
    let mut meta = BTreeMap::new();
    meta.insert(
        "jlcm.calibration".to_string(),
        "XtX/n over non-padding tokens".to_string(),
    );
    if let Some(sens) = sensitivity {
        meta.insert(
            SENSITIVITY_KEY.to_string(),
            serde_json::to_string(sens).map_err(|e| RuntimeError::Input(e.to_string()))?,
        );
    }
    Ok(st::write(&tensors, &meta)?)
}

/// Metadata key of a calibration file under which [`Sensitivities`] are stored (JSON).
pub const SENSITIVITY_KEY: &str = "jlcm.sensitivity";

/// How much the model's output moves when one Linear weight is quantised,
/// per unit of that weight's calibrated loss `L`.
///
/// `L` (ALGORITHM.md) is the squared error of one layer's outputs; what a
/// user sees is the sentence embedding. The two are related by a factor
/// that differs a lot between layers (a value projection or a late FFN
/// moves the embedding far more per unit of `L` than a query projection).
/// The factor is measured, not modelled: quantise that one weight (the
/// engine, the given options), run the model on the calibration sentences
/// and compare with the original embeddings. Quantisation errors of
/// different layers are close to independent, so the squared embedding
/// errors, `2 (1 - cos)`, add up: `Σ_t factor_t · L_t` predicts the whole
/// model's `1 - cos`, which is what the size budget minimises.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sensitivity {
    /// Calibrated loss `L` of the probe quantisation.
    pub loss: f64,
    /// Mean over the sentences of `1 - cos(embedding, original embedding)`
    /// with only this weight quantised.
    pub distortion: f64,
}

impl Sensitivity {
    /// `distortion / loss`: embedding distortion per unit of calibrated loss.
    pub fn per_loss(&self) -> f64 {
        if self.loss > 0.0 && self.distortion.is_finite() {
            self.distortion.max(0.0) / self.loss
        } else {
            0.0
        }
    }
}

/// Sensitivity per weight name.
pub type Sensitivities = BTreeMap<String, Sensitivity>;

/// Read the sensitivities stored in a calibration file's metadata, if any.
pub fn sensitivities_from_metadata(
    metadata: &BTreeMap<String, String>,
) -> Result<Option<Sensitivities>, RuntimeError> {
    match metadata.get(SENSITIVITY_KEY) {
        None => Ok(None),
        Some(text) => serde_json::from_str(text).map(Some).map_err(|e| {
            RuntimeError::Input(format!("calibration metadata `{SENSITIVITY_KEY}`: {e}"))
        }),
    }
}

/// Calibration sentences, tokenised once, and the original model's
/// embeddings of them: what [`SensitivityProbe::measure`] compares against.
#[derive(Debug, Clone)]
pub struct SensitivityProbe {
    ids: Vec<Vec<u32>>,
    reference: Vec<f32>,
    hidden: usize,
    batch_size: usize,
}

impl SensitivityProbe {
    /// Tokenise `texts` and embed them with the (unquantised) `encoder`.
    #[cfg(feature = "tokenizer")]
    pub fn new<S: AsRef<str>>(
        encoder: &crate::runtime::SentenceEncoder,
        texts: &[S],
        batch_size: usize,
    ) -> Result<Self, RuntimeError> {
        if texts.is_empty() {
            return Err(RuntimeError::Input("no calibration sentences".into()));
        }
        let ids = encoder.tokenizer.encode_all(texts)?;
        let batch_size = batch_size.max(1);
        let reference = embed_ids(&encoder.model, &ids, batch_size)?;
        Ok(Self {
            ids,
            reference,
            hidden: encoder.hidden_size(),
            batch_size,
        })
    }

    /// Quantise the dense Linear weight `name` of `model` with `opts` under
    /// `h`, embed the sentences with only that weight replaced, and put the
    /// original weight back. `model` must be the model the probe was made with.
    pub fn measure(
        &self,
        model: &mut BertModel,
        name: &str,
        h: &Hessian,
        opts: &CompressOptions,
    ) -> Result<Sensitivity, RuntimeError> {
        let bad = |problem: String| RuntimeError::Weight {
            name: name.to_string(),
            problem,
        };
        let lin = model
            .linears_mut()
            .find(|l| l.name == name)
            .ok_or_else(|| bad("no Linear layer has this weight".into()))?;
        let (n_out, n_in) = (lin.n_out, lin.n_in);
        let w = match &lin.weight {
            LinearWeight::Dense { wt } => transpose(wt, n_in, n_out),
            LinearWeight::Packed { .. } => {
                return Err(bad("is packed; sensitivity needs the dense original".into()))
            }
        };
        let (packed, report) = compress_matrix(
            name,
            Dtype::F32,
            &[n_out, n_in],
            &w,
            n_out,
            n_in,
            h,
            opts,
            &mut |_| Control::Continue,
        )
        .map_err(|e| bad(e.to_string()))?;
        let loss = report.losses.last().map_or(0.0, |p| p.loss);
        let quantised = LinearWeight::Dense {
            wt: transpose(&packed.decode_f32(), n_out, n_in),
        };
        let original = std::mem::replace(&mut lin.weight, quantised);
        let emb = embed_ids(model, &self.ids, self.batch_size);
        if let Some(lin) = model.linears_mut().find(|l| l.name == name) {
            lin.weight = original;
        }
        let emb = emb?;
        let n = self.ids.len();
        let distortion = emb
            .chunks_exact(self.hidden)
            .zip(self.reference.chunks_exact(self.hidden))
            .map(|(a, b)| {
                1.0 - a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (*x as f64) * (*y as f64))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / n as f64;
        Ok(Sensitivity { loss, distortion })
    }
}

/// Embeddings of tokenised sentences, `batch_size` at a time.
fn embed_ids(
    model: &BertModel,
    ids: &[Vec<u32>],
    batch_size: usize,
) -> Result<Vec<f32>, RuntimeError> {
    let mut out = Vec::with_capacity(ids.len() * model.hidden_size());
    for chunk in ids.chunks(batch_size.max(1)) {
        out.extend(model.embed(chunk)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulates_second_moment_over_batches() {
        let x1 = [1.0f32, 2.0, 3.0, 4.0]; // 2 rows x 2
        let x2 = [0.5f32, -1.0];
        let mut acc = CalibrationAccumulator::new();
        acc.add(&["q", "k"], &x1, 2);
        acc.add(&["q", "k"], &x2, 1);
        let h = acc.finish();
        let want = [
            (1.0 + 9.0 + 0.25) / 3.0,
            (2.0 + 12.0 - 0.5) / 3.0,
            (2.0 + 12.0 - 0.5) / 3.0,
            (4.0 + 16.0 + 1.0) / 3.0,
        ];
        for name in ["q", "k"] {
            let (shape, v) = &h[name];
            assert_eq!(shape, &vec![2, 2]);
            for (a, b) in v.iter().zip(want) {
                assert!((a - b as f32).abs() < 1e-6);
            }
        }
        assert_eq!(acc.rows("k"), 3);
    }
}
