//! Element-wise f32 kernels of the learning loops: `y += a x`, `y += x` and
//! `y -= x`.
//!
//! Each output element gets exactly one rounded multiply and one rounded add
//! (no fused multiply-add, no reassociation), so the SIMD128 versions give
//! bit-identical results to the scalar ones and to native builds; they exist
//! because LLVM's auto-vectorised wasm loops handle one `v128` per iteration
//! and V8 runs them at about half the native speed. The scalar versions are
//! the reference (and what native builds use: LLVM vectorises them well for
//! x86-64 and aarch64).

/// `y += a * x` (over the shorter of the two).
#[inline]
pub(crate) fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd128::axpy(y, a, x)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        scalar::axpy(y, a, x)
    }
}

/// `y += x` (over the shorter of the two).
#[inline]
pub(crate) fn add_assign(y: &mut [f32], x: &[f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd128::add_assign(y, x)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        scalar::add_assign(y, x)
    }
}

/// `y -= x` (over the shorter of the two).
#[inline]
pub(crate) fn sub_assign(y: &mut [f32], x: &[f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd128::sub_assign(y, x)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        scalar::sub_assign(y, x)
    }
}

/// The reference versions.
pub(crate) mod scalar {
    /// `y += a * x`.
    #[inline]
    pub(crate) fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
        for (y, x) in y.iter_mut().zip(x) {
            *y += a * *x;
        }
    }

    /// `y += x`.
    #[inline]
    pub(crate) fn add_assign(y: &mut [f32], x: &[f32]) {
        for (y, x) in y.iter_mut().zip(x) {
            *y += *x;
        }
    }

    /// `y -= x`.
    #[inline]
    pub(crate) fn sub_assign(y: &mut [f32], x: &[f32]) {
        for (y, x) in y.iter_mut().zip(x) {
            *y -= *x;
        }
    }
}

/// Explicit SIMD128 versions: 16 floats (four `v128`) per iteration.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) mod simd128 {
    use core::arch::wasm32::{
        f32x4_add, f32x4_mul, f32x4_splat, f32x4_sub, v128, v128_load, v128_store,
    };

    /// `y += a * x`.
    #[inline]
    pub(crate) fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
        let n = y.len().min(x.len());
        let (y, x) = (&mut y[..n], &x[..n]);
        let av = f32x4_splat(a);
        let main = n - n % 16;
        let (yp, xp) = (y.as_mut_ptr(), x.as_ptr());
        let mut i = 0;
        while i < main {
            // SAFETY: i + 16 <= main <= n = len of both slices; v128 loads
            // and stores need no alignment.
            unsafe {
                for u in 0..4 {
                    let o = i + 4 * u;
                    let yv = v128_load(yp.add(o) as *const v128);
                    let xv = v128_load(xp.add(o) as *const v128);
                    v128_store(yp.add(o) as *mut v128, f32x4_add(yv, f32x4_mul(av, xv)));
                }
            }
            i += 16;
        }
        super::scalar::axpy(&mut y[main..], a, &x[main..]);
    }

    /// `y = op(y, x)` element-wise, 16 floats per iteration.
    #[inline(always)]
    fn zip_with(y: &mut [f32], x: &[f32], op: impl Fn(v128, v128) -> v128) -> usize {
        let n = y.len().min(x.len());
        let main = n - n % 16;
        let (yp, xp) = (y.as_mut_ptr(), x.as_ptr());
        let mut i = 0;
        while i < main {
            // SAFETY: as in `axpy`.
            unsafe {
                for u in 0..4 {
                    let o = i + 4 * u;
                    let yv = v128_load(yp.add(o) as *const v128);
                    let xv = v128_load(xp.add(o) as *const v128);
                    v128_store(yp.add(o) as *mut v128, op(yv, xv));
                }
            }
            i += 16;
        }
        main
    }

    /// `y += x`.
    #[inline]
    pub(crate) fn add_assign(y: &mut [f32], x: &[f32]) {
        let n = y.len().min(x.len());
        let main = zip_with(y, x, |a, b| f32x4_add(a, b));
        super::scalar::add_assign(&mut y[main..n], &x[main..n]);
    }

    /// `y -= x`.
    #[inline]
    pub(crate) fn sub_assign(y: &mut [f32], x: &[f32]) {
        let n = y.len().min(x.len());
        let main = zip_with(y, x, |a, b| f32x4_sub(a, b));
        super::scalar::sub_assign(&mut y[main..n], &x[main..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // In wasm (`wasm-pack test --node -- --lib`) this checks the SIMD128
    // versions against the scalar ones.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 - 0.5) * 3.0
            })
            .collect()
    }

    /// The dispatching kernels (SIMD128 in wasm builds) are bit-identical to
    /// the scalar reference for every length around the 16-float blocks.
    #[test]
    fn kernels_match_the_scalar_reference_bit_for_bit() {
        for n in 0..70 {
            let x = data(n, 1 + n as u32);
            let y0 = data(n, 100 + n as u32);
            let (mut a, mut b) = (y0.clone(), y0.clone());
            axpy(&mut a, -0.37, &x);
            scalar::axpy(&mut b, -0.37, &x);
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "axpy n={n}"
            );
            let (mut a, mut b) = (y0.clone(), y0.clone());
            add_assign(&mut a, &x);
            scalar::add_assign(&mut b, &x);
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "add n={n}"
            );
            let (mut a, mut b) = (y0.clone(), y0);
            sub_assign(&mut a, &x);
            scalar::sub_assign(&mut b, &x);
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "sub n={n}"
            );
        }
        // Unequal lengths: only the common prefix changes.
        let mut y = vec![1f32; 20];
        axpy(&mut y, 2.0, &[1.0; 17]);
        assert_eq!(&y[..17], &[3.0; 17]);
        assert_eq!(&y[17..], &[1.0; 3]);
    }
}
