//! Arbitrary bytes into the packed reader: parse and validate, decode to a
//! dense file, and run the kernels (every instruction set; one input and a
//! batch) on every packed tensor that validated.
#![no_main]

use jlcm::format::packed::{PackedEntry, PackedFile};
use jlcm::kernels::{Isa, PackedMatrix};
use libfuzzer_sys::fuzz_target;

/// Skip decoding tensors larger than this many weights (a small file can
/// describe a large matrix at 1 bit per 8 weights; that is legal, just slow).
const MAX_WEIGHTS: u64 = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = PackedFile::from_bytes(data) else {
        return;
    };
    let weights: u64 = file
        .entries
        .iter()
        .map(|e| match e {
            PackedEntry::Packed(p) => (p.n_out as u64) * (p.n_in as u64),
            PackedEntry::Raw { .. } => 0,
        })
        .sum();
    if weights > MAX_WEIGHTS {
        return;
    }
    // What was read writes back and reads again to the same thing.
    let bytes = file.to_bytes().expect("a file that parsed writes back");
    let again = PackedFile::from_bytes(&bytes).expect("written file parses");
    assert_eq!(again, file);
    let _ = file.decode();
    for e in &file.entries {
        let PackedEntry::Packed(p) = e else { continue };
        let _ = p.check_fits(1 << 20);
        let w = p.decode_f32();
        // Every instruction set this CPU has (portable, AVX2), one input
        // (the row path) and a batch of 5 (the tiled batch >= 4 path), all
        // against the dense decode.
        for isa in Isa::available() {
            let Ok(m) = PackedMatrix::with_isa(p.clone(), isa) else {
                continue;
            };
            let (n_in, n_out) = (m.n_in(), m.n_out());
            for batch in [1usize, 5] {
                let x: Vec<f32> = (0..batch * n_in).map(|i| (i % 7) as f32 - 3.0).collect();
                let mut y = vec![0f32; batch * n_out];
                m.matmul(&x, batch, &mut y).expect("shapes agree");
                for b in 0..batch {
                    let xb = &x[b * n_in..(b + 1) * n_in];
                    for r in 0..n_out {
                        let row = &w[r * n_in..(r + 1) * n_in];
                        let want: f32 = row.iter().zip(xb).map(|(a, b)| a * b).sum();
                        let mag: f32 = row.iter().zip(xb).map(|(a, b)| (a * b).abs()).sum();
                        let got = y[b * n_out + r];
                        assert!(
                            (got - want).abs() <= 1e-3 * (1.0 + mag),
                            "{isa:?} batch {batch}: y[{b}][{r}] = {got}, dense {want}"
                        );
                    }
                }
            }
        }
    }
});
