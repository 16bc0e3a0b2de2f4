// Node: the MiniLM runtime of the package (dense and packed weights, the
// tokenizer module `jlcm/text` feeding the core model) gives the embeddings
// the native `jlcm embed` gives, within EMBED_BUDGET; and the package's
// calibration gives the native `jlcm calibrate` file, within CALIBRATION_BUDGET.
// Usage: node embed.js MODEL_DIR PACKED SENTENCES NATIVE_DENSE.npy NATIVE_PACKED.npy [NATIVE_CALIB.safetensors BATCH]
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as jlcm from "jlcm";
import { loadSentenceEncoder } from "jlcm/text";

/** Max abs difference to the native embeddings (same code, f32, SIMD128 vs AVX2 sums). */
const EMBED_BUDGET = 1e-4;
/**
 * Max abs difference of any H entry to the native one, relative to the
 * largest |H| entry: the f32 partial sums of XᵀX run on SIMD128 here and on
 * AVX2 natively (a different summation order), the f64 totals are the same code.
 */
const CALIBRATION_BUDGET = 1e-6;

/** The f32 data of a little-endian .npy file. */
function readNpy(path) {
  const b = readFileSync(path);
  const headerLen = b[6] === 1 ? b.readUInt16LE(8) + 10 : b.readUInt32LE(8) + 12;
  return new Float32Array(b.buffer.slice(b.byteOffset + headerLen, b.byteOffset + b.length));
}

const [dir, packedPath, sentencesPath, nativeDense, nativePacked, nativeCalib, calibBatch] = process.argv.slice(2);
const wasmBytes = (name) => readFileSync(fileURLToPath(import.meta.resolve(`jlcm/${name}`)));
const wasm = { core: { module_or_path: wasmBytes("jlcm_bg.wasm") } };
const texts = readFileSync(sentencesPath, "utf8").split("\n").filter((l) => l.trim());
const config = readFileSync(`${dir}/config.json`, "utf8");
const tokenizer = readFileSync(`${dir}/tokenizer.json`);
const out = {};
for (const [kind, weights, npy] of [["dense", `${dir}/model.safetensors`, nativeDense], ["packed", packedPath, nativePacked]]) {
  const encoder = await loadSentenceEncoder(config, tokenizer, readFileSync(weights), wasm);
  const t0 = performance.now();
  const got = encoder.embed(texts);
  const seconds = (performance.now() - t0) / 1000;
  const want = readNpy(npy);
  if (got.length !== want.length) throw new Error(`${kind}: ${got.length} values, native has ${want.length}`);
  let maxAbs = 0;
  for (let i = 0; i < got.length; i++) maxAbs = Math.max(maxAbs, Math.abs(got[i] - want[i]));
  out[kind] = { sentences: texts.length, sentencesPerSecond: texts.length / seconds, maxAbs, packedLinears: encoder.packedLinears, weightBytes: encoder.weightBytes };
  if (!(maxAbs <= EMBED_BUDGET)) throw new Error(`${kind}: max abs difference ${maxAbs} to native > ${EMBED_BUDGET}`);
  if (kind === "dense" && nativeCalib) out.calibration = checkCalibration(encoder);
  encoder.free();
}
if (out.packed.packedLinears === 0) throw new Error("the packed model ran no packed Linear layer");
console.log(JSON.stringify({ embed: out }));

/** The package's calibration file against the native one, tensor by tensor. */
function checkCalibration(encoder) {
  const batchSize = Number(calibBatch);
  const progress = [];
  const t0 = performance.now();
  const got = encoder.computeCalibration(texts, { batchSize }, { onProgress: (p) => { progress.push(p.done); } });
  const seconds = (performance.now() - t0) / 1000;
  const want = new Uint8Array(readFileSync(nativeCalib));
  const sameBytes = got.length === want.length && got.every((v, i) => v === want[i]);
  const a = jlcm.parseHeader(got), b = jlcm.parseHeader(want);
  if (a.tensors.map((t) => t.name).join() !== b.tensors.map((t) => t.name).join()) throw new Error("calibration: tensor names differ from native");
  let maxAbs = 0, maxH = 0;
  for (let i = 0; i < a.tensors.length; i++) {
    const x = jlcm.readTensor(a.tensors[i], got.subarray(a.tensors[i].start, a.tensors[i].end));
    const y = jlcm.readTensor(b.tensors[i], want.subarray(b.tensors[i].start, b.tensors[i].end));
    for (let j = 0; j < y.length; j++) { maxAbs = Math.max(maxAbs, Math.abs(x[j] - y[j])); maxH = Math.max(maxH, Math.abs(y[j])); }
  }
  const result = { tensors: a.tensors.length, bytes: got.length, sameBytes, maxAbs, maxRel: maxAbs / maxH, batches: progress.length, seconds };
  if (progress.at(-1) !== texts.length || progress.length !== Math.ceil(texts.length / batchSize)) throw new Error(`calibration progress ${progress}`);
  if (!(result.maxRel <= CALIBRATION_BUDGET)) throw new Error(`calibration: max abs difference ${maxAbs} (relative ${result.maxRel}) to native > ${CALIBRATION_BUDGET}`);
  let cancelled = "no";
  try { encoder.computeCalibration(texts, { batchSize }, { onProgress: () => false }); } catch (e) { cancelled = e.code; }
  if (cancelled !== "E_CANCELLED") throw new Error(`calibration cancel gave ${cancelled}`);
  return result;
}
