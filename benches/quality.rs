//! Quality of JLCM against baselines on the real all-MiniLM-L6-v2
//! (issue 2, point 10; ALGORITHM.md §7).
//!
//! `cargo bench --bench quality` (release build). The model folder comes from
//! `JLCM_MODEL_DIR` or `bash scripts/fetch-model.sh`'s default cache
//! (`~/.cache/jlcm/models/all-MiniLM-L6-v2`); the bench stops with a clear
//! message if it is absent. `JLCM_QUALITY_ONLY=REGEX` runs only the settings
//! whose label matches.
//!
//! What it does:
//! 1. Runs the original model (a small f32 BERT forward in this file,
//!    tokenised by the `tokenizers` crate) on the calibration sentences
//!    (`/work/shared/data/calib.txt`, or `JLCM_CALIB_TEXT`) to get each
//!    Linear layer's `H = XᵀX / n`, and on the held-out sentences
//!    (`tests/data/heldout.txt`) to get the original embeddings and each
//!    layer's held-out second moment.
//! 2. For each setting, a child process (this binary again) loads the 36
//!    Linear weights and the calibration matrices, compresses all 36 weights
//!    (rayon over tensors), and hands back the dequantised weights, the
//!    stored bits, the wall time of the compression and its own peak RSS
//!    (`VmHWM`). A child per setting makes the peak memory a per-setting
//!    figure: the peak of a process that holds the weights and `H` and
//!    compresses them.
//! 3. The parent scores the dequantised weights on the held-out sentences:
//!    relative weight error, relative output error `‖(Ŵ-W)X‖/‖WX‖` per layer
//!    (mean over the 36 layers), cosine of the sentence embeddings to the
//!    original model and top-1 retrieval agreement.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use jlcm::engine::baselines::{
    gptq, kmeans_per_row, kmeans_per_tensor, rtn, GptqOptions, GroupOrder, Quantized,
};
use jlcm::engine::compress::{hessian_for, read_calibration, Calibration};
use jlcm::engine::{compress_matrix, CompressOptions, Control, Hessian, MoveRule};
use jlcm::format::packed::Mode;
use jlcm::format::safetensors::{self as st, Dtype, OwnedTensor, SafetensorsFile};
use ndarray::{s, Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// The six Linear weights of each encoder layer.
const LINEAR_SUFFIXES: [&str; 6] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];
const N_LAYERS: usize = 6;
const HIDDEN: usize = 384;
const HEADS: usize = 12;
const LAYER_NORM_EPS: f32 = 1e-12;
/// RTN and GPTQ group size.
const GROUP: usize = 128;
/// Seed of every JLCM and k-means run.
const SEED: u64 = 0;

fn linear_names() -> Vec<String> {
    (0..N_LAYERS)
        .flat_map(|l| {
            LINEAR_SUFFIXES
                .iter()
                .map(move |s| format!("encoder.layer.{l}.{s}.weight"))
        })
        .collect()
}

/// Which input a Linear weight reads: query, key and value share one.
fn input_key(name: &str) -> String {
    let layer: usize = name
        .split('.')
        .nth(2)
        .and_then(|s| s.parse().ok())
        .expect("layer index");
    let kind = if name.contains("attention.self.") {
        "attention-input"
    } else if name.contains("attention.output.dense") {
        "attention-context"
    } else if name.contains("intermediate.dense") {
        "ffn-input"
    } else {
        "ffn-hidden"
    };
    format!("{layer}/{kind}")
}

// ---------------------------------------------------------------- settings

/// One compression method and its parameters.
#[derive(Debug, Clone)]
enum Method {
    Jlcm {
        bits: u8,
        mode: Mode,
        moves: MoveRule,
        iters: u32,
    },
    Rtn {
        bits: u8,
    },
    KmeansTensor {
        bits: u8,
    },
    KmeansRow {
        bits: u8,
    },
    Gptq {
        bits: u8,
        order: GroupOrder,
    },
}

