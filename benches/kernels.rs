//! Matvec throughput of the packed kernels against the dense f32 SIMD matvec
//! and the scalar reference, measured in the same run, printed as a table.
//!
//! Native: `cargo bench --bench kernels` (add `-- --quick` for 1024x1024 and 4096x4096 only, no batch sweep).
//! wasm (Node 20 and headless Chromium): `bash scripts/bench-kernels-wasm.sh`,
//! which builds this file for wasm32 and calls [`run_kernel_bench`].
//!
//! Each figure is the best of repeated single-vector products (batch 1,
//! single thread) after one warm-up call. Weights/s counts `n_out * n_in`
//! per product; GB/s counts the bytes the kernel reads for its weights
//! (packed: indices + F16 codebooks + group ids + scales; dense: 4 bytes a
//! weight).

use jlcm::format::packed::Mode;
use jlcm::kernels::prepared::{LutPrecision, ProductPath, TILE_MIN_BATCH};
use jlcm::kernels::synthetic::{random_inputs, random_packed, PackedSpec};
use jlcm::kernels::{reference, DenseMatrix, Isa, PackedMatrix};

/// Matrices `(n_out, n_in)`.
const MATRICES: [(usize, usize); 3] = [(1024, 1024), (4096, 4096), (4096, 11008)];
/// Packed layouts `(bits, dim)`: 2, 3 and 4-bit scalar codebooks and two
/// 2-bit-per-weight vector codebooks: `d = 2` with 16 codewords (lookup
/// plan) and `d = 4` with 256 codewords (codeword-gather decode plan).
const LAYOUTS: [(u8, u8); 5] = [(2, 1), (3, 1), (4, 1), (4, 2), (8, 4)];
/// Row groups (codebook mode): 16, as the engine's default grouping.
const GROUPS: u16 = 16;
/// Minimum time spent on each measurement, in milliseconds.
const MIN_MEASURE_MS: f64 = 1000.0;
/// Minimum time spent on each measurement of the batch sweep, in milliseconds.
const SWEEP_MEASURE_MS: f64 = 300.0;
/// Minimum time of one timed round of calls, in milliseconds: short where
/// the clock is fine-grained (natively and in Node: a round should fit in
/// one scheduler time slice on a loaded machine), 10 ms where the clock is
/// coarse (browsers round `performance.now()` to 0.1 ms).
fn min_round_ms() -> f64 {
    // The smallest step the clock takes.
    let mut step = f64::INFINITY;
    for _ in 0..5 {
        let t = now_ms();
        let mut u = now_ms();
        while u == t {
            u = now_ms();
        }
        step = step.min(u - t);
    }
    if step < 0.01 {
        1.0
    } else {
        10.0
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn now_ms() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

#[cfg(target_arch = "wasm32")]
mod js {
    use wasm_bindgen::prelude::*;
    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_namespace = performance, js_name = now)]
        pub fn performance_now() -> f64;
    }
}

#[cfg(target_arch = "wasm32")]
fn now_ms() -> f64 {
    js::performance_now()
}

