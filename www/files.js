// Opening a model: one .safetensors, several shards, or a folder with
// model.safetensors.index.json. Only headers are read here.

import { readHeader, FileFormatError } from './safetensors.js';

/**
 * An opened model: every tensor of every shard, in file order.
 * @typedef {object} OpenedModel
 * @property {string} title
 * @property {import('./safetensors.js').TensorInfo[]} tensors
 * @property {Record<string,string>} metadata   metadata of the first shard
 * @property {number} totalBytes
 * @property {File[]} shards
 * @property {Record<string, File>} extras       config.json, tokenizer.json, ... if given
 * @property {number} openMs                      time to read and validate every header
 */

const EXTRA_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.txt'];

/**
 * @param {File[]} files
 * @returns {Promise<OpenedModel>}
 */
export async function openModel(files) {
  const t0 = performance.now();
  if (!files.length) throw new FileFormatError('selection', 'no file given');
  const byName = new Map(files.map((f) => [baseName(f), f]));
  const index = byName.get('model.safetensors.index.json') || files.find((f) => baseName(f).endsWith('.safetensors.index.json'));
  /** @type {File[]} */
  let shards;
  if (index) {
    let json;
    try {
      json = JSON.parse(await index.text());
    } catch (e) {
      throw new FileFormatError(baseName(index), `not valid JSON (${e.message})`);
    }
    if (!json || typeof json.weight_map !== 'object') throw new FileFormatError(baseName(index), 'no `weight_map` object');
    const wanted = [...new Set(Object.values(json.weight_map))].sort();
    const missing = wanted.filter((n) => !byName.has(n));
    if (missing.length) throw new FileFormatError(baseName(index), `shard(s) not among the files given: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`);
    shards = wanted.map((n) => /** @type {File} */ (byName.get(n)));
  } else {
    shards = files.filter((f) => baseName(f).endsWith('.safetensors')).sort((a, b) => (baseName(a) < baseName(b) ? -1 : 1));
    if (!shards.length) throw new FileFormatError(files.map(baseName).slice(0, 3).join(', '), 'no .safetensors file in the selection (pick a .safetensors file, its shards, or a folder with model.safetensors.index.json)');
  }
  const headers = await Promise.all(shards.map((f) => readHeader(f)));
  const tensors = headers.flatMap((h) => h.tensors);
  const seen = new Set();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new FileFormatError(t.shard, `tensor \`${t.name}\` appears in two shards`);
    seen.add(t.name);
  }
  /** @type {Record<string, File>} */
  const extras = {};
  for (const n of EXTRA_FILES) if (byName.has(n)) extras[n] = /** @type {File} */ (byName.get(n));
  const folder = files[0].webkitRelativePath ? files[0].webkitRelativePath.split('/')[0] : '';
  return {
    title: folder || (shards.length === 1 ? baseName(shards[0]) : `${shards.length} shards`),
    tensors,
    metadata: headers[0].metadata,
    totalBytes: shards.reduce((a, f) => a + f.size, 0),
    shards,
    extras,
    openMs: performance.now() - t0,
  };
}

/** @param {File} f */
function baseName(f) {
  return f.name.split('/').pop() || f.name;
}

/**
 * Every File in a drop, walking dropped folders.
 * @param {DataTransfer} dt
 * @returns {Promise<File[]>}
 */
export async function filesFromDrop(dt) {
  const entries = [...dt.items].map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
  if (entries.some((e) => e && e.isDirectory)) {
    /** @type {File[]} */
    const out = [];
    for (const e of entries) if (e) await walk(e, out);
    return out;
  }
  return [...dt.files];
}

/** @param {any} entry @param {File[]} out */
async function walk(entry, out) {
  if (entry.isFile) {
    out.push(await new Promise((res, rej) => entry.file(res, rej)));
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
      if (!batch.length) break;
      for (const e of batch) await walk(e, out);
    }
  }
}

/**
 * The demo model served next to the page (scripts/serve.sh puts it under
 * /models/all-MiniLM-L6-v2/). Fetched from the page's own origin only.
 * @returns {Promise<File[]>}
 */
export async function fetchDemoFiles() {
  const base = new URL('models/all-MiniLM-L6-v2/', document.baseURI);
  const names = ['model.safetensors', 'config.json', 'tokenizer.json'];
  const files = [];
  for (const n of names) {
    const r = await fetch(new URL(n, base));
    if (!r.ok) {
      if (n === 'model.safetensors') throw new Error(`the demo model is not served here (${r.status} for ${n}); start the page with scripts/serve.sh`);
      continue;
    }
    files.push(new File([await r.blob()], n));
  }
  return files;
}
