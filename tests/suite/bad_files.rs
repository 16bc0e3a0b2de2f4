//! The bad-file corpus (`tests/bad-files/`) through the wasm binding, in
//! Chromium and in Node: every file, fed to the public JS API the way the
//! page and the npm package use it, gives the `Error` whose `code` and
//! message the manifest names (issue 5: "a typed error in all four
//! surfaces"). The native API and the CLI are checked by `tests/bad_files.rs`
//! and `tests/cli.rs` against the same manifest.
//!
//! The files are built into the test binary (`tests/bad-files/files.rs`,
//! written by `scripts/make-bad-files.py`): a browser has no file system.
//!
//! | manifest surface | JS calls                                                        |
//! |------------------|-----------------------------------------------------------------|
//! | `parse`          | `parseHeader(bytes, bytes.length)`                              |
//! | `compress`       | `parseHeader`, then per tensor `compressTensor(t, slice)` (compressible) or `PackedFileBuilder.addRaw(t, slice)`, `toBytes()` |
//! | `decode`         | `decodePackedFile(bytes)`                                       |
//! | `inspect`        | `parseHeader`, then `inspectPackedFile(bytes)` when the metadata holds `jlcm.format` (as `jlcm inspect`) |
//!
//! Codes: the manifest holds `FormatError::code()`; the binding maps it to
//! the coarser stable JS code (`src/wasm/error.rs`, `types.d.ts`), which is
//! what `expected_js_code` encodes.

#[path = "../bad-files/files.rs"]
mod files;

use std::collections::BTreeSet;

use serde_json::Value;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn manifest() -> Vec<Value> {
    let v: Value = serde_json::from_str(files::MANIFEST).expect("manifest is JSON");
    v["files"].as_array().expect("files").clone()
}

#[test]
fn built_in_corpus_matches_the_manifest() {
    let listed: Vec<String> = manifest()
        .iter()
        .map(|f| f["file"].as_str().expect("file").to_string())
        .collect();
    let built_in: Vec<String> = files::FILES.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        listed, built_in,
        "tests/bad-files/files.rs is stale: run python3 scripts/make-bad-files.py"
    );
    let unique: BTreeSet<&String> = built_in.iter().collect();
    assert_eq!(unique.len(), built_in.len());
    assert!(built_in.len() >= 40);
}

