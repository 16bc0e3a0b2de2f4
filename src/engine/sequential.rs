//! Sequential, target-corrected calibration.
//!
//! The plain calibration fits every Linear weight to the original model's
//! inputs: `min (w - ŵ)ᵀ H (w - ŵ)` with `H = XᵀX / n`. In the compressed
//! model, though, a layer receives `X̃`, the inputs that already went
//! through compressed earlier layers, and its errors add to theirs. Here
//! each layer (in forward order) is fitted instead to reproduce the
//! ORIGINAL output from the inputs the compressed model feeds it:
//!
//! `min ‖Ŵ X̃ − W X‖² / n + μ ‖Ŵ − W‖²`   (same tokens in `X̃` and `X`)
//!
//! With `H̃ = X̃ᵀX̃ / n`, `C = X̃ᵀX / n` and `A = H̃ + μ I` this is
//! `Σ_r (ŵ_r − w*_r)ᵀ A (ŵ_r − w*_r) + const` with the corrected target
//! `W*ᵀ = A⁻¹ (C + μ I) Wᵀ` — so the engine runs unchanged: it compresses
//! `W*` under `H̃` (with its usual damping). When the earlier layers are
//! exact (`X̃ = X`), `W* = W` and this is the plain calibration. The
//! `μ ‖Ŵ − W‖²` term pulls towards the original weights: the least-squares
//! fit has `n_in` unknowns per row from a few thousand calibration tokens
//! and overfits them when `μ` is as small as the engine's 1 % damping
//! (BENCHMARKS.md session 6: held-out cosine fell); `μ` = 30 % of
//! `mean diag H̃` ([`DEFAULT_CORRECTION_DAMPING`]) kept most of the
//! correction's gain.
//!
//! With [`SequentialOptions::refit_bias`] the fit is affine: the bias is
//! free too, `min ‖Ŵ (X̃ − μ̃) − W (X − μ)‖² / n + μ ‖Ŵ − W‖²` on the centred
//! moments `H̃ − μ̃μ̃ᵀ`, `C − μ̃μᵀ` (`μ̃`, `μ`: mean compressed and original
//! inputs), then `b̃ = b + W μ − Ŵ μ̃`, so the layer's mean output on the
//! calibration tokens is the original's. The bias is stored dense anyway:
//! this costs no bit.

use std::collections::BTreeMap;

use super::compress::{compress_matrix_owned, CompressOptions, Control, TensorReport};
use super::hessian::Hessian;
use crate::format::packed::PackedTensor;
use crate::format::safetensors::Dtype;
use crate::runtime::dense::{matmul_transposed, transpose};
use crate::runtime::{BertModel, Linear, LinearWeight, RuntimeError};

/// Default `μ` of the target solve, as a fraction of `mean diag H̃`:
/// the best of 0.01, 0.1, 0.3 and 1 on the held-out cosine at 2.3 bpw
/// (BENCHMARKS.md session 6).
pub const DEFAULT_CORRECTION_DAMPING: f32 = 0.3;

/// Rows folded into the f64 sums at a time (bounds the f32 rounding of each partial product).
const ROWS_PER_CHUNK: usize = 256;

/// `(H̃, C) = (X̃ᵀX̃ / n, X̃ᵀX / n)` for `rows x n_in` row-major inputs of the
/// same tokens, `H̃` exactly symmetric.
pub fn input_moments(x_tilde: &[f32], x: &[f32], rows: usize, n_in: usize) -> (Vec<f32>, Vec<f32>) {
    let mut h = vec![0f64; n_in * n_in];
    let mut c = vec![0f64; n_in * n_in];
    let mut part = vec![0f32; n_in * n_in];
    let step = ROWS_PER_CHUNK * n_in;
    for (xt_chunk, x_chunk) in x_tilde.chunks(step).zip(x.chunks(step)) {
        let r = xt_chunk.len() / n_in;
        let xtt = transpose(xt_chunk, r, n_in);
        matmul_transposed(&xtt, n_in, r, xt_chunk, n_in, None, &mut part);
        for (s, p) in h.iter_mut().zip(&part) {
            *s += *p as f64;
        }
        matmul_transposed(&xtt, n_in, r, x_chunk, n_in, None, &mut part);
        for (s, p) in c.iter_mut().zip(&part) {
            *s += *p as f64;
        }
    }
    let inv = 1.0 / rows.max(1) as f64;
    let mut hs = vec![0f32; n_in * n_in];
    for i in 0..n_in {
        for j in 0..n_in {
            hs[i * n_in + j] = (0.5 * (h[i * n_in + j] + h[j * n_in + i]) * inv) as f32;
        }
    }
    (hs, c.iter().map(|v| (v * inv) as f32).collect())
}

