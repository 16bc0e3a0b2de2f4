// The selected tensor: its value histogram and per-row statistics.

import { histogramChart, lineChart, fmt } from './charts.js';
import { esc } from './table.js';
import { formatBytes } from '../stats.js';

/**
 * @param {HTMLElement} root
 * @param {import('../safetensors.js').TensorInfo} t
 * @param {import('../protocol.js').AnalysedMsg} a
 */
export function renderTensorView(root, t, a) {
  const sampled = a.rowsRead < a.nOut ? ` (${a.rowsRead} of ${a.nOut} rows sampled)` : '';
  root.innerHTML = `
    <h2 class="tensor-title">${esc(t.name)}</h2>
    <p class="muted">[${t.shape.join(' × ')}] ${t.dtype}, ${formatBytes(t.end - t.start)} in ${esc(t.shard)}; viewed as ${a.nOut} rows × ${a.nIn} columns${sampled}; read and analysed in ${a.ms.toFixed(0)} ms.</p>
    <div class="chart" id="value-histogram"></div>
    <label class="inline"><input type="checkbox" id="hist-log"> log counts</label>
    <div class="chart" id="row-stats"></div>`;
  const hist = /** @type {HTMLElement} */ (root.querySelector('#value-histogram'));
  const tails = a.histogram.outside ? `; ${a.histogram.outside} tail values outside, full range ${fmt(a.min)} … ${fmt(a.max)}` : '';
  const draw = (logY) => histogramChart(hist, a.histogram, { title: `Value histogram (central 99.8 %${tails})`, logY });
  draw(false);
  root.querySelector('#hist-log')?.addEventListener('change', (e) => draw(/** @type {HTMLInputElement} */ (e.target).checked));
  const x = Array.from({ length: a.rows.mean.length }, (_, i) => i);
  lineChart(/** @type {HTMLElement} */ (root.querySelector('#row-stats')), x, [
    { label: 'row mean', values: Array.from(a.rows.mean) },
    { label: 'row std', values: Array.from(a.rows.std) },
    { label: 'row |max|', values: Array.from(a.rows.absMax), width: 1 },
  ], { title: `Row statistics${sampled}`, xLabel: 'row', yLabel: 'value', legend: true });
}
