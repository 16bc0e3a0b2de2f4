// A jlcm packed file dropped on the page: recognised by its metadata (the
// `jlcm.format` / `jlcm:<name>` keys or `.jlcm.` parts of the layout table in
// src/format/packed.rs) and validated whole by the engine's own reader, the
// wasm `inspectPackedFile` (same checks and messages as `jlcm inspect`). A
// valid one is shown as already packed (bits, bpw per tensor, not
// compressible); a bad one is refused with the engine's message.

import { FileFormatError } from './safetensors.js';
import { formatBytes } from './stats.js';

/** Largest packed file checked in the page: it is copied whole into wasm memory. */
export const MAX_INSPECT_BYTES = 1024 ** 3;

/** @type {((bytes: Uint8Array) => any)|null} */
let inspector = null;

/** @param {(bytes: Uint8Array) => any} inspect  the wasm `inspectPackedFile` */
export function useEnginePackedInspector(inspect) {
  inspector = inspect;
}

/**
 * Does this opened model look like a jlcm packed file?
 * @param {import('./files.js').OpenedModel} model
 */
export function looksPacked(model) {
  return Object.keys(model.metadata || {}).some((k) => k === 'jlcm.format' || k.startsWith('jlcm:'))
    || model.tensors.some((t) => t.name.includes('.jlcm.'));
}

/**
 * Validate a packed file with the engine and turn the opened model into its
 * packed view: one row per original tensor, none compressible.
 * @param {import('./files.js').OpenedModel} model
 * @returns {Promise<import('./files.js').OpenedModel & {packed: any}>}
 */
export async function openPacked(model) {
  const file = model.shards[0];
  const name = file.name.split('/').pop() || file.name;
  const cli = `run \`jlcm inspect ${name}\` (or \`jlcm decode\`) with the command-line tool`;
  if (model.shards.length !== 1) throw new FileFormatError(name, `a jlcm packed file must be opened on its own (${model.shards.length} files were given)`);
  if (!inspector) throw new FileFormatError(name, `a jlcm packed file, and the wasm engine that checks it is not loaded; ${cli}`);
  if (file.size > MAX_INSPECT_BYTES) {
    throw new FileFormatError(name, `a jlcm packed file of ${formatBytes(file.size)}: too large to check in the page's wasm memory (limit ${formatBytes(MAX_INSPECT_BYTES)}); ${cli}`);
  }
  const t0 = performance.now();
  let info;
  try {
    info = inspector(new Uint8Array(await file.arrayBuffer()));
  } catch (e) {
    throw new FileFormatError(name, `bad jlcm packed file: ${e?.message ?? String(e)}`);
  }
  /** @type {import('./safetensors.js').TensorInfo[]} */
  const tensors = info.tensors.map((/** @type {any} */ t) => ({
    name: t.name,
    shard: name,
    file,
    dtype: t.dtype,
    shape: t.shape,
    start: 0,
    end: Number(t.bytes),
    compressible: false,
    packed: t.packed ? t : null,
  }));
  return { ...model, tensors, metadata: info.metadata, packed: info, openMs: model.openMs + performance.now() - t0 };
}

/**
 * One line about a valid packed file, for the model summary.
 * @param {string} title @param {any} info  what inspectPackedFile returned
 */
export function packedSummary(title, info) {
  const packed = info.tensors.filter((/** @type {any} */ t) => t.packed).length;
  return `${title}: jlcm packed file (already packed, not compressible again): ${info.tensors.length} tensors, ${packed} packed at ${info.bpw.toFixed(3)} bpw; ${formatBytes(Number(info.fileBytes))} decodes to ${formatBytes(Number(info.originalBytes))} (${info.ratio.toFixed(2)}×).`;
}

/**
 * What the tensor view says about a tensor of a packed file.
 * @param {import('./safetensors.js').TensorInfo & {packed?: any}} t
 */
export function packedTensorText(t) {
  const p = t.packed;
  if (!p) return 'Stored as is in the packed file (not compressed).';
  return `Already packed by jlcm: ${p.bits} bits, d = ${p.dim}, ${p.groups} group(s), ${p.mode} mode, ${p.bpw.toFixed(3)} bpw (${formatBytes(Number(p.bytes))} for ${formatBytes(Number(p.originalBytes))} of ${p.dtype}). Decode it with \`jlcm decode\`.`;
}
