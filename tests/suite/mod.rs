//! The core's checks, run natively (`cargo test`), in Chromium
//! (`tests/web.rs`, `wasm-pack test --headless --chrome`) and in Node
//! (`tests/node.rs`, `wasm-pack test --node`).
//!
//! `#[cfg_attr(..., wasm_bindgen_test)]` turns each `#[test]` into a
//! wasm-bindgen test on wasm32.

use std::collections::BTreeMap;

use jlcm::engine::group::group_rows;
use jlcm::engine::kmeans::weighted_kmeans;
use jlcm::engine::rng::{rng_for, EngineRng};
use jlcm::engine::{compress_matrix, CompressOptions, Control, EngineError, Event, Hessian};
use jlcm::format::packed::{Mode, PackedEntry, PackedFile, PackedTensor};
use jlcm::format::safetensors::{self as st, Dtype, OwnedTensor};
use jlcm::format::FormatError;
use jlcm::kernels::PackedMatrix;
use rand::Rng;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// The bad-file corpus through the JS binding (issue 5).
mod bad_files;

/// FNV-1a over bytes: the fingerprint compared between native and wasm.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A deterministic matrix from integer arithmetic only (bit-identical on
/// every platform): heavy-ish tails and rows of four different scales.
pub fn synthetic_matrix(n_out: usize, n_in: usize, seed: u64) -> Vec<f32> {
    let mut rng: EngineRng = rng_for(seed, "synthetic", 0);
    (0..n_out * n_in)
        .map(|i| {
            let u = (rng.gen::<u32>() >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            u * u * u * 8.0 * (1 + (i / n_in) % 4) as f32
        })
        .collect()
}

fn compress(
    w: &[f32],
    n_out: usize,
    n_in: usize,
    opts: &CompressOptions,
) -> (PackedTensor, jlcm::engine::TensorReport) {
    compress_under(w, n_out, n_in, &Hessian::Identity(n_in), opts)
}

/// Compress `w` (named `w`) under metric `h`, expecting success.
fn compress_under(
    w: &[f32],
    n_out: usize,
    n_in: usize,
    h: &Hessian,
    opts: &CompressOptions,
) -> (PackedTensor, jlcm::engine::TensorReport) {
    compress_matrix(
        "w",
        Dtype::F32,
        &[n_out, n_in],
        w,
        n_out,
        n_in,
        h,
        opts,
        &mut |_| Control::Continue,
    )
    .expect("compress")
}

fn f32_tensor(shape: &[usize], values: &[f32]) -> OwnedTensor {
    OwnedTensor {
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        data: st::from_f32(Dtype::F32, values),
    }
}

// ---------------------------------------------------------------- safetensors

#[test]
fn safetensors_header_alone_then_tensor_bytes() {
    let w = synthetic_matrix(4, 8, 1);
    let tensors = vec![
        ("a".to_string(), f32_tensor(&[4, 8], &w)),
        ("b".to_string(), f32_tensor(&[3], &[1.0, 2.0, 3.0])),
    ];
    let mut meta = BTreeMap::new();
    meta.insert("k".to_string(), "v".to_string());
    let bytes = st::write(&tensors, &meta).unwrap();
    let json_len = st::read_header_len(&bytes, Some(bytes.len() as u64)).unwrap() as usize;
    let header = st::parse_header(&bytes[..8 + json_len], Some(bytes.len() as u64)).unwrap();
    assert_eq!(header.metadata.get("k").map(String::as_str), Some("v"));
    let a = header.get("a").unwrap();
    assert!(a.is_compressible());
    assert!(!header.get("b").unwrap().is_compressible());
    let (s, e) = header.file_range(a);
    assert_eq!(st::to_f32(a, &bytes[s as usize..e as usize]).unwrap(), w);
}

#[test]
fn safetensors_rejects_bad_bytes() {
    let bytes = st::write(
        &[("a".to_string(), f32_tensor(&[2, 8], &[0.5; 16]))],
        &BTreeMap::new(),
    )
    .unwrap();
    assert!(matches!(
        st::parse_header(&bytes[..5], None),
        Err(FormatError::TooShort { .. })
    ));
    let truncated = &bytes[..bytes.len() - 4];
    assert!(matches!(
        st::SafetensorsFile::parse(truncated),
        Err(FormatError::DataLength { .. })
    ));
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        st::parse_header(&huge, None),
        Err(FormatError::HeaderTooLarge { .. })
    ));
    let mut garbage = bytes.clone();
    garbage[8] = b'[';
    assert!(st::parse_header(&garbage, None).is_err());
}

