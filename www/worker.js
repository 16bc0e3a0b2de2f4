// A compression worker: one wasm instance, one job at a time. Messages are
// defined in protocol.js. Messages that arrive before `init` finishes wait in
// a queue; an init failure is sent back as `failed` instead of dying silently.

import { MSG, DEFAULT_OPTIONS } from './protocol.js';
import { toF32 } from './safetensors.js';
import { loadEngine, compressTensor, embedSentences, wasmMemoryBytes } from './engine.js';
import { calibrate } from './calibration-worker.js';
import { splitPacked, groupIdsOf, decodeF32, fromF32, rotatedRows } from './packed.js';
import { histogram, rowStats, range, centralRange, groupHistograms as groupHistogramsOf } from './stats.js';
import { armFault, injectArmedFault } from './faults.js';

/** @type {Promise<void>|null} */
let ready = null;
/** Values read to draw a tensor's histogram and row statistics, at most. */
const MAX_ANALYSED_VALUES = 4 << 20;

self.onmessage = async (/** @type {MessageEvent<import('./protocol.js').ToWorker>} */ e) => {
  const msg = e.data;
  if (msg.type === MSG.init) {
    ready = init(msg);
    return;
  }
  if (ready) await ready.catch(() => {});
  const id = /** @type {any} */ (msg).id;
  try {
    switch (msg.type) {
      case MSG.analyse: return await analyse(msg);
      case MSG.compress: return await compress(msg);
      case MSG.decode: return decode(msg);
      case MSG.embed: return await embed(msg);
      case MSG.calibrate: return await calibrate(msg, post);
      case MSG.fault: return armFault(/** @type {any} */ (msg).kind);
      default: throw new Error(`unknown message type \`${msg.type}\``);
    }
  } catch (err) {
    // A wasm trap (a Rust panic, or an allocation that failed: out of memory)
    // leaves the instance unusable: `wasm_trap` makes the pool restart us.
    const code = err instanceof WebAssembly.RuntimeError ? 'wasm_trap' : err?.code ?? err?.name ?? 'error';
    post({ type: MSG.error, id, message: err?.message ?? String(err), code });
  }
};

/** @param {import('./protocol.js').FromWorker} m @param {Transferable[]} [transfer] */
function post(m, transfer = []) {
  self.postMessage(m, transfer);
}

/** @param {import('./protocol.js').InitMsg} msg */
async function init(msg) {
  if (!msg.module) {
    // No wasm package built: the JS-only jobs (analyse, decode) still run.
    post({ type: MSG.ready, simd: false, version: 'none', features: [] });
    return;
  }
  try {
    const info = await loadEngine(msg.glueUrl, msg.module);
    if (info.features.includes('compressTensor')) warmUp();
    post({ type: MSG.ready, ...info });
  } catch (err) {
    post({ type: MSG.failed, message: `the wasm engine did not load: ${err?.message ?? err}` });
    throw err;
  }
}

/**
 * Compress a small synthetic matrix once, with and without a dense H, before
 * reporting ready: the engine starts in the browser's baseline wasm code and
 * is recompiled optimised only once its loops are hot, which made the first
 * run of a freshly opened page ~25 % slower than the next. Costs ~0.1 s of
 * this worker's time at start-up.
 */
function warmUp() {
  const nOut = 256, nIn = 256;
  const w = new Float32Array(nOut * nIn);
  let s = 1;
  for (let i = 0; i < w.length; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; w[i] = (s / 2 ** 32 - 0.5) * (1 + (i % 5)); }
  const h = new Float32Array(nIn * nIn);
  for (let i = 0; i < nIn; i++) for (let j = 0; j < nIn; j++) h[i * nIn + j] = i === j ? 2 : 1 / (1 + Math.abs(i - j));
  const t = { name: 'warm-up', dtype: 'F32', shape: [nOut, nIn] };
  const options = { ...DEFAULT_OPTIONS, groups: 4 };
  try {
    for (const hessian of [null, h]) {
      const raw = new Uint8Array(w.buffer);
      const { report, packed } = compressTensor(t, raw, options, hessian, () => {});
      summarise(t, raw, report, packed);
    }
  } catch { /* a real job reports the engine's errors */ }
}

/** @param {import('./protocol.js').TensorRef} t */
function matrixOf(t) {
  const nOut = t.shape[0];
  const nIn = t.shape.slice(1).reduce((a, b) => a * b, 1);
  return { nOut, nIn };
}

/**
 * Values of a tensor, reading at most `maxRows` rows (evenly spread blocks
 * of contiguous rows) so that a multi-GB embedding never lands in memory.
 * @param {import('./protocol.js').TensorRef} t
 * @param {number} maxRows
 */
