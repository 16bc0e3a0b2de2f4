//! Native twin of `scripts/bench-engine-wasm.mjs`: compress the matching
//! weights of a model one after the other on this thread and print wall and
//! CPU seconds, the summed final losses and CPU seconds per phase (timed from
//! the engine's progress events exactly as the Node driver times them), as one
//! JSON line.
//!
//!   cargo run --release --example engine_phases -- MODEL.safetensors REGEX [H.safetensors|-] [BITS]

use std::collections::BTreeMap;
use std::time::Instant;

use jlcm::engine::compress::{hessian_for, read_calibration, selected};
use jlcm::engine::{compress_matrix, CompressOptions, Control, Event, Phase, StepKind};
use jlcm::format::safetensors::{self as st, SafetensorsFile};
use regex::Regex;

/// CPU time of this thread in seconds (ns resolution, from the scheduler).
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1e9
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return Err("usage: engine_phases MODEL REGEX [H.safetensors|-] [BITS]".into());
    }
    let model = std::fs::read(&args[0])?;
    let re = Regex::new(&args[1])?;
    let calib = match args.get(2).map(String::as_str) {
        None | Some("-") => None,
        Some(p) => Some(read_calibration(&std::fs::read(p)?)?),
    };
    let opts = CompressOptions {
        bits: args.get(3).map(|b| b.parse()).transpose()?.unwrap_or(2),
        ..CompressOptions::default()
    };
    let file = SafetensorsFile::parse(&model)?;
    let mut phases: BTreeMap<&'static str, f64> = BTreeMap::new();
    let (mut wall, mut loss_sum, mut n) = (0f64, 0f64, 0usize);
    let cpu0 = thread_cpu();
    for t in &file.header.tensors {
        if !selected(t, Some(&re)) {
            continue;
        }
        let (n_out, n_in) = t.matrix_shape().expect("selected tensors are matrices");
        let w = st::to_f32(t, file.tensor_bytes(t))?;
        let h = hessian_for(&t.name, n_in, calib.as_ref(), opts.damping)?;
        let t0 = Instant::now();
        let mut last = thread_cpu();
        let mut current = "setup";
        let mut observer = |e: &Event| {
            let now = thread_cpu();
            let label = match e {
                Event::Loss { point, .. } if point.kind == StepKind::Codebook => "codebook",
                Event::Loss { point, .. } if point.kind == StepKind::Mapping => "mapping",
                _ => current,
            };
            *phases.entry(label).or_default() += now - last;
            last = now;
            if let Event::Phase { phase, .. } = e {
                current = match phase {
                    Phase::Grouping => "grouping",
                    Phase::Init => "init",
                    Phase::Learning => "learning",
                    Phase::Packing => "packing",
                };
            }
            Control::Continue
        };
        let (_, report) = compress_matrix(
            &t.name,
            t.dtype,
            &t.shape,
            &w,
            n_out,
            n_in,
            &h,
            &opts,
            &mut observer,
        )?;
        let end = Instant::now();
        *phases.entry(current).or_default() += thread_cpu() - last;
        wall += (end - t0).as_secs_f64();
        loss_sum += report.losses.last().map(|p| p.loss).unwrap_or(0.0);
        n += 1;
    }
    let cpu = thread_cpu() - cpu0;
    let phases: BTreeMap<_, _> = phases
        .into_iter()
        .map(|(k, v)| (k, (v * 1000.0).round() / 1000.0))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "tensors": n,
            "wall_s": (wall * 1000.0).round() / 1000.0,
            "cpu_s": (cpu * 1000.0).round() / 1000.0,
            "loss_sum": loss_sum,
            "phases_s": phases,
        })
    );
    Ok(())
}
