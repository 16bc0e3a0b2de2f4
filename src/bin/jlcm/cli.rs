//! Argument parsing and dispatch; each subcommand lives in its own file.

use clap::{Parser, Subcommand};

#[path = "compress.rs"]
mod compress;
#[path = "decode.rs"]
mod decode;
#[path = "inspect.rs"]
mod inspect;
#[path = "io.rs"]
pub mod io;

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
    Compress(compress::CompressArgs),
    /// Restore a dense safetensors file from a packed one.
    Decode(decode::DecodeArgs),
    /// Show per-tensor and per-file sizes and bits per weight.
    Inspect(inspect::InspectArgs),
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
        Command::Compress(a) => compress::run(a),
        Command::Decode(a) => decode::run(a),
        Command::Inspect(a) => inspect::run(a),
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
