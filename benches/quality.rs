//! Quality of JLCM against baselines on the real all-MiniLM-L6-v2
//! (issue 2, point 10; ALGORITHM.md §7).
//!
//! `cargo bench --bench quality` (release build). The model folder comes from
//! `JLCM_MODEL_DIR` or `bash scripts/fetch-model.sh`'s default cache
//! (`~/.cache/jlcm/models/all-MiniLM-L6-v2`); the bench stops with a clear
//! message if it is absent. `JLCM_QUALITY_ONLY=REGEX` runs only the settings
//! whose label matches. `JLCM_QUALITY_PLAN=FILE[:DIM],...` adds a JLCM
//! setting per plan written by `jlcm compress --save-plan` (bits per weight,
//! e.g. a `--target-size` allocation), so a budget is scored beside the
//! baselines in the same run. `JLCM_QUALITY_ROTATE=1` runs every JLCM
//! setting with the input rotation (`jlcm compress --rotate`).
//!
//! What it does:
//! 1. Runs the original model (`jlcm::runtime::SentenceEncoder`, calibration
//!    by `jlcm::engine::calib::calibrate`) on the calibration sentences
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

use jlcm::engine::baselines::gptq::gptq_codebook_mapping;
use jlcm::engine::baselines::{
    gptq, kmeans_per_row, kmeans_per_tensor, rtn, GptqOptions, GroupOrder, Quantized,
};
use jlcm::engine::calib::{calibrate, CalibrationAccumulator, InputMeans};
use jlcm::engine::compress::{correct_bias, hessian_for, read_calibration, Calibration};
use jlcm::engine::finetune::{finetune, FinetuneOptions};
use jlcm::engine::sequential::{compress_sequential, SequentialOptions};
use jlcm::engine::{compress_matrix, CompressOptions, Control, Hessian, MoveRule};
use jlcm::format::packed::{Mode, PackedTensor};
use jlcm::format::safetensors::{self as st, Dtype, OwnedTensor, SafetensorsFile};
use jlcm::runtime::SentenceEncoder;
use ndarray::{Array2, ArrayView2};
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
/// RTN and GPTQ group size.
const GROUP: usize = 128;
/// Seed of every JLCM and k-means run.
const SEED: u64 = 0;

/// Encoder layer index of a weight name.
fn layer_of(name: &str) -> usize {
    name.split('.')
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX)
}