fn settings() -> Vec<(String, Method)> {
    let default_iters = CompressOptions::default().iters;
    let mut v = Vec::new();
    for bits in [2u8, 3, 4] {
        for (mode, m) in [(Mode::Codebook, "codebook"), (Mode::Scale, "scale")] {
            v.push((
                format!("JLCM {bits}b {m} G16"),
                Method::Jlcm {
                    bits,
                    mode,
                    moves: MoveRule::Proximal,
                    iters: default_iters,
                },
            ));
        }
    }
    v.push((
        "JLCM 2b codebook G16 unconstrained".into(),
        Method::Jlcm {
            bits: 2,
            mode: Mode::Codebook,
            moves: MoveRule::Unconstrained,
            iters: default_iters,
        },
    ));
    v.push((
        "JLCM 2b codebook G16 init only".into(),
        Method::Jlcm {
            bits: 2,
            mode: Mode::Codebook,
            moves: MoveRule::Proximal,
            iters: 0,
        },
    ));
    for bits in [2u8, 3, 4] {
        v.push((format!("RTN {bits}b g128"), Method::Rtn { bits }));
    }
    for bits in [2u8, 3] {
        v.push((
            format!("k-means per tensor {bits}b"),
            Method::KmeansTensor { bits },
        ));
        v.push((
            format!("k-means per row {bits}b"),
            Method::KmeansRow { bits },
        ));
    }
    for bits in [2u8, 3, 4] {
        v.push((
            format!("GPTQ {bits}b g128 act-order static"),
            Method::Gptq {
                bits,
                order: GroupOrder::Static,
            },
        ));
    }
    for bits in [2u8, 3] {
        v.push((
            format!("GPTQ {bits}b g128 act-order encountered"),
            Method::Gptq {
                bits,
                order: GroupOrder::Encountered,
            },
        ));
    }
    v
}

// ---------------------------------------------------------------- model files

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("JLCM_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("JLCM_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/jlcm")
                });
            cache.join("models/all-MiniLM-L6-v2")
        });
    for f in ["model.safetensors", "tokenizer.json", "config.json"] {
        if !dir.join(f).is_file() {
            eprintln!(
                "quality bench: {} is missing.\nFetch the real all-MiniLM-L6-v2 first: `bash scripts/fetch-model.sh` (or set JLCM_MODEL_DIR).",
                dir.join(f).display()
            );
            std::process::exit(2);
        }
    }
    dir
}

fn read_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("quality bench: cannot read {}: {e}", path.display());
        std::process::exit(2)
    });
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Every float tensor of the model file by name.
fn load_weights(dir: &Path, names: Option<&[String]>) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(dir.join("model.safetensors")).expect("read model.safetensors");
    let file = SafetensorsFile::parse(&bytes).expect("parse model.safetensors");
    let mut out = BTreeMap::new();
    for t in &file.header.tensors {
        let wanted = names.is_none_or(|n| n.contains(&t.name));
        if wanted && st::is_float(t.dtype) {
            out.insert(
                t.name.clone(),
                st::to_f32(t, file.tensor_bytes(t)).expect("f32 tensor"),
            );
        }
    }
    out
}

// ---------------------------------------------------------------- BERT forward

/// Token ids of many sentences, concatenated, and each sentence's span.
struct Batch {
    ids: Vec<u32>,
    spans: Vec<(usize, usize)>,
}

fn tokenize(dir: &Path, sentences: &[String]) -> Batch {
    let mut tok =
        tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("load tokenizer.json");
    tok.with_padding(None);
    let mut ids = Vec::new();
    let mut spans = Vec::new();
    for s in sentences {
        let enc = tok.encode(s.as_str(), true).expect("tokenize");
        spans.push((ids.len(), enc.get_ids().len()));
        ids.extend_from_slice(enc.get_ids());
    }
    Batch { ids, spans }
}

/// The original weights plus replacements for some Linear weights.
struct Bert<'a> {
    weights: &'a BTreeMap<String, Vec<f32>>,
    replaced: Option<&'a BTreeMap<String, Vec<f32>>>,
}

