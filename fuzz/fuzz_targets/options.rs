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
        assert_eq!(CompressOptions::from_json(&json).expect("round trip"), o);
    }
});
