//! File formats: packed round trips (proptest) and one test per parse error
//! built from literal bytes.

use std::collections::BTreeMap;

use half::f16;
use jlcm::format::packed::{
    pack_indices, read_index, unpack_row, Mode, PackedEntry, PackedFile, PackedTensor,
    FORMAT_VERSION,
};
use jlcm::format::safetensors::{self as st, Dtype, OwnedTensor};
use jlcm::format::FormatError;
use proptest::prelude::*;

fn file_with_header(json: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (json.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(json.as_bytes());
    v.extend_from_slice(data);
    v
}

fn packed_tensor(
    n_out: usize,
    n_in: usize,
    bits: u8,
    dim: u8,
    groups: u16,
    mode: Mode,
    seed: u64,
) -> PackedTensor {
    let k = 1usize << bits;
    let d = dim as usize;
    let n_sub = n_in.div_ceil(d);
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let idx: Vec<u8> = (0..n_out * n_sub)
        .map(|_| (next() % k as u64) as u8)
        .collect();
    let n_cb = if mode == Mode::Codebook {
        groups as usize
    } else {
        1
    };
    let codebooks = (0..n_cb * k * d)
        .map(|_| f16::from_f32((next() % 2001) as f32 / 1000.0 - 1.0))
        .collect();
    let group_ids = (0..n_out).map(|_| (next() % groups as u64) as u8).collect();
    let scales = if mode == Mode::Scale {
        (0..groups)
            .map(|_| f16::from_f32(0.5 + (next() % 100) as f32 / 100.0))
            .collect()
    } else {
        vec![]
    };
    PackedTensor {
        name: "layer.weight".into(),
        shape: vec![n_out, n_in],
        dtype: Dtype::F32,
        bits,
        dim,
        groups,
        mode,
        n_out,
        n_in,
        indices: pack_indices(&idx, n_sub, bits),
        codebooks,
        group_ids,
        scales,
        rotation: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn pack_unpack_round_trips(bits in 1u8..=8, dim_i in 0usize..4, groups in 1u16..=256, n_out in 1usize..40, n_in in 8usize..70,
                               scale in any::<bool>(), seed in any::<u64>()) {
        let dim = [1u8, 2, 4, 8][dim_i];
        let mode = if scale { Mode::Scale } else { Mode::Codebook };
        let p = packed_tensor(n_out.max(2), n_in, bits, dim, groups, mode, seed);
        p.validate().unwrap();
        // Index bit-packing round trips.
        let n_sub = p.n_sub();
        let mut row = vec![0u8; n_sub];
        for r in 0..p.n_out {
            unpack_row(p.row_indices(r), n_sub, bits, &mut row);
            let again = pack_indices(&row, n_sub, bits);
            prop_assert_eq!(&again[..], p.row_indices(r));
            for (s, v) in row.iter().enumerate() {
                prop_assert_eq!(*v, read_index(p.row_indices(r), s, bits));
            }
        }
        // The file round trips exactly.
        let raw = OwnedTensor { dtype: Dtype::F16, shape: vec![3], data: vec![1, 2, 3, 4, 5, 6] };
        let f = PackedFile { entries: vec![PackedEntry::Raw { name: "bias".into(), tensor: raw }, PackedEntry::Packed(p.clone())], metadata: BTreeMap::new() };
        let bytes = f.to_bytes().unwrap();
        let back = PackedFile::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &f);
        prop_assert_eq!(back.to_bytes().unwrap(), bytes);
        // Decode gives the original names, shapes and dtype, and the values.
        let dense = f.decode().unwrap();
        let file = st::SafetensorsFile::parse(&dense).unwrap();
        let e = file.header.get("layer.weight").unwrap();
        prop_assert_eq!(e.dtype, Dtype::F32);
        prop_assert_eq!(&e.shape, &vec![p.n_out, n_in]);
        prop_assert_eq!(file.tensor_f32("layer.weight").unwrap(), p.decode_f32());
        prop_assert_eq!(file.header.get("bias").unwrap().dtype, Dtype::F16);
    }
}

fn err(bytes: &[u8]) -> FormatError {
    st::SafetensorsFile::parse(bytes).unwrap_err()
}

#[test]
fn each_parse_error_from_literal_bytes() {
    assert!(matches!(err(b"\x05\x00"), FormatError::TooShort { .. }));
    let mut big = (200_000_000u64).to_le_bytes().to_vec();
    big.extend_from_slice(b"{}");
    assert!(matches!(err(&big), FormatError::HeaderTooLarge { .. }));
    assert!(matches!(
        err(&file_with_header("{}", b"")[..6]),
        FormatError::TooShort { .. }
    ));
    let mut past = (50u64).to_le_bytes().to_vec();
    past.extend_from_slice(b"{}");
    assert!(matches!(err(&past), FormatError::HeaderPastEnd { .. }));
    let mut utf = (4u64).to_le_bytes().to_vec();
    utf.extend_from_slice(&[b'{', 0xff, 0xfe, b'}']);
    assert!(matches!(err(&utf), FormatError::HeaderUtf8 { at: 1 }));
    assert!(matches!(
        err(&file_with_header("[1,2]", b"")),
        FormatError::HeaderInvalid(_)
    ));
    assert!(matches!(
        err(&file_with_header("{\"a\":", b"")),
        FormatError::HeaderInvalid(_)
    ));
    // Gapped offsets.
    let gap = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    assert!(
        matches!(err(&file_with_header(gap, &[0; 8])), FormatError::HeaderInvalid(m) if m.contains('a'))
    );
    // Shape x dtype mismatching the range.
    let mism = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    assert!(matches!(
        err(&file_with_header(mism, &[0; 8])),
        FormatError::HeaderInvalid(_)
    ));
    // Element-count overflow.
    let ovf = r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#;
    assert!(matches!(
        err(&file_with_header(ovf, &[0; 8])),
        FormatError::HeaderInvalid(_)
    ));
    // Truncated and padded data sections.
    let ok = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    assert!(matches!(
        err(&file_with_header(ok, &[0; 7])),
        FormatError::DataLength {
            expected: 8,
            actual: 7
        }
    ));
    assert!(matches!(
        err(&file_with_header(ok, &[0; 9])),
        FormatError::DataLength {
            expected: 8,
            actual: 9
        }
    ));
    assert!(st::SafetensorsFile::parse(&file_with_header(ok, &[0; 8])).is_ok());
    // Unsupported dtype when read as f32.
    let i32h = r#"{"a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#;
    let bytes = file_with_header(i32h, &[0; 8]);
    let f = st::SafetensorsFile::parse(&bytes).unwrap();
    assert!(matches!(
        f.tensor_f32("a"),
        Err(FormatError::UnsupportedDtype { .. })
    ));
    assert!(matches!(
        f.tensor_f32("b"),
        Err(FormatError::TensorNotFound(_))
    ));
    // NaN weights are named.
    let nan = st::check_finite("w", &[0.0, f32::NAN, f32::INFINITY]).unwrap_err();
    assert_eq!(
        nan,
        FormatError::NonFinite {
            name: "w".into(),
            count: 2,
            first: 1
        }
    );
}

#[test]
fn packed_file_errors() {
    let p = packed_tensor(4, 16, 2, 1, 2, Mode::Codebook, 1);
    let f = PackedFile {
        entries: vec![PackedEntry::Packed(p.clone())],
        metadata: BTreeMap::new(),
    };
    let good = f.to_bytes().unwrap();
    // A plain safetensors file is not a packed file.
    let plain = st::write(
        &[(
            "a".into(),
            OwnedTensor {
                dtype: Dtype::F32,
                shape: vec![1],
                data: vec![0; 4],
            },
        )],
        &BTreeMap::new(),
    )
    .unwrap();
    assert!(
        matches!(PackedFile::from_bytes(&plain), Err(FormatError::PackedMeta(m)) if m.contains("not a jlcm"))
    );
    // Wrong version.
    let mut md = BTreeMap::new();
    md.insert("jlcm.format".to_string(), (FORMAT_VERSION + 1).to_string());
    let v2 = st::write(
        &[(
            "a".into(),
            OwnedTensor {
                dtype: Dtype::F32,
                shape: vec![1],
                data: vec![0; 4],
            },
        )],
        &md,
    )
    .unwrap();
    assert!(
        matches!(PackedFile::from_bytes(&v2), Err(FormatError::PackedMeta(m)) if m.contains("version"))
    );
    // Group id out of range.
    let mut bad = p.clone();
    bad.group_ids[0] = 7;
    assert!(
        matches!(bad.validate(), Err(FormatError::PackedTensor { problem, .. }) if problem.contains("group"))
    );
    // Codebook of the wrong size.
    let mut bad = p.clone();
    bad.codebooks.pop();
    assert!(bad.validate().is_err());
    // Non-zero padding bits (an out-of-range index slot).
    let mut bad = packed_tensor(2, 9, 3, 1, 1, Mode::Codebook, 2);
    let rb = bad.row_bytes();
    bad.indices[rb - 1] |= 0x80;
    assert!(
        matches!(bad.validate(), Err(FormatError::PackedTensor { problem, .. }) if problem.contains("padding"))
    );
    // A missing part.
    let parts = p.parts().0;
    let (_, meta) = p.parts();
    let mut md = BTreeMap::new();
    md.insert("jlcm.format".to_string(), FORMAT_VERSION.to_string());
    md.insert(meta.0, meta.1);
    let missing = st::write(&parts[..2], &md).unwrap();
    assert!(
        matches!(PackedFile::from_bytes(&missing), Err(FormatError::PackedTensor { problem, .. }) if problem.contains("missing"))
    );
    assert!(PackedFile::from_bytes(&good).is_ok());
    // Truncated at every region gives an error, never a panic.
    for cut in 0..good.len() {
        assert!(
            PackedFile::from_bytes(&good[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}
