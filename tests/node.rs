//! The core's test suite in Node: `wasm-pack test --node`. (Natively the
//! suite runs from `tests/web.rs`, so this file is empty there.)
#![cfg(target_arch = "wasm32")]

mod suite;
