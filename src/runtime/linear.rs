//! A Linear layer `y = x Wᵀ + b` on dense or packed weights.

use super::dense::{matmul_transposed, transpose};
use super::error::{Result, RuntimeError};
use super::panel::{matmul_decoded_panels, scaled_codebooks};
use crate::kernels::PackedMatrix;

/// The weight of a Linear layer.
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// Dense f32, stored transposed (`Wᵀ`, `n_in x n_out`) for the blocked kernel.
    Dense {
        /// `Wᵀ`, row-major `n_in x n_out`.
        wt: Vec<f32>,
    },
    /// Packed indices and codebooks, multiplied without ever forming a
    /// dense copy of the layer (see [`PackedStrategy`]).
    Packed {
        /// The packed matrix and the lookup kernels' prepared layout.
        matrix: Box<PackedMatrix>,
        /// Each group's codebook times its scale, f32 `[G, K, d]` (for panel decoding).
        codebooks: Vec<f32>,
    },
}

/// How a packed layer computes `x Ŵᵀ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PackedStrategy {
    /// Lookup kernels for few input rows, panel decoding from
    /// [`PANEL_MIN_ROWS`] rows on where [`AUTO_PANELS`] (natively; in wasm
    /// the kernels' tiled path at every size).
    #[default]
    Auto,
    /// Always the lookup kernels ([`PackedMatrix::matmul`]).
    Kernel,
    /// Always decode `PANEL_ROWS` rows of `Ŵ` at a time and run the dense kernel.
    DecodePanels,
}

/// Input rows from which [`PackedStrategy::Auto`] decodes panels. Measured
/// by `benches/runtime.rs` (native AVX2, 2-bit MiniLM layers): decoding costs
/// about 1 ns per weight, so the dense kernel on decoded panels overtakes the
/// lookup kernels between 16 and 32 rows and reaches dense speed by 512.
pub const PANEL_MIN_ROWS: usize = 32;

/// Whether [`PackedStrategy::Auto`] decodes panels at all. Not in wasm: the
/// dense blocked kernel the panels run on is autovectorised there, and the
/// kernels' tiled path (16 rows decoded with one shuffle per 4 weights, an
/// explicit SIMD128 4x2 micro-GEMM, inputs in L2-sized blocks) ran batch 32
/// at 2.2x the panels' speed in Node (`scripts/bench-runtime-wasm.sh`,
/// BENCHMARKS.md session 3).
pub const AUTO_PANELS: bool = cfg!(not(target_arch = "wasm32"));

/// A Linear layer: weight name (as in model.safetensors), weight and bias.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Name of the weight tensor (`encoder.layer.0.attention.self.query.weight`).
    pub name: String,
    /// Inputs.
    pub n_in: usize,
    /// Outputs.
    pub n_out: usize,
    /// Dense or packed weight.
    pub weight: LinearWeight,
    /// Bias, `n_out` values (zeros when the model has none).
    pub bias: Vec<f32>,
    /// How a packed weight is multiplied.
    pub strategy: PackedStrategy,
}

impl Linear {
    /// A dense layer from `w` in PyTorch layout (`n_out x n_in`, row-major).
    pub fn dense(name: &str, w: &[f32], n_out: usize, n_in: usize, bias: Vec<f32>) -> Result<Self> {
        if w.len() != n_out * n_in || bias.len() != n_out {
            return Err(RuntimeError::Weight {
                name: name.to_string(),
                problem: format!(
                    "{} weights and {} biases for a {n_out} x {n_in} layer",
                    w.len(),
                    bias.len()
                ),
            });
        }
        Ok(Self {
            name: name.to_string(),
            n_in,
            n_out,
            weight: LinearWeight::Dense {
                wt: transpose(w, n_out, n_in),
            },
            bias,
            strategy: PackedStrategy::Auto,
        })
    }

    /// A packed layer.
    pub fn packed(name: &str, m: PackedMatrix, bias: Vec<f32>) -> Result<Self> {
        let (n_out, n_in) = (m.n_out(), m.n_in());
        if bias.len() != n_out {
            return Err(RuntimeError::Weight {
                name: name.to_string(),
                problem: format!("{} biases for {n_out} outputs", bias.len()),
            });
        }
        Ok(Self {
            name: name.to_string(),
            n_in,
            n_out,
            weight: LinearWeight::Packed {
                codebooks: scaled_codebooks(&m.tensor),
                matrix: Box::new(m),
            },
            bias,
            strategy: PackedStrategy::Auto,
        })
    }

    /// Whether the weight is packed.
    pub fn is_packed(&self) -> bool {
        matches!(self.weight, LinearWeight::Packed { .. })
    }

    /// Bytes held by the weight: dense f32, or the packed parts (indices,
    /// codebooks, group ids, scales) plus the kernels' prepared layout and
    /// the f32 codebooks.
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            LinearWeight::Dense { wt } => 4 * wt.len(),
            LinearWeight::Packed { matrix, codebooks } => {
                matrix.packed_bytes() + matrix.prepared_bytes() + 4 * codebooks.len()
            }
        }
    }

    /// `y = x Wᵀ + b` for `rows` inputs (`x`: `rows x n_in`, `y`: `rows x n_out`).
    pub fn forward(&self, x: &[f32], rows: usize, y: &mut [f32]) -> Result<()> {
        if x.len() != rows * self.n_in || y.len() != rows * self.n_out {
            return Err(RuntimeError::Input(format!(
                "layer `{}`: x has {} values and y {}, expected {rows} x {} and {rows} x {}",
                self.name,
                x.len(),
                y.len(),
                self.n_in,
                self.n_out
            )));
        }
        match &self.weight {
            LinearWeight::Dense { wt } => {
                matmul_transposed(x, rows, self.n_in, wt, self.n_out, Some(&self.bias), y)
            }
            LinearWeight::Packed { matrix, codebooks } => {
                let panels = match self.strategy {
                    PackedStrategy::Auto => AUTO_PANELS && rows >= PANEL_MIN_ROWS,
                    PackedStrategy::Kernel => false,
                    PackedStrategy::DecodePanels => true,
                };
                if panels {
                    // The panels decode the codes `Q`: they multiply `R x`.
                    let rotated = matrix.rotated_input(x);
                    let x = rotated.as_deref().unwrap_or(x);
                    matmul_decoded_panels(&matrix.tensor, codebooks, x, rows, &self.bias, y);
                } else {
                    matrix.matmul(x, rows, y)?;
                    for row in y.chunks_exact_mut(self.n_out) {
                        super::ops::add_in_place(row, &self.bias);
                    }
                }
            }
        }
        Ok(())
    }
}
