//! `jlcm compress`: compress a model's weights into a packed file.
//!
//! Streaming: inputs are memory-mapped and read one tensor at a time; the
//! output header is planned from every tensor's parameters before any
//! compression, written first, and tensors are written in file (name) order
//! as they finish. Workers (one per core) compress tensors in parallel; a
//! bounded reorder window and a memory budget for tensors in flight keep
//! peak memory at a few tensors whatever the model size. The output goes to
//! a temporary file renamed at the end, so an error or Ctrl-C never leaves a
//! truncated file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use jlcm::engine::budget::{self, Candidate, TensorChoices};
use jlcm::engine::calib::sensitivities_from_metadata;
use jlcm::engine::compress::{hessian_for, rotation_for, selected, Calibration};
use jlcm::engine::finetune::{finetune, FinetuneOptions};
use jlcm::engine::sequential::{
    compress_sequential, SequentialOptions, SequentialResult, DEFAULT_CORRECTION_DAMPING,
};
use jlcm::engine::{
    compress_matrix_owned, CompressOptions, Control, Event, MoveRule, TensorReport,
};
use jlcm::format::packed::{Mode, PackedEntry, PackedTensor};
use jlcm::format::safetensors::{self as st, SafetensorsFile, TensorEntry};
use jlcm::format::stream::{plan_header, EntrySpec, StreamWriter};
use memmap2::Mmap;
use rayon::prelude::*;
use regex::Regex;

use super::embed::{load_encoder, read_sentences};
use super::io::{map, model_files, parse_size, release, thread_cpu_seconds, TempOutput};

/// Metadata key of a part file written with `--shard` (read by `jlcm merge`).
pub const PART_KEY: &str = "jlcm.part";

/// Set by Ctrl-C; every worker and the writer stop when they see it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Options of `jlcm compress`.
#[derive(Args)]
pub struct CompressArgs {
    /// Input: a .safetensors file, a model folder, or a model.safetensors.index.json.
    input: PathBuf,
    /// Output packed .safetensors file.
    #[arg(short, long)]
    output: PathBuf,
    /// Bits per index (1-8); ignored under --target-size / --target-bpw.
    #[arg(long, default_value_t = 2)]
    bits: u8,
    /// Codeword dimension (1, 2, 4, 8).
    #[arg(long, default_value_t = 1)]
    dim: u8,
    /// Row groups (1-256).
    #[arg(long, default_value_t = 16)]
    groups: u16,
    /// `codebook` (one per group) or `scale` (shared codebook, scale per group).
    #[arg(long, default_value = "codebook")]
    mode: Mode,
    /// Calibration file: one F32 [n_in, n_in] tensor X^T X / n per weight name.
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Learning sweeps at most.
    #[arg(long, default_value_t = 10)]
    iters: u32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only compress tensors whose name matches this regular expression.
    #[arg(long)]
    tensors: Option<String>,
    /// Let mappings jump to any codeword (ablation of the proximal rule).
    #[arg(long)]
    unconstrained: bool,
    /// Rotate each weight's inputs before quantising (random signs and a
    /// Walsh-Hadamard transform per block of up to 128 columns, stored with
    /// the tensor; products rotate their input): spreads outlier weights
    /// and features, lower error at the same bits.
    #[arg(long)]
    rotate: bool,
    /// Print per-tensor results as JSON lines on stdout.
    #[arg(long)]
    json: bool,
    /// Size of the whole output file to meet, e.g. 2GB (10^9) or 1.9GiB (2^30):
    /// bits are allocated per tensor for the least estimated loss.
    #[arg(long, conflicts_with = "target_bpw")]
    target_size: Option<String>,
    /// Bits per weight of the whole output file (every stored byte over every
    /// weight of the input, copied tensors included), e.g. 2.3.
    #[arg(long)]
    target_bpw: Option<f64>,
    /// Fewest bits the size budget gives a tensor.
    #[arg(long, default_value_t = 2)]
    min_bits: u8,
    /// Most bits the size budget gives a tensor.
    #[arg(long, default_value_t = 4)]
    max_bits: u8,
    /// What the size budget minimises: `loss` (the sum of every tensor's
    /// calibrated loss L), `sensitivity` (L weighted by each weight's
    /// end-to-end sensitivity, from a calibration file written by
    /// `jlcm calibrate --sensitivity`: the predicted embedding error), or
    /// `auto` (sensitivity when the calibration file has it).
    #[arg(long, value_enum, default_value_t = AllocateBy::Auto)]
    allocate_by: AllocateBy,
    /// Bits at least for embeddings and the output head (names containing
    /// `embed` or `lm_head`) under a size budget.
    #[arg(long, default_value_t = 4)]
    head_bits: u8,
    /// Compress only part I of N (`I/N`, 0-based): a deterministic share of
    /// the tensors balanced by weight count, written as a part file that
    /// `jlcm merge` joins with the others.
    #[arg(long)]
    shard: Option<String>,
    /// Memory for tensors in flight, e.g. 3GiB; a tensor needing more runs alone.
    #[arg(long, default_value = "3GiB")]
    memory: String,
    /// Print the plan (bits per tensor, exact output size) and stop.
    #[arg(long)]
    plan_only: bool,
    /// Write the bits chosen per tensor to this JSON file (`{"NAME": bits}`),
    /// e.g. once with --plan-only, then give it to every shard with --plan.
    #[arg(long)]
    save_plan: Option<PathBuf>,
    /// Take the bits per tensor from a JSON file written by --save-plan
    /// instead of estimating them again (tensors it does not name get --bits).
    #[arg(long, conflicts_with_all = ["target_size", "target_bpw"])]
    plan: Option<PathBuf>,
    /// Sequential, target-corrected calibration of a BERT-family model
    /// (MODEL_DIR has config.json and tokenizer.json): its Linear weights
    /// are compressed in forward order, each fitted to reproduce the
    /// original layer's output from the inputs the already compressed
    /// layers produce on --calib-text. `--calib` then only serves a size
    /// budget (and tensors that are not Linear layers of the model).
    #[arg(long, requires = "calib_text", conflicts_with = "shard")]
    sequential: Option<PathBuf>,
    /// Calibration sentences for --sequential and --tune, one per line.
    #[arg(long)]
    calib_text: Option<PathBuf>,
    /// With --sequential: refit each compressed layer's bias with its
    /// weight (an affine fit; the bias is stored dense anyway).
    #[arg(long, requires = "sequential")]
    refit_bias: bool,
    /// End-to-end tuning of a BERT-family model (MODEL_DIR has config.json
    /// and tokenizer.json): after compression, the codebooks of its
    /// compressed Linear weights, their biases and the encoder's LayerNorm
    /// parameters are tuned together (Adam) so the last hidden states
    /// approach the original's on --calib-text. The mappings stay; no
    /// stored bit is added.
    #[arg(long, requires = "calib_text", conflicts_with = "shard")]
    tune: Option<PathBuf>,
    /// Steps of --tune (one batch of 32 calibration sentences each).
    #[arg(long, default_value_t = FinetuneOptions::default().steps, requires = "tune")]
    tune_steps: usize,
    /// Step size of --tune, relative to each tensor's RMS codeword.
    #[arg(long, default_value_t = FinetuneOptions::default().lr, requires = "tune")]
    tune_lr: f32,
    /// Damping of --sequential's target solve, as a fraction of the mean
    /// diagonal of H (larger: closer to the original weights).
    #[arg(long, default_value_t = DEFAULT_CORRECTION_DAMPING, requires = "sequential")]
    sequential_damping: f32,
}

