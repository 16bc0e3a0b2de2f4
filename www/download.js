// Writing the packed file (and the decoded dense file) in parts, in the
// same layout and order as the native CLI (the same bytes for the same seed):
// the header is planned from the parts' sizes first (headerBytes), then the
// header and each part are written in turn to a stream: the File System
// Access API where the browser has it, else a Blob made of parts. Nothing
// ever builds one contiguous copy of the output:
// - a compressed tensor's index part (the bulk of its bytes) is moved into a
//   Blob as soon as the tensor is compressed (keepPartsOffHeap), so the tab's
//   JS heap holds only small parts (codebooks, group ids, scales); the browser
//   keeps Blob data outside the renderer and may page it to disk;
// - copied-through tensors are File.slice()s of the input, so the output
//   refers to the input file and never holds a second copy of it;
// - a Blob made of Blobs refers to them; the file-picker stream writes each
//   part as it comes.

import { headerBytes } from './safetensors.js';
import { FORMAT_KEY, FORMAT_VERSION, PARAM_PREFIX } from './protocol.js';

/**
 * One tensor of the output: bytes known now, or produced when written.
 * @typedef {object} OutputEntry
 * @property {string} name
 * @property {string} dtype
 * @property {number[]} shape
 * @property {number} byteLength
 * @property {() => Promise<Blob|Uint8Array>} bytes
 */

/**
 * The packed file's entries in input order: compressed tensors become their
 * parts, every other tensor is copied through.
 * @param {import('./safetensors.js').TensorInfo[]} tensors
 * @param {Map<string, import('./protocol.js').CompressedMsg>} results
 * @param {Record<string,string>} inputMetadata
 */
export function packedEntries(tensors, results, inputMetadata) {
  /** @type {OutputEntry[]} */
  const entries = [];
  /** @type {Record<string,string>} */
  const metadata = {};
  for (const [k, v] of Object.entries(inputMetadata)) if (k !== FORMAT_KEY && !k.startsWith(PARAM_PREFIX)) metadata[k] = v;
  metadata[FORMAT_KEY] = FORMAT_VERSION;
  for (const t of byName(tensors)) {
    const r = results.get(t.name);
    if (r) {
      metadata[PARAM_PREFIX + t.name] = JSON.stringify(r.params);
      for (const p of r.parts) entries.push({ name: p.name, dtype: p.dtype, shape: p.shape, byteLength: partLength(p), bytes: async () => p.blob ?? p.data });
    } else {
      entries.push(rawEntry(t));
    }
  }
  return { entries, metadata };
}

/** Parts at least this large are kept in Blobs, off the JS heap. */
const OFF_HEAP_BYTES = 64 << 10;

/**
 * Move a compressed tensor's large parts (the index part) into Blobs, so
 * that a run over a whole model does not accumulate its packed indices on
 * the tab's heap. Small parts (codebooks, group ids, scales) stay as bytes:
 * the views draw them. Returns the result, changed in place.
 * @param {import('./protocol.js').CompressedMsg} r
 */
export function keepPartsOffHeap(r) {
  r.parts = r.parts.map((p) => (p.data && p.data.length >= OFF_HEAP_BYTES
    ? { name: p.name, dtype: p.dtype, shape: p.shape, byteLength: p.data.length, blob: new Blob([p.data]) }
    : p));
  return r;
}

/**
 * A result's parts with their bytes in memory (read back from Blobs), for
 * decoding one tensor.
 * @param {import('./protocol.js').PackedPart[]} parts
 * @returns {Promise<import('./protocol.js').PackedPart[]>}
 */
export async function partsInMemory(parts) {
  return Promise.all(parts.map(async (p) => (p.data ? p : { name: p.name, dtype: p.dtype, shape: p.shape, data: new Uint8Array(await p.blob.arrayBuffer()) })));
}

/** @param {any} p */
function partLength(p) {
  return p.data ? p.data.length : p.byteLength;
}

