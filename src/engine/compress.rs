//! Compressing one matrix and a whole safetensors file.

use std::collections::BTreeMap;

use half::f16;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::error::{EngineError, Result};
use super::group::group_rows;
use super::hessian::Hessian;
use super::learn::{Learner, LossPoint, MoveRule, StepKind};
use super::rng::rng_for;
use crate::format::packed::{
    check_params, pack_indices, Mode, PackedEntry, PackedFile, PackedTensor,
};
use crate::format::rotation::{block_for, Rotation, Rotator};
use crate::format::safetensors::{self as st, Dtype, OwnedTensor, SafetensorsFile, TensorEntry};
use rand::Rng;

/// Compression options (the CLI flags, the npm options object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct CompressOptions {
    /// Bits per index, 1..=8.
    pub bits: u8,
    /// Codeword dimension: 1, 2, 4 or 8.
    pub dim: u8,
    /// Row groups, 1..=256 (clamped to the number of rows).
    pub groups: u16,
    /// A codebook per group, or one codebook with a scale per group.
    pub mode: Mode,
    /// Learning sweeps at most (0 = initialisation only).
    pub iters: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Proximal (JLCM) or unconstrained mapping moves.
    pub moves: MoveRule,
    /// Stop when a sweep lowers the loss by less than this fraction.
    pub tol: f64,
    /// Damping added to a calibration `H`, as a fraction of its mean diagonal.
    pub damping: f32,
    /// Rotate the inputs first (random signs and a block Walsh–Hadamard
    /// transform, `format::rotation`): the codes quantise `W Rᵀ` under
    /// `R H Rᵀ`, and `Ŵ = Q R`. Skipped for a tensor whose `n_in` has no
    /// power-of-two factor of at least 8.
    pub rotate: bool,
}

impl Default for CompressOptions {
    fn default() -> Self {
        Self {
            bits: 2,
            dim: 1,
            groups: 16,
            mode: Mode::Codebook,
            iters: 10,
            seed: 0,
            moves: MoveRule::Proximal,
            tol: 1e-4,
            damping: 0.01,
            rotate: false,
        }
    }
}

impl CompressOptions {
    /// Check ranges.
    pub fn validate(&self) -> Result<()> {
        check_params(self.bits, self.dim, self.groups).map_err(EngineError::InvalidOptions)?;
        if self.iters > 10_000 {
            return Err(EngineError::InvalidOptions(format!(
                "iters must be at most 10000, got {}",
                self.iters
            )));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(EngineError::InvalidOptions(format!(
                "tol must be a finite non-negative number, got {}",
                self.tol
            )));
        }
        if !(self.damping.is_finite() && self.damping >= 0.0) {
            return Err(EngineError::InvalidOptions(format!(
                "damping must be finite and >= 0, got {}",
                self.damping
            )));
        }
        Ok(())
    }

    /// Parse options from JSON (camelCase keys, unknown keys refused).
    pub fn from_json(json: &str) -> Result<Self> {
        let o: Self =
            serde_json::from_str(json).map_err(|e| EngineError::InvalidOptions(e.to_string()))?;
        o.validate()?;
        Ok(o)
    }
}

/// Phases of compressing one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Row grouping.
    Grouping,
    /// Codebook initialisation.
    Init,
    /// Joint learning.
    Learning,
    /// Packing the result.
    Packing,
}

/// What the engine reports while it works.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Event<'a> {
    /// A tensor entered a phase.
    Phase {
        /// Tensor name.
        tensor: &'a str,
        /// The phase.
        phase: Phase,
    },
    /// A learning step finished.
    Loss {
        /// Tensor name.
        tensor: &'a str,
        /// The step.
        point: LossPoint,
    },
}

/// Returned by an observer: go on or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop as soon as possible; the call returns `Cancelled`.
    Cancel,
}