/// The objective of the size budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AllocateBy {
    /// Sensitivity-weighted when the calibration file has sensitivities, loss otherwise.
    Auto,
    /// Sum of calibrated losses.
    Loss,
    /// Sum of sensitivity-weighted losses (predicted embedding error).
    Sensitivity,
}

/// A memory-mapped calibration file; one `H` is read at a time.
struct CalibSource<'a> {
    file: &'a SafetensorsFile<'a>,
    map: &'a Mmap,
}

/// The metric of weight `name`: its `H` from the calibration file if it has
/// one (read now, its pages released after), identity otherwise.
fn hessian_of(
    calib: Option<&CalibSource>,
    name: &str,
    n_in: usize,
    damping: f32,
) -> Result<jlcm::engine::Hessian> {
    let one: Option<Calibration> =
        match calib.and_then(|c| c.file.header.get(name).ok().map(|t| (c, t))) {
            Some((c, t)) => {
                let v = st::to_f32(t, c.file.tensor_bytes(t))
                    .with_context(|| format!("calibration of `{name}`"))?;
                let (s, e) = c.file.header.file_range(t);
                release(c.map, s, e);
                Some(BTreeMap::from([(name.to_string(), (t.shape.clone(), v))]))
            }
            None => None,
        };
    Ok(hessian_for(name, n_in, one.as_ref(), damping)?)
}

/// One input tensor and what to do with it.
struct Job {
    file: usize,
    entry: TensorEntry,
    compress: bool,
    bits: u8,
    /// Bytes of a calibrated `H` and its padded copy (0 without calibration).
    h_bytes: u64,
}

impl Job {
    fn n_out_in(&self) -> (usize, usize) {
        self.entry.matrix_shape().unwrap_or((0, 0))
    }

    fn spec(&self, opts: &CompressOptions) -> EntrySpec {
        if self.compress {
            let (n_out, n_in) = self.n_out_in();
            EntrySpec::packed(
                &self.entry.name,
                self.entry.dtype,
                &self.entry.shape,
                n_out,
                n_in,
                self.bits,
                opts.dim,
                opts.groups,
                opts.mode,
                rotation_for(opts, &self.entry.name, n_in),
            )
        } else {
            EntrySpec::Raw {
                name: self.entry.name.clone(),
                dtype: self.entry.dtype,
                shape: self.entry.shape.clone(),
            }
        }
    }

    /// Bytes of memory compressing this tensor needs at its peak: the f32
    /// input, the engine's padded weights, `W H`, error, gradient and the
    /// temporaries of one evaluation (about 28 bytes per weight), plus
    /// indices, plus the calibration `H` if there is one.
    fn memory(&self) -> u64 {
        if self.compress {
            self.entry.num_elements() as u64 * 29 + self.h_bytes
        } else {
            0
        }
    }

    /// Relative cost of this job, to balance shards.
    fn cost(&self) -> u64 {
        if self.compress {
            self.entry.num_elements() as u64
        } else {
            self.entry.byte_len() / 64
        }
    }
}

/// Embeddings and output heads get their own bit floor under a budget.
fn is_head(name: &str) -> bool {
    name.contains("embed") || name.contains("lm_head")
}

