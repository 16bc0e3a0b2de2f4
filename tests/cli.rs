//! The `jlcm` binary on every file of the bad-file corpus: `compress`,
//! `decode` and `inspect` each exit non-zero with exactly one line on stderr
//! starting with `jlcm: error:` that holds the manifest's text (tensor name
//! and problem), and never panic; the valid edge cases succeed. Failed runs
//! leave no output file behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-files")
}

fn manifest() -> Vec<Value> {
    let text = fs::read_to_string(corpus_dir().join("manifest.json")).expect("manifest.json");
    let v: Value = serde_json::from_str(&text).expect("manifest is JSON");
    v["files"].as_array().expect("files").clone()
}

fn jlcm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jlcm"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run jlcm")
}

/// A scratch folder for this test binary's outputs.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jlcm-cli-test-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Check one run against the manifest's answer; returns a complaint.
fn check(what: &str, want: &Value, out: &Output, output_file: Option<&Path>) -> Option<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
        return Some(format!("{what}: panic: {stderr}"));
    }
    if want.as_str() == Some("ok") {
        if !out.status.success() {
            return Some(format!(
                "{what}: expected success, got {:?}: {stderr}",
                out.status
            ));
        }
        if let Some(f) = output_file {
            if !f.exists() {
                return Some(format!("{what}: succeeded but wrote no {}", f.display()));
            }
        }
        return None;
    }
    if out.status.code() != Some(1) {
        return Some(format!(
            "{what}: expected exit code 1, got {:?}: {stderr}",
            out.status
        ));
    }
    let lines: Vec<&str> = stderr.lines().collect();
    if lines.len() != 1 {
        return Some(format!(
            "{what}: expected one stderr line, got {}: {stderr}",
            lines.len()
        ));
    }
    let line = lines[0];
    if !line.starts_with("jlcm: error: ") {
        return Some(format!(
            "{what}: line does not start with `jlcm: error: `: {line}"
        ));
    }
    for s in want["contains"].as_array().into_iter().flatten() {
        let s = s.as_str().unwrap_or_default();
        if !line.contains(s) {
            return Some(format!("{what}: `{line}` lacks `{s}`"));
        }
    }
    if let Some(f) = output_file {
        if f.exists() {
            return Some(format!("{what}: failed but left {}", f.display()));
        }
    }
    None
}

#[test]
fn every_bad_file_through_the_cli() {
    let dir = scratch("corpus");
    let mut complaints = Vec::new();
    let mut runs = 0;
    for entry in manifest() {
        let file = entry["file"].as_str().expect("file");
        let input = corpus_dir().join(file);
        let input = input.to_str().expect("utf-8 path");
        for command in ["compress", "decode", "inspect"] {
            let out_path = dir.join(format!("{file}.{command}.out"));
            let out_str = out_path.to_str().expect("utf-8 path");
            let args: Vec<&str> = match command {
                // Few sweeps: the corpus tests errors, not quality.
                "compress" => vec![
                    "compress", input, "-o", out_str, "--iters", "2", "--groups", "2",
                ],
                "decode" => vec!["decode", input, "-o", out_str],
                _ => vec!["inspect", input],
            };
            let out = jlcm(&args);
            runs += 1;
            let written = (command != "inspect").then_some(out_path.as_path());
            complaints.extend(check(
                &format!("jlcm {command} {file}"),
                &entry[command],
                &out,
                written,
            ));
        }
    }
    let _ = fs::remove_dir_all(&dir);
    assert!(runs >= 120, "{runs} runs");
    assert!(complaints.is_empty(), "\n{}", complaints.join("\n"));
}