/// The JS `code` the binding gives for a manifest (`FormatError::code()`)
/// code: the mapping of `impl From<FormatError> for BindingError`.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub fn expected_js_code(format_code: &str) -> &'static str {
    match format_code {
        "tensor_not_found" => "E_NOT_FOUND",
        "unsupported_dtype" => "E_DTYPE",
        "non_finite" => "E_NON_FINITE",
        "too_large" => "E_TOO_LARGE",
        _ => "E_FORMAT",
    }
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use jlcm::wasm::compress::compress_tensor;
    use jlcm::wasm::header::parse_header;
    use jlcm::wasm::packfile::{decode_packed_file, inspect_packed_file, PackedFileBuilder};
    use serde_json::Value;
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::{expected_js_code, files, manifest};

    /// What the JS API answered: `Ok`, or the thrown `Error`'s code and message.
    type Answer = Result<(), (String, String)>;

    fn prop(v: &JsValue, key: &str) -> JsValue {
        js_sys::Reflect::get(v, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    }

    /// A thrown value as `(code, message)`; anything that is not an `Error`
    /// with a string `code` is a failure of the binding's contract.
    fn thrown(err: JsValue) -> (String, String) {
        assert!(
            err.is_instance_of::<js_sys::Error>(),
            "not an Error: {err:?}"
        );
        let code = prop(&err, "code")
            .as_string()
            .expect("Error.code is a string");
        let message = prop(&err, "message").as_string().unwrap_or_default();
        (code, message)
    }

    fn answer<T>(r: Result<T, JsValue>) -> Answer {
        r.map(|_| ()).map_err(thrown)
    }

    fn json(v: &JsValue) -> Value {
        let text = js_sys::JSON::stringify(v)
            .ok()
            .and_then(|s| s.as_string())
            .expect("result is JSON");
        serde_json::from_str(&text).expect("JSON")
    }

    /// `parseHeader` over the whole file.
    fn parse(bytes: &[u8]) -> Result<JsValue, JsValue> {
        parse_header(bytes, Some(bytes.len() as f64))
    }

    /// The page's compression flow with default options: header, then each
    /// tensor compressed or kept, then the packed file's bytes; for a file
    /// that compressed, the packed file decodes and every kept tensor comes
    /// back byte for byte.
    fn compress(bytes: &[u8]) -> Answer {
        let header = parse(bytes).map_err(thrown)?;
        let tensors: js_sys::Array = prop(&header, "tensors").dyn_into().expect("tensors");
        let mut builder = PackedFileBuilder::new();
        let mut kept = Vec::new();
        for t in tensors.iter() {
            let info = json(&t);
            let start = info["start"].as_u64().expect("start") as usize;
            let end = info["end"].as_u64().expect("end") as usize;
            let slice = &bytes[start..end];
            if info["compressible"] == Value::Bool(true) {
                let c = compress_tensor(t, slice, JsValue::UNDEFINED, JsValue::UNDEFINED)
                    .map_err(thrown)?;
                builder.add_compressed(&c);
            } else {
                builder.add_raw(t, slice).map_err(thrown)?;
                kept.push((info["name"].as_str().unwrap_or_default().to_string(), slice));
            }
        }
        let packed = builder.to_bytes().map_err(thrown)?;
        let dense = decode_packed_file(&packed).map_err(thrown)?;
        let back = json(&parse(&dense).map_err(thrown)?);
        for (name, want) in kept {
            let t = back["tensors"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["name"] == name.as_str())
                .unwrap_or_else(|| panic!("`{name}` lost in the round trip"));
            let (s, e) = (t["start"].as_u64().unwrap(), t["end"].as_u64().unwrap());
            assert_eq!(&dense[s as usize..e as usize], want, "`{name}` changed");
        }
        Ok(())
    }

    /// `decodePackedFile`.
    fn decode(bytes: &[u8]) -> Answer {
        answer(decode_packed_file(bytes))
    }

    /// As `jlcm inspect`: the header; a packed file is inspected as one.
    fn inspect(bytes: &[u8]) -> Answer {
        let header = json(&parse(bytes).map_err(thrown)?);
        if header["metadata"].get("jlcm.format").is_some() {
            let info = json(&inspect_packed_file(bytes).map_err(thrown)?);
            assert_eq!(info["fileBytes"].as_u64(), Some(bytes.len() as u64));
        }
        Ok(())
    }

    /// Compare an answer with the manifest's expectation; returns a complaint.
    fn check(file: &str, surface: &str, want: &Value, got: &Answer) -> Option<String> {
        match (want.as_str(), got) {
            (Some("ok"), Ok(())) => None,
            (Some("ok"), Err((c, m))) => {
                Some(format!("{file} {surface}: expected ok, got {c}: {m}"))
            }
            (_, Ok(())) => Some(format!("{file} {surface}: expected {want}, got ok")),
            (_, Err((code, msg))) => {
                let want_code = expected_js_code(want["code"].as_str().unwrap_or_default());
                if code != want_code {
                    return Some(format!(
                        "{file} {surface}: expected code {want_code} ({}), got {code}: {msg}",
                        want["code"]
                    ));
                }
                for s in want["contains"].as_array().into_iter().flatten() {
                    let s = s.as_str().unwrap_or_default();
                    if !msg.contains(s) {
                        return Some(format!("{file} {surface}: message `{msg}` lacks `{s}`"));
                    }
                }
                if msg.contains('\n') || msg.is_empty() {
                    return Some(format!("{file} {surface}: message not one line: {msg:?}"));
                }
                None
            }
        }
    }

    /// Run one surface over the whole corpus; at least one file must fail
    /// and one succeed there, so the check cannot pass vacuously.
    fn run_surface(surface: &str, call: fn(&[u8]) -> Answer) {
        let manifest = manifest();
        let mut complaints = Vec::new();
        let (mut errors, mut oks) = (0, 0);
        for (entry, (file, bytes)) in manifest.iter().zip(files::FILES) {
            assert_eq!(entry["file"].as_str(), Some(*file));
            let got = call(bytes);
            match &got {
                Ok(()) => oks += 1,
                Err(_) => errors += 1,
            }
            complaints.extend(check(file, surface, &entry[surface], &got));
        }
        assert!(complaints.is_empty(), "\n{}", complaints.join("\n"));
        assert!(
            errors > 0 && oks > 0,
            "{surface}: {errors} errors, {oks} ok"
        );
    }

    #[test]
    fn every_bad_file_through_parse_header() {
        run_surface("parse", |b| answer(parse(b)));
    }

    #[test]
    fn every_bad_file_through_compress_tensor() {
        run_surface("compress", compress);
    }

    #[test]
    fn every_bad_file_through_decode_packed_file() {
        run_surface("decode", decode);
    }

    #[test]
    fn every_bad_file_through_inspect_packed_file() {
        run_surface("inspect", inspect);
    }

    /// `headerByteLength` (the page's first read, 8 bytes) refuses what the
    /// prefix alone shows is wrong, with the manifest's code.
    #[test]
    fn header_byte_length_on_every_prefix() {
        for (entry, (file, bytes)) in manifest().iter().zip(files::FILES) {
            let prefix = &bytes[..bytes.len().min(8)];
            let got = jlcm::wasm::header::header_byte_length(prefix);
            let want = entry["parse"]["code"].as_str();
            match (want, got) {
                (Some("too_short"), Err(e)) | (Some("header_too_large"), Err(e)) => {
                    let (code, _) = thrown(e);
                    assert_eq!(code, "E_FORMAT", "{file}");
                }
                (Some(c @ ("too_short" | "header_too_large")), Ok(n)) => {
                    panic!("{file}: expected {c}, got a header length {n}")
                }
                (_, Err(e)) => panic!("{file}: the 8-byte prefix is valid: {:?}", thrown(e)),
                (_, Ok(n)) => assert!(n >= 8.0, "{file}"),
            }
        }
    }

    // ------------------------------------------------------------ limits (issue 5 item 3)

    fn assert_too_large(what: &str, r: Answer, tensor: &str) {
        let (code, msg) = r.expect_err(what);
        assert_eq!(code, "E_TOO_LARGE", "{what}: {msg}");
        for s in [tensor, "more than", "use the native CLI"] {
            assert!(msg.contains(s), "{what}: `{msg}` lacks `{s}`");
        }
    }

    /// A small file that still works afterwards: the refusals were errors,
    /// not an abort of the module.
    fn module_still_works() {
        let (_, ok) = files::FILES
            .iter()
            .find(|(f, _)| *f == "packed-ok.packed.safetensors")
            .expect("packed-ok");
        decode_packed_file(ok).expect("decode after a refusal");
    }

    /// A tensor whose working set cannot fit in wasm memory is refused by
    /// every call that would read it, from its spec alone (before its bytes
    /// are looked at or anything is allocated), naming it and suggesting the CLI.
    #[test]
    fn tensor_too_large_for_wasm_memory_is_refused_before_reading() {
        use jlcm::wasm::analyse::{analyse_tensor, read_tensor};
        // 1 GiB of F32 data (a 6 GiB working set) and 16 GiB (count past u32).
        for shape in ["[16384, 16384]", "[65536, 65536]"] {
            let spec = || {
                js_sys::JSON::parse(&format!(
                    r#"{{"name": "big.w", "dtype": "F32", "shape": {shape}}}"#
                ))
                .unwrap()
            };
            let none = JsValue::UNDEFINED;
            let c = compress_tensor(spec(), &[], none.clone(), none.clone());
            assert_too_large("compressTensor", answer(c), "`big.w`");
            assert_too_large("readTensor", answer(read_tensor(spec(), &[])), "`big.w`");
            let a = analyse_tensor(spec(), &[], none.clone());
            assert_too_large("analyseTensor", answer(a), "`big.w`");
        }
        module_still_works();
    }

    fn header_claiming(name: &str, shape: &str, data_bytes: u64) -> (Vec<u8>, f64) {
        let json = format!(
            r#"{{"{name}":{{"dtype":"F32","shape":{shape},"data_offsets":[0,{data_bytes}]}}}}"#
        );
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(json.as_bytes());
        let file_len = bytes.len() as u64 + data_bytes;
        (bytes, file_len as f64)
    }

    /// The page reads only the header of a file too large for wasm memory: a
    /// 2 GiB tensor is listed, then refused when compressed; a 64 GiB one
    /// (more bytes than a wasm32 address) is refused by `parseHeader`.
    #[test]
    fn header_of_a_huge_model_is_refused_with_a_message() {
        let (bytes, len) = header_claiming("enc.big", "[32768, 16384]", 1 << 31);
        let header = parse_header(&bytes, Some(len)).expect("2 GiB tensor listed");
        let tensors: js_sys::Array = prop(&header, "tensors").dyn_into().unwrap();
        let t = tensors.get(0);
        assert_eq!(json(&t)["compressible"], Value::Bool(true));
        let c = compress_tensor(t, &[], JsValue::UNDEFINED, JsValue::UNDEFINED);
        assert_too_large("compressTensor (2 GiB)", answer(c), "`enc.big`");

        let (bytes, len) = header_claiming("enc.huge", "[131072, 131072]", 1 << 36);
        let r = answer(parse_header(&bytes, Some(len)));
        assert_too_large("parseHeader (64 GiB)", r, "`enc.huge`");
        module_still_works();
    }

    /// A 16 MiB packed file (1 bit per 8 weights) of a 32768 x 32768 matrix:
    /// inspecting it works; decoding it (4 GiB of f32) is refused before
    /// anything is decoded.
    #[test]
    fn packed_file_that_decodes_past_wasm_memory_is_refused() {
        use half::f16;
        use jlcm::format::packed::{Mode, PackedEntry, PackedFile, PackedTensor};
        use jlcm::format::safetensors::Dtype;
        let n = 32768usize;
        let packed = PackedTensor {
            name: "enc.huge".into(),
            shape: vec![n, n],
            dtype: Dtype::F32,
            bits: 1,
            dim: 8,
            groups: 1,
            mode: Mode::Codebook,
            n_out: n,
            n_in: n,
            indices: vec![0u8; n * n / 64],
            codebooks: vec![f16::from_f32(0.5); 2 * 8],
            group_ids: vec![0u8; n],
            scales: Vec::new(),
            rotation: None,
        };
        let file = PackedFile {
            entries: vec![PackedEntry::Packed(packed)],
            metadata: Default::default(),
        };
        let bytes = file.to_bytes().expect("packed file");
        assert!(bytes.len() < 17 << 20);
        let info = json(&inspect_packed_file(&bytes).expect("inspect"));
        assert_eq!(info["originalBytes"].as_u64(), Some(4 << 30));
        assert_too_large("decodePackedFile", decode(&bytes), "`enc.huge`");
        module_still_works();
    }

    /// Sub-byte tensors (F4: two values a byte) are kept byte for byte by
    /// `addRaw` (the byte count was `bitsize / 8 = 0` per element before),
    /// and a byte count that does not match the shape is still refused.
    #[test]
    fn add_raw_keeps_sub_byte_tensors() {
        let spec =
            || js_sys::JSON::parse(r#"{"name": "q.f4", "dtype": "F4", "shape": [2, 4]}"#).unwrap();
        let mut builder = PackedFileBuilder::new();
        builder
            .add_raw(spec(), &[0x12, 0x34, 0x56, 0x78])
            .expect("F4 [2, 4] in 4 bytes");
        let (code, msg) = builder
            .add_raw(spec(), &[0; 8])
            .map_err(thrown)
            .expect_err("8 bytes");
        assert_eq!(code, "E_FORMAT", "{msg}");
        assert!(msg.contains("q.f4"), "{msg}");
        let dense = decode_packed_file(&builder.to_bytes().expect("bytes")).expect("decode");
        assert!(dense.ends_with(&[0x12, 0x34, 0x56, 0x78]));
    }
}
