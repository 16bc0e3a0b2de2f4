//! Engine speed on MiniLM-shaped matrices with a dense synthetic `H`.
//! `cargo bench --bench engine` prints one row per shape.

use std::time::Instant;

use jlcm::engine::rng::{rng_for, unit};
use jlcm::engine::{compress_matrix, CompressOptions, Control, Hessian};
use jlcm::format::safetensors::Dtype;

fn dense_h(n: usize) -> Hessian {
    let mut rng = rng_for(1, "bench-h", 0);
    let m = 2 * n;
    let x: Vec<f32> = (0..m * n).map(|_| unit(&mut rng) as f32 - 0.5).collect();
    let mut h = vec![0f32; n * n];
    for i in 0..m {
        let row = &x[i * n..(i + 1) * n];
        for a in 0..n {
            let ra = row[a] / m as f32;
            for (hb, rb) in h[a * n..(a + 1) * n].iter_mut().zip(row) {
                *hb += ra * rb;
            }
        }
    }
    Hessian::from_calibration("bench", n, &[n, n], h, 0.01).expect("valid")
}

fn main() {
    println!("| shape | bits | d | G | H | sweeps | time (s) | loss init -> final |");
    println!("|---|---|---|---|---|---|---|---|");
    for &(n_out, n_in) in &[(384usize, 384usize), (1536, 384), (384, 1536)] {
        let mut rng = rng_for(2, "bench-w", 0);
        let w: Vec<f32> = (0..n_out * n_in)
            .map(|_| (unit(&mut rng) as f32 - 0.5) * 0.1)
            .collect();
        let dense = dense_h(n_in);
        for (label, h) in [("dense", &dense), ("identity", &Hessian::Identity(n_in))] {
            for (bits, dim) in [(2u8, 1u8), (4, 1), (8, 4)] {
                let opts = CompressOptions {
                    bits,
                    dim,
                    groups: 16,
                    iters: 10,
                    ..Default::default()
                };
                let t = Instant::now();
                let (_, rep) = compress_matrix(
                    "w",
                    Dtype::F32,
                    &[n_out, n_in],
                    &w,
                    n_out,
                    n_in,
                    h,
                    &opts,
                    &mut |_| Control::Continue,
                )
                .expect("compress");
                let secs = t.elapsed().as_secs_f64();
                let sweeps = rep.losses.last().map_or(0, |p| p.sweep);
                println!(
                    "| {n_out}x{n_in} | {bits} | {dim} | 16 | {label} | {sweeps} | {secs:.3} | {:.4e} -> {:.4e} |",
                    rep.losses[0].loss,
                    rep.losses.last().map_or(0.0, |p| p.loss)
                );
            }
        }
    }
}
