//! Streaming packed writer: plan the header, write tensors as they finish,
//! finalise.
//!
//! safetensors puts the header (with every tensor's byte offsets) first, so a
//! streamed file needs every output tensor's byte length before its data
//! exists. For a packed tensor those lengths follow from its parameters
//! (see the layout table in [`super::packed`]): `n_out * ceil(ceil(n_in/d)*b/8)`
//! index bytes, `C*K*d*2` codebook bytes, `n_out` group bytes and `2G` scale
//! bytes. [`StreamWriter`] writes the planned header, then each entry's parts
//! in the order [`PackedFile::to_bytes`](super::packed::PackedFile::to_bytes)
//! uses (entries by name; per packed tensor idx, codebook, group, [scale]).
//! If an entry turns out different from its plan (the engine may find fewer
//! non-empty groups than asked), the data is still written in order and
//! [`StreamWriter::finish`] rewrites the header, shifting the data section if
//! the header length changed. The result is always byte-identical to
//! `PackedFile::to_bytes` of the same entries and metadata.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};

use super::error::{FormatError, Result};
use super::packed::{
    row_bytes, Mode, PackedEntry, PackedParams, PackedTensor, CODEBOOK_SUFFIX, FORMAT_VERSION,
    GROUP_SUFFIX, IDX_SUFFIX, PARAM_PREFIX, SCALE_SUFFIX, VERSION_KEY,
};
use super::rotation::Rotation;
use super::safetensors::{self as st, Dtype};

/// What the header needs to know of one output entry before its data exists.
#[derive(Debug, Clone, PartialEq)]
pub enum EntrySpec {
    /// A compressed tensor: its stored parameters and matrix view.
    Packed {
        /// Original tensor name.
        name: String,
        /// Parameters as stored in `__metadata__` (`groups` already clamped).
        params: PackedParams,
        /// Rows.
        n_out: usize,
        /// Columns.
        n_in: usize,
    },
    /// A tensor copied through.
    Raw {
        /// Name.
        name: String,
        /// Stored dtype.
        dtype: Dtype,
        /// Shape.
        shape: Vec<usize>,
    },
}

/// One safetensors tensor of the output: name, dtype, shape, byte length.
pub type PartSpec = (String, Dtype, Vec<usize>, u64);

impl EntrySpec {
    /// A packed tensor's spec from its parameters; `groups` is clamped as the
    /// engine clamps it (`1..=min(groups, n_out, 256)`).
    #[allow(clippy::too_many_arguments)]
    pub fn packed(
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        n_out: usize,
        n_in: usize,
        bits: u8,
        dim: u8,
        groups: u16,
        mode: Mode,
        rotation: Option<Rotation>,
    ) -> Self {
        let groups = (groups as usize).clamp(1, n_out.clamp(1, 256)) as u16;
        EntrySpec::Packed {
            name: name.to_string(),
            params: PackedParams {
                bits,
                dim,
                groups,
                mode,
                shape: shape.to_vec(),
                dtype: st::dtype_name(dtype),
                rotation,
            },
            n_out,
            n_in,
        }
    }

    /// The spec of a finished tensor.
    pub fn of_tensor(p: &PackedTensor) -> Self {
        EntrySpec::Packed {
            name: p.name.clone(),
            params: p.params(),
            n_out: p.n_out,
            n_in: p.n_in,
        }
    }

    /// The spec of a finished entry.
    pub fn of_entry(e: &PackedEntry) -> Self {
        match e {
            PackedEntry::Packed(p) => Self::of_tensor(p),
            PackedEntry::Raw { name, tensor } => EntrySpec::Raw {
                name: name.clone(),
                dtype: tensor.dtype,
                shape: tensor.shape.clone(),
            },
        }
    }

    /// The entry's (original) name.
    pub fn name(&self) -> &str {
        match self {
            EntrySpec::Packed { name, .. } | EntrySpec::Raw { name, .. } => name,
        }
    }

    /// The safetensors tensors this entry writes, in file order.
    pub fn parts(&self) -> Vec<PartSpec> {
        match self {
            EntrySpec::Raw { name, dtype, shape } => {
                let n: u64 = shape.iter().map(|s| *s as u64).product();
                vec![(
                    name.clone(),
                    *dtype,
                    shape.clone(),
                    n * (dtype.bitsize() / 8) as u64,
                )]
            }
            EntrySpec::Packed {
                name,
                params,
                n_out,
                n_in,
            } => {
                let d = params.dim as usize;
                let k = 1usize << params.bits;
                let rb = row_bytes(n_in.div_ceil(d), params.bits);
                let n_cb = if params.mode == Mode::Codebook {
                    params.groups as usize
                } else {
                    1
                };
                let mut v = vec![
                    (
                        format!("{name}{IDX_SUFFIX}"),
                        Dtype::U8,
                        vec![*n_out, rb],
                        (*n_out * rb) as u64,
                    ),
                    (
                        format!("{name}{CODEBOOK_SUFFIX}"),
                        Dtype::F16,
                        vec![n_cb, k, d],
                        (n_cb * k * d * 2) as u64,
                    ),
                    (
                        format!("{name}{GROUP_SUFFIX}"),
                        Dtype::U8,
                        vec![*n_out],
                        *n_out as u64,
                    ),
                ];
                if params.mode == Mode::Scale {
                    v.push((
                        format!("{name}{SCALE_SUFFIX}"),
                        Dtype::F16,
                        vec![params.groups as usize],
                        params.groups as u64 * 2,
                    ));
                }
                v
            }
        }
    }