impl Bert<'_> {
    fn tensor(&self, name: &str) -> &[f32] {
        if let Some(v) = self.replaced.and_then(|r| r.get(name)) {
            return v;
        }
        self.weights
            .get(name)
            .unwrap_or_else(|| panic!("model has no tensor {name}"))
    }

    /// `x Wᵀ + b` for the Linear `prefix` (rows of `x` split over threads).
    fn linear(&self, x: &Array2<f32>, prefix: &str) -> Array2<f32> {
        let b = self.tensor(&format!("{prefix}.bias"));
        let w = self.tensor(&format!("{prefix}.weight"));
        let n_out = b.len();
        let w = ArrayView2::from_shape((n_out, x.ncols()), w).expect("weight shape");
        let parts: Vec<Array2<f32>> = x
            .axis_chunks_iter(Axis(0), 256)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|xc| {
                let mut y = xc.dot(&w.t());
                for mut row in y.rows_mut() {
                    row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                }
                y
            })
            .collect();
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(0), &views).expect("concatenate")
    }

    fn layer_norm(&self, x: &mut Array2<f32>, prefix: &str) {
        let g = self.tensor(&format!("{prefix}.weight"));
        let b = self.tensor(&format!("{prefix}.bias"));
        for mut row in x.rows_mut() {
            let n = row.len() as f32;
            let mean = row.sum() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            let inv = 1.0 / (var + LAYER_NORM_EPS).sqrt();
            for (j, v) in row.iter_mut().enumerate() {
                *v = (*v - mean) * inv * g[j] + b[j];
            }
        }
    }

    /// Mean-pooled, L2-normalised sentence embeddings (`n x 384`);
    /// `capture(key, X)` sees each Linear's input (keys of [`input_key`]).
    fn encode(&self, batch: &Batch, capture: &mut dyn FnMut(&str, &Array2<f32>)) -> Array2<f32> {
        let t = batch.ids.len();
        let word = self.tensor("embeddings.word_embeddings.weight");
        let pos = self.tensor("embeddings.position_embeddings.weight");
        let typ = self.tensor("embeddings.token_type_embeddings.weight");
        let mut h = Array2::<f32>::zeros((t, HIDDEN));
        for &(start, len) in &batch.spans {
            for p in 0..len {
                let id = batch.ids[start + p] as usize;
                let mut row = h.row_mut(start + p);
                for j in 0..HIDDEN {
                    row[j] = word[id * HIDDEN + j] + pos[p * HIDDEN + j] + typ[j];
                }
            }
        }
        self.layer_norm(&mut h, "embeddings.LayerNorm");
        let dh = HIDDEN / HEADS;
        let scale = 1.0 / (dh as f32).sqrt();
        for l in 0..N_LAYERS {
            let p = format!("encoder.layer.{l}");
            capture(&format!("{l}/attention-input"), &h);
            let q = self.linear(&h, &format!("{p}.attention.self.query"));
            let k = self.linear(&h, &format!("{p}.attention.self.key"));
            let v = self.linear(&h, &format!("{p}.attention.self.value"));
            let mut ctx = Array2::<f32>::zeros((t, HIDDEN));
            for &(start, len) in &batch.spans {
                for hd in 0..HEADS {
                    let cols = hd * dh..(hd + 1) * dh;
                    let qs = q.slice(s![start..start + len, cols.clone()]);
                    let ks = k.slice(s![start..start + len, cols.clone()]);
                    let vs = v.slice(s![start..start + len, cols.clone()]);
                    let mut sc = qs.dot(&ks.t());
                    for mut row in sc.rows_mut() {
                        let m = row.iter().fold(f32::NEG_INFINITY, |a, b| a.max(*b * scale));
                        let mut sum = 0.0;
                        row.iter_mut().for_each(|x| {
                            *x = (*x * scale - m).exp();
                            sum += *x;
                        });
                        row.iter_mut().for_each(|x| *x /= sum);
                    }
                    ctx.slice_mut(s![start..start + len, cols])
                        .assign(&sc.dot(&vs));
                }
            }
            capture(&format!("{l}/attention-context"), &ctx);
            let mut a = self.linear(&ctx, &format!("{p}.attention.output.dense"));
            a += &h;
            self.layer_norm(&mut a, &format!("{p}.attention.output.LayerNorm"));
            capture(&format!("{l}/ffn-input"), &a);
            let mut i = self.linear(&a, &format!("{p}.intermediate.dense"));
            i.mapv_inplace(|x| 0.5 * x * (1.0 + libm::erff(x / std::f32::consts::SQRT_2)));
            capture(&format!("{l}/ffn-hidden"), &i);
            let mut o = self.linear(&i, &format!("{p}.output.dense"));
            o += &a;
            self.layer_norm(&mut o, &format!("{p}.output.LayerNorm"));
            h = o;
        }
        let mut out = Array2::<f32>::zeros((batch.spans.len(), HIDDEN));
        for (s_i, &(start, len)) in batch.spans.iter().enumerate() {
            let mean = h
                .slice(s![start..start + len, ..])
                .mean_axis(Axis(0))
                .expect("non-empty sentence");
            let norm = mean.dot(&mean).sqrt().max(1e-12);
            out.row_mut(s_i).assign(&(mean / norm));
        }
        out
    }
}