/// The system load average at the end of the run, when readable (native only).
fn load_average() -> String {
    #[cfg(not(target_arch = "wasm32"))]
    if let Ok(s) = std::fs::read_to_string("/proc/loadavg") {
        return format!(
            "; load average {}",
            s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
    }
    String::new()
}

/// One kernel to time, owning its matrix and buffers.
struct Candidate {
    layout: String,
    kernel: String,
    bytes: f64,
    call: Box<dyn FnMut()>,
}

/// Best milliseconds per call of every candidate. Candidates are timed in
/// turns (so that load from other processes hits them alike), each turn a
/// round of calls lasting at least [`min_round_ms`] (browsers coarsen
/// `performance.now()` to 0.1 ms); the best round's mean is kept. One
/// warm-up call each first.
fn best_ms_interleaved(candidates: &mut [Candidate], measure_ms: f64) -> Vec<f64> {
    let round_ms = min_round_ms();
    let calls_per_round: Vec<usize> = candidates
        .iter_mut()
        .map(|c| {
            (c.call)();
            let t = now_ms();
            (c.call)();
            let one = (now_ms() - t).max(1e-3);
            ((round_ms / one).ceil() as usize).max(1)
        })
        .collect();
    let mut best = vec![f64::INFINITY; candidates.len()];
    let start = now_ms();
    let mut rounds = 0;
    while rounds < 3 || now_ms() - start < measure_ms * candidates.len() as f64 {
        for ((c, n), b) in candidates
            .iter_mut()
            .zip(&calls_per_round)
            .zip(best.iter_mut())
        {
            let t = now_ms();
            for _ in 0..*n {
                (c.call)();
            }
            *b = b.min((now_ms() - t) / *n as f64);
        }
        rounds += 1;
    }
    best
}

struct Row {
    matrix: String,
    layout: String,
    kernel: String,
    ms: f64,
    weights: f64,
    bytes: f64,
}

/// Matrices `(n_out, n_in)` of the batch sweep: the 4096 matvec and the
/// MiniLM intermediate / output layers.
const SWEEP_MATRICES: [(usize, usize); 3] = [(4096, 4096), (1536, 384), (384, 1536)];
/// Batches of the sweep.
const SWEEP_BATCHES: [usize; 8] = [1, 2, 3, 4, 5, 6, 8, 16];

/// Per-input plans against the tiled path at small batches (2-bit `d = 1`,
/// 16 groups, best ISA): microseconds per input vector, to place
/// `TILE_MIN_BATCH`.
fn batch_sweep() -> String {
    let isa = Isa::best();
    let mut out = format!(
        "\nbatch sweep, b2 d1, {isa:?}, microseconds per input vector (TILE_MIN_BATCH = {TILE_MIN_BATCH}){}\n\n| matrix | batch | per-input plan | tiled | tiled / per-input |\n|---|---:|---:|---:|---:|\n",
        load_average()
    );
    for &(n_out, n_in) in &SWEEP_MATRICES {
        let spec = PackedSpec {
            n_out,
            n_in,
            bits: 2,
            dim: 1,
            groups: GROUPS,
            mode: Mode::Codebook,
        };
        let tensor = random_packed(spec, 5);
        for &batch in &SWEEP_BATCHES {
            let mut candidates = Vec::new();
            for path in [ProductPath::PerInput, ProductPath::Tiled] {
                let m = PackedMatrix::with_isa(tensor.clone(), isa).expect("valid");
                let (x, mut y) = (random_inputs(batch * n_in, 1), vec![0f32; batch * n_out]);
                candidates.push(Candidate {
                    layout: String::new(),
                    kernel: String::new(),
                    bytes: 0.0,
                    call: Box::new(move || {
                        m.matmul_with_path(path, &x, batch, &mut y).expect("shape")
                    }),
                });
            }
            let ms = best_ms_interleaved(&mut candidates, SWEEP_MEASURE_MS);
            let us = |k: usize| 1e3 * ms[k] / batch as f64;
            out.push_str(&format!(
                "| {n_out}x{n_in} | {batch} | {:.1} | {:.1} | {:.2} |\n",
                us(0),
                us(1),
                us(1) / us(0)
            ));
        }
    }
    out
}

/// The matrix named by `JLCM_BENCH_MATRIX` (`ROWSxCOLS`), native only.
fn option_env_matrix() -> Option<(usize, usize)> {
    #[cfg(not(target_arch = "wasm32"))]
    if let Ok(s) = std::env::var("JLCM_BENCH_MATRIX") {
        let (a, b) = s.split_once('x')?;
        return Some((a.parse().ok()?, b.parse().ok()?));
    }
    None
}

fn run(quick: bool) -> String {
    // `JLCM_BENCH_MATRIX=4096x4096` times that matrix only (no batch sweep).
    run_matrices(quick, option_env_matrix())
}

/// [`run`], or only the matrix `only` (no batch sweep).
fn run_matrices(quick: bool, only: Option<(usize, usize)>) -> String {
    let matrices: Vec<(usize, usize)> = match only {
        Some(m) => vec![m],
        None if quick => MATRICES[..2].to_vec(),
        None => MATRICES.to_vec(),
    };
    let quick = quick || only.is_some();
    let best = Isa::best();
    let mut rows: Vec<Row> = Vec::new();
    let mut out = String::new();
    for &(n_out, n_in) in &matrices {
        let matrix = format!("{n_out}x{n_in}");
        let weights = (n_out * n_in) as f64;
        let x = random_inputs(n_in, 1);
        let mut candidates = Vec::new();
        let dense =
            DenseMatrix::new(random_inputs(n_out * n_in, 2), n_out, n_in, best).expect("shape");
        let (xc, mut y) = (x.clone(), vec![0f32; n_out]);
        candidates.push(Candidate {
            layout: "f32".into(),
            kernel: format!("dense {}", best.name()),
            bytes: 4.0 * weights,
            call: Box::new(move || dense.matmul(&xc, 1, &mut y).expect("shape")),
        });
        for &(bits, dim) in &LAYOUTS {
            let spec = PackedSpec {
                n_out,
                n_in,
                bits,
                dim,
                groups: GROUPS,
                mode: Mode::Codebook,
            };
            let tensor = random_packed(spec, 3);
            let layout = format!("b{bits} d{dim} ({:.2} bpw)", tensor.bpw());
            let packed_bytes = PackedMatrix::new(tensor.clone())
                .expect("valid")
                .packed_bytes() as f64;
            for isa in Isa::available() {
                // The default precision, and on SIMD128 the other ones
                // beside it (all three are implemented there).
                let mut precisions = vec![None];
                if isa == Isa::Simd128 && bits <= 4 {
                    let default = PackedMatrix::default_precision(isa, 1, bits, dim);
                    for other in [
                        LutPrecision::Exact,
                        LutPrecision::FixedPoint,
                        LutPrecision::TwoLevel,
                    ] {
                        if other != default {
                            precisions.push(Some(other));
                        }
                    }
                }
                for precision in precisions {
                    let mut m = PackedMatrix::with_isa(tensor.clone(), isa).expect("valid");
                    m.set_precision(precision);
                    let mut kernel = format!("{} {}", m.layout().plan_name(), isa.name());
                    if m.layout().plan_name() == "nibble-lut" {
                        kernel.push_str(match m.precision(1) {
                            LutPrecision::Exact => " exact",
                            LutPrecision::FixedPoint => " fixed",
                            LutPrecision::TwoLevel => " two-level",
                        });
                        if precision.is_none() {
                            kernel.push_str(" (default)");
                        }
                    }
                    let (xc, mut y) = (x.clone(), vec![0f32; n_out]);
                    let call = Box::new(move || m.matmul(&xc, 1, &mut y).expect("shape"));
                    candidates.push(Candidate {
                        layout: layout.clone(),
                        kernel,
                        bytes: packed_bytes,
                        call,
                    });
                }
            }
            let (xc, mut y) = (x.clone(), vec![0f32; n_out]);
            candidates.push(Candidate {
                layout,
                kernel: "reference".into(),
                bytes: packed_bytes,
                call: Box::new(move || reference::matmul(&tensor, &xc, 1, &mut y)),
            });
        }
        let ms = best_ms_interleaved(&mut candidates, MIN_MEASURE_MS);
        for (c, ms) in candidates.into_iter().zip(ms) {
            rows.push(Row {
                matrix: matrix.clone(),
                layout: c.layout,
                kernel: c.kernel,
                ms,
                weights,
                bytes: c.bytes,
            });
        }
    }
    out.push_str(&format!(
        "kernels matvec, batch 1, single thread; best ISA: {}; simd128 build: {}; groups {GROUPS} (codebook mode){}\n\n",
        best.name(),
        cfg!(target_feature = "simd128"),
        load_average()
    ));
    out.push_str("| matrix | layout | kernel | ms/call | Gweights/s | GB/s read | x dense SIMD | x reference |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|\n");
    for r in &rows {
        let dense = rows
            .iter()
            .find(|d| d.matrix == r.matrix && d.layout == "f32")
            .map_or(f64::NAN, |d| d.ms);
        let reference = rows
            .iter()
            .find(|d| d.matrix == r.matrix && d.layout == r.layout && d.kernel == "reference")
            .map_or(f64::NAN, |d| d.ms);
        let vs_reference = if r.layout == "f32" {
            "".to_string()
        } else {
            format!("{:.2}", reference / r.ms)
        };
        out.push_str(&format!(
            "| {} | {} | {} | {:.3} | {:.2} | {:.2} | {:.2} | {} |\n",
            r.matrix,
            r.layout,
            r.kernel,
            r.ms,
            r.weights / r.ms / 1e6,
            r.bytes / r.ms / 1e6,
            dense / r.ms,
            vs_reference
        ));
    }
    if !quick {
        out.push_str(&batch_sweep());
    }
    out
}

/// wasm entry point: run the benchmark and return the table (`quick`: the
/// 1024x1024 and 4096x4096 matrices only, no batch sweep).
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn run_kernel_bench(quick: bool) -> String {
    run(quick)
}

fn main() {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let quick = std::env::args().any(|a| a == "--quick");
        print!("{}", run(quick));
    }
}

