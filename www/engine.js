// The page's view of the jlcm wasm package (the npm API of issue 4, built by
// scripts/serve.sh into /pkg/). Every call into wasm goes through this file,
// so the exported names are written down in exactly one place.

/** @type {any} */
let wasm = null;
/** URL of the glue, to find the package's `text.js` next to it. @type {string} */
let glueHref = '';
/** The package's `jlcm/text` entry (tokenizer + SentenceEncoder), loaded on first use. @type {Promise<any>|null} */
let textEntry = null;
/** The raw wasm exports (its memory). @type {any} */
let exportsOf = null;

/**
 * Load the wasm-bindgen glue and instantiate it from an already compiled
 * module (the page compiles once and hands the module to every worker).
 * @param {string} glueUrl
 * @param {WebAssembly.Module} module
 */
export async function loadEngine(glueUrl, module) {
  const glue = await import(glueUrl);
  if (typeof glue.initSync === 'function') exportsOf = glue.initSync({ module });
  else exportsOf = await glue.default({ module_or_path: module });
  wasm = glue;
  glueHref = glueUrl;
  const features = ['compressTensor', 'decodePackedFile', 'SentenceModel', 'computeCalibration'].filter((n) => n in wasm);
  // The text-in SentenceEncoder is `jlcm/text` (text.js) over the core SentenceModel.
  if (features.includes('SentenceModel')) features.push('SentenceEncoder');
  return { simd: hasSimd128(), version: call(['version'], () => '?'), features };
}

/** Bytes of this worker's wasm memory now (it only grows: its peak so far). */
export function wasmMemoryBytes() {
  return exportsOf?.memory?.buffer?.byteLength ?? 0;
}

/** The exports this page uses; missing ones are reported by name. */
function need(name) {
  if (!wasm) throw Object.assign(new Error('the wasm engine is not loaded'), { code: 'not_loaded' });
  if (!(name in wasm)) throw Object.assign(new Error(`the wasm package has no \`${name}\` export (page and package out of step?)`), { code: 'missing_export' });
  return wasm[name];
}

function call(names, fallback) {
  for (const n of names) if (wasm && typeof wasm[n] === 'function') return wasm[n]();
  return fallback();
}

/** Whether the running module was built with SIMD128. */
export function hasSimd128() {
  return Boolean(call(['simd128Enabled'], () => false));
}

/**
 * Compress one tensor (the package's `compressTensor`).
 * @param {import('./protocol.js').TensorRef} t
 * @param {Uint8Array} bytes raw tensor bytes in t.dtype
 * @param {import('./protocol.js').CompressOptions} options
 * @param {Float32Array|null} hessian F32 [n_in, n_in] or null for H = I
 * @param {(event: any) => void} onEvent engine events: {type:'phase'|'loss', ...}
 * @returns {{report: any, packed: Uint8Array}}
 *   report: the package's CompressReport; packed: a packed safetensors file
 *   holding this one tensor's parts
 */
export function compressTensor(t, bytes, options, hessian, onEvent) {
  const fn = need('compressTensor');
  const compressed = fn({ name: t.name, dtype: t.dtype, shape: t.shape }, bytes, options, {
    onProgress: (ev) => { onEvent(ev); },
    calibration: hessian ?? undefined,
  });
  try {
    return { report: compressed.report(), packed: compressed.toPackedFile() };
  } finally {
    compressed.free();
  }
}

/** Sentence encoders built in this worker, by model key (built once, reused). */
const encoders = new Map();

/**
 * Embed sentences with the runtime (the package's `SentenceEncoder`: a
 * MiniLM-shaped encoder on dense or packed weights).
 * @param {string} key       cache key of this model (and weights variant)
 * @param {() => Promise<{config: string, tokenizer: Uint8Array, weights: Uint8Array}>} load
 * @param {string[]} sentences
 * @returns {Promise<{embeddings: Float32Array, dim: number, ms: number}>}
 */
export async function embedSentences(key, load, sentences) {
  const enc = await encoderFor(key, load);
  const t0 = performance.now();
  const embeddings = enc.embed(sentences);
  const ms = performance.now() - t0;
  return { embeddings, dim: enc.hiddenSize ?? embeddings.length / sentences.length, ms };
}

/**
 * The package's `jlcm/text` entry (its tokenizer, `@huggingface/tokenizers`,
 * bundled into text.js by scripts/build-web.sh): fetched here, the first time
 * text is tokenised (not at page load).
 */
function text() {
  need('SentenceModel');
  textEntry ??= import(new URL('./text.js', glueHref).href);
  return textEntry;
}

/**
 * A cached `SentenceEncoder` (jlcm/text: tokenizer + core SentenceModel).
 * @param {string} key
 * @param {() => Promise<{config: string, tokenizer: Uint8Array, weights: Uint8Array}>} load
 */
async function encoderFor(key, load) {
  let enc = encoders.get(key);
  if (!enc) {
    const t = await text();
    const { config, tokenizer, weights } = await load();
    enc = new t.SentenceEncoder(config, tokenizer, weights);
    encoders.set(key, enc);
  }
  return enc;
}

/**
 * Calibration from sentences (the package's `computeCalibration` through
 * `SentenceEncoder.computeCalibration`): a safetensors file of H per Linear
 * weight, the bytes `jlcm calibrate --batch-size batchSize` writes.
 * @param {string} key
 * @param {() => Promise<{config: string, tokenizer: Uint8Array, weights: Uint8Array}>} load
 * @param {string[]} sentences
 * @param {number} batchSize
 * @param {(p: {done: number, total: number}) => void} onProgress
 * @returns {Promise<{bytes: Uint8Array, ms: number}>}
 */
export async function calibrateSentences(key, load, sentences, batchSize, onProgress) {
  need('computeCalibration');
  const enc = await encoderFor(key, load);
  const t0 = performance.now();
  const bytes = enc.computeCalibration(sentences, { batchSize }, { onProgress: (p) => { onProgress(p); } });
  return { bytes, ms: performance.now() - t0 };
}
