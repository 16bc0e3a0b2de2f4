//! Scale features: streamed output equals the in-memory packed file, shards
//! merged equal a single run, and the size budget is met with bits going
//! where the loss falls fastest. No wall-clock assertions.

mod common;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use jlcm::engine::{compress_file, CompressOptions, Control};
use jlcm::format::packed::{Mode, PackedEntry, PackedFile};
use jlcm::format::safetensors::{self as st, Dtype, OwnedTensor};
use jlcm::format::stream::{planned_file_len, EntrySpec, StreamWriter};

/// A small model: Llama-like names, two dtypes, a norm that is copied, an
/// embedding and a head.
fn small_model(seed: u64) -> Vec<u8> {
    let mut tensors: Vec<(String, OwnedTensor)> = Vec::new();
    let mut add = |name: &str, shape: &[usize], dtype: Dtype, scale: f32| {
        let n: usize = shape.iter().product();
        let n_in = *shape.last().unwrap_or(&1);
        let w: Vec<f32> = common::weights(n / n_in, n_in, seed + tensors.len() as u64)
            .into_iter()
            .map(|v| v * scale)
            .collect();
        tensors.push((
            name.to_string(),
            OwnedTensor {
                dtype,
                shape: shape.to_vec(),
                data: st::from_f32(dtype, &w),
            },
        ));
    };
    add("model.embed_tokens.weight", &[40, 16], Dtype::F16, 1.0);
    for l in 0..2 {
        add(
            &format!("model.layers.{l}.self_attn.q_proj.weight"),
            &[16, 16],
            Dtype::F16,
            1.0,
        );
        add(
            &format!("model.layers.{l}.mlp.up_proj.weight"),
            &[24, 16],
            Dtype::F32,
            2.0,
        );
        add(
            &format!("model.layers.{l}.mlp.down_proj.weight"),
            &[16, 24],
            Dtype::BF16,
            0.5,
        );
        add(
            &format!("model.layers.{l}.input_layernorm.weight"),
            &[16],
            Dtype::F16,
            1.0,
        );
    }
    add("model.norm.weight", &[16], Dtype::F32, 1.0);
    add("lm_head.weight", &[40, 16], Dtype::F16, 1.0);
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    st::write(&tensors, &meta).expect("writes")
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("scale-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn jlcm(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_jlcm"))
        .args(args)
        .output()
        .expect("runs jlcm");
    assert!(
        out.status.success(),
        "jlcm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn opts(bits: u8, mode: Mode) -> CompressOptions {
    CompressOptions {
        bits,
        groups: 4,
        mode,
        iters: 2,
        seed: 7,
        ..CompressOptions::default()
    }
}

#[test]
fn streamed_writer_equals_packed_file_bytes() {
    for mode in [Mode::Codebook, Mode::Scale] {
        let model = small_model(1);
        let o = opts(3, mode);
        let (packed, _) =
            compress_file(&model, None, &o, None, &mut |_| Control::Continue).expect("compresses");
        let expected = packed.to_bytes().expect("serializes");
        // Plan from parameters only, as the CLI does before compressing.
        let file = st::SafetensorsFile::parse(&model).expect("parses");
        let specs: Vec<EntrySpec> = file
            .header
            .tensors
            .iter()
            .map(|t| match t.matrix_shape() {
                Some((n_out, n_in)) => EntrySpec::packed(
                    &t.name, t.dtype, &t.shape, n_out, n_in, o.bits, o.dim, o.groups, o.mode, None,
                ),
                None => EntrySpec::Raw {
                    name: t.name.clone(),
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                },
            })
            .collect();
        assert_eq!(
            planned_file_len(&specs, &file.header.metadata).expect("plans"),
            expected.len() as u64,
            "planned size is exact"
        );
        let mut w = StreamWriter::new(Cursor::new(Vec::new()), &specs, &file.header.metadata)
            .expect("header");
        let mut entries: Vec<&PackedEntry> = packed.entries.iter().collect();
        entries.sort_by(|a, b| a.name().cmp(b.name()));
        for e in entries {
            w.write_entry(e).expect("writes entry");
        }
        let streamed = w.finish().expect("finishes").into_inner();
        assert!(streamed == expected, "streamed bytes differ ({mode:?})");
    }
}