/// `XᵀX / n` of every Linear input over `batch`, by weight name.
fn second_moments(bert: &Bert, batch: &Batch) -> (Array2<f32>, BTreeMap<String, Array2<f32>>) {
    let n = batch.ids.len() as f32;
    let mut by_input: BTreeMap<String, Array2<f32>> = BTreeMap::new();
    let emb = bert.encode(batch, &mut |key, x| {
        by_input.insert(key.to_string(), x.t().dot(x) / n);
    });
    let by_name = linear_names().into_iter().map(|name| {
        let h = by_input[&input_key(&name)].clone();
        (name, h)
    });
    (emb, by_name.collect())
}

// ---------------------------------------------------------------- calibration

/// Calibration matrices `XᵀX / n` for the 36 Linear weights, from the
/// calibration sentences.
// TODO(runtime): switch to `jlcm::engine::calib` once it lands on main.
fn calibration(dir: &Path, weights: &BTreeMap<String, Vec<f32>>) -> Calibration {
    let path = std::env::var_os("JLCM_CALIB_TEXT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/data/calib.txt"));
    let sentences = read_lines(&path);
    let batch = tokenize(dir, &sentences);
    let bert = Bert {
        weights,
        replaced: None,
    };
    let (_, h) = second_moments(&bert, &batch);
    h.into_iter()
        .map(|(name, m)| {
            (
                name,
                (vec![m.nrows(), m.ncols()], m.into_raw_vec_and_offset().0),
            )
        })
        .collect()
}

fn write_calibration(calib: &Calibration, path: &Path) {
    let tensors: Vec<(String, OwnedTensor)> = calib
        .iter()
        .map(|(n, (shape, v))| {
            (
                n.clone(),
                OwnedTensor {
                    dtype: Dtype::F32,
                    shape: shape.clone(),
                    data: st::from_f32(Dtype::F32, v),
                },
            )
        })
        .collect();
    std::fs::write(
        path,
        st::write(&tensors, &BTreeMap::new()).expect("serialise calibration"),
    )
    .expect("write calibration");
}

// ---------------------------------------------------------------- child: compress

/// CPU seconds (user + system) this process has used, from /proc/self/stat
/// (in USER_HZ = 100 ticks per second on Linux).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f[11].parse::<f64>().ok()? + f[12].parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Compress one weight with `method`: dequantised weight and stored bits.
fn compress_one(
    name: &str,
    w: &[f32],
    n_out: usize,
    n_in: usize,
    calib: &Calibration,
    method: &Method,
) -> Quantized {
    let raw_h = || hessian_for(name, n_in, Some(calib), 0.0).expect("calibration H");
    let diag = |h: &Hessian| (0..n_in).map(|j| h.diag(j)).collect::<Vec<f32>>();
    match *method {
        Method::Jlcm {
            bits,
            mode,
            moves,
            iters,
        } => {
            let opts = CompressOptions {
                bits,
                mode,
                moves,
                iters,
                groups: 16,
                dim: 1,
                seed: SEED,
                ..CompressOptions::default()
            };
            let h = hessian_for(name, n_in, Some(calib), opts.damping).expect("calibration H");
            let (packed, _) = compress_matrix(
                name,
                Dtype::F32,
                &[n_out, n_in],
                w,
                n_out,
                n_in,
                &h,
                &opts,
                &mut |_| Control::Continue,
            )
            .expect("compress");
            Quantized {
                n_out,
                n_in,
                weights: packed.decode_f32(),
                stored_bits: packed.stored_bits(),
            }
        }
        Method::Rtn { bits } => rtn(name, w, n_out, n_in, bits, GROUP),
        Method::KmeansTensor { bits } => {
            kmeans_per_tensor(name, w, n_out, n_in, &diag(&raw_h()), bits, SEED)
        }
        Method::KmeansRow { bits } => {
            kmeans_per_row(name, w, n_out, n_in, &diag(&raw_h()), bits, SEED)
        }
        Method::Gptq { bits, order } => gptq(
            name,
            w,
            n_out,
            n_in,
            &raw_h(),
            &GptqOptions {
                order,
                ..GptqOptions::standard(bits)
            },
        ),
    }
}

