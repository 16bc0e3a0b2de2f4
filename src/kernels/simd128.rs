//! wasm32 SIMD128 kernels: the same functions as the portable ones in
//! [`super::prepared`], built only with `-C target-feature=+simd128`
//! (there is no run-time detection in wasm). Elsewhere a stub with the same
//! API forwards to the portable code, so callers and tests build everywhere.

/// Whether this build has the SIMD128 kernels.
pub fn is_available() -> bool {
    cfg!(all(target_arch = "wasm32", target_feature = "simd128"))
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub use simd::*;

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub use super::prepared::{
    build_fixed_table, build_lut_table, build_two_level_table, decode_bytes_b2, decode_dot,
    decode_dot4, dense_matvec, fixed_block_sums, gemm_4x2, lut_block_sums, two_level_block_sums,
};

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::*;

    use crate::kernels::prepared::{
        self, fixed_point_inverse_step, fixed_table_offset, lut_table_offset, slot_coefficient,
        two_level_inverse_step, two_level_scale, two_level_table_offset, NibbleLut, B2_SHUFFLES,
        BLOCK_ROWS, FIXED_PAIR_BYTES, FIXED_POINT_MAX, LUT_PAIR_BYTES, MAX_SLOT_INPUTS,
        TWO_LEVEL_LO_BITS, TWO_LEVEL_PAIR_BYTES,
    };

    #[inline(always)]
    fn load_f32(v: &[f32], at: usize) -> v128 {
        let s = &v[at..at + 4];
        // SAFETY: `s` is 4 floats long.
        unsafe { v128_load(s.as_ptr() as *const v128) }
    }

    #[inline(always)]
    fn store(bytes: &mut [u8], at: usize, v: v128) {
        let s = &mut bytes[at..at + 16];
        // SAFETY: `s` is 16 bytes long.
        unsafe { v128_store(s.as_mut_ptr() as *mut v128, v) }
    }

    #[inline(always)]
    fn horizontal_sum(v: v128) -> f32 {
        let pairs = f32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
        let one = f32x4_add(pairs, i32x4_shuffle::<1, 0, 3, 2>(pairs, pairs));
        f32x4_extract_lane::<0>(one)
    }

    /// See [`crate::kernels::prepared::build_lut_table`].
    pub fn build_lut_table(lut: &NibbleLut, codebook: &[f32], x_pad: &[f32], table: &mut [u8]) {
        let w = lut.inputs_per_slot();
        // coefficient[q][j] lane l = value input j of a slot takes in entry 4q + l.
        let mut coefficient = [[f32x4_splat(0.0); MAX_SLOT_INPUTS]; 4];
        for (q, per_input) in coefficient.iter_mut().enumerate() {
            for (j, c) in per_input.iter_mut().enumerate().take(w) {
                let e = |l: usize| slot_coefficient(lut, codebook, 4 * q + l, j);
                *c = f32x4(e(0), e(1), e(2), e(3));
            }
        }
        for t in 0..table.len() / (LUT_PAIR_BYTES / 2) {
            let xs = &x_pad[t * w..(t + 1) * w];
            let mut entries = [f32x4_splat(0.0); 4];
            for (q, e) in entries.iter_mut().enumerate() {
                let mut v = f32x4_mul(coefficient[q][0], f32x4_splat(xs[0]));
                for (j, &xj) in xs.iter().enumerate().skip(1) {
                    v = f32x4_add(v, f32x4_mul(coefficient[q][j], f32x4_splat(xj)));
                }
                *e = v;
            }
            let [v0, v1, v2, v3] = entries;
            // Bytes 0 and 1 (then 2 and 3) of entries 0..8 and 8..16.
            let p01_lo =
                i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29>(v0, v1);
            let p23_lo =
                i8x16_shuffle::<2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31>(v0, v1);
            let p01_hi =
                i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29>(v2, v3);
            let p23_hi =
                i8x16_shuffle::<2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31>(v2, v3);
            store(
                table,
                lut_table_offset(t, 0),
                i64x2_shuffle::<0, 2>(p01_lo, p01_hi),
            );
            store(
                table,
                lut_table_offset(t, 1),
                i64x2_shuffle::<1, 3>(p01_lo, p01_hi),
            );
            store(
                table,
                lut_table_offset(t, 2),
                i64x2_shuffle::<0, 2>(p23_lo, p23_hi),
            );
            store(
                table,
                lut_table_offset(t, 3),
                i64x2_shuffle::<1, 3>(p23_lo, p23_hi),
            );
        }
    }

    /// Look up one slot for 16 rows (`idx` = their slot indices) and add
    /// the f32 partial sums to the four accumulators (rows 0-3, 4-7, ...).
    ///
    /// # Safety
    /// `planes` points to the slot's byte plane 0; planes 1-3 follow at
    /// 32-byte steps (see [`lut_table_offset`]), 16 readable bytes each.
    #[inline(always)]
    unsafe fn add_slot(acc: &mut [v128; 4], planes: *const u8, idx: v128) {
        let b0 = i8x16_swizzle(v128_load(planes as *const v128), idx);
        let b1 = i8x16_swizzle(v128_load(planes.add(32) as *const v128), idx);
        let b2 = i8x16_swizzle(v128_load(planes.add(64) as *const v128), idx);
        let b3 = i8x16_swizzle(v128_load(planes.add(96) as *const v128), idx);
        let lo01 = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(b0, b1);
        let hi01 =
            i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(b0, b1);
        let lo23 = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(b2, b3);
        let hi23 =
            i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(b2, b3);
        acc[0] = f32x4_add(
            acc[0],
            i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(lo01, lo23),
        );
        acc[1] = f32x4_add(
            acc[1],
            i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(lo01, lo23),
        );
        acc[2] = f32x4_add(
            acc[2],
            i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(hi01, hi23),
        );
        acc[3] = f32x4_add(
            acc[3],
            i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(hi01, hi23),
        );
    }

    /// Interleave the low (`HIGH = false`) or high halves of two vectors byte by byte.
    #[inline(always)]
    fn zip_bytes<const HIGH: bool>(a: v128, b: v128) -> v128 {
        if HIGH {
            i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(a, b)
        } else {
            i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(a, b)
        }
    }

    /// Slot pairs `p0 .. p0 + 8` of the 16 rows, transposed: `out[j]` byte
    /// `i` is pair `p0 + j` of row `i`. Rows `i` and `i + 8` are loaded (8
    /// bytes each) and interleaved into vector `i`, then three rounds of
    /// interleaving vectors `i` and `i + 4` each rotate the 7-bit
    /// (vector, byte) address left by one bit: `(r mod 8, pair, r / 8)`
    /// becomes `(pair, r)`. Eight vectors live at a time (fewer spills than
    /// a 16 x 16 transpose in engines with 16 vector registers).
    ///
    /// # Safety
    /// Every row has at least `p0 + 8` bytes.
    #[inline(always)]
    unsafe fn load_transposed_8(rows: &[&[u8]; BLOCK_ROWS], p0: usize) -> [v128; 8] {
        let mut v = [u8x16_splat(0); 8];
        for (i, vi) in v.iter_mut().enumerate() {
            let a = v128_load64_zero(rows[i].as_ptr().add(p0) as *const u64);
            let b = v128_load64_zero(rows[i + 8].as_ptr().add(p0) as *const u64);
            *vi = zip_bytes::<false>(a, b);
        }
        for _ in 0..3 {
            let a = v;
            for i in 0..4 {
                v[2 * i] = zip_bytes::<false>(a[i], a[i + 4]);
                v[2 * i + 1] = zip_bytes::<true>(a[i], a[i + 4]);
            }
        }
        v
    }

    /// Add one slot pair of 16 rows (`pairs`: their slot-pair bytes).
    ///
    /// # Safety
    /// `planes` points to the pair's 128 table bytes.
    #[inline(always)]
    unsafe fn add_pair(acc: &mut [v128; 4], planes: *const u8, pairs: v128) {
        let low_nibble = u8x16_splat(15);
        add_slot(acc, planes, v128_and(pairs, low_nibble));
        add_slot(
            acc,
            planes.add(16),
            v128_and(u16x8_shr(pairs, 4), low_nibble),
        );
    }

    /// See [`crate::kernels::prepared::lut_block_sums`]: 8 pairs of the 16
    /// rows are loaded (one 8-byte load a row) and transposed in registers.
    pub fn lut_block_sums(rows: &[&[u8]; BLOCK_ROWS], table: &[u8]) -> [f32; BLOCK_ROWS] {
        let n_pairs = table.len() / LUT_PAIR_BYTES;
        // One check for the whole loop: every load below stays inside these.
        let table = &table[..n_pairs * LUT_PAIR_BYTES];
        let rows = rows.map(|r| &r[..n_pairs]);
        let mut acc = [f32x4_splat(0.0); 4];
        let full = n_pairs / 8 * 8;
        for p0 in (0..full).step_by(8) {
            // SAFETY: `p0 + 8 <= n_pairs = row.len()`.
            let v = unsafe { load_transposed_8(&rows, p0) };
            for (j, pairs) in v.iter().enumerate() {
                // SAFETY: pair `p0 + j < n_pairs` reads table bytes
                // `128 (p0 + j) .. + 128`, inside `table`.
                unsafe {
                    add_pair(
                        &mut acc,
                        table.as_ptr().add((p0 + j) * LUT_PAIR_BYTES),
                        *pairs,
                    )
                };
            }
        }
        if full < n_pairs {
            let mut tail = [[0u8; 8]; BLOCK_ROWS];
            for (t, row) in tail.iter_mut().zip(&rows) {
                t[..n_pairs - full].copy_from_slice(&row[full..]);
            }
            let tail_rows: [&[u8]; BLOCK_ROWS] = std::array::from_fn(|i| &tail[i][..]);
            // SAFETY: every tail row has 8 bytes.
            let v = unsafe { load_transposed_8(&tail_rows, 0) };
            for (j, pairs) in v.iter().enumerate().take(n_pairs - full) {
                // SAFETY: as above, pair `full + j < n_pairs`.
                unsafe {
                    add_pair(
                        &mut acc,
                        table.as_ptr().add((full + j) * LUT_PAIR_BYTES),
                        *pairs,
                    )
                };
            }
        }
        let mut out = [0f32; BLOCK_ROWS];
        for (q, a) in acc.iter().enumerate() {
            let s = &mut out[4 * q..4 * q + 4];
            // SAFETY: `s` is 4 floats long.
            unsafe { v128_store(s.as_mut_ptr() as *mut v128, *a) }
        }
        out
    }

    /// `1.5 * 2^23`: for `|v| <= 2^22`, the f32 sum `v + MAGIC` is
    /// `MAGIC + round_ties_even(v)` exactly (the ulp there is 1), and its
    /// bits are `MAGIC_BITS + round_ties_even(v)`.
    const MAGIC: f32 = 12_582_912.0;
    /// The bits of [`MAGIC`].
    const MAGIC_BITS: i32 = 0x4b40_0000;

    /// See [`crate::kernels::prepared::fixed_point_bound`]: for one input a
    /// slot, `a[0] * max|x|` (the same value: f32 rounding is monotonic).
    fn fixed_point_bound(
        a: &[f32; MAX_SLOT_INPUTS],
        w: usize,
        x_pad: &[f32],
        n_slots: usize,
    ) -> f32 {
        if w != 1 {
            return prepared::fixed_point_bound(a, w, x_pad, n_slots);
        }
        let x = &x_pad[..n_slots];
        let mut max = f32x4_splat(0.0);
        let mut quads = x.chunks_exact(4);
        for q in &mut quads {
            max = f32x4_max(max, f32x4_abs(load_f32(q, 0)));
        }
        let m2 = f32x4_max(max, i32x4_shuffle::<2, 3, 0, 1>(max, max));
        let m1 = f32x4_max(m2, i32x4_shuffle::<1, 0, 3, 2>(m2, m2));
        let mut max = f32x4_extract_lane::<0>(m1);
        for &v in quads.remainder() {
            let v = v.abs();
            if v > max || v.is_nan() {
                max = v;
            }
        }
        a[0] * max
    }

    /// See [`crate::kernels::prepared::build_fixed_table`]: one pass; the
    /// entries are added in the same order as the portable
    /// [`crate::kernels::prepared::slot_entries`] and rounded to the same
    /// integers (ties to even, through [`MAGIC`]: `|T| * step <= 2047`),
    /// so both tables agree bit for bit.
    pub fn build_fixed_table(
        lut: &NibbleLut,
        codebook: &[f32],
        a: &[f32; MAX_SLOT_INPUTS],
        x_pad: &[f32],
        table: &mut [u8],
    ) -> f32 {
        let w = lut.inputs_per_slot();
        let n_slots = table.len() / (FIXED_PAIR_BYTES / 2);
        let table = &mut table[..n_slots * (FIXED_PAIR_BYTES / 2)];
        let bound = fixed_point_bound(a, w, x_pad, n_slots);
        let inv = fixed_point_inverse_step(bound);
        if inv == 0.0 {
            // All entries 0 (the portable rounding of `v * 0`, NaN to 0).
            table.fill(0);
            return bound / FIXED_POINT_MAX;
        }
        let mut coefficient = [[f32x4_splat(0.0); MAX_SLOT_INPUTS]; 4];
        for (q, per_input) in coefficient.iter_mut().enumerate() {
            for (j, c) in per_input.iter_mut().enumerate().take(w) {
                let e = |l: usize| slot_coefficient(lut, codebook, 4 * q + l, j);
                *c = f32x4(e(0), e(1), e(2), e(3));
            }
        }
        let (inv, magic, magic_bits) = (
            f32x4_splat(inv),
            f32x4_splat(MAGIC),
            i32x4_splat(MAGIC_BITS),
        );
        let low_byte = u16x8_splat(0xff);
        for t in 0..n_slots {
            let xs = &x_pad[t * w..(t + 1) * w];
            let q: [v128; 4] = std::array::from_fn(|q| {
                let mut v = f32x4_mul(coefficient[q][0], f32x4_splat(xs[0]));
                for (j, &xj) in xs.iter().enumerate().skip(1) {
                    v = f32x4_add(v, f32x4_mul(coefficient[q][j], f32x4_splat(xj)));
                }
                i32x4_sub(f32x4_add(f32x4_mul(v, inv), magic), magic_bits)
            });
            // Entries 0-7 and 8-15 as i16 (|q| <= 2047), then their low
            // (unsigned) and high (signed, -8..=7) bytes.
            let e0 = i16x8_narrow_i32x4(q[0], q[1]);
            let e1 = i16x8_narrow_i32x4(q[2], q[3]);
            let lo = u8x16_narrow_i16x8(v128_and(e0, low_byte), v128_and(e1, low_byte));
            let hi = i8x16_narrow_i16x8(i16x8_shr(e0, 8), i16x8_shr(e1, 8));
            store(table, fixed_table_offset(t, 0), lo);
            store(table, fixed_table_offset(t, 1), hi);
        }
        bound / FIXED_POINT_MAX
    }

    /// Look up one slot of a fixed-point table for 16 rows and add the
    /// `i16` entries to `acc` (rows 0-7, 8-15).
    ///
    /// # Safety
    /// `planes` points to the slot's low byte plane; the high plane follows
    /// 32 bytes on (see [`fixed_table_offset`]), 16 readable bytes each.
    #[inline(always)]
    unsafe fn add_fixed_slot(acc: &mut [v128; 2], planes: *const u8, idx: v128) {
        let lo = i8x16_swizzle(v128_load(planes as *const v128), idx);
        let hi = i8x16_swizzle(v128_load(planes.add(32) as *const v128), idx);
        acc[0] = i16x8_add(acc[0], zip_bytes::<false>(lo, hi));
        acc[1] = i16x8_add(acc[1], zip_bytes::<true>(lo, hi));
    }

    /// One slot pair of 16 rows on a fixed-point table.
    ///
    /// # Safety
    /// `planes` points to the pair's 64 table bytes.
    #[inline(always)]
    unsafe fn add_fixed_pair(acc: &mut [v128; 2], planes: *const u8, pairs: v128) {
        let low_nibble = u8x16_splat(15);
        add_fixed_slot(acc, planes, v128_and(pairs, low_nibble));
        add_fixed_slot(
            acc,
            planes.add(16),
            v128_and(u16x8_shr(pairs, 4), low_nibble),
        );
    }

    /// Widen the `i16` sums of rows 0-7 and 8-15 into the `i32` sums of rows 0-3, ..., 12-15.
    #[inline(always)]
    fn widen_add(acc: &mut [v128; 4], s: [v128; 2]) {
        acc[0] = i32x4_add(acc[0], i32x4_extend_low_i16x8(s[0]));
        acc[1] = i32x4_add(acc[1], i32x4_extend_high_i16x8(s[0]));
        acc[2] = i32x4_add(acc[2], i32x4_extend_low_i16x8(s[1]));
        acc[3] = i32x4_add(acc[3], i32x4_extend_high_i16x8(s[1]));
    }

    /// See [`crate::kernels::prepared::fixed_block_sums`]: 8 pairs (16
    /// slots, `16 * 2047 < 2^15`) are added in `i16` lanes, then widened.
    pub fn fixed_block_sums(
        rows: &[&[u8]; BLOCK_ROWS],
        table: &[u8],
        scale: f32,
    ) -> [f32; BLOCK_ROWS] {
        let n_pairs = table.len() / FIXED_PAIR_BYTES;
        let table = &table[..n_pairs * FIXED_PAIR_BYTES];
        let rows = rows.map(|r| &r[..n_pairs]);
        let mut acc = [i32x4_splat(0); 4];
        let full = n_pairs / 8 * 8;
        for p0 in (0..full).step_by(8) {
            // SAFETY: `p0 + 8 <= n_pairs = row.len()`.
            let v = unsafe { load_transposed_8(&rows, p0) };
            let mut s = [i16x8_splat(0); 2];
            for (j, pairs) in v.iter().enumerate() {
                // SAFETY: pair `p0 + j < n_pairs` reads table bytes
                // `64 (p0 + j) .. + 64`, inside `table`.
                unsafe {
                    add_fixed_pair(
                        &mut s,
                        table.as_ptr().add((p0 + j) * FIXED_PAIR_BYTES),
                        *pairs,
                    )
                };
            }
            widen_add(&mut acc, s);
        }
        if full < n_pairs {
            let mut tail = [[0u8; 8]; BLOCK_ROWS];
            for (t, row) in tail.iter_mut().zip(&rows) {
                t[..n_pairs - full].copy_from_slice(&row[full..]);
            }
            let tail_rows: [&[u8]; BLOCK_ROWS] = std::array::from_fn(|i| &tail[i][..]);
            // SAFETY: every tail row has 8 bytes.
            let v = unsafe { load_transposed_8(&tail_rows, 0) };
            let mut s = [i16x8_splat(0); 2];
            for (j, pairs) in v.iter().enumerate().take(n_pairs - full) {
                // SAFETY: as above, pair `full + j < n_pairs`.
                unsafe {
                    add_fixed_pair(
                        &mut s,
                        table.as_ptr().add((full + j) * FIXED_PAIR_BYTES),
                        *pairs,
                    )
                };
            }
            widen_add(&mut acc, s);
        }
        let scale = f32x4_splat(scale);
        let mut out = [0f32; BLOCK_ROWS];
        for (q, a) in acc.iter().enumerate() {
            let s = &mut out[4 * q..4 * q + 4];
            // SAFETY: `s` is 4 floats long.
            unsafe {
                v128_store(
                    s.as_mut_ptr() as *mut v128,
                    f32x4_mul(f32x4_convert_i32x4(*a), scale),
                )
            }
        }
        out
    }

    /// The 16 coefficient vectors of a slot's entries: `[q][j]` lane `l` is
    /// the value input `j` takes in entry `4q + l`.
    fn slot_coefficients(lut: &NibbleLut, codebook: &[f32]) -> [[v128; MAX_SLOT_INPUTS]; 4] {
        let w = lut.inputs_per_slot();
        let mut coefficient = [[f32x4_splat(0.0); MAX_SLOT_INPUTS]; 4];
        for (q, per_input) in coefficient.iter_mut().enumerate() {
            for (j, c) in per_input.iter_mut().enumerate().take(w) {
                let e = |l: usize| slot_coefficient(lut, codebook, 4 * q + l, j);
                *c = f32x4(e(0), e(1), e(2), e(3));
            }
        }
        coefficient
    }

    /// The low (unsigned) and high (signed) byte planes of 16 `i32` lanes
    /// holding values of at most 12 bits.
    #[inline(always)]
    fn byte_planes(q: [v128; 4]) -> (v128, v128) {
        let low_byte = u16x8_splat(0xff);
        let e0 = i16x8_narrow_i32x4(q[0], q[1]);
        let e1 = i16x8_narrow_i32x4(q[2], q[3]);
        let lo = u8x16_narrow_i16x8(v128_and(e0, low_byte), v128_and(e1, low_byte));
        let hi = i8x16_narrow_i16x8(i16x8_shr(e0, 8), i16x8_shr(e1, 8));
        (lo, hi)
    }

    /// See [`crate::kernels::prepared::build_two_level_table`]: one pass,
    /// the same scaled coefficients and sums, rounded through [`MAGIC`]
    /// (`|Q| <= 127 * 4096 < 2^22`) and split with the same shifts, so both
    /// tables agree bit for bit.
    pub fn build_two_level_table(
        lut: &NibbleLut,
        codebook: &[f32],
        a: &[f32; MAX_SLOT_INPUTS],
        x_pad: &[f32],
        table: &mut [u8],
    ) -> f32 {
        let w = lut.inputs_per_slot();
        let n_slots = table.len() / (TWO_LEVEL_PAIR_BYTES / 2);
        let table = &mut table[..n_slots * (TWO_LEVEL_PAIR_BYTES / 2)];
        let bound = fixed_point_bound(a, w, x_pad, n_slots);
        let inv = two_level_inverse_step(bound);
        if inv == 0.0 {
            table.fill(0);
            return two_level_scale(bound);
        }
        let mut coefficient = slot_coefficients(lut, codebook);
        let inv = f32x4_splat(inv);
        for per_input in coefficient.iter_mut() {
            for c in per_input.iter_mut().take(w) {
                *c = f32x4_mul(*c, inv);
            }
        }
        let (magic, magic_bits, half) = (
            f32x4_splat(MAGIC),
            i32x4_splat(MAGIC_BITS),
            i32x4_splat(1 << (TWO_LEVEL_LO_BITS - 1)),
        );
        for t in 0..n_slots {
            let xs = &x_pad[t * w..(t + 1) * w];
            let mut hi = [i32x4_splat(0); 4];
            let mut lo = [i32x4_splat(0); 4];
            for q in 0..4 {
                let mut u = f32x4_mul(coefficient[q][0], f32x4_splat(xs[0]));
                for (j, &xj) in xs.iter().enumerate().skip(1) {
                    u = f32x4_add(u, f32x4_mul(coefficient[q][j], f32x4_splat(xj)));
                }
                let big = i32x4_sub(f32x4_add(u, magic), magic_bits);
                hi[q] = i32x4_shr(i32x4_add(big, half), TWO_LEVEL_LO_BITS);
                lo[q] = i32x4_sub(big, i32x4_shl(hi[q], TWO_LEVEL_LO_BITS));
            }
            // |hi| <= 127: one signed byte.
            let h = i8x16_narrow_i16x8(
                i16x8_narrow_i32x4(hi[0], hi[1]),
                i16x8_narrow_i32x4(hi[2], hi[3]),
            );
            let (l0, l1) = byte_planes(lo);
            store(table, two_level_table_offset(t, 0), h);
            store(table, two_level_table_offset(t, 1), l0);
            store(table, two_level_table_offset(t, 2), l1);
        }
        two_level_scale(bound)
    }

    /// Look up one slot of a two-level table for 16 rows and add the `hi`
    /// and `lo` entries to `hi` and `lo` (rows 0-7, 8-15).
    ///
    /// # Safety
    /// `planes` points to the slot's plane 0; planes 1-2 follow at 32-byte
    /// steps (see [`two_level_table_offset`]), 16 readable bytes each.
    #[inline(always)]
    unsafe fn add_two_level_slot(
        hi: &mut [v128; 2],
        lo: &mut [v128; 2],
        planes: *const u8,
        idx: v128,
    ) {
        let h = i8x16_swizzle(v128_load(planes as *const v128), idx);
        hi[0] = i16x8_add(hi[0], i16x8_extend_low_i8x16(h));
        hi[1] = i16x8_add(hi[1], i16x8_extend_high_i8x16(h));
        let l0 = i8x16_swizzle(v128_load(planes.add(32) as *const v128), idx);
        let l1 = i8x16_swizzle(v128_load(planes.add(64) as *const v128), idx);
        lo[0] = i16x8_add(lo[0], zip_bytes::<false>(l0, l1));
        lo[1] = i16x8_add(lo[1], zip_bytes::<true>(l0, l1));
    }

    /// One slot pair of 16 rows on a two-level table.
    ///
    /// # Safety
    /// `planes` points to the pair's 96 table bytes.
    #[inline(always)]
    unsafe fn add_two_level_pair(
        hi: &mut [v128; 2],
        lo: &mut [v128; 2],
        planes: *const u8,
        pairs: v128,
    ) {
        let low_nibble = u8x16_splat(15);
        add_two_level_slot(hi, lo, planes, v128_and(pairs, low_nibble));
        add_two_level_slot(
            hi,
            lo,
            planes.add(16),
            v128_and(u16x8_shr(pairs, 4), low_nibble),
        );
    }

    /// Add a group's `4096 Σhi + Σlo` per row (rows 0-7 and 8-15 in `hi`,
    /// `lo`), as f32, to the sums of rows 0-3, ..., 12-15: the `i16` sums of
    /// a row are interleaved (`hi`, `lo`) and dotted with (4096, 1).
    #[inline(always)]
    fn add_two_level_group(acc: &mut [v128; 4], hi: [v128; 2], lo: [v128; 2]) {
        let k = 1i16 << TWO_LEVEL_LO_BITS;
        let weights = i16x8(k, 1, k, 1, k, 1, k, 1);
        for half in 0..2 {
            let first = i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(hi[half], lo[half]);
            let second = i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(hi[half], lo[half]);
            acc[2 * half] = f32x4_add(
                acc[2 * half],
                f32x4_convert_i32x4(i32x4_dot_i16x8(first, weights)),
            );
            acc[2 * half + 1] = f32x4_add(
                acc[2 * half + 1],
                f32x4_convert_i32x4(i32x4_dot_i16x8(second, weights)),
            );
        }
    }

    /// See [`crate::kernels::prepared::two_level_block_sums`]: 8 pairs (16
    /// slots, `16 * 2047 < 2^15`) add up in `i16` lanes, one group.
    pub fn two_level_block_sums(
        rows: &[&[u8]; BLOCK_ROWS],
        table: &[u8],
        scale: f32,
    ) -> [f32; BLOCK_ROWS] {
        let n_pairs = table.len() / TWO_LEVEL_PAIR_BYTES;
        let table = &table[..n_pairs * TWO_LEVEL_PAIR_BYTES];
        let rows = rows.map(|r| &r[..n_pairs]);
        let mut acc = [f32x4_splat(0.0); 4];
        let full = n_pairs / 8 * 8;
        for p0 in (0..full).step_by(8) {
            // SAFETY: `p0 + 8 <= n_pairs = row.len()`.
            let v = unsafe { load_transposed_8(&rows, p0) };
            let (mut hi, mut lo) = ([i16x8_splat(0); 2], [i16x8_splat(0); 2]);
            for (j, pairs) in v.iter().enumerate() {
                // SAFETY: pair `p0 + j < n_pairs` reads table bytes
                // `96 (p0 + j) .. + 96`, inside `table`.
                unsafe {
                    add_two_level_pair(
                        &mut hi,
                        &mut lo,
                        table.as_ptr().add((p0 + j) * TWO_LEVEL_PAIR_BYTES),
                        *pairs,
                    )
                };
            }
            add_two_level_group(&mut acc, hi, lo);
        }
        if full < n_pairs {
            let mut tail = [[0u8; 8]; BLOCK_ROWS];
            for (t, row) in tail.iter_mut().zip(&rows) {
                t[..n_pairs - full].copy_from_slice(&row[full..]);
            }
            let tail_rows: [&[u8]; BLOCK_ROWS] = std::array::from_fn(|i| &tail[i][..]);
            // SAFETY: every tail row has 8 bytes.
            let v = unsafe { load_transposed_8(&tail_rows, 0) };
            let (mut hi, mut lo) = ([i16x8_splat(0); 2], [i16x8_splat(0); 2]);
            for (j, pairs) in v.iter().enumerate().take(n_pairs - full) {
                // SAFETY: as above, pair `full + j < n_pairs`.
                unsafe {
                    add_two_level_pair(
                        &mut hi,
                        &mut lo,
                        table.as_ptr().add((full + j) * TWO_LEVEL_PAIR_BYTES),
                        *pairs,
                    )
                };
            }
            add_two_level_group(&mut acc, hi, lo);
        }
        let scale = f32x4_splat(scale);
        let mut out = [0f32; BLOCK_ROWS];
        for (q, a) in acc.iter().enumerate() {
            let s = &mut out[4 * q..4 * q + 4];
            // SAFETY: `s` is 4 floats long.
            unsafe { v128_store(s.as_mut_ptr() as *mut v128, f32x4_mul(*a, scale)) }
        }
        out
    }

    /// See [`crate::kernels::prepared::decode_bytes_b2`]: one swizzle of the
    /// codebook per byte.
    pub fn decode_bytes_b2(codebook: &[f32], bytes: &[u8], out: &mut [f32]) {
        let cb = load_f32(codebook, 0);
        let out = &mut out[..4 * bytes.len()];
        for (i, &byte) in bytes.iter().enumerate() {
            // SAFETY: `B2_SHUFFLES[byte]` is 16 bytes; `out[4i .. 4i + 4]` is
            // inside `out` (checked above).
            unsafe {
                let pattern = v128_load(B2_SHUFFLES[byte as usize].as_ptr() as *const v128);
                v128_store(
                    out.as_mut_ptr().add(4 * i) as *mut v128,
                    i8x16_swizzle(cb, pattern),
                );
            }
        }
    }

    /// See [`crate::kernels::prepared::decode_dot`].
    pub fn decode_dot(codebook: &[f32], d: usize, idx: &[u8], x: &[f32]) -> f32 {
        let mut acc = [f32x4_splat(0.0); 2];
        match d {
            8 => {
                for (s, &k) in idx.iter().enumerate() {
                    let c = k as usize * 8;
                    acc[0] =
                        f32x4_add(acc[0], f32x4_mul(load_f32(codebook, c), load_f32(x, 8 * s)));
                    acc[1] = f32x4_add(
                        acc[1],
                        f32x4_mul(load_f32(codebook, c + 4), load_f32(x, 8 * s + 4)),
                    );
                }
            }
            4 => {
                for (s, &k) in idx.iter().enumerate() {
                    let c = load_f32(codebook, k as usize * 4);
                    acc[s % 2] = f32x4_add(acc[s % 2], f32x4_mul(c, load_f32(x, 4 * s)));
                }
            }
            2 => {
                let mut pairs = idx.chunks_exact(2);
                for (s, ks) in (&mut pairs).enumerate() {
                    let (c0, c1) = (ks[0] as usize * 2, ks[1] as usize * 2);
                    let c = f32x4(
                        codebook[c0],
                        codebook[c0 + 1],
                        codebook[c1],
                        codebook[c1 + 1],
                    );
                    acc[s % 2] = f32x4_add(acc[s % 2], f32x4_mul(c, load_f32(x, 4 * s)));
                }
                let done = idx.len() - pairs.remainder().len();
                for (i, &k) in pairs.remainder().iter().enumerate() {
                    let s = done + i;
                    let c = f32x4(
                        codebook[k as usize * 2],
                        codebook[k as usize * 2 + 1],
                        0.0,
                        0.0,
                    );
                    let xv = f32x4(x[2 * s], x[2 * s + 1], 0.0, 0.0);
                    acc[0] = f32x4_add(acc[0], f32x4_mul(c, xv));
                }
            }
            _ => {
                let mut quads = idx.chunks_exact(4);
                for (s, ks) in (&mut quads).enumerate() {
                    let c = f32x4(
                        codebook[ks[0] as usize],
                        codebook[ks[1] as usize],
                        codebook[ks[2] as usize],
                        codebook[ks[3] as usize],
                    );
                    acc[s % 2] = f32x4_add(acc[s % 2], f32x4_mul(c, load_f32(x, 4 * s)));
                }
                let done = idx.len() - quads.remainder().len();
                let mut tail = 0f32;
                for (i, &k) in quads.remainder().iter().enumerate() {
                    tail += codebook[k as usize] * x[done + i];
                }
                return horizontal_sum(f32x4_add(acc[0], acc[1])) + tail;
            }
        }
        horizontal_sum(f32x4_add(acc[0], acc[1]))
    }

    /// See [`crate::kernels::prepared::decode_dot4`]. For `d = 4` with a
    /// full 256-codeword codebook per row (`b = 8`, the 2 bpw vector
    /// layout): one input load per slice for the four rows, one codeword
    /// load, multiply and add per row (the indices need no bounds check:
    /// every byte value is a codeword). Other layouts: [`decode_dot`] per row.
    pub fn decode_dot4(codebooks: [&[f32]; 4], d: usize, idx: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
        let n = idx[0].len();
        if d != 4 || codebooks.iter().any(|c| c.len() < 256 * 4) || idx.iter().any(|i| i.len() != n)
        {
            return std::array::from_fn(|i| decode_dot(codebooks[i], d, idx[i], x));
        }
        let x = &x[..4 * n];
        let cbs = codebooks.map(|c| c.as_ptr());
        let ids = idx.map(|i| i.as_ptr());
        let xp = x.as_ptr();
        let mut acc = [f32x4_splat(0.0); 4];
        for s in 0..n {
            // SAFETY: `s < n`, the length of every index list and of `x / 4`;
            // a codeword `k <= 255` reads floats `4k .. 4k + 4 <= 1024`, inside
            // its codebook (checked above).
            unsafe {
                let xv = v128_load(xp.add(4 * s) as *const v128);
                for i in 0..4 {
                    let k = *ids[i].add(s) as usize;
                    let c = v128_load(cbs[i].add(4 * k) as *const v128);
                    acc[i] = f32x4_add(acc[i], f32x4_mul(c, xv));
                }
            }
        }
        acc.map(horizontal_sum)
    }

    /// See [`crate::kernels::prepared::gemm_4x2`].
    pub fn gemm_4x2(w: &[f32], x: &[f32], stride: usize) -> [f32; 8] {
        // One check for the whole loop: every load below stays inside these.
        let w = &w[..4 * stride];
        let x = &x[..2 * stride];
        let mut acc = [f32x4_splat(0.0); 8];
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        for j in (0..stride).step_by(4) {
            // SAFETY: `j + 4 <= stride` (a multiple of 4), so row `i` reads
            // `w[i * stride + j .. + 4]` and input `b` reads
            // `x[b * stride + j .. + 4]`, inside the slices checked above.
            unsafe {
                let x0 = v128_load(xp.add(j) as *const v128);
                let x1 = v128_load(xp.add(stride + j) as *const v128);
                for i in 0..4 {
                    let wi = v128_load(wp.add(i * stride + j) as *const v128);
                    acc[2 * i] = f32x4_add(acc[2 * i], f32x4_mul(wi, x0));
                    acc[2 * i + 1] = f32x4_add(acc[2 * i + 1], f32x4_mul(wi, x1));
                }
            }
        }
        acc.map(horizontal_sum)
    }

    /// Dense `y = W x` for a row-major `W` of `y.len()` rows and `n_in` columns.
    pub fn dense_matvec(w: &[f32], n_in: usize, x: &[f32], y: &mut [f32]) {
        let body = n_in / 16 * 16;
        for (row, yr) in w.chunks_exact(n_in).zip(y.iter_mut()) {
            let mut acc = [f32x4_splat(0.0); 4];
            for j in (0..body).step_by(16) {
                for (q, a) in acc.iter_mut().enumerate() {
                    *a = f32x4_add(
                        *a,
                        f32x4_mul(load_f32(row, j + 4 * q), load_f32(x, j + 4 * q)),
                    );
                }
            }
            let sum = f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3]));
            let mut s = horizontal_sum(sum);
            for j in body..n_in {
                s += row[j] * x[j];
            }
            *yr = s;
        }
    }
}