/// Parse `I/N`.
fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (i, n) = s.split_once('/').context("--shard takes I/N, e.g. 0/4")?;
    let i: usize = i.trim().parse().context("--shard I/N: I is not a number")?;
    let n: usize = n.trim().parse().context("--shard I/N: N is not a number")?;
    if n == 0 || i >= n {
        bail!("--shard {s}: need 0 <= I < N");
    }
    Ok((i, n))
}

/// Deterministic split of jobs into `n` parts balanced by cost: largest job
/// first (ties by name) to the least loaded part (ties by part number).
fn shard_of(jobs: &[Job], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by(|&a, &b| {
        jobs[b]
            .cost()
            .cmp(&jobs[a].cost())
            .then(jobs[a].entry.name.cmp(&jobs[b].entry.name))
    });
    let mut load = vec![0u64; n];
    let mut part = vec![0usize; jobs.len()];
    for j in order {
        let p = (0..n).min_by_key(|&p| (load[p], p)).unwrap_or(0);
        part[j] = p;
        load[p] += jobs[j].cost().max(1);
    }
    part
}

pub fn run(a: CompressArgs) -> Result<()> {
    let opts = CompressOptions {
        bits: a.bits,
        dim: a.dim,
        groups: a.groups,
        mode: a.mode,
        iters: a.iters,
        seed: a.seed,
        moves: if a.unconstrained {
            MoveRule::Unconstrained
        } else {
            MoveRule::Proximal
        },
        rotate: a.rotate,
        ..CompressOptions::default()
    };
    opts.validate()?;
    let memory_budget = parse_size(&a.memory).map_err(anyhow::Error::msg)?;
    let shard = a.shard.as_deref().map(parse_shard).transpose()?;
    let filter = a
        .tensors
        .as_deref()
        .map(Regex::new)
        .transpose()
        .context("--tensors is not a valid regular expression")?;
    // Calibration: memory-mapped, each H read only while its tensor is compressed.
    let calib_map = a.calib.as_deref().map(map).transpose()?;
    let calib_file = match (&calib_map, &a.calib) {
        (Some(m), Some(p)) => Some(
            SafetensorsFile::parse(m)
                .with_context(|| format!("calibration file {}", p.display()))?,
        ),
        _ => None,
    };
    let calib = calib_file
        .as_ref()
        .zip(calib_map.as_ref())
        .map(|(file, map)| CalibSource { file, map });
    let files = model_files(&a.input)?;
    let maps = files.iter().map(|f| map(f)).collect::<Result<Vec<_>>>()?;
    let parsed = maps
        .iter()
        .zip(&files)
        .map(|(m, f)| SafetensorsFile::parse(m).with_context(|| format!("{}", f.display())))
        .collect::<Result<Vec<_>>>()?;
    let mut jobs = Vec::new();
    let mut in_bytes = 0u64;
    let mut seen = std::collections::HashSet::new();
    for (fi, file) in parsed.iter().enumerate() {
        in_bytes += file.header.file_len();
        for t in &file.header.tensors {
            if !seen.insert(t.name.clone()) {
                bail!("tensor `{}` appears in more than one input file", t.name);
            }
            jobs.push(Job {
                file: fi,
                entry: t.clone(),
                compress: selected(t, filter.as_ref()),
                bits: opts.bits,
                h_bytes: match &calib_file {
                    Some(c) if c.header.get(&t.name).is_ok() => {
                        let n_in = t.matrix_shape().map_or(0, |m| m.1) as u64;
                        8 * n_in * n_in
                    }
                    _ => 0,
                },
            });
        }
    }
    jobs.sort_by(|x, y| x.entry.name.cmp(&y.entry.name));
    let mut metadata = parsed
        .first()
        .map(|f| f.header.metadata.clone())
        .unwrap_or_default();

    // Bits per tensor under a size budget.
    let target = match (&a.target_size, a.target_bpw) {
        (Some(s), _) => Some(parse_size(s).map_err(anyhow::Error::msg)?),
        (None, Some(bpw)) => {
            if !(bpw.is_finite() && bpw > 0.0) {
                bail!("--target-bpw must be a positive number, got {bpw}");
            }
            let weights: u64 = jobs.iter().map(|j| j.entry.num_elements() as u64).sum();
            Some((bpw * weights as f64 / 8.0).floor() as u64)
        }
        (None, None) => None,
    };
    if let Some(target) = target {
        allocate_bits(&mut jobs, &parsed, &maps, calib.as_ref(), &opts, &a, target)?;
    }
    if let Some(path) = &a.plan {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let plan: BTreeMap<String, u8> = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a JSON object of bits per tensor", path.display()))?;
        for j in jobs.iter_mut().filter(|j| j.compress) {
            if let Some(&b) = plan.get(&j.entry.name) {
                jlcm::format::packed::check_params(b, opts.dim, opts.groups)
                    .map_err(|e| anyhow::anyhow!("{}: `{}`: {e}", path.display(), j.entry.name))?;
                j.bits = b;
            }
        }
    }
    if let Some(path) = &a.save_plan {
        let plan: BTreeMap<&str, u8> = jobs
            .iter()
            .filter(|j| j.compress)
            .map(|j| (j.entry.name.as_str(), j.bits))
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&plan)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let specs: Vec<EntrySpec> = jobs.iter().map(|j| j.spec(&opts)).collect();
    let (full_header, _) = plan_header(&specs, &metadata)?;
    let full_len = full_header.len() as u64 + specs.iter().map(|s| s.data_bytes()).sum::<u64>();

    // This run's share.
    if let Some((i, n)) = shard {
        let part = shard_of(&jobs, n);
        let total = jobs.len();
        jobs = jobs
            .into_iter()
            .zip(part)
            .filter(|(_, p)| *p == i)
            .map(|(j, _)| j)
            .collect();
        metadata.insert(
            PART_KEY.to_string(),
            serde_json::json!({"index": i, "count": n, "entries": total}).to_string(),
        );
        eprintln!(
            "shard {i}/{n}: {} of {total} tensors ({} to compress)",
            jobs.len(),
            jobs.iter().filter(|j| j.compress).count()
        );
    }
    let specs: Vec<EntrySpec> = jobs.iter().map(|j| j.spec(&opts)).collect();
    // Plain runs stay quiet until they succeed (an error is one stderr line).
    if a.plan_only || target.is_some() || shard.is_some() {
        eprintln!(
            "planned output: {full_len} bytes ({:.3} GiB) for the whole model{}",
            full_len as f64 / (1u64 << 30) as f64,
            match target {
                Some(t) => format!(", target {t} bytes"),
                None => String::new(),
            }
        );
    }
    if a.plan_only {
        return Ok(());
    }

    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    if a.sequential.is_some() != a.calib_text.is_some() && a.tune.is_none() {
        bail!("--calib-text is for --sequential or --tune");
    }
    let mut pre = match &a.sequential {
        Some(dir) => sequential(&a, dir, &jobs, &opts)?,
        None => BTreeMap::new(),
    };
    // Dense tensors written instead of the input's (refitted or tuned biases, LayerNorms).
    let mut replace: BTreeMap<String, Vec<f32>> = pre
        .iter()
        .filter_map(|(name, r)| Some((bias_name(name), r.bias.clone()?)))
        .collect();
    if let Some(dir) = &a.tune {
        tune(
            &a,
            dir,
            &jobs,
            &parsed,
            calib.as_ref(),
            &opts,
            &mut pre,
            &mut replace,
        )?;
    }
    for j in &jobs {
        if let Some(v) = replace.get(&j.entry.name) {
            anyhow::ensure!(
                !j.compress && v.len() == j.entry.num_elements(),
                "`{}`: a tuned tensor does not fit the input's",
                j.entry.name
            );
        }
    }
    let mut out = TempOutput::create(&a.output)?;
    let file = out.take();
    let mut writer = StreamWriter::new(file, &specs, &metadata)?;
    let reports = stream_compress(
        &jobs,
        &parsed,
        &maps,
        calib.as_ref(),
        &opts,
        memory_budget,
        &Mutex::new(pre),
        &replace,
        &mut writer,
    )?;
    let planned = writer.planned_len();
    let file = writer.finish()?;
    let out_len = file.metadata().map(|m| m.len()).unwrap_or(planned);
    out.commit(file)?;

    let (mut bits, mut weights) = (0u64, 0u64);
    let (mut wall_sum, mut cpu_sum) = (0f64, 0f64);
    for (rep, wall, cpu) in &reports {
        wall_sum += wall;
        cpu_sum += cpu.unwrap_or(0.0);
        bits += (rep.bpw * (rep.n_out * rep.n_in) as f64).round() as u64;
        weights += (rep.n_out * rep.n_in) as u64;
        if a.json {
            super::print_stdout(&format!("{}\n", serde_json::to_string(rep)?))?;
        } else {
            let first = rep.losses.first().map_or(0.0, |p| p.loss);
            let last = rep.losses.last().map_or(0.0, |p| p.loss);
            eprintln!(
                "{:<60} {:>5}x{:<5} bpw {:.3}  weight err {:.4}  output err {:.4}  loss {:.4e} -> {:.4e}  {wall:.1} s",
                rep.name, rep.n_out, rep.n_in, rep.bpw, rep.rel_weight_error, rep.rel_output_error, first, last
            );
        }
    }
    // With --sequential or --tune every tensor was compressed before the
    // stream (their times are printed above).
    if !reports.is_empty() && cpu_sum > 0.0 {
        eprintln!(
            "compression time summed over tensors: {wall_sum:.1} s wall, {cpu_sum:.1} s CPU ({:.0} weights per CPU second)",
            weights as f64 / cpu_sum.max(1e-9)
        );
    }
    eprintln!(
        "{} tensors compressed, {:.3} bpw over {} weights; file {} -> {} bytes (ratio {:.2})",
        reports.len(),
        bits as f64 / weights.max(1) as f64,
        weights,
        in_bytes,
        out_len,
        in_bytes as f64 / out_len.max(1) as f64
    );
    Ok(())
}

