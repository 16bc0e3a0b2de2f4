// Reading the packed layout in the page (the table in src/format/packed.rs):
// split a packed tensor into its parts and parameters, draw its codebooks, and
// decode it back to dense values for the "decoded dense" download.

import { parseBytes, f16ToF32 } from './safetensors.js';
import { PARAM_PREFIX } from './protocol.js';

/**
 * The parts and parameters of the one packed tensor in a small packed file.
 * @param {Uint8Array} bytes
 * @param {string} name original tensor name
 * @returns {{parts: import('./protocol.js').PackedPart[], params: import('./protocol.js').PackedParams}}
 */
export function splitPacked(bytes, name) {
  const file = parseBytes(bytes, `${name} (packed)`);
  const raw = file.metadata[PARAM_PREFIX + name];
  if (!raw) throw new Error(`packed result for \`${name}\` has no \`${PARAM_PREFIX}${name}\` metadata`);
  const params = JSON.parse(raw);
  const parts = file.tensors.filter((t) => t.name.startsWith(`${name}.jlcm.`)).map((t) => ({ ...t, data: t.data.slice() }));
  return { parts, params };
}

/** @param {import('./protocol.js').PackedPart[]} parts @param {string} suffix */
function part(parts, suffix) {
  return parts.find((p) => p.name.endsWith(suffix));
}

/**
 * Codebooks as f32, `[C][K*d]`, and the per-group scales (1 in codebook mode).
 * @param {import('./protocol.js').PackedPart[]} parts
 * @param {import('./protocol.js').PackedParams} params
 */
export function codebooksOf(parts, params) {
  const cb = part(parts, '.jlcm.codebook');
  const u16 = new Uint16Array(cb.data.slice().buffer);
  const per = (1 << params.bits) * params.dim;
  const books = [];
  for (let c = 0; c * per < u16.length; c++) books.push(Float32Array.from(u16.subarray(c * per, (c + 1) * per), f16ToF32));
  const sc = part(parts, '.jlcm.scale');
  const scales = sc ? Array.from(new Uint16Array(sc.data.slice().buffer), f16ToF32) : new Array(params.groups).fill(1);
  return { books, scales };
}

/** Group id of each row. @param {import('./protocol.js').PackedPart[]} parts */
export function groupIdsOf(parts) {
  return part(parts, '.jlcm.group').data;
}

/**
 * Ŵ as f32 `[n_out * n_in]`.
 * @param {import('./protocol.js').PackedPart[]} parts
 * @param {import('./protocol.js').PackedParams} params
 */
export function decodeF32(parts, params) {
  const { bits, dim: d, mode } = params;
  const shape = params.shape;
  const nOut = shape[0];
  const nIn = shape.slice(1).reduce((a, b) => a * b, 1);
  const nSub = Math.ceil(nIn / d);
  const rowBytes = Math.ceil((nSub * bits) / 8);
  const idx = part(parts, '.jlcm.idx').data;
  const groups = groupIdsOf(parts);
  const { books, scales } = codebooksOf(parts, params);
  const out = new Float32Array(nOut * nIn);
  for (let r = 0; r < nOut; r++) {
    const g = groups[r];
    const cb = books[mode === 'codebook' ? g : 0];
    const s = scales[g];
    const row = r * rowBytes;
    for (let k = 0; k < nSub; k++) {
      const bit = k * bits;
      const word = idx[row + (bit >> 3)] | ((idx[row + (bit >> 3) + 1] ?? 0) << 8);
      const i = (word >> (bit & 7)) & ((1 << bits) - 1);
      for (let a = 0; a < d; a++) {
        const j = k * d + a;
        if (j < nIn) out[r * nIn + j] = s * cb[i * d + a];
      }
    }
  }
  if (params.rotation) unrotateRows(out, nOut, nIn, params.rotation);
  return out;
}

/**
 * A rotation's signs (±1 per column) and block, checked against `nIn`
 * (src/format/rotation.rs: bit `j % 8` of hex byte `j / 8` set negates
 * column `j`; blocks of `block` columns get an orthonormal Walsh-Hadamard
 * transform).
 * @param {number} nIn @param {{block: number, signs: string}} rotation
 */
