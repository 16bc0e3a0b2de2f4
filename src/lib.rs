#![doc = include_str!("../README.md")]

pub mod engine;
pub mod format;
pub mod kernels;
pub mod runtime;
