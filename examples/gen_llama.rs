//! Write a synthetic checkpoint with Llama-7B's tensor names, shapes, dtype
//! (F16) and sharding (`model.safetensors.index.json` + shards of at most
//! 10 GB, as the Hugging Face release), filled with heavy-tailed values.
//!
//! ```text
//! cargo run --release --example gen_llama -- OUT_DIR [--layers 32] [--seed 0]
//!     [--hidden 4096] [--mlp 11008] [--vocab 32000] [--shard-bytes 10000000000]
//! ```
//!
//! Distribution of a weight row `r` of a matrix: `s_r * t / sqrt(2)` with `t`
//! Student-t with 4 degrees of freedom (variance 2: heavy tails, finite
//! variance), `s_r = base * exp(0.35 z_r)` a log-normal row scale, and one row
//! in 128 an outlier row with a 6x scale (the "massive activation" rows of real
//! LLMs). `base = 0.02` for every matrix (Llama's init std); norm weights are
//! `1 + 0.05 z`. Every value is a pure function of (seed, tensor name, row),
//! so the output is the same on any number of threads.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::f16;
use jlcm::format::safetensors::{header_bytes, Dtype};
use rayon::prelude::*;

struct Config {
    out: PathBuf,
    layers: usize,
    seed: u64,
    hidden: usize,
    mlp: usize,
    vocab: usize,
    shard_bytes: u64,
}

fn parse_args() -> Result<Config, String> {
    let mut args = std::env::args().skip(1);
    let mut c = Config {
        out: PathBuf::new(),
        layers: 32,
        seed: 0,
        hidden: 4096,
        mlp: 11008,
        vocab: 32000,
        shard_bytes: 10_000_000_000,
    };
    let mut out = None;
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--layers" => c.layers = num("--layers")? as usize,
            "--seed" => c.seed = num("--seed")?,
            "--hidden" => c.hidden = num("--hidden")? as usize,
            "--mlp" => c.mlp = num("--mlp")? as usize,
            "--vocab" => c.vocab = num("--vocab")? as usize,
            "--shard-bytes" => c.shard_bytes = num("--shard-bytes")?,
            "--bench" => {} // passed by `cargo bench`-style runners; ignore
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s => out = Some(PathBuf::from(s)),
        }
    }
    c.out = out.ok_or("usage: gen_llama OUT_DIR [--layers N] [--seed S]")?;
    Ok(c)
}

/// The tensors of the checkpoint in Hugging Face order: (name, shape).
fn tensors(c: &Config) -> Vec<(String, Vec<usize>)> {
    let (h, m) = (c.hidden, c.mlp);
    let mut v = vec![("model.embed_tokens.weight".to_string(), vec![c.vocab, h])];
    for l in 0..c.layers {
        let p = format!("model.layers.{l}");
        for x in ["q", "k", "v", "o"] {
            v.push((format!("{p}.self_attn.{x}_proj.weight"), vec![h, h]));
        }
        v.push((format!("{p}.mlp.gate_proj.weight"), vec![m, h]));
        v.push((format!("{p}.mlp.up_proj.weight"), vec![m, h]));
        v.push((format!("{p}.mlp.down_proj.weight"), vec![h, m]));
        v.push((format!("{p}.input_layernorm.weight"), vec![h]));
        v.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
    }
    v.push(("model.norm.weight".to_string(), vec![h]));
    v.push(("lm_head.weight".to_string(), vec![c.vocab, h]));
    v
}

/// xoshiro256++ seeded through splitmix64: fast and reproducible.
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64, name: &str, row: u64) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        let mut x = seed ^ h.rotate_left(21) ^ row.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut s = [0u64; 4];
        for v in &mut s {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *v = z ^ (z >> 31);
        }
        Rng(s)
    }
    fn next(&mut self) -> u64 {
        let s = &mut self.0;
        let r = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }
    /// Uniform in (-1, 1).
    fn sym(&mut self) -> f32 {
        ((self.next() >> 40) as f32 + 0.5) / (1u64 << 23) as f32 - 1.0
    }
    fn normal(&mut self) -> f32 {
        loop {
            let (u, v) = (self.sym(), self.sym());
            let w = u * u + v * v;
            if w > 0.0 && w < 1.0 {
                return u * (-2.0 * w.ln() / w).sqrt();
            }
        }
    }
    /// Student-t with 4 degrees of freedom (Bailey's polar method).
    fn student_t4(&mut self) -> f32 {
        loop {
            let (u, v) = (self.sym(), self.sym());
            let w = u * u + v * v;
            if w > 0.0 && w < 1.0 {
                return u * (4.0 * (1.0 / w.sqrt() - 1.0) / w).sqrt();
            }
        }
    }
}

