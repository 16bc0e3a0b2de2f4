//! `jlcm calibrate`: `H = XᵀX / n` of every Linear layer's input, from
//! running the model on a text file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use jlcm::engine::calib::{calibrate, calibration_to_safetensors};

use super::embed::{load_encoder, read_sentences, sentence_bar};
use super::io::write_atomic;

/// Options of `jlcm calibrate`.
#[derive(Args)]
pub struct CalibrateArgs {
    /// Model folder with config.json, tokenizer.json and model.safetensors.
    model_dir: PathBuf,
    /// Calibration text, one sentence per line.
    #[arg(long)]
    text: PathBuf,
    /// Output .safetensors: one F32 [n_in, n_in] tensor per Linear weight name.
    #[arg(short, long)]
    output: PathBuf,
    /// Weights to run instead of MODEL_DIR/model.safetensors (dense or packed).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

/// Run `jlcm calibrate`.
pub fn run(a: CalibrateArgs) -> Result<()> {
    anyhow::ensure!(a.batch_size >= 1, "--batch-size must be at least 1");
    let encoder = load_encoder(&a.model_dir, a.weights.as_deref())?;
    let texts = read_sentences(&a.text)?;
    let bar = sentence_bar(texts.len(), "calibrate");
    let calib = calibrate(&encoder, &texts, a.batch_size, &mut |done| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    write_atomic(&a.output, &calibration_to_safetensors(&calib)?)?;
    eprintln!(
        "jlcm: wrote {} calibration matrices from {} sentences to {}",
        calib.len(),
        texts.len(),
        a.output.display()
    );
    Ok(())
}
