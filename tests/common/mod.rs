//! Helpers shared by the native integration tests.
#![allow(dead_code)]

use jlcm::engine::rng::{rng_for, unit};
use jlcm::engine::Hessian;

/// Deterministic pseudo-random weights: heavy-ish tails, row scales varying.
pub fn weights(n_out: usize, n_in: usize, seed: u64) -> Vec<f32> {
    let mut rng = rng_for(seed, "weights", 0);
    let mut w = Vec::with_capacity(n_out * n_in);
    for r in 0..n_out {
        let scale = 0.02 * (1.0 + 4.0 * ((r % 7) as f32 / 7.0));
        for _ in 0..n_in {
            let u = unit(&mut rng) as f32 * 2.0 - 1.0;
            let v = unit(&mut rng) as f32 * 2.0 - 1.0;
            w.push(scale * (u + 0.5 * v * v * v));
        }
    }
    w
}

/// A dense correlated second-moment matrix `X^T X / n` from random inputs.
pub fn correlated_h(n_in: usize, seed: u64) -> Hessian {
    let mut rng = rng_for(seed, "hessian", 0);
    let n = 4 * n_in;
    let mut x = vec![0f32; n * n_in];
    for i in 0..n {
        let common = unit(&mut rng) as f32 - 0.5;
        for j in 0..n_in {
            let scale = 1.0 + (j % 5) as f32;
            x[i * n_in + j] = scale * (unit(&mut rng) as f32 - 0.5 + 0.8 * common);
        }
    }
    let mut h = vec![0f32; n_in * n_in];
    for i in 0..n {
        let row = &x[i * n_in..(i + 1) * n_in];
        for a in 0..n_in {
            for b in 0..n_in {
                h[a * n_in + b] += row[a] * row[b] / n as f32;
            }
        }
    }
    Hessian::from_calibration("test", n_in, &[n_in, n_in], h, 0.01).expect("valid H")
}
