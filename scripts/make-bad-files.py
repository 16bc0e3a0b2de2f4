#!/usr/bin/env python3
"""Generate the bad-file corpus under tests/bad-files/ and its manifest.

Usage:
  python3 scripts/make-bad-files.py                 # writes tests/bad-files/
  python3 scripts/make-bad-files.py --seeds DIR --model MODEL_DIR
        # also writes fuzz seeds: small slices of the real model (needs the
        # model; packed seeds are then made with `jlcm compress` by fuzz.sh)

Every file is built from literal bytes here (no third-party modules), so the
corpus is reproducible and small. `manifest.json` says, for each file, what
each surface must answer:

  parse    - SafetensorsFile::parse (the reader every surface starts with)
  compress - compressing it with default options (engine, CLI `jlcm compress`,
             npm `compress`, the page)
  decode   - PackedFile::from_bytes + decode (CLI `jlcm decode`)
  inspect  - CLI `jlcm inspect`

Each answer is "ok" or {"code": <FormatError::code()>, "contains": [substrings
of the message]}; the substrings name the tensor and the problem, and hold in
every surface (bindings may add a prefix, never change the message).
"""

import json
import math
import os
import shutil
import subprocess
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "bad-files")


# --- writers -----------------------------------------------------------------

def with_header(header_text, data=b"", declared_len=None, pad=True):
    """Prefix + header text (space-padded to a multiple of 8) + data."""
    text = header_text.encode("utf-8") if isinstance(header_text, str) else header_text
    if pad:
        while (len(text) + 8) % 8:
            text += b" "
    n = len(text) if declared_len is None else declared_len
    return struct.pack("<Q", n) + text + data


def safetensors(tensors, metadata=None):
    """A valid file from [(name, dtype, shape, bytes)] laid out in order
    (keys as the Rust writer orders them, so its output is byte-identical)."""
    header = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    off = 0
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"data_offsets": [off, off + len(raw)], "dtype": dtype, "shape": shape}
        off += len(raw)
        data += raw
    return with_header(json.dumps(header, separators=(",", ":")), data)


def f32s(values):
    return b"".join(struct.pack("<f", v) for v in values)


def f16s(values):
    return b"".join(struct.pack("<e", v) for v in values)


def weights(n, seed=1):
    """Deterministic small weights (no NaN)."""
    out = []
    s = seed
    for _ in range(n):
        s = (s * 1103515245 + 12345) % (1 << 31)
        out.append((s / (1 << 31) - 0.5) * 0.1)
    return out


def pack_rows(rows, bits):
    """Bit-pack rows of indices little-endian, padding bits zero."""
    out = b""
    for row in rows:
        nbytes = (len(row) * bits + 7) // 8
        acc = 0
        for s, v in enumerate(row):
            acc |= v << (s * bits)
        out += acc.to_bytes(nbytes, "little")
    return out