/// Estimate loss against bits for every compressed tensor, allocate bits to
/// meet `target` bytes for the whole file, set `jobs[..].bits` and print the
/// allocation.
fn allocate_bits(
    jobs: &mut [Job],
    parsed: &[SafetensorsFile],
    maps: &[Mmap],
    calib: Option<&CalibSource>,
    opts: &CompressOptions,
    a: &CompressArgs,
    target: u64,
) -> Result<()> {
    for b in [a.min_bits, a.max_bits, a.head_bits] {
        jlcm::format::packed::check_params(b, opts.dim, opts.groups).map_err(anyhow::Error::msg)?;
    }
    if a.min_bits > a.max_bits {
        bail!(
            "--min-bits {} is above --max-bits {}",
            a.min_bits,
            a.max_bits
        );
    }
    let stored = match calib {
        Some(c) => sensitivities_from_metadata(&c.file.header.metadata)?,
        None => None,
    };
    let sensitivity = match (a.allocate_by, stored) {
        (AllocateBy::Loss, _) | (AllocateBy::Auto, None) => None,
        (_, Some(s)) => Some(s),
        (AllocateBy::Sensitivity, None) => bail!(
            "--allocate-by sensitivity needs a calibration file written by `jlcm calibrate --sensitivity`"
        ),
    };
    // Factor per tensor; a tensor the file does not cover gets the median.
    let factor_of = |name: &str| -> f64 {
        let Some(s) = &sensitivity else { return 1.0 };
        if let Some(x) = s.get(name) {
            return x.per_loss();
        }
        let mut all: Vec<f64> = s.values().map(|x| x.per_loss()).collect();
        all.sort_by(f64::total_cmp);
        all.get(all.len() / 2).copied().unwrap_or(1.0)
    };
    if sensitivity.is_some() {
        eprintln!("allocating bits by predicted embedding error (calibrated loss x sensitivity)");
    }
    let bits_of = |j: &Job| -> Vec<u8> {
        if is_head(&j.entry.name) {
            (a.head_bits..=a.max_bits.max(a.head_bits)).collect()
        } else {
            (a.min_bits..=a.max_bits).collect()
        }
    };
    let todo: Vec<usize> = (0..jobs.len()).filter(|&i| jobs[i].compress).collect();
    let bar = ProgressBar::new(todo.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] estimating loss per bit width {wide_bar} {pos}/{len} tensors, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let estimated = std::sync::atomic::AtomicUsize::new(0);
    let estimates: Vec<Result<Vec<f64>>> = todo
        .par_iter()
        .map(|&i| {
            if INTERRUPTED.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            let j = &jobs[i];
            let (n_out, n_in) = j.n_out_in();
            let file = &parsed[j.file];
            let raw = file.tensor_bytes(&j.entry);
            let size = j.entry.dtype.bitsize() / 8;
            let mut rows = Vec::new();
            for r in budget::sample_rows(n_out) {
                let probe = TensorEntry {
                    name: j.entry.name.clone(),
                    dtype: j.entry.dtype,
                    shape: vec![n_in],
                    start: 0,
                    end: (n_in * size) as u64,
                };
                rows.extend(st::to_f32(
                    &probe,
                    &raw[r * n_in * size..(r + 1) * n_in * size],
                )?);
            }
            let (s, e) = file.header.file_range(&j.entry);
            release(&maps[j.file], s, e);
            let h = hessian_of(calib, &j.entry.name, n_in, opts.damping)?;
            let losses =
                budget::estimate_losses(&j.entry.name, &rows, n_out, n_in, &h, opts, &bits_of(j))
                    .with_context(|| format!("estimating `{}`", j.entry.name))?;
            bar.inc(1);
            if bar.is_hidden() {
                let k = estimated.fetch_add(1, Ordering::Relaxed) + 1;
                if k % 16 == 0 || k == todo.len() {
                    eprintln!("estimated loss per bit width: {k}/{} tensors", todo.len());
                }
            }
            Ok(losses)
        })
        .collect();
    bar.finish_and_clear();
    let mut choices = Vec::new();
    for (&i, est) in todo.iter().zip(estimates) {
        let est = est?;
        let j = &jobs[i];
        let factor = factor_of(&j.entry.name);
        let candidates = bits_of(j)
            .into_iter()
            .zip(est)
            .map(|(bits, loss)| {
                let spec = Job {
                    bits,
                    ..clone_job(j)
                }
                .spec(opts);
                Candidate {
                    bits,
                    bytes: spec.data_bytes(),
                    loss: loss * factor,
                }
            })
            .collect();
        choices.push(TensorChoices {
            name: j.entry.name.clone(),
            candidates,
        });
    }
    // Fixed bytes: copied tensors, and the header with every tensor at its
    // most bits (an upper bound: more bits never shortens the header).
    for (k, &i) in todo.iter().enumerate() {
        jobs[i].bits = choices[k].candidates.last().map_or(opts.bits, |c| c.bits);
    }
    let specs: Vec<EntrySpec> = jobs.iter().map(|j| j.spec(opts)).collect();
    let metadata = parsed
        .first()
        .map(|f| f.header.metadata.clone())
        .unwrap_or_default();
    let (header, _) = plan_header(&specs, &metadata)?;
    let fixed: u64 = header.len() as u64
        + specs
            .iter()
            .zip(jobs.iter())
            .filter(|(_, j)| !j.compress)
            .map(|(s, _)| s.data_bytes())
            .sum::<u64>();
    if fixed >= target {
        bail!(
            "target of {target} bytes is below the copied tensors and header alone ({fixed} bytes)"
        );
    }
    let alloc = budget::allocate(&choices, target - fixed)?;
    for (k, &i) in todo.iter().enumerate() {
        jobs[i].bits = alloc.bits(&choices, k);
    }
    // The table.
    eprintln!(
        "{:<56} {:>13} {:>4} {:>7} {:>12} {:>11}",
        "tensor",
        "shape",
        "bits",
        "bpw",
        "bytes",
        if sensitivity.is_some() {
            "est. 1-cos"
        } else {
            "est. loss"
        }
    );
    let mut hist: BTreeMap<u8, (usize, u64)> = BTreeMap::new();
    for (k, &i) in todo.iter().enumerate() {
        let c = choices[k].candidates[alloc.choice[k]];
        let (n_out, n_in) = jobs[i].n_out_in();
        eprintln!(
            "{:<56} {:>13} {:>4} {:>7.3} {:>12} {:>11.4e}",
            jobs[i].entry.name,
            format!("{n_out}x{n_in}"),
            c.bits,
            c.bytes as f64 * 8.0 / (n_out * n_in) as f64,
            c.bytes,
            c.loss
        );
        let h = hist.entry(c.bits).or_default();
        h.0 += 1;
        h.1 += (n_out * n_in) as u64;
    }
    let total_w: u64 = jobs.iter().map(|j| j.entry.num_elements() as u64).sum();
    let hist_text: Vec<String> = hist
        .iter()
        .map(|(b, (n, w))| {
            format!(
                "{b} bits: {n} tensors ({:.1}% of weights)",
                100.0 * *w as f64 / total_w.max(1) as f64
            )
        })
        .collect();
    eprintln!(
        "allocation: {}; compressed data {} + copied tensors and header {} = {} of {target} bytes; {:.3} bpw over all {total_w} weights; {} {:.4e}",
        hist_text.join(", "),
        alloc.bytes,
        fixed,
        alloc.bytes + fixed,
        (alloc.bytes + fixed) as f64 * 8.0 / total_w.max(1) as f64,
        if sensitivity.is_some() {
            "predicted mean 1 - cos (init-only estimate)"
        } else {
            "est. total loss"
        },
        alloc.loss
    );
    Ok(())
}

