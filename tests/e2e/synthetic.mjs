// Synthetic safetensors files for the page tests.

import fs from 'node:fs';

/** Deterministic pseudo-random matrix (rows x cols), roughly N(0, 0.05). */
export function randomMatrix(rows, cols, seed) {
  let s = seed * 2654435761 >>> 0 || 1;
  const rnd = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 4294967296; };
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) out[i] = (rnd() + rnd() + rnd() - 1.5) * 0.1;
  return out;
}

/** @param {string} dtype @param {Float32Array} v */
function encode(dtype, v) {
  if (dtype === 'F32') return Buffer.from(v.buffer.slice(0));
  const out = Buffer.alloc(v.length * 2);
  const u32 = new Uint32Array(v.buffer);
  for (let i = 0; i < v.length; i++) {
    let h;
    if (dtype === 'BF16') h = (u32[i] + 0x7fff + ((u32[i] >>> 16) & 1)) >>> 16;
    else {
      // F16 for small normal values (the test data stays in range).
      const x = v[i];
      const sign = x < 0 ? 0x8000 : 0;
      const a = Math.abs(x);
      if (a < 6.1e-5) h = sign | Math.round(a / 2 ** -24);
      else {
        const e = Math.floor(Math.log2(a));
        h = sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
      }
    }
    out.writeUInt16LE(h & 0xffff, i * 2);
  }
  return out;
}

/** Header bytes for tensors of given byte lengths. */
export function header(entries, metadata = {}) {
  const obj = Object.keys(metadata).length ? { __metadata__: metadata } : {};
  let pos = 0;
  for (const e of entries) {
    obj[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [pos, pos + e.bytes] };
    pos += e.bytes;
  }
  let json = JSON.stringify(obj);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return { bytes: Buffer.concat([prefix, Buffer.from(json)]), dataBytes: pos };
}

/**
 * Write a small safetensors file with real values.
 * @param {string} file
 * @param {{name: string, dtype: string, shape: number[], values: Float32Array}[]} tensors
 */
export function writeSafetensors(file, tensors) {
  const datas = tensors.map((t) => encode(t.dtype, t.values));
  const h = header(tensors.map((t, i) => ({ ...t, bytes: datas[i].length })));
  fs.writeFileSync(file, Buffer.concat([h.bytes, ...datas]));
}

/**
 * A shard with a real header and a sparse data section (truncate): gigabytes
 * on paper, a few KB on disk.
 * @param {string} file
 * @param {{name: string, dtype: string, shape: number[], bytes: number}[]} entries
 */
export function writeSparseShard(file, entries) {
  const h = header(entries, { format: 'pt' });
  fs.writeFileSync(file, h.bytes);
  fs.truncateSync(file, h.bytes.length + h.dataBytes);
}

/**
 * Weights with a realistic shape of distribution: each row its own scale
 * (log-normal around 0.02) and heavy tails (about 1 value in 500 is a 6x
 * outlier), as trained transformer weights have. Deterministic per seed.
 * Returns rows [r0, r1) as f32.
 */
export function heavyTailedRows(r0, r1, cols, seed) {
  const out = new Float32Array((r1 - r0) * cols);
  for (let r = r0; r < r1; r++) {
    let s = (Math.imul(seed + 1, 2654435761) ^ Math.imul(r + 1, 40503)) >>> 0 || 1;
    const rnd = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 4294967296; };
    const g = () => (rnd() + rnd() + rnd() + rnd() - 2) * 1.732;
    const scale = 0.02 * Math.exp(0.25 * g());
    const o = (r - r0) * cols;
    for (let c = 0; c < cols; c++) {
      const v = g() * scale;
      out[o + c] = rnd() < 0.002 ? v * 6 : v;
    }
  }
  return out;
}

/**
 * A shard with a real header whose listed tensors get real values (written
 * block by block) and whose other tensors stay sparse zeros (truncate).
 * @param {string} file
 * @param {{name: string, dtype: string, shape: number[], bytes: number}[]} entries
 * @param {Set<string>} real  names of the tensors to fill
 * @param {(dtype: string, v: Float32Array) => Uint8Array} encodeRows  f32 → dtype bytes
 */
export function writeShardWithValues(file, entries, real, encodeRows) {
  const h = header(entries, { format: 'pt' });
  fs.writeFileSync(file, h.bytes);
  fs.truncateSync(file, h.bytes.length + h.dataBytes);
  const fd = fs.openSync(file, 'r+');
  try {
    let pos = h.bytes.length;
    for (const [i, e] of entries.entries()) {
      if (real.has(e.name)) {
        const [rows, cols] = e.shape;
        for (let r = 0; r < rows; r += 256) {
          const bytes = encodeRows(e.dtype, heavyTailedRows(r, Math.min(rows, r + 256), cols, i));
          fs.writeSync(fd, bytes, 0, bytes.length, pos + r * cols * (e.bytes / (rows * cols)));
        }
      }
      pos += e.bytes;
    }
  } finally {
    fs.closeSync(fd);
  }
}
