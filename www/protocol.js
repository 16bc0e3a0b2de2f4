// The worker protocol: the one definition of every message between the page
// and its compression workers (www/worker.js). The page, the pool and the
// tests import it; nothing else invents message shapes.
//
// Flow: page → `init` (compiled wasm module, shared by every worker) → worker
// answers `ready` (or `failed`). Then any number of jobs, one at a time per
// worker: `analyse` → `analysed`, `compress` → `progress`* → `compressed`,
// `decode` → `decoded`, `embed` → `embedded`, `calibrate` → `progress`* →
// `calibrated`; any job may answer `error`.
// Cancel is not a message: wasm runs synchronously, so the pool terminates
// the worker and starts a fresh one (it stops at once, whatever the engine is
// doing). A worker that dies (out of memory, a crash) is restarted the same
// way and its job reported as failed.

/**
 * A tensor's bytes in a File, read by the worker itself with File.slice.
 * @typedef {object} TensorRef
 * @property {string} name
 * @property {'F32'|'F16'|'BF16'} dtype
 * @property {number[]} shape
 * @property {Blob} file
 * @property {number} start  absolute byte offset
 * @property {number} end
 */

/**
 * Compression settings (the engine's CompressOptions, camelCase).
 * @typedef {object} CompressOptions
 * @property {number} bits      bits per index, 1..8
 * @property {number} dim       codeword dimension d: 1, 2, 4, 8
 * @property {number} groups    row groups G, 1..256
 * @property {'codebook'|'scale'} mode
 * @property {number} iters     learning sweeps at most
 * @property {number} seed
 * @property {boolean} [rotate]  rotate the inputs first (random signs, block Walsh-Hadamard)
 */

/**
 * Calibration for one weight: its H = XᵀX/n, F32 [n_in, n_in], in a File.
 * @typedef {object} HessianRef
 * @property {Blob} file
 * @property {number} start
 * @property {number} end
 * @property {'F32'} dtype
 */

// ---- page → worker ------------------------------------------------------

/**
 * @typedef {{type: 'init', module: WebAssembly.Module, glueUrl: string}} InitMsg
 * @typedef {{type: 'analyse', id: number, tensor: TensorRef, bins: number, maxRows: number}} AnalyseMsg
 * @typedef {{type: 'compress', id: number, tensor: TensorRef, options: CompressOptions, hessian: HessianRef|null}} CompressMsg
 * @typedef {{type: 'decode', id: number, parts: PackedPart[], params: PackedParams}} DecodeMsg
 * @typedef {{type: 'embed', id: number, model: {key: string, config: string, tokenizer: Blob, weights: Blob, packed: Blob|null, packedKey: string}, sentences: string[]}} EmbedMsg
 * @typedef {{type: 'calibrate', id: number, model: {key: string, config: string, tokenizer: Blob, weights: Blob}, sentences: string[], batchSize: number}} CalibrateMsg
 * @typedef {{type: 'fault', kind: 'trap'|'uncaught'}} FaultMsg  test hook (www/faults.js): fail the next compress job
 * @typedef {InitMsg|AnalyseMsg|CompressMsg|DecodeMsg|EmbedMsg|CalibrateMsg|FaultMsg} ToWorker
 */

// ---- worker → page ------------------------------------------------------

/**
 * One stored part of a packed tensor (NAME.jlcm.idx, .codebook, .group, .scale).
 * @typedef {object} PackedPart
 * @property {string} name
 * @property {string} dtype
 * @property {number[]} shape
 * @property {Uint8Array} data
 */

/**
 * The per-tensor parameters stored in `__metadata__` under `jlcm:NAME`.
 * @typedef {object} PackedParams
 * @property {number} bits
 * @property {number} dim
 * @property {number} groups
 * @property {'codebook'|'scale'} mode
 * @property {number[]} shape
 * @property {string} dtype
 * @property {{block: number, signs: string}} [rotation]  input rotation (`jlcm compress --rotate`): Ŵ = Q R
 */

/**
 * The engine's TensorReport.
 * @typedef {object} TensorReport
 * @property {string} name
 * @property {number} nOut
 * @property {number} nIn
 * @property {number} bpw
 * @property {{sweep: number, kind: 'init'|'codebook'|'mapping', loss: number}[]} losses
 * @property {number} relWeightError
 * @property {number} relOutputError
 * @property {number[]} groupSizes
 * @property {number[]} rowLoss
 */

/**
 * A value histogram.
 * @typedef {object} Histogram
 * @property {number} lo
 * @property {number} hi
 * @property {number[]} counts
 * @property {number} outside  values outside [lo, hi], not drawn
 */

/**
 * @typedef {{type: 'ready', simd: boolean, version: string, features: string[]}} ReadyMsg
 * @typedef {{type: 'failed', message: string}} FailedMsg
 * @typedef {{type: 'progress', id: number, event: {type: 'phase', phase: string} | {type: 'loss', point: {sweep: number, kind: string, loss: number}} | {type: 'calibration', done: number, total: number}}} ProgressMsg
 * @typedef {{type: 'analysed', id: number, histogram: Histogram, min: number, max: number, rows: {mean: Float32Array, std: Float32Array, absMax: Float32Array}, rowsRead: number, nOut: number, nIn: number, ms: number}} AnalysedMsg
 * @typedef {{type: 'compressed', id: number, report: TensorReport, parts: PackedPart[], params: PackedParams, groupHistograms: Histogram[], ms: number, wasmBytes: number}} CompressedMsg
 * @typedef {{type: 'decoded', id: number, data: Uint8Array}} DecodedMsg
 * @typedef {{type: 'embedded', id: number, original: Float32Array, packed: Float32Array|null, dim: number, originalMs: number, packedMs: number}} EmbeddedMsg
 * @typedef {{type: 'calibrated', id: number, bytes: Uint8Array, ms: number}} CalibratedMsg
 * @typedef {{type: 'error', id: number, message: string, code: string}} ErrorMsg
 * @typedef {ReadyMsg|FailedMsg|ProgressMsg|AnalysedMsg|CompressedMsg|DecodedMsg|EmbeddedMsg|CalibratedMsg|ErrorMsg} FromWorker
 */

/** Message types, so a typo is a lookup error rather than a silent drop. */
export const MSG = Object.freeze({
  init: 'init', analyse: 'analyse', compress: 'compress', decode: 'decode', embed: 'embed', calibrate: 'calibrate', fault: 'fault',
  ready: 'ready', failed: 'failed', progress: 'progress', analysed: 'analysed', compressed: 'compressed',
  decoded: 'decoded', embedded: 'embedded', calibrated: 'calibrated', error: 'error',
});

/** Job message type → the message that ends it successfully. */
export const DONE_FOR = Object.freeze({ analyse: 'analysed', compress: 'compressed', decode: 'decoded', embed: 'embedded', calibrate: 'calibrated' });

/** Default settings (the engine's defaults; ALGORITHM.md §7: multi-codebook, G ≈ 16). */
/** @type {CompressOptions} */
export const DEFAULT_OPTIONS = Object.freeze({ bits: 2, dim: 1, groups: 16, mode: 'codebook', iters: 10, seed: 0, rotate: false });

/** Metadata key of the packed format version, and the version written. */
export const FORMAT_KEY = 'jlcm.format';
export const FORMAT_VERSION = '1';
/** Prefix of per-tensor parameter keys in `__metadata__`. */
export const PARAM_PREFIX = 'jlcm:';
