//! Arbitrary text into the compression-options parser (the npm options
//! object and the page's form arrive as JSON).
#![no_main]

use jlcm::engine::CompressOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(o) = CompressOptions::from_json(&text) {
        // Whatever parsed is in range and survives a round trip.
        o.validate().expect("parsed options validate");
        let json = serde_json::to_string(&o).expect("options serialize");
        let back = CompressOptions::from_json(&json).expect("round trip");
        // serde_json (without `float_roundtrip`) may read a long decimal
        // 1 ulp away from the nearest double: floats compare within 1e-15
        // (finding options-1, tests/bad_files.rs).
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-15 * a.abs().max(b.abs());
        assert!(close(back.tol, o.tol), "tol {} -> {}", o.tol, back.tol);
        assert!(close(back.damping as f64, o.damping as f64));
        let exact = CompressOptions {
            tol: o.tol,
            damping: o.damping,
            ..back
        };
        assert_eq!(exact, o);
    }
});
