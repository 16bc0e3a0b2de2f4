//! `jlcm decode`: restore a dense safetensors file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use jlcm::format::packed::PackedFile;

use super::io::{map, write_atomic};

/// Options of `jlcm decode`.
#[derive(Args)]
pub struct DecodeArgs {
    /// Packed .safetensors file.
    input: PathBuf,
    /// Dense output file.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(a: DecodeArgs) -> Result<()> {
    let m = map(&a.input)?;
    let packed = PackedFile::from_bytes(&m).with_context(|| format!("{}", a.input.display()))?;
    let dense = packed.decode()?;
    write_atomic(&a.output, &dense)
}
