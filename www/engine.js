// The page's view of the jlcm wasm package (the npm API of issue 4, built by
// scripts/serve.sh into /pkg/). Every call into wasm goes through this file,
// so the exported names are written down in exactly one place.

/** @type {any} */
let wasm = null;

/**
 * Load the wasm-bindgen glue and instantiate it from an already compiled
 * module (the page compiles once and hands the module to every worker).
 * @param {string} glueUrl
 * @param {WebAssembly.Module} module
 */
export async function loadEngine(glueUrl, module) {
  const glue = await import(glueUrl);
  if (typeof glue.initSync === 'function') glue.initSync({ module });
  else await glue.default({ module_or_path: module });
  wasm = glue;
  return {
    simd: hasSimd128(),
    version: call(['version'], () => '?'),
    features: ['compressTensor', 'decodePacked', 'Embedder'].filter((n) => n in wasm),
  };
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
  return Boolean(call(['simd128', 'hasSimd128', 'isSimd128'], () => false));
}

/**
 * Compress one tensor.
 * @param {import('./protocol.js').TensorRef} t
 * @param {Uint8Array} bytes raw tensor bytes in t.dtype
 * @param {import('./protocol.js').CompressOptions} options
 * @param {Float32Array|null} hessian F32 [n_in, n_in] or null for H = I
 * @param {(event: any) => void} onEvent engine events: {type:'phase'|'loss', ...}
 * @returns {{report: import('./protocol.js').TensorReport, packed: Uint8Array}}
 *   packed: a packed safetensors file holding this one tensor's parts
 */
export function compressTensor(t, bytes, options, hessian, onEvent) {
  const fn = need('compressTensor');
  const out = fn(t.name, t.dtype, new Uint32Array(t.shape), bytes, options, hessian ?? undefined, (ev) => {
    onEvent(ev);
  });
  return normaliseResult(out);
}

/** Accept a Map or a plain object from serde-wasm-bindgen. */
function plain(v) {
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, plain(x)]));
  if (Array.isArray(v)) return v.map(plain);
  return v;
}

function normaliseResult(out) {
  const o = plain(out);
  const packed = o.packed ?? o.bytes;
  if (!(packed instanceof Uint8Array)) throw Object.assign(new Error('compressTensor returned no packed bytes'), { code: 'bad_result' });
  return { report: o.report, packed };
}