    /// Bytes of data this entry stores.
    pub fn data_bytes(&self) -> u64 {
        self.parts().iter().map(|p| p.3).sum()
    }
}

/// The header of a packed file holding `specs` (any order) with the input's
/// extra `metadata`, exactly as `PackedFile::to_bytes` writes it. Returns the
/// header bytes and the specs in file (name) order.
pub fn plan_header(
    specs: &[EntrySpec],
    metadata: &BTreeMap<String, String>,
) -> Result<(Vec<u8>, Vec<EntrySpec>)> {
    let mut sorted: Vec<EntrySpec> = specs.to_vec();
    sorted.sort_by(|a, b| a.name().cmp(b.name()));
    for pair in sorted.windows(2) {
        if pair[0].name() == pair[1].name() {
            return Err(FormatError::PackedMeta(format!(
                "tensor `{}` appears twice",
                pair[0].name()
            )));
        }
    }
    let mut meta = metadata.clone();
    meta.insert(VERSION_KEY.to_string(), FORMAT_VERSION.to_string());
    let mut parts = Vec::new();
    for s in &sorted {
        if let EntrySpec::Packed { name, params, .. } = s {
            let json = serde_json::to_string(params)
                .map_err(|e| FormatError::PackedMeta(e.to_string()))?;
            meta.insert(format!("{PARAM_PREFIX}{name}"), json);
        }
        parts.extend(s.parts());
    }
    let refs: Vec<(&str, Dtype, &[usize], u64)> = parts
        .iter()
        .map(|(n, d, s, l)| (n.as_str(), *d, s.as_slice(), *l))
        .collect();
    Ok((st::header_bytes(&refs, &meta)?, sorted))
}

/// Total length of the packed file holding `specs`.
pub fn planned_file_len(specs: &[EntrySpec], metadata: &BTreeMap<String, String>) -> Result<u64> {
    let (header, sorted) = plan_header(specs, metadata)?;
    Ok(header.len() as u64 + sorted.iter().map(|s| s.data_bytes()).sum::<u64>())
}

/// Where a [`StreamWriter`] writes: seekable, readable (to shift the data if
/// the header length changes) and truncatable.
pub trait StreamOutput: Read + Write + Seek {
    /// Cut the output to `len` bytes.
    fn truncate_to(&mut self, len: u64) -> std::io::Result<()>;
}

impl StreamOutput for std::fs::File {
    fn truncate_to(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
}

impl StreamOutput for std::io::Cursor<Vec<u8>> {
    fn truncate_to(&mut self, len: u64) -> std::io::Result<()> {
        self.get_mut().truncate(len as usize);
        Ok(())
    }
}

/// Writes a packed file entry by entry, in name order.
pub struct StreamWriter<W: StreamOutput> {
    out: W,
    metadata: BTreeMap<String, String>,
    planned_header: Vec<u8>,
    plan: Vec<EntrySpec>,
    actual: Vec<EntrySpec>,
    data_written: u64,
}

impl<W: StreamOutput> StreamWriter<W> {
    /// Plan the header for `specs` and write it at the start of `out`.
    pub fn new(
        mut out: W,
        specs: &[EntrySpec],
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let (planned_header, plan) = plan_header(specs, metadata)?;
        out.seek(SeekFrom::Start(0)).map_err(io_err)?;
        out.write_all(&planned_header).map_err(io_err)?;
        Ok(Self {
            out,
            metadata: metadata.clone(),
            planned_header,
            plan,
            actual: Vec::new(),
            data_written: 0,
        })
    }

    /// The entries in the order they must be written.
    pub fn order(&self) -> &[EntrySpec] {
        &self.plan
    }

    /// Name of the next entry to write, if any.
    pub fn next_name(&self) -> Option<&str> {
        self.plan.get(self.actual.len()).map(|s| s.name())
    }

    /// Length of the file as planned.
    pub fn planned_len(&self) -> u64 {
        self.planned_header.len() as u64 + self.plan.iter().map(|s| s.data_bytes()).sum::<u64>()
    }

