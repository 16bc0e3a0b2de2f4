#![doc = include_str!("../README.md")]

pub mod engine;
pub mod format;
pub mod kernels;
pub mod runtime;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