/// What compressing one tensor produced besides the packed tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TensorReport {
    /// Tensor name.
    pub name: String,
    /// Rows.
    pub n_out: usize,
    /// Columns.
    pub n_in: usize,
    /// Bits per weight, everything counted.
    pub bpw: f64,
    /// Loss curve: the initialisation, then every step.
    pub losses: Vec<LossPoint>,
    /// `||Ŵ - W|| / ||W||`.
    pub rel_weight_error: f64,
    /// `sqrt(L / sum_r w_r^T H w_r)`: relative output error on the calibration data.
    pub rel_output_error: f64,
    /// Rows in each group.
    pub group_sizes: Vec<usize>,
    /// Squared error of each row under `H` (where the error sits).
    pub row_loss: Vec<f64>,
}

/// The rotation [`compress_matrix`] applies to tensor `name` with `n_in`
/// columns under `opts` (none unless `opts.rotate`); the sign bits come from
/// the seed and the name, so a streaming writer can know it in advance.
pub fn rotation_for(opts: &CompressOptions, name: &str, n_in: usize) -> Option<Rotation> {
    if !opts.rotate {
        return None;
    }
    let block = block_for(n_in)?;
    let mut rng = rng_for(opts.seed, name, u64::MAX - 1);
    Some(Rotation::new(n_in, block, || rng.gen::<bool>()))
}

/// `R H Rᵀ` of a metric under rotation `rot`.
fn rotate_metric(h: &Hessian, rot: &Rotator) -> Hessian {
    let n = h.n();
    let mut data = match h {
        Hessian::Identity(_) => return h.clone(),
        Hessian::Diagonal(d) => {
            let mut m = vec![0f32; n * n];
            for (j, v) in d.iter().enumerate() {
                m[j * n + j] = *v;
            }
            m
        }
        Hessian::Dense { data, .. } => data.clone(),
    };
    rot.conjugate(&mut data);
    // The rounding of the two transforms leaves it a little asymmetric.
    super::hessian::symmetrise(&mut data, n);
    Hessian::Dense { n, data }
}

/// Compress one matrix `w` (`n_out x n_in`, row-major) under metric `h`.
/// Copies `w` once; [`compress_matrix_owned`] takes it instead.
#[allow(clippy::too_many_arguments)]
pub fn compress_matrix(
    name: &str,
    dtype: Dtype,
    shape: &[usize],
    w: &[f32],
    n_out: usize,
    n_in: usize,
    h: &Hessian,
    opts: &CompressOptions,
    observer: &mut dyn FnMut(&Event) -> Control,
) -> Result<(PackedTensor, TensorReport)> {
    compress_matrix_owned(
        name,
        dtype,
        shape,
        w.to_vec(),
        n_out,
        n_in,
        h,
        opts,
        observer,
    )
}

