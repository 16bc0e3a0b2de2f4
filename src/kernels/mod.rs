//! Lookup kernels: `Y = Ŵ X` straight from packed indices and codebooks.
//!
//! `reference` is the truth; `simd128` (wasm) and `x86` (AVX2) hold the
//! same function names. [`PackedMatrix`] picks the variant once.

pub mod reference;

use crate::format::packed::PackedTensor;
use thiserror::Error;

/// Errors of the kernel boundary.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum KernelError {
    /// Input or output buffers of the wrong length.
    #[error("matmul `{name}`: {problem}")]
    Shape { name: String, problem: String },
    /// The packed tensor is invalid.
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),
}

/// A packed matrix prepared for repeated products.
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    /// The packed tensor.
    pub tensor: PackedTensor,
}

impl PackedMatrix {
    /// Validate and prepare a packed tensor.
    pub fn new(tensor: PackedTensor) -> Result<Self, KernelError> {
        tensor.validate()?;
        Ok(Self { tensor })
    }

    /// Rows (outputs).
    pub fn n_out(&self) -> usize {
        self.tensor.n_out
    }

    /// Columns (inputs).
    pub fn n_in(&self) -> usize {
        self.tensor.n_in
    }

    /// `y[b] = Ŵ x[b]` for `batch` inputs: `x` is `batch x n_in`, `y` is
    /// `batch x n_out`, both row-major.
    pub fn matmul(&self, x: &[f32], batch: usize, y: &mut [f32]) -> Result<(), KernelError> {
        let (n_in, n_out) = (self.n_in(), self.n_out());
        if x.len() != batch * n_in || y.len() != batch * n_out {
            return Err(KernelError::Shape {
                name: self.tensor.name.clone(),
                problem: format!(
                    "x has {} values and y {}, expected {}x{} and {}x{}",
                    x.len(),
                    y.len(),
                    batch,
                    n_in,
                    batch,
                    n_out
                ),
            });
        }
        reference::matmul(&self.tensor, x, batch, y);
        Ok(())
    }
}