/// `--sequential`: compress the model's Linear weights among `jobs` in
/// forward order (engine::sequential), before the streaming pass writes them.
fn sequential(
    a: &CompressArgs,
    dir: &std::path::Path,
    jobs: &[Job],
    opts: &CompressOptions,
) -> Result<BTreeMap<String, SequentialResult>> {
    let text = a
        .calib_text
        .as_deref()
        .context("--sequential needs --calib-text")?;
    let weights = a.input.is_file().then_some(a.input.as_path());
    let encoder = load_encoder(dir, weights)?;
    let texts = read_sentences(text)?;
    let ids = encoder.tokenizer.encode_all(&texts)?;
    let wanted: BTreeMap<&str, &Job> = jobs
        .iter()
        .filter(|j| j.compress)
        .map(|j| (j.entry.name.as_str(), j))
        .collect();
    let bits = |name: &str| wanted.get(name).map(|j| j.bits);
    let bar = ProgressBar::new(
        encoder
            .model
            .linears()
            .filter(|l| bits(&l.name).is_some())
            .count() as u64,
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] sequential calibration {wide_bar} {pos}/{len} weights, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = (std::time::Instant::now(), thread_cpu_seconds());
    let mut out = compress_sequential(
        &encoder.model,
        &ids,
        opts,
        &SequentialOptions {
            correction_damping: a.sequential_damping,
            refit_bias: a.refit_bias,
        },
        &bits,
        &mut |p| {
            bar.set_position(p.done as u64);
            if bar.is_hidden() {
                eprintln!("[{}/{}] sequential: {}", p.done, p.total, p.name);
            }
            if INTERRUPTED.load(Ordering::Relaxed) {
                Control::Cancel
            } else {
                Control::Continue
            }
        },
    )
    .map_err(|e| anyhow::anyhow!("sequential calibration: {e}"))?;
    bar.finish_and_clear();
    let wall = started.0.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds().zip(started.1).map(|(b, a)| b - a);
    for (name, r) in out.iter_mut() {
        let j = wanted[name.as_str()];
        anyhow::ensure!(
            r.packed.n_out * r.packed.n_in == j.entry.num_elements(),
            "--sequential: `{name}` has another shape in {} than in the input",
            dir.display()
        );
        r.packed.dtype = j.entry.dtype;
        r.packed.shape = j.entry.shape.clone();
    }
    let uncorrected = out.values().filter(|r| r.uncorrected).count();
    let shift = out.values().map(|r| r.target_shift).sum::<f64>() / out.len().max(1) as f64;
    eprintln!(
        "sequential calibration on {} sentences: {} weights in {wall:.1} s wall, {} s CPU; mean target shift |W*-W|/|W| {shift:.4}{}",
        texts.len(),
        out.len(),
        cpu.map_or("?".into(), |c| format!("{c:.1}")),
        if uncorrected > 0 {
            format!(", {uncorrected} uncorrected (H not positive definite)")
        } else {
            String::new()
        }
    );
    Ok(out)
}

