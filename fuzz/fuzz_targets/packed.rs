//! Arbitrary bytes into the packed reader: parse and validate, decode to a
//! dense file, and run the kernel on every packed tensor that validated.
#![no_main]

use jlcm::format::packed::{PackedEntry, PackedFile};
use jlcm::kernels::PackedMatrix;
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
        let Ok(m) = PackedMatrix::new(p.clone()) else {
            continue;
        };
        let x: Vec<f32> = (0..m.n_in()).map(|i| (i % 7) as f32 - 3.0).collect();
        let mut y = vec![0f32; m.n_out()];
        m.matmul(&x, 1, &mut y).expect("shapes agree");
        // The kernel agrees with the dense decode.
        let w = p.decode_f32();
        for (r, yr) in y.iter().enumerate() {
            let row = &w[r * m.n_in()..(r + 1) * m.n_in()];
            let want: f32 = row.iter().zip(&x).map(|(a, b)| a * b).sum();
            let tol = 1e-3 * (1.0 + row.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum::<f32>());
            assert!((yr - want).abs() <= tol, "row {r}: {yr} vs {want}");
        }
    }
});