#[test]
fn safetensors_half_precision_round_trip() {
    let values = [0.0f32, 1.0, -2.5, 0.125, 65504.0, -0.0009765625];
    for dtype in [Dtype::F16, Dtype::BF16, Dtype::F32] {
        let data = st::from_f32(dtype, &values);
        let entry = st::TensorEntry {
            name: "x".into(),
            dtype,
            shape: vec![6],
            start: 0,
            end: data.len() as u64,
        };
        let back = st::to_f32(&entry, &data).unwrap();
        for (a, b) in values.iter().zip(&back) {
            assert!((a - b).abs() <= a.abs() * 1e-2, "{dtype:?}: {a} -> {b}");
        }
    }
}

// ---------------------------------------------------------------- grouping, k-means

#[test]
fn grouping_separates_rows_of_different_scales() {
    let (n_out, n_in) = (32, 64);
    let base = synthetic_matrix(n_out, n_in, 2);
    let w: Vec<f32> = base
        .iter()
        .enumerate()
        .map(|(i, v)| if i / n_in < 16 { v * 0.01 } else { *v })
        .collect();
    let mut rng = rng_for(0, "w", u64::MAX);
    let (ids, n) = group_rows(&w, n_out, n_in, &vec![1.0; n_in], 2, &mut rng);
    assert_eq!(n, 2);
    // Groups are numbered by ascending scale: the small rows are group 0.
    assert!(ids[..16].iter().all(|g| *g == 0), "{ids:?}");
    assert!(ids[16..].iter().all(|g| *g == 1), "{ids:?}");
}

#[test]
fn kmeans_finds_separated_clusters_deterministically() {
    let centers = [-5.0f32, 0.0, 7.0];
    let mut points = Vec::new();
    for i in 0..300 {
        points.push(centers[i % 3] + ((i * 37 % 11) as f32 - 5.0) * 0.01);
    }
    let weights = vec![1.0; points.len()];
    let a = weighted_kmeans(&points, &weights, 1, 3, 20, &mut rng_for(3, "km", 0));
    let b = weighted_kmeans(&points, &weights, 1, 3, 20, &mut rng_for(3, "km", 0));
    assert_eq!(a.centroids, b.centroids);
    assert_eq!(a.assignment, b.assignment);
    let mut c = a.centroids.clone();
    c.sort_by(f32::total_cmp);
    for (got, want) in c.iter().zip(centers) {
        assert!((got - want).abs() < 0.05, "centroids {c:?}");
    }
    assert!(a.inertia < 300.0 * 0.05 * 0.05);
}

// ---------------------------------------------------------------- joint learning

/// A correlated calibration `H = X^T X / n` with `X` from `synthetic_matrix`.
pub fn synthetic_hessian(n_in: usize) -> Hessian {
    let n = 4 * n_in;
    let x = synthetic_matrix(n, n_in, 11);
    let mut h = vec![0f32; n_in * n_in];
    for s in 0..n {
        let row = &x[s * n_in..(s + 1) * n_in];
        for i in 0..n_in {
            for j in 0..n_in {
                h[i * n_in + j] += (row[i] + 0.5 * row[(i + 1) % n_in])
                    * (row[j] + 0.5 * row[(j + 1) % n_in])
                    / n as f32;
            }
        }
    }
    Hessian::from_calibration("w", n_in, &[n_in, n_in], h, 0.01).unwrap()
}