/// The damping the engine adds to `h` (`damping · mean diag`, or 1 if the diagonal is 0),
/// as [`Hessian::from_calibration`] computes it.
fn damping_of(h: &[f32], n: usize, damping: f32) -> f32 {
    let trace: f64 = (0..n).map(|j| h[j * n + j] as f64).sum();
    let mean = (trace / n as f64) as f32;
    if mean > 0.0 {
        damping * mean
    } else {
        1.0
    }
}

/// The corrected target `W* = W (C + μI)ᵀ (H̃ + μI)⁻¹` (`w`: `n_out x n_in`
/// row-major; `h`, `c`: `n_in x n_in`), with `μ = damping · mean diag h`
/// (as the engine damps `H`). `None` if `H̃ + μI` is not positive definite.
pub fn corrected_target(
    w: &[f32],
    n_out: usize,
    n_in: usize,
    h: &[f32],
    c: &[f32],
    damping: f32,
) -> Option<Vec<f32>> {
    let n = n_in;
    let lambda = damping_of(h, n, damping);
    debug_assert!(c.len() == n * n && h.len() == n * n && w.len() == n_out * n);
    // M = (C + λI) Wᵀ, n_in x n_out, via the dense kernel on f32.
    let mut cl = c.to_vec();
    for j in 0..n {
        cl[j * n + j] += lambda;
    }
    let wt = transpose(w, n_out, n_in);
    let mut m32 = vec![0f32; n * n_out];
    matmul_transposed(&cl, n, n, &wt, n_out, None, &mut m32);
    let mut y: Vec<f64> = m32.iter().map(|&v| v as f64).collect();
    // A = H̃ + λI (symmetrised, f64), A = L Lᵀ.
    let mut a = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = 0.5 * (h[i * n + j] as f64 + h[j * n + i] as f64);
        }
        a[i * n + i] += lambda as f64;
    }
    let l = super::baselines::gptq::cholesky_lower(&a, n)?;
    // Solve L Z = M, then Lᵀ Y = Z, a row of n_out right-hand sides at a time.
    for i in 0..n {
        let (done, rest) = y.split_at_mut(i * n_out);
        let yi = &mut rest[..n_out];
        for j in 0..i {
            let lij = l[i * n + j];
            if lij != 0.0 {
                for (v, z) in yi.iter_mut().zip(&done[j * n_out..(j + 1) * n_out]) {
                    *v -= lij * z;
                }
            }
        }
        let d = l[i * n + i];
        yi.iter_mut().for_each(|v| *v /= d);
    }
    for i in (0..n).rev() {
        let (head, tail) = y.split_at_mut((i + 1) * n_out);
        let yi = &mut head[i * n_out..];
        for j in i + 1..n {
            let lji = l[j * n + i];
            if lji != 0.0 {
                let yj = &tail[(j - i - 1) * n_out..(j - i) * n_out];
                for (v, z) in yi.iter_mut().zip(yj) {
                    *v -= lji * z;
                }
            }
        }
        let d = l[i * n + i];
        yi.iter_mut().for_each(|v| *v /= d);
    }
    // Y = W*ᵀ (n_in x n_out) -> W* (n_out x n_in).
    let ys: Vec<f32> = y.iter().map(|&v| v as f32).collect();
    let out = transpose(&ys, n, n_out);
    out.iter().all(|v| v.is_finite()).then_some(out)
}

/// How [`compress_sequential`] fits each weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SequentialOptions {
    /// `μ` of the target solve (module docs), as a fraction of `mean diag H̃`.
    pub correction_damping: f32,
    /// Refit each bias with its weight (module docs): an affine fit on centred moments.
    pub refit_bias: bool,
}

impl Default for SequentialOptions {
    fn default() -> Self {
        Self {
            correction_damping: DEFAULT_CORRECTION_DAMPING,
            refit_bias: false,
        }
    }
}

