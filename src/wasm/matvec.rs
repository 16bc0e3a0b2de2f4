//! Products with a packed matrix, straight from indices and codebooks.

use wasm_bindgen::prelude::*;

use super::compress::CompressedTensor;
use super::error::BindingError;
use crate::format::packed::{PackedEntry, PackedFile};
use crate::format::FormatError;
use crate::kernels::PackedMatrix;

/// A packed matrix ready for repeated products (`Y = Ŵ X`).
#[wasm_bindgen(js_name = PackedMatrix)]
pub struct JsPackedMatrix {
    matrix: PackedMatrix,
}

#[wasm_bindgen(js_class = PackedMatrix)]
impl JsPackedMatrix {
    /// From a compressed tensor (copied).
    #[wasm_bindgen(js_name = fromCompressed)]
    pub fn from_compressed(tensor: &CompressedTensor) -> Result<JsPackedMatrix, JsValue> {
        let matrix = PackedMatrix::new(tensor.packed().clone()).map_err(BindingError::from)?;
        Ok(Self { matrix })
    }

    /// The compressed tensor `name` of a packed file.
    #[wasm_bindgen(js_name = fromPackedFile)]
    pub fn from_packed_file(bytes: &[u8], name: &str) -> Result<JsPackedMatrix, JsValue> {
        let file = PackedFile::from_bytes(bytes).map_err(BindingError::from)?;
        let packed = file
            .entries
            .into_iter()
            .find_map(|e| match e {
                PackedEntry::Packed(p) if p.name == name => Some(p),
                _ => None,
            })
            .ok_or_else(|| BindingError::from(FormatError::TensorNotFound(name.to_string())))?;
        let matrix = PackedMatrix::new(packed).map_err(BindingError::from)?;
        Ok(Self { matrix })
    }

    /// Rows (outputs).
    #[wasm_bindgen(getter, js_name = rows)]
    pub fn rows(&self) -> usize {
        self.matrix.n_out()
    }

    /// Columns (inputs).
    #[wasm_bindgen(getter, js_name = cols)]
    pub fn cols(&self) -> usize {
        self.matrix.n_in()
    }

    /// `y[b] = Ŵ x[b]` for `batch` inputs: `x` is `batch x cols`, the result
    /// `batch x rows`, both row-major. `batch` defaults to 1.
    pub fn matmul(&self, x: &[f32], batch: Option<usize>) -> Result<Vec<f32>, JsValue> {
        let batch = batch.unwrap_or(1);
        let mut y = vec![0f32; batch.saturating_mul(self.matrix.n_out())];
        self.matrix
            .matmul(x, batch, &mut y)
            .map_err(BindingError::from)?;
        Ok(y)
    }
}