/**
 * The decoded dense file: original names, shapes and dtypes.
 * @param {import('./safetensors.js').TensorInfo[]} tensors
 * @param {Map<string, import('./protocol.js').CompressedMsg>} results
 * @param {Record<string,string>} inputMetadata
 * @param {(r: import('./protocol.js').CompressedMsg) => Promise<Uint8Array>} decode
 */
export function denseEntries(tensors, results, inputMetadata, decode) {
  const entries = byName(tensors).map((t) => {
    const r = results.get(t.name);
    if (!r) return rawEntry(t);
    return { name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.end - t.start, bytes: () => decode(r) };
  });
  /** @type {Record<string,string>} */
  const metadata = {};
  for (const [k, v] of Object.entries(inputMetadata)) if (k !== FORMAT_KEY && !k.startsWith(PARAM_PREFIX)) metadata[k] = v;
  return { entries, metadata };
}

/**
 * Tensors in the order the native writer uses (PackedFile::to_bytes: by
 * name, byte order), so the page and the CLI write the same bytes.
 * @param {import('./safetensors.js').TensorInfo[]} tensors
 */
function byName(tensors) {
  const enc = new TextEncoder();
  const key = new Map(tensors.map((t) => [t, enc.encode(t.name)]));
  return [...tensors].sort((a, b) => {
    const x = key.get(a);
    const y = key.get(b);
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length;
  });
}

/** @param {import('./safetensors.js').TensorInfo} t @returns {OutputEntry} */
function rawEntry(t) {
  return { name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.end - t.start, bytes: async () => t.file.slice(t.start, t.end) };
}

/**
 * Save entries as a safetensors file.
 * @param {string} fileName
 * @param {{entries: OutputEntry[], metadata: Record<string,string>}} out
 * @param {{useFilePicker: boolean, onProgress?: (done: number, total: number) => void}} o
 * @returns {Promise<{bytes: number, how: string, parts: number, largestPart: number}>}
 *   parts: writes (or Blob parts) the output was made of, header included;
 *   largestPart: the largest of them, in bytes
 */
export async function saveSafetensors(fileName, { entries, metadata }, o) {
  const header = headerBytes(entries, metadata);
  const total = header.length + entries.reduce((a, e) => a + e.byteLength, 0);
  const progress = o.onProgress ?? (() => {});
  const parts = 1 + entries.length;
  const largestPart = Math.max(header.length, ...entries.map((e) => e.byteLength));
  const picker = /** @type {any} */ (window).showSaveFilePicker;
  if (o.useFilePicker && typeof picker === 'function') {
    const handle = await picker({ suggestedName: fileName, types: [{ description: 'safetensors', accept: { 'application/octet-stream': ['.safetensors'] } }] });
    const w = await handle.createWritable();
    try {
      await w.write(header);
      let done = header.length;
      for (const e of entries) {
        const b = await e.bytes();
        const n = /** @type {any} */ (b).size ?? /** @type {any} */ (b).length;
        if (n !== e.byteLength) throw new Error(`tensor \`${e.name}\`: ${n} bytes, the header says ${e.byteLength}`);
        await w.write(b);
        done += e.byteLength;
        progress(done, total);
      }
      await w.close();
    } catch (err) {
      await w.abort().catch(() => {});
      throw err;
    }
    return { bytes: total, how: 'file-system-access', parts, largestPart };
  }
  /** @type {(Blob|Uint8Array)[]} */
  const blobParts = [header];
  let done = header.length;
  for (const e of entries) {
    blobParts.push(await e.bytes());
    done += e.byteLength;
    progress(done, total);
  }
  const blob = new Blob(blobParts, { type: 'application/octet-stream' });
  if (blob.size !== total) throw new Error(`the output has ${blob.size} bytes, its header plans ${total}`);
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = fileName;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return { bytes: blob.size, how: 'blob', parts, largestPart };
}

/**
 * The whole output as one Blob (copied-through tensors stay File slices).
 * @param {{entries: OutputEntry[], metadata: Record<string,string>}} out
 */
export async function toBlob({ entries, metadata }) {
  const parts = [headerBytes(entries, metadata)];
  for (const e of entries) parts.push(await e.bytes());
  return new Blob(parts, { type: 'application/octet-stream' });
}
