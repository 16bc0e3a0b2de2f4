// Safetensors headers in the page: read the 8-byte prefix and the JSON header
// of a File with File.slice, validate it, and never touch tensor bytes until a
// tensor is needed. The same checks as src/format/safetensors.rs: capped
// header size, exact contiguous offsets, element counts that match the dtype.

/** Largest header accepted (bytes), as in the Rust reader. */
export const MAX_HEADER_LEN = 100_000_000;

/** Bytes per element of each dtype the page knows. */
export const DTYPE_BYTES = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

/** Float dtypes the engine compresses. */
export const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);

/**
 * One tensor of an opened file.
 * @typedef {object} TensorInfo
 * @property {string} name
 * @property {string} dtype
 * @property {number[]} shape
 * @property {number} start   absolute byte offset in the file
 * @property {number} end     absolute byte end in the file
 * @property {File|Blob} file the file (shard) holding it
 * @property {string} shard   its file name
 * @property {boolean} compressible
 */

/** A bad or unsupported file, with a readable message. */
export class FileFormatError extends Error {
  /** @param {string} file @param {string} problem */
  constructor(file, problem) {
    super(`${file}: ${problem}`);
    this.name = 'FileFormatError';
  }
}

/**
 * Rows x columns of a weight viewed as a matrix (2-D, or 4-D conv
 * `[out, in, kh, kw]` as `[out, in*kh*kw]`), or null
 * (mirrors TensorEntry::matrix_shape).
 * @param {number[]} shape
 * @returns {[number, number] | null}
 */
export function matrixShape(shape) {
  if (shape.length === 2) return [shape[0], shape[1]];
  if (shape.length === 4) return [shape[0], shape[1] * shape[2] * shape[3]];
  return null;
}

/** Whether the engine compresses this tensor: a float matrix of at least 2 rows and 8 columns. */
export function isCompressible(dtype, shape) {
  const m = matrixShape(shape);
  return FLOAT_DTYPES.has(dtype) && m !== null && m[0] >= 2 && m[1] >= 8;
}

/**
 * The engine's header reader (wasm `parseHeader(bytes, fileLength)`), when
 * loaded (www/headers.js): the same validation and messages as the CLI.
 * @type {((bytes: Uint8Array, fileLength: number) => any) | null}
 */
let engineParseHeader = null;

/** @param {(bytes: Uint8Array, fileLength: number) => any} parse */
export function useEngineHeaderParser(parse) {
  engineParseHeader = parse;
}

/**
 * Read and validate the header of a safetensors File (two small slices).
 * @param {File} file
 * @returns {Promise<{tensors: TensorInfo[], metadata: Record<string,string>, dataStart: number}>}
 */
export async function readHeader(file) {
  const name = file.name || 'file';
  if (engineParseHeader) return readHeaderWithEngine(file, name, engineParseHeader);
  if (file.size < 8) throw new FileFormatError(name, `only ${file.size} bytes: too short for a safetensors file`);
  const prefix = new DataView(await file.slice(0, 8).arrayBuffer());
  const len = Number(prefix.getBigUint64(0, true));
  if (len > MAX_HEADER_LEN) throw new FileFormatError(name, `header of ${len} bytes is larger than the ${MAX_HEADER_LEN} allowed: not a safetensors file?`);
  if (8 + len > file.size) throw new FileFormatError(name, `header of ${len} bytes runs past the end of the ${file.size}-byte file`);
  const text = new TextDecoder('utf-8', { fatal: true }).decode(await file.slice(8, 8 + len).arrayBuffer());
  let json;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FileFormatError(name, `header is not valid JSON (${e.message})`);
  }
  return validateHeader(json, name, file.size, 8 + len, file);
}

/**
 * Read the prefix and the header (when its length is plausible) and let the
 * engine validate them against the file's length: every check of
 * src/format/safetensors.rs, with its messages.
 * @param {File} file @param {string} name @param {(bytes: Uint8Array, fileLength: number) => any} parse
 */
async function readHeaderWithEngine(file, name, parse) {
  let bytes = new Uint8Array(await file.slice(0, 8).arrayBuffer());
  if (bytes.length === 8) {
    const len = new DataView(bytes.buffer).getBigUint64(0, true);
    if (len <= BigInt(MAX_HEADER_LEN) && 8n + len <= BigInt(file.size)) bytes = new Uint8Array(await file.slice(0, 8 + Number(len)).arrayBuffer());
  }
  let h;
  try {
    h = parse(bytes, file.size);
  } catch (e) {
    throw new FileFormatError(name, e?.message ?? String(e));
  }
  /** @type {TensorInfo[]} */
  const tensors = h.tensors.map((/** @type {any} */ t) => ({
    name: t.name, dtype: t.dtype, shape: t.shape, start: Number(t.start), end: Number(t.end), file, shard: name,
    compressible: isCompressible(t.dtype, t.shape),
  }));
  tensors.sort((a, b) => a.start - b.start);
  const metadata = h.metadata instanceof Map ? Object.fromEntries(h.metadata) : { ...h.metadata };
  return { tensors, metadata, dataStart: Number(h.dataStart) };
}

