//! Packed files: assemble, decode and inspect.

use std::collections::BTreeMap;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::compress::CompressedTensor;
use super::convert::{to_js, TensorSpec};
use super::error::{BindingError, JsResult};
use crate::format::packed::{Mode, PackedEntry, PackedFile};
use crate::format::safetensors::{self as st, OwnedTensor};

/// Builds a packed file from compressed tensors and tensors kept as they are,
/// in the order they are added.
#[wasm_bindgen]
#[derive(Default)]
pub struct PackedFileBuilder {
    file: PackedFile,
}

#[wasm_bindgen]
impl PackedFileBuilder {
    /// An empty packed file.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a compressed tensor (copied; the argument stays usable).
    #[wasm_bindgen(js_name = addCompressed)]
    pub fn add_compressed(&mut self, tensor: &CompressedTensor) {
        self.file
            .entries
            .push(PackedEntry::Packed(tensor.packed().clone()));
    }

    /// Add every tensor of another packed file (e.g. `toPackedFile()` bytes
    /// sent back by workers that each compressed one tensor), in its order;
    /// its extra metadata is merged in.
    #[wasm_bindgen(js_name = addPackedFile)]
    pub fn add_packed_file(&mut self, bytes: &[u8]) -> Result<(), JsValue> {
        let other = PackedFile::from_bytes(bytes).map_err(BindingError::from)?;
        self.file.entries.extend(other.entries);
        self.file.metadata.extend(other.metadata);
        Ok(())
    }

    /// Add a tensor kept byte for byte (biases, norms, embeddings...).
    #[wasm_bindgen(js_name = addRaw)]
    pub fn add_raw(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "TensorSpec")] tensor: JsValue,
        bytes: &[u8],
    ) -> Result<(), JsValue> {
        Ok(self.add_raw_impl(tensor, bytes)?)
    }

    fn add_raw_impl(&mut self, tensor: JsValue, bytes: &[u8]) -> JsResult<()> {
        let spec = TensorSpec::from_js(tensor)?;
        let entry = spec.entry(bytes.len())?;
        // Checked bits, whole bytes (`bitsize / 8` is 0 for F4/F6).
        let shape: Vec<u64> = spec.shape.iter().map(|&d| d as u64).collect();
        let expected = st::data_bytes(&shape, entry.dtype).ok();
        if expected != Some(bytes.len() as u64) {
            return Err(crate::format::FormatError::ShapeMismatch {
                name: spec.name,
                shape: spec.shape,
                dtype: spec.dtype,
                bytes: bytes.len(),
            }
            .into());
        }
        let tensor = OwnedTensor {
            dtype: entry.dtype,
            shape: spec.shape,
            data: bytes.to_vec(),
        };
        self.file.entries.push(PackedEntry::Raw {
            name: spec.name,
            tensor,
        });
        Ok(())
    }

    /// Set a `__metadata__` entry (keys starting with `jlcm` are reserved).
    #[wasm_bindgen(js_name = setMetadata)]
    pub fn set_metadata(&mut self, key: String, value: String) {
        self.file.metadata.insert(key, value);
    }

    /// Number of tensors added.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.file.entries.len()
    }

    /// The packed file's bytes (a valid safetensors file).
    #[wasm_bindgen(js_name = toBytes)]
    pub fn to_bytes(&self) -> Result<Vec<u8>, JsValue> {
        Ok(self.file.to_bytes().map_err(BindingError::from)?)
    }
}

/// Decode a packed file into a dense safetensors file with the original
/// names, shapes and dtypes.
#[wasm_bindgen(js_name = decodePackedFile)]
pub fn decode_packed_file(bytes: &[u8]) -> Result<Vec<u8>, JsValue> {
    let file = PackedFile::from_bytes(bytes).map_err(BindingError::from)?;
    check_decode_fits(&file)?;
    Ok(file.decode().map_err(BindingError::from)?)
}

/// Most bytes of dense tensors `decodePackedFile` builds in wasm memory: the
/// decoded tensors and the output file are both held (about twice this),
/// beside the packed input, within wasm32's 4 GiB (and 2 GiB per allocation).
pub const WASM_DECODE_BUDGET_BYTES: u64 = 1 << 30;