/// [`compress_matrix`] taking the weights by value: the engine works in
/// them (when `n_in` is a multiple of the codeword dimension), so the
/// caller's copy is not held twice — 4 bytes per weight less at the peak.
#[allow(clippy::too_many_arguments)]
pub fn compress_matrix_owned(
    name: &str,
    dtype: Dtype,
    shape: &[usize],
    w: Vec<f32>,
    n_out: usize,
    n_in: usize,
    h: &Hessian,
    opts: &CompressOptions,
    observer: &mut dyn FnMut(&Event) -> Control,
) -> Result<(PackedTensor, TensorReport)> {
    opts.validate()?;
    let bad = |problem: String| EngineError::Tensor {
        name: name.to_string(),
        problem,
    };
    if n_out == 0 || n_in == 0 || n_out.checked_mul(n_in) != Some(w.len()) {
        return Err(bad(format!(
            "{} values do not form a {n_out} x {n_in} matrix",
            w.len()
        )));
    }
    if h.n() != n_in {
        return Err(EngineError::Calibration {
            name: name.to_string(),
            problem: format!("H is {0} x {0}, the weight has {n_in} columns", h.n()),
        });
    }
    st::check_finite(name, &w)?;
    let rotation = rotation_for(opts, name, n_in);
    let rotated;
    let (w, h) = match &rotation {
        Some(r) => {
            let rot = r.prepare(n_in);
            let mut w = w;
            w.chunks_exact_mut(n_in).for_each(|row| rot.apply(row));
            rotated = rotate_metric(h, &rot);
            (w, &rotated)
        }
        None => (w, h),
    };
    let mut emit = |e: Event| -> Result<()> {
        match observer(&e) {
            Control::Continue => Ok(()),
            Control::Cancel => Err(EngineError::Cancelled),
        }
    };
    let d = opts.dim as usize;
    emit(Event::Phase {
        tensor: name,
        phase: Phase::Grouping,
    })?;
    let n_p = n_in.div_ceil(d) * d;
    let metric = h.padded(n_p);
    let hdiag = metric.diagonal();
    let mut rng = rng_for(opts.seed, name, u64::MAX);
    let (groups, n_groups) = group_rows(&w, n_out, n_in, &hdiag, opts.groups as usize, &mut rng);
    emit(Event::Phase {
        tensor: name,
        phase: Phase::Init,
    })?;
    let mut learner = Learner::init(
        w, n_out, n_in, metric, d, opts.bits, opts.mode, groups, n_groups, opts.seed, name,
    );
    let mut losses = vec![LossPoint {
        sweep: 0,
        kind: StepKind::Init,
        loss: learner.loss,
    }];
    emit(Event::Loss {
        tensor: name,
        point: losses[0],
    })?;
    emit(Event::Phase {
        tensor: name,
        phase: Phase::Learning,
    })?;
    let mut cancelled = false;
    let finished = learner.learn(opts.iters, opts.moves, opts.tol, &mut |p| {
        losses.push(p);
        let go = observer(&Event::Loss {
            tensor: name,
            point: p,
        }) == Control::Continue;
        cancelled |= !go;
        go
    });
    if !finished || cancelled {
        return Err(EngineError::Cancelled);
    }
    let mut emit = |e: Event| -> Result<()> {
        match observer(&e) {
            Control::Continue => Ok(()),
            Control::Cancel => Err(EngineError::Cancelled),
        }
    };
    emit(Event::Phase {
        tensor: name,
        phase: Phase::Packing,
    })?;
    let packed = PackedTensor {
        name: name.to_string(),
        shape: shape.to_vec(),
        dtype,
        bits: opts.bits,
        dim: opts.dim,
        groups: n_groups as u16,
        mode: opts.mode,
        n_out,
        n_in,
        indices: pack_indices(&learner.idx, learner.n_sub, opts.bits),
        codebooks: learner.cb.iter().map(|v| f16::from_f32(*v)).collect(),
        group_ids: learner.groups.clone(),
        scales: if opts.mode == Mode::Scale {
            learner.scales.iter().map(|v| f16::from_f32(*v)).collect()
        } else {
            vec![]
        },
        rotation,
    };
    packed.validate()?;
    let mut group_sizes = vec![0usize; n_groups];
    for g in &learner.groups {
        group_sizes[*g as usize] += 1;
    }
    let (mut e2, mut w2) = (0f64, 0f64);
    let mut row_loss = Vec::with_capacity(n_out);
    for r in 0..n_out {
        let er = learner.err_row(r);
        e2 += er.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
        w2 += learner.w[r * learner.n_p..r * learner.n_p + n_in]
            .iter()
            .map(|v| (*v as f64).powi(2))
            .sum::<f64>();
        let gr = &learner.grad[r * learner.n_p..r * learner.n_p + n_in];
        row_loss.push(
            0.5 * er
                .iter()
                .zip(gr)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>(),
        );
    }
    let reference = learner.reference_loss().max(1e-30);
    let report = TensorReport {
        name: name.to_string(),
        n_out,
        n_in,
        bpw: packed.bpw(),
        losses,
        rel_weight_error: (e2 / w2.max(1e-30)).sqrt(),
        rel_output_error: (learner.loss / reference).sqrt(),
        group_sizes,
        row_loss,
    };
    Ok((packed, report))
}