    /// Write the next entry.
    pub fn write_entry(&mut self, entry: &PackedEntry) -> Result<()> {
        match entry {
            PackedEntry::Packed(p) => {
                p.validate()?;
                let cb: Vec<u8> = p.codebooks.iter().flat_map(|v| v.to_le_bytes()).collect();
                let sc: Vec<u8> = p.scales.iter().flat_map(|v| v.to_le_bytes()).collect();
                let mut parts: Vec<&[u8]> = vec![&p.indices, &cb, &p.group_ids];
                if p.mode == Mode::Scale {
                    parts.push(&sc);
                }
                self.write_parts(EntrySpec::of_tensor(p), &parts)
            }
            PackedEntry::Raw { name, tensor } => {
                let spec = EntrySpec::Raw {
                    name: name.clone(),
                    dtype: tensor.dtype,
                    shape: tensor.shape.clone(),
                };
                self.write_parts(spec, &[&tensor.data])
            }
        }
    }

    /// Write the next entry from its already-encoded parts (in file order);
    /// `spec` says what they are. Used by `merge`, which copies parts through.
    pub fn write_parts(&mut self, spec: EntrySpec, parts: &[&[u8]]) -> Result<()> {
        let mut sources: Vec<&[u8]> = parts.to_vec();
        self.write_parts_from(spec, &mut |i, out: &mut dyn Write| {
            out.write_all(sources[i])?;
            sources[i] = &[];
            Ok(())
        })
    }

    /// Write the next entry; `fill(i, out)` writes part `i` (exactly its
    /// declared byte length) into `out`.
    pub fn write_parts_from(
        &mut self,
        spec: EntrySpec,
        fill: &mut dyn FnMut(usize, &mut dyn Write) -> std::io::Result<()>,
    ) -> Result<()> {
        let expected = self.plan.get(self.actual.len()).ok_or_else(|| {
            FormatError::PackedMeta(format!(
                "tensor `{}` written after the last planned entry",
                spec.name()
            ))
        })?;
        if expected.name() != spec.name()
            || std::mem::discriminant(expected) != std::mem::discriminant(&spec)
        {
            return Err(FormatError::PackedMeta(format!(
                "expected entry `{}` next, got `{}`",
                expected.name(),
                spec.name()
            )));
        }
        for (i, (pname, _, _, len)) in spec.parts().into_iter().enumerate() {
            let mut counted = CountingWriter {
                inner: &mut self.out,
                n: 0,
            };
            fill(i, &mut counted).map_err(io_err)?;
            if counted.n != len {
                return Err(FormatError::PackedTensor {
                    name: pname,
                    problem: format!("{} bytes written, {len} declared", counted.n),
                });
            }
            self.data_written += len;
        }
        self.actual.push(spec);
        Ok(())
    }

    /// Check every planned entry was written, rewrite the header if the
    /// entries differ from the plan, and return the output.
    pub fn finish(mut self) -> Result<W> {
        if self.actual.len() != self.plan.len() {
            return Err(FormatError::PackedMeta(format!(
                "{} of {} entries written",
                self.actual.len(),
                self.plan.len()
            )));
        }
        if self.actual == self.plan {
            self.out.flush().map_err(io_err)?;
            return Ok(self.out);
        }
        let (header, _) = plan_header(&self.actual, &self.metadata)?;
        let old = self.planned_header.len() as u64;
        let new = header.len() as u64;
        if new != old {
            shift_data(&mut self.out, old, new, self.data_written)?;
            self.out
                .truncate_to(new + self.data_written)
                .map_err(io_err)?;
        }
        self.out.seek(SeekFrom::Start(0)).map_err(io_err)?;
        self.out.write_all(&header).map_err(io_err)?;
        self.out
            .seek(SeekFrom::Start(new + self.data_written))
            .map_err(io_err)?;
        self.out.flush().map_err(io_err)?;
        Ok(self.out)
    }
}

/// Move `len` bytes at `from` to `to` inside `f` (ranges may overlap).
fn shift_data<F: Read + Write + Seek>(f: &mut F, from: u64, to: u64, len: u64) -> Result<()> {
    const CHUNK: u64 = 1 << 20;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut copy = |f: &mut F, off: u64, n: u64| -> std::io::Result<()> {
        let b = &mut buf[..n as usize];
        f.seek(SeekFrom::Start(from + off))?;
        f.read_exact(b)?;
        f.seek(SeekFrom::Start(to + off))?;
        f.write_all(b)
    };
    if to > from {
        // Moving right: copy from the end backwards.
        let mut end = len;
        while end > 0 {
            let n = end.min(CHUNK);
            copy(f, end - n, n).map_err(io_err)?;
            end -= n;
        }
    } else {
        let mut off = 0;
        while off < len {
            let n = (len - off).min(CHUNK);
            copy(f, off, n).map_err(io_err)?;
            off += n;
        }
    }
    Ok(())
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn io_err(e: std::io::Error) -> FormatError {
    FormatError::Io {
        path: "packed output".into(),
        message: e.to_string(),
    }
}