/// Refuse, before decoding anything, a packed file whose dense tensors
/// cannot be held in wasm memory (a small packed file can describe a
/// matrix of gigabytes): `E_TOO_LARGE`, naming the tensor at which the
/// decoded size passes the budget, suggesting the native CLI.
fn check_decode_fits(file: &PackedFile) -> JsResult<()> {
    let mut total: u64 = 0;
    for e in &file.entries {
        let bytes = match e {
            PackedEntry::Packed(p) => {
                (p.n_out as u64)
                    .saturating_mul(p.n_in as u64)
                    .saturating_mul(p.dtype.bitsize() as u64)
                    / 8
            }
            PackedEntry::Raw { tensor, .. } => tensor.data.len() as u64,
        };
        total = total.saturating_add(bytes);
        if total > WASM_DECODE_BUDGET_BYTES {
            return Err(crate::format::FormatError::TooLarge {
                name: e.name().to_string(),
                bytes: total,
                limit: WASM_DECODE_BUDGET_BYTES,
            }
            .into());
        }
    }
    Ok(())
}

/// One tensor of an inspected packed file.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackedTensorInfo {
    /// Original name.
    pub name: String,
    /// Whether the tensor is compressed (`false`: copied through).
    pub packed: bool,
    /// Original shape.
    pub shape: Vec<usize>,
    /// Original dtype.
    pub dtype: String,
    /// Bits per index (packed only).
    pub bits: Option<u8>,
    /// Codeword dimension (packed only).
    pub dim: Option<u8>,
    /// Groups (packed only).
    pub groups: Option<u16>,
    /// Mode (packed only).
    pub mode: Option<Mode>,
    /// Bits per weight, everything counted (packed only).
    pub bpw: Option<f64>,
    /// Bytes stored in the file for this tensor (without header).
    pub bytes: u64,
    /// Bytes of the tensor in its original dtype.
    pub original_bytes: u64,
}

/// What `inspectPackedFile` returns.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackedFileInfo {
    /// Length of the packed file.
    pub file_bytes: u64,
    /// Length of the dense file it decodes to (tensor data only).
    pub original_bytes: u64,
    /// `originalBytes / fileBytes`.
    pub ratio: f64,
    /// Bits per weight over the compressed tensors.
    pub bpw: f64,
    /// Weights in compressed tensors.
    pub packed_weights: u64,
    /// Tensors in file order.
    pub tensors: Vec<PackedTensorInfo>,
    /// Extra metadata (without `jlcm` keys).
    pub metadata: BTreeMap<String, String>,
}

/// Summarise a parsed packed file of `file_bytes` bytes.
pub fn inspect(file: &PackedFile, file_bytes: u64) -> PackedFileInfo {
    let tensors: Vec<PackedTensorInfo> = file
        .entries
        .iter()
        .map(|e| match e {
            PackedEntry::Packed(p) => PackedTensorInfo {
                name: p.name.clone(),
                packed: true,
                shape: p.shape.clone(),
                dtype: st::dtype_name(p.dtype),
                bits: Some(p.bits),
                dim: Some(p.dim),
                groups: Some(p.groups),
                mode: Some(p.mode),
                bpw: Some(p.bpw()),
                bytes: p.stored_bits().div_ceil(8),
                // u64: on wasm32 a valid tensor's byte count can pass usize.
                original_bytes: (p.n_out as u64)
                    .saturating_mul(p.n_in as u64)
                    .saturating_mul(p.dtype.bitsize() as u64)
                    / 8,
            },
            PackedEntry::Raw { name, tensor } => PackedTensorInfo {
                name: name.clone(),
                packed: false,
                shape: tensor.shape.clone(),
                dtype: st::dtype_name(tensor.dtype),
                bits: None,
                dim: None,
                groups: None,
                mode: None,
                bpw: None,
                bytes: tensor.data.len() as u64,
                original_bytes: tensor.data.len() as u64,
            },
        })
        .collect();
    let (bits, weights) = file.packed_bits_and_weights();
    let original_bytes: u64 = tensors.iter().map(|t| t.original_bytes).sum();
    PackedFileInfo {
        file_bytes,
        original_bytes,
        ratio: original_bytes as f64 / file_bytes.max(1) as f64,
        bpw: if weights > 0 {
            bits as f64 / weights as f64
        } else {
            0.0
        },
        packed_weights: weights,
        tensors,
        metadata: file.metadata.clone(),
    }
}

/// Per-tensor bits, d, G, bpw and bytes of a packed file; the file's bpw
/// and compression ratio.
#[wasm_bindgen(js_name = inspectPackedFile, unchecked_return_type = "PackedFileInfo")]
pub fn inspect_packed_file(bytes: &[u8]) -> Result<JsValue, JsValue> {
    let file = PackedFile::from_bytes(bytes).map_err(BindingError::from)?;
    Ok(to_js(&inspect(&file, bytes.len() as u64))?)
}
