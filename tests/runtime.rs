//! The runtime on the real all-MiniLM-L6-v2: against sentence-transformers,
//! packed vs decoded-dense weights, and calibration matrices.
//!
//! The model comes from the cache that `scripts/fetch-model.sh` fills
//! (`$JLCM_MODEL_DIR`, else `$JLCM_CACHE/models/all-MiniLM-L6-v2`, else
//! `~/.cache/jlcm/models/all-MiniLM-L6-v2`). Without it these tests fail,
//! unless `JLCM_SKIP_MODEL_TESTS=1` says to skip them.

use std::path::PathBuf;

use jlcm::engine::calib::{
    calibrate, calibration_to_safetensors, calibration_with_sensitivity_to_safetensors,
    sensitivities_from_metadata, Sensitivities, SensitivityProbe,
};
use jlcm::engine::compress::hessian_for;
use jlcm::engine::{compress_file, CompressOptions, Control};
use jlcm::format::packed::PackedFile;
use jlcm::runtime::{npy, BertModel, LinearWeight, PackedStrategy, SentenceEncoder};

/// Max abs difference to sentence-transformers (f32 on both sides, different summation orders).
const REFERENCE_BUDGET: f32 = 1e-4;
/// Cosine of packed-kernel embeddings to decoded-dense embeddings.
const PACKED_COSINE_BUDGET: f32 = 0.9999;
/// Max abs difference of packed-kernel to decoded-dense embeddings.
const PACKED_ABS_BUDGET: f32 = 1e-4;

struct Model {
    dir: PathBuf,
    config: String,
    tokenizer: Vec<u8>,
    weights: Vec<u8>,
}

fn model_dir() -> PathBuf {
    if let Ok(d) = std::env::var("JLCM_MODEL_DIR") {
        return d.into();
    }
    let cache = std::env::var("JLCM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/jlcm")
        });
    cache.join("models/all-MiniLM-L6-v2")
}