/// Compress job `j`'s weights `w` (f32, read from the input) with the
/// job's bits under its `H` (identity without calibration).
fn compress_weights(
    j: &Job,
    w: Vec<f32>,
    calib: Option<&CalibSource>,
    opts: &CompressOptions,
    observer: &mut dyn FnMut(&Event) -> Control,
) -> Result<(jlcm::format::packed::PackedTensor, TensorReport)> {
    let t = &j.entry;
    let (n_out, n_in) = j.n_out_in();
    let h = hessian_of(calib, &t.name, n_in, opts.damping)?;
    let o = CompressOptions {
        bits: j.bits,
        ..opts.clone()
    };
    Ok(compress_matrix_owned(
        &t.name, t.dtype, &t.shape, w, n_out, n_in, &h, &o, observer,
    )?)
}

/// `….bias` of the weight `….weight`.
fn bias_name(weight: &str) -> String {
    format!("{}.bias", weight.strip_suffix(".weight").unwrap_or(weight))
}

/// `--tune`: compress the model's Linear weights among `jobs` that
/// `--sequential` did not (as the streaming pass would), tune them end to
/// end (engine::finetune), and hand them to the streaming pass in `pre`;
/// the tuned dense tensors go to `replace`.
#[allow(clippy::too_many_arguments)]
fn tune(
    a: &CompressArgs,
    dir: &std::path::Path,
    jobs: &[Job],
    parsed: &[SafetensorsFile],
    calib: Option<&CalibSource>,
    opts: &CompressOptions,
    pre: &mut BTreeMap<String, SequentialResult>,
    replace: &mut BTreeMap<String, Vec<f32>>,
) -> Result<()> {
    let text = a
        .calib_text
        .as_deref()
        .context("--tune needs --calib-text")?;
    let weights = a.input.is_file().then_some(a.input.as_path());
    let encoder = load_encoder(dir, weights)?;
    let ids = encoder.tokenizer.encode_all(&read_sentences(text)?)?;
    let linears: std::collections::HashSet<&str> =
        encoder.model.linears().map(|l| l.name.as_str()).collect();
    let todo: Vec<&Job> = jobs
        .iter()
        .filter(|j| j.compress && linears.contains(j.entry.name.as_str()))
        .filter(|j| !pre.contains_key(&j.entry.name))
        .collect();
    let started = std::time::Instant::now();
    let fresh = todo
        .par_iter()
        .map(|j| -> Result<(String, SequentialResult)> {
            let t = &j.entry;
            let w = st::to_f32(t, parsed[j.file].tensor_bytes(t))?;
            let (packed, report) = compress_weights(j, w, calib, opts, &mut |_| Control::Continue)?;
            let r = SequentialResult {
                packed,
                report,
                target_shift: 0.0,
                uncorrected: false,
                bias: None,
            };
            Ok((t.name.clone(), r))
        })
        .collect::<Result<Vec<_>>>()?;
    pre.extend(fresh);
    let mut packed: BTreeMap<String, jlcm::format::packed::PackedTensor> = pre
        .iter()
        .filter(|(n, _)| linears.contains(n.as_str()))
        .map(|(n, r)| (n.clone(), r.packed.clone()))
        .collect();
    anyhow::ensure!(
        !packed.is_empty(),
        "--tune: no Linear weight of the model is compressed"
    );
    // The tuning runs the model as the input has it, sequential results included.
    let mut model = encoder.model.clone();
    for lin in model.linears_mut() {
        if let Some(b) = replace.get(&bias_name(&lin.name)) {
            lin.bias = b.clone();
        }
    }
    let fo = FinetuneOptions {
        steps: a.tune_steps,
        lr: a.tune_lr,
        ..FinetuneOptions::default()
    };
    let bar = ProgressBar::new(fo.steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] tuning {wide_bar} {pos}/{len} steps, batch loss {msg}, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (dense, rep) = finetune(&model, &ids, &mut packed, &fo, &mut |step, loss| {
        bar.set_position(step as u64);
        bar.set_message(format!("{loss:.4}"));
        if bar.is_hidden() && step % 16 == 0 {
            eprintln!("[{step}/{}] tuning: batch loss {loss:.4}", fo.steps);
        }
        if INTERRUPTED.load(Ordering::Relaxed) {
            Control::Cancel
        } else {
            Control::Continue
        }
    })
    .map_err(|e| anyhow::anyhow!("tuning: {e}"))?;
    bar.finish_and_clear();
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted; no output written");
    }
    for (n, p) in packed {
        if let Some(r) = pre.get_mut(&n) {
            r.packed.codebooks = p.codebooks;
        }
    }
    let in_file: std::collections::HashSet<&str> =
        jobs.iter().map(|j| j.entry.name.as_str()).collect();
    let mut missing = 0;
    for (n, v) in dense {
        if in_file.contains(n.as_str()) {
            replace.insert(n, v);
        } else {
            missing += 1;
        }
    }
    eprintln!(
        "tuned {} weights end to end on {} sentences: {} steps in {:.1} s, calibration loss {:.5} -> {:.5}{}{}",
        pre.len(),
        ids.len(),
        rep.step_losses.len(),
        started.elapsed().as_secs_f64(),
        rep.initial_loss,
        rep.final_loss,
        if rep.kept { "" } else { " (no gain: left as compressed)" },
        if missing > 0 {
            format!(", {missing} tuned tensors not in the input (not written)")
        } else {
            String::new()
        }
    );
    Ok(())
}

