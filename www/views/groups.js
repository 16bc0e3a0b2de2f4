// Neuron groups and codebooks of a compressed tensor: rows per group, each
// group's value histogram (small multiples) with its codewords drawn over the
// distribution they quantise, and bpw and error.

import { histogramChart, lineChart, colour, fmt } from './charts.js';
import { codebooksOf } from '../packed.js';
import { esc } from './table.js';

/**
 * @param {HTMLElement} root
 * @param {import('../protocol.js').CompressedMsg} r
 */
export function renderGroupsView(root, r) {
  const { report, params, parts } = r;
  const { books, scales } = codebooksOf(parts, params);
  const G = report.groupSizes.length;
  const shared = params.mode === 'scale';
  root.innerHTML = `
    <h2 class="tensor-title">${esc(report.name)}: groups and codebooks</h2>
    <div class="metrics">
      <div><b>${report.bpw.toFixed(3)}</b><span>bits per weight (everything counted)</span></div>
      <div><b>${fmt(report.relOutputError)}</b><span>relative output error</span></div>
      <div><b>${fmt(report.relWeightError)}</b><span>relative weight error</span></div>
      <div><b>${G}</b><span>groups (${params.mode}), ${1 << params.bits} codewords × d=${params.dim}</span></div>
      <div><b>${(r.ms / 1000).toFixed(2)} s</b><span>compress time (one worker)</span></div>
    </div>
    <div class="chart" id="group-sizes"></div>
    <h3>Each group's values, with its codewords (dashed)${shared ? ' × the group scale' : ''}</h3>
    <div class="multiples" id="group-multiples"></div>`;
  const x = Array.from({ length: G }, (_, g) => g);
  lineChart(/** @type {HTMLElement} */ (root.querySelector('#group-sizes')), x,
    [{ label: 'rows in group', values: report.groupSizes, bars: true }],
    { title: 'Rows per group', xLabel: 'group', yLabel: 'rows', height: 160, xIntegers: true });
  const box = /** @type {HTMLElement} */ (root.querySelector('#group-multiples'));
  for (let g = 0; g < G; g++) {
    const cell = document.createElement('div');
    cell.className = 'multiple';
    const cb = books[shared ? 0 : g];
    const marks = Array.from(cb, (v) => v * scales[g]);
    const cap = document.createElement('div');
    cap.className = 'caption';
    cap.textContent = `group ${g}: ${report.groupSizes[g]} rows`;
    const plot = document.createElement('div');
    cell.append(cap, plot);
    box.append(cell);
    histogramChart(plot, r.groupHistograms[g], { width: Math.max(200, cell.clientWidth - 10), height: 110, marks, colour: colour(g), compact: true });
  }
}
