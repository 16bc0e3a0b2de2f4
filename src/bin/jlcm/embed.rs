//! `jlcm embed`: sentence embeddings of a text file, as a NumPy `.npy`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use jlcm::runtime::{npy, SentenceEncoder};

use super::io::{map, write_atomic};

/// Options of `jlcm embed`.
#[derive(Args)]
pub struct EmbedArgs {
    /// Model folder with config.json, tokenizer.json and model.safetensors.
    model_dir: PathBuf,
    /// Text file, one sentence per line (empty lines are skipped).
    #[arg(long)]
    text: PathBuf,
    /// Weights to use instead of MODEL_DIR/model.safetensors: dense
    /// safetensors or a jlcm packed file (run on the packed kernels).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Output .npy file: [n, hidden] float32.
    #[arg(short, long)]
    output: PathBuf,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

/// Load tokenizer, config and weights (`weights` or `MODEL_DIR/model.safetensors`).
pub fn load_encoder(model_dir: &Path, weights: Option<&Path>) -> Result<SentenceEncoder> {
    let read = |name: &str| -> Result<Vec<u8>> {
        let p = model_dir.join(name);
        std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))
    };
    let config = String::from_utf8(read("config.json")?).context("config.json is not UTF-8")?;
    let tokenizer = read("tokenizer.json")?;
    let weights_path = match weights {
        Some(w) => w.to_path_buf(),
        None => {
            let single = model_dir.join("model.safetensors");
            anyhow::ensure!(
                single.exists(),
                "{}: no model.safetensors (sharded models are not supported by the runtime)",
                model_dir.display()
            );
            single
        }
    };
    let bytes = map(&weights_path)?;
    SentenceEncoder::from_bytes(&config, &tokenizer, &bytes)
        .with_context(|| format!("cannot load the model from {}", weights_path.display()))
}

/// The non-empty lines of a text file.
pub fn read_sentences(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    anyhow::ensure!(
        !lines.is_empty(),
        "{}: no sentences (one per line expected)",
        path.display()
    );
    Ok(lines)
}

/// A progress bar over `n` sentences on stderr.
pub fn sentence_bar(n: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:30}}] {{pos}}/{{len}} sentences, {{per_sec}}, eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Run `jlcm embed`.
pub fn run(a: EmbedArgs) -> Result<()> {
    anyhow::ensure!(a.batch_size >= 1, "--batch-size must be at least 1");
    let encoder = load_encoder(&a.model_dir, a.weights.as_deref())?;
    let texts = read_sentences(&a.text)?;
    let (packed, total) = encoder.model.packed_linear_count();
    let bar = sentence_bar(texts.len(), "embed");
    let emb = encoder.embed_batched(&texts, a.batch_size, &mut |done| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let hidden = encoder.hidden_size();
    write_atomic(&a.output, &npy::write_f32(&[texts.len(), hidden], &emb))?;
    eprintln!(
        "jlcm: wrote {} x {hidden} embeddings to {} ({packed}/{total} Linear layers packed)",
        texts.len(),
        a.output.display()
    );
    Ok(())
}