function rotationOf(nIn, rotation) {
  const b = rotation.block;
  if (!(b >= 2 && (b & (b - 1)) === 0 && nIn % b === 0) || rotation.signs.length !== Math.ceil(nIn / 8) * 2) {
    throw new Error(`bad rotation (block ${b}, ${rotation.signs.length} hex digits) for ${nIn} columns`);
  }
  const signs = new Float32Array(nIn);
  for (let j = 0; j < nIn; j++) signs[j] = (parseInt(rotation.signs.substr(2 * (j >> 3), 2), 16) >> (j & 7)) & 1 ? -1 : 1;
  return { b, signs };
}

/** In-place block Walsh-Hadamard of one row, as the Rust code: f32 sums, the f32 norm 1/sqrt(b). */
function hadamardRow(row, b) {
  const norm = Math.fround(1 / Math.fround(Math.sqrt(b)));
  for (let s = 0; s < row.length; s += b) {
    for (let h = 1; h < b; h *= 2) {
      for (let i = s; i < s + b; i += 2 * h) {
        for (let j = i; j < i + h; j++) {
          const u = row[j], v = row[j + h];
          row[j] = u + v;
          row[j + h] = u - v;
        }
      }
    }
    for (let j = s; j < s + b; j++) row[j] *= norm;
  }
}

/**
 * `Ŵ = Q R` of a rotated tensor: each decoded row `q` becomes `Rᵀ q` (the
 * block transform, then the signs), in place.
 * @param {Float32Array} out @param {number} nOut @param {number} nIn
 * @param {{block: number, signs: string}} rotation
 */
function unrotateRows(out, nOut, nIn, rotation) {
  const { b, signs } = rotationOf(nIn, rotation);
  for (let r = 0; r < nOut; r++) {
    const row = out.subarray(r * nIn, (r + 1) * nIn);
    hadamardRow(row, b);
    for (let j = 0; j < nIn; j++) row[j] *= signs[j];
  }
}

/**
 * The rows the codebooks of a rotated tensor quantise, `W Rᵀ` (each row
 * `w` becomes `R w`: the signs, then the block transform), into a copy;
 * `w` itself when the tensor is not rotated. For the groups view.
 * @param {Float32Array} w @param {number} nOut @param {number} nIn
 * @param {{block: number, signs: string}} [rotation]
 */
export function rotatedRows(w, nOut, nIn, rotation) {
  if (!rotation) return w;
  const { b, signs } = rotationOf(nIn, rotation);
  const out = Float32Array.from(w);
  for (let r = 0; r < nOut; r++) {
    const row = out.subarray(r * nIn, (r + 1) * nIn);
    for (let j = 0; j < nIn; j++) row[j] *= signs[j];
    hadamardRow(row, b);
  }
  return out;
}

/**
 * f32 values as raw little-endian bytes of `dtype` (round to nearest even).
 * @param {string} dtype
 * @param {Float32Array} v
 * @returns {Uint8Array}
 */
export function fromF32(dtype, v) {
  if (dtype === 'F32') return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const u32 = new Uint32Array(v.buffer, v.byteOffset, v.length);
  const out = new Uint16Array(v.length);
  if (dtype === 'BF16') {
    for (let i = 0; i < v.length; i++) {
      const x = u32[i];
      out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  } else if (dtype === 'F16') {
    for (let i = 0; i < v.length; i++) out[i] = f32ToF16(v[i]);
  } else {
    throw new Error(`cannot write dtype ${dtype}`);
  }
  return new Uint8Array(out.buffer);
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);
/** @param {number} x */
function f32ToF16(x) {
  f32buf[0] = x;
  const b = u32buf[0];
  const sign = (b >>> 16) & 0x8000;
  const e = (b >>> 23) & 0xff;
  let m = b & 0x7fffff;
  if (e === 0xff) return sign | 0x7c00 | (m ? 0x200 : 0);
  let he = e - 127 + 15;
  if (he >= 31) return sign | 0x7c00;
  if (he <= 0) {
    if (he < -10) return sign;
    m |= 0x800000;
    const shift = 14 - he;
    let h = m >> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = sign | (he << 10) | (m >> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return h;
}