async function readRows(t, maxRows) {
  const { nOut, nIn } = matrixOf(t);
  maxRows = Math.max(32, Math.min(maxRows, Math.floor(MAX_ANALYSED_VALUES / nIn)));
  const elt = t.dtype === 'F32' ? 4 : 2;
  const rowBytes = nIn * elt;
  if (nOut <= maxRows) return { values: toF32(t.dtype, await t.file.slice(t.start, t.end).arrayBuffer()), rows: nOut };
  const blocks = 32;
  const perBlock = Math.max(1, Math.floor(maxRows / blocks));
  const chunks = [];
  for (let b = 0; b < blocks; b++) {
    const r0 = Math.floor((b * (nOut - perBlock)) / (blocks - 1));
    chunks.push(t.file.slice(t.start + r0 * rowBytes, t.start + (r0 + perBlock) * rowBytes).arrayBuffer());
  }
  const bufs = await Promise.all(chunks);
  const all = new Uint8Array(bufs.reduce((a, b) => a + b.byteLength, 0));
  let o = 0;
  for (const b of bufs) { all.set(new Uint8Array(b), o); o += b.byteLength; }
  return { values: toF32(t.dtype, all.buffer), rows: blocks * perBlock };
}

/** @param {import('./protocol.js').AnalyseMsg} msg */
async function analyse(msg) {
  const t0 = performance.now();
  const { nOut, nIn } = matrixOf(msg.tensor);
  const { values, rows } = await readRows(msg.tensor, msg.maxRows);
  const [min, max] = range(values);
  const [lo, hi] = centralRange(values);
  const h = histogram(values, lo, hi, msg.bins);
  const rs = rowStats(values, rows, values.length / rows);
  post({ type: MSG.analysed, id: msg.id, histogram: h, min, max, rows: rs, rowsRead: rows, nOut, nIn, ms: performance.now() - t0 },
    [rs.mean.buffer, rs.std.buffer, rs.absMax.buffer]);
}

/** @param {import('./protocol.js').CompressMsg} msg */
async function compress(msg) {
  const t0 = performance.now();
  await injectArmedFault();
  const t = msg.tensor;
  const raw = new Uint8Array(await t.file.slice(t.start, t.end).arrayBuffer());
  let hessian = null;
  if (msg.hessian) hessian = new Float32Array(await msg.hessian.file.slice(msg.hessian.start, msg.hessian.end).arrayBuffer());
  const { report, packed } = compressTensor(t, raw, msg.options, hessian, (event) => {
    if (event.type === 'phase' || event.type === 'loss') post({ type: MSG.progress, id: msg.id, event });
  });
  const { parts, params, groupHistograms } = summarise(t, raw, report, packed);
  post({ type: MSG.compressed, id: msg.id, report, parts, params, groupHistograms, ms: performance.now() - t0, wasmBytes: wasmMemoryBytes() },
    parts.map((p) => p.data.buffer));
}

/**
 * The packed parts of one compressed tensor, and each group's value
 * distribution over its own central range (widened to show all its
 * codewords), for the groups view.
 * @param {import('./protocol.js').TensorRef|{name: string, dtype: string, shape: number[]}} t
 * @param {Uint8Array} raw @param {any} report @param {Uint8Array} packed
 */
function summarise(t, raw, report, packed) {
  const { parts, params } = splitPacked(packed, t.name);
  const { nOut, nIn } = matrixOf(t);
  // A rotated tensor's codebooks quantise the rotated rows W Rᵀ: draw those.
  const values = rotatedRows(toF32(t.dtype, raw.buffer), nOut, nIn, params.rotation);
  const groups = groupIdsOf(parts);
  const groupHistograms = groupHistogramsOf(values, nIn, groups, report.groupSizes.length, (g) => {
    const scale = params.mode === 'scale' ? report.scales[g] : 1;
    return report.codebooks[params.mode === 'scale' ? 0 : g].map((c) => c * scale);
  }, 80);
  return { parts, params, groupHistograms };
}

/** @param {import('./protocol.js').DecodeMsg} msg */
function decode(msg) {
  const data = fromF32(msg.params.dtype, decodeF32(msg.parts, msg.params)).slice();
  post({ type: MSG.decoded, id: msg.id, data }, [data.buffer]);
}

/** @param {import('./protocol.js').EmbedMsg} msg */
async function embed(msg) {
  const m = msg.model;
  const bytes = async (b) => new Uint8Array(await b.arrayBuffer());
  const original = await embedSentences(`${m.key}:original`, async () => ({ config: m.config, tokenizer: await bytes(m.tokenizer), weights: await bytes(m.weights) }), msg.sentences);
  let packed = null;
  if (m.packed) {
    const p = m.packed;
    packed = await embedSentences(`${m.key}:packed:${m.packedKey}`, async () => ({ config: m.config, tokenizer: await bytes(m.tokenizer), weights: await bytes(p) }), msg.sentences);
  }
  post({ type: MSG.embedded, id: msg.id, original: original.embeddings, packed: packed?.embeddings ?? null, dim: original.dim,
    originalMs: original.ms, packedMs: packed?.ms ?? 0 });
}