#[test]
fn joint_learning_never_increases_the_loss() {
    let (n_out, n_in) = (48, 96);
    let w = synthetic_matrix(n_out, n_in, 4);
    let h = synthetic_hessian(n_in);
    for (bits, dim, mode) in [
        (2, 1, Mode::Codebook),
        (3, 2, Mode::Scale),
        (4, 4, Mode::Codebook),
    ] {
        let opts = CompressOptions {
            bits,
            dim,
            groups: 4,
            mode,
            iters: 8,
            tol: 0.0,
            ..Default::default()
        };
        let (_, report) = compress_under(&w, n_out, n_in, &h, &opts);
        let losses: Vec<f64> = report.losses.iter().map(|p| p.loss).collect();
        for pair in losses.windows(2) {
            assert!(
                pair[1] <= pair[0] * (1.0 + 1e-9),
                "bits {bits} dim {dim}: loss rose {losses:?}"
            );
        }
        assert!(
            losses.last().unwrap() < &(losses[0] * 0.999),
            "learning did not lower the loss: {losses:?}"
        );
        assert!(
            report.rel_output_error < 0.6,
            "bits {bits} dim {dim}: error {}",
            report.rel_output_error
        );
    }
}

#[test]
fn compression_stops_when_the_observer_cancels() {
    let w = synthetic_matrix(16, 32, 5);
    let mut seen = 0;
    let result = compress_matrix(
        "w",
        Dtype::F32,
        &[16, 32],
        &w,
        16,
        32,
        &Hessian::Identity(32),
        &CompressOptions::default(),
        &mut |e| {
            seen += 1;
            if matches!(e, Event::Loss { .. }) {
                Control::Cancel
            } else {
                Control::Continue
            }
        },
    );
    assert!(matches!(result, Err(EngineError::Cancelled)));
    assert!(seen <= 4);
}

// ---------------------------------------------------------------- pack / decode

