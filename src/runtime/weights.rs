//! Where the encoder's tensors come from: a dense safetensors file (the
//! original model or a decoded one) or a jlcm packed file.

use std::collections::HashMap;

use super::error::{Result, RuntimeError};
use super::linear::Linear;
use crate::format::packed::{PackedEntry, PackedFile, PackedTensor, VERSION_KEY};
use crate::format::safetensors::{self as st, SafetensorsFile, TensorEntry};
use crate::kernels::PackedMatrix;

/// An embedding table: rows gathered by id.
#[derive(Debug, Clone)]
pub enum Table {
    /// Dense `rows x width` f32.
    Dense {
        /// Values, row-major.
        values: Vec<f32>,
        /// Row width.
        width: usize,
    },
    /// A packed table: each gathered row is decoded on the fly.
    Packed(PackedTensor),
}

impl Table {
    /// Rows in the table.
    pub fn rows(&self) -> usize {
        match self {
            Table::Dense { values, width } => values.len() / width,
            Table::Packed(p) => p.n_out,
        }
    }

    /// `out += row r` (`out` has the table's width).
    pub fn add_row(&self, r: usize, out: &mut [f32], scratch: &mut [f32]) {
        match self {
            Table::Dense { values, width } => {
                super::ops::add_in_place(out, &values[r * width..(r + 1) * width])
            }
            Table::Packed(p) => {
                p.decode_weight_row(r, scratch);
                super::ops::add_in_place(out, scratch);
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match self {
            Table::Dense { values, .. } => 4 * values.len(),
            Table::Packed(t) => {
                t.indices.len() + 2 * t.codebooks.len() + t.group_ids.len() + 2 * t.scales.len()
            }
        }
    }
}

/// The tensors of a model file, consumed as the model is built.
pub enum WeightSource<'a> {
    /// A dense safetensors file.
    Dense(SafetensorsFile<'a>),
    /// A packed file's entries by name.
    Packed(HashMap<String, PackedEntry>),
}

/// Whether safetensors bytes are a jlcm packed file (its metadata has the format key).
pub fn is_packed_file(bytes: &[u8]) -> Result<bool> {
    let header = st::parse_header(bytes, Some(bytes.len() as u64))?;
    Ok(header.metadata.contains_key(VERSION_KEY))
}

impl<'a> WeightSource<'a> {
    /// Read a dense or packed safetensors file (detected from its metadata).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self> {
        if is_packed_file(bytes)? {
            Ok(Self::from_packed(PackedFile::from_bytes(bytes)?))
        } else {
            Ok(WeightSource::Dense(SafetensorsFile::parse(bytes)?))
        }
    }

    /// Take the entries of a parsed packed file.
    pub fn from_packed(file: PackedFile) -> Self {
        WeightSource::Packed(
            file.entries
                .into_iter()
                .map(|e| (e.name().to_string(), e))
                .collect(),
        )
    }

    /// Whether a tensor of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            WeightSource::Dense(f) => f.header.get(name).is_ok(),
            WeightSource::Packed(m) => m.contains_key(name),
        }
    }

    fn missing(name: &str) -> RuntimeError {
        RuntimeError::Weight {
            name: name.to_string(),
            problem: "missing from the weights file".into(),
        }
    }

    fn shape_error(name: &str, got: &[usize], want: &[usize]) -> RuntimeError {
        RuntimeError::Weight {
            name: name.to_string(),
            problem: format!("shape {got:?}, expected {want:?}"),
        }
    }

    /// A dense (never packed) tensor of the given shape, as f32.
    pub fn dense(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (got, values) = match self {
            WeightSource::Dense(f) => {
                let e = f.header.get(name).map_err(|_| Self::missing(name))?;
                (e.shape.clone(), st::to_f32(e, f.tensor_bytes(e))?)
            }
            WeightSource::Packed(m) => match m.remove(name) {
                Some(PackedEntry::Raw { name, tensor }) => {
                    let e = TensorEntry {
                        name: name.clone(),
                        dtype: tensor.dtype,
                        shape: tensor.shape.clone(),
                        start: 0,
                        end: 0,
                    };
                    (tensor.shape.clone(), st::to_f32(&e, &tensor.data)?)
                }
                // A small packed tensor where the runtime needs dense
                // values (never a Linear weight): decode it.
                Some(PackedEntry::Packed(p)) => (p.shape.clone(), p.decode_f32()),
                None => return Err(Self::missing(name)),
            },
        };
        if got != shape {
            return Err(Self::shape_error(name, &got, shape));
        }
        st::check_finite(name, &values)?;
        Ok(values)
    }

    /// An embedding table `rows x width` (packed tables stay packed).
    pub fn table(&mut self, name: &str, rows: usize, width: usize) -> Result<Table> {
        if let WeightSource::Packed(m) = self {
            if let Some(PackedEntry::Packed(_)) = m.get(name) {
                let Some(PackedEntry::Packed(p)) = m.remove(name) else {
                    unreachable!()
                };
                if p.shape != [rows, width] {
                    return Err(Self::shape_error(name, &p.shape, &[rows, width]));
                }
                p.validate()?;
                return Ok(Table::Packed(p));
            }
        }
        Ok(Table::Dense {
            values: self.dense(name, &[rows, width])?,
            width,
        })
    }

    /// The Linear layer `PREFIX.weight` (`n_out x n_in`) + `PREFIX.bias`.
    /// A packed weight stays packed.
    pub fn linear(&mut self, prefix: &str, n_out: usize, n_in: usize) -> Result<Linear> {
        let w_name = format!("{prefix}.weight");
        let b_name = format!("{prefix}.bias");
        let bias = if self.contains(&b_name) {
            self.dense(&b_name, &[n_out])?
        } else {
            vec![0.0; n_out]
        };
        if let WeightSource::Packed(m) = self {
            if let Some(PackedEntry::Packed(_)) = m.get(&w_name) {
                let Some(PackedEntry::Packed(p)) = m.remove(&w_name) else {
                    unreachable!()
                };
                if p.n_out != n_out || p.n_in != n_in {
                    return Err(Self::shape_error(&w_name, &p.shape, &[n_out, n_in]));
                }
                return Linear::packed(&w_name, PackedMatrix::new(p)?, bias);
            }
        }
        let w = self.dense(&w_name, &[n_out, n_in])?;
        Linear::dense(&w_name, &w, n_out, n_in, bias)
    }
}
