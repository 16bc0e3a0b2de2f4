//! Compressing one tensor with progress events and cancellation.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::convert::{from_js, tensor_values, to_js, TensorSpec};
use super::error::{BindingError, ErrorCode, JsResult};
use super::get;
use crate::engine::{
    compress_matrix_owned, CompressOptions, Control, Event, Hessian, TensorReport,
};
use crate::format::packed::{Mode, PackedEntry, PackedFile, PackedTensor};
use crate::format::safetensors as st;

/// A compressed tensor held in wasm memory (call `free()` when done, or let
/// the garbage collector do it).
#[wasm_bindgen]
pub struct CompressedTensor {
    pub(crate) packed: PackedTensor,
    pub(crate) report: TensorReport,
}

/// `CompressedTensor.report()`: the engine's report plus the learned
/// parameters, as arrays ready to draw.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompressReport<'a> {
    /// The engine's report (losses, bpw, errors, group sizes, row losses).
    #[serde(flatten)]
    pub report: &'a TensorReport,
    /// Bits per index.
    pub bits: u8,
    /// Codeword dimension.
    pub dim: u8,
    /// Number of groups.
    pub groups: u16,
    /// `codebook` or `scale`.
    pub mode: Mode,
    /// Original shape.
    pub shape: &'a [usize],
    /// Original dtype.
    pub dtype: String,
    /// Each codebook's `K * dim` codeword coordinates (f16 values as numbers).
    pub codebooks: Vec<Vec<f32>>,
    /// Per-group scales (scale mode), empty otherwise.
    pub scales: Vec<f32>,
    /// Group of each row.
    pub group_of_row: &'a [u8],
    /// Bytes the tensor takes in a packed file (indices, codebooks, groups, scales).
    pub packed_bytes: u64,
}

impl CompressedTensor {
    /// Wrap a packed tensor and its report.
    pub fn new(packed: PackedTensor, report: TensorReport) -> Self {
        Self { packed, report }
    }

    /// The packed tensor.
    pub fn packed(&self) -> &PackedTensor {
        &self.packed
    }

    /// The report as `report()` returns it.
    pub fn full_report(&self) -> CompressReport<'_> {
        let p = &self.packed;
        CompressReport {
            report: &self.report,
            bits: p.bits,
            dim: p.dim,
            groups: p.groups,
            mode: p.mode,
            shape: &p.shape,
            dtype: st::dtype_name(p.dtype),
            codebooks: (0..p.n_codebooks())
                .map(|c| p.codebook(c).iter().map(|v| v.to_f32()).collect())
                .collect(),
            scales: p.scales.iter().map(|v| v.to_f32()).collect(),
            group_of_row: &p.group_ids,
            packed_bytes: p.stored_bits().div_ceil(8),
        }
    }
}

#[wasm_bindgen]
impl CompressedTensor {
    /// Tensor name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.packed.name.clone()
    }

    /// Bits per weight, everything counted.
    #[wasm_bindgen(getter)]
    pub fn bpw(&self) -> f64 {
        self.packed.bpw()
    }

    /// Losses, errors, group sizes, row losses, codebooks.
    #[wasm_bindgen(js_name = report, unchecked_return_type = "CompressReport")]
    pub fn report_js(&self) -> Result<JsValue, JsValue> {
        Ok(to_js(&self.full_report())?)
    }

    /// The decoded weights `Ŵ` as f32 (rows x cols, row-major).
    pub fn decode(&self) -> Vec<f32> {
        self.packed.decode_f32()
    }

    /// A packed file holding only this tensor.
    #[wasm_bindgen(js_name = toPackedFile)]
    pub fn to_packed_file(&self) -> Result<Vec<u8>, JsValue> {
        let file = PackedFile {
            entries: vec![PackedEntry::Packed(self.packed.clone())],
            metadata: Default::default(),
        };
        Ok(file.to_bytes().map_err(BindingError::from)?)
    }
}

/// Compress one tensor (`bytes` = its data, e.g. `file.slice(t.start, t.end)`).
///
/// `context.onProgress(event)` receives `{type: "phase", tensor, phase}` and
/// `{type: "loss", tensor, point: {sweep, kind, loss}}`; returning `false`
/// cancels. `context.signal` (an `AbortSignal`) is checked at every event.
/// `context.calibration` is an optional `cols x cols` `H` (Float32Array).
#[wasm_bindgen(js_name = compressTensor)]
pub fn compress_tensor(
    #[wasm_bindgen(unchecked_param_type = "TensorSpec")] tensor: JsValue,
    bytes: &[u8],
    #[wasm_bindgen(unchecked_optional_param_type = "CompressOptions")] options: JsValue,
    #[wasm_bindgen(unchecked_optional_param_type = "CompressContext")] context: JsValue,
) -> Result<CompressedTensor, JsValue> {
    let mut thrown: Option<JsValue> = None;
    let out = compress_impl(tensor, bytes, options, context, &mut thrown);
    super::settle(out, thrown)
}

fn compress_impl(
    tensor: JsValue,
    bytes: &[u8],
    options: JsValue,
    context: JsValue,
    thrown: &mut Option<JsValue>,
) -> JsResult<CompressedTensor> {
    let spec = TensorSpec::from_js(tensor)?;
    let opts: CompressOptions = from_js(options, "compress options", ErrorCode::Options)?;
    opts.validate()?;
    let (entry, values) = tensor_values(&spec, bytes)?;
    let (n_out, n_in) = entry.matrix_shape().ok_or_else(|| {
        BindingError::new(
            ErrorCode::Tensor,
            format!("tensor `{}` of shape {:?} is not a compressible matrix (2-D or 4-D, >= 2 rows, >= 8 columns)", spec.name, spec.shape),
        )
    })?;
    let on_progress = get(&context, "onProgress");
    let on_progress: Option<js_sys::Function> =
        match on_progress.is_undefined() || on_progress.is_null() {
            true => None,
            false => Some(on_progress.dyn_into().map_err(|_| {
                BindingError::new(ErrorCode::Argument, "onProgress must be a function")
            })?),
        };
    let signal = get(&context, "signal");
    let calibration = get(&context, "calibration");
    let h = if calibration.is_undefined() || calibration.is_null() {
        Hessian::Identity(n_in)
    } else {
        let data = js_sys::Float32Array::new(&calibration).to_vec();
        Hessian::from_calibration(&spec.name, n_in, &[n_in, n_in], data, opts.damping)?
    };
    let mut observer = |event: &Event| -> Control {
        if thrown.is_some() || get(&signal, "aborted").is_truthy() {
            return Control::Cancel;
        }
        if let Some(f) = &on_progress {
            let Ok(ev) = to_js(event) else {
                return Control::Continue;
            };
            match f.call1(&JsValue::NULL, &ev) {
                Ok(r) if r == JsValue::FALSE => return Control::Cancel,
                Ok(_) => {}
                Err(e) => {
                    *thrown = Some(e);
                    return Control::Cancel;
                }
            }
        }
        Control::Continue
    };
    let (packed, report) = compress_matrix_owned(
        &spec.name,
        entry.dtype,
        &spec.shape,
        values,
        n_out,
        n_in,
        &h,
        &opts,
        &mut observer,
    )?;
    Ok(CompressedTensor::new(packed, report))
}