/// F16 little-endian bytes of one tensor.
fn fill(seed: u64, name: &str, shape: &[usize]) -> Vec<u8> {
    let n_in = *shape.last().unwrap_or(&1);
    let rows = shape.iter().product::<usize>() / n_in;
    let mut out = vec![0u8; rows * n_in * 2];
    out.par_chunks_mut(n_in * 2)
        .enumerate()
        .for_each(|(r, row)| {
            let mut rng = Rng::new(seed, name, r as u64);
            if shape.len() == 1 {
                for c in row.chunks_exact_mut(2) {
                    c.copy_from_slice(&f16::from_f32(1.0 + 0.05 * rng.normal()).to_le_bytes());
                }
                return;
            }
            let outlier = rng.next() % 128 == 0;
            let scale = 0.02 * (0.35 * rng.normal()).exp() * if outlier { 6.0 } else { 1.0 };
            let k = scale / std::f32::consts::SQRT_2;
            for c in row.chunks_exact_mut(2) {
                c.copy_from_slice(&f16::from_f32(k * rng.student_t4()).to_le_bytes());
            }
        });
    out
}

fn write_shard(path: &Path, seed: u64, tensors: &[(String, Vec<usize>)]) -> std::io::Result<()> {
    let mut sorted: Vec<&(String, Vec<usize>)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let specs: Vec<(&str, Dtype, &[usize], u64)> = sorted
        .iter()
        .map(|(n, s)| {
            (
                n.as_str(),
                Dtype::F16,
                s.as_slice(),
                2 * s.iter().product::<usize>() as u64,
            )
        })
        .collect();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let header = header_bytes(&specs, &meta).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    let mut f = BufWriter::with_capacity(1 << 22, fs::File::create(&tmp)?);
    f.write_all(&header)?;
    for (name, shape) in sorted {
        f.write_all(&fill(seed, name, shape))?;
        eprint!(".");
    }
    f.flush()?;
    drop(f);
    fs::rename(&tmp, path)
}

fn main() {
    let c = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gen_llama: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&c) {
        eprintln!("gen_llama: {e}");
        std::process::exit(1);
    }
}

fn run(c: &Config) -> std::io::Result<()> {
    fs::create_dir_all(&c.out)?;
    let all = tensors(c);
    // Shards in Hugging Face order, each at most `shard_bytes` of data.
    let mut shards: Vec<Vec<(String, Vec<usize>)>> = vec![vec![]];
    let mut used = 0u64;
    for t in all {
        let bytes = 2 * t.1.iter().product::<usize>() as u64;
        if used > 0 && used + bytes > c.shard_bytes {
            shards.push(vec![]);
            used = 0;
        }
        used += bytes;
        shards.last_mut().expect("one shard").push(t);
    }
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    let mut total = 0u64;
    for (i, tensors) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{:05}.safetensors", i + 1, n);
        let path = c.out.join(&file);
        eprint!("{file} ");
        write_shard(&path, c.seed, tensors)?;
        eprintln!();
        for (name, shape) in tensors {
            weight_map.insert(name.clone(), file.clone());
            total += 2 * shape.iter().product::<usize>() as u64;
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    fs::write(
        c.out.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&index)? + "\n",
    )?;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": c.hidden, "intermediate_size": c.mlp, "num_hidden_layers": c.layers,
        "num_attention_heads": 32, "vocab_size": c.vocab, "torch_dtype": "float16",
        "rms_norm_eps": 1e-6, "_note": "synthetic weights written by jlcm examples/gen_llama.rs"
    });
    fs::write(
        c.out.join("config.json"),
        serde_json::to_string_pretty(&config)? + "\n",
    )?;
    eprintln!(
        "{} tensors, {total} bytes in {n} shards under {}",
        weight_map.len(),
        c.out.display()
    );
    Ok(())
}
