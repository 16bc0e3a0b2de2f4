// The check every consumer runs: build a small safetensors file, compress its
// weight, pack it with the raw bias, decode the packed file and check the
// decoded weight is close to the original.

/** A deterministic synthetic safetensors file: `w` (F32 64x128) and `b` (F32 64). */
export function syntheticSafetensors() {
  const rows = 64, cols = 128;
  const w = new Float32Array(rows * cols);
  let s = 12345;
  for (let i = 0; i < w.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const u = s / 2 ** 32 - 0.5;
    w[i] = u * u * u * 8 * (1 + (i / cols) % 4); // heavy-ish tails, rows of different scales
  }
  const b = new Float32Array(rows).map((_, i) => i / rows);
  const header = {
    w: { dtype: "F32", shape: [rows, cols], data_offsets: [0, w.byteLength] },
    b: { dtype: "F32", shape: [rows], data_offsets: [w.byteLength, w.byteLength + b.byteLength] },
  };
  let json = JSON.stringify(header);
  while ((json.length + 8) % 8) json += " ";
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + w.byteLength + b.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  out.set(new Uint8Array(w.buffer), 8 + head.length);
  out.set(new Uint8Array(b.buffer), 8 + head.length + w.byteLength);
  return out;
}

/** Compress, pack, decode; throws on any mismatch; returns a summary. */
export async function compressAndDecode(jlcm) {
  const file = syntheticSafetensors();
  const header = jlcm.parseHeader(file.subarray(0, jlcm.headerByteLength(file)), file.length);
  const [w, b] = ["w", "b"].map((n) => header.tensors.find((t) => t.name === n));
  if (!w.compressible || b.compressible) throw new Error("compressible flags are wrong");
  const events = [];
  const packed = jlcm.compressTensor(w, file.subarray(w.start, w.end), { bits: 2, groups: 4, iters: 5 }, {
    onProgress: (e) => { events.push(e.type); },
  });
  const report = packed.report();
  for (let i = 1; i < report.losses.length; i++) {
    if (report.losses[i].loss > report.losses[i - 1].loss * (1 + 1e-9)) throw new Error("loss increased");
  }
  const builder = new jlcm.PackedFileBuilder();
  builder.addPackedFile(packed.toPackedFile()); // as a page merges its workers' results
  builder.addRaw(b, file.subarray(b.start, b.end));
  const packedFile = builder.toBytes();
  const info = jlcm.inspectPackedFile(packedFile);
  const dense = jlcm.decodePackedFile(packedFile);
  const decodedHeader = jlcm.parseHeader(dense);
  const dw = decodedHeader.tensors.find((t) => t.name === "w");
  const db = decodedHeader.tensors.find((t) => t.name === "b");
  const original = jlcm.readTensor(w, file.subarray(w.start, w.end));
  const decoded = jlcm.readTensor(dw, dense.subarray(dw.start, dw.end));
  let e2 = 0, w2 = 0;
  for (let i = 0; i < original.length; i++) { e2 += (decoded[i] - original[i]) ** 2; w2 += original[i] ** 2; }
  const relError = Math.sqrt(e2 / w2);
  const biasSame = dense.subarray(db.start, db.end).every((v, i) => v === file[b.start + i]);
  // Analysis, as the page draws it.
  const analysis = jlcm.analyseTensor(w, file.subarray(w.start, w.end), { groups: 4, bins: 32 });
  if (analysis.groups.count !== report.groups && analysis.groups.count > 4) throw new Error("analysis groups");
  if (analysis.histogram.counts.reduce((a, c) => a + c, 0) !== 64 * 128) throw new Error("histogram total");
  // Packed matvec agrees with the decoded weights.
  const matrix = jlcm.PackedMatrix.fromPackedFile(packedFile, "w");
  const x = new Float32Array(128).map((_, i) => Math.sin(i));
  const y = matrix.matmul(x);
  const decodedW = packed.decode();
  for (let r = 0; r < 64; r++) {
    let want = 0;
    for (let j = 0; j < 128; j++) want += decodedW[r * 128 + j] * x[j];
    if (Math.abs(y[r] - want) > 1e-3 * (1 + Math.abs(want))) throw new Error(`matmul row ${r}: ${y[r]} vs ${want}`);
  }
  matrix.free();
  let badOptions = "none";
  try { jlcm.compressTensor(w, file.subarray(w.start, w.end), { bits: 2, colour: "red" }); } catch (e) { badOptions = e.code; }
  let badFile = "none";
  try { jlcm.parseHeader(new Uint8Array([1, 2, 3])); } catch (e) { badFile = e instanceof Error && e.code; }
  let cancelled = "no";
  try {
    const abort = new AbortController();
    jlcm.compressTensor(w, file.subarray(w.start, w.end), { bits: 2 }, { signal: abort.signal, onProgress: () => abort.abort() });
  } catch (e) { cancelled = e.code; }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", packedFile));
  const sha256 = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  const result = {
    sha256, simd128: jlcm.simd128Enabled(), bpw: info.bpw, ratio: info.ratio, relError, biasSame,
    events: events.length, cancelled, badOptions, badFile, matches: Math.abs(relError - report.relWeightError) < 1e-3,
  };
  const ok = result.simd128 && biasSame && relError < 0.5 && info.bpw < 4 && events.length > 3
    && cancelled === "E_CANCELLED" && badOptions === "E_OPTIONS" && badFile === "E_FORMAT" && result.matches && dw.dtype === "F32" && dw.shape.join() === "64,128";
  packed.free();
  if (!ok) throw new Error("consumer check failed: " + JSON.stringify(result));
  return result;
}