#[test]
fn copied_through_tensors_survive_compress_then_decode() {
    let dir = scratch("edge");
    for file in [
        "zero-sized.safetensors",
        "one-row.safetensors",
        "int-matrix.safetensors",
    ] {
        let input = corpus_dir().join(file);
        let packed = dir.join("packed.safetensors");
        let dense = dir.join("dense.safetensors");
        let out = jlcm(&[
            "compress",
            input.to_str().expect("path"),
            "-o",
            packed.to_str().expect("path"),
        ]);
        assert!(out.status.success(), "{file}: {out:?}");
        let summary = String::from_utf8_lossy(&out.stderr);
        assert!(
            summary.contains("0 tensors compressed"),
            "{file}: {summary}"
        );
        let out = jlcm(&[
            "decode",
            packed.to_str().expect("path"),
            "-o",
            dense.to_str().expect("path"),
        ]);
        assert!(out.status.success(), "{file}: {out:?}");
        let a = fs::read(&input).expect("input");
        let b = fs::read(&dense).expect("output");
        let fa = jlcm::format::safetensors::SafetensorsFile::parse(&a).expect("valid");
        let fb = jlcm::format::safetensors::SafetensorsFile::parse(&b).expect("valid");
        for t in &fa.header.tensors {
            let u = fb.header.get(&t.name).expect("kept");
            assert_eq!((&u.shape, u.dtype), (&t.shape, t.dtype), "{file}");
            assert_eq!(fb.tensor_bytes(u), fa.tensor_bytes(t), "{file}");
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

/// `--rotate`: the rotation is stored, `inspect` shows it, and `decode`
/// gives back a weight close to the input (the rotation undone).
#[test]
fn rotate_is_stored_shown_and_undone_by_decode() {
    use jlcm::format::safetensors::{self as st, Dtype, OwnedTensor};
    let dir = scratch("rotate");
    let (n_out, n_in) = (32, 64);
    let w: Vec<f32> = (0..n_out * n_in)
        .map(|i| {
            ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * (1.0 + (i % n_in == 3) as u8 as f32 * 6.0)
        })
        .collect();
    let input = dir.join("in.safetensors");
    let tensor = OwnedTensor {
        dtype: Dtype::F32,
        shape: vec![n_out, n_in],
        data: w.iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    fs::write(
        &input,
        st::write(&[("layer.weight".to_string(), tensor)], &Default::default()).expect("write"),
    )
    .expect("save");
    let packed = dir.join("packed.safetensors");
    let dense = dir.join("dense.safetensors");
    let path = |p: &Path| p.to_str().expect("path").to_string();
    let out = jlcm(&[
        "compress",
        &path(&input),
        "-o",
        &path(&packed),
        "--bits",
        "3",
        "--rotate",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = jlcm(&["inspect", "--json", &path(&packed)]);
    assert!(out.status.success(), "{out:?}");
    let info: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(info["tensors"][0]["rotation_block"], 64, "{info}");
    let out = jlcm(&["decode", &path(&packed), "-o", &path(&dense)]);
    assert!(out.status.success(), "{out:?}");
    let bytes = fs::read(&dense).expect("dense");
    let f = st::SafetensorsFile::parse(&bytes).expect("valid");
    let e = f.header.get("layer.weight").expect("kept");
    assert_eq!(
        (e.shape.as_slice(), e.dtype),
        ([n_out, n_in].as_slice(), Dtype::F32)
    );
    let got: Vec<f32> = f
        .tensor_bytes(e)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let err: f32 = got
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f32>();
    let norm: f32 = w.iter().map(|v| v * v).sum();
    // 3 bits: about 0.2 relative error; a rotation left in place would be ~1.4.
    assert!(
        (err / norm).sqrt() < 0.5,
        "relative error {}",
        (err / norm).sqrt()
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn missing_input_and_bad_flags_are_one_line_errors() {
    let out = jlcm(&["decode", "/nonexistent/x.safetensors", "-o", "/tmp/never"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("jlcm: error: ") && err.contains("/nonexistent/x.safetensors"));
    let input = corpus_dir().join("one-row.safetensors");
    let out = jlcm(&[
        "compress",
        input.to_str().expect("path"),
        "-o",
        "/tmp/never",
        "--bits",
        "9",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bits must be 1..=8, got 9"), "{err}");
    assert!(!Path::new("/tmp/never").exists());
}

#[test]
fn sequential_without_a_model_folder_is_a_one_line_error() {
    let dir = scratch("sequential");
    let input = corpus_dir().join("one-row.safetensors");
    let text = dir.join("calib.txt");
    fs::write(&text, "one sentence\n").expect("write text");
    let output = dir.join("out.safetensors");
    let out = jlcm(&[
        "compress",
        input.to_str().expect("path"),
        "-o",
        output.to_str().expect("path"),
        "--sequential",
        dir.to_str().expect("path"),
        "--calib-text",
        text.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("config.json"), "{err}");
    assert!(!output.exists());
    // --calib-text is required with --sequential (a usage error from clap).
    let out = jlcm(&[
        "compress",
        input.to_str().expect("path"),
        "-o",
        output.to_str().expect("path"),
        "--sequential",
        dir.to_str().expect("path"),
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    assert!(!output.exists());
}

/// The cached real model's folder, `None` when absent and skipping is allowed.
fn real_model() -> Option<PathBuf> {
    let dir = std::env::var_os("JLCM_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| "/root".into(), PathBuf::from);
            std::env::var_os("JLCM_CACHE")
                .map_or_else(|| home.join(".cache/jlcm"), PathBuf::from)
                .join("models/all-MiniLM-L6-v2")
        });
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    assert_eq!(
        std::env::var("JLCM_SKIP_MODEL_TESTS").as_deref(),
        Ok("1"),
        "the real model is not at {}: run `bash scripts/fetch-model.sh`",
        dir.display()
    );
    None
}

/// The bytes of each tensor of a safetensors file, by name.
fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    use jlcm::format::safetensors::SafetensorsFile;
    let bytes = fs::read(path).expect("read");
    let f = SafetensorsFile::parse(&bytes).expect("parse");
    f.header
        .tensors
        .iter()
        .map(|t| (t.name.clone(), f.tensor_bytes(t).to_vec()))
        .collect()
}

#[test]
fn tune_changes_codebooks_biases_and_layernorms_but_not_the_mappings() {
    let Some(model) = real_model() else { return };
    let dir = scratch("tune");
    let text = dir.join("calib.txt");
    fs::write(
        &text,
        "A quick brown fox jumps over the lazy dog.\nThe weather is cold today.\nCompilers turn source code into machine code.\nShe reads a book every week.\n",
    )
    .expect("write text");
    let input = model.join("model.safetensors");
    let (plain, tuned) = (dir.join("plain.safetensors"), dir.join("tuned.safetensors"));
    let base = [
        "compress",
        input.to_str().expect("path"),
        "--bits",
        "2",
        "--iters",
        "2",
        "--tensors",
        r"^encoder\.layer\.[01]\..*\.weight$",
    ];
    let run = |out: &Path, extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(["-o", out.to_str().expect("path")]);
        args.extend(extra);
        let o = jlcm(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    run(&plain, &[]);
    let log = run(
        &tuned,
        &[
            "--tune",
            model.to_str().expect("path"),
            "--calib-text",
            text.to_str().expect("path"),
            "--tune-steps",
            "4",
        ],
    );
    assert!(log.contains("tuned 12 weights end to end"), "{log}");
    let (a, b) = (tensors(&plain), tensors(&tuned));
    assert_eq!(a.len(), b.len());
    let q = "encoder.layer.0.attention.self.query.weight";
    assert_eq!(
        a[&format!("{q}.jlcm.idx")],
        b[&format!("{q}.jlcm.idx")],
        "mappings stay"
    );
    assert_ne!(
        a[&format!("{q}.jlcm.codebook")],
        b[&format!("{q}.jlcm.codebook")]
    );
    assert_ne!(
        a["encoder.layer.0.attention.self.query.bias"],
        b["encoder.layer.0.attention.self.query.bias"]
    );
    assert_ne!(
        a["encoder.layer.3.output.LayerNorm.weight"],
        b["encoder.layer.3.output.LayerNorm.weight"]
    );
    // Not tuned: the embeddings and the layers left dense.
    for n in [
        "embeddings.word_embeddings.weight",
        "encoder.layer.4.output.dense.weight",
    ] {
        assert_eq!(a[n], b[n], "{n}");
    }
    // --calib-text alone is a one-line error.
    let mut args: Vec<&str> = base.to_vec();
    let never = dir.join("never.safetensors");
    args.extend([
        "-o",
        never.to_str().expect("path"),
        "--calib-text",
        text.to_str().expect("path"),
    ]);
    let o = jlcm(&args);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!never.exists());
}
