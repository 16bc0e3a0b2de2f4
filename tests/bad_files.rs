//! The bad-file corpus (`tests/bad-files/`, made by
//! `scripts/make-bad-files.py`): every file gives the typed error its
//! manifest names, with a message naming the tensor and the problem; the
//! edge cases that are valid (zero-sized, 1-row, integer tensors) are copied
//! through. Fuzzing findings become regression tests at the end.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use jlcm::engine::{compress_file, CompressOptions, Control, EngineError};
use jlcm::format::packed::{PackedEntry, PackedFile};
use jlcm::format::safetensors::{self as st, SafetensorsFile};
use jlcm::format::FormatError;
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-files")
}

fn manifest() -> Vec<Value> {
    let text = fs::read_to_string(corpus_dir().join("manifest.json")).expect("manifest.json");
    let v: Value = serde_json::from_str(&text).expect("manifest is JSON");
    v["files"].as_array().expect("files").clone()
}

fn read(file: &str) -> Vec<u8> {
    fs::read(corpus_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// What a surface answered: `Ok`, or the error's code and message.
type Answer = Result<(), (String, String)>;

fn format_answer<T>(r: Result<T, FormatError>) -> Answer {
    r.map(|_| ())
        .map_err(|e| (e.code().to_string(), e.to_string()))
}

fn engine_answer<T>(r: Result<T, EngineError>) -> Answer {
    r.map(|_| ()).map_err(|e| {
        let code = match &e {
            EngineError::Format(f) => f.code().to_string(),
            EngineError::InvalidOptions(_) => "invalid_options".into(),
            EngineError::Tensor { .. } => "engine_tensor".into(),
            EngineError::Calibration { .. } => "calibration".into(),
            EngineError::Cancelled => "cancelled".into(),
        };
        (code, e.to_string())
    })
}

/// Compare an answer with the manifest's expectation; returns a complaint.
fn check(file: &str, surface: &str, want: &Value, got: &Answer) -> Option<String> {
    match (want.as_str(), got) {
        (Some("ok"), Ok(())) => None,
        (Some("ok"), Err((c, m))) => Some(format!("{file} {surface}: expected ok, got {c}: {m}")),
        (_, Ok(())) => Some(format!("{file} {surface}: expected {want}, got ok")),
        (_, Err((code, msg))) => {
            if want["code"].as_str() != Some(code) {
                return Some(format!(
                    "{file} {surface}: expected code {}, got {code}: {msg}",
                    want["code"]
                ));
            }
            for s in want["contains"].as_array().into_iter().flatten() {
                let s = s.as_str().unwrap_or_default();
                if !msg.contains(s) {
                    return Some(format!("{file} {surface}: message `{msg}` lacks `{s}`"));
                }
            }
            if msg.contains('\n') {
                return Some(format!("{file} {surface}: message spans lines: {msg}"));
            }
            None
        }
    }
}

fn compress_bytes(bytes: &[u8]) -> Result<(PackedFile, usize), EngineError> {
    let opts = CompressOptions::default();
    compress_file(bytes, None, &opts, None, &mut |_| Control::Continue).map(|(f, r)| (f, r.len()))
}

#[test]
fn every_file_is_in_the_manifest_and_back() {
    let listed: BTreeSet<String> = manifest()
        .iter()
        .map(|f| f["file"].as_str().expect("file").to_string())
        .collect();
    let present: BTreeSet<String> = fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    assert_eq!(listed, present);
    assert!(listed.len() >= 40, "{} files", listed.len());
}

#[test]
fn each_bad_file_gives_its_typed_error_natively() {
    let mut complaints = Vec::new();
    for entry in manifest() {
        let file = entry["file"].as_str().expect("file");
        let bytes = read(file);
        let parse = format_answer(SafetensorsFile::parse(&bytes));
        let compress = engine_answer(compress_bytes(&bytes));
        let decode = format_answer(PackedFile::from_bytes(&bytes).and_then(|p| p.decode()));
        for (surface, got) in [("parse", parse), ("compress", compress), ("decode", decode)] {
            complaints.extend(check(file, surface, &entry[surface], &got));
        }
    }
    assert!(complaints.is_empty(), "\n{}", complaints.join("\n"));
}

#[test]
fn every_error_names_the_tensor_when_there_is_one() {
    // Errors about one tensor carry its name in backquotes; file-level
    // errors (prefix, header length, UTF-8, JSON syntax, data length,
    // version) have no tensor to name.
    for entry in manifest() {
        for surface in ["parse", "compress", "decode"] {
            let want = &entry[surface];
            let Some(code) = want["code"].as_str() else {
                continue;
            };
            let contains: Vec<&str> = want["contains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str())
                .collect();
            let file = entry["file"].as_str().unwrap_or_default();
            let names_tensor = contains.iter().any(|s| s.contains('`'));
            let tensor_level = matches!(
                code,
                "unsupported_dtype" | "non_finite" | "packed_tensor" | "shape_mismatch"
            ) || (code == "header_invalid"
                && !file.starts_with("header-")
                && !file.starts_with("metadata-"));
            if tensor_level {
                assert!(
                    names_tensor,
                    "{file} {surface}: {contains:?} names no tensor"
                );
            }
            assert!(!contains.is_empty(), "{file} {surface}: no expected text");
        }
    }
}

#[test]
fn edge_tensors_are_copied_through_not_compressed() {
    for file in [
        "zero-sized.safetensors",
        "one-row.safetensors",
        "narrow.safetensors",
        "int-matrix.safetensors",
    ] {
        let bytes = read(file);
        let input = SafetensorsFile::parse(&bytes).expect("valid");
        let (packed, reports) = compress_bytes(&bytes).expect("compresses");
        assert_eq!(reports, 0, "{file}: nothing to compress");
        assert_eq!(packed.entries.len(), input.header.tensors.len());
        for e in &packed.entries {
            let PackedEntry::Raw { name, tensor } = e else {
                panic!("{file}: {} was compressed", e.name());
            };
            let t = input.header.get(name).expect("same names");
            assert_eq!(tensor.shape, t.shape);
            assert_eq!(tensor.dtype, t.dtype);
            assert_eq!(&tensor.data[..], input.tensor_bytes(t));
        }
        // And the packed file decodes back to the same tensors.
        let dense = packed.decode().expect("decodes");
        let back = SafetensorsFile::parse(&dense).expect("valid output");
        for t in &input.header.tensors {
            let b = back.header.get(&t.name).expect("present");
            assert_eq!(back.tensor_bytes(b), input.tensor_bytes(t));
        }
    }
}

#[test]
fn valid_packed_files_decode_and_run() {
    for file in [
        "packed-ok.packed.safetensors",
        "packed-ok-scale.packed.safetensors",
    ] {
        let bytes = read(file);
        let p = PackedFile::from_bytes(&bytes).expect("valid");
        let dense = p.decode().expect("decodes");
        let d = SafetensorsFile::parse(&dense).expect("dense parses");
        let w = d.tensor_f32("enc.w").expect("enc.w");
        assert_eq!(w.len(), 8 * 20);
        assert!(w.iter().all(|v| v.is_finite()));
        for e in &p.entries {
            if let PackedEntry::Packed(t) = e {
                let m = jlcm::kernels::PackedMatrix::new(t.clone()).expect("validates");
                let x = vec![1f32; m.n_in()];
                let mut y = vec![0f32; m.n_out()];
                m.matmul(&x, 1, &mut y).expect("runs");
                let dec = t.decode_f32();
                for (r, yr) in y.iter().enumerate() {
                    let want: f32 = dec[r * m.n_in()..(r + 1) * m.n_in()].iter().sum();
                    assert!((yr - want).abs() < 1e-3, "{file} row {r}");
                }
            }
        }
        // Bytes round trip exactly.
        assert_eq!(p.to_bytes().expect("writes"), bytes, "{file}");
    }
}

#[test]
fn every_truncation_of_every_valid_file_is_an_error() {
    for entry in manifest() {
        if entry["parse"].as_str() != Some("ok") {
            continue;
        }
        let file = entry["file"].as_str().expect("file");
        let bytes = read(file);
        for cut in 0..bytes.len() {
            let part = &bytes[..cut];
            let e = SafetensorsFile::parse(part).expect_err("truncated file parses");
            assert!(
                matches!(
                    e,
                    FormatError::TooShort { .. }
                        | FormatError::HeaderPastEnd { .. }
                        | FormatError::DataLength { .. }
                ),
                "{file} cut at {cut}: {e}"
            );
            assert!(PackedFile::from_bytes(part).is_err());
            // The page reads the header from a prefix, knowing the full length.
            let header = st::parse_header(part, Some(bytes.len() as u64));
            let header_end = st::parse_header(&bytes, None).expect("ok").data_start();
            assert_eq!(
                header.is_ok(),
                cut as u64 >= header_end,
                "{file} cut at {cut}"
            );
        }
    }
}

#[test]
fn limits_refuse_large_tensors_before_allocating() {
    // A header describing a 64 GB tensor parses (the page lists it) and
    // check_fits refuses it with a message suggesting the CLI.
    let json = r#"{"big":{"dtype":"F32","shape":[131072,131072],"data_offsets":[0,68719476736]}}"#;
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(json.as_bytes());
    let header = st::parse_header(&bytes, Some(bytes.len() as u64 + 68_719_476_736)).expect("ok");
    let big = header.get("big").expect("big");
    assert_eq!(big.f32_bytes(), 68_719_476_736);
    let e = st::check_fits(big, 2 << 30).expect_err("too large");
    assert_eq!(e.code(), "too_large");
    let msg = e.to_string();
    assert!(msg.contains("`big`") && msg.contains("native CLI"), "{msg}");
    assert!(st::check_fits(big, u64::MAX).is_ok());
    // The same for a packed tensor's decoded size.
    let p = PackedFile::from_bytes(&read("packed-ok.packed.safetensors")).expect("ok");
    for e in &p.entries {
        if let PackedEntry::Packed(t) = e {
            assert!(t.check_fits(8 * 20 * 4).is_ok());
            assert_eq!(t.check_fits(100).expect_err("limit").code(), "too_large");
        }
    }
    // Header claims of a huge data section with a short file fail on length
    // before anything is allocated.
    assert_eq!(
        SafetensorsFile::parse(&bytes).expect_err("short").code(),
        "data_length"
    );
}

#[test]
fn to_f32_checks_lengths_and_dtypes() {
    let mut e = st::TensorEntry {
        name: "w".into(),
        dtype: st::Dtype::F32,
        shape: vec![2, 2],
        start: 0,
        end: 16,
    };
    assert!(st::to_f32(&e, &[0; 16]).is_ok());
    assert_eq!(
        st::to_f32(&e, &[0; 15]).unwrap_err().code(),
        "shape_mismatch"
    );
    // A hand-built entry whose element count overflows is refused, not wrapped.
    e.shape = vec![usize::MAX, 2];
    assert_eq!(
        st::to_f32(&e, &[0; 8]).unwrap_err().code(),
        "shape_mismatch"
    );
    e.shape = vec![2];
    e.dtype = st::Dtype::I32;
    assert_eq!(
        st::to_f32(&e, &[0; 8]).unwrap_err().code(),
        "unsupported_dtype"
    );
    // Sub-byte dtypes have a size too (F4: two per byte).
    e.dtype = st::Dtype::F4;
    e.shape = vec![4];
    assert_eq!(
        st::to_f32(&e, &[0; 2]).unwrap_err().code(),
        "unsupported_dtype"
    );
}

// ---- regressions from fuzzing (fuzz/artifacts/*) --------------------------

/// options-1 (fuzz target `options`, 2026-11-28): a long decimal `tol`
/// parses, validates, and survives a round trip through JSON to within
/// 1 ulp (serde_json's default float parser is not always correctly
/// rounded; the options stay valid and the difference is immaterial).
#[test]
fn regression_options_1_long_decimal_tol() {
    let input = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz-regressions/options-1-float-roundtrip.json"),
    )
    .expect("regression input");
    let o = CompressOptions::from_json(&input).expect("valid options");
    assert!(o.tol > 1e220 && o.tol.is_finite());
    let back =
        CompressOptions::from_json(&serde_json::to_string(&o).expect("json")).expect("round trip");
    assert!((back.tol - o.tol).abs() <= 1e-15 * o.tol);
    assert_eq!(back.bits, o.bits);
}
