//! Reading and analysing one tensor: values, row groups, histograms and
//! row statistics for the page's charts.

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use super::convert::{from_js, tensor_values, to_js, TensorSpec};
use super::error::{BindingError, ErrorCode, JsResult};
use crate::engine::group::group_rows;
use crate::engine::rng::rng_for;

/// Options of `analyseTensor`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalyseOptions {
    /// Row groups to find (as `CompressOptions.groups`).
    pub groups: u16,
    /// Histogram bins.
    pub bins: u32,
    /// Seed of the grouping (as `CompressOptions.seed`).
    pub seed: u64,
}

impl Default for AnalyseOptions {
    fn default() -> Self {
        Self {
            groups: 16,
            bins: 64,
            seed: 0,
        }
    }
}

/// Counts of values in equal-width bins over `[min, max]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Histogram {
    /// Left edge of the first bin.
    pub min: f32,
    /// Right edge of the last bin.
    pub max: f32,
    /// Count per bin.
    pub counts: Vec<u32>,
}

/// Per-row statistics, one entry per row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowStats {
    /// Mean of each row.
    pub mean: Vec<f32>,
    /// Root mean square of each row.
    pub rms: Vec<f32>,
    /// Smallest value of each row.
    pub min: Vec<f32>,
    /// Largest value of each row.
    pub max: Vec<f32>,
}

/// The row groups of a matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupAnalysis {
    /// Number of groups found.
    pub count: usize,
    /// Group of each row.
    pub group_of_row: Vec<u8>,
    /// Rows per group.
    pub sizes: Vec<usize>,
    /// Value histogram of each group, on the tensor histogram's bins.
    pub histograms: Vec<Histogram>,
}

/// What `analyseTensor` returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TensorAnalysis {
    /// Tensor name.
    pub name: String,
    /// Rows of the matrix view (1 for vectors).
    pub rows: usize,
    /// Columns of the matrix view.
    pub cols: usize,
    /// Mean of all values.
    pub mean: f64,
    /// Standard deviation of all values.
    pub std: f64,
    /// Histogram of all values.
    pub histogram: Histogram,
    /// Row groups (compressible tensors only).
    pub groups: Option<GroupAnalysis>,
    /// Per-row statistics.
    pub row_stats: RowStats,
}

/// Histogram of `values` on `bins` bins over `[min, max]`.
pub fn histogram<'a>(
    values: impl Iterator<Item = &'a f32>,
    min: f32,
    max: f32,
    bins: usize,
) -> Histogram {
    let mut counts = vec![0u32; bins];
    let width = (max - min).max(f32::MIN_POSITIVE);
    for v in values {
        let b = (((v - min) / width) * bins as f32) as usize;
        counts[b.min(bins - 1)] += 1;
    }
    Histogram { min, max, counts }
}

/// Analyse a tensor given as f32 values in an `rows x cols` view.
pub fn analyse_values(
    name: &str,
    values: &[f32],
    rows: usize,
    cols: usize,
    compressible: bool,
    opts: &AnalyseOptions,
) -> TensorAnalysis {
    let bins = opts.bins as usize;
    let (min, max) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    let (min, max) = if values.is_empty() {
        (0.0, 0.0)
    } else {
        (min, max)
    };
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|v| *v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|v| (*v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let mut row_stats = RowStats {
        mean: vec![],
        rms: vec![],
        min: vec![],
        max: vec![],
    };
    for row in values.chunks(cols.max(1)) {
        let c = row.len().max(1) as f64;
        row_stats
            .mean
            .push((row.iter().map(|v| *v as f64).sum::<f64>() / c) as f32);
        row_stats
            .rms
            .push(libm::sqrt(row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / c) as f32);
        row_stats
            .min
            .push(row.iter().copied().fold(f32::INFINITY, f32::min));
        row_stats
            .max
            .push(row.iter().copied().fold(f32::NEG_INFINITY, f32::max));
    }
    let groups = compressible.then(|| {
        let hdiag = vec![1f32; cols];
        let mut rng = rng_for(opts.seed, name, u64::MAX);
        let (group_of_row, count) =
            group_rows(values, rows, cols, &hdiag, opts.groups as usize, &mut rng);
        let mut sizes = vec![0usize; count];
        for g in &group_of_row {
            sizes[*g as usize] += 1;
        }
        let histograms = (0..count)
            .map(|g| {
                let rows_of_g = group_of_row
                    .iter()
                    .enumerate()
                    .filter(|(_, id)| **id as usize == g);
                histogram(
                    rows_of_g.flat_map(|(r, _)| values[r * cols..(r + 1) * cols].iter()),
                    min,
                    max,
                    bins,
                )
            })
            .collect();
        GroupAnalysis {
            count,
            group_of_row,
            sizes,
            histograms,
        }
    });
    TensorAnalysis {
        name: name.to_string(),
        rows,
        cols,
        mean,
        std: libm::sqrt(var),
        histogram: histogram(values.iter(), min, max, bins),
        groups,
        row_stats,
    }
}

/// A tensor's values as f32 (from F32, F16 or BF16 bytes).
#[wasm_bindgen(js_name = readTensor)]
pub fn read_tensor(
    #[wasm_bindgen(unchecked_param_type = "TensorSpec")] tensor: JsValue,
    bytes: &[u8],
) -> Result<Vec<f32>, JsValue> {
    let spec = TensorSpec::from_js(tensor)?;
    Ok(tensor_values(&spec, bytes)?.1)
}

/// Value histogram, row groups (as compression would find them), per-group
/// histograms and row statistics of one tensor.
#[wasm_bindgen(js_name = analyseTensor, unchecked_return_type = "TensorAnalysis")]
pub fn analyse_tensor(
    #[wasm_bindgen(unchecked_param_type = "TensorSpec")] tensor: JsValue,
    bytes: &[u8],
    #[wasm_bindgen(unchecked_optional_param_type = "AnalyseOptions")] options: JsValue,
) -> Result<JsValue, JsValue> {
    Ok(analyse_impl(tensor, bytes, options)?)
}

fn analyse_impl(tensor: JsValue, bytes: &[u8], options: JsValue) -> JsResult<JsValue> {
    let spec = TensorSpec::from_js(tensor)?;
    let opts: AnalyseOptions = from_js(options, "analyse options", ErrorCode::Options)?;
    if !(1..=4096).contains(&opts.bins) || !(1..=256).contains(&opts.groups) {
        return Err(BindingError::new(
            ErrorCode::Options,
            "bins must be 1..=4096 and groups 1..=256",
        ));
    }
    let (entry, values) = tensor_values(&spec, bytes)?;
    let (rows, cols, compressible) = match entry.matrix_shape() {
        Some((r, c)) => (r, c, true),
        None => (1, values.len(), false),
    };
    if compressible {
        crate::format::safetensors::check_finite(&entry.name, &values)?;
    }
    to_js(&analyse_values(
        &entry.name,
        &values,
        rows,
        cols,
        compressible,
        &opts,
    ))
}
