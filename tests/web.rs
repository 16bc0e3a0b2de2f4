//! The core's test suite in a browser: `wasm-pack test --headless --chrome`
//! (Chromium, SIMD128 build). Natively this file runs the same suite under
//! `cargo test`. The Node twin is `tests/node.rs`.

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod suite;
