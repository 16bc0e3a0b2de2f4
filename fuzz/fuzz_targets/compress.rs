//! Small matrices with arbitrary values (zeros, repeats, NaN, huge, tiny)
//! and arbitrary in-range options through the engine: it must return a
//! packed tensor that validates or a typed error, never panic.
#![no_main]

use jlcm::engine::{compress_matrix, CompressOptions, Control, Hessian, MoveRule};
use jlcm::format::packed::Mode;
use jlcm::format::safetensors::Dtype;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<6>() else {
        return;
    };
    let opts = CompressOptions {
        // bits <= 4 and groups <= 16 keep an execution near a millisecond
        // (8 bits x dim 8 takes seconds under ASan).
        bits: 1 + head[0] % 4,
        dim: [1u8, 2, 4, 8][(head[1] % 4) as usize],
        groups: 1 + (head[2] as u16) % 16,
        mode: if head[3] & 1 == 0 { Mode::Codebook } else { Mode::Scale },
        moves: if head[3] & 2 == 0 { MoveRule::Proximal } else { MoveRule::Unconstrained },
        iters: ((head[3] >> 2) % 3) as u32,
        seed: head[4] as u64,
        ..CompressOptions::default()
    };
    let n_out = 1 + (head[5] % 16) as usize;
    let values: Vec<f32> = rest
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let n_in = values.len() / n_out;
    if n_in == 0 || n_in > 128 {
        return;
    }
    let w = &values[..n_out * n_in];
    let h = Hessian::Identity(n_in);
    let result = compress_matrix(
        "fuzz.w",
        Dtype::F32,
        &[n_out, n_in],
        w,
        n_out,
        n_in,
        &h,
        &opts,
        &mut |_| Control::Continue,
    );
    if let Ok((p, report)) = result {
        p.validate().expect("engine output validates");
        assert!(w.iter().all(|v| v.is_finite()), "non-finite input was compressed");
        let d = p.decode_f32();
        assert_eq!(d.len(), n_out * n_in);
        assert_eq!(report.n_out, n_out);
    }
});
