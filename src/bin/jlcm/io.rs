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

/// An output file being written: a temporary file next to the destination,
/// renamed over it by [`TempOutput::commit`] and removed if dropped before
/// (error, Ctrl-C), so a truncated output never appears under the real name.
pub struct TempOutput {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<fs::File>,
}

impl TempOutput {
    /// Create the temporary file for `dest`.
    pub fn create(dest: &Path) -> Result<Self> {
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "out".into());
        let tmp = dir.join(format!(".{name}.jlcm-tmp-{}", std::process::id()));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
            file: Some(file),
        })
    }

    /// Take the file out (e.g. to wrap it in a writer); give it back to `commit`.
    pub fn take(&mut self) -> fs::File {
        self.file.take().expect("open until committed")
    }

    /// Sync `file` and rename the temporary file to the destination.
    pub fn commit(mut self, file: fs::File) -> Result<()> {
        file.sync_all().ok();
        drop(file);
        fs::rename(&self.tmp, &self.dest)
            .with_context(|| format!("cannot rename to {}", self.dest.display()))?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.file.take();
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Tell the kernel we are done with a range of a mapped input, so its pages
/// leave our resident set (they stay in the page cache). Keeps peak RSS
/// bounded by the tensors in flight, not by the model size.
pub fn release(map: &Mmap, start: u64, end: u64) {
    if end > start && end as usize <= map.len() {
        // SAFETY: the map is a read-only file mapping; after MADV_DONTNEED a
        // later read of the range faults the same bytes back in from the file.
        let _ = unsafe {
            map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                start as usize,
                (end - start) as usize,
            )
        };
    }
}

/// Parse a size such as `2GB`, `1.5GiB`, `700MB`, `123456` (bytes). Decimal
/// units are powers of 1000, binary units (`KiB`, `MiB`, `GiB`, `TiB`) of 1024.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 2GB or 1.5GiB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        u => {
            return Err(format!(
                "unknown size unit `{u}` in `{text}` (use B, KB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    let bytes = value * mult;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(format!("`{text}` is not a positive size"));
    }
    Ok(bytes.floor() as u64)
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

/// CPU seconds used so far by the calling thread (Linux: from
/// `/proc/thread-self/stat`, in 1/100 s ticks); `None` elsewhere. Lets a
/// benchmark on a shared machine report CPU time per tensor, not only wall time.
pub fn thread_cpu_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 here.
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
