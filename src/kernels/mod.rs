//! Lookup kernels: `Y = Ŵ X` straight from packed indices and codebooks,
//! never materialising `Ŵ`.
//!
//! - [`reference`] is the truth: it reads each index and codeword directly.
//! - [`prepared`] turns a [`PackedTensor`] into a layout made for fast
//!   products (rows sorted by codebook into blocks of 16, indices repacked
//!   into nibble planes, codebooks as f32) whose size stays of the order of
//!   the packed bytes, and holds the portable (plain Rust) kernels.
//! - [`simd128`] (wasm SIMD128) and [`x86`] (AVX2 + FMA) hold the same
//!   function names for the hot loops; where an instruction set is not
//!   compiled, a stub with the same API forwards to [`prepared`].
//! - [`Isa`] is the one place that picks the variant: once, at
//!   [`PackedMatrix::new`], then every product is a `match`.
//!
//! # Which kernel runs
//!
//! | layout | plan | inner loop |
//! |---|---|---|
//! | `b <= 4` (any `d` = 1, 2, 4, 8), >= 16 rows per codebook, batch < [`prepared::TILE_MIN_BATCH`] | [`prepared::Plan::NibbleLut`] | per input vector and codebook, a 16-entry f32 table per *slot* of `4/b` indices (`b = 3`: one) holds every possible partial sum (the dot products of the slot's input slice with every codeword combination); one byte shuffle per byte plane looks up 16 rows at once, reading the packed rows themselves (16x16 byte transpose in registers). Table entries: f32 (4 planes), or on SIMD128 at batch 1 by default 20-bit fixed point in two levels (3 planes, [`prepared::LutPrecision::TwoLevel`]; [`PackedMatrix::default_precision`]) |
//! | `b >= 5` (e.g. `d = 4, b = 8`, 2 bpw), or many small groups, batch < [`prepared::TILE_MIN_BATCH`] | [`prepared::Plan::Decode`] | four rows at a time (`decode_dot4`), codewords (f32, gathered from a codebook in L1) times input slices, `d`-wide, each input slice loaded once for the four rows |
//! | any layout, batch >= [`prepared::TILE_MIN_BATCH`] | tiled | decode 16 rows to f32 (2-bit `d = 1`: one byte shuffle per 4 weights), then a 4 x 2 register-blocked micro-GEMM against every input of a block of [`prepared::TILE_INPUT_BYTES`] (re-decoded per block, so the inputs stay in L2) |
//!
//! Resident memory of a [`PackedMatrix`]: the packed tensor plus
//! [`PackedMatrix::prepared_bytes`] (f32 codebooks, group scales, 4 bytes a
//! row of block row ids; `b = 3` also keeps repacked indices, 4/3 of its
//! packed index bytes). No dense copy of `Ŵ` is ever made; the tiled path's
//! scratch is 16 rows.
//!
//! Both plans add exact f32 products in a fixed order per row, so they agree
//! with the reference within [`error_budget`]; the quantised lookup tables
//! have their own budgets ([`two_level_error_budget`],
//! [`fixed_point_error_budget`]).

pub mod prepared;
pub mod reference;
pub mod simd128;
pub mod synthetic;
pub mod x86;

use crate::format::packed::PackedTensor;
use crate::format::rotation::Rotator;
use prepared::{LutPrecision, PreparedLayout, ProductPath, FIXED_POINT_MAX};
use thiserror::Error;

/// Errors of the kernel boundary.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum KernelError {
    /// Input or output buffers of the wrong length.
    #[error("matmul `{name}`: {problem}")]
    Shape {
        /// Tensor name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The packed tensor is invalid.
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),
    /// An instruction set was asked for that this build or CPU lacks.
    #[error("instruction set `{0:?}` is not available here")]
    Unavailable(Isa),
}

/// The instruction set a kernel runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Plain Rust over the prepared layout (any target).
    Portable,
    /// wasm32 SIMD128 (a build choice: `-C target-feature=+simd128`).
    Simd128,
    /// x86-64 AVX2 + FMA, detected at run time.
    Avx2,
}

impl Isa {
    /// The fastest instruction set this build and CPU support.
    pub fn best() -> Self {
        *Self::available().last().unwrap_or(&Isa::Portable)
    }

    /// Every instruction set usable here, slowest first.
    pub fn available() -> Vec<Self> {
        let mut out = vec![Isa::Portable];
        if simd128::is_available() {
            out.push(Isa::Simd128);
        }
        if x86::is_available() {
            out.push(Isa::Avx2);
        }
        out
    }

