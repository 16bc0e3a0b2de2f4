//! `jlcm compress`: compress a model's weights into a packed file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use jlcm::engine::compress::{hessian_for, read_calibration, selected};
use jlcm::engine::{compress_matrix, CompressOptions, Control, Event, MoveRule, TensorReport};
use jlcm::format::packed::{Mode, PackedEntry, PackedFile};
use jlcm::format::safetensors::{self as st, OwnedTensor, SafetensorsFile};
use rayon::prelude::*;
use regex::Regex;

use super::io::{map, model_files, write_atomic};

/// Options of `jlcm compress`.
#[derive(Args)]
pub struct CompressArgs {
    /// Input: a .safetensors file, a model folder, or a model.safetensors.index.json.
    input: PathBuf,
    /// Output packed .safetensors file.
    #[arg(short, long)]
    output: PathBuf,
    /// Bits per index (1-8).
    #[arg(long, default_value_t = 2)]
    bits: u8,
    /// Codeword dimension (1, 2, 4, 8).
    #[arg(long, default_value_t = 1)]
    dim: u8,
    /// Row groups (1-256).
    #[arg(long, default_value_t = 16)]
    groups: u16,
    /// `codebook` (one per group) or `scale` (shared codebook, scale per group).
    #[arg(long, default_value = "codebook")]
    mode: Mode,
    /// Calibration file: one F32 [n_in, n_in] tensor X^T X / n per weight name.
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Learning sweeps at most.
    #[arg(long, default_value_t = 10)]
    iters: u32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only compress tensors whose name matches this regular expression.
    #[arg(long)]
    tensors: Option<String>,
    /// Let mappings jump to any codeword (ablation of the proximal rule).
    #[arg(long)]
    unconstrained: bool,
    /// Print per-tensor results as JSON lines on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: CompressArgs) -> Result<()> {
    let opts = CompressOptions {
        bits: a.bits,
        dim: a.dim,
        groups: a.groups,
        mode: a.mode,
        iters: a.iters,
        seed: a.seed,
        moves: if a.unconstrained {
            MoveRule::Unconstrained
        } else {
            MoveRule::Proximal
        },
        ..CompressOptions::default()
    };
    opts.validate()?;
    let filter = a
        .tensors
        .as_deref()
        .map(Regex::new)
        .transpose()
        .context("--tensors is not a valid regular expression")?;
    let calib = match &a.calib {
        Some(p) => {
            let m = map(p)?;
            Some(
                read_calibration(&m)
                    .with_context(|| format!("calibration file {}", p.display()))?,
            )
        }
        None => None,
    };
    let files = model_files(&a.input)?;
    let maps = files.iter().map(|f| map(f)).collect::<Result<Vec<_>>>()?;
    let parsed = maps
        .iter()
        .zip(&files)
        .map(|(m, f)| SafetensorsFile::parse(m).with_context(|| format!("{}", f.display())))
        .collect::<Result<Vec<_>>>()?;
    let mut jobs = Vec::new();
    let mut in_bytes = 0u64;
    for (fi, file) in parsed.iter().enumerate() {
        in_bytes += file.header.file_len();
        for (ti, t) in file.header.tensors.iter().enumerate() {
            jobs.push((fi, ti, selected(t, filter.as_ref())));
        }
    }
    let total_weights: u64 = jobs
        .iter()
        .filter(|j| j.2)
        .map(|&(fi, ti, _)| parsed[fi].header.tensors[ti].num_elements() as u64)
        .sum();
    let bar = ProgressBar::new(total_weights.max(1));
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} weights, eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let interrupted = AtomicBool::new(false);
    let results: Vec<Result<(PackedEntry, Option<TensorReport>)>> = jobs
        .par_iter()
        .map(|&(fi, ti, compress)| {
            let file = &parsed[fi];
            let t = &file.header.tensors[ti];
            let raw = file.tensor_bytes(t);
            if !compress {
                return Ok((
                    PackedEntry::Raw {
                        name: t.name.clone(),
                        tensor: OwnedTensor {
                            dtype: t.dtype,
                            shape: t.shape.clone(),
                            data: raw.to_vec(),
                        },
                    },
                    None,
                ));
            }
            let (n_out, n_in) = t.matrix_shape().unwrap_or((0, 0));
            let w = st::to_f32(t, raw)?;
            let h = hessian_for(&t.name, n_in, calib.as_ref(), opts.damping)?;
            let mut observer = |e: &Event| {
                if let Event::Phase { tensor, .. } = e {
                    bar.set_message(tensor.to_string());
                }
                if interrupted.load(Ordering::Relaxed) {
                    Control::Cancel
                } else {
                    Control::Continue
                }
            };
            let (p, rep) = compress_matrix(
                &t.name,
                t.dtype,
                &t.shape,
                &w,
                n_out,
                n_in,
                &h,
                &opts,
                &mut observer,
            )?;
            bar.inc(t.num_elements() as u64);
            Ok((PackedEntry::Packed(p), Some(rep)))
        })
        .collect();
    bar.finish_and_clear();
    let mut entries = Vec::new();
    let mut reports = Vec::new();
    for r in results {
        let (e, rep) = r?;
        entries.push(e);
        reports.extend(rep);
    }
    let metadata = parsed
        .first()
        .map(|f| f.header.metadata.clone())
        .unwrap_or_default();
    let packed = PackedFile { entries, metadata };
    let bytes = packed.to_bytes()?;
    write_atomic(&a.output, &bytes)?;
    let (bits, weights) = packed.packed_bits_and_weights();
    for rep in &reports {
        if a.json {
            println!("{}", serde_json::to_string(rep)?);
        } else {
            let first = rep.losses.first().map_or(0.0, |p| p.loss);
            let last = rep.losses.last().map_or(0.0, |p| p.loss);
            eprintln!(
                "{:<60} {:>5}x{:<5} bpw {:.3}  weight err {:.4}  output err {:.4}  loss {:.4e} -> {:.4e}",
                rep.name, rep.n_out, rep.n_in, rep.bpw, rep.rel_weight_error, rep.rel_output_error, first, last
            );
        }
    }
    eprintln!(
        "{} tensors compressed, {:.3} bpw over {} weights; file {} -> {} bytes (ratio {:.2})",
        reports.len(),
        bits as f64 / weights.max(1) as f64,
        weights,
        in_bytes,
        bytes.len(),
        in_bytes as f64 / bytes.len().max(1) as f64
    );
    Ok(())
}
