// Run the model in the page: sentences in, embeddings and a similarity matrix
// out, from the original and the packed model side by side. Needs the
// runtime API of the wasm package (an `Embedder` export); until it exists the
// view says so.

import { esc } from './table.js';

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
    const hasRuntime = features.includes('Embedder');
    const m = s.model;
    const miniLm = m && m.extras['config.json'] && m.extras['tokenizer.json'];
    this.root.innerHTML = `
      <h2>Run the model in the page</h2>
      <p class="muted">For all-MiniLM-L6-v2-shaped models (the demo): embeddings and a similarity matrix from the original and the packed model, with sentences/s and size.</p>
      <textarea id="sentences" rows="5" aria-label="sentences">A man is playing a guitar.
Someone plays an instrument.
The stock market fell sharply today.
Shares dropped at the close of trading.</textarea>
      <p>${!hasRuntime
    ? '<span class="pill warn">not available: the wasm package has no runtime (<code>Embedder</code>) export yet</span>'
    : !miniLm ? '<span class="pill warn">open a MiniLM folder (config.json, tokenizer.json, model.safetensors) or the demo</span>'
      : '<button id="embed" type="button">Embed</button>'}</p>
      <div id="embed-out"></div>`;
    this.root.querySelector('#embed')?.addEventListener('click', () => this.embed());
  }

  async embed() {
    const out = /** @type {HTMLElement} */ (this.root.querySelector('#embed-out'));
    out.textContent = 'Running…';
    out.innerHTML = `<p class="error">${esc('The runtime API is not wired yet.')}</p>`;
  }
}
