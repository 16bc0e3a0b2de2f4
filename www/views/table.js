// The tensor table: name, shape, dtype, size, compressible, and the result of
// compressing it; searchable, sortable, with totals.

import { formatBytes } from '../stats.js';
import { timed } from '../timing.js';

/**
 * @typedef {object} Row
 * @property {import('../safetensors.js').TensorInfo} t
 * @property {string} status   '', 'queued', 'running', 'done', 'failed', 'cancelled'
 * @property {number|null} bpw
 * @property {number|null} err relative output error
 * @property {number} progress 0..1
 */

const COLUMNS = [
  { key: 'name', label: 'Name', get: (r) => r.t.name },
  { key: 'shape', label: 'Shape', get: (r) => r.t.shape.reduce((a, b) => a * b, 1) },
  { key: 'dtype', label: 'Dtype', get: (r) => r.t.dtype },
  { key: 'size', label: 'Size', get: (r) => r.t.end - r.t.start },
  { key: 'bpw', label: 'bpw', get: (r) => r.bpw ?? Infinity },
  { key: 'err', label: 'Error', get: (r) => r.err ?? Infinity },
  { key: 'status', label: 'Status', get: (r) => r.status },
];

export class TensorTable {
  /**
   * @param {HTMLElement} root
   * @param {(name: string) => void} onSelect
   */
  constructor(root, onSelect) {
    this.root = root;
    this.onSelect = onSelect;
    /** @type {Row[]} */
    this.rows = [];
    /** @type {Map<string, Row>} */
    this.byName = new Map();
    /** @type {Set<Row>} rows changed since the last frame */
    this.dirty = new Set();
    /** A redraw of the dirty rows is scheduled. */
    this.flushPending = false;
    this.query = '';
    this.sortKey = '';
    this.sortDir = 1;
    this.selected = '';
    this.root.innerHTML = `
      <div class="table-tools">
        <input type="search" id="tensor-search" placeholder="Search tensors (regex or text)" aria-label="Search tensors">
        <span class="muted" id="tensor-count"></span>
      </div>
      <div class="table-scroll"><table id="tensor-table"><thead><tr></tr></thead><tbody></tbody><tfoot></tfoot></table></div>`;
    this.tbody = /** @type {HTMLElement} */ (root.querySelector('tbody'));
    this.tfoot = /** @type {HTMLElement} */ (root.querySelector('tfoot'));
    const head = /** @type {HTMLElement} */ (root.querySelector('thead tr'));
    for (const c of COLUMNS) {
      const th = document.createElement('th');
      th.textContent = c.label;
      th.dataset.key = c.key;
      th.tabIndex = 0;
      th.addEventListener('click', () => this.sortBy(c.key));
      head.append(th);
    }
    /** @type {HTMLInputElement} */ (root.querySelector('#tensor-search')).addEventListener('input', (e) => {
      this.query = /** @type {HTMLInputElement} */ (e.target).value;
      this.render();
    });
    this.tbody.addEventListener('click', (e) => {
      const tr = /** @type {HTMLElement} */ (e.target).closest('tr');
      if (tr?.dataset.name) this.onSelect(tr.dataset.name);
    });
  }

  /** @param {import('../safetensors.js').TensorInfo[]} tensors */
  setTensors(tensors) {
    this.rows = tensors.map((t) => ({ t, status: '', bpw: null, err: null, progress: 0 }));
    this.byName = new Map(this.rows.map((r) => [r.t.name, r]));
    this.dirty.clear();
    this.render();
  }

  /** @param {string} name @param {Partial<Row>} patch */
  update(name, patch) {
    const row = this.byName.get(name);
    if (!row) return;
    Object.assign(row, patch);
    this.dirty.add(row);
    // One pending redraw at a time (a row updated twice used to queue a
    // second one: the set's size was 1 again).
    if (this.flushPending) return;
    this.flushPending = true;
    setTimeout(() => requestAnimationFrame(() => { this.flushPending = false; timed('table rows', () => this.flush()); }), 250);
  }

  /** Redraw the rows that changed (at most 4 times a second), and the totals once. */
  flush() {
    for (const row of this.dirty) {
      const tr = this.tbody.querySelector(`tr[data-name="${CSS.escape(row.t.name)}"]`);
      if (tr) tr.outerHTML = this.rowHtml(row);
    }
    this.dirty.clear();
    this.renderTotals(this.visible());
  }