/// Mean row of `rows x n_in` row-major `x`, in f64.
fn mean_row(x: &[f32], n_in: usize) -> Vec<f64> {
    let mut m = vec![0f64; n_in];
    let mut rows = 0usize;
    for r in x.chunks_exact(n_in) {
        for (s, v) in m.iter_mut().zip(r) {
            *s += *v as f64;
        }
        rows += 1;
    }
    let inv = 1.0 / rows.max(1) as f64;
    m.iter_mut().for_each(|v| *v *= inv);
    m
}

/// `m -= a bᵀ` for `n x n` row-major `m`.
fn subtract_outer(m: &mut [f32], a: &[f64], b: &[f64]) {
    let n = a.len();
    for i in 0..n {
        for j in 0..n {
            m[i * n + j] = (m[i * n + j] as f64 - a[i] * b[j]) as f32;
        }
    }
}

/// One compressed weight of [`compress_sequential`].
#[derive(Debug, Clone)]
pub struct SequentialResult {
    /// The packed weight (dtype F32, shape `[n_out, n_in]`: set the
    /// source's dtype before writing if it differs).
    pub packed: PackedTensor,
    /// The engine's report (its losses are under `H̃` against `W*`).
    pub report: TensorReport,
    /// `‖W* − W‖ / ‖W‖`: how far the correction moved the target.
    pub target_shift: f64,
    /// Whether `H̃ + μI` could not be factored and `W` itself was compressed.
    pub uncorrected: bool,
    /// The refitted bias (`n_out` values) with [`SequentialOptions::refit_bias`].
    pub bias: Option<Vec<f32>>,
}

/// What [`compress_sequential`] reports after each weight.
#[derive(Debug, Clone, Copy)]
pub struct SequentialProgress<'a> {
    /// The weight just compressed.
    pub name: &'a str,
    /// Weights compressed so far.
    pub done: usize,
    /// Weights to compress.
    pub total: usize,
}

/// Compress the Linear weights of `model` in forward order, each fitted to
/// the original outputs from the compressed model's inputs (module docs).
/// `bits(name)` gives the bits of each weight to compress (`None`: left
/// as it is); the other options come from `opts`. `sentences` are token
/// ids with their special tokens (the calibration set). Every dense
/// weight named by `bits` is compressed; packed ones are an error.
/// `seq` sets the target solve and the bias refit (module docs).
pub fn compress_sequential(
    model: &BertModel,
    sentences: &[Vec<u32>],
    opts: &CompressOptions,
    seq: &SequentialOptions,
    bits: &dyn Fn(&str) -> Option<u8>,
    progress: &mut dyn FnMut(SequentialProgress) -> Control,
) -> Result<BTreeMap<String, SequentialResult>, RuntimeError> {
    opts.validate()
        .map_err(|e| RuntimeError::Input(e.to_string()))?;
    let correction_damping = seq.correction_damping;
    if !(correction_damping.is_finite() && correction_damping >= 0.0) {
        return Err(RuntimeError::Input(format!(
            "correction damping must be finite and >= 0, got {correction_damping}"
        )));
    }
    if sentences.is_empty() {
        return Err(RuntimeError::Input("no calibration sentences".into()));
    }
    let total = model.linears().filter(|l| bits(&l.name).is_some()).count();
    let (mut h_orig, lens) = model.input_hidden(sentences)?;
    let mut h_comp = h_orig.clone();
    let mut out = BTreeMap::new();
    let mut cancelled = false;
    for l in 0..model.num_layers() {
        // The original model's inputs of this layer's four stages.
        let mut inputs: Vec<Vec<f32>> = Vec::with_capacity(4);
        model.forward_layer(l, &mut h_orig, &lens, &mut |_, x| {
            inputs.push(x.to_vec());
            Ok(None)
        })?;
        let mut stage = 0;
        model.forward_layer(l, &mut h_comp, &lens, &mut |lins, x_tilde| {
            let x = &inputs[stage];
            stage += 1;
            if cancelled || lins.iter().all(|lin| bits(&lin.name).is_none()) {
                return Ok(None);
            }
            let n_in = lins[0].n_in;
            let rows = x.len() / n_in;
            let (mut h, mut c) = input_moments(x_tilde, x, rows, n_in);
            let means = seq.refit_bias.then(|| {
                let (mu_t, mu) = (mean_row(x_tilde, n_in), mean_row(x, n_in));
                subtract_outer(&mut h, &mu_t, &mu_t);
                subtract_outer(&mut c, &mu_t, &mu);
                (mu_t, mu)
            });
            let mut repl = Vec::with_capacity(lins.len());
            for lin in lins {
                let Some(b) = bits(&lin.name) else {
                    repl.push((*lin).clone());
                    continue;
                };
                let mut r = compress_one(lin, b, &h, &c, opts, correction_damping)?;
                let w_hat = r.packed.decode_f32();
                let mut bias = lin.bias.clone();
                if let (Some((mu_t, mu)), LinearWeight::Dense { wt }) = (&means, &lin.weight) {
                    let w = transpose(wt, lin.n_in, lin.n_out);
                    super::compress::refit_bias(&mut bias, &w, mu, &w_hat, mu_t);
                    r.bias = Some(bias.clone());
                }
                repl.push(Linear {
                    weight: LinearWeight::Dense {
                        wt: transpose(&w_hat, lin.n_out, lin.n_in),
                    },
                    bias,
                    ..(*lin).clone()
                });
                out.insert(lin.name.clone(), r);
                let p = SequentialProgress {
                    name: &lin.name,
                    done: out.len(),
                    total,
                };
                if progress(p) == Control::Cancel {
                    cancelled = true;
                }
            }
            Ok(Some(repl))
        })?;
        if cancelled {
            return Err(RuntimeError::Input("cancelled".into()));
        }
    }
    Ok(out)
}