/**
 * @param {any} json
 * @param {string} name
 * @param {number} fileSize
 * @param {number} dataStart
 * @param {Blob|null} file
 */
export function validateHeader(json, name, fileSize, dataStart, file) {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new FileFormatError(name, 'header is not a JSON object');
  /** @type {Record<string,string>} */
  const metadata = {};
  /** @type {TensorInfo[]} */
  const tensors = [];
  for (const [key, value] of Object.entries(json)) {
    if (key === '__metadata__') {
      if (value === null || typeof value !== 'object') throw new FileFormatError(name, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') throw new FileFormatError(name, `metadata \`${k}\` is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const bad = (problem) => new FileFormatError(name, `tensor \`${key}\`: ${problem}`);
    if (!value || typeof value !== 'object') throw bad('entry is not an object');
    const { dtype, shape, data_offsets: off } = value;
    if (!(dtype in DTYPE_BYTES)) throw bad(`unsupported dtype \`${dtype}\``);
    if (!Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && s >= 0)) throw bad('shape is not a list of non-negative integers');
    if (!Array.isArray(off) || off.length !== 2 || !off.every((s) => Number.isSafeInteger(s) && s >= 0) || off[1] < off[0]) throw bad('data_offsets is not [begin, end]');
    const count = shape.reduce((a, b) => a * b, 1);
    const bytes = count * DTYPE_BYTES[dtype];
    if (!Number.isSafeInteger(bytes) || bytes !== off[1] - off[0]) throw bad(`${off[1] - off[0]} bytes do not hold ${count} ${dtype} values`);
    tensors.push({
      name: key, dtype, shape, start: dataStart + off[0], end: dataStart + off[1], file, shard: name,
      compressible: isCompressible(dtype, shape),
    });
  }
  // Offsets must tile the data section exactly.
  const byStart = [...tensors].sort((a, b) => a.start - b.start || a.end - b.end);
  let pos = dataStart;
  for (const t of byStart) {
    if (t.start !== pos) throw new FileFormatError(name, `tensor \`${t.name}\` starts at data offset ${t.start - dataStart}, expected ${pos - dataStart} (offsets must be contiguous)`);
    pos = t.end;
  }
  if (pos !== fileSize) throw new FileFormatError(name, `data section ends at byte ${pos} but the file has ${fileSize} bytes`);
  tensors.sort((a, b) => a.start - b.start);
  return { tensors, metadata, dataStart };
}

/**
 * Values of a tensor as f32, from its raw little-endian bytes.
 * @param {string} dtype
 * @param {ArrayBuffer} buf
 * @returns {Float32Array}
 */
export function toF32(dtype, buf) {
  if (dtype === 'F32') return new Float32Array(buf);
  const u16 = new Uint16Array(buf);
  const out = new Float32Array(u16.length);
  if (dtype === 'BF16') {
    const u32 = new Uint32Array(out.buffer);
    for (let i = 0; i < u16.length; i++) u32[i] = u16[i] << 16;
    return out;
  }
  if (dtype === 'F16') {
    for (let i = 0; i < u16.length; i++) out[i] = f16ToF32(u16[i]);
    return out;
  }
  throw new Error(`dtype ${dtype} is not a float type`);
}

/** @param {number} h IEEE half bits */
export function f16ToF32(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * The safetensors header bytes (8-byte length + JSON, padded with spaces to a
 * multiple of 8) for tensors of known sizes, in the given order.
 * @param {{name: string, dtype: string, shape: number[], byteLength: number}[]} entries
 * @param {Record<string,string>} metadata
 * @returns {Uint8Array}
 */
export function headerBytes(entries, metadata) {
  /** @type {Record<string, any>} */
  const obj = {};
  if (Object.keys(metadata).length) obj.__metadata__ = Object.fromEntries(Object.entries(metadata).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  let pos = 0;
  for (const e of entries) {
    obj[e.name] = { data_offsets: [pos, pos + e.byteLength], dtype: e.dtype, shape: e.shape }; // key order as the native writer
    pos += e.byteLength;
  }
  let json = new TextEncoder().encode(JSON.stringify(obj));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/**
 * Parse a whole safetensors file held in memory (small files: a packed
 * tensor's parts). Tensors come back with their bytes as views.
 * @param {Uint8Array} bytes
 * @param {string} name
 */
export function parseBytes(bytes, name) {
  if (bytes.length < 8) throw new FileFormatError(name, 'too short');
  const len = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (8 + len > bytes.length) throw new FileFormatError(name, 'header runs past the end');
  const json = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + len)));
  const h = validateHeader(json, name, bytes.length, 8 + len, null);
  return {
    metadata: h.metadata,
    tensors: h.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: bytes.subarray(t.start, t.end) })),
  };
}
