// Live loss curves: one line per tensor of the current run, L / L(init)
// against the step number, redrawn at most a few times a second.

import { lineChart } from './charts.js';

export class LossView {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
    /** @type {Map<string, number[]>} */
    this.curves = new Map();
    this.pending = false;
    this.root.innerHTML = '<p class="muted" id="loss-empty">Loss curves appear here while tensors compress.</p><div class="chart" id="loss-chart"></div>';
  }

  clear() {
    this.curves.clear();
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
    setTimeout(() => { this.pending = false; this.draw(); }, 250);
  }

  draw() {
    const el = /** @type {HTMLElement} */ (this.root.querySelector('#loss-chart'));
    /** @type {HTMLElement} */ (this.root.querySelector('#loss-empty')).hidden = this.curves.size > 0;
    if (!this.curves.size || !this.root.offsetParent) return;
    const n = Math.max(...[...this.curves.values()].map((c) => c.length));
    const x = Array.from({ length: n }, (_, i) => i);
    const series = [...this.curves].map(([name, c]) => ({
      label: name,
      values: x.map((i) => (i < c.length && c[0] > 0 ? c[i] / c[0] : null)),
    }));
    lineChart(el, x, series, { title: `Loss / initial loss, ${series.length} tensor(s)`, xLabel: 'step', yLabel: 'L / L₀', height: 300, legend: series.length <= 8 });
  }
}
