// Calibration computed in the page: for a BERT-family model opened with its
// config.json and tokenizer.json (the demo, or an all-MiniLM-L6-v2-shaped
// folder), run the model on sentences the user types or loads and use the
// resulting H = XᵀX/n per Linear weight for the compressions that follow.
// Runs in a pool worker through the package API (`jlcm/text`
// SentenceEncoder.computeCalibration): the values of
// `jlcm calibrate --batch-size 32` on the same sentences (to f32 summation
// order: SIMD128 here, AVX2 natively). No sentences ship
// with the page: a few examples, or a .txt file (one sentence per line).

import { MSG } from './protocol.js';
import { readHeader } from './safetensors.js';
import { CancelledError } from './pool.js';
import { formatBytes } from './stats.js';

/** Sentences per forward pass: `jlcm calibrate`'s default, so the bytes match. */
export const CALIBRATION_BATCH = 32;

const EXAMPLES = `The committee approved the new budget after a long debate.
She walked her dog along the river every morning.
Researchers measured the temperature of the lake for ten years.
The train to the airport leaves every fifteen minutes.
He fixed the bicycle with a borrowed set of tools.
Heavy rain flooded several streets in the old town.
The museum opened a new exhibition of early photographs.
Most customers paid with their phones rather than with cash.`;

export class CalibrationPanel {
  /**
   * @param {HTMLElement} root       where the panel is drawn (hidden until chosen)
   * @param {import('./pool.js').WorkerPool} pool
   * @param {() => any} getState     the page state (`model`, `hessians`)
   * @param {(text: string, kind?: 'info'|'error') => void} notice
   * @param {(label: string) => void} onHessians  called when H matrices are ready
   */
  constructor(root, pool, getState, notice, onHessians) {
    this.root = root;
    this.pool = pool;
    this.getState = getState;
    this.notice = notice;
    this.onHessians = onHessians;
    /** @type {AbortController|null} */
    this.run = null;
    /** @type {Blob|null} */
    this.result = null;
    this.root.hidden = true;
    this.root.innerHTML = `
      <p class="muted">H = XᵀX/n of every Linear layer's input, from running the model on these sentences (one per line) in a worker; what <code>jlcm calibrate</code> computes.</p>
      <textarea id="calib-sentences" rows="5" aria-label="calibration sentences, one per line"></textarea>
      <div class="actions">
        <label class="button">load .txt <input id="calib-file" type="file" accept=".txt,text/plain" hidden></label>
        <button id="calib-run" type="button">Compute H</button>
        <button id="calib-cancel" type="button" disabled>Cancel</button>
        <button id="calib-save" type="button" disabled>Save H file</button>
      </div>
      <p id="calib-status" class="muted"></p>`;
    this.$('#calib-sentences').value = EXAMPLES;
    this.$('#calib-file').addEventListener('change', async (e) => {
      const f = /** @type {HTMLInputElement} */ (e.target).files?.[0];
      if (f) this.$('#calib-sentences').value = await f.text();
      /** @type {HTMLInputElement} */ (e.target).value = '';
    });
    this.$('#calib-run').addEventListener('click', () => this.compute());
    this.$('#calib-cancel').addEventListener('click', () => this.run?.abort());
    this.$('#calib-save').addEventListener('click', () => this.save());
    pool.ready.then(() => this.onModel(), () => this.onModel());
  }

  /** @param {string} sel @returns {any} */
  $(sel) {
    return this.root.querySelector(sel);
  }

  /** Why in-page calibration cannot run now, or '' when it can. */
  unavailable() {
    const m = this.getState().model;
    if (!this.pool.engine?.features.includes('computeCalibration')) return 'the wasm package has no computeCalibration';
    if (!m || !m.extras['config.json'] || !m.extras['tokenizer.json']) return 'open a model with config.json and tokenizer.json (the demo)';
    return '';
  }

  /** A model was opened (or the engine became ready): enable the setting when it applies. */
  onModel() {
    const option = /** @type {HTMLOptionElement|null} */ (document.querySelector('#settings select[name=calibration] option[value=computed]'));
    const why = this.unavailable();
    if (option) {
      option.disabled = Boolean(why);
      option.textContent = why ? `from sentences (${why})` : 'from sentences, in the page…';
    }
    if (this.result && this.getState().hessians?.file === this.result) {
      // H of the previous model does not fit this one.
      this.getState().hessians = null;
      this.onHessians('');
    }
    this.result = null;
    this.$('#calib-save').disabled = true;
    this.$('#calib-status').textContent = '';
  }

  show() {
    this.root.hidden = false;
  }

  hide() {
    this.run?.abort();
    this.root.hidden = true;
  }

  async compute() {
    const why = this.unavailable();
    const status = this.$('#calib-status');
    if (why) { status.textContent = `Not available: ${why}.`; return; }
    const sentences = String(this.$('#calib-sentences').value).split('\n').map((s) => s.trim()).filter(Boolean);
    if (!sentences.length) { status.textContent = 'Type or load at least one sentence.'; return; }
    const m = this.getState().model;
    const run = new AbortController();
    this.run = run;
    this.$('#calib-run').disabled = true;
    this.$('#calib-cancel').disabled = false;
    status.textContent = `Running the model on ${sentences.length} sentences…`;
    try {
      const r = await this.pool.run({
        type: MSG.calibrate,
        model: { key: `${m.title}:${m.totalBytes}`, config: await m.extras['config.json'].text(), tokenizer: m.extras['tokenizer.json'], weights: m.shards[0] },
        sentences, batchSize: CALIBRATION_BATCH,
      }, {
        label: 'calibration',
        signal: run.signal,
        onProgress: (p) => { if (p.event.type === 'calibration') status.textContent = `Calibrating: ${p.event.done} / ${p.event.total} sentences…`; },
      });
      const file = new File([r.bytes], 'calibration.safetensors');
      const h = await readHeader(file);
      this.getState().hessians = { file, tensors: new Map(h.tensors.map((t) => [t.name, t])) };
      this.result = file;
      this.$('#calib-save').disabled = false;
      const label = `computed: ${h.tensors.length} H matrices from ${sentences.length} sentences`;
      status.textContent = `${label} in ${(r.ms / 1000).toFixed(1)} s (${formatBytes(file.size)}); used by the next compressions.`;
      this.onHessians(label);
      /** @type {any} */ (window).jlcm.calibration = { sentences: sentences.length, tensors: h.tensors.length, ms: r.ms, bytes: file.size };
    } catch (e) {
      status.textContent = e instanceof CancelledError ? 'Calibration cancelled.' : `Calibration failed: ${e.message}`;
      if (!(e instanceof CancelledError)) this.notice(`Calibration failed: ${e.message}`, 'error');
    } finally {
      this.run = null;
      this.$('#calib-run').disabled = false;
      this.$('#calib-cancel').disabled = true;
    }
  }

  save() {
    if (!this.result) return;
    const a = document.createElement('a');
    a.href = URL.createObjectURL(this.result);
    a.download = 'calibration.safetensors';
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }
}
