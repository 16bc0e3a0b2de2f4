// Run the model in the page: sentences in, embeddings and a similarity matrix
// out, from the original and the packed model side by side, with speed and
// size. Uses the package's runtime (`SentenceEncoder`, MiniLM-shaped BERT on
// dense or packed weights); until the package has it, the view says so.

import { esc } from './table.js';
import { MSG } from '../protocol.js';
import { packedEntries, toBlob } from '../download.js';
import { formatBytes } from '../stats.js';

const SAMPLE = `A man is playing a guitar.
Someone is playing an instrument.
The stock market fell sharply today.
Shares dropped at the close of trading.
A cat sleeps on the sofa.`;

export class ModelView {
  /**
   * @param {HTMLElement} root
   * @param {import('../pool.js').WorkerPool} pool
   * @param {() => any} getState
   */
  constructor(root, pool, getState) {
    this.root = root;
    this.pool = pool;
    this.getState = getState;
    this.render();
    pool.ready.then(() => this.render(), () => this.render());
  }

  onModel() {
    this.render();
  }

  render() {
    const s = this.getState();
    const features = this.pool.engine?.features ?? [];
    const hasRuntime = features.includes('SentenceEncoder');
    const m = s.model;
    const miniLm = m && m.extras['config.json'] && m.extras['tokenizer.json'];
    const text = /** @type {HTMLTextAreaElement|null} */ (this.root.querySelector('#sentences'))?.value ?? SAMPLE;
    this.root.innerHTML = `
      <h2>Run the model in the page</h2>
      <p class="muted">For all-MiniLM-L6-v2-shaped models (the demo, or a folder with config.json, tokenizer.json and model.safetensors): sentence embeddings and their cosine similarities from the original and the packed model, with speed and size. The packed model runs on the SIMD128 kernels straight from indices and codebooks.</p>
      <textarea id="sentences" rows="6" aria-label="sentences, one per line"></textarea>
      <p>${!hasRuntime
    ? '<span class="pill warn">not available yet: this wasm package has no runtime (<code>SentenceEncoder</code>) export</span>'
    : !miniLm ? '<span class="pill warn">open a MiniLM folder (config.json, tokenizer.json, model.safetensors) or the demo</span>'
      : `<button id="embed" type="button">Embed with the original${s.results.size ? ' and the packed' : ''} model</button>`}</p>
      <div id="embed-out"></div>`;
    /** @type {HTMLTextAreaElement} */ (this.root.querySelector('#sentences')).value = text;
    this.root.querySelector('#embed')?.addEventListener('click', () => this.embed());
  }

  async embed() {
    const s = this.getState();
    const m = s.model;
    const out = /** @type {HTMLElement} */ (this.root.querySelector('#embed-out'));
    const sentences = /** @type {HTMLTextAreaElement} */ (this.root.querySelector('#sentences')).value.split('\n').map((x) => x.trim()).filter(Boolean);
    if (!sentences.length) { out.innerHTML = '<p class="error">Type at least one sentence.</p>'; return; }
    out.innerHTML = '<p class="muted">Running…</p>';
    try {
      const packed = s.results.size ? await toBlob(packedEntries(m.tensors, s.results, m.metadata)) : null;
      const r = await this.pool.run({
        type: MSG.embed,
        model: {
          key: `${m.title}:${m.totalBytes}`, config: await m.extras['config.json'].text(), tokenizer: m.extras['tokenizer.json'],
          weights: m.shards[0], packed, packedKey: `${s.results.size}:${s.lastRun?.ms ?? 0}`,
        },
        sentences,
      }, { label: 'running the model' });
      const n = sentences.length;
      const original = rows(r.original, n, r.dim);
      const packedRows = r.packed ? rows(r.packed, n, r.dim) : null;
      out.replaceChildren();
      const grid = document.createElement('div');
      grid.className = 'model-grid';
      grid.append(panel('Original', similarity(original), `${fmtRate(n, r.originalMs)}, weights ${formatBytes(m.totalBytes)}`, sentences));
      if (packedRows) {
        grid.append(panel('Packed', similarity(packedRows), `${fmtRate(n, r.packedMs)}, weights ${formatBytes(packed.size)}`, sentences));
      }
      const list = document.createElement('ol');
      list.className = 'sentences';
      for (const t of sentences) { const li = document.createElement('li'); li.textContent = t; list.append(li); }
      out.append(grid, list);
      if (packedRows) {
        const agree = original.map((o, i) => cosine(o, packedRows[i]));
        const p = document.createElement('p');
        p.textContent = `Cosine between original and packed embeddings: mean ${(agree.reduce((a, b) => a + b, 0) / n).toFixed(4)}, min ${Math.min(...agree).toFixed(4)}.`;
        out.append(p);
      }
      /** @type {any} */ (window).jlcm.lastEmbedding = { sentences, original: Array.from(r.original), packed: r.packed ? Array.from(r.packed) : null, dim: r.dim };
    } catch (e) {
      out.innerHTML = `<p class="error">${esc(e.message)}</p>`;
    }
  }
}

/** @param {Float32Array} flat @param {number} n @param {number} dim */
function rows(flat, n, dim) {
  return Array.from({ length: n }, (_, i) => flat.subarray(i * dim, (i + 1) * dim));
}

/** @param {ArrayLike<number>} a @param {ArrayLike<number>} b */
function cosine(a, b) {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) { ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; }
  return ab / Math.sqrt(aa * bb || 1);
}

/** @param {ArrayLike<number>[]} e */
function similarity(e) {
  return e.map((a) => e.map((b) => cosine(a, b)));
}

/** @param {number} n @param {number} ms */
function fmtRate(n, ms) {
  return `${(n / (ms / 1000)).toFixed(1)} sentences/s`;
}

/** A similarity matrix as a table whose cells are shaded by value. */
function panel(title, sim, caption, sentences) {
  const box = document.createElement('div');
  const h = document.createElement('h3');
  h.textContent = title;
  const table = document.createElement('table');
  table.className = 'similarity';
  const head = table.createTHead().insertRow();
  head.insertCell().textContent = '';
  sim.forEach((_, j) => { const th = document.createElement('th'); th.textContent = `#${j + 1}`; th.title = sentences[j]; head.append(th); });
  for (const [i, row] of sim.entries()) {
    const tr = table.insertRow();
    const th = document.createElement('th');
    th.textContent = `#${i + 1}`;
    th.title = sentences[i];
    tr.append(th);
    for (const v of row) {
      const td = tr.insertCell();
      td.textContent = v.toFixed(2);
      td.style.background = `rgba(37, 99, 235, ${Math.max(0, v).toFixed(3)})`;
      td.style.color = v > 0.55 ? '#fff' : '#0f172a';
    }
  }
  const p = document.createElement('p');
  p.className = 'muted';
  p.textContent = caption;
  box.append(h, table, p);
  return box;
}