/// Compress `lin`'s weight with `bits` bits as its corrected target under `h` (`H̃`).
fn compress_one(
    lin: &Linear,
    bits: u8,
    h: &[f32],
    c: &[f32],
    opts: &CompressOptions,
    correction_damping: f32,
) -> Result<SequentialResult, RuntimeError> {
    let bad = |problem: String| RuntimeError::Weight {
        name: lin.name.clone(),
        problem,
    };
    let (n_out, n_in) = (lin.n_out, lin.n_in);
    let w = match &lin.weight {
        LinearWeight::Dense { wt } => transpose(wt, n_in, n_out),
        LinearWeight::Packed { .. } => {
            return Err(bad(
                "is packed; sequential calibration needs the dense original".into(),
            ))
        }
    };
    let (target, uncorrected) = match corrected_target(&w, n_out, n_in, h, c, correction_damping) {
        Some(t) => (t, false),
        None => (w.clone(), true),
    };
    let (mut d2, mut w2) = (0f64, 0f64);
    for (a, b) in target.iter().zip(&w) {
        d2 += ((a - b) as f64).powi(2);
        w2 += (*b as f64).powi(2);
    }
    let metric =
        Hessian::from_calibration(&lin.name, n_in, &[n_in, n_in], h.to_vec(), opts.damping)
            .map_err(|e| bad(e.to_string()))?;
    let o = CompressOptions {
        bits,
        ..opts.clone()
    };
    let (packed, report) = compress_matrix_owned(
        &lin.name,
        Dtype::F32,
        &[n_out, n_in],
        target,
        n_out,
        n_in,
        &metric,
        &o,
        &mut |_| Control::Continue,
    )
    .map_err(|e| bad(e.to_string()))?;
    Ok(SequentialResult {
        packed,
        report,
        target_shift: (d2 / w2.max(1e-30)).sqrt(),
        uncorrected,
        bias: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::rng::{rng_for, unit};

    fn gauss(rng: &mut crate::engine::rng::EngineRng) -> f32 {
        let (u1, u2) = (unit(rng).max(1e-12), unit(rng));
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// `‖Ŵ X̃ − W X‖²` (`x`, `xt`: `rows x n_in`; weights `n_out x n_in`).
    /// Row `r` of `w` dotted with row `t` of `x` (both `n_in` wide), in f64.
    fn row_dot(w: &[f32], r: usize, x: &[f32], t: usize, n_in: usize) -> f64 {
        (0..n_in)
            .map(|j| w[r * n_in + j] as f64 * x[t * n_in + j] as f64)
            .sum()
    }

    fn output_error(
        w_hat: &[f32],
        xt: &[f32],
        w: &[f32],
        x: &[f32],
        n_out: usize,
        n_in: usize,
    ) -> f64 {
        let rows = x.len() / n_in;
        let mut e = 0f64;
        for t in 0..rows {
            for r in 0..n_out {
                let a = row_dot(w_hat, r, xt, t, n_in);
                let b = row_dot(w, r, x, t, n_in);
                e += (a - b).powi(2);
            }
        }
        e
    }

    /// Inputs `X`, a perturbed copy `X̃ = X (I + E) + noise` (what compressed
    /// earlier layers do), and weights `W`.
    fn planted(rows: usize, n_in: usize, n_out: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut rng = rng_for(7, "sequential-test", 0);
        let x: Vec<f32> = (0..rows * n_in).map(|_| gauss(&mut rng)).collect();
        let e: Vec<f32> = (0..n_in * n_in).map(|_| 0.15 * gauss(&mut rng)).collect();
        let mut xt = x.clone();
        for t in 0..rows {
            for j in 0..n_in {
                let mix: f32 = (0..n_in).map(|k| x[t * n_in + k] * e[k * n_in + j]).sum();
                xt[t * n_in + j] += mix + 0.05 * gauss(&mut rng);
            }
        }
        let w: Vec<f32> = (0..n_out * n_in).map(|_| gauss(&mut rng)).collect();
        (x, xt, w)
    }

    #[test]
    fn target_is_the_weight_when_inputs_are_unchanged() {
        let (x, _, w) = planted(300, 12, 5);
        let (h, c) = input_moments(&x, &x, 300, 12);
        let t = corrected_target(&w, 5, 12, &h, &c, 0.01).expect("positive definite");
        let err: f32 = t
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-4, "max |W* - W| = {err}");
    }

    #[test]
    fn target_solves_the_damped_least_squares_problem() {
        // The gradient of ‖W* X̃ − W X‖²/n + λ‖W* − W‖² vanishes at W*.
        let (n_in, n_out, rows) = (10, 4, 200);
        let (x, xt, w) = planted(rows, n_in, n_out);
        let (h, c) = input_moments(&xt, &x, rows, n_in);
        let t = corrected_target(&w, n_out, n_in, &h, &c, 0.01).expect("positive definite");
        let lambda = damping_of(&h, n_in, 0.01) as f64;
        for r in 0..n_out {
            for j in 0..n_in {
                let mut g = 0f64;
                for s in 0..rows {
                    let pred = row_dot(&t, r, &xt, s, n_in);
                    let want = row_dot(&w, r, &x, s, n_in);
                    g += (pred - want) * xt[s * n_in + j] as f64;
                }
                g = g / rows as f64 + lambda * (t[r * n_in + j] - w[r * n_in + j]) as f64;
                assert!(g.abs() < 1e-3, "gradient {g} at ({r}, {j})");
            }
        }
    }

    #[test]
    fn compressing_the_target_lowers_the_output_error() {
        let (n_in, n_out, rows) = (32, 24, 600);
        let (x, xt, w) = planted(rows, n_in, n_out);
        let (h, c) = input_moments(&xt, &x, rows, n_in);
        let t = corrected_target(&w, n_out, n_in, &h, &c, 0.01).expect("positive definite");
        let metric = Hessian::from_calibration("t", n_in, &[n_in, n_in], h.clone(), 0.01).unwrap();
        let opts = CompressOptions {
            bits: 3,
            groups: 4,
            ..CompressOptions::default()
        };
        let run = |target: &[f32]| {
            let (p, _) = compress_matrix_owned(
                "t",
                Dtype::F32,
                &[n_out, n_in],
                target.to_vec(),
                n_out,
                n_in,
                &metric,
                &opts,
                &mut |_| Control::Continue,
            )
            .unwrap();
            p.decode_f32()
        };
        let plain = output_error(&run(&w), &xt, &w, &x, n_out, n_in);
        let corrected = output_error(&run(&t), &xt, &w, &x, n_out, n_in);
        let exact_plain = output_error(&w, &xt, &w, &x, n_out, n_in);
        assert!(
            corrected < 0.8 * plain,
            "corrected {corrected:.3} vs plain {plain:.3} (W itself: {exact_plain:.3})"
        );
    }
}