  /** @param {string} key */
  sortBy(key) {
    this.sortDir = this.sortKey === key ? -this.sortDir : 1;
    this.sortKey = key;
    this.render();
  }

  /** @param {string} name */
  select(name) {
    this.selected = name;
    for (const tr of this.tbody.querySelectorAll('tr.selected')) tr.classList.remove('selected');
    this.tbody.querySelector(`tr[data-name="${CSS.escape(name)}"]`)?.classList.add('selected');
  }

  visible() {
    let re = null;
    try { re = this.query ? new RegExp(this.query, 'i') : null; } catch { re = null; }
    const q = this.query.toLowerCase();
    let rows = this.rows.filter((r) => !this.query || (re ? re.test(r.t.name) : r.t.name.toLowerCase().includes(q)));
    if (this.sortKey) {
      const col = COLUMNS.find((c) => c.key === this.sortKey);
      rows = [...rows].sort((a, b) => {
        const x = col.get(a);
        const y = col.get(b);
        return (x < y ? -1 : x > y ? 1 : 0) * this.sortDir;
      });
    }
    return rows;
  }

  render() {
    const rows = this.visible();
    for (const th of this.root.querySelectorAll('th')) {
      th.classList.toggle('sorted', th.dataset.key === this.sortKey);
      th.dataset.dir = this.sortDir > 0 ? '▲' : '▼';
    }
    const shown = rows.slice(0, 5000);
    this.tbody.innerHTML = shown.map((r) => this.rowHtml(r)).join('');
    /** @type {HTMLElement} */ (this.root.querySelector('#tensor-count')).textContent =
      `${rows.length} of ${this.rows.length} tensors${shown.length < rows.length ? ` (first ${shown.length} shown)` : ''}`;
    this.renderTotals(rows);
    if (this.selected) this.select(this.selected);
  }

  /** @param {Row} r */
  rowHtml(r) {
    const t = r.t;
    const status = r.status === 'running' ? `running ${Math.round(r.progress * 100)}%` : r.status || (t.compressible ? '' : 'copied');
    return `<tr data-name="${esc(t.name)}" class="${r.status} ${t.compressible ? '' : 'copied'} ${t.name === this.selected ? 'selected' : ''}">
      <td class="name" title="${esc(t.name)} (${esc(t.shard)})">${esc(t.name)}</td>
      <td>[${t.shape.join(', ')}]</td><td>${t.dtype}</td><td class="num">${formatBytes(t.end - t.start)}</td>
      <td class="num">${r.bpw == null ? '' : r.bpw.toFixed(3)}</td>
      <td class="num">${r.err == null ? '' : r.err.toFixed(4)}</td>
      <td class="status">${status}</td></tr>`;
  }

  /** @param {Row[]} rows */
  renderTotals(rows) {
    const bytes = rows.reduce((a, r) => a + (r.t.end - r.t.start), 0);
    const comp = rows.filter((r) => r.t.compressible);
    const compBytes = comp.reduce((a, r) => a + (r.t.end - r.t.start), 0);
    const params = rows.reduce((a, r) => a + r.t.shape.reduce((x, y) => x * y, 1), 0);
    const done = rows.filter((r) => r.bpw != null);
    const w = done.reduce((a, r) => a + r.t.shape.reduce((x, y) => x * y, 1), 0);
    const bpw = w ? done.reduce((a, r) => a + (r.bpw ?? 0) * r.t.shape.reduce((x, y) => x * y, 1), 0) / w : null;
    this.tfoot.innerHTML = `<tr><td colspan="3" title="${comp.length} compressible (${formatBytes(compBytes)})">Total: ${rows.length} tensors (${comp.length} compressible), ${fmtCount(params)} values</td>
      <td class="num">${formatBytes(bytes)}</td>
      <td class="num">${bpw == null ? '' : bpw.toFixed(3)}</td><td></td><td>${done.length} done</td></tr>`;
  }
}

/** @param {number} n */
function fmtCount(n) {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} M` : `${n}`;
}

/** @param {string} s */
export function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}