/// The cached model, `None` when absent and skipping is allowed; panics otherwise.
fn load_model() -> Option<Model> {
    let dir = model_dir();
    if !dir.join("model.safetensors").is_file() {
        if std::env::var("JLCM_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
            eprintln!(
                "skipping: no model at {} (JLCM_SKIP_MODEL_TESTS=1)",
                dir.display()
            );
            return None;
        }
        panic!(
            "the real model is not at {}: run `bash scripts/fetch-model.sh` first, or set JLCM_SKIP_MODEL_TESTS=1 to skip",
            dir.display()
        );
    }
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("reading {f}: {e}"));
    Some(Model {
        config: String::from_utf8(read("config.json")).unwrap(),
        tokenizer: read("tokenizer.json"),
        weights: read("model.safetensors"),
        dir,
    })
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn sentences() -> Vec<String> {
    String::from_utf8(data("st_sentences.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn dense_embeddings_match_sentence_transformers() {
    let Some(m) = load_model() else { return };
    let encoder = SentenceEncoder::from_bytes(&m.config, &m.tokenizer, &m.weights).unwrap();
    let texts = sentences();
    let (shape, want) = npy::read_f32(&data("st_reference.npy")).unwrap();
    assert_eq!(shape, vec![texts.len(), 384]);
    // The last sentence is longer than 256 tokens: truncation is tested too.
    assert_eq!(encoder.tokenizer.encode(&texts[15]).unwrap().len(), 256);
    // One batch, and batches of 5 (other sentence groupings), agree with the reference.
    let got = encoder.embed(&texts).unwrap();
    let diff = max_abs_diff(&got, &want);
    assert!(
        diff <= REFERENCE_BUDGET,
        "max abs diff to sentence-transformers {diff} > {REFERENCE_BUDGET} ({})",
        m.dir.display()
    );
    let batched = encoder.embed_batched(&texts, 5, &mut |_| {}).unwrap();
    assert!(max_abs_diff(&batched, &want) <= REFERENCE_BUDGET);
    // A padded batch with an attention mask gives the same as the ragged one.
    let ids = encoder.tokenizer.encode_all(&texts[..3]).unwrap();
    let seq = ids.iter().map(Vec::len).max().unwrap();
    let mut input_ids = vec![0u32; 3 * seq];
    let mut mask = vec![0u32; 3 * seq];
    for (b, s) in ids.iter().enumerate() {
        input_ids[b * seq..b * seq + s.len()].copy_from_slice(s);
        mask[b * seq..b * seq + s.len()].fill(1);
    }
    let padded = encoder
        .model
        .embed_padded(&input_ids, &mask, 3, seq)
        .unwrap();
    assert!(max_abs_diff(&padded, &want[..3 * 384]) <= REFERENCE_BUDGET);
}

#[test]
fn packed_embeddings_match_decoded_dense() {
    let Some(m) = load_model() else { return };
    // All 36 Linear weights at 2 bits, initialisation plus one sweep (quality is not the point here).
    let opts = CompressOptions {
        bits: 2,
        groups: 4,
        iters: 1,
        ..Default::default()
    };
    let filter = regex::Regex::new(r"^encoder\.layer\.\d+\..*dense\.weight$|^encoder\.layer\.\d+\.attention\.self\.(query|key|value)\.weight$").unwrap();
    let (packed, reports) = compress_file(&m.weights, None, &opts, Some(&filter), &mut |_| {
        Control::Continue
    })
    .unwrap();
    assert_eq!(reports.len(), 36);
    let packed_bytes = packed.to_bytes().unwrap();
    let dense_bytes = PackedFile::from_bytes(&packed_bytes)
        .unwrap()
        .decode()
        .unwrap();

    let mut on_packed = BertModel::from_safetensors(&m.config, &packed_bytes).unwrap();
    assert_eq!(on_packed.packed_linear_count(), (36, 36));
    let on_dense = BertModel::from_safetensors(&m.config, &dense_bytes).unwrap();
    assert_eq!(on_dense.packed_linear_count(), (0, 36));
    // Packed Linear weights store ~2.3 bits per weight; with the kernels'
    // prepared layout and f32 codebooks they still hold far less than a dense copy.
    let stored = |m: &BertModel| {
        m.linears()
            .map(|l| match &l.weight {
                LinearWeight::Dense { wt } => 4 * wt.len(),
                LinearWeight::Packed { matrix, .. } => matrix.packed_bytes(),
            })
            .sum::<usize>()
    };
    let held = |m: &BertModel| m.linears().map(|l| l.weight_bytes()).sum::<usize>();
    assert!(
        stored(&on_packed) * 10 < stored(&on_dense),
        "packed bytes {} vs dense {}",
        stored(&on_packed),
        stored(&on_dense)
    );
    assert!(
        held(&on_packed) * 4 < held(&on_dense),
        "packed model holds {} bytes: a dense copy?",
        held(&on_packed)
    );

    let encoder = SentenceEncoder::from_bytes(&m.config, &m.tokenizer, &m.weights).unwrap();
    let ids = encoder.tokenizer.encode_all(&sentences()).unwrap();
    let b = on_dense.embed(&ids).unwrap();
    for strategy in [
        PackedStrategy::Kernel,
        PackedStrategy::DecodePanels,
        PackedStrategy::Auto,
    ] {
        on_packed.set_packed_strategy(strategy);
        let a = on_packed.embed(&ids).unwrap();
        for (i, (x, y)) in a.chunks(384).zip(b.chunks(384)).enumerate() {
            let c = cosine(x, y);
            assert!(
                c >= PACKED_COSINE_BUDGET,
                "{strategy:?}, sentence {i}: cosine packed vs decoded {c}"
            );
        }
        let diff = max_abs_diff(&a, &b);
        assert!(
            diff <= PACKED_ABS_BUDGET,
            "{strategy:?}: max abs diff packed vs decoded {diff}"
        );
    }
}

#[test]
fn calibration_matrices_are_symmetric_psd_with_the_right_shapes() {
    let Some(m) = load_model() else { return };
    let encoder = SentenceEncoder::from_bytes(&m.config, &m.tokenizer, &m.weights).unwrap();
    let texts = &sentences()[..6];
    let calib = calibrate(&encoder, texts, 4, &mut |_| {}).unwrap();
    assert_eq!(calib.len(), 36);
    for l in 0..6 {
        for (w, n_in) in [
            ("attention.self.query", 384),
            ("attention.self.key", 384),
            ("attention.self.value", 384),
            ("attention.output.dense", 384),
            ("intermediate.dense", 384),
            ("output.dense", 1536),
        ] {
            let name = format!("encoder.layer.{l}.{w}.weight");
            let (shape, h) = calib
                .get(&name)
                .unwrap_or_else(|| panic!("no matrix for {name}"));
            assert_eq!(shape, &vec![n_in, n_in], "{name}");
            for i in 0..n_in {
                assert!(h[i * n_in + i] >= 0.0, "{name}: negative diagonal");
                for j in 0..i {
                    assert_eq!(
                        h[i * n_in + j],
                        h[j * n_in + i],
                        "{name}: not symmetric at {i},{j}"
                    );
                }
            }
            assert_psd(&name, h, n_in);
        }
    }
    // q, k and v read the same input.
    assert_eq!(
        calib["encoder.layer.0.attention.self.query.weight"],
        calib["encoder.layer.0.attention.self.value.weight"]
    );
    // Round trip through the file the engine reads.
    let bytes = calibration_to_safetensors(&calib).unwrap();
    let back = jlcm::engine::compress::read_calibration(&bytes).unwrap();
    assert_eq!(back, calib);
}

#[test]
fn calibration_from_token_ids_matches_text_and_cancels() {
    use jlcm::engine::calib::calibrate_tokens;
    use jlcm::engine::Control;
    let Some(m) = load_model() else { return };
    let encoder = SentenceEncoder::from_bytes(&m.config, &m.tokenizer, &m.weights).unwrap();
    let texts = &sentences()[..5];
    let from_text = calibrate(&encoder, texts, 2, &mut |_| {}).unwrap();
    let ids = encoder.tokenizer.encode_all(texts).unwrap();
    let mut seen = Vec::new();
    let from_ids = calibrate_tokens(&encoder.model, &ids, 2, &mut |done| {
        seen.push(done);
        Control::Continue
    })
    .unwrap()
    .expect("not cancelled");
    // The entry the npm package's core module uses gives the same bytes.
    assert_eq!(
        calibration_to_safetensors(&from_ids).unwrap(),
        calibration_to_safetensors(&from_text).unwrap()
    );
    assert_eq!(seen, vec![2, 4, 5]);
    let mut batches = 0;
    let cancelled = calibrate_tokens(&encoder.model, &ids, 2, &mut |_| {
        batches += 1;
        Control::Cancel
    })
    .unwrap();
    assert!(cancelled.is_none());
    assert_eq!(batches, 1, "stops after the batch that asked to cancel");
}

/// Positive semi-definite up to f32 rounding: Cholesky (in f64) of
/// `H + n·ε_f32·trace(H)·I` succeeds. With a few sentences `H` is rank-deficient,
/// and its zero eigenvalues come out as ± (rounding of order n·ε·‖H‖ ≤ n·ε·trace).
fn assert_psd(name: &str, h: &[f32], n: usize) {
    let trace = (0..n).map(|i| h[i * n + i] as f64).sum::<f64>();
    let jitter = n as f64 * f32::EPSILON as f64 * trace.max(1e-30);
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = h[i * n + j] as f64 + if i == j { jitter } else { 0.0 };
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                assert!(
                    s > 0.0,
                    "{name}: not positive semi-definite (pivot {s} at {i})"
                );
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
}

#[test]
fn sensitivity_probe_ranks_value_above_query_and_restores_the_model() {
    let Some(m) = load_model() else { return };
    let mut enc = SentenceEncoder::from_bytes(&m.config, &m.tokenizer, &m.weights).unwrap();
    let texts = sentences();
    let calib = calibrate(&enc, &texts, 8, &mut |_| {}).unwrap();
    let probe = SensitivityProbe::new(&enc, &texts, 8).unwrap();
    let before = enc.embed(&texts).unwrap();
    let opts = CompressOptions::default();
    let mut per_loss = Vec::new();
    for kind in ["attention.self.query", "attention.self.value"] {
        let name = format!("encoder.layer.5.{kind}.weight");
        let h = hessian_for(&name, 384, Some(&calib), opts.damping).unwrap();
        let s = probe.measure(&mut enc.model, &name, &h, &opts).unwrap();
        assert!(s.loss > 0.0 && s.distortion > 0.0, "{name}: {s:?}");
        assert!(
            s.distortion < 0.1,
            "{name}: one 2-bit layer moved the embeddings by {s:?}"
        );
        per_loss.push(s.per_loss());
    }
    // The finding the size budget relies on: per unit of calibrated loss,
    // a value projection moves the embeddings far more than a query one.
    assert!(
        per_loss[1] > 5.0 * per_loss[0],
        "value {} vs query {}",
        per_loss[1],
        per_loss[0]
    );
    // The probe put the original weights back.
    assert_eq!(enc.embed(&texts).unwrap(), before);
    // Sensitivities survive the calibration file.
    let mut sens = Sensitivities::new();
    sens.insert(
        "x".into(),
        jlcm::engine::calib::Sensitivity {
            loss: 2.0,
            distortion: 0.5,
        },
    );
    let bytes = calibration_with_sensitivity_to_safetensors(&calib, Some(&sens)).unwrap();
    let file = jlcm::format::safetensors::SafetensorsFile::parse(&bytes).unwrap();
    assert_eq!(
        sensitivities_from_metadata(&file.header.metadata).unwrap(),
        Some(sens)
    );
}

/// The texts whose token ids `tests/data/token_ids.json` records: the tricky
/// cases of `tokenizer_cases.json` (accents, CJK, emoji, control characters,
/// longer than 256 tokens, the empty string) then every held-out line.
fn tokenizer_texts() -> Vec<String> {
    let mut texts: Vec<String> =
        serde_json::from_slice(&data("tokenizer_cases.json")).expect("tokenizer_cases.json");
    texts.extend(
        String::from_utf8(data("heldout.txt"))
            .unwrap()
            .lines()
            .map(String::from),
    );
    texts
}

/// The `tokenizers` crate's ids for `tokenizer_texts()` are the ones recorded
/// in `tests/data/token_ids.json`, which the package's JavaScript tokenizer is
/// tested against (`tests/consumer/tokenizer.mjs`). `JLCM_BLESS_TOKEN_IDS=1`
/// rewrites the file from the crate instead of checking it.
#[test]
fn tokenizer_ids_match_the_recorded_reference() {
    let Some(m) = load_model() else { return };
    let tok = jlcm::runtime::SentenceTokenizer::from_bytes(&m.tokenizer, 256).unwrap();
    let texts = tokenizer_texts();
    let ids = tok.encode_all(&texts).unwrap();
    assert!(
        ids.iter().any(|s| s.len() == 256),
        "a case must hit truncation"
    );
    assert!(
        ids.iter().any(|s| s.len() == 2),
        "the empty case gives [CLS] [SEP]"
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/token_ids.json");
    if std::env::var("JLCM_BLESS_TOKEN_IDS").as_deref() == Ok("1") {
        let body = serde_json::json!({
            "tokenizer": "tokenizers crate, all-MiniLM-L6-v2 tokenizer.json, max 256 tokens",
            "ids": ids,
        });
        std::fs::write(&path, serde_json::to_string(&body).unwrap() + "\n").unwrap();
        return;
    }
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let recorded: Vec<Vec<u32>> = serde_json::from_value(recorded["ids"].clone()).unwrap();
    assert_eq!(recorded.len(), texts.len(), "one id list per text");
    for (i, (got, want)) in ids.iter().zip(&recorded).enumerate() {
        assert_eq!(got, want, "token ids of text {i}: {:?}", texts[i]);
    }
}

#[test]
fn layer_by_layer_forward_equals_embed() {
    let Some(m) = load_model() else { return };
    let encoder = SentenceEncoder::from_bytes(&m.config, &m.tokenizer, &m.weights).unwrap();
    let ids = encoder.tokenizer.encode_all(&sentences()).unwrap();
    let model = &encoder.model;
    let (mut hidden, lens) = model.input_hidden(&ids).unwrap();
    let mut stages = 0;
    for l in 0..model.num_layers() {
        model
            .forward_layer(l, &mut hidden, &lens, &mut |lins, x| {
                stages += 1;
                assert_eq!(x.len(), lens.iter().sum::<usize>() * lins[0].n_in);
                Ok(None)
            })
            .unwrap();
    }
    assert_eq!(stages, 4 * model.num_layers());
    assert_eq!(model.pool(&hidden, &lens), model.embed(&ids).unwrap());
    assert!(model
        .forward_layer(model.num_layers(), &mut hidden, &lens, &mut |_, _| Ok(None))
        .is_err());
}

#[test]
fn sequential_calibration_corrects_only_after_a_compressed_stage() {
    use jlcm::engine::sequential::{compress_sequential, SequentialOptions};
    let Some(m) = load_model() else { return };
    let encoder = SentenceEncoder::from_bytes(&m.config, &m.tokenizer, &m.weights).unwrap();
    let ids = encoder.tokenizer.encode_all(&sentences()).unwrap();
    let opts = CompressOptions {
        iters: 2,
        ..CompressOptions::default()
    };
    // Layer 0 only, 3 bits for its value projection and 2 for the rest.
    let bits = |n: &str| {
        n.starts_with("encoder.layer.0.")
            .then_some(if n.contains(".value.") { 3 } else { 2 })
    };
    let mut seen = Vec::new();
    let out = compress_sequential(
        &encoder.model,
        &ids,
        &opts,
        &SequentialOptions::default(),
        &bits,
        &mut |p| {
            seen.push((p.name.to_string(), p.done, p.total));
            Control::Continue
        },
    )
    .unwrap();
    assert_eq!(out.len(), 6);
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[5].1, 6);
    assert_eq!(seen[0].2, 6);
    for (name, r) in &out {
        assert!(name.starts_with("encoder.layer.0."), "{name}");
        assert_eq!(r.packed.bits, bits(name).unwrap());
        assert!(!r.uncorrected);
        if name.contains("attention.self") {
            // The first stage sees the original inputs: the target is W.
            assert!(r.target_shift < 1e-3, "{name}: shift {}", r.target_shift);
        } else {
            // Later stages see inputs through compressed weights.
            assert!(r.target_shift > 1e-3, "{name}: shift {}", r.target_shift);
        }
    }
    assert!(compress_sequential(
        &encoder.model,
        &[],
        &opts,
        &SequentialOptions::default(),
        &bits,
        &mut |_| { Control::Continue }
    )
    .is_err());
    // The affine fit returns a refitted bias per compressed weight.
    let refit = SequentialOptions {
        refit_bias: true,
        ..SequentialOptions::default()
    };
    let out2 = compress_sequential(&encoder.model, &ids, &opts, &refit, &bits, &mut |_| {
        Control::Continue
    })
    .unwrap();
    for (name, r) in &out2 {
        let b = r.bias.as_ref().expect("refitted bias");
        let orig = &encoder
            .model
            .linears()
            .find(|l| &l.name == name)
            .unwrap()
            .bias;
        assert_eq!(b.len(), orig.len());
        assert_ne!(b, orig, "{name}");
        assert!(out[name].bias.is_none());
    }
    let nan = SequentialOptions {
        correction_damping: f32::NAN,
        ..SequentialOptions::default()
    };
    assert!(
        compress_sequential(&encoder.model, &ids, &opts, &nan, &bits, &mut |_| {
            Control::Continue
        })
        .is_err()
    );
}

/// Three Linear weights of the real model compressed at 2 bits (H = I, few
/// sweeps): query of layer 0 and value of layer 2 by codebook per group,
/// output.dense of layer 5 by one codebook with a scale per group.
fn three_compressed(
    model: &BertModel,
) -> std::collections::BTreeMap<String, jlcm::format::packed::PackedTensor> {
    use jlcm::engine::{compress_matrix, Hessian};
    use jlcm::format::packed::Mode;
    let mut out = std::collections::BTreeMap::new();
    for (name, mode) in [
        (
            "encoder.layer.0.attention.self.query.weight",
            Mode::Codebook,
        ),
        (
            "encoder.layer.2.attention.self.value.weight",
            Mode::Codebook,
        ),
        ("encoder.layer.5.output.dense.weight", Mode::Scale),
    ] {
        let lin = model.linears().find(|l| l.name == name).unwrap();
        let LinearWeight::Dense { wt } = &lin.weight else {
            panic!("dense model")
        };
        let w = jlcm::runtime::dense::transpose(wt, lin.n_in, lin.n_out);
        let opts = CompressOptions {
            bits: 2,
            groups: 4,
            iters: 2,
            mode,
            ..CompressOptions::default()
        };
        let (p, _) = compress_matrix(
            name,
            jlcm::format::safetensors::Dtype::F32,
            &[lin.n_out, lin.n_in],
            &w,
            lin.n_out,
            lin.n_in,
            &Hessian::Identity(lin.n_in),
            &opts,
            &mut |_| Control::Continue,
        )
        .unwrap();
        out.insert(name.to_string(), p);
    }
    out
}

#[test]
fn finetune_gradients_match_finite_differences() {
    use jlcm::engine::finetune::gradient_check;
    let Some(m) = load_model() else { return };
    let encoder = SentenceEncoder::from_bytes(&m.config, &m.tokenizer, &m.weights).unwrap();
    let ids = encoder.tokenizer.encode_all(&sentences()[..3]).unwrap();
    let packed = three_compressed(&encoder.model);
    let mut probes: Vec<(String, usize)> = packed
        .keys()
        .flat_map(|n| [(n.clone(), 0), (n.clone(), 2), (n.clone(), 3)])
        .collect();
    for n in [
        "encoder.layer.1.attention.output.LayerNorm",
        "encoder.layer.4.output.LayerNorm",
    ] {
        probes.push((format!("{n}.weight"), 7));
        probes.push((format!("{n}.bias"), 100));
    }
    let g = gradient_check(&encoder.model, &ids, &packed, &probes).unwrap();
    let scale = g.iter().map(|(_, n)| n.abs()).fold(0.0, f64::max);
    assert!(scale > 0.0);
    for ((name, at), (analytic, numeric)) in probes.iter().zip(&g) {
        // f32 forward passes: the central difference carries rounding noise
        // (measured: within 0.2 % of each value).
        let err = (analytic - numeric).abs();
        assert!(
            err <= 0.01 * numeric.abs() + 1e-3 * scale,
            "{name}[{at}]: backward {analytic:.6e}, finite difference {numeric:.6e}"
        );
    }
}

#[test]
fn finetune_lowers_the_calibration_loss_and_never_raises_it() {
    use jlcm::engine::finetune::{finetune, FinetuneOptions};
    let Some(m) = load_model() else { return };
    let encoder = SentenceEncoder::from_bytes(&m.config, &m.tokenizer, &m.weights).unwrap();
    let ids = encoder.tokenizer.encode_all(&sentences()).unwrap();
    let before = three_compressed(&encoder.model);
    let mut packed = before.clone();
    // With the embedding term (off by default), so the written-model check covers it.
    let opts = FinetuneOptions {
        steps: 6,
        batch_size: 4,
        embedding_weight: 1.0,
        ..FinetuneOptions::default()
    };
    let mut seen = 0;
    let (dense, rep) = finetune(&encoder.model, &ids, &mut packed, &opts, &mut |s, l| {
        seen = s;
        assert!(l.is_finite());
        Control::Continue
    })
    .unwrap();
    assert_eq!(seen, 6);
    assert_eq!(rep.step_losses.len(), 6);
    assert!(rep.kept, "{rep:?}");
    assert!(rep.final_loss < rep.initial_loss, "{rep:?}");
    // 3 biases and 6 layers x 2 LayerNorms x (gain, shift).
    assert_eq!(dense.len(), 3 + 24, "{:?}", dense.keys());
    assert_eq!(dense["encoder.layer.5.output.LayerNorm.weight"].len(), 384);
    for (name, p) in &packed {
        let b = &before[name];
        assert_eq!(p.indices, b.indices, "{name}: the mappings stay");
        assert_ne!(p.codebooks, b.codebooks, "{name}: the codebooks moved");
        assert_eq!(dense[&name.replace(".weight", ".bias")].len(), p.n_out);
    }
    // Written into the model file, the tuned tensors give the stated loss.
    let file = jlcm::format::safetensors::SafetensorsFile::parse(&m.weights).unwrap();
    let tensors: Vec<(String, jlcm::format::safetensors::OwnedTensor)> = file
        .header
        .tensors
        .iter()
        .map(|t| {
            let data = match (packed.get(&t.name), dense.get(&t.name)) {
                (Some(p), _) => jlcm::format::safetensors::from_f32(t.dtype, &p.decode_f32()),
                (None, Some(v)) => jlcm::format::safetensors::from_f32(t.dtype, v),
                (None, None) => file.tensor_bytes(t).to_vec(),
            };
            let t2 = jlcm::format::safetensors::OwnedTensor {
                dtype: t.dtype,
                shape: t.shape.clone(),
                data,
            };
            (t.name.clone(), t2)
        })
        .collect();
    let bytes = jlcm::format::safetensors::write(&tensors, &file.header.metadata).unwrap();
    let tuned = BertModel::from_safetensors(&m.config, &bytes).unwrap();
    let last = |model: &BertModel| {
        let (mut h, lens) = model.input_hidden(&ids).unwrap();
        for l in 0..model.num_layers() {
            model
                .forward_layer(l, &mut h, &lens, &mut |_, _| Ok(None))
                .unwrap();
        }
        let e = model.pool(&h, &lens);
        (h, e)
    };
    let ((a, ea), (y, ey)) = (last(&tuned), last(&encoder.model));
    let num: f64 = a
        .iter()
        .zip(&y)
        .map(|(a, y)| ((a - y) as f64).powi(2))
        .sum();
    let den: f64 = y.iter().map(|y| (*y as f64).powi(2)).sum();
    let emb: f64 = ea
        .iter()
        .zip(&ey)
        .map(|(a, y)| ((a - y) as f64).powi(2))
        .sum();
    let loss = num / den + opts.embedding_weight as f64 * emb / ids.len() as f64;
    assert!(
        (loss - rep.final_loss).abs() <= 1e-3 * rep.final_loss,
        "the written model's loss {loss} against the reported {}",
        rep.final_loss
    );
    // A step so large it cannot help: the parameters are left as they were.
    let mut wild = before.clone();
    let (_, rep) = finetune(
        &encoder.model,
        &ids,
        &mut wild,
        &FinetuneOptions {
            steps: 2,
            lr: 1e3,
            ..opts
        },
        &mut |_, _| Control::Continue,
    )
    .unwrap();
    assert!(!rep.kept, "{rep:?}");
    assert_eq!(rep.final_loss, rep.initial_loss);
    for (name, p) in &wild {
        assert_eq!(p.codebooks, before[name].codebooks, "{name}");
    }
    assert!(
        finetune(&encoder.model, &[], &mut wild, &opts, &mut |_, _| {
            Control::Continue
        })
        .is_err()
    );
}
