//! x86-64 AVX2 + FMA kernels: the same functions as the portable ones in
//! [`super::prepared`], chosen at run time when the CPU has both features.
//! On other targets a stub with the same API forwards to the portable code.
//!
//! Every function here is `unsafe`: the caller must have checked
//! [`is_available`] (the [`super::Isa`] choice does that once).

/// Whether this CPU runs the AVX2 + FMA kernels.
pub fn is_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
pub use avx2::*;

#[cfg(not(target_arch = "x86_64"))]
pub use stub::*;

#[cfg(not(target_arch = "x86_64"))]
mod stub {
    use crate::kernels::prepared::{self, NibbleLut, BLOCK_ROWS};

    /// Stub: the portable kernel.
    ///
    /// # Safety
    /// Always safe; `unsafe` only to match the x86-64 signature.
    pub unsafe fn build_lut_table(
        lut: &NibbleLut,
        codebook: &[f32],
        x_pad: &[f32],
        table: &mut [u8],
    ) {
        prepared::build_lut_table(lut, codebook, x_pad, table)
    }
    /// Stub: the portable kernel.
    ///
    /// # Safety
    /// Always safe; `unsafe` only to match the x86-64 signature.
    pub unsafe fn lut_block_sums(rows: &[&[u8]; BLOCK_ROWS], table: &[u8]) -> [f32; BLOCK_ROWS] {
        prepared::lut_block_sums(rows, table)
    }
    /// Stub: the portable kernel.
    ///
    /// # Safety
    /// Always safe; `unsafe` only to match the x86-64 signature.
    pub unsafe fn decode_bytes_b2(codebook: &[f32], bytes: &[u8], out: &mut [f32]) {
        prepared::decode_bytes_b2(codebook, bytes, out)
    }
    /// Stub: the portable kernel.
    ///
    /// # Safety
    /// Always safe; `unsafe` only to match the x86-64 signature.
    pub unsafe fn decode_dot(codebook: &[f32], d: usize, idx: &[u8], x: &[f32]) -> f32 {
        prepared::decode_dot(codebook, d, idx, x)
    }
    /// Stub: the portable kernel.
    ///
    /// # Safety
    /// Always safe; `unsafe` only to match the x86-64 signature.
    pub unsafe fn decode_dot4(
        codebooks: [&[f32]; 4],
        d: usize,
        idx: [&[u8]; 4],
        x: &[f32],
    ) -> [f32; 4] {
        prepared::decode_dot4(codebooks, d, idx, x)
    }
    /// Stub: the portable kernel.
    ///
    /// # Safety
    /// Always safe; `unsafe` only to match the x86-64 signature.
    pub unsafe fn gemm_4x2(w: &[f32], x: &[f32], stride: usize) -> [f32; 8] {
        prepared::gemm_4x2(w, x, stride)
    }
    /// Stub: the portable kernel.
    ///
    /// # Safety
    /// Always safe; `unsafe` only to match the x86-64 signature.
    pub unsafe fn dense_matvec(w: &[f32], n_in: usize, x: &[f32], y: &mut [f32]) {
        prepared::dense_matvec(w, n_in, x, y)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use crate::kernels::prepared::{
        lut_table_offset, slot_coefficient, NibbleLut, B2_SHUFFLES, BLOCK_ROWS, LUT_PAIR_BYTES,
        MAX_SLOT_INPUTS,
    };

    #[inline(always)]
    unsafe fn load_f32x8(v: &[f32], at: usize) -> __m256 {
        let s = &v[at..at + 8];
        _mm256_loadu_ps(s.as_ptr())
    }

    #[inline(always)]
    unsafe fn load_f32x4(v: &[f32], at: usize) -> __m128 {
        let s = &v[at..at + 4];
        _mm_loadu_ps(s.as_ptr())
    }

    #[inline(always)]
    unsafe fn horizontal_sum(v: __m256) -> f32 {
        let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pairs = _mm_add_ps(q, _mm_movehl_ps(q, q));
        let one = _mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1));
        _mm_cvtss_f32(one)
    }

    /// See [`crate::kernels::prepared::build_lut_table`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn build_lut_table(
        lut: &NibbleLut,
        codebook: &[f32],
        x_pad: &[f32],
        table: &mut [u8],
    ) {
        let w = lut.inputs_per_slot();
        // coefficient[q][j] lane l = value input j of a slot takes in entry 4q + l.
        let mut coefficient = [[_mm_setzero_ps(); MAX_SLOT_INPUTS]; 4];
        for (q, per_input) in coefficient.iter_mut().enumerate() {
            for (j, c) in per_input.iter_mut().enumerate().take(w) {
                let e = |l: usize| slot_coefficient(lut, codebook, 4 * q + l, j);
                *c = _mm_setr_ps(e(0), e(1), e(2), e(3));
            }
        }
        // Bytes of each f32 grouped by plane: dword p of the result = byte p of the 4 entries.
        let by_plane = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        for t in 0..table.len() / (LUT_PAIR_BYTES / 2) {
            let xs = &x_pad[t * w..(t + 1) * w];
            let mut v = [_mm_setzero_si128(); 4];
            for (q, out) in v.iter_mut().enumerate() {
                let mut e = _mm_mul_ps(coefficient[q][0], _mm_set1_ps(xs[0]));
                for (j, &xj) in xs.iter().enumerate().skip(1) {
                    e = _mm_add_ps(e, _mm_mul_ps(coefficient[q][j], _mm_set1_ps(xj)));
                }
                *out = _mm_shuffle_epi8(_mm_castps_si128(e), by_plane);
            }
            // 4x4 transpose of dwords: row q = entries 4q..4q+4, column p = plane p.
            let t01_lo = _mm_unpacklo_epi32(v[0], v[1]);
            let t01_hi = _mm_unpackhi_epi32(v[0], v[1]);
            let t23_lo = _mm_unpacklo_epi32(v[2], v[3]);
            let t23_hi = _mm_unpackhi_epi32(v[2], v[3]);
            let planes = [
                _mm_unpacklo_epi64(t01_lo, t23_lo),
                _mm_unpackhi_epi64(t01_lo, t23_lo),
                _mm_unpacklo_epi64(t01_hi, t23_hi),
                _mm_unpackhi_epi64(t01_hi, t23_hi),
            ];
            for (p, plane) in planes.iter().enumerate() {
                let at = lut_table_offset(t, p);
                let s = &mut table[at..at + 16];
                _mm_storeu_si128(s.as_mut_ptr() as *mut __m128i, *plane);
            }
        }
    }

    /// Transpose 16 x 16 bytes: `v[i]` byte `j` becomes `v[j]` byte `i`
    /// (four rounds of interleaving rows `i` and `i + 8`).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn transpose_16x16(v: &mut [__m128i; 16]) {
        for _ in 0..4 {
            let a = *v;
            for i in 0..8 {
                v[2 * i] = _mm_unpacklo_epi8(a[i], a[i + 8]);
                v[2 * i + 1] = _mm_unpackhi_epi8(a[i], a[i + 8]);
            }
        }
    }

    /// Add one slot pair of 16 rows; both slots are looked up at once, one
    /// per 128-bit lane.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn add_pair(acc: &mut [__m256; 4], planes: *const u8, pairs: __m128i) {
        let low_nibble = _mm_set1_epi8(15);
        let lo = _mm_and_si128(pairs, low_nibble);
        let hi = _mm_and_si128(_mm_srli_epi16(pairs, 4), low_nibble);
        let idx = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
        let plane = |i: usize| _mm256_loadu_si256(planes.add(32 * i) as *const __m256i);
        let b0 = _mm256_shuffle_epi8(plane(0), idx);
        let b1 = _mm256_shuffle_epi8(plane(1), idx);
        let b2 = _mm256_shuffle_epi8(plane(2), idx);
        let b3 = _mm256_shuffle_epi8(plane(3), idx);
        let lo01 = _mm256_unpacklo_epi8(b0, b1);
        let hi01 = _mm256_unpackhi_epi8(b0, b1);
        let lo23 = _mm256_unpacklo_epi8(b2, b3);
        let hi23 = _mm256_unpackhi_epi8(b2, b3);
        acc[0] = _mm256_add_ps(
            acc[0],
            _mm256_castsi256_ps(_mm256_unpacklo_epi16(lo01, lo23)),
        );
        acc[1] = _mm256_add_ps(
            acc[1],
            _mm256_castsi256_ps(_mm256_unpackhi_epi16(lo01, lo23)),
        );
        acc[2] = _mm256_add_ps(
            acc[2],
            _mm256_castsi256_ps(_mm256_unpacklo_epi16(hi01, hi23)),
        );
        acc[3] = _mm256_add_ps(
            acc[3],
            _mm256_castsi256_ps(_mm256_unpackhi_epi16(hi01, hi23)),
        );
    }

    /// See [`crate::kernels::prepared::lut_block_sums`]: 16 pairs of the 16
    /// rows are loaded (one 16-byte load a row) and transposed in registers.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn lut_block_sums(rows: &[&[u8]; BLOCK_ROWS], table: &[u8]) -> [f32; BLOCK_ROWS] {
        let n_pairs = table.len() / LUT_PAIR_BYTES;
        // One check for the whole loop: every load below stays inside these.
        let table = &table[..n_pairs * LUT_PAIR_BYTES];
        let rows = rows.map(|r| &r[..n_pairs]);
        let mut acc = [_mm256_setzero_ps(); 4];
        let full = n_pairs / 16 * 16;
        let mut v = [_mm_setzero_si128(); 16];
        for p0 in (0..full).step_by(16) {
            for (vi, row) in v.iter_mut().zip(&rows) {
                // `p0 + 16 <= n_pairs = row.len()`.
                *vi = _mm_loadu_si128(row.as_ptr().add(p0) as *const __m128i);
            }
            transpose_16x16(&mut v);
            for (j, pairs) in v.iter().enumerate() {
                // Pair `p0 + j < n_pairs`: table bytes inside `table`.
                add_pair(
                    &mut acc,
                    table.as_ptr().add((p0 + j) * LUT_PAIR_BYTES),
                    *pairs,
                );
            }
        }
        if full < n_pairs {
            let mut tail = [[0u8; 16]; 16];
            for (t, row) in tail.iter_mut().zip(&rows) {
                t[..n_pairs - full].copy_from_slice(&row[full..]);
            }
            for (vi, t) in v.iter_mut().zip(&tail) {
                *vi = _mm_loadu_si128(t.as_ptr() as *const __m128i);
            }
            transpose_16x16(&mut v);
            for (j, pairs) in v.iter().enumerate().take(n_pairs - full) {
                add_pair(
                    &mut acc,
                    table.as_ptr().add((full + j) * LUT_PAIR_BYTES),
                    *pairs,
                );
            }
        }
        let mut out = [0f32; BLOCK_ROWS];
        for (q, a) in acc.iter().enumerate() {
            // Low lane: even slots, high lane: odd slots, of the same 4 rows.
            let rows = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps(*a, 1));
            _mm_storeu_ps(out[4 * q..4 * q + 4].as_mut_ptr(), rows);
        }
        out
    }

    /// See [`crate::kernels::prepared::decode_bytes_b2`]: one byte shuffle
    /// of the codebook per byte.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn decode_bytes_b2(codebook: &[f32], bytes: &[u8], out: &mut [f32]) {
        let cb = _mm_castps_si128(load_f32x4(codebook, 0));
        let out = &mut out[..4 * bytes.len()];
        for (i, &byte) in bytes.iter().enumerate() {
            // `B2_SHUFFLES[byte]` is 16 bytes; `out[4i .. 4i + 4]` is inside `out`.
            let pattern = _mm_loadu_si128(B2_SHUFFLES[byte as usize].as_ptr() as *const __m128i);
            _mm_storeu_ps(
                out.as_mut_ptr().add(4 * i),
                _mm_castsi128_ps(_mm_shuffle_epi8(cb, pattern)),
            );
        }
    }

    /// See [`crate::kernels::prepared::decode_dot4`]. For `d = 4` with a
    /// full 256-codeword codebook per row (`b = 8`): one input load per
    /// slice for the four rows, one codeword load and FMA per row (every
    /// byte is a valid codeword, so no bounds check). Other layouts:
    /// [`decode_dot`] per row.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn decode_dot4(
        codebooks: [&[f32]; 4],
        d: usize,
        idx: [&[u8]; 4],
        x: &[f32],
    ) -> [f32; 4] {
        let n = idx[0].len();
        if d == 4
            && codebooks.iter().all(|c| c.len() >= 256 * 4)
            && idx.iter().all(|i| i.len() == n)
        {
            let xp = x[..4 * n].as_ptr();
            let cbs = codebooks.map(|c| c.as_ptr());
            let ids = idx.map(|i| i.as_ptr());
            let mut acc = [_mm_setzero_ps(); 4];
            for s in 0..n {
                // `s < n` = every index list's length = `x.len() / 4` (sliced
                // above); a codeword `k <= 255` reads floats `4k .. 4k + 4 <=
                // 1024`, inside its codebook (checked above).
                let xv = _mm_loadu_ps(xp.add(4 * s));
                for i in 0..4 {
                    let k = *ids[i].add(s) as usize;
                    acc[i] = _mm_fmadd_ps(_mm_loadu_ps(cbs[i].add(4 * k)), xv, acc[i]);
                }
            }
            return acc.map(|a| {
                let pairs = _mm_add_ps(a, _mm_movehl_ps(a, a));
                _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps::<1>(pairs, pairs)))
            });
        }
        [
            decode_dot(codebooks[0], d, idx[0], x),
            decode_dot(codebooks[1], d, idx[1], x),
            decode_dot(codebooks[2], d, idx[2], x),
            decode_dot(codebooks[3], d, idx[3], x),
        ]
    }

    /// See [`crate::kernels::prepared::decode_dot`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn decode_dot(codebook: &[f32], d: usize, idx: &[u8], x: &[f32]) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 2];
        match d {
            8 => {
                for (s, &k) in idx.iter().enumerate() {
                    let c = load_f32x8(codebook, k as usize * 8);
                    acc[s % 2] = _mm256_fmadd_ps(c, load_f32x8(x, 8 * s), acc[s % 2]);
                }
            }
            4 => {
                let mut pairs = idx.chunks_exact(2);
                for (s, ks) in (&mut pairs).enumerate() {
                    let c = _mm256_set_m128(
                        load_f32x4(codebook, ks[1] as usize * 4),
                        load_f32x4(codebook, ks[0] as usize * 4),
                    );
                    acc[s % 2] = _mm256_fmadd_ps(c, load_f32x8(x, 8 * s), acc[s % 2]);
                }
                if let [k] = pairs.remainder() {
                    let s = idx.len() - 1;
                    let mut tail = 0f32;
                    for a in 0..4 {
                        tail += codebook[*k as usize * 4 + a] * x[4 * s + a];
                    }
                    return horizontal_sum(_mm256_add_ps(acc[0], acc[1])) + tail;
                }
            }
            _ => {
                // d = 1 or 2: gather 8 floats (4 codewords of 2, or 8 of 1).
                let per = 8 / d;
                let lane_offsets = if d == 2 {
                    _mm256_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1)
                } else {
                    _mm256_setzero_si256()
                };
                let k_max = (codebook.len() / d) as i32;
                let mut groups = idx.chunks_exact(per);
                for (s, ks) in (&mut groups).enumerate() {
                    let mut lanes = [0i32; 8];
                    for (l, lane) in lanes.iter_mut().enumerate() {
                        // Indices are < K by construction; clamp anyway so the gather stays in bounds.
                        *lane = (ks[l / d] as i32).min(k_max - 1) * d as i32;
                    }
                    let offs = _mm256_add_epi32(
                        _mm256_loadu_si256(lanes.as_ptr() as *const __m256i),
                        lane_offsets,
                    );
                    let c = _mm256_i32gather_ps::<4>(codebook.as_ptr(), offs);
                    acc[s % 2] = _mm256_fmadd_ps(c, load_f32x8(x, 8 * s), acc[s % 2]);
                }
                let done = idx.len() - groups.remainder().len();
                let mut tail = 0f32;
                for (i, &k) in groups.remainder().iter().enumerate() {
                    let s = done + i;
                    for a in 0..d {
                        tail += codebook[k as usize * d + a] * x[s * d + a];
                    }
                }
                return horizontal_sum(_mm256_add_ps(acc[0], acc[1])) + tail;
            }
        }
        horizontal_sum(_mm256_add_ps(acc[0], acc[1]))
    }

    /// See [`crate::kernels::prepared::gemm_4x2`] (`stride` a multiple of 8).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gemm_4x2(w: &[f32], x: &[f32], stride: usize) -> [f32; 8] {
        // One check for the whole loop: every load below stays inside these.
        let w = &w[..4 * stride];
        let x = &x[..2 * stride];
        let mut acc = [_mm256_setzero_ps(); 8];
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        for j in (0..stride / 8 * 8).step_by(8) {
            // `j + 8 <= stride`: every load is inside the slices above.
            let x0 = _mm256_loadu_ps(xp.add(j));
            let x1 = _mm256_loadu_ps(xp.add(stride + j));
            for i in 0..4 {
                let wi = _mm256_loadu_ps(wp.add(i * stride + j));
                acc[2 * i] = _mm256_fmadd_ps(wi, x0, acc[2 * i]);
                acc[2 * i + 1] = _mm256_fmadd_ps(wi, x1, acc[2 * i + 1]);
            }
        }
        let mut out = [0f32; 8];
        for (o, a) in out.iter_mut().zip(acc) {
            *o = horizontal_sum(a);
        }
        out
    }

    /// Dense `y = W x` for a row-major `W` of `y.len()` rows and `n_in` columns.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dense_matvec(w: &[f32], n_in: usize, x: &[f32], y: &mut [f32]) {
        let body = n_in / 32 * 32;
        for (row, yr) in w.chunks_exact(n_in).zip(y.iter_mut()) {
            let mut acc = [_mm256_setzero_ps(); 4];
            for j in (0..body).step_by(32) {
                for (q, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(load_f32x8(row, j + 8 * q), load_f32x8(x, j + 8 * q), *a);
                }
            }
            let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let mut s = horizontal_sum(sum);
            for j in body..n_in {
                s += row[j] * x[j];
            }
            *yr = s;
        }
    }
}