/// Child process: compress all 36 weights with setting `index`, write the
/// dequantised weights and the figures to `out`.
fn run_child(index: usize, calib_path: &Path, out: &Path) {
    let dir = model_dir();
    let names = linear_names();
    let weights = load_weights(&dir, Some(&names));
    let calib = read_calibration(&std::fs::read(calib_path).expect("read calibration"))
        .expect("parse calibration");
    let (_, method) = &settings()[index];
    let rss_loaded = vm_hwm_kib();
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let results: Vec<(String, Quantized)> = names
        .par_iter()
        .map(|name| {
            let w = &weights[name];
            let n_in = calib[name].0[0];
            (
                name.clone(),
                compress_one(name, w, w.len() / n_in, n_in, &calib, method),
            )
        })
        .collect();
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    let rss_peak = vm_hwm_kib();
    let stored: u64 = results.iter().map(|(_, q)| q.stored_bits).sum();
    let n_weights: usize = results.iter().map(|(_, q)| q.weights.len()).sum();
    let mut meta = BTreeMap::new();
    meta.insert("stored_bits".to_string(), stored.to_string());
    meta.insert("weights".to_string(), n_weights.to_string());
    meta.insert("seconds".to_string(), seconds.to_string());
    meta.insert("cpu_seconds".to_string(), cpu.to_string());
    meta.insert("rss_loaded_kib".to_string(), rss_loaded.to_string());
    meta.insert("rss_peak_kib".to_string(), rss_peak.to_string());
    let tensors: Vec<(String, OwnedTensor)> = results
        .into_iter()
        .map(|(n, q)| {
            (
                n,
                OwnedTensor {
                    dtype: Dtype::F32,
                    shape: vec![q.n_out, q.n_in],
                    data: st::from_f32(Dtype::F32, &q.weights),
                },
            )
        })
        .collect();
    std::fs::write(out, st::write(&tensors, &meta).expect("serialise")).expect("write result");
}

// ---------------------------------------------------------------- parent: score

struct Compressed {
    weights: BTreeMap<String, Vec<f32>>,
    meta: BTreeMap<String, String>,
}

fn run_setting(index: usize, calib_path: &Path, work: &Path) -> Compressed {
    let out = work.join(format!("setting-{index}.safetensors"));
    let status = Command::new(std::env::current_exe().expect("own path"))
        .env("JLCM_QUALITY_CHILD", index.to_string())
        .env("JLCM_QUALITY_CALIB", calib_path)
        .env("JLCM_QUALITY_OUT", &out)
        .status()
        .expect("spawn child");
    assert!(status.success(), "setting {index} failed: {status}");
    let bytes = std::fs::read(&out).expect("read child result");
    let _ = std::fs::remove_file(&out);
    let file = SafetensorsFile::parse(&bytes).expect("parse child result");
    let weights = file
        .header
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                st::to_f32(t, file.tensor_bytes(t)).expect("f32"),
            )
        })
        .collect();
    Compressed {
        weights,
        meta: file.header.metadata.clone(),
    }
}

/// `sqrt(tr(E H Eᵀ) / tr(W H Wᵀ))` with `H` the held-out second moment.
fn relative_output_error(w: &[f32], w_hat: &[f32], h: &Array2<f32>) -> f64 {
    let n_in = h.nrows();
    let w = ArrayView2::from_shape((w.len() / n_in, n_in), w).expect("shape");
    let wh = ArrayView2::from_shape((w_hat.len() / n_in, n_in), w_hat).expect("shape");
    let e = &wh - &w;
    let quad = |m: &Array2<f32>| (m.dot(h) * m).iter().map(|v| *v as f64).sum::<f64>();
    (quad(&e) / quad(&w.to_owned()).max(1e-30)).sqrt()
}

fn relative_weight_error(w: &[f32], w_hat: &[f32]) -> f64 {
    let e2: f64 = w
        .iter()
        .zip(w_hat)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let w2: f64 = w.iter().map(|a| (*a as f64).powi(2)).sum();
    (e2 / w2.max(1e-30)).sqrt()
}

