//! `jlcm inspect`: sizes and bits per weight of a packed (or plain) file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use jlcm::format::packed::{PackedEntry, PackedFile, VERSION_KEY};
use jlcm::format::safetensors::{dtype_name, SafetensorsFile};
use serde::Serialize;

/// Options of `jlcm inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// A packed or plain .safetensors file.
    input: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct TensorRow {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    packed: bool,
    bits: Option<u8>,
    dim: Option<u8>,
    groups: Option<u16>,
    mode: Option<String>,
    /// Hadamard block of the input rotation (`--rotate`), if any.
    rotation_block: Option<usize>,
    bpw: f64,
    bytes: u64,
}

#[derive(Serialize)]
struct Summary {
    file_bytes: u64,
    original_bytes: u64,
    ratio: f64,
    bpw: f64,
    packed_bpw: f64,
    tensors: Vec<TensorRow>,
}

pub fn run(a: InspectArgs) -> Result<()> {
    let m = super::io::map(&a.input)?;
    let plain = SafetensorsFile::parse(&m).with_context(|| format!("{}", a.input.display()))?;
    let rows: Vec<TensorRow> = if plain.header.metadata.contains_key(VERSION_KEY) {
        let packed =
            PackedFile::from_bytes(&m).with_context(|| format!("{}", a.input.display()))?;
        packed
            .entries
            .iter()
            .map(|e| match e {
                PackedEntry::Packed(p) => TensorRow {
                    name: p.name.clone(),
                    shape: p.shape.clone(),
                    dtype: dtype_name(p.dtype),
                    packed: true,
                    bits: Some(p.bits),
                    dim: Some(p.dim),
                    groups: Some(p.groups),
                    mode: Some(format!("{:?}", p.mode).to_lowercase()),
                    rotation_block: p.rotation.as_ref().map(|r| r.block),
                    bpw: p.bpw(),
                    bytes: p.stored_bits() / 8,
                },
                PackedEntry::Raw { name, tensor } => raw_row(
                    name,
                    &tensor.shape,
                    dtype_name(tensor.dtype),
                    tensor.data.len() as u64,
                ),
            })
            .collect()
    } else {
        plain
            .header
            .tensors
            .iter()
            .map(|t| raw_row(&t.name, &t.shape, dtype_name(t.dtype), t.byte_len()))
            .collect()
    };
    let weights: u64 = rows
        .iter()
        .map(|r| r.shape.iter().product::<usize>() as u64)
        .sum();
    let original: u64 = rows
        .iter()
        .map(|r| r.shape.iter().product::<usize>() as u64 * dtype_bytes(&r.dtype))
        .sum::<u64>()
        + plain.header.header_len
        + 8;
    let packed_rows: Vec<&TensorRow> = rows.iter().filter(|r| r.packed).collect();
    let packed_w: u64 = packed_rows
        .iter()
        .map(|r| r.shape.iter().product::<usize>() as u64)
        .sum();
    let packed_bits: f64 = packed_rows
        .iter()
        .map(|r| r.bpw * r.shape.iter().product::<usize>() as f64)
        .sum();
    let file_bytes = m.len() as u64;
    let summary = Summary {
        file_bytes,
        original_bytes: original,
        ratio: original as f64 / file_bytes.max(1) as f64,
        bpw: file_bytes as f64 * 8.0 / weights.max(1) as f64,
        packed_bpw: if packed_w > 0 {
            packed_bits / packed_w as f64
        } else {
            0.0
        },
        tensors: rows,
    };
    if a.json {
        super::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
        return Ok(());
    }
    let mut text = format!(
        "{:<60} {:>16} {:>5} {:>4} {:>2} {:>4} {:>8} {:>4} {:>7} {:>12}",
        "tensor", "shape", "dtype", "bits", "d", "G", "mode", "rot", "bpw", "bytes"
    );
    text.push('\n');
    for r in &summary.tensors {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        text += &format!(
            "{:<60} {:>16} {:>5} {:>4} {:>2} {:>4} {:>8} {:>4} {:>7.3} {:>12}\n",
            r.name,
            format!("{:?}", r.shape).replace(' ', ""),
            r.dtype,
            opt(r.bits.map(|v| v.to_string())),
            opt(r.dim.map(|v| v.to_string())),
            opt(r.groups.map(|v| v.to_string())),
            opt(r.mode.clone()),
            opt(r.rotation_block.map(|v| v.to_string())),
            r.bpw,
            r.bytes
        );
    }
    text += &format!(
        "file: {} bytes, {:.3} bpw over all {} weights, compressed tensors {:.3} bpw; dense equivalent {} bytes, ratio {:.2}\n",
        summary.file_bytes, summary.bpw, weights, summary.packed_bpw, summary.original_bytes, summary.ratio
    );
    super::print_stdout(&text)
}

fn raw_row(name: &str, shape: &[usize], dtype: String, bytes: u64) -> TensorRow {
    let n = shape.iter().product::<usize>().max(1) as f64;
    TensorRow {
        name: name.to_string(),
        shape: shape.to_vec(),
        dtype,
        packed: false,
        bits: None,
        dim: None,
        groups: None,
        mode: None,
        rotation_block: None,
        bpw: bytes as f64 * 8.0 / n,
        bytes,
    }
}

fn dtype_bytes(dtype: &str) -> u64 {
    match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        _ => 1,
    }
}
