//! `jlcm merge`: join the part files of `jlcm compress --shard I/N` into one
//! packed model, byte-identical to a single run with the same options.
//!
//! Parts are memory-mapped and copied through part by part in the output's
//! name order, so memory stays at one part tensor whatever the model size.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use jlcm::format::packed::{
    PackedParams, CODEBOOK_SUFFIX, FORMAT_VERSION, GROUP_SUFFIX, IDX_SUFFIX, PARAM_PREFIX,
    SCALE_SUFFIX, VERSION_KEY,
};
use jlcm::format::safetensors::{parse_dtype, SafetensorsFile, TensorEntry};
use jlcm::format::stream::{EntrySpec, StreamWriter};

use super::compress::PART_KEY;
use super::io::{map, release, TempOutput};

/// Options of `jlcm merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// Part files written by `jlcm compress --shard I/N` (any order).
    #[arg(required = true)]
    parts: Vec<PathBuf>,
    /// Output packed .safetensors file.
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(serde::Deserialize)]
struct PartInfo {
    index: usize,
    count: usize,
    entries: usize,
}

pub fn run(a: MergeArgs) -> Result<()> {
    let maps = a.parts.iter().map(|p| map(p)).collect::<Result<Vec<_>>>()?;
    let files = maps
        .iter()
        .zip(&a.parts)
        .map(|(m, p)| SafetensorsFile::parse(m).with_context(|| format!("{}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let mut common: Option<BTreeMap<String, String>> = None;
    let mut seen_parts: BTreeMap<usize, PathBuf> = BTreeMap::new();
    let mut expect: Option<(usize, usize)> = None;
    // Every entry: its spec, and where its parts are (file, tensor entries).
    let mut entries: BTreeMap<String, (EntrySpec, usize, Vec<TensorEntry>)> = BTreeMap::new();
    for (fi, (file, path)) in files.iter().zip(&a.parts).enumerate() {
        let shown = path.display();
        let meta = &file.header.metadata;
        if meta.get(VERSION_KEY) != Some(&FORMAT_VERSION.to_string()) {
            bail!("{shown}: not a jlcm packed file of format version {FORMAT_VERSION}");
        }
        let info: PartInfo = serde_json::from_str(
            meta.get(PART_KEY)
                .with_context(|| format!("{shown}: not a part file (no `{PART_KEY}` metadata); write parts with `jlcm compress --shard I/N`"))?,
        )
        .with_context(|| format!("{shown}: bad `{PART_KEY}` metadata"))?;
        match expect {
            None => expect = Some((info.count, info.entries)),
            Some(e) if e != (info.count, info.entries) => {
                bail!("{shown}: part of a {}-way split of {} tensors, the others are a {}-way split of {}", info.count, info.entries, e.0, e.1)
            }
            _ => {}
        }
        if let Some(other) = seen_parts.insert(info.index, path.clone()) {
            bail!(
                "{shown} and {} are both part {}",
                other.display(),
                info.index
            );
        }
        let mut extra = BTreeMap::new();
        let mut params: BTreeMap<String, PackedParams> = BTreeMap::new();
        for (k, v) in meta {
            if let Some(name) = k.strip_prefix(PARAM_PREFIX) {
                let p: PackedParams = serde_json::from_str(v)
                    .with_context(|| format!("{shown}: tensor `{name}`: bad parameters"))?;
                params.insert(name.to_string(), p);
            } else if k != VERSION_KEY && k != PART_KEY {
                extra.insert(k.clone(), v.clone());
            }
        }
        match &common {
            None => common = Some(extra),
            Some(c) if *c != extra => {
                bail!("{shown}: its metadata differs from the other parts' (parts of different models or runs?)")
            }
            _ => {}
        }
        let by_name: BTreeMap<&str, &TensorEntry> = file
            .header
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut used = std::collections::HashSet::new();
        for (name, p) in &params {
            let dtype = parse_dtype(&p.dtype)
                .with_context(|| format!("{shown}: tensor `{name}`: bad dtype {}", p.dtype))?;
            let probe = TensorEntry {
                name: name.clone(),
                dtype,
                shape: p.shape.clone(),
                start: 0,
                end: 0,
            };
            let (n_out, n_in) = probe.matrix_shape().with_context(|| {
                format!(
                    "{shown}: tensor `{name}`: shape {:?} is not a matrix",
                    p.shape
                )
            })?;
            let spec = EntrySpec::Packed {
                name: name.clone(),
                params: p.clone(),
                n_out,
                n_in,
            };
            let mut located = Vec::new();
            for (pname, _, shape, len) in spec.parts() {
                let t = by_name
                    .get(pname.as_str())
                    .with_context(|| format!("{shown}: part `{pname}` is missing"))?;
                if t.shape != shape || t.byte_len() != len {
                    bail!(
                        "{shown}: part `{pname}` has shape {:?}, expected {shape:?}",
                        t.shape
                    );
                }
                used.insert(pname.clone());
                located.push((*t).clone());
            }
            for s in [IDX_SUFFIX, CODEBOOK_SUFFIX, GROUP_SUFFIX, SCALE_SUFFIX] {
                used.insert(format!("{name}{s}"));
            }
            add(&mut entries, name, spec, fi, located, &shown.to_string())?;
        }
        for t in &file.header.tensors {
            if used.contains(&t.name) {
                continue;
            }
            let spec = EntrySpec::Raw {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
            };
            add(
                &mut entries,
                &t.name,
                spec,
                fi,
                vec![t.clone()],
                &shown.to_string(),
            )?;
        }
    }
    let (count, total) = expect.context("no parts given")?;
    let missing: Vec<String> = (0..count)
        .filter(|i| !seen_parts.contains_key(i))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() {
        bail!("missing part(s) {} of {count}", missing.join(", "));
    }
    if entries.len() != total {
        bail!(
            "the parts hold {} tensors, the model has {total}",
            entries.len()
        );
    }
    let metadata = common.unwrap_or_default();
    let specs: Vec<EntrySpec> = entries.values().map(|e| e.0.clone()).collect();
    let mut out = TempOutput::create(&a.output)?;
    let mut writer = StreamWriter::new(out.take(), &specs, &metadata)?;
    for (spec, fi, located) in entries.into_values() {
        let file = &files[fi];
        writer.write_parts_from(spec, &mut |i, w| {
            w.write_all(file.tensor_bytes(&located[i]))
        })?;
        for t in &located {
            let (s, e) = file.header.file_range(t);
            release(&maps[fi], s, e);
        }
    }
    let file = writer.finish()?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    out.commit(file)?;
    eprintln!(
        "merged {count} parts, {total} tensors, into {} ({len} bytes)",
        a.output.display()
    );
    Ok(())
}

fn add(
    entries: &mut BTreeMap<String, (EntrySpec, usize, Vec<TensorEntry>)>,
    name: &str,
    spec: EntrySpec,
    file: usize,
    located: Vec<TensorEntry>,
    shown: &str,
) -> Result<()> {
    if entries.contains_key(name) {
        bail!("{shown}: tensor `{name}` is also in another part");
    }
    entries.insert(name.to_string(), (spec, file, located));
    Ok(())
}