fn linear_names() -> Vec<String> {
    (0..N_LAYERS)
        .flat_map(|l| {
            LINEAR_SUFFIXES
                .iter()
                .map(move |s| format!("encoder.layer.{l}.{s}.weight"))
        })
        .collect()
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
    /// Experiment: JLCM's learned codebooks, then the mapping redone by a
    /// GPTQ sweep (act-order) onto each row's codebook. Same storage as JLCM.
    JlcmGptqMapping {
        bits: u8,
        iters: u32,
    },
    /// Experiment: JLCM codebook G16 with 3 bits on the weights `three_bit`
    /// picks and 2 bits elsewhere (a hand-made bit allocation).
    JlcmMixed {
        three_bit: fn(&str) -> bool,
    },
    /// JLCM codebook G16 with the bits of each weight taken from a plan
    /// written by `jlcm compress --save-plan` (e.g. a size budget allocated
    /// by sensitivity), at codeword dimension `dim`.
    JlcmPlan {
        plan: BTreeMap<String, u8>,
        dim: u8,
    },
    /// [`Method::JlcmPlan`] (d = 1), then the codebooks and biases tuned end
    /// to end on the calibration sentences (`jlcm::engine::finetune`).
    JlcmPlanTuned {
        plan: BTreeMap<String, u8>,
        tune: FinetuneOptions,
    },
    /// JLCM codebook G16 with sequential, target-corrected calibration
    /// (`jlcm::engine::sequential`): the weights in forward order, each fitted
    /// to the original outputs from the compressed model's inputs on the
    /// calibration sentences. Bits from `plan`, or `bits` for every weight.
    /// `refit_bias`: also refit each bias (an affine fit; the biases are
    /// written beside the weights and replace the original ones).
    JlcmSequential {
        plan: Option<BTreeMap<String, u8>>,
        bits: u8,
        refit_bias: bool,
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
    // Experiments for the engine (after the settings, so indices stay put).
    v.push((
        "JLCM 2b codebook G16 iters 30".into(),
        Method::Jlcm {
            bits: 2,
            mode: Mode::Codebook,
            moves: MoveRule::Proximal,
            iters: 30,
        },
    ));
    for bits in [2u8, 3] {
        v.push((
            format!("exp: JLCM {bits}b codebooks + GPTQ mapping"),
            Method::JlcmGptqMapping {
                bits,
                iters: default_iters,
            },
        ));
    }
    v.push((
        "exp: JLCM 2/3b: value, late ffn/attn-out 3b".into(),
        Method::JlcmMixed {
            three_bit: |n| {
                n.contains(".value.")
                    || (layer_of(n) >= 4 && n.contains("intermediate"))
                    || (layer_of(n) >= 3 && n.contains("attention.output"))
            },
        },
    ));
    v.push((
        "exp: JLCM 2/3b: layer 5 + value 3b".into(),
        Method::JlcmMixed {
            three_bit: |n| layer_of(n) == 5 || n.contains(".value."),
        },
    ));
    for bits in [2u8, 3] {
        v.push((
            format!("JLCM {bits}b codebook G16 sequential"),
            Method::JlcmSequential {
                plan: None,
                bits,
                refit_bias: false,
            },
        ));
    }
    // Plans from the CLI's size budget: `JLCM_QUALITY_PLAN=FILE[:DIM],...`.
    if let Ok(list) = std::env::var("JLCM_QUALITY_PLAN") {
        for item in list.split(',').filter(|s| !s.is_empty()) {
            let (path, dim) = match item.rsplit_once(':') {
                Some((p, d)) => (p, d.parse().expect("JLCM_QUALITY_PLAN: FILE[:DIM]")),
                None => (item, 1u8),
            };
            let text = std::fs::read_to_string(path).expect("read JLCM_QUALITY_PLAN file");
            let plan: BTreeMap<String, u8> =
                serde_json::from_str(&text).expect("JLCM_QUALITY_PLAN: a JSON object of bits");
            let name = Path::new(path)
                .file_stem()
                .map_or(String::new(), |s| s.to_string_lossy().into_owned());
            v.push((
                format!("JLCM plan {name} d{dim}"),
                Method::JlcmPlan {
                    plan: plan.clone(),
                    dim,
                },
            ));
            if dim == 1 {
                v.push((
                    format!("JLCM plan {name} d1 tuned"),
                    Method::JlcmPlanTuned {
                        plan: plan.clone(),
                        tune: tune_options(),
                    },
                ));
                for refit_bias in [false, true] {
                    v.push((
                        format!(
                            "JLCM plan {name} d1 sequential{}",
                            if refit_bias { " + bias" } else { "" }
                        ),
                        Method::JlcmSequential {
                            plan: Some(plan.clone()),
                            bits: 2,
                            refit_bias,
                        },
                    ));
                }
            }
        }
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

// ---------------------------------------------------------------- model runs (jlcm::runtime)

/// The original model file's bytes and the files next to it.
struct ModelFiles {
    config: String,
    tokenizer: Vec<u8>,
    weights: Vec<u8>,
}

impl ModelFiles {
    fn read(dir: &Path) -> Self {
        Self {
            config: std::fs::read_to_string(dir.join("config.json")).expect("read config.json"),
            tokenizer: std::fs::read(dir.join("tokenizer.json")).expect("read tokenizer.json"),
            weights: std::fs::read(dir.join("model.safetensors")).expect("read model.safetensors"),
        }
    }

    /// The runtime's sentence encoder on the original weights with some
    /// F32 tensors replaced (dense safetensors, so every method runs the same
    /// dense path).
    fn encoder(&self, replaced: &BTreeMap<String, Vec<f32>>) -> SentenceEncoder {
        let file = SafetensorsFile::parse(&self.weights).expect("parse model.safetensors");
        let tensors: Vec<(String, OwnedTensor)> = file
            .header
            .tensors
            .iter()
            .map(|t| {
                let data = match replaced.get(&t.name) {
                    Some(v) => st::from_f32(t.dtype, v),
                    None => file.tensor_bytes(t).to_vec(),
                };
                (
                    t.name.clone(),
                    OwnedTensor {
                        dtype: t.dtype,
                        shape: t.shape.clone(),
                        data,
                    },
                )
            })
            .collect();
        let bytes = st::write(&tensors, &file.header.metadata).expect("serialise weights");
        SentenceEncoder::from_bytes(&self.config, &self.tokenizer, &bytes)
            .expect("load the runtime encoder")
    }
}

/// Sentence embeddings (`n x hidden`, mean-pooled, L2-normalised).
fn embed(encoder: &SentenceEncoder, sentences: &[String]) -> Array2<f32> {
    let v = encoder
        .embed_batched(sentences, EMBED_BATCH, &mut |_| {})
        .expect("embed");
    Array2::from_shape_vec((sentences.len(), encoder.hidden_size()), v).expect("embedding shape")
}

/// Sentences per runtime batch.
const EMBED_BATCH: usize = 32;

// ---------------------------------------------------------------- calibration

/// The calibration sentences (`JLCM_CALIB_TEXT` or the shared calib.txt).
fn calib_text_path() -> PathBuf {
    std::env::var_os("JLCM_CALIB_TEXT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/data/calib.txt"))
}

/// Calibration matrices `XᵀX / n` for the 36 Linear weights, from the
/// calibration sentences, with the project's calibration helper.
fn calibration(encoder: &SentenceEncoder) -> Calibration {
    calibrate(
        encoder,
        &read_lines(&calib_text_path()),
        EMBED_BATCH,
        &mut |_| {},
    )
    .expect("calibrate")
}

/// Mean inputs `E[x]` of the 36 Linear weights on the calibration sentences.
fn calibration_means(encoder: &SentenceEncoder) -> InputMeans {
    let ids = encoder
        .tokenizer
        .encode_all(&read_lines(&calib_text_path()))
        .expect("tokenise calibration sentences");
    let mut acc = CalibrationAccumulator::new();
    for chunk in ids.chunks(EMBED_BATCH) {
        encoder
            .model
            .embed_observed(chunk, Some(&mut acc))
            .expect("calibration pass");
    }
    acc.means()
}

/// Held-out second moments by weight name, as matrices.
fn heldout_moments(
    encoder: &SentenceEncoder,
    sentences: &[String],
) -> BTreeMap<String, Array2<f32>> {
    let c = calibrate(encoder, sentences, EMBED_BATCH, &mut |_| {}).expect("held-out moments");
    c.into_iter()
        .map(|(n, (shape, v))| {
            (
                n,
                Array2::from_shape_vec((shape[0], shape[1]), v).expect("square"),
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

/// Compress one weight with JLCM under its calibrated H.
fn jlcm_one(
    name: &str,
    w: &[f32],
    n_out: usize,
    n_in: usize,
    calib: &Calibration,
    opts: &CompressOptions,
) -> Quantized {
    let packed = jlcm_packed(name, w, n_out, n_in, calib, opts);
    Quantized {
        n_out,
        n_in,
        weights: packed.decode_f32(),
        stored_bits: packed.stored_bits(),
    }
}

/// [`jlcm_one`], the packed tensor.
fn jlcm_packed(
    name: &str,
    w: &[f32],
    n_out: usize,
    n_in: usize,
    calib: &Calibration,
    opts: &CompressOptions,
) -> PackedTensor {
    let h = hessian_for(name, n_in, Some(calib), opts.damping).expect("calibration H");
    let (packed, _) = compress_matrix(
        name,
        Dtype::F32,
        &[n_out, n_in],
        w,
        n_out,
        n_in,
        &h,
        opts,
        &mut |_| Control::Continue,
    )
    .expect("compress");
    packed
}

/// End-to-end tuning of the `JLCM plan … tuned` settings: the defaults, or
/// `JLCM_QUALITY_TUNE=STEPS,LR[,BATCH[,EMBEDDING_WEIGHT]]`.
fn tune_options() -> FinetuneOptions {
    let mut o = FinetuneOptions::default();
    if let Ok(v) = std::env::var("JLCM_QUALITY_TUNE") {
        let f: Vec<&str> = v.split(',').collect();
        o.steps = f[0].parse().expect("JLCM_QUALITY_TUNE steps");
        if let Some(lr) = f.get(1) {
            o.lr = lr.parse().expect("JLCM_QUALITY_TUNE lr");
        }
        if let Some(b) = f.get(2) {
            o.batch_size = b.parse().expect("JLCM_QUALITY_TUNE batch");
        }
        if let Some(a) = f.get(3) {
            o.embedding_weight = a.parse().expect("JLCM_QUALITY_TUNE embedding weight");
        }
    }
    o
}

/// The engine defaults of every JLCM setting, with the input rotation
/// (`CompressOptions::rotate`, `jlcm compress --rotate`) when
/// `JLCM_QUALITY_ROTATE=1`.
fn bench_defaults() -> CompressOptions {
    CompressOptions {
        rotate: std::env::var("JLCM_QUALITY_ROTATE").is_ok_and(|v| v == "1"),
        ..CompressOptions::default()
    }
}

/// Groups of the `JLCM plan` settings: 16, or `JLCM_QUALITY_GROUPS`.
fn plan_groups() -> u16 {
    std::env::var("JLCM_QUALITY_GROUPS")
        .map_or(16, |g| g.parse().expect("JLCM_QUALITY_GROUPS: a number"))
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
                ..bench_defaults()
            };
            jlcm_one(name, w, n_out, n_in, calib, &opts)
        }
        Method::JlcmPlan { ref plan, dim } => {
            let opts = CompressOptions {
                bits: plan[name],
                dim,
                groups: plan_groups(),
                seed: SEED,
                ..bench_defaults()
            };
            jlcm_one(name, w, n_out, n_in, calib, &opts)
        }
        Method::JlcmMixed { three_bit } => {
            let bits = if three_bit(name) { 3 } else { 2 };
            let jlcm = Method::Jlcm {
                bits,
                mode: Mode::Codebook,
                moves: MoveRule::Proximal,
                iters: CompressOptions::default().iters,
            };
            compress_one(name, w, n_out, n_in, calib, &jlcm)
        }
        Method::JlcmGptqMapping { bits, iters } => {
            let opts = CompressOptions {
                bits,
                iters,
                groups: 16,
                dim: 1,
                seed: SEED,
                ..bench_defaults()
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
            let book = |r: usize| -> Vec<f32> {
                let g = packed.group_ids[r] as usize;
                let mut cb: Vec<f32> = packed
                    .codebook(packed.codebook_of_group(g))
                    .iter()
                    .map(|c| packed.scale(g) * c.to_f32())
                    .collect();
                cb.sort_by(|a, b| a.total_cmp(b));
                cb
            };
            let weights = gptq_codebook_mapping(w, n_out, n_in, &raw_h(), true, 0.01, &book);
            Quantized {
                n_out,
                n_in,
                weights,
                stored_bits: packed.stored_bits(),
            }
        }
        Method::JlcmSequential { .. } => unreachable!("run by sequential_all"),
        Method::JlcmPlanTuned { .. } => unreachable!("run by tuned_all"),
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

/// All 36 weights by sequential calibration on the calibration sentences
/// (the model runs inside, so the given `H` are not used).
fn sequential_all(
    dir: &Path,
    plan: Option<&BTreeMap<String, u8>>,
    bits: u8,
    refit_bias: bool,
) -> Vec<(String, Quantized)> {
    let encoder = ModelFiles::read(dir).encoder(&BTreeMap::new());
    let ids = encoder
        .tokenizer
        .encode_all(&read_lines(&calib_text_path()))
        .expect("tokenise calibration sentences");
    let opts = CompressOptions {
        groups: 16,
        dim: 1,
        seed: SEED,
        ..bench_defaults()
    };
    let names = linear_names();
    let bits_of = |n: &str| {
        names
            .iter()
            .any(|x| x == n)
            .then(|| plan.map_or(bits, |p| p[n]))
    };
    let out = compress_sequential(
        &encoder.model,
        &ids,
        &opts,
        &SequentialOptions {
            refit_bias,
            ..SequentialOptions::default()
        },
        &bits_of,
        &mut |_| Control::Continue,
    )
    .expect("sequential calibration");
    let mut v = Vec::new();
    for (n, r) in out {
        if let Some(b) = r.bias {
            // Not a weight: left out of the bit count (`is_bias`).
            let bias = Quantized {
                n_out: b.len(),
                n_in: 1,
                weights: b,
                stored_bits: 0,
            };
            v.push((n.replace(".weight", ".bias"), bias));
        }
        let q = Quantized {
            n_out: r.packed.n_out,
            n_in: r.packed.n_in,
            weights: r.packed.decode_f32(),
            stored_bits: r.packed.stored_bits(),
        };
        v.push((n, q));
    }
    v
}

/// All 36 weights by `plan` (d = 1, G16), then tuned end to end on the
/// calibration sentences; the tuned biases come back as `….bias` entries.
fn tuned_all(
    dir: &Path,
    weights: &BTreeMap<String, Vec<f32>>,
    calib: &Calibration,
    plan: &BTreeMap<String, u8>,
    tune: &FinetuneOptions,
) -> Vec<(String, Quantized)> {
    let names = linear_names();
    let mut packed: BTreeMap<String, PackedTensor> = names
        .par_iter()
        .map(|name| {
            let w = &weights[name];
            let n_in = calib[name].0[0];
            let opts = CompressOptions {
                bits: plan[name],
                dim: 1,
                groups: plan_groups(),
                seed: SEED,
                ..bench_defaults()
            };
            let p = jlcm_packed(name, w, w.len() / n_in, n_in, calib, &opts);
            (name.clone(), p)
        })
        .collect();
    let encoder = ModelFiles::read(dir).encoder(&BTreeMap::new());
    let ids = encoder
        .tokenizer
        .encode_all(&read_lines(&calib_text_path()))
        .expect("tokenise calibration sentences");
    let (dense, rep) = finetune(&encoder.model, &ids, &mut packed, tune, &mut |s, l| {
        if s % 4 == 1 {
            eprintln!("tune step {s}: batch loss {l:.5}");
        }
        Control::Continue
    })
    .expect("finetune");
    eprintln!(
        "tuned {} steps (lr {}, batch {}, embedding weight {}): calibration loss {:.5} -> {:.5}{}",
        rep.step_losses.len(),
        tune.lr,
        tune.batch_size,
        tune.embedding_weight,
        rep.initial_loss,
        rep.final_loss,
        if rep.kept { "" } else { " (not kept)" }
    );
    // The tuned dense tensors (biases, LayerNorms): not weights, left out of the bit count.
    let mut v: Vec<(String, Quantized)> = dense
        .into_iter()
        .map(|(n, b)| {
            let q = Quantized {
                n_out: b.len(),
                n_in: 1,
                weights: b,
                stored_bits: 0,
            };
            (n, q)
        })
        .collect();
    for (n, p) in packed {
        let q = Quantized {
            n_out: p.n_out,
            n_in: p.n_in,
            weights: p.decode_f32(),
            stored_bits: p.stored_bits(),
        };
        v.push((n, q));
    }
    v
}

/// Child process: compress all 36 weights with setting `index`, write the
/// dequantised weights and the figures to `out`.
fn run_child(index: usize, calib_path: &Path, out: &Path) {
    let dir = model_dir();
    let names = linear_names();
    let weights = load_weights(&dir, Some(&names));
    let mut calib = read_calibration(&std::fs::read(calib_path).expect("read calibration"))
        .expect("parse calibration");
    if std::env::var_os("JLCM_QUALITY_CENTER").is_some() {
        // Experiment: fit under the covariance H - μμᵀ (bias correction absorbs the mean).
        for name in &names {
            let mu = calib[&format!("{name}.mean")].1.clone();
            let n = mu.len();
            let h = &mut calib.get_mut(name).expect("H").1;
            for i in 0..n {
                for j in 0..n {
                    h[i * n + j] -= mu[i] * mu[j];
                }
            }
        }
    }
    let (_, method) = &settings()[index];
    let rss_loaded = vm_hwm_kib();
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let results: Vec<(String, Quantized)> = if let Method::JlcmSequential {
        plan,
        bits,
        refit_bias,
    } = method
    {
        sequential_all(&dir, plan.as_ref(), *bits, *refit_bias)
    } else if let Method::JlcmPlanTuned { plan, tune } = method {
        tuned_all(&dir, &weights, &calib, plan, tune)
    } else {
        names
            .par_iter()
            .map(|name| {
                let w = &weights[name];
                let n_in = calib[name].0[0];
                (
                    name.clone(),
                    compress_one(name, w, w.len() / n_in, n_in, &calib, method),
                )
            })
            .collect()
    };
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    let rss_peak = vm_hwm_kib();
    let is_bias = |n: &str| !linear_names().iter().any(|w| w == n);
    let stored: u64 = results.iter().map(|(_, q)| q.stored_bits).sum();
    let n_weights: usize = results
        .iter()
        .filter(|(n, _)| !is_bias(n))
        .map(|(_, q)| q.weights.len())
        .sum();
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
    let files = ModelFiles::read(&dir);
    let weights = load_weights(&dir, Some(&linear_names()));
    let names = linear_names();
    let heldout_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/heldout.txt");
    let heldout = read_lines(&heldout_path);

    let original = files.encoder(&BTreeMap::new());
    let t = Instant::now();
    let calib = calibration(&original);
    let calib_seconds = t.elapsed().as_secs_f64();
    let work = std::env::temp_dir().join(format!("jlcm-quality-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let calib_path = work.join("calib.safetensors");
    let means = calibration_means(&original);
    let mut calib_file = calib.clone();
    for (name, mu) in &means {
        calib_file.insert(format!("{name}.mean"), (vec![mu.len()], mu.clone()));
    }
    write_calibration(&calib_file, &calib_path);
    let bias_names: Vec<String> = names
        .iter()
        .map(|n| n.replace(".weight", ".bias"))
        .collect();
    let biases = load_weights(&dir, Some(&bias_names));

    let emb0 = embed(&original, &heldout);
    let heldout_h = heldout_moments(&original, &heldout);
    let heldout_tokens: usize = original
        .tokenizer
        .encode_all(&heldout)
        .expect("tokenize")
        .iter()
        .map(Vec::len)
        .sum();
    let nn0 = nearest_other(&emb0);
    println!(
        "quality: model {} | calibration {} sentences ({:.1} s for H) | held-out {} sentences, {} tokens | {} threads",
        dir.display(),
        read_lines(Path::new("/work/shared/data/calib.txt")).len(),
        calib_seconds,
        heldout.len(),
        heldout_tokens,
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
        let (cosine, cosine_min, top1) =
            agreement(&embed(&files.encoder(&c.weights), &heldout), &emb0, &nn0);
        let row = Row {
            label: label.clone(),
            bpw: meta("stored_bits") / meta("weights"),
            weight_err: we / names.len() as f64,
            output_err: oe / names.len() as f64,
            cosine,
            cosine_min,
            top1,
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
        if std::env::var_os("JLCM_QUALITY_BIAS").is_some() {
            // Experiment: the same weights with b += (W - Ŵ) E[x].
            let mut replaced = c.weights.clone();
            for (name, bias_name) in names.iter().zip(&bias_names) {
                let mut b = biases[bias_name].clone();
                correct_bias(&mut b, &weights[name], &c.weights[name], &means[name]);
                replaced.insert(bias_name.clone(), b);
            }
            let (cos, min, top1) =
                agreement(&embed(&files.encoder(&replaced), &heldout), &emb0, &nn0);
            println!("|   + bias correction: cosine {cos:.4} (min {min:.4}), top-1 {top1:.3}");
        }
        rows.push(row);
        if label == DIAGNOSED {
            diagnosis = Some(diagnose(&files, &c.weights, &heldout, &emb0));
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

/// Against the original embeddings `emb0` (and their nearest other
/// sentences `nn0`): mean and min cosine, and top-1 agreement.
fn agreement(emb: &Array2<f32>, emb0: &Array2<f32>, nn0: &[usize]) -> (f64, f64, f64) {
    let cos: Vec<f64> = emb
        .rows()
        .into_iter()
        .zip(emb0.rows())
        .map(|(a, b)| a.dot(&b) as f64)
        .collect();
    let nn = nearest_other(emb);
    (
        cos.iter().sum::<f64>() / cos.len() as f64,
        cos.iter().cloned().fold(f64::INFINITY, f64::min),
        nn.iter().zip(nn0).filter(|(a, b)| a == b).count() as f64 / nn.len() as f64,
    )
}

/// The setting whose error is broken down by layer kind and by layer.
const DIAGNOSED: &str = "JLCM 2b codebook G16";

/// Mean held-out cosine to the original when only the weights of one layer
/// kind, or of one layer, are replaced by their compressed versions.
fn diagnose(
    files: &ModelFiles,
    compressed: &BTreeMap<String, Vec<f32>>,
    heldout: &[String],
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
            let emb = embed(&files.encoder(&replaced), heldout);
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
