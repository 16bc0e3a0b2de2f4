//! Arbitrary bytes into the safetensors reader: the header alone (as the page
//! reads it), the whole file, then every tensor converted to f32.
#![no_main]

use jlcm::format::safetensors::{self as st, SafetensorsFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Header alone, with and without a (claimed) file length.
    let _ = st::parse_header(data, None);
    let _ = st::parse_header(data, Some(data.len() as u64));
    let _ = st::parse_header(data, Some(u64::MAX));
    let Ok(file) = SafetensorsFile::parse(data) else {
        return;
    };
    let header = &file.header;
    // Validated sizes are consistent with the bytes we hold.
    assert_eq!(header.file_len(), data.len() as u64);
    for t in &header.tensors {
        let _ = st::check_fits(t, 1 << 20);
        let raw = file.tensor_bytes(t);
        assert_eq!(raw.len() as u64, t.byte_len());
        let _ = t.matrix_shape();
        if let Ok(v) = st::to_f32(t, raw) {
            assert_eq!(v.len(), t.num_elements());
            let _ = st::check_finite(&t.name, &v);
        }
        let _ = file.tensor_f32(&t.name);
    }
});