#[test]
fn pack_decode_round_trip() {
    let (n_out, n_in) = (24, 40);
    let w = synthetic_matrix(n_out, n_in, 6);
    for (bits, dim, mode) in [
        (1, 1, Mode::Codebook),
        (3, 2, Mode::Scale),
        (5, 8, Mode::Codebook),
        (8, 1, Mode::Codebook),
    ] {
        let opts = CompressOptions {
            bits,
            dim,
            groups: 3,
            mode,
            iters: 2,
            ..Default::default()
        };
        let (packed, _) = compress(&w, n_out, n_in, &opts);
        let bias = f32_tensor(&[n_out], &w[..n_out]);
        let file = PackedFile {
            entries: vec![
                PackedEntry::Packed(packed.clone()),
                PackedEntry::Raw {
                    name: "b".into(),
                    tensor: bias.clone(),
                },
            ],
            metadata: BTreeMap::new(),
        };
        let bytes = file.to_bytes().unwrap();
        let back = PackedFile::from_bytes(&bytes).unwrap();
        // The writer orders tensors its own way: compare by name.
        let by_name = |f: &PackedFile| {
            f.entries
                .iter()
                .map(|e| (e.name().to_string(), e.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(by_name(&back), by_name(&file), "bits {bits} dim {dim}");
        let decoded = back.decode().unwrap();
        let f = st::SafetensorsFile::parse(&decoded).unwrap();
        assert_eq!(f.header.get("w").unwrap().shape, vec![n_out, n_in]);
        assert_eq!(f.tensor_f32("w").unwrap(), packed.decode_f32());
        assert_eq!(f.tensor_bytes(f.header.get("b").unwrap()), &bias.data[..]);
    }
}

#[test]
fn packed_matmul_matches_dense_decode() {
    let (n_out, n_in, batch) = (20, 33, 3);
    let w = synthetic_matrix(n_out, n_in, 7);
    let opts = CompressOptions {
        bits: 3,
        dim: 4,
        groups: 2,
        iters: 2,
        ..Default::default()
    };
    let (packed, _) = compress(&w, n_out, n_in, &opts);
    let dense = packed.decode_f32();
    let x = synthetic_matrix(batch, n_in, 8);
    let mut y = vec![0f32; batch * n_out];
    PackedMatrix::new(packed)
        .unwrap()
        .matmul(&x, batch, &mut y)
        .unwrap();
    for b in 0..batch {
        for r in 0..n_out {
            let want: f64 = (0..n_in)
                .map(|j| dense[r * n_in + j] as f64 * x[b * n_in + j] as f64)
                .sum();
            assert!(
                (y[b * n_out + r] as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                "y[{b},{r}]"
            );
        }
    }
}

// ---------------------------------------------------------------- determinism

/// FNV-1a of the packed files below, produced natively. The same test in
/// Chromium and Node must reproduce it bit for bit.
pub const DETERMINISM_FINGERPRINT: u64 = 0x2075_5543_163b_b5a0;

#[test]
fn same_bytes_as_native_for_the_same_seed() {
    let (n_out, n_in) = (40, 72);
    let w = synthetic_matrix(n_out, n_in, 9);
    let h = synthetic_hessian(n_in);
    let mut fingerprint = 0u64;
    for (bits, dim, mode, rotate) in [
        (2, 1, Mode::Codebook, false),
        (3, 2, Mode::Scale, false),
        (4, 4, Mode::Codebook, false),
        (2, 1, Mode::Codebook, true),
    ] {
        let opts = CompressOptions {
            bits,
            dim,
            groups: 4,
            mode,
            iters: 6,
            seed: 42,
            rotate,
            ..Default::default()
        };
        let (packed, _) = compress_under(&w, n_out, n_in, &h, &opts);
        let file = PackedFile {
            entries: vec![PackedEntry::Packed(packed)],
            metadata: BTreeMap::new(),
        };
        fingerprint = fnv1a64(&fingerprint.to_le_bytes()) ^ fnv1a64(&file.to_bytes().unwrap());
    }
    assert_eq!(
        fingerprint, DETERMINISM_FINGERPRINT,
        "fingerprint {fingerprint:#018x}"
    );
}

/// A rotated tensor's products (the SIMD kernels here: SIMD128 in wasm)
/// equal the product with its decoded weight `Q R`.
#[test]
fn rotated_products_match_the_decoded_weight() {
    let (n_out, n_in) = (24, 64);
    let w = synthetic_matrix(n_out, n_in, 3);
    let h = synthetic_hessian(n_in);
    let opts = CompressOptions {
        bits: 2,
        groups: 2,
        iters: 3,
        rotate: true,
        ..Default::default()
    };
    let (packed, _) = compress_under(&w, n_out, n_in, &h, &opts);
    assert!(packed.rotation.is_some());
    let dec = packed.decode_f32();
    let m = PackedMatrix::new(packed).unwrap();
    for batch in [1usize, 5] {
        let x: Vec<f32> = (0..batch * n_in)
            .map(|i| ((i * 7) % 13) as f32 / 6.0 - 1.0)
            .collect();
        let mut y = vec![0f32; batch * n_out];
        m.matmul(&x, batch, &mut y).unwrap();
        for b in 0..batch {
            for r in 0..n_out {
                let want: f32 = (0..n_in).map(|j| dec[r * n_in + j] * x[b * n_in + j]).sum();
                let got = y[b * n_out + r];
                assert!(
                    (got - want).abs() <= 1e-3 * (1.0 + want.abs()),
                    "batch {batch} row {r}: {got} vs {want}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------- the binding (wasm only)

#[cfg(target_arch = "wasm32")]
#[test]
fn this_module_is_the_simd128_build() {
    assert!(
        jlcm::wasm::simd128_enabled(),
        "the running module was built without +simd128 (RUSTFLAGS replaced .cargo/config.toml?)"
    );
}

#[cfg(target_arch = "wasm32")]
#[test]
fn binding_errors_carry_a_stable_code() {
    use wasm_bindgen::{JsCast, JsValue};
    let err = jlcm::wasm::header::parse_header(&[1, 2, 3], None).unwrap_err();
    let code = js_sys::Reflect::get(&err, &JsValue::from_str("code")).unwrap();
    assert_eq!(code.as_string().as_deref(), Some("E_FORMAT"));
    assert!(err.is_instance_of::<js_sys::Error>());
    let opts = js_sys::JSON::parse(r#"{"bits": 2, "colour": "red"}"#).unwrap();
    let spec = js_sys::JSON::parse(r#"{"name": "w", "dtype": "F32", "shape": [2, 8]}"#).unwrap();
    let err = jlcm::wasm::compress::compress_tensor(spec, &[0u8; 64], opts, JsValue::UNDEFINED)
        .err()
        .unwrap();
    let code = js_sys::Reflect::get(&err, &JsValue::from_str("code")).unwrap();
    assert_eq!(code.as_string().as_deref(), Some("E_OPTIONS"));
}
