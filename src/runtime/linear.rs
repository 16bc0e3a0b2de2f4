//! A Linear layer `y = x Wᵀ + b` on dense or packed weights.

use super::dense::{matmul_transposed, transpose};
use super::error::{Result, RuntimeError};
use crate::kernels::PackedMatrix;

/// The weight of a Linear layer.
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// Dense f32, stored transposed (`Wᵀ`, `n_in x n_out`) for the blocked kernel.
    Dense {
        /// `Wᵀ`, row-major `n_in x n_out`.
        wt: Vec<f32>,
    },
    /// Packed indices and codebooks, multiplied by the lookup kernels
    /// without ever forming a dense copy.
    Packed(PackedMatrix),
}

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
            weight: LinearWeight::Packed(m),
            bias,
        })
    }

    /// Whether the weight is packed.
    pub fn is_packed(&self) -> bool {
        matches!(self.weight, LinearWeight::Packed(_))
    }

    /// Bytes held by the weight (packed: indices, codebooks, group ids, scales).
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            LinearWeight::Dense { wt } => 4 * wt.len(),
            LinearWeight::Packed(m) => {
                let t = &m.tensor;
                t.indices.len() + 2 * t.codebooks.len() + t.group_ids.len() + 2 * t.scales.len()
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
            LinearWeight::Packed(m) => {
                m.matmul(x, rows, y)?;
                for row in y.chunks_exact_mut(self.n_out) {
                    super::ops::add_in_place(row, &self.bias);
                }
            }
        }
        Ok(())
    }
}
