//! File input and atomic output for the CLI.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use memmap2::Mmap;

/// Memory-map a file read-only.
pub fn map(path: &Path) -> Result<Mmap> {
    let f = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: the map is read-only; a file changed underneath us gives wrong
    // values, never unsafety in our code, which validates every range.
    unsafe { Mmap::map(&f) }.with_context(|| format!("cannot map {}", path.display()))
}

/// Write `bytes` to `path` through a temporary file in the same folder and a
/// rename, so an interrupted run never leaves a truncated output.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "out".into());
    let tmp: PathBuf = dir.join(format!(".{name}.jlcm-tmp-{}", std::process::id()));
    let res = (|| -> Result<()> {
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all().ok();
        fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// The model's weight files: a single `.safetensors`, or a folder / index
/// JSON naming shards. Returns the files in order.
pub fn model_files(input: &Path) -> Result<Vec<PathBuf>> {
    let index = if input.is_dir() {
        let idx = input.join("model.safetensors.index.json");
        if idx.exists() {
            Some(idx)
        } else {
            let single = input.join("model.safetensors");
            anyhow::ensure!(
                single.exists(),
                "{}: no model.safetensors or model.safetensors.index.json",
                input.display()
            );
            return Ok(vec![single]);
        }
    } else if input.to_string_lossy().ends_with(".index.json") {
        Some(input.to_path_buf())
    } else {
        None
    };
    match index {
        Some(idx) => {
            let text = fs::read_to_string(&idx)
                .with_context(|| format!("cannot read {}", idx.display()))?;
            let parsed = jlcm::format::safetensors::ShardIndex::parse(&text)?;
            let dir = idx.parent().unwrap_or(Path::new("."));
            Ok(parsed.shards().into_iter().map(|s| dir.join(s)).collect())
        }
        None => Ok(vec![input.to_path_buf()]),
    }
}
