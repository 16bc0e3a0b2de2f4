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
    <h3>Each group's values${params.rotation ? ` after the input rotation (W Rᵀ, blocks of ${params.rotation.block}: what the codebooks quantise)` : ''}, with its codewords (dashed)${shared ? ' × the group scale' : ''}</h3>
    <div class="multiples" id="group-multiples"></div>`;
  const x = Array.from({ length: G }, (_, g) => g);
  lineChart(/** @type {HTMLElement} */ (root.querySelector('#group-sizes')), x,
    [{ label: 'rows in group', values: report.groupSizes, bars: true }],
    { title: 'Rows per group', xLabel: 'group', yLabel: 'rows', height: 160, xIntegers: true });
  const box = /** @type {HTMLElement} */ (root.querySelector('#group-multiples'));
  const plots = [];
  for (let g = 0; g < G; g++) {
    const cell = document.createElement('div');
    cell.className = 'multiple';
    const cap = document.createElement('div');
    cap.className = 'caption';
    cap.textContent = `group ${g}: ${report.groupSizes[g]} rows`;
    const plot = document.createElement('div');
    cell.append(cap, plot);
    box.append(cell);
    plots.push(plot);
  }
  // One layout to size the cells, then the charts a few per frame, so that
  // up to 256 small multiples never block the main thread in one go.
  const width = Math.max(200, (box.firstElementChild?.clientWidth ?? 210) - 10);
  const token = (drawing.get(root) ?? 0) + 1;
  drawing.set(root, token);
  let g = 0;
  const batch = () => {
    if (drawing.get(root) !== token) return; // redrawn meanwhile
    for (const end = Math.min(G, g + PLOTS_PER_FRAME); g < end; g++) {
      const marks = Array.from(books[shared ? 0 : g], (v) => v * scales[g]);
      histogramChart(plots[g], r.groupHistograms[g], { width, height: 110, marks, colour: colour(g), compact: true });
    }
    if (g < G) requestAnimationFrame(batch);
  };
  batch();
}

/** Small multiples drawn per animation frame. */
const PLOTS_PER_FRAME = 4;
/** The latest drawing of each view root, so a stale one stops. @type {WeakMap<HTMLElement, number>} */
const drawing = new WeakMap();
