// Live loss curves: one line per tensor of the current run, L / L(init)
// against the step number. The chart is built once and then only fed new
// data (and new series), at most twice a second, so the main thread stays
// free while workers compress.

import { lineChart, colour } from './charts.js';
import { timed } from '../timing.js';

export class LossView {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
    /** @type {Map<string, number[]>} */
    this.curves = new Map();
    this.pending = false;
    /** How long the last redraw took (ms): spaces the next one. */
    this.drawMs = 0;
    /** @type {any} */
    this.plot = null;
    /** @type {string[]} names in the plot's series order */
    this.names = [];
    this.root.innerHTML = '<p class="muted" id="loss-empty">Loss curves appear here while tensors compress.</p><div class="chart" id="loss-chart"></div>';
  }

  clear() {
    this.curves.clear();
    this.plot?.destroy();
    this.plot = null;
    this.names = [];
    this.schedule();
  }

  /** @param {string} name @param {number} loss */
  add(name, loss) {
    const c = this.curves.get(name) ?? [];
    c.push(loss);
    this.curves.set(name, c);
    this.schedule();
  }

  /** @param {string} name @param {number[]} losses */
  set(name, losses) {
    this.curves.set(name, [...losses]);
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    // At most one redraw per 500 ms, and the main thread at most ~5% busy
    // with it: a long run's chart (36+ curves) takes tens of ms to draw.
    setTimeout(() => {
      this.pending = false;
      const t0 = performance.now();
      timed('loss chart', () => this.draw());
      this.drawMs = performance.now() - t0;
    }, Math.max(500, 20 * this.drawMs));
  }

  draw() {
    const el = /** @type {HTMLElement} */ (this.root.querySelector('#loss-chart'));
    /** @type {HTMLElement} */ (this.root.querySelector('#loss-empty')).hidden = this.curves.size > 0;
    if (!this.curves.size || !this.root.offsetParent) return;
    const n = Math.max(2, ...[...this.curves.values()].map((c) => c.length));
    const x = Array.from({ length: n }, (_, i) => i);
    const values = (name) => {
      const c = this.curves.get(name) ?? [];
      return x.map((i) => (i < c.length && c[0] > 0 ? c[i] / c[0] : null));
    };
    const fresh = [...this.curves.keys()].filter((k) => !this.names.includes(k));
    if (!this.plot || !el.contains(this.plot.root) || this.names.length + fresh.length > 64) {
      this.names = [...this.curves.keys()].slice(-64);
      this.plot = lineChart(el, x, this.names.map((name) => ({ label: name, values: values(name) })),
        { title: 'Loss / initial loss, per tensor', xLabel: 'step (codebook and mapping steps after the initialisation)', yLabel: 'L / L₀', height: 320, legend: false, xIntegers: true });
      return;
    }
    for (const name of fresh) {
      this.plot.addSeries({ label: name, stroke: colour(this.names.length), width: 1.5, points: { show: false }, spanGaps: true });
      this.names.push(name);
    }
    this.plot.setData([x, ...this.names.map(values)]);
  }
}
