//! Baseline quantisers: RTN, k-means palettisation, GPTQ.

use jlcm::engine::baselines::gptq::cholesky_lower;
use jlcm::engine::baselines::rtn::GroupQuantizer;
use jlcm::engine::baselines::{
    gptq, kmeans_per_row, kmeans_per_tensor, relative_h_error, rtn, GptqOptions, GroupOrder,
};
use jlcm::engine::rng::{rng_for, unit};
use jlcm::engine::Hessian;

/// Relative slack on RTN's `scale / 2` bound for f32 arithmetic.
const RTN_ROUNDING_SLACK: f32 = 1e-5;

fn gaussian(seed: u64, salt: &str, n: usize) -> Vec<f32> {
    let mut rng = rng_for(seed, salt, 0);
    (0..n)
        .map(|_| {
            let (u1, u2) = (unit(&mut rng).max(1e-12), unit(&mut rng));
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

/// `H = XᵀX / m` of inputs whose columns are strongly correlated (each a mix
/// of a few shared factors plus a little noise), with very unequal scales.
fn correlated_h(n: usize, m: usize) -> Vec<f32> {
    let factors = 8;
    let z = gaussian(1, "factors", m * factors);
    let mix = gaussian(2, "mix", factors * n);
    let noise = gaussian(3, "noise", m * n);
    let mut x = vec![0f32; m * n];
    for s in 0..m {
        for j in 0..n {
            let mut v = 0.1 * noise[s * n + j];
            for f in 0..factors {
                v += z[s * factors + f] * mix[f * n + j];
            }
            x[s * n + j] = v * (1.0 + (j % 7) as f32);
        }
    }
    let mut h = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            let mut t = 0f64;
            for s in 0..m {
                t += x[s * n + i] as f64 * x[s * n + j] as f64;
            }
            h[i * n + j] = (t / m as f64) as f32;
        }
    }
    h
}

#[test]
fn rtn_error_is_at_most_half_a_step() {
    let (n_out, n_in) = (16, 300);
    let mut w = gaussian(7, "w", n_out * n_in);
    w[5] = 40.0; // an outlier widens one group's grid
    for bits in [2u8, 3, 4, 8] {
        let q = rtn("t", &w, n_out, n_in, bits, 128);
        for r in 0..n_out {
            for (c, chunk) in w[r * n_in..(r + 1) * n_in].chunks(128).enumerate() {
                let grid = GroupQuantizer::fit(chunk.iter().copied(), bits);
                assert!(grid.scale > 0.0);
                for (j, x) in chunk.iter().enumerate() {
                    let xh = q.weights[r * n_in + c * 128 + j];
                    let bound = grid.scale / 2.0 * (1.0 + RTN_ROUNDING_SLACK)
                        + RTN_ROUNDING_SLACK * x.abs();
                    assert!(
                        (xh - x).abs() <= bound,
                        "bits {bits} row {r} group {c}: |{xh} - {x}| > {bound}"
                    );
                    // On the grid and inside the code range.
                    let code = ((xh - grid.zero) / grid.scale).round();
                    assert!((0.0..=grid.max_code as f32).contains(&code));
                }
            }
        }
    }
}

#[test]
fn rtn_scale_and_zero_are_f16_values() {
    let w = gaussian(8, "w", 4 * 128);
    for chunk in w.chunks(128) {
        let g = GroupQuantizer::fit(chunk.iter().copied(), 3);
        assert_eq!(half::f16::from_f32(g.scale).to_f32(), g.scale);
        assert_eq!(half::f16::from_f32(g.zero).to_f32(), g.zero);
    }
}

#[test]
fn rtn_counts_every_stored_bit() {
    let (n_out, n_in) = (64, 384);
    let w = gaussian(9, "w", n_out * n_in);
    let q = rtn("layer.weight", &w, n_out, n_in, 2, 128);
    // 2-bit codes + 3 groups per row of (f16 scale + f16 zero) = 2.25 bpw, plus the header.
    let payload = (n_out * n_in * 2 + n_out * 3 * 32) as u64;
    assert!(
        q.stored_bits > payload && q.stored_bits < payload + 8 * 1024,
        "{}",
        q.stored_bits
    );
}

#[test]
fn kmeans_per_tensor_recovers_planted_values() {
    let planted = [-1.5f32, -0.25, 0.5, 2.0];
    let (n_out, n_in) = (24, 96);
    let mut rng = rng_for(3, "planted", 0);
    let w: Vec<f32> = (0..n_out * n_in)
        .map(|_| planted[(unit(&mut rng) * 4.0) as usize])
        .collect();
    let hdiag: Vec<f32> = (0..n_in).map(|j| 0.5 + (j % 5) as f32).collect();
    let q = kmeans_per_tensor("t", &w, n_out, n_in, &hdiag, 2, 0);
    assert_eq!(q.weights, w);
    // 2-bit codes + 4 f16 codewords + header.
    assert!(q.stored_bits >= (n_out * n_in * 2 + 64) as u64);
}

#[test]
fn kmeans_per_row_recovers_planted_values_of_each_row() {
    let (n_out, n_in) = (12, 64);
    let mut rng = rng_for(4, "planted", 0);
    let mut w = vec![0f32; n_out * n_in];
    for r in 0..n_out {
        let planted: Vec<f32> = (0..8)
            .map(|k| (k as f32 - 3.5) * 0.125 * (r + 1) as f32)
            .collect();
        for j in 0..n_in {
            w[r * n_in + j] = planted[if j < 8 {
                j
            } else {
                (unit(&mut rng) * 8.0) as usize
            }];
        }
    }
    let q = kmeans_per_row("t", &w, n_out, n_in, &vec![1.0; n_in], 3, 0);
    assert_eq!(q.weights, w);
}

#[test]
fn kmeans_is_deterministic() {
    let (n_out, n_in) = (8, 128);
    let w = gaussian(5, "w", n_out * n_in);
    let hd = vec![1.0; n_in];
    assert_eq!(
        kmeans_per_tensor("t", &w, n_out, n_in, &hd, 3, 9),
        kmeans_per_tensor("t", &w, n_out, n_in, &hd, 3, 9)
    );
    assert_eq!(
        kmeans_per_row("t", &w, n_out, n_in, &hd, 2, 9),
        kmeans_per_row("t", &w, n_out, n_in, &hd, 2, 9)
    );
}

#[test]
fn cholesky_reconstructs_its_matrix() {
    let n = 40;
    let h = correlated_h(n, 200);
    let a: Vec<f64> = h.iter().map(|v| *v as f64).collect();
    let l = cholesky_lower(&a, n).expect("positive definite");
    for i in 0..n {
        for j in 0..n {
            let v: f64 = (0..n).map(|k| l[i * n + k] * l[j * n + k]).sum();
            assert!((v - a[i * n + j]).abs() <= 1e-9 * a[i * n + i].abs().max(1.0));
        }
    }
    let mut not_pd = a.clone();
    not_pd[0] = -1.0;
    assert!(cholesky_lower(&not_pd, n).is_none());
}

#[test]
fn gptq_without_correlations_or_act_order_is_rtn() {
    // H = I: the error of a column has nothing to flow into, and the static
    // grids are RTN's grids.
    let (n_out, n_in) = (8, 256);
    let w = gaussian(6, "w", n_out * n_in);
    let opts = GptqOptions {
        act_order: false,
        ..GptqOptions::standard(3)
    };
    let g = gptq("t", &w, n_out, n_in, &Hessian::Identity(n_in), &opts);
    let r = rtn("t", &w, n_out, n_in, 3, 128);
    assert_eq!(g.weights, r.weights);
    assert_eq!(g.stored_bits, r.stored_bits);
}

#[test]
fn gptq_output_error_is_below_rtn_on_correlated_inputs() {
    let (n_out, n_in) = (32, 256);
    let h = correlated_h(n_in, 1024);
    let w = gaussian(10, "w", n_out * n_in);
    let hess = Hessian::Dense {
        n: n_in,
        data: h.clone(),
    };
    for bits in [2u8, 3, 4] {
        let r = rtn("t", &w, n_out, n_in, bits, 128);
        let e_rtn = relative_h_error(&w, &r.weights, n_out, n_in, &h);
        for order in [GroupOrder::Static, GroupOrder::Encountered] {
            let opts = GptqOptions {
                order,
                ..GptqOptions::standard(bits)
            };
            let g = gptq("t", &w, n_out, n_in, &hess, &opts);
            let e_gptq = relative_h_error(&w, &g.weights, n_out, n_in, &h);
            assert!(
                e_gptq < e_rtn,
                "bits {bits} {order:?}: GPTQ {e_gptq} vs RTN {e_rtn}"
            );
            // The permutation of Encountered groups is counted.
            let extra = if order == GroupOrder::Encountered {
                16 * n_in as u64
            } else {
                0
            };
            assert!(g.stored_bits >= r.stored_bits + extra);
        }
    }
}

#[test]
fn gptq_is_deterministic() {
    let (n_out, n_in) = (16, 130);
    let h = correlated_h(n_in, 300);
    let w = gaussian(11, "w", n_out * n_in);
    let hess = Hessian::Dense { n: n_in, data: h };
    let o = GptqOptions::standard(2);
    assert_eq!(
        gptq("t", &w, n_out, n_in, &hess, &o),
        gptq("t", &w, n_out, n_in, &hess, &o)
    );
}
