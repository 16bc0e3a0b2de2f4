// Compress a model's weights with the wasm package API in Node, one tensor
// after the other on one thread (what one page worker does), and write the
// packed file exactly as `jlcm compress` does (input header order, input
// metadata kept), so the two can be compared byte for byte.
//
//   node scripts/bench-engine-wasm.mjs PKG_DIR MODEL.safetensors OUT.safetensors \
//        REGEX [H.safetensors] [BITS]
//
// PKG_DIR holds wasm-pack's `jlcm.js` + `jlcm_bg.wasm` (--target web).
// Prints one JSON object on stdout: wall and CPU seconds of the compression
// (file reading and writing excluded), summed final losses, and CPU seconds
// per phase from the progress events (grouping, init = k-means + initial
// mapping, codebook steps, mapping passes, packing), and the size of the
// wasm memory at the end (it never shrinks: the module's peak heap).
import { readFileSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";

const [pkgDir, modelPath, outPath, pattern, calibPath, bitsArg] = process.argv.slice(2);
if (!outPath || !pattern) {
  console.error("usage: bench-engine-wasm.mjs PKG_DIR MODEL OUT REGEX [H.safetensors|-] [BITS]");
  process.exit(2);
}
const jlcm = await import(pathToFileURL(`${pkgDir}/jlcm.js`).href);
const wasm = jlcm.initSync({ module: readFileSync(`${pkgDir}/jlcm_bg.wasm`) });
if (!jlcm.simd128Enabled()) throw new Error("this wasm build has no SIMD128");

const model = readFileSync(modelPath);
const header = jlcm.parseHeader(model.subarray(0, jlcm.headerByteLength(model.subarray(0, 8))), model.length);
const calib = calibPath && calibPath !== "-" ? readFileSync(calibPath) : null;
const calibHeader = calib
  ? jlcm.parseHeader(calib.subarray(0, jlcm.headerByteLength(calib.subarray(0, 8))), calib.length)
  : null;
const options = { bits: Number(bitsArg ?? 2) };
// Same selection as the CLI: compressible and matching the regex (unanchored).
const re = new RegExp(pattern);

// Process CPU milliseconds (user + system; Node's own threads are idle here).
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const phases = { setup: 0, grouping: 0, init: 0, learning: 0, codebook: 0, mapping: 0, packing: 0 };
let compressWall = 0;
let lossSum = 0;
let compressed = 0;
const cpu0 = process.cpuUsage();
const builder = new jlcm.PackedFileBuilder();
for (const [k, v] of Object.entries(header.metadata)) builder.setMetadata(k, v);
for (const t of header.tensors) {
  const bytes = model.subarray(t.start, t.end);
  if (!(t.compressible && re.test(t.name))) {
    builder.addRaw(t, bytes);
    continue;
  }
  const context = {};
  if (calibHeader) {
    const h = calibHeader.tensors.find((c) => c.name === t.name);
    if (h) {
      // Copy into an aligned buffer: the file's data offset need not be 4-aligned.
      const raw = calib.subarray(h.start, h.end);
      context.calibration = new Float32Array(new Uint8Array(raw).buffer);
    }
  }
  // Each event ends a segment: a phase event ends the phase in progress, a
  // learning step's loss event ends that step (codebook or mapping).
  let current = "setup";
  let last = 0;
  context.onProgress = (e) => {
    const now = cpuMs();
    const label = e.type === "loss" && e.point.kind !== "init" ? e.point.kind : current;
    phases[label] += now - last;
    last = now;
    if (e.type === "phase") current = e.phase;
    return true;
  };
  const t0 = performance.now();
  last = cpuMs();
  const ct = jlcm.compressTensor({ name: t.name, dtype: t.dtype, shape: t.shape }, bytes, options, context);
  const t1 = performance.now();
  phases[current] += cpuMs() - last;
  compressWall += t1 - t0;
  const losses = ct.report().losses;
  lossSum += losses[losses.length - 1].loss;
  builder.addCompressed(ct);
  ct.free();
  compressed++;
}
const cpu = process.cpuUsage(cpu0);
const out = builder.toBytes();
writeFileSync(outPath, out);
for (const k of Object.keys(phases)) phases[k] = +(phases[k] / 1000).toFixed(3);
console.log(
  JSON.stringify({
    tensors: compressed,
    wall_s: +(compressWall / 1000).toFixed(3),
    cpu_s: +((cpu.user + cpu.system) / 1e6).toFixed(3),
    loss_sum: lossSum,
    phases_s: phases,
    sha256: createHash("sha256").update(out).digest("hex"),
    // Linear memory never shrinks: its size is the module's peak heap.
    wasm_memory_mb: +(wasm.memory.buffer.byteLength / 2 ** 20).toFixed(1),
  }),
);