#[test]
fn streamed_writer_rewrites_header_when_an_entry_differs_from_its_plan() {
    let model = small_model(2);
    let o = opts(2, Mode::Codebook);
    let (packed, _) =
        compress_file(&model, None, &o, None, &mut |_| Control::Continue).expect("compresses");
    let expected = packed.to_bytes().expect("serializes");
    let mut entries: Vec<&PackedEntry> = packed.entries.iter().collect();
    entries.sort_by(|a, b| a.name().cmp(b.name()));
    // Plan every packed tensor with more groups than it got (longer header),
    // then with fewer (shorter header); both must end identical.
    for planned_groups in [200u16, 1] {
        let specs: Vec<EntrySpec> = entries
            .iter()
            .map(|e| match e {
                PackedEntry::Packed(p) => EntrySpec::packed(
                    &p.name,
                    p.dtype,
                    &p.shape,
                    p.n_out,
                    p.n_in,
                    p.bits,
                    p.dim,
                    planned_groups,
                    p.mode,
                    p.rotation.clone(),
                ),
                other => EntrySpec::of_entry(other),
            })
            .collect();
        let mut w =
            StreamWriter::new(Cursor::new(Vec::new()), &specs, &packed.metadata).expect("header");
        for e in &entries {
            w.write_entry(e).expect("writes entry");
        }
        let streamed = w.finish().expect("finishes").into_inner();
        assert!(streamed == expected, "planned G = {planned_groups}");
    }
    // Out of order is refused.
    let specs: Vec<EntrySpec> = entries.iter().map(|e| EntrySpec::of_entry(e)).collect();
    let mut w =
        StreamWriter::new(Cursor::new(Vec::new()), &specs, &packed.metadata).expect("header");
    assert!(w.write_entry(entries[1]).is_err());
}

