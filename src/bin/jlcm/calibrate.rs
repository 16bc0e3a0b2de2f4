//! `jlcm calibrate`: `H = XᵀX / n` of every Linear layer's input, from
//! running the model on a text file; with `--sensitivity`, also how much
//! quantising each weight alone moves the sentence embeddings (what
//! `jlcm compress --target-size` uses to place bits where they matter).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use clap::Args;
use jlcm::engine::calib::{
    calibrate, calibration_with_sensitivity_to_safetensors, Sensitivities, SensitivityProbe,
};
use jlcm::engine::compress::hessian_for;
use jlcm::engine::CompressOptions;
use rayon::prelude::*;

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
    /// Also measure each weight's end-to-end sensitivity: quantise it alone
    /// (--sensitivity-bits, the default engine options, this calibration),
    /// embed the calibration sentences and compare with the original model.
    /// Stored in the output's metadata; `jlcm compress --target-size` then
    /// allocates bits by predicted embedding error instead of layer loss.
    /// Costs one forward pass over the sentences per weight.
    #[arg(long)]
    sensitivity: bool,
    /// Bits of the probe quantisation for --sensitivity.
    #[arg(long, default_value_t = 2, requires = "sensitivity")]
    sensitivity_bits: u8,
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
    let sensitivity = if a.sensitivity {
        Some(measure_sensitivity(&a, &encoder, &texts, &calib)?)
    } else {
        None
    };
    write_atomic(
        &a.output,
        &calibration_with_sensitivity_to_safetensors(&calib, sensitivity.as_ref())?,
    )?;
    eprintln!(
        "jlcm: wrote {} calibration matrices{} from {} sentences to {}",
        calib.len(),
        if sensitivity.is_some() {
            " and sensitivities"
        } else {
            ""
        },
        texts.len(),
        a.output.display()
    );
    Ok(())
}

/// One probe per calibrated Linear weight, in parallel (a model copy per worker).
fn measure_sensitivity(
    a: &CalibrateArgs,
    encoder: &jlcm::runtime::SentenceEncoder,
    texts: &[String],
    calib: &jlcm::engine::compress::Calibration,
) -> Result<Sensitivities> {
    let opts = CompressOptions {
        bits: a.sensitivity_bits,
        ..CompressOptions::default()
    };
    opts.validate()?;
    let probe = SensitivityProbe::new(encoder, texts, a.batch_size)?;
    let names: Vec<(String, usize)> = encoder
        .model
        .linears()
        .filter(|l| calib.contains_key(&l.name) && !l.is_packed())
        .map(|l| (l.name.clone(), l.n_in))
        .collect();
    let bar = indicatif::ProgressBar::new(names.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "sensitivity [{bar:30}] {pos}/{len} weights, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let done = AtomicUsize::new(0);
    let results: Vec<Result<(String, jlcm::engine::calib::Sensitivity)>> = names
        .par_iter()
        .map_init(
            || encoder.model.clone(),
            |model, (name, n_in)| {
                let h = hessian_for(name, *n_in, Some(calib), opts.damping)?;
                let s = probe
                    .measure(model, name, &h, &opts)
                    .with_context(|| format!("sensitivity of `{name}`"))?;
                bar.inc(1);
                if bar.is_hidden() {
                    let k = done.fetch_add(1, Ordering::Relaxed) + 1;
                    eprintln!(
                        "[{k}/{}] sensitivity of {name}: 1 - cos {:.3e}, loss {:.3e}",
                        names.len(),
                        s.distortion,
                        s.loss
                    );
                }
                Ok((name.clone(), s))
            },
        )
        .collect();
    bar.finish_and_clear();
    results.into_iter().collect()
}
