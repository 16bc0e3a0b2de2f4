//! Calibration: the second moment `H = XᵀX / n` of every Linear layer's
//! input, gathered by running the model (the runtime's
//! [`LinearInputObserver`] hook) over calibration sentences.
//!
//! The result is what `--calib` reads: one F32 `[n_in, n_in]` tensor per
//! weight name (query, key and value share their input, and each still gets
//! its own tensor), averaged over every real token position (no padding:
//! the runtime never computes padding positions).

use std::collections::BTreeMap;

use super::compress::{Calibration, Control};
use crate::format::safetensors::{self as st, OwnedTensor};
use crate::runtime::bert::{BertModel, LinearInputObserver};
use crate::runtime::dense::{matmul_transposed, transpose};
use crate::runtime::RuntimeError;

/// Rows folded into the f64 sums at a time (bounds the f32 rounding of each partial XᵀX).
const ROWS_PER_CHUNK: usize = 256;

/// Running sums `Σ xxᵀ` per distinct layer input.
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
            rows: 0,
        });
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
    Ok(st::write(&tensors, &meta)?)
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