#[test]
fn cli_streamed_output_equals_in_memory_compression() {
    let dir = tmp_dir("stream");
    let input = dir.join("model.safetensors");
    let model = small_model(3);
    std::fs::write(&input, &model).expect("writes");
    let out = dir.join("packed.safetensors");
    jlcm(&[
        "compress",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--bits",
        "3",
        "--groups",
        "4",
        "--iters",
        "2",
        "--seed",
        "7",
    ]);
    let (packed, _) = compress_file(&model, None, &opts(3, Mode::Codebook), None, &mut |_| {
        Control::Continue
    })
    .expect("compresses");
    let expected = packed.to_bytes().expect("serializes");
    let got = std::fs::read(&out).expect("output exists");
    assert!(
        got == expected,
        "CLI output differs from PackedFile::to_bytes"
    );
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("lists")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("jlcm-tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn four_shards_merged_equal_a_single_run() {
    let dir = tmp_dir("shards");
    let input = dir.join("model.safetensors");
    std::fs::write(&input, small_model(4)).expect("writes");
    let common = [
        "--bits", "2", "--groups", "4", "--iters", "2", "--seed", "11",
    ];
    let single = dir.join("single.safetensors");
    let mut args = vec![
        "compress",
        input.to_str().unwrap(),
        "-o",
        single.to_str().unwrap(),
    ];
    args.extend(common);
    jlcm(&args);
    let mut parts = Vec::new();
    for i in 0..4 {
        let part = dir.join(format!("part{i}.safetensors"));
        let shard = format!("{i}/4");
        let mut args = vec![
            "compress",
            input.to_str().unwrap(),
            "-o",
            part.to_str().unwrap(),
            "--shard",
            &shard,
        ];
        args.extend(common);
        jlcm(&args);
        parts.push(part);
    }
    let merged = dir.join("merged.safetensors");
    // Parts in scrambled order: merge does not care.
    let mut args = vec!["merge"];
    for i in [2, 0, 3, 1] {
        args.push(parts[i].to_str().unwrap());
    }
    args.extend(["-o", merged.to_str().unwrap()]);
    jlcm(&args);
    let a = std::fs::read(&single).expect("single");
    let b = std::fs::read(&merged).expect("merged");
    assert!(a == b, "merged parts differ from the single run");
    // A missing part is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_jlcm"))
        .args([
            "merge",
            parts[0].to_str().unwrap(),
            parts[1].to_str().unwrap(),
            "-o",
        ])
        .arg(dir.join("bad.safetensors"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing part"));
}

#[test]
fn budget_meets_the_target_and_gives_bits_where_loss_falls_fastest() {
    // Two equal-shape tensors; `loud` has 20x the scale, so its absolute
    // loss falls 400x faster per bit than `quiet`'s.
    let n_out = 64;
    let n_in = 64;
    let loud: Vec<f32> = common::weights(n_out, n_in, 5)
        .iter()
        .map(|v| v * 20.0)
        .collect();
    let quiet = common::weights(n_out, n_in, 6);
    let tensors = vec![
        (
            "loud.weight".to_string(),
            OwnedTensor {
                dtype: Dtype::F32,
                shape: vec![n_out, n_in],
                data: st::from_f32(Dtype::F32, &loud),
            },
        ),
        (
            "quiet.weight".to_string(),
            OwnedTensor {
                dtype: Dtype::F32,
                shape: vec![n_out, n_in],
                data: st::from_f32(Dtype::F32, &quiet),
            },
        ),
    ];
    let dir = tmp_dir("budget");
    let input = dir.join("model.safetensors");
    std::fs::write(
        &input,
        st::write(&tensors, &BTreeMap::new()).expect("writes"),
    )
    .expect("writes");
    let size_at = |loud_bits: u8, quiet_bits: u8| -> u64 {
        let specs = vec![
            EntrySpec::packed(
                "loud.weight",
                Dtype::F32,
                &[n_out, n_in],
                n_out,
                n_in,
                loud_bits,
                1,
                4,
                Mode::Codebook,
                None,
            ),
            EntrySpec::packed(
                "quiet.weight",
                Dtype::F32,
                &[n_out, n_in],
                n_out,
                n_in,
                quiet_bits,
                1,
                4,
                Mode::Codebook,
                None,
            ),
        ];
        planned_file_len(&specs, &BTreeMap::new()).expect("plans")
    };
    // Room for one tensor at 3 bits, not both.
    let target = size_at(3, 2) + 100;
    assert!(target < size_at(3, 3));
    let out = dir.join("packed.safetensors");
    jlcm(&[
        "compress",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--target-size",
        &target.to_string(),
        "--groups",
        "4",
        "--iters",
        "1",
        "--min-bits",
        "2",
        "--max-bits",
        "4",
    ]);
    let bytes = std::fs::read(&out).expect("output");
    assert!(bytes.len() as u64 <= target, "{} > {target}", bytes.len());
    let packed = PackedFile::from_bytes(&bytes).expect("valid packed file");
    let bits: BTreeMap<String, u8> = packed
        .entries
        .iter()
        .filter_map(|e| match e {
            PackedEntry::Packed(p) => Some((p.name.clone(), p.bits)),
            _ => None,
        })
        .collect();
    assert_eq!(bits["loud.weight"], 3);
    assert_eq!(bits["quiet.weight"], 2);
    // A saved plan reproduces the same file without estimating again.
    let plan = dir.join("plan.json");
    let planned_out = dir.join("unused.safetensors");
    jlcm(&[
        "compress",
        input.to_str().unwrap(),
        "-o",
        planned_out.to_str().unwrap(),
        "--target-size",
        &target.to_string(),
        "--groups",
        "4",
        "--iters",
        "1",
        "--min-bits",
        "2",
        "--max-bits",
        "4",
        "--plan-only",
        "--save-plan",
        plan.to_str().unwrap(),
    ]);
    assert!(!planned_out.exists(), "--plan-only writes no model");
    let replay = dir.join("replay.safetensors");
    jlcm(&[
        "compress",
        input.to_str().unwrap(),
        "-o",
        replay.to_str().unwrap(),
        "--plan",
        plan.to_str().unwrap(),
        "--groups",
        "4",
        "--iters",
        "1",
    ]);
    assert!(
        std::fs::read(&replay).expect("replay") == bytes,
        "--plan gives the same bytes"
    );
    // A target in bits per weight is met too, and a target below the minimum is refused.
    let out2 = dir.join("packed2.safetensors");
    jlcm(&[
        "compress",
        input.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
        "--target-bpw",
        "3.2",
        "--groups",
        "4",
        "--iters",
        "1",
    ]);
    let len2 = std::fs::metadata(&out2).expect("output").len();
    assert!(len2 as f64 * 8.0 <= 3.2 * (2 * n_out * n_in) as f64);
    let bad = Command::new(env!("CARGO_BIN_EXE_jlcm"))
        .args(["compress", input.to_str().unwrap(), "-o"])
        .arg(dir.join("bad.safetensors"))
        .args(["--target-size", "100"])
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    assert!(!dir.join("bad.safetensors").exists());
}

#[test]
fn budget_by_sensitivity_gives_bits_where_the_end_to_end_error_is() {
    // The same two tensors as above: by calibrated loss `loud` gets the
    // extra bit. A calibration file whose sensitivities say `quiet` moves
    // the model's output 10^4 times more per unit of loss (25x more than
    // `loud` in total) must flip the choice; `--allocate-by loss` must not.
    let (n_out, n_in) = (64, 64);
    let loud: Vec<f32> = common::weights(n_out, n_in, 5)
        .iter()
        .map(|v| v * 20.0)
        .collect();
    let quiet = common::weights(n_out, n_in, 6);
    let tensor = |w: &[f32]| OwnedTensor {
        dtype: Dtype::F32,
        shape: vec![n_out, n_in],
        data: st::from_f32(Dtype::F32, w),
    };
    let dir = tmp_dir("budget-sensitivity");
    let input = dir.join("model.safetensors");
    let model = vec![
        ("loud.weight".to_string(), tensor(&loud)),
        ("quiet.weight".to_string(), tensor(&quiet)),
    ];
    std::fs::write(&input, st::write(&model, &BTreeMap::new()).expect("writes")).expect("writes");
    let mut identity = vec![0f32; n_in * n_in];
    for i in 0..n_in {
        identity[i * n_in + i] = 1.0;
    }
    let h = |shape: usize| OwnedTensor {
        dtype: Dtype::F32,
        shape: vec![shape, shape],
        data: st::from_f32(Dtype::F32, &identity),
    };
    let calib_tensors = vec![
        ("loud.weight".to_string(), h(n_in)),
        ("quiet.weight".to_string(), h(n_in)),
    ];
    let mut sens = jlcm::engine::calib::Sensitivities::new();
    for (name, distortion) in [("loud.weight", 1.0), ("quiet.weight", 1e4)] {
        sens.insert(
            name.to_string(),
            jlcm::engine::calib::Sensitivity {
                loss: 1.0,
                distortion,
            },
        );
    }
    let mut meta = BTreeMap::new();
    meta.insert(
        jlcm::engine::calib::SENSITIVITY_KEY.to_string(),
        serde_json::to_string(&sens).expect("json"),
    );
    let calib = dir.join("calib.safetensors");
    std::fs::write(&calib, st::write(&calib_tensors, &meta).expect("writes")).expect("writes");
    let plain_calib = dir.join("plain-calib.safetensors");
    std::fs::write(
        &plain_calib,
        st::write(&calib_tensors, &BTreeMap::new()).expect("writes"),
    )
    .expect("writes");
    let spec = |name: &str, bits: u8| {
        EntrySpec::packed(
            name,
            Dtype::F32,
            &[n_out, n_in],
            n_out,
            n_in,
            bits,
            1,
            4,
            Mode::Codebook,
            None,
        )
    };
    let target = planned_file_len(
        &[spec("loud.weight", 3), spec("quiet.weight", 2)],
        &BTreeMap::new(),
    )
    .expect("plans")
        + 100;
    let plan_bits = |calib: &Path, by: &str| -> BTreeMap<String, u8> {
        let plan = dir.join(format!("plan-{by}.json"));
        jlcm(&[
            "compress",
            input.to_str().unwrap(),
            "-o",
            dir.join("unused.safetensors").to_str().unwrap(),
            "--calib",
            calib.to_str().unwrap(),
            "--allocate-by",
            by,
            "--target-size",
            &target.to_string(),
            "--groups",
            "4",
            "--min-bits",
            "2",
            "--max-bits",
            "4",
            "--plan-only",
            "--save-plan",
            plan.to_str().unwrap(),
        ]);
        serde_json::from_str(&std::fs::read_to_string(&plan).expect("plan")).expect("json")
    };
    let by_loss = plan_bits(&calib, "loss");
    assert_eq!((by_loss["loud.weight"], by_loss["quiet.weight"]), (3, 2));
    let by_sensitivity = plan_bits(&calib, "sensitivity");
    assert_eq!(
        (
            by_sensitivity["loud.weight"],
            by_sensitivity["quiet.weight"]
        ),
        (2, 3)
    );
    // `auto` uses the sensitivities when the file has them, the loss when not.
    assert_eq!(plan_bits(&calib, "auto"), by_sensitivity);
    assert_eq!(plan_bits(&plain_calib, "auto"), by_loss);
    // Asking for sensitivities a file does not have is one clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_jlcm"))
        .args(["compress", input.to_str().unwrap(), "-o"])
        .arg(dir.join("bad.safetensors"))
        .args(["--calib", plain_calib.to_str().unwrap()])
        .args(["--allocate-by", "sensitivity", "--target-size"])
        .arg(target.to_string())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("calibrate --sensitivity"));
}

#[test]
fn ctrl_c_leaves_no_output_and_no_temporary_file() {
    // Big enough that the debug-build engine is still busy when the signal
    // comes (we wait for the temporary file, then interrupt).
    let mut tensors = Vec::new();
    for i in 0..16 {
        let w = common::weights(384, 384, 20 + i);
        tensors.push((
            format!("layer{i}.weight"),
            OwnedTensor {
                dtype: Dtype::F16,
                shape: vec![384, 384],
                data: st::from_f32(Dtype::F16, &w),
            },
        ));
    }
    let dir = tmp_dir("interrupt");
    let input = dir.join("model.safetensors");
    std::fs::write(
        &input,
        st::write(&tensors, &BTreeMap::new()).expect("writes"),
    )
    .expect("writes");
    let out = dir.join("packed.safetensors");
    let mut child = Command::new(env!("CARGO_BIN_EXE_jlcm"))
        .args([
            "compress",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--bits",
            "4",
            "--iters",
            "200",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let has_tmp = || {
        std::fs::read_dir(&dir)
            .expect("lists")
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains("jlcm-tmp"))
    };
    while !has_tmp() {
        if let Some(status) = child.try_wait().expect("polls") {
            panic!("finished before it could be interrupted: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let output = child.wait_with_output().expect("exits");
    assert!(!output.status.success(), "an interrupted run must fail");
    assert!(String::from_utf8_lossy(&output.stderr).contains("interrupted"));
    assert!(!out.exists(), "no output after Ctrl-C");
    assert!(!has_tmp(), "temporary file removed");
}

#[test]
fn cli_with_calibration_equals_in_memory_compression() {
    let dir = tmp_dir("calib");
    let input = dir.join("model.safetensors");
    let model = small_model(9);
    std::fs::write(&input, &model).expect("writes");
    // X^T X / n for two of the weights (16 and 24 input columns).
    let mut calib = Vec::new();
    for (name, n_in) in [
        ("model.layers.0.self_attn.q_proj.weight", 16usize),
        ("model.layers.1.mlp.down_proj.weight", 24),
    ] {
        let n = 64;
        let x = common::weights(n, n_in, 99 + n_in as u64);
        let mut h = vec![0f32; n_in * n_in];
        for r in 0..n {
            for a in 0..n_in {
                for b in 0..n_in {
                    h[a * n_in + b] += x[r * n_in + a] * x[r * n_in + b] / n as f32;
                }
            }
        }
        calib.push((
            name.to_string(),
            OwnedTensor {
                dtype: Dtype::F32,
                shape: vec![n_in, n_in],
                data: st::from_f32(Dtype::F32, &h),
            },
        ));
    }
    let calib_bytes = st::write(&calib, &BTreeMap::new()).expect("writes");
    let calib_path = dir.join("H.safetensors");
    std::fs::write(&calib_path, &calib_bytes).expect("writes");
    let out = dir.join("packed.safetensors");
    jlcm(&[
        "compress",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--calib",
        calib_path.to_str().unwrap(),
        "--bits",
        "3",
        "--groups",
        "4",
        "--iters",
        "2",
        "--seed",
        "7",
    ]);
    let table = jlcm::engine::compress::read_calibration(&calib_bytes).expect("reads");
    let (packed, _) = compress_file(
        &model,
        Some(&table),
        &opts(3, Mode::Codebook),
        None,
        &mut |_| Control::Continue,
    )
    .expect("compresses");
    let got = std::fs::read(&out).expect("output");
    assert!(
        got == packed.to_bytes().expect("serializes"),
        "calibrated CLI output differs"
    );
}