/// Calibration matrices by weight name (`X^T X / n` of the layer's inputs).
pub type Calibration = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Read a calibration file: one F32 `[n_in, n_in]` tensor per weight name.
pub fn read_calibration(bytes: &[u8]) -> Result<Calibration> {
    let file = SafetensorsFile::parse(bytes)?;
    let mut out = BTreeMap::new();
    for t in &file.header.tensors {
        let v = st::to_f32(t, file.tensor_bytes(t))?;
        out.insert(t.name.clone(), (t.shape.clone(), v));
    }
    Ok(out)
}

/// Bias correction: `b += (W - Ŵ) E[x]`, so the layer's mean output on the
/// calibration inputs is the original's. The output error `(W - Ŵ) x`
/// then keeps only its part in `x - E[x]`: the calibrated loss drops by
/// `|(W - Ŵ) E[x]|²`, at no stored cost (the bias is stored anyway).
/// `w`, `w_hat`: `[n_out, n_in]` row-major; `bias`: `[n_out]`; `mean`: `[n_in]`.
pub fn correct_bias(bias: &mut [f32], w: &[f32], w_hat: &[f32], mean: &[f32]) {
    let m: Vec<f64> = mean.iter().map(|&v| v as f64).collect();
    refit_bias(bias, w, &m, w_hat, &m);
}

/// `b += W μ − Ŵ μ̂`: the layer's mean output with inputs of mean `μ̂` through
/// `Ŵ` is the original's with inputs of mean `μ` through `W` (sequential
/// calibration's affine fit; [`correct_bias`] when `μ̂ = μ`).
pub fn refit_bias(bias: &mut [f32], w: &[f32], mean: &[f64], w_hat: &[f32], mean_hat: &[f64]) {
    let n_in = mean.len();
    for ((b, r), rh) in bias
        .iter_mut()
        .zip(w.chunks_exact(n_in))
        .zip(w_hat.chunks_exact(n_in))
    {
        let orig: f64 = r.iter().zip(mean).map(|(a, m)| *a as f64 * m).sum();
        let comp: f64 = rh.iter().zip(mean_hat).map(|(a, m)| *a as f64 * m).sum();
        *b = (*b as f64 + orig - comp) as f32;
    }
}

/// The metric for weight `name` with `n_in` columns: from calibration if
/// present, identity otherwise.
pub fn hessian_for(
    name: &str,
    n_in: usize,
    calib: Option<&Calibration>,
    damping: f32,
) -> Result<Hessian> {
    match calib.and_then(|c| c.get(name)) {
        Some((shape, data)) => Hessian::from_calibration(name, n_in, shape, data.clone(), damping),
        None => Ok(Hessian::Identity(n_in)),
    }
}

/// Which tensors to compress: compressible ones whose name matches `filter`.
pub fn selected(entry: &TensorEntry, filter: Option<&Regex>) -> bool {
    entry.is_compressible() && filter.is_none_or(|re| re.is_match(&entry.name))
}

/// Compress a whole in-memory safetensors file, one tensor after the other.
pub fn compress_file(
    bytes: &[u8],
    calib: Option<&Calibration>,
    opts: &CompressOptions,
    filter: Option<&Regex>,
    observer: &mut dyn FnMut(&Event) -> Control,
) -> Result<(PackedFile, Vec<TensorReport>)> {
    opts.validate()?;
    let file = SafetensorsFile::parse(bytes)?;
    let mut entries = Vec::new();
    let mut reports = Vec::new();
    for t in &file.header.tensors {
        let raw = file.tensor_bytes(t);
        if selected(t, filter) {
            let (n_out, n_in) = t.matrix_shape().unwrap_or((0, 0));
            let w = st::to_f32(t, raw)?;
            let h = hessian_for(&t.name, n_in, calib, opts.damping)?;
            let (p, rep) = compress_matrix_owned(
                &t.name, t.dtype, &t.shape, w, n_out, n_in, &h, opts, observer,
            )?;
            entries.push(PackedEntry::Packed(p));
            reports.push(rep);
        } else {
            entries.push(PackedEntry::Raw {
                name: t.name.clone(),
                tensor: OwnedTensor {
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    data: raw.to_vec(),
                },
            });
        }
    }
    let metadata = file.header.metadata.clone();
    Ok((PackedFile { entries, metadata }, reports))
}