    /// Whether this instruction set can run here.
    pub fn is_available(self) -> bool {
        Self::available().contains(&self)
    }

    /// A short lowercase name (`portable`, `simd128`, `avx2`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Simd128 => "simd128",
            Isa::Avx2 => "avx2",
        }
    }
}

/// The error budget of every kernel against [`reference::matmul`], for one
/// output `y = Σ_j ŵ_j x_j` over `n_in` inputs:
/// `|y_kernel - y_reference| <= 2 (n_in + 16) ε Σ_j |ŵ_j| |x_j| + 1e-30`,
/// with `ε = f32::EPSILON`. The reference adds `n_in` rounded products in
/// order, so each product goes through at most `n_in` roundings; the lookup
/// plan first sums slots of `w <= 32` products, then adds the
/// `ceil(n_in / w)` slot sums, at most `w + ceil(n_in / w) <= n_in + 32`
/// roundings a product (`w = 1`: `n_in + 1`); the other kernels reorder
/// sums of the `n_in` products. By the classic `γ_n` bound the two sides
/// differ by at most `(2 n_in + 32) ε Σ|ŵ||x|` to first order.
pub fn error_budget(n_in: usize, sum_abs_products: f32) -> f32 {
    2.0 * (n_in as f32 + 16.0) * f32::EPSILON * sum_abs_products + 1e-30
}

/// The worst-case error budget of the fixed-point lookup
/// ([`LutPrecision::FixedPoint`]) against [`reference::matmul`] for one
/// output over `n_in` inputs, with `max_abs_weight = max_j |ŵ_j|` (the row
/// scale included) and `max_abs_x = max_j |x_j|`. Each of the
/// `ceil(n_in / w)` slots of `w` inputs looks up one entry rounded to a
/// step of `B / 2047`, with the chunk's bound `B = max_t Σ_j max|c_j| |x_j|
/// <= w max|c| max|x|` ([`prepared::fixed_point_bound`]), so it is off
/// by at most `w max|c| max|x| / 4094`; the slots add up to at most
/// `(n_in + w) max|ŵ| max|x| / 4094` (`w <= 32`), plus the f32 roundings of
/// [`error_budget`].
pub fn fixed_point_error_budget(
    n_in: usize,
    max_abs_weight: f32,
    max_abs_x: f32,
    sum_abs_products: f32,
) -> f32 {
    let quantisation = (n_in as f32 + 32.0) * max_abs_weight * max_abs_x / (2.0 * FIXED_POINT_MAX);
    1.001 * quantisation + error_budget(n_in, sum_abs_products)
}

/// Quantisation error of one two-level table entry ([`LutPrecision::TwoLevel`])
/// in units of `f32::EPSILON` times the chunk's bound `B`
/// ([`prepared::fixed_point_bound`]): an entry is rounded to a step of
/// `B / (127 * 4096)` ([`prepared::TWO_LEVEL_MAX`]), so off by at most
/// `B / 1040384 < 8.07 ε B` (`ε = 2^-23`). Rounded up to 10: the scaled
/// coefficients `c * fl(TWO_LEVEL_MAX / B)` and the chunk's step are f32
/// roundings too (relative, one more a product).
pub const TWO_LEVEL_ENTRY_EPSILONS: f32 = 10.0;

/// The worst-case error budget of the two-level lookup
/// ([`LutPrecision::TwoLevel`]) against [`reference::matmul`] for one output
/// over `n_in` inputs (arguments as [`fixed_point_error_budget`]): each of
/// the `ceil(n_in / w)` slots of `w` inputs looks up one entry within
/// [`TWO_LEVEL_ENTRY_EPSILONS`] `ε B` of its f32 value, `B <= w max|c|
/// max|x|`, so the slots add at most `(n_in + 32) 10 ε max|ŵ| max|x|`; the
/// f32 sums (a conversion per group of 16 slots, then the group, chunk and
/// scale roundings, fewer than `n_in + 32` per product) are inside
/// [`error_budget`]. About 1/200 of [`fixed_point_error_budget`].
pub fn two_level_error_budget(
    n_in: usize,
    max_abs_weight: f32,
    max_abs_x: f32,
    sum_abs_products: f32,
) -> f32 {
    let quantisation =
        (n_in as f32 + 32.0) * TWO_LEVEL_ENTRY_EPSILONS * f32::EPSILON * max_abs_weight * max_abs_x;
    1.001 * quantisation + error_budget(n_in, sum_abs_products)
}

/// The relative RMS error budget of the two-level lookup over a whole
/// product (as [`FIXED_POINT_RMS_BUDGET`]), on random weights and inputs.
pub const TWO_LEVEL_RMS_BUDGET: f32 = 2e-5;