def packed(name="enc.w", n_out=8, n_in=20, bits=3, dim=1, groups=2, mode="codebook",
           version="1", drop=(), tweak=None):
    """A packed file for one tensor (original F32 [n_out, n_in]) plus a raw
    bias, as the Rust writer lays it out. `tweak(parts, params)` may edit the
    parts {suffix: [dtype, shape, bytes]} and params before writing."""
    k = 1 << bits
    n_sub = -(-n_in // dim)
    rows = [[(r * 3 + s) % k for s in range(n_sub)] for r in range(n_out)]
    n_cb = groups if mode == "codebook" else 1
    cb = [(-1.0 + 2.0 * i / (k - 1 if k > 1 else 1)) * (1 + c) for c in range(n_cb)
          for i in range(k) for _ in range(dim)]
    parts = {
        ".jlcm.idx": ["U8", [n_out, (n_sub * bits + 7) // 8], pack_rows(rows, bits)],
        ".jlcm.codebook": ["F16", [n_cb, k, dim], f16s(cb)],
        ".jlcm.group": ["U8", [n_out], bytes(r % groups for r in range(n_out))],
    }
    if mode == "scale":
        parts[".jlcm.scale"] = ["F16", [groups], f16s([0.5 + g for g in range(groups)])]
    params = {"bits": bits, "dim": dim, "groups": groups, "mode": mode,
              "shape": [n_out, n_in], "dtype": "F32"}
    if tweak:
        tweak(parts, params)
    meta = {"jlcm.format": version}
    meta["jlcm:" + name] = params if isinstance(params, str) else json.dumps(params, separators=(",", ":"))
    tensors = [("bias", "F32", [4], f32s([0.1, 0.2, 0.3, 0.4]))]
    for suffix in (".jlcm.idx", ".jlcm.codebook", ".jlcm.group", ".jlcm.scale"):
        if suffix in parts and suffix not in drop:
            dtype, shape, raw = parts[suffix]
            tensors.append((name + suffix, dtype, shape, raw))
    return safetensors(tensors, meta)


# --- the corpus --------------------------------------------------------------

def err(code, *contains):
    return {"code": code, "contains": list(contains)}


OK = "ok"
CASES = []


def case(file, what, data, parse, compress=None, decode=None, inspect=None):
    """compress/decode/inspect default to the parse answer where the
    command fails at parsing; decode of a plain file that parses says it is
    not a packed file."""
    if compress is None:
        compress = parse
    if decode is None:
        decode = parse if parse != OK else err("packed_meta", "not a jlcm packed file")
    if inspect is None:
        inspect = parse
    CASES.append({"file": file, "what": what, "bytes": data, "parse": parse,
                  "compress": compress, "decode": decode, "inspect": inspect})


def build():
    w = weights(4 * 16)
    good = safetensors([("enc.w", "F32", [4, 16], f32s(w)), ("enc.b", "F32", [4], f32s(w[:4]))])
    header_len = struct.unpack("<Q", good[:8])[0]
    data_start = 8 + header_len

    # Truncation at every region of a valid file.
    case("truncated-prefix.safetensors", "5 bytes: cut inside the 8-byte length prefix",
         good[:5], err("too_short", "file too short", "5 bytes"))
    case("truncated-header.safetensors", "cut in the middle of the JSON header",
         good[:8 + header_len // 2], err("header_past_end", "runs past the end of the file"))
    case("truncated-data.safetensors", "cut in the middle of tensor `enc.w`'s data",
         good[:data_start + 40], err("data_length", "data section is 40 bytes", "declares 272", "truncated"))
    case("padded-data.safetensors", "8 stray bytes after the last tensor",
         good + b"\0" * 8, err("data_length", "data section is 280 bytes", "declares 272"))
    # Header length lies.
    case("header-len-past-end.safetensors", "prefix declares a 1,000,000-byte header in a small file",
         struct.pack("<Q", 1_000_000) + good[8:], err("header_past_end", "header length 1000000", "runs past the end"))
    case("header-over-cap.safetensors", "prefix declares a 200 MB header (cap 100 MB)",
         struct.pack("<Q", 200_000_000) + good[8:], err("header_too_large", "200000000", "100000000-byte cap"))
    case("header-len-max.safetensors", "prefix is u64::MAX",
         struct.pack("<Q", 2**64 - 1) + good[8:], err("header_too_large", "18446744073709551615"))
    # Not JSON, not UTF-8.
    case("header-invalid-utf8.safetensors", "header bytes are not UTF-8",
         with_header(b'{"enc.w\xff\xfe":{}}'), err("header_utf8", "not valid UTF-8 at byte 7"))
    case("header-invalid-json.safetensors", "header JSON stops mid-object",
         with_header('{"enc.w":{"dtype":"F32","shape":[4,'), err("header_invalid", "invalid header"))
    case("header-not-object.safetensors", "header is a JSON array",
         with_header("[1,2,3]"), err("header_invalid", "not a JSON object"))
    case("not-safetensors.safetensors", "a text file",
         b"this is not a safetensors file, just some text\n", err("header_too_large", "cap"))
    case("empty.safetensors", "zero bytes", b"", err("too_short", "file too short", "0 bytes"))
    case("tensor-entry-invalid.safetensors", "a negative dimension in `enc.w`'s shape",
         with_header('{"enc.w":{"dtype":"F32","shape":[-4,16],"data_offsets":[0,256]}}', b"\0" * 256),
         err("header_invalid", "tensor `enc.w`", "invalid value"))
    case("tensor-entry-missing-field.safetensors", "`enc.w` has no data_offsets",
         with_header('{"enc.w":{"dtype":"F32","shape":[4,16]}}'),
         err("header_invalid", "tensor `enc.w`", "data_offsets"))
    case("duplicate-name.safetensors", "`enc.w` appears twice in the header",
         with_header('{"enc.w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                     '"enc.w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8),
         err("header_invalid", "tensor `enc.w`", "appears twice"))
    case("metadata-not-strings.safetensors", "`__metadata__` holds a number",
         with_header('{"__metadata__":{"format":1},"enc.b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4),
         err("header_invalid", "__metadata__"))
    # Offsets.
    two = lambda a, b: with_header(
        '{"enc.a":{"dtype":"F32","shape":[4],"data_offsets":[%d,%d]},'
        '"enc.b":{"dtype":"F32","shape":[4],"data_offsets":[%d,%d]}}' % (a + b), b"\0" * max(a[1], b[1]))
    case("offsets-overlap.safetensors", "`enc.b` [8,24] overlaps `enc.a` [0,16]",
         two((0, 16), (8, 24)), err("header_invalid", "tensor `enc.b`", "overlap tensor `enc.a`"))
    case("offsets-gap.safetensors", "`enc.b` starts at 20, `enc.a` ends at 16",
         two((0, 16), (20, 36)), err("header_invalid", "tensor `enc.b`", "gap", "`enc.a`"))
    case("offsets-not-from-zero.safetensors", "the only tensor starts at byte 4",
         with_header('{"enc.a":{"dtype":"F32","shape":[4],"data_offsets":[4,20]}}', b"\0" * 20),
         err("header_invalid", "tensor `enc.a`", "gap", "start of the data section"))
    case("offsets-reversed.safetensors", "`enc.a` data_offsets [16, 0]",
         with_header('{"enc.a":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}}', b"\0" * 16),
         err("header_invalid", "tensor `enc.a`", "end before they start"))
    # Shapes and dtypes.
    case("shape-dtype-mismatch.safetensors", "`enc.w` is F32 [4,16] (256 bytes) but its range holds 128",
         with_header('{"enc.w":{"dtype":"F32","shape":[4,16],"data_offsets":[0,128]}}', b"\0" * 128),
         err("header_invalid", "tensor `enc.w`", "hold 128 bytes", "needs 256"))
    case("element-count-overflow.safetensors", "`enc.w` shape [2^32, 2^32, 16]: element count overflows u64",
         with_header('{"enc.w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}', b"\0" * 8),
         err("header_invalid", "tensor `enc.w`", "element count", "overflows"))
    case("byte-size-overflow.safetensors", "`enc.w` has 2^62 F32 elements: byte size overflows u64",
         with_header('{"enc.w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}}', b"\0" * 8),
         err("header_invalid", "tensor `enc.w`", "overflows"))
    case("offset-overflow.safetensors", "`enc.w` data_offsets near u64::MAX",
         with_header('{"enc.w":{"dtype":"U8","shape":[8],"data_offsets":[18446744073709551608,18446744073709551615]}}'),
         err("header_invalid", "tensor `enc.w`"))
    case("unsupported-dtype.safetensors", "`enc.w` has dtype Q4_K, which safetensors does not define",
         with_header('{"enc.w":{"dtype":"Q4_K","shape":[4,16],"data_offsets":[0,32]}}', b"\0" * 32),
         err("unsupported_dtype", "tensor `enc.w`", "unsupported dtype Q4_K"))
    case("sub-byte-misaligned.safetensors", "`enc.w` is 3 F4 values: not a whole number of bytes",
         with_header('{"enc.w":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}', b"\0" * 2),
         err("header_invalid", "tensor `enc.w`", "not a whole number of bytes"))
    # Valid files with tensors that are copied through, not compressed.
    case("int-matrix.safetensors", "an I32 [4,16] matrix: valid, copied through (integer weights are not compressed)",
         safetensors([("enc.ids", "I32", [4, 16], b"\1\0\0\0" * 64)]), OK, compress=OK, inspect=OK)
    case("zero-sized.safetensors", "F32 tensors of shape [0,64], [64,0] and [0]: valid, copied through",
         safetensors([("enc.empty_rows", "F32", [0, 64], b""), ("enc.empty_cols", "F32", [64, 0], b""),
                      ("enc.empty", "F32", [0], b"")]), OK, compress=OK, inspect=OK)
    case("one-row.safetensors", "an F32 [1,64] matrix: valid, copied through (fewer than 2 rows)",
         safetensors([("enc.row", "F32", [1, 64], f32s(weights(64)))]), OK, compress=OK, inspect=OK)
    case("narrow.safetensors", "an F32 [16,4] matrix: valid, copied through (fewer than 8 columns)",
         safetensors([("enc.narrow", "F32", [16, 4], f32s(weights(64)))]), OK, compress=OK, inspect=OK)
    case("empty-header.safetensors", "a file with no tensors",
         with_header("{}"), OK, compress=OK, inspect=OK)
    # Values.
    nan = list(w)
    nan[5] = math.nan
    nan[9] = math.inf
    nan[10] = -math.inf
    case("nan-weights.safetensors", "`enc.w` holds NaN and +-Inf (3 values, first at element 5)",
         safetensors([("enc.w", "F32", [4, 16], f32s(nan))]), OK,
         compress=err("non_finite", "tensor `enc.w`", "3 non-finite values", "first at element 5"), inspect=OK)
    nan16 = f16s(w[:5]) + b"\x00\x7e" + f16s(w[6:])
    case("nan-weights-f16.safetensors", "F16 `enc.w` holds a NaN at element 5",
         safetensors([("enc.w", "F16", [4, 16], nan16)]), OK,
         compress=err("non_finite", "tensor `enc.w`", "1 non-finite values", "first at element 5"), inspect=OK)

    # Packed files.
    case("packed-ok.packed.safetensors", "a valid packed file (codebook mode, 3 bits, 2 groups)",
         packed(), OK, compress=OK, decode=OK, inspect=OK)
    case("packed-ok-scale.packed.safetensors", "a valid packed file (scale mode, 2 bits, dim 2)",
         packed(bits=2, dim=2, mode="scale"), OK, compress=OK, decode=OK, inspect=OK)
    pk = packed()
    case("packed-truncated.packed.safetensors", "a packed file cut in its data section",
         pk[:len(pk) - 10], err("data_length", "truncated"))
    case("packed-wrong-version.packed.safetensors", "`jlcm.format` is 2",
         packed(version="2"), OK, compress=OK,
         decode=err("packed_meta", "format version 2 is not supported", "version 1"),
         inspect=err("packed_meta", "format version 2"))

    def group_id(parts, params):
        parts[".jlcm.group"][2] = bytes([0, 2, 0, 1, 0, 1, 0, 1])

    case("packed-group-out-of-range.packed.safetensors", "row 1 of `enc.w` has group 2 of 2",
         packed(tweak=group_id), OK, compress=OK,
         decode=err("packed_tensor", "packed tensor `enc.w`", "row 1 has group 2, only 2 groups"),
         inspect=err("packed_tensor", "`enc.w`", "group 2"))

    def padding(parts, params):
        raw = bytearray(parts[".jlcm.idx"][2])
        raw[8 * 3 - 1] |= 0x80  # row 2's last byte: bits 60..63 are padding
        parts[".jlcm.idx"][2] = bytes(raw)

    case("packed-padding-bits.packed.safetensors", "row 2 of `enc.w` has a non-zero padding bit (an index slot past the row)",
         packed(tweak=padding), OK, compress=OK,
         decode=err("packed_tensor", "packed tensor `enc.w`", "row 2 has non-zero padding bits"),
         inspect=err("packed_tensor", "`enc.w`", "padding"))

    def cb_shape(parts, params):
        parts[".jlcm.codebook"][1] = [2, 4, 2]  # same bytes, wrong shape

    case("packed-codebook-shape.packed.safetensors", "`enc.w`'s codebook is [2,4,2], its parameters need [2,8,1]",
         packed(tweak=cb_shape), OK, compress=OK,
         decode=err("packed_tensor", "packed tensor `enc.w`", "codebook shape [2, 4, 2], expected [2, 8, 1]"),
         inspect=err("packed_tensor", "codebook shape"))

    def cb_short(parts, params):
        parts[".jlcm.codebook"] = ["F16", [2, 4, 1], f16s([0.0] * 8)]

    case("packed-codebook-short.packed.safetensors", "`enc.w` has 4 codewords per codebook for 3-bit indices",
         packed(tweak=cb_short), OK, compress=OK,
         decode=err("packed_tensor", "packed tensor `enc.w`", "codebook shape [2, 4, 1], expected [2, 8, 1]"),
         inspect=err("packed_tensor", "codebook shape"))

    def idx_shape(parts, params):
        parts[".jlcm.idx"][1] = [16, 4]  # same 64 bytes, wrong shape

    case("packed-index-shape.packed.safetensors", "`enc.w`'s index part is [16,4], expected [8,8]",
         packed(tweak=idx_shape), OK, compress=OK,
         decode=err("packed_tensor", "packed tensor `enc.w`", "index shape [16, 4], expected [8, 8]"),
         inspect=err("packed_tensor", "index shape"))

    def params_shape(parts, params):
        params["shape"] = [16, 20]

    case("packed-params-shape.packed.safetensors", "parameters say `enc.w` is [16,20]; its parts hold 8 rows",
         packed(tweak=params_shape), OK, compress=OK,
         decode=err("packed_tensor", "packed tensor `enc.w`", "index shape [8, 8], expected [16, 8]"),
         inspect=err("packed_tensor", "index shape"))

    def bits9(parts, params):
        params["bits"] = 9

    case("packed-bad-bits.packed.safetensors", "parameters of `enc.w` say 9 bits",
         packed(tweak=bits9), OK, compress=OK,
         decode=err("packed_tensor", "packed tensor `enc.w`", "bits must be 1..=8, got 9"),
         inspect=err("packed_tensor", "bits must be"))

    def params_garbage(parts, params):
        params.clear()
        params["bits"] = "three"

    case("packed-bad-params.packed.safetensors", "parameters of `enc.w` are not the expected JSON",
         packed(tweak=params_garbage), OK, compress=OK,
         decode=err("packed_meta", "tensor `enc.w`", "bad parameters"),
         inspect=err("packed_meta", "bad parameters"))

    def nan_cb(parts, params):
        raw = bytearray(parts[".jlcm.codebook"][2])
        raw[6:8] = b"\x00\x7e"
        parts[".jlcm.codebook"][2] = bytes(raw)

    case("packed-nan-codebook.packed.safetensors", "`enc.w`'s codebook holds a NaN",
         packed(tweak=nan_cb), OK, compress=OK,
         decode=err("packed_tensor", "packed tensor `enc.w`", "non-finite"),
         inspect=err("packed_tensor", "non-finite"))

    def inf_scale(parts, params):
        parts[".jlcm.scale"][2] = f16s([1.0]) + b"\x00\x7c"

    case("packed-inf-scale.packed.safetensors", "`enc.w`'s scale holds +Inf",
         packed(mode="scale", tweak=inf_scale), OK, compress=OK,
         decode=err("packed_tensor", "packed tensor `enc.w`", "scale holds a non-finite"),
         inspect=err("packed_tensor", "non-finite"))

    def idx_dtype(parts, params):
        parts[".jlcm.idx"][0] = "I8"

    case("packed-part-dtype.packed.safetensors", "`enc.w`'s index part is I8",
         packed(tweak=idx_dtype), OK, compress=OK,
         decode=err("packed_tensor", "packed tensor `enc.w`", "wrong dtypes"),
         inspect=err("packed_tensor", "wrong dtypes"))
    case("packed-missing-part.packed.safetensors", "`enc.w` has no group-id part",
         packed(drop=(".jlcm.group",)), OK, compress=OK,
         decode=err("packed_tensor", "packed tensor `enc.w`", "part `enc.w.jlcm.group` is missing"),
         inspect=err("packed_tensor", "missing"))

    def orig_dtype(parts, params):
        params["dtype"] = "I64"

    case("packed-original-dtype.packed.safetensors", "parameters say `enc.w` was I64",
         packed(tweak=orig_dtype), OK, compress=OK,
         decode=err("packed_tensor", "packed tensor `enc.w`", "unsupported original dtype `I64`"),
         inspect=err("packed_tensor", "original dtype"))


def write_corpus():
    build()
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".safetensors"):
            os.remove(os.path.join(OUT, f))
    manifest = {
        "about": "Bad (and edge-case) files: what each surface must answer. "
                 "Generated by scripts/make-bad-files.py; see RELIABILITY.md.",
        "answers": "ok, or {code: FormatError::code(), contains: substrings of the one-line message}",
        "files": [],
    }
    total = 0
    for c in CASES:
        with open(os.path.join(OUT, c["file"]), "wb") as fh:
            fh.write(c["bytes"])
        total += len(c["bytes"])
        manifest["files"].append({k: c[k] for k in ("file", "what", "parse", "compress", "decode", "inspect")})
    with open(os.path.join(OUT, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
        fh.write("\n")
    write_file_list([c["file"] for c in CASES])
    print(f"{len(CASES)} files, {total} bytes, in {os.path.relpath(OUT, ROOT)}")


def write_file_list(files):
    """tests/bad-files/files.rs: the corpus and manifest built into the test
    binaries with include_bytes!, for the wasm suites (no file system in a
    browser). Manifest order; `tests/suite/bad_files.rs` checks it is complete."""
    lines = [
        "//! Generated by scripts/make-bad-files.py (do not edit): every file of the",
        "//! bad-file corpus and its manifest, built into the test binary so that the",
        "//! wasm suites (browser and Node: no file system) read the same bytes.",
        "",
        "/// `manifest.json`.",
        "pub const MANIFEST: &str = include_str!(\"manifest.json\");",
        "",
        "/// `(file name, bytes)` in manifest order.",
        "pub const FILES: &[(&str, &[u8])] = &[",
    ]
    lines += [f'    ("{f}", include_bytes!("{f}")),' for f in files]
    lines += ["];", ""]
    path = os.path.join(OUT, "files.rs")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    # As `cargo fmt` would leave it (deterministic for a given rustfmt).
    if shutil.which("rustfmt"):
        subprocess.run(["rustfmt", "--edition", "2021", path], check=True)


# --- fuzz seeds from the real model -------------------------------------------

def read_tensor(path, name):
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
        info = header[name]
        s, e = info["data_offsets"]
        fh.seek(8 + n + s)
        return info["dtype"], info["shape"], fh.read(e - s)


def slice_rows_cols(dtype, shape, raw, rows, cols):
    size = 4 if dtype == "F32" else 2
    n_in = shape[1] if len(shape) > 1 else shape[0]
    if len(shape) == 1:
        return [cols], raw[:cols * size]
    out = b""
    for r in range(rows):
        out += raw[r * n_in * size:(r * n_in + cols) * size]
    return [rows, cols], out


def to_f16(raw_f32):
    vals = struct.unpack("<%df" % (len(raw_f32) // 4), raw_f32)
    return f16s(vals)


def to_bf16(raw_f32):
    return b"".join(raw_f32[i + 2:i + 4] for i in range(0, len(raw_f32), 4))


def write_seeds(seed_dir, model_dir):
    path = os.path.join(model_dir, "model.safetensors")
    os.makedirs(seed_dir, exist_ok=True)
    q = read_tensor(path, "encoder.layer.0.attention.self.query.weight")
    b = read_tensor(path, "encoder.layer.0.attention.self.query.bias")
    ln = read_tensor(path, "embeddings.LayerNorm.weight")
    qs, qraw = slice_rows_cols(*q, rows=8, cols=64)
    bs, braw = slice_rows_cols(*b, rows=1, cols=8)
    ls, lraw = slice_rows_cols(*ln, rows=1, cols=16)
    name = "encoder.layer.0.attention.self.query"
    files = {
        "minilm-slice-f32.safetensors": safetensors(
            [(name + ".weight", "F32", qs, qraw), (name + ".bias", "F32", bs, braw),
             ("embeddings.LayerNorm.weight", "F32", ls, lraw)], {"format": "pt"}),
        "minilm-slice-f16.safetensors": safetensors(
            [(name + ".weight", "F16", qs, to_f16(qraw)), (name + ".bias", "F16", bs, to_f16(braw))]),
        "minilm-slice-bf16.safetensors": safetensors(
            [(name + ".weight", "BF16", qs, to_bf16(qraw))]),
    }
    for f, data in files.items():
        with open(os.path.join(seed_dir, f), "wb") as fh:
            fh.write(data)
    print(f"{len(files)} seeds from {path} in {seed_dir}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--seeds" in args:
        seed_dir = args[args.index("--seeds") + 1]
        model_dir = args[args.index("--model") + 1]
        write_seeds(seed_dir, model_dir)
    else:
        write_corpus()
