//! Argument parsing and dispatch; each subcommand lives in its own file.

use clap::{Parser, Subcommand};

#[path = "calibrate.rs"]
mod calibrate;
#[path = "compress.rs"]
mod compress;
#[path = "decode.rs"]
mod decode;
#[path = "embed.rs"]
mod embed;
#[path = "inspect.rs"]
mod inspect;
#[path = "io.rs"]
pub mod io;
#[path = "merge.rs"]
mod merge;

/// JLCM weight compression: jointly learnable codebooks and mappings.
#[derive(Parser)]
#[command(name = "jlcm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compress the 2-D and 4-D weights of a safetensors model.
    Compress(Box<compress::CompressArgs>),
    /// Restore a dense safetensors file from a packed one.
    Decode(decode::DecodeArgs),
    /// Show per-tensor and per-file sizes and bits per weight.
    Inspect(inspect::InspectArgs),
    /// Compute X^T X / n of every Linear layer's input by running a BERT-family model on sentences.
    Calibrate(calibrate::CalibrateArgs),
    /// Write mean-pooled, L2-normalised sentence embeddings as .npy.
    Embed(embed::EmbedArgs),
    /// Join the part files of `compress --shard I/N` into one packed model.
    Merge(merge::MergeArgs),
}

/// Write `text` to stdout; a closed pipe (`jlcm inspect | head`) is not an error.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Run the CLI; returns the process exit code. Errors print one line.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command {
        Command::Compress(a) => compress::run(*a),
        Command::Decode(a) => decode::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Merge(a) => merge::run(a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("jlcm: error: {msg}");
            1
        }
    }
}