/// The relative RMS error budget of the fixed-point lookup over a whole
/// product, `||y - y_ref|| / ||y_ref||`, on random weights and inputs (the
/// worst case [`fixed_point_error_budget`] assumes every rounding error at
/// its largest with the same sign; typical errors are about `1 / sqrt(n_in)`
/// of it).
pub const FIXED_POINT_RMS_BUDGET: f32 = 2e-3;

/// A packed matrix prepared for repeated products.
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    /// The packed tensor (the reference kernel reads it).
    pub tensor: PackedTensor,
    /// Boxed: a `PackedMatrix` sits in enums beside small dense variants.
    layout: Box<PreparedLayout>,
    isa: Isa,
    /// `None`: [`Self::default_precision`].
    precision: Option<LutPrecision>,
    /// The tensor's input rotation, prepared (`Ŵ x = Q (R x)`).
    rotator: Option<Rotator>,
}

impl PackedMatrix {
    /// Validate and prepare a packed tensor for the fastest instruction set here.
    pub fn new(tensor: PackedTensor) -> Result<Self, KernelError> {
        Self::with_isa(tensor, Isa::best())
    }

    /// Validate and prepare a packed tensor for a chosen instruction set.
    pub fn with_isa(tensor: PackedTensor, isa: Isa) -> Result<Self, KernelError> {
        if !isa.is_available() {
            return Err(KernelError::Unavailable(isa));
        }
        tensor.validate()?;
        let layout = Box::new(PreparedLayout::new(&tensor));
        let rotator = tensor.rotation.as_ref().map(|r| r.prepare(tensor.n_in));
        Ok(Self {
            rotator,
            tensor,
            layout,
            isa,
            precision: None,
        })
    }

    /// The one place that picks the lookup table precision. SIMD128 at
    /// batch 1 (the per-input lookup plan; from [`prepared::TILE_MIN_BATCH`]
    /// on the tiled path has no tables), lookup layouts (`b <= 4`, any `d`):
    /// the two-level tables ([`LutPrecision::TwoLevel`], 20 bits), which at
    /// 4096x4096 were 1.15-1.2x faster than the exact f32 tables for 2, 3, 4
    /// bits `d = 1` and 4 bits `d = 2`, in Node and in Chromium
    /// (BENCHMARKS.md, session 9), and whose error on the consumer check's
    /// heavy-tailed matrix is a few hundredths of its tolerance
    /// (`tests/kernels.rs`, `two_level_lookup_keeps_small_outputs_of_heavy_tailed_matrices`).
    /// Everywhere else exact f32 tables (the AVX2 and portable kernels have
    /// no faster fixed-point variant).
    ///
    /// The 12-bit fixed-point tables ([`LutPrecision::FixedPoint`]) are
    /// faster still (about 1.6x exact) but not picked: their error is
    /// relative to the largest product of a chunk, and on the consumer
    /// check's small heavy-tailed 2-bit matrix (tests/consumer/app/check.js:
    /// 64x128, weights up to about 32) an output was off by 3.5e-3 where the
    /// check allows 1.7e-3 (1.8e-3 for 1.0e-3 with 14-bit tables).
    pub fn default_precision(isa: Isa, batch: usize, bits: u8, _dim: u8) -> LutPrecision {
        if isa == Isa::Simd128 && batch < prepared::TILE_MIN_BATCH && bits <= 4 {
            LutPrecision::TwoLevel
        } else {
            LutPrecision::Exact
        }
    }

    /// Force a table precision for every product (`None`: back to
    /// [`Self::default_precision`]); for tests and benchmarks.
    pub fn set_precision(&mut self, precision: Option<LutPrecision>) {
        self.precision = precision;
    }

    /// The table precision a product of `batch` inputs uses.
    pub fn precision(&self, batch: usize) -> LutPrecision {
        self.precision.unwrap_or_else(|| {
            Self::default_precision(self.isa, batch, self.tensor.bits, self.tensor.dim)
        })
    }

    /// Rows (outputs).
    pub fn n_out(&self) -> usize {
        self.tensor.n_out
    }

    /// Columns (inputs).
    pub fn n_in(&self) -> usize {
        self.tensor.n_in
    }

    /// The instruction set products run on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The prepared layout (plan and sizes).
    pub fn layout(&self) -> &PreparedLayout {
        &self.layout
    }