/// wasm entry point: one matrix only (no batch sweep), as
/// `JLCM_BENCH_MATRIX` does natively (`bash scripts/bench-kernels-wasm.sh
/// --matrix 4096x4096 node`).
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn run_kernel_bench_matrix(n_out: usize, n_in: usize) -> String {
    run_matrices(true, Some((n_out, n_in)))
}

/// wasm entry point of the MiniLM runtime benchmark
/// (`bash scripts/bench-runtime-wasm.sh`): sentence embeddings per second,
/// batches of 1 and 32 sentences, dense f32 model vs packed model (bytes
/// of both safetensors files given by the caller), and the weight bytes of
/// the 36 Linear layers. `texts` holds one sentence a line.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn run_runtime_bench(
    config: &str,
    tokenizer: &[u8],
    dense: &[u8],
    packed: &[u8],
    texts: &str,
    seconds: f64,
) -> String {
    runtime_bench(config, tokenizer, dense, packed, texts, seconds)
}

/// See [`run_runtime_bench`].
#[allow(dead_code)]
fn runtime_bench(
    config: &str,
    tokenizer: &[u8],
    dense: &[u8],
    packed: &[u8],
    texts: &str,
    seconds: f64,
) -> String {
    use jlcm::runtime::{BertModel, Linear, LinearWeight, SentenceEncoder};
    use std::fmt::Write;
    let encoder = SentenceEncoder::from_bytes(config, tokenizer, dense).expect("dense model");
    let texts: Vec<&str> = texts
        .lines()
        .filter(|l| !l.is_empty() && l.len() < 200)
        .collect();
    let ids = encoder.tokenizer.encode_all(&texts).expect("tokenize");
    let batch32: Vec<Vec<u32>> = ids.iter().cycle().take(32).cloned().collect();
    let mean_tokens = batch32.iter().map(Vec::len).sum::<usize>() as f64 / 32.0;
    let dense = encoder.model;
    let packed = BertModel::from_safetensors(config, packed).expect("packed model");
    let linear_bytes = |m: &BertModel| m.linears().map(Linear::weight_bytes).sum::<usize>();
    let prepared: usize = packed
        .linears()
        .map(|l| match &l.weight {
            LinearWeight::Packed { matrix: m, .. } => m.prepared_bytes(),
            LinearWeight::Dense { wt } => 4 * wt.len(),
        })
        .sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "36 Linear weights: dense {:.2} MB, packed {:.2} MB ({:.1}x less), prepared layout besides the packed bytes {:.2} MB (no dense copy); best ISA {}",
        linear_bytes(&dense) as f64 / 1e6,
        linear_bytes(&packed) as f64 / 1e6,
        linear_bytes(&dense) as f64 / linear_bytes(&packed) as f64,
        prepared as f64 / 1e6,
        Isa::best().name()
    );
    let _ = writeln!(
        out,
        "MiniLM-L6 embeddings, single thread, {mean_tokens:.1} tokens per sentence on average\n"
    );
    let _ = writeln!(
        out,
        "| weights | batch | sentences/s | ms per batch | packed / dense |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    let with = |s: jlcm::runtime::PackedStrategy| {
        let mut m = packed.clone();
        m.set_packed_strategy(s);
        m
    };
    let kernel = with(jlcm::runtime::PackedStrategy::Kernel);
    let panels = with(jlcm::runtime::PackedStrategy::DecodePanels);
    let models = [&dense, &packed, &kernel, &panels];
    let labels = [
        "dense f32",
        "packed 2-bit",
        "packed 2-bit, lookup kernels",
        "packed 2-bit, decoded panels",
    ];
    for (b, batch) in [(1usize, &batch32[..1]), (32, &batch32[..])] {
        let mut rates = [0f64; 4];
        // Interleave dense and packed rounds; keep each one's best.
        let start = now_ms();
        let mut round = 0;
        while round < 3 || now_ms() - start < 4.0 * seconds * 1e3 {
            for (k, model) in models.iter().enumerate() {
                let t = now_ms();
                std::hint::black_box(model.embed(batch).expect("embed"));
                rates[k] = rates[k].max(b as f64 * 1e3 / (now_ms() - t).max(1e-3));
            }
            round += 1;
        }
        for (k, label) in labels.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {label} | {b} | {:.1} | {:.2} | {} |",
                rates[k],
                b as f64 * 1e3 / rates[k],
                if k > 0 {
                    format!("{:.2}", rates[k] / rates[0])
                } else {
                    String::new()
                }
            );
        }
    }
    out
}
