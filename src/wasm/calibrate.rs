//! Calibration in the page: `H = XᵀX / n` of every Linear layer's input,
//! from running the model on tokenised sentences; the same code and batches
//! as the native `jlcm calibrate`, so the same values up to f32 summation
//! order (SIMD128 vs AVX2).

use serde::Deserialize;
use wasm_bindgen::prelude::*;

use super::convert::from_js;
use super::error::{BindingError, ErrorCode, JsResult};
use super::get;
use super::runtime::{token_batch, SentenceModel};
use crate::engine::calib::{calibrate_tokens, calibration_to_safetensors};
use crate::engine::Control;
use crate::runtime::BertModel;

/// Sentences per forward pass of `jlcm calibrate` (its `--batch-size`
/// default): the same batches give the same matrices.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Options of `computeCalibration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CalibrationOptions {
    /// Sentences per forward pass [32].
    pub batch_size: usize,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        Self {
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

/// Compute the calibration matrices of a BERT-family model (`config.json`
/// text, dense or packed weights) from tokenised sentences (`TokenBatch`,
/// e.g. `Tokenizer.encode(sentences)` of `jlcm/text`).
///
/// Returns a safetensors file: one F32 `[n_in, n_in]` tensor per Linear
/// weight name, what `compressTensor`'s `calibration` (per tensor) and the
/// native `--calib` read. `context.onProgress({done, total})` is called after
/// each batch (return `false` to cancel); `context.signal` is checked there.
#[wasm_bindgen(js_name = computeCalibration)]
pub fn compute_calibration(
    #[wasm_bindgen(js_name = configJson)] config_json: &str,
    weights: &[u8],
    #[wasm_bindgen(unchecked_param_type = "TokenBatch")] tokens: JsValue,
    #[wasm_bindgen(unchecked_optional_param_type = "CalibrationOptions")] options: JsValue,
    #[wasm_bindgen(unchecked_optional_param_type = "CalibrationContext")] context: JsValue,
) -> Result<Vec<u8>, JsValue> {
    let mut thrown: Option<JsValue> = None;
    let out = BertModel::from_safetensors(config_json, weights)
        .map_err(BindingError::from)
        .and_then(|model| calibration_impl(&model, &tokens, options, &context, &mut thrown));
    super::settle(out, thrown)
}

#[wasm_bindgen]
impl SentenceModel {
    /// `computeCalibration` on this model (no second copy of the weights).
    #[wasm_bindgen(js_name = computeCalibration)]
    pub fn compute_calibration(
        &self,
        #[wasm_bindgen(unchecked_param_type = "TokenBatch")] tokens: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "CalibrationOptions")] options: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "CalibrationContext")] context: JsValue,
    ) -> Result<Vec<u8>, JsValue> {
        let mut thrown: Option<JsValue> = None;
        let out = calibration_impl(&self.model, &tokens, options, &context, &mut thrown);
        match (out, thrown) {
            (_, Some(js_error)) => Err(js_error),
            (Ok(bytes), None) => Ok(bytes),
            (Err(e), None) => Err(e.into()),
        }
    }
}

fn calibration_impl(
    model: &BertModel,
    tokens: &JsValue,
    options: JsValue,
    context: &JsValue,
    thrown: &mut Option<JsValue>,
) -> JsResult<Vec<u8>> {
    let opts: CalibrationOptions = from_js(options, "calibration options", ErrorCode::Options)?;
    if opts.batch_size == 0 {
        return Err(BindingError::new(
            ErrorCode::Options,
            "calibration options: batchSize must be at least 1",
        ));
    }
    let sentences = token_batch(tokens)?;
    let on_progress = get(context, "onProgress");
    let on_progress: Option<js_sys::Function> =
        match on_progress.is_undefined() || on_progress.is_null() {
            true => None,
            false => Some(on_progress.dyn_into().map_err(|_| {
                BindingError::new(ErrorCode::Argument, "onProgress must be a function")
            })?),
        };
    let signal = get(context, "signal");
    let cancelled = || BindingError::new(ErrorCode::Cancelled, "calibration cancelled");
    if get(&signal, "aborted").is_truthy() {
        return Err(cancelled());
    }
    let total = sentences.len();
    let mut progress = |done: usize| -> Control {
        if let Some(f) = &on_progress {
            let event = js_sys::Object::new();
            let _ = js_sys::Reflect::set(&event, &"done".into(), &(done as f64).into());
            let _ = js_sys::Reflect::set(&event, &"total".into(), &(total as f64).into());
            match f.call1(&JsValue::NULL, &event) {
                Ok(r) if r == JsValue::FALSE => return Control::Cancel,
                Ok(_) => {}
                Err(e) => {
                    *thrown = Some(e);
                    return Control::Cancel;
                }
            }
        }
        match get(&signal, "aborted").is_truthy() {
            true => Control::Cancel,
            false => Control::Continue,
        }
    };
    let calib = calibrate_tokens(model, &sentences, opts.batch_size, &mut progress)?
        .ok_or_else(cancelled)?;
    Ok(calibration_to_safetensors(&calib)?)
}