    /// Bytes of the packed tensor a product reads: indices, codebooks (F16),
    /// group ids and scales.
    pub fn packed_bytes(&self) -> usize {
        let t = &self.tensor;
        t.indices.len() + 2 * t.codebooks.len() + t.group_ids.len() + 2 * t.scales.len()
    }

    /// Bytes of the prepared layout (held besides [`Self::tensor`]).
    pub fn prepared_bytes(&self) -> usize {
        self.layout.heap_bytes()
    }

    /// `y[b] = Ŵ x[b]` for `batch` inputs: `x` is `batch x n_in`, `y` is
    /// `batch x n_out`, both row-major.
    pub fn matmul(&self, x: &[f32], batch: usize, y: &mut [f32]) -> Result<(), KernelError> {
        self.matmul_with_path(ProductPath::Auto, x, batch, y)
    }

    /// `R x` of every input row when the tensor is rotated (its codes `Q`
    /// multiply `R x`, `format::rotation`), `None` otherwise.
    pub fn rotated_input(&self, x: &[f32]) -> Option<Vec<f32>> {
        self.rotator.as_ref().map(|r| r.apply_rows(x))
    }

    /// [`Self::matmul`] on a chosen path (for benchmarks and tests).
    pub fn matmul_with_path(
        &self,
        path: ProductPath,
        x: &[f32],
        batch: usize,
        y: &mut [f32],
    ) -> Result<(), KernelError> {
        let (n_in, n_out) = (self.n_in(), self.n_out());
        let bad = |problem: String| KernelError::Shape {
            name: self.tensor.name.clone(),
            problem,
        };
        let want_x = batch
            .checked_mul(n_in)
            .ok_or_else(|| bad(format!("batch {batch} overflows")))?;
        let want_y = batch
            .checked_mul(n_out)
            .ok_or_else(|| bad(format!("batch {batch} overflows")))?;
        if x.len() != want_x || y.len() != want_y {
            return Err(bad(format!(
                "x has {} values and y {}, expected {batch}x{n_in} and {batch}x{n_out}",
                x.len(),
                y.len()
            )));
        }
        let precision = self.precision(batch);
        let rotated = self.rotated_input(x);
        let x = rotated.as_deref().unwrap_or(x);
        self.layout
            .matmul(&self.tensor, self.isa, path, precision, x, batch, y);
        Ok(())
    }
}

/// A dense f32 matrix `[n_out, n_in]`, row-major, with a SIMD matvec: the
/// baseline the packed kernels are measured against.
#[derive(Debug, Clone)]
pub struct DenseMatrix {
    /// Row-major weights.
    pub weights: Vec<f32>,
    /// Rows.
    pub n_out: usize,
    /// Columns.
    pub n_in: usize,
    isa: Isa,
}

impl DenseMatrix {
    /// Wrap row-major weights; `weights.len()` must be `n_out * n_in`.
    pub fn new(
        weights: Vec<f32>,
        n_out: usize,
        n_in: usize,
        isa: Isa,
    ) -> Result<Self, KernelError> {
        if !isa.is_available() {
            return Err(KernelError::Unavailable(isa));
        }
        if n_out.checked_mul(n_in) != Some(weights.len()) {
            return Err(KernelError::Shape {
                name: "dense".into(),
                problem: format!("{} weights for {n_out}x{n_in}", weights.len()),
            });
        }
        Ok(Self {
            weights,
            n_out,
            n_in,
            isa,
        })
    }

    /// `y[b] = W x[b]` for `batch` inputs (shapes as [`PackedMatrix::matmul`]).
    pub fn matmul(&self, x: &[f32], batch: usize, y: &mut [f32]) -> Result<(), KernelError> {
        if Some(x.len()) != batch.checked_mul(self.n_in)
            || Some(y.len()) != batch.checked_mul(self.n_out)
        {
            return Err(KernelError::Shape {
                name: "dense".into(),
                problem: format!(
                    "x has {} values and y {} for batch {batch}",
                    x.len(),
                    y.len()
                ),
            });
        }
        for (xb, yb) in x
            .chunks_exact(self.n_in.max(1))
            .zip(y.chunks_exact_mut(self.n_out.max(1)))
            .take(batch)
        {
            match self.isa {
                Isa::Portable => prepared::dense_matvec(&self.weights, self.n_in, xb, yb),
                Isa::Simd128 => simd128::dense_matvec(&self.weights, self.n_in, xb, yb),
                // SAFETY: `DenseMatrix::new` only accepts `Isa::Avx2` when the
                // CPU reports AVX2 and FMA.
                Isa::Avx2 => unsafe { x86::dense_matvec(&self.weights, self.n_in, xb, yb) },
            }
        }
        Ok(())
    }
}