/// Index of each sentence's nearest other sentence by cosine.
fn nearest_other(emb: &Array2<f32>) -> Vec<usize> {
    let sim = emb.dot(&emb.t());
    (0..emb.nrows())
        .map(|i| {
            (0..emb.nrows())
                .filter(|j| *j != i)
                .fold((usize::MAX, f32::NEG_INFINITY), |b, j| {
                    if sim[[i, j]] > b.1 {
                        (j, sim[[i, j]])
                    } else {
                        b
                    }
                })
                .0
        })
        .collect()
}

struct Row {
    label: String,
    bpw: f64,
    weight_err: f64,
    output_err: f64,
    cosine: f64,
    cosine_min: f64,
    top1: f64,
    seconds: f64,
    cpu_seconds: f64,
    rss_peak_mib: f64,
    rss_loaded_mib: f64,
    per_kind: Vec<(String, f64)>,
}

fn print_header() {
    println!(
        "| {:<40} | {:>6} | {:>8} | {:>8} | {:>7} | {:>7} | {:>6} | {:>7} | {:>7} | {:>15} |",
        "setting",
        "bpw",
        "w err",
        "out err",
        "cosine",
        "cos min",
        "top-1",
        "wall s",
        "CPU s",
        "RSS MiB ld/peak"
    );
    println!(
        "|{:-<42}|{:->8}|{:->10}|{:->10}|{:->9}|{:->9}|{:->8}|{:->9}|{:->9}|{:->17}|",
        "", "", "", "", "", "", "", "", "", ""
    );
}

fn print_row(r: &Row) {
    println!(
        "| {:<40} | {:>6.3} | {:>8.4} | {:>8.4} | {:>7.4} | {:>7.4} | {:>6.3} | {:>7.1} | {:>7.1} | {:>7.0}/{:>7.0} |",
        r.label, r.bpw, r.weight_err, r.output_err, r.cosine, r.cosine_min, r.top1, r.seconds, r.cpu_seconds, r.rss_loaded_mib, r.rss_peak_mib
    );
}

