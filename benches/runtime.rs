//! MiniLM sentence embeddings per second: dense f32 vs packed 2-bit weights,
//! batches of 1 and 32 sentences, natively, single thread.
//!
//! Run: `cargo bench --bench runtime` (needs `bash scripts/fetch-model.sh`).
//! The packed model is made here (all 36 Linear weights, 2 bits, G = 16,
//! `JLCM_BENCH_ITERS` sweeps, default 2: speed does not depend on quality),
//! or read from `JLCM_BENCH_PACKED=path.safetensors`.
//! `JLCM_BENCH_SECONDS` (default 3) is the time spent per measurement.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jlcm::engine::{compress_file, CompressOptions, Control};
use jlcm::runtime::{BertModel, Linear, PackedStrategy, SentenceEncoder};

fn model_dir() -> PathBuf {
    if let Ok(d) = std::env::var("JLCM_MODEL_DIR") {
        return d.into();
    }
    let cache = std::env::var("JLCM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/jlcm")
        });
    cache.join("models/all-MiniLM-L6-v2")
}

/// CPU time of this thread (Linux `/proc/thread-self/schedstat`), if readable:
/// on a machine shared with other jobs it is steadier than wall time.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        s.split_whitespace().next()?.parse().ok()?,
    ))
}

/// Calls of `f` per second of wall time and per second of thread CPU time,
/// running it for about `budget` (at least 3 calls).
fn rate(budget: Duration, mut f: impl FnMut()) -> (f64, f64) {
    f(); // warm-up
    let start = Instant::now();
    let cpu0 = thread_cpu();
    let mut n = 0u32;
    while start.elapsed() < budget || n < 3 {
        f();
        n += 1;
    }
    let wall = n as f64 / start.elapsed().as_secs_f64();
    let cpu = match (cpu0, thread_cpu()) {
        (Some(a), Some(b)) if b > a => n as f64 / (b - a).as_secs_f64(),
        _ => wall,
    };
    (wall, cpu)
}

fn main() {
    let dir = model_dir();
    let read = |f: &str| {
        std::fs::read(dir.join(f)).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run scripts/fetch-model.sh)",
                dir.join(f).display()
            )
        })
    };
    let config = String::from_utf8(read("config.json")).unwrap();
    let tokenizer = read("tokenizer.json");
    let weights = read("model.safetensors");
    let seconds: f64 = std::env::var("JLCM_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let budget = Duration::from_secs_f64(seconds);

    let encoder = SentenceEncoder::from_bytes(&config, &tokenizer, &weights).unwrap();
    let texts: Vec<String> = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/st_sentences.txt"),
    )
    .unwrap()
    .lines()
    .filter(|l| !l.is_empty() && l.len() < 200)
    .map(String::from)
    .collect();
    let ids = encoder.tokenizer.encode_all(&texts).unwrap();
    let batch32: Vec<Vec<u32>> = ids.iter().cycle().take(32).cloned().collect();
    let mean_tokens = batch32.iter().map(Vec::len).sum::<usize>() as f64 / 32.0;

    let packed_path = std::env::var("JLCM_BENCH_PACKED").ok();
    let packed_bytes = match packed_path.as_deref().map(std::fs::read) {
        Some(Ok(b)) => b,
        _ => {
            let iters = std::env::var("JLCM_BENCH_ITERS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(2);
            let opts = CompressOptions {
                bits: 2,
                groups: 16,
                iters,
                ..Default::default()
            };
            let filter = regex::Regex::new(r"^encoder\.layer\.\d+\.").unwrap();
            let t = Instant::now();
            let (packed, _) = compress_file(&weights, None, &opts, Some(&filter), &mut |_| {
                Control::Continue
            })
            .unwrap();
            eprintln!(
                "compressed the 36 Linear weights (2 bits, G=16, iters={iters}) in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            let bytes = packed.to_bytes().unwrap();
            if let Some(p) = &packed_path {
                // A missing JLCM_BENCH_PACKED file is written, for later runs
                // and for scripts/bench-runtime-wasm.sh.
                std::fs::write(p, &bytes).unwrap_or_else(|e| panic!("{p}: {e}"));
            }
            bytes
        }
    };
    let dense = BertModel::from_safetensors(&config, &weights).unwrap();
    let packed = BertModel::from_safetensors(&config, &packed_bytes).unwrap();
    let linear_bytes = |m: &BertModel| m.linears().map(Linear::weight_bytes).sum::<usize>();
    let with = |s: PackedStrategy| {
        let mut m = packed.clone();
        m.set_packed_strategy(s);
        m
    };
    let (kernel, panels) = (
        with(PackedStrategy::Kernel),
        with(PackedStrategy::DecodePanels),
    );

    println!(
        "MiniLM-L6 (all-MiniLM-L6-v2) embeddings, single thread, {mean_tokens:.1} tokens per sentence on average"
    );
    println!("(rates per second of thread CPU time; wall-time rates in brackets)");
    println!(
        "| weights | Linear weight bytes | model bytes | batch | sentences/s | ms per batch |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let models = [
        ("dense f32", &dense),
        ("packed 2-bit, auto", &packed),
        ("packed 2-bit, lookup kernels", &kernel),
        ("packed 2-bit, decoded panels", &panels),
    ];
    for (label, model) in models {
        for (b, batch) in [(1usize, &batch32[..1]), (32, &batch32[..])] {
            let (wall, cpu) = rate(budget, || {
                std::hint::black_box(model.embed(batch).unwrap());
            });
            println!(
                "| {label} | {:.2} MB | {:.2} MB | {b} | {:.1} ({:.1}) | {:.2} ({:.2}) |",
                linear_bytes(model) as f64 / 1e6,
                model.weight_bytes() as f64 / 1e6,
                cpu * b as f64,
                wall * b as f64,
                1e3 / cpu,
                1e3 / wall
            );
        }
    }

    println!();
    println!("Linear layers alone, GFLOP/s per CPU second (16 rows = one 16-token sentence; 512 rows = 32 sentences):");
    println!(
        "| layer | n_out x n_in | rows | dense | packed: lookup kernels | packed: decoded panels |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    let layer0: Vec<((&Linear, &Linear), &Linear)> = dense
        .linears()
        .zip(kernel.linears())
        .zip(panels.linears())
        .take(6)
        .collect();
    for ((d, k), p) in layer0.into_iter().filter(|((d, _), _)| {
        d.name.contains("query")
            || d.name.contains("intermediate")
            || d.name.ends_with("0.output.dense.weight")
    }) {
        for rows in [1usize, 4, 16, 512] {
            let x: Vec<f32> = (0..rows * d.n_in)
                .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            let mut y = vec![0f32; rows * d.n_out];
            let flop = 2.0 * (rows * d.n_in * d.n_out) as f64;
            let mut g = |l: &Linear| {
                rate(budget / 4, || l.forward(&x, rows, &mut y).unwrap()).1 * flop / 1e9
            };
            let (gd, gk, gp) = (g(d), g(k), g(p));
            let short = d
                .name
                .trim_start_matches("encoder.layer.0.")
                .trim_end_matches(".weight");
            println!(
                "| {short} | {} x {} | {rows} | {gd:.2} | {gk:.2} | {gp:.2} |",
                d.n_out, d.n_in
            );
        }
    }
}