fn clone_job(j: &Job) -> Job {
    Job {
        file: j.file,
        entry: j.entry.clone(),
        compress: j.compress,
        bits: j.bits,
        h_bytes: j.h_bytes,
    }
}

/// What a worker hands to the writer.
enum Done {
    /// The tensor, its report, wall and CPU seconds spent on it.
    Packed(Box<PackedTensor>, Box<TensorReport>, f64, Option<f64>),
    Raw,
}

struct State {
    next: usize,
    written: usize,
    in_use: u64,
    done: BTreeMap<usize, Result<Done>>,
    stop: bool,
}

/// Compress `jobs` (in output order) on one worker per core and write them
/// through `writer` in order.
fn stream_compress(
    jobs: &[Job],
    parsed: &[SafetensorsFile],
    maps: &[Mmap],
    calib: Option<&CalibSource>,
    opts: &CompressOptions,
    memory_budget: u64,
    pre: &Mutex<BTreeMap<String, SequentialResult>>,
    replace: &BTreeMap<String, Vec<f32>>,
    writer: &mut StreamWriter<std::fs::File>,
) -> Result<Vec<(TensorReport, f64, Option<f64>)>> {
    let n = jobs.len();
    let threads = rayon::current_num_threads().max(1);
    let window = 2 * threads;
    let total_bytes: u64 = jobs.iter().map(|j| j.entry.byte_len()).sum();
    let n_compress = jobs.iter().filter(|j| j.compress).count();
    let bar = ProgressBar::new(total_bytes.max(1));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}, eta {eta}, {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("0/{n_compress} tensors"));
    let tensors_done = std::sync::atomic::AtomicUsize::new(0);
    let state = Mutex::new(State {
        next: 0,
        written: 0,
        in_use: 0,
        done: BTreeMap::new(),
        stop: false,
    });
    let cv = Condvar::new();
    let stopping = |st: &State| st.stop || INTERRUPTED.load(Ordering::Relaxed);
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    let tick = Duration::from_millis(200);

    let process = |i: usize| -> Result<Done> {
        let j = &jobs[i];
        if !j.compress {
            return Ok(Done::Raw);
        }
        let t = &j.entry;
        let done = pre
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&t.name);
        if let Some(r) = done {
            return Ok(Done::Packed(
                Box::new(r.packed),
                Box::new(r.report),
                0.0,
                Some(0.0),
            ));
        }
        let file = &parsed[j.file];
        let (n_out, n_in) = j.n_out_in();
        let w = st::to_f32(t, file.tensor_bytes(t))?;
        let (s, e) = file.header.file_range(t);
        release(&maps[j.file], s, e);
        let started = (std::time::Instant::now(), thread_cpu_seconds());
        let mut observer = |_: &Event| {
            if INTERRUPTED.load(Ordering::Relaxed) || lock().stop {
                Control::Cancel
            } else {
                Control::Continue
            }
        };
        let (p, rep) = compress_weights(j, w, calib, opts, &mut observer)?;
        let wall = started.0.elapsed().as_secs_f64();
        let cpu = thread_cpu_seconds().zip(started.1).map(|(b, a)| b - a);
        if bar.is_hidden() {
            // No terminal (a log, a batch job): one line per tensor instead of the bar.
            let k = tensors_done.load(Ordering::Relaxed) + 1;
            eprintln!(
                "[{k}/{n_compress}] {} {}x{} {} bits: {wall:.1} s wall, {} s CPU",
                t.name,
                n_out,
                n_in,
                j.bits,
                cpu.map_or("?".into(), |c| format!("{c:.1}"))
            );
        }
        Ok(Done::Packed(Box::new(p), Box::new(rep), wall, cpu))
    };

    let worker = || loop {
        let i = {
            let mut st = lock();
            loop {
                if stopping(&st) || st.next >= n {
                    return;
                }
                let i = st.next;
                let need = jobs[i].memory();
                if i < st.written + window && (st.in_use == 0 || st.in_use + need <= memory_budget)
                {
                    st.next += 1;
                    st.in_use += need;
                    break i;
                }
                st = cv
                    .wait_timeout(st, tick)
                    .map(|r| r.0)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        };
        let r = process(i);
        if jobs[i].compress && r.is_ok() {
            let k = tensors_done.fetch_add(1, Ordering::Relaxed) + 1;
            bar.set_message(format!("{k}/{n_compress} tensors"));
        }
        bar.inc(jobs[i].entry.byte_len());
        let mut st = lock();
        st.done.insert(i, r);
        cv.notify_all();
    };

    let mut reports = Vec::new();
    let mut write_all = || -> Result<()> {
        for i in 0..n {
            let done = {
                let mut st = lock();
                loop {
                    if let Some(d) = st.done.remove(&i) {
                        break d;
                    }
                    if INTERRUPTED.load(Ordering::Relaxed) {
                        bail!("interrupted; no output written");
                    }
                    st = cv
                        .wait_timeout(st, tick)
                        .map(|r| r.0)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
            };
            let j = &jobs[i];
            match done? {
                Done::Raw => {
                    let file = &parsed[j.file];
                    let spec = j.spec(opts);
                    match replace.get(&j.entry.name) {
                        Some(v) => writer.write_parts(spec, &[&st::from_f32(j.entry.dtype, v)])?,
                        None => writer.write_parts(spec, &[file.tensor_bytes(&j.entry)])?,
                    }
                    let (s, e) = file.header.file_range(&j.entry);
                    release(&maps[j.file], s, e);
                }
                Done::Packed(p, rep, wall, cpu) => {
                    writer.write_entry(&PackedEntry::Packed(*p))?;
                    reports.push((*rep, wall, cpu));
                }
            }
            let mut st = lock();
            st.written = i + 1;
            st.in_use -= j.memory();
            cv.notify_all();
        }
        Ok(())
    };

    let mut result = Ok(());
    rayon::in_place_scope(|s| {
        for _ in 0..threads {
            s.spawn(|_| worker());
        }
        result = write_all();
        let mut st = lock();
        st.stop = true;
        cv.notify_all();
    });
    bar.finish_and_clear();
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted; no output written");
    }
    result?;
    Ok(reports)
}