fn main() {
    if let Some(index) = std::env::var_os("JLCM_QUALITY_CHILD") {
        let index: usize = index.to_string_lossy().parse().expect("child index");
        let calib =
            PathBuf::from(std::env::var_os("JLCM_QUALITY_CALIB").expect("JLCM_QUALITY_CALIB"));
        let out = PathBuf::from(std::env::var_os("JLCM_QUALITY_OUT").expect("JLCM_QUALITY_OUT"));
        run_child(index, &calib, &out);
        return;
    }
    let only = std::env::var("JLCM_QUALITY_ONLY")
        .ok()
        .map(|r| regex::Regex::new(&r).expect("JLCM_QUALITY_ONLY regex"));
    let dir = model_dir();
    let weights = load_weights(&dir, None);
    let names = linear_names();
    let heldout_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/heldout.txt");
    let heldout = read_lines(&heldout_path);

    let t = Instant::now();
    let calib = calibration(&dir, &weights);
    let calib_seconds = t.elapsed().as_secs_f64();
    let work = std::env::temp_dir().join(format!("jlcm-quality-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let calib_path = work.join("calib.safetensors");
    write_calibration(&calib, &calib_path);

    let batch = tokenize(&dir, &heldout);
    let original = Bert {
        weights: &weights,
        replaced: None,
    };
    let (emb0, heldout_h) = second_moments(&original, &batch);
    let nn0 = nearest_other(&emb0);
    println!(
        "quality: model {} | calibration {} sentences ({:.1} s for H) | held-out {} sentences, {} tokens | {} threads",
        dir.display(),
        read_lines(Path::new("/work/shared/data/calib.txt")).len(),
        calib_seconds,
        heldout.len(),
        batch.ids.len(),
        rayon::current_num_threads()
    );
    println!();
    print_header();
    let mut rows = Vec::new();
    let mut diagnosis = None;
    for (index, (label, _)) in settings().iter().enumerate() {
        if only.as_ref().is_some_and(|re| !re.is_match(label)) {
            continue;
        }
        let c = run_setting(index, &calib_path, &work);
        let meta = |k: &str| c.meta[k].parse::<f64>().expect("number");
        let (mut we, mut oe) = (0.0, 0.0);
        let mut per_kind: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for name in &names {
            let w = &weights[name];
            let wh = &c.weights[name];
            we += relative_weight_error(w, wh);
            let o = relative_output_error(w, wh, &heldout_h[name]);
            oe += o;
            let kind = name
                .split('.')
                .skip(3)
                .take_while(|p| *p != "weight")
                .collect::<Vec<_>>()
                .join(".");
            let e = per_kind.entry(kind).or_default();
            e.0 += o;
            e.1 += 1;
        }
        let compressed = Bert {
            weights: &weights,
            replaced: Some(&c.weights),
        };
        let emb = compressed.encode(&batch, &mut |_, _| {});
        let cos: Vec<f64> = emb
            .rows()
            .into_iter()
            .zip(emb0.rows())
            .map(|(a, b)| a.dot(&b) as f64)
            .collect();
        let nn = nearest_other(&emb);
        let row = Row {
            label: label.clone(),
            bpw: meta("stored_bits") / meta("weights"),
            weight_err: we / names.len() as f64,
            output_err: oe / names.len() as f64,
            cosine: cos.iter().sum::<f64>() / cos.len() as f64,
            cosine_min: cos.iter().cloned().fold(f64::INFINITY, f64::min),
            top1: nn.iter().zip(&nn0).filter(|(a, b)| a == b).count() as f64 / nn.len() as f64,
            seconds: meta("seconds"),
            cpu_seconds: meta("cpu_seconds"),
            rss_loaded_mib: meta("rss_loaded_kib") / 1024.0,
            rss_peak_mib: meta("rss_peak_kib") / 1024.0,
            per_kind: per_kind
                .into_iter()
                .map(|(k, (s, n))| (k, s / n as f64))
                .collect(),
        };
        print_row(&row);
        rows.push(row);
        if label == DIAGNOSED {
            diagnosis = Some(diagnose(&weights, &c.weights, &batch, &emb0));
        }
    }
    println!();
    println!("Held-out relative output error by layer kind (mean over the 6 layers):");
    if let Some(first) = rows.first() {
        let kinds: Vec<&String> = first.per_kind.iter().map(|(k, _)| k).collect();
        print!("| {:<40} |", "setting");
        kinds.iter().for_each(|k| print!(" {:>22} |", k));
        println!();
        for r in &rows {
            print!("| {:<40} |", r.label);
            r.per_kind
                .iter()
                .for_each(|(_, v)| print!(" {:>22.4} |", v));
            println!();
        }
    }
    if let Some(d) = diagnosis {
        println!();
        println!("Where the error of '{DIAGNOSED}' comes from: held-out cosine when only some weights are compressed:");
        for (what, cos) in d {
            println!("| {what:<40} | {cos:>7.4} |");
        }
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// The setting whose error is broken down by layer kind and by layer.
const DIAGNOSED: &str = "JLCM 2b codebook G16";

/// Mean held-out cosine to the original when only the weights of one layer
/// kind, or of one layer, are replaced by their compressed versions.
fn diagnose(
    weights: &BTreeMap<String, Vec<f32>>,
    compressed: &BTreeMap<String, Vec<f32>>,
    batch: &Batch,
    emb0: &Array2<f32>,
) -> Vec<(String, f64)> {
    let mut subsets: Vec<(String, Vec<String>)> = Vec::new();
    for kind in LINEAR_SUFFIXES {
        subsets.push((
            format!("only {kind}"),
            (0..N_LAYERS)
                .map(|l| format!("encoder.layer.{l}.{kind}.weight"))
                .collect(),
        ));
    }
    for l in 0..N_LAYERS {
        subsets.push((
            format!("only layer {l}"),
            LINEAR_SUFFIXES
                .iter()
                .map(|k| format!("encoder.layer.{l}.{k}.weight"))
                .collect(),
        ));
    }
    subsets
        .into_iter()
        .map(|(what, names)| {
            let replaced: BTreeMap<String, Vec<f32>> = names
                .iter()
                .map(|n| (n.clone(), compressed[n].clone()))
                .collect();
            let emb = Bert {
                weights,
                replaced: Some(&replaced),
            }
            .encode(batch, &mut |_, _| {});
            let cos = emb
                .rows()
                .into_iter()
                .zip(emb0.rows())
                .map(|(a, b)| a.dot(&b) as f64)
                .sum::<f64>()
                / emb.nrows() as f64;
            (what, cos)
        })
        .collect()
}
