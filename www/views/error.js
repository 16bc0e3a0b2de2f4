// Where the error sits: the loss of each row under H, and its share by group.

import { lineChart } from './charts.js';
import { esc } from './table.js';
import { groupIdsOf } from '../packed.js';

/**
 * @param {HTMLElement} root
 * @param {import('../protocol.js').CompressedMsg} r
 */
export function renderErrorView(root, r) {
  const { report } = r;
  const rows = report.rowLoss;
  const groups = groupIdsOf(r.parts);
  const G = report.groupSizes.length;
  const total = rows.reduce((a, b) => a + b, 0) || 1;
  const byGroup = new Array(G).fill(0);
  rows.forEach((v, i) => { byGroup[groups[i]] += v; });
  const sorted = [...rows].sort((a, b) => b - a);
  const top = Math.max(1, Math.ceil(rows.length / 100));
  const topShare = sorted.slice(0, top).reduce((a, b) => a + b, 0) / total;
  root.innerHTML = `
    <h2 class="tensor-title">${esc(report.name)}: where the error sits</h2>
    <p class="muted">The worst 1 % of rows (${top}) hold ${(topShare * 100).toFixed(1)} % of the loss.</p>
    <div class="chart" id="row-error"></div>
    <div class="chart" id="group-error"></div>`;
  lineChart(/** @type {HTMLElement} */ (root.querySelector('#row-error')), rows.map((_, i) => i),
    [{ label: 'row loss', values: rows, bars: true, colour: '#dc2626' }],
    { title: 'Loss of each row (wᵣ − ŵᵣ)ᵀH(wᵣ − ŵᵣ)', xLabel: 'row', yLabel: 'loss' });
  lineChart(/** @type {HTMLElement} */ (root.querySelector('#group-error')), byGroup.map((_, g) => g),
    [{ label: 'share of loss', values: byGroup.map((v) => v / total), bars: true },
      { label: 'share of rows', values: report.groupSizes.map((n) => n / rows.length), colour: '#111827' }],
    { title: 'Loss by group vs rows by group', xLabel: 'group', yLabel: 'share', height: 180, legend: true, xIntegers: true });
}
