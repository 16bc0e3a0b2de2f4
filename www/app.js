// The page: opens a model, shows its tensors, compresses them in a pool of
// workers, draws groups, codebooks, errors and loss curves, and downloads
// the packed file.

import { openModel, filesFromDrop, fetchDemoFiles } from './files.js';
import { readHeader } from './safetensors.js';
import { WorkerPool, CancelledError } from './pool.js';
import { MSG, DEFAULT_OPTIONS } from './protocol.js';
import { TensorTable } from './views/table.js';
import { renderTensorView } from './views/tensor.js';
import { renderGroupsView } from './views/groups.js';
import { renderErrorView } from './views/error.js';
import { LossView } from './views/loss.js';
import { ModelView } from './views/model.js';
import { CalibrationPanel } from './calibration.js';
import { packedEntries, denseEntries, saveSafetensors, keepPartsOffHeap, partsInMemory } from './download.js';
import { formatBytes } from './stats.js';
import { slow, timings } from './timing.js';
import { useEngineHeaders } from './headers.js';
import { looksPacked, openPacked, packedSummary, packedTensorText } from './packed-file.js';

const $ = (/** @type {string} */ sel) => /** @type {HTMLElement} */ (document.querySelector(sel));

/** Everything the page knows; one object so tests can read it. */
const state = {
  /** @type {import('./files.js').OpenedModel|null} */
  model: null,
  /** @type {string} */
  selected: '',
  /** @type {Map<string, import('./protocol.js').CompressedMsg>} */
  results: new Map(),
  /** @type {AbortController|null} */
  run: null,
  /** @type {{file: File, tensors: Map<string, import('./safetensors.js').TensorInfo>}|null} */
  hessians: null,
  view: 'tensor',
  /** @type {{tensors: number, ms: number, failed: string[], cancelled: number}|null} */
  lastRun: null,
};
/** @type {any} */ (window).jlcm = { state, slow, timings };

const pool = await startPool();
const table = new TensorTable($('#table'), (name) => select(name));
const lossView = new LossView($('#view-loss'));
const modelView = new ModelView($('#view-model'), pool, () => state);
const calibration = new CalibrationPanel($('#calibration-panel'), pool, () => state, notice, (label) => { $('#hessian-name').textContent = label; });
wireOpening();
wireSettings();
wireTabs();
wireActions();
if (new URLSearchParams(location.search).has('demo')) loadDemo();

/** Compile the wasm once on the main thread and share the module with every worker. */
async function startPool() {
  const size = Math.max(1, Math.min(8, navigator.hardwareConcurrency || 2));
  const glueUrl = new URL('./pkg/jlcm.js', import.meta.url).href;
  /** @type {WebAssembly.Module|null} */
  let module = null;
  try {
    module = await WebAssembly.compileStreaming(fetch(new URL('./pkg/jlcm_bg.wasm', import.meta.url)));
  } catch (e) {
    notice(`The wasm engine is not available (${e.message}). Build it with scripts/serve.sh; browsing still works, compression does not.`, 'error');
  }
  // Headers are validated by the engine's reader (same messages as the CLI).
  if (module) await useEngineHeaders(glueUrl, module).catch((e) => notice(`Header checks fall back to the page's reader (${e.message}).`, 'error'));
  const p = new WorkerPool({ size, glueUrl, module, onNotice: (t) => notice(t, 'error') });
  const status = $('#engine-status');
  p.ready.then((r) => {
    const ok = r.features.includes('compressTensor');
    status.textContent = `engine ${r.version}: ${r.simd ? 'SIMD128' : 'no SIMD'}, ${size} workers${ok ? '' : ' (no compressTensor export)'}`;
    status.className = `pill ${ok && r.simd ? 'ok' : 'warn'}`;
    /** @type {any} */ (window).jlcm.engine = r;
    refreshButtons();
  }, (e) => {
    status.textContent = 'engine: failed';
    status.className = 'pill bad';
    notice(e.message, 'error');
  });
  /** @type {any} */ (window).jlcm.pool = p;
  return p;
}

/**
 * @param {string} text @param {'info'|'error'} [kind]
 * @param {{label: string, run: () => void}} [action]  a button in the notice
 */
function notice(text, kind = 'info', action) {
  const box = $('#notices');
  const n = document.createElement('div');
  n.className = `notice ${kind}`;
  n.textContent = text;
  if (action) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'notice-action';
    b.textContent = action.label;
    b.onclick = () => { n.remove(); action.run(); };
    n.append(b);
  }
  const close = document.createElement('button');
  close.type = 'button';
  close.textContent = '×';
  close.setAttribute('aria-label', 'dismiss');
  close.onclick = () => n.remove();
  n.append(close);
  box.append(n);
  while (box.children.length > 4) box.firstElementChild?.remove();
  if (kind === 'info') setTimeout(() => n.remove(), 4000);
}

function wireOpening() {
  for (const id of ['#pick-files', '#pick-folder']) {
    $(id).addEventListener('change', (e) => {
      const input = /** @type {HTMLInputElement} */ (e.target);
      if (input.files?.length) open([...input.files]);
      input.value = '';
    });
  }
  $('#load-demo').addEventListener('click', loadDemo);
  const zone = document.body;
  zone.addEventListener('dragover', (e) => { e.preventDefault(); document.body.classList.add('dragging'); });
  zone.addEventListener('dragleave', (e) => { if (!e.relatedTarget) document.body.classList.remove('dragging'); });
  zone.addEventListener('drop', async (e) => {
    e.preventDefault();
    document.body.classList.remove('dragging');
    if (e.dataTransfer) open(await filesFromDrop(e.dataTransfer));
  });
}

async function loadDemo() {
  try {
    notice('Loading the demo model (all-MiniLM-L6-v2) from this server…');
    await open(await fetchDemoFiles());
  } catch (e) {
    notice(e.message, 'error');
  }
}

/** @param {File[]} files */
async function open(files) {
  try {
    let model = await openModel(files);
    // A jlcm packed file is checked whole by the engine and shown as packed.
    if (looksPacked(model)) model = await openPacked(model);
    state.run?.abort();
    state.model = model;
    state.results.clear();
    state.selected = '';
    lossView.clear();
    table.setTensors(model.tensors);
    $('#drop-zone').classList.add('compact');
    const comp = model.tensors.filter((t) => t.compressible).length;
    if (model.packed) {
      for (const t of model.tensors) if (t.packed) table.update(t.name, { status: 'packed', bpw: t.packed.bpw });
    }
    $('#model-summary').textContent = model.packed ? packedSummary(model.title, model.packed) : `${model.title}: ${model.tensors.length} tensors (${comp} compressible), ${formatBytes(model.totalBytes)} in ${model.shards.length} file(s); headers read in ${model.openMs.toFixed(0)} ms.`;
    /** @type {any} */ (window).jlcm.openedAt = performance.now();
    refreshButtons();
    modelView.onModel();
    calibration.onModel();
    const first = model.tensors.find((t) => t.compressible) || (model.packed && model.tensors.find((t) => t.packed));
    if (first) select(first.name);
  } catch (e) {
    notice(`Could not open: ${e.message}`, 'error');
  }
}

/** @param {string} name */
async function select(name) {
  const t = state.model?.tensors.find((x) => x.name === name);
  if (!t) return;
  state.selected = name;
  table.select(name);
  refreshButtons();
  showResult(name);
  const view = $('#view-tensor');
  if (state.model?.packed) {
    view.innerHTML = '<h2 class="tensor-title"></h2><p class="muted"></p>';
    view.querySelector('h2').textContent = name;
    view.querySelector('p').textContent = packedTensorText(t);
    return;
  }
  if (!t.compressible || !['F32', 'F16', 'BF16'].includes(t.dtype) || t.shape.length < 2) {
    view.innerHTML = `<h2 class="tensor-title"></h2><p class="muted">Not compressed (${t.shape.length < 2 ? 'not a matrix' : t.dtype}); copied through as is.</p>`;
    view.querySelector('h2').textContent = name;
    return;
  }
  view.innerHTML = '<p class="muted">Reading the tensor…</p>';
  try {
    const a = await pool.run({ type: MSG.analyse, tensor: ref(t), bins: 160, maxRows: 4096 }, { label: `analysing ${name}` });
    if (state.selected === name) renderTensorView(view, t, a);
  } catch (e) {
    if (state.selected === name) {
      view.innerHTML = '<p class="error"></p>';
      /** @type {HTMLElement} */ (view.querySelector('p')).textContent = e.message;
    }
  }
}

/** @param {import('./safetensors.js').TensorInfo} t @returns {import('./protocol.js').TensorRef} */
function ref(t) {
  return { name: t.name, dtype: /** @type {any} */ (t.dtype), shape: t.shape, file: t.file, start: t.start, end: t.end };
}

/** @param {string} name */
function showResult(name) {
  const r = state.results.get(name);
  if (r) {
    // Only the view on screen is drawn (showView draws the other on switching).
    if (state.view === 'groups') renderGroupsView($('#view-groups'), r);
    if (state.view === 'error') renderErrorView($('#view-error'), r);
  } else {
    $('#view-groups').innerHTML = '<p class="muted">Compress the selected tensor to see its groups and codebooks.</p>';
    $('#view-error').innerHTML = '<p class="muted">Compress the selected tensor to see where its error sits.</p>';
  }
}

function wireTabs() {
  for (const b of document.querySelectorAll('.tabs button')) {
    b.addEventListener('click', () => showView(/** @type {HTMLElement} */ (b).dataset.view || 'tensor'));
  }
}

/** @param {string} v */
function showView(v) {
  state.view = v;
  for (const b of document.querySelectorAll('.tabs button')) b.classList.toggle('active', /** @type {HTMLElement} */ (b).dataset.view === v);
  for (const el of document.querySelectorAll('.view')) /** @type {HTMLElement} */ (el).hidden = el.id !== `view-${v}`;
  if (v === 'loss') lossView.draw();
  else if (v === 'model') modelView.render();
  else if (state.selected && (v === 'groups' || v === 'error')) showResult(state.selected);
  else if (v === 'tensor' && state.selected) select(state.selected);
}
/** @type {any} */ (window).jlcm.showView = showView;

function wireSettings() {
  const form = /** @type {HTMLFormElement} */ ($('#settings'));
  form.calibration.addEventListener('change', () => {
    if (form.calibration.value === 'file') $('#pick-hessian').click();
    else { state.hessians = null; $('#hessian-name').textContent = ''; }
    if (form.calibration.value === 'computed') calibration.show(); else calibration.hide();
  });
  $('#pick-hessian').addEventListener('change', async (e) => {
    const f = /** @type {HTMLInputElement} */ (e.target).files?.[0];
    if (!f) return;
    try {
      const h = await readHeader(f);
      state.hessians = { file: f, tensors: new Map(h.tensors.map((t) => [t.name, t])) };
      $('#hessian-name').textContent = `${f.name}: ${h.tensors.length} H matrices`;
    } catch (err) {
      notice(`Calibration file: ${err.message}`, 'error');
      form.calibration.value = 'none';
    }
  });
}

/** @returns {import('./protocol.js').CompressOptions} */
function options() {
  const f = /** @type {HTMLFormElement} */ ($('#settings'));
  const num = (n) => Number(f[n].value);
  return { ...DEFAULT_OPTIONS, bits: num('bits'), dim: num('dim'), groups: num('groups'), mode: f.mode.value, iters: num('iters'), seed: num('seed'), rotate: f.rotate.checked };
}

function refreshButtons() {
  const t = state.model?.tensors.find((x) => x.name === state.selected);
  const engine = Boolean(pool.engine?.features.includes('compressTensor'));
  const running = Boolean(state.run);
  /** @type {HTMLButtonElement} */ ($('#compress-one')).disabled = !engine || running || !t?.compressible;
  /** @type {HTMLButtonElement} */ ($('#compress-all')).disabled = !engine || running || !state.model;
  /** @type {HTMLButtonElement} */ ($('#cancel')).disabled = !running;
  /** @type {HTMLButtonElement} */ ($('#download-packed')).disabled = running || !state.results.size;
  /** @type {HTMLButtonElement} */ ($('#download-dense')).disabled = running || !state.results.size;
}

function wireActions() {
  $('#compress-one').addEventListener('click', () => {
    const t = state.model?.tensors.find((x) => x.name === state.selected);
    if (t) compress([t]);
  });
  $('#compress-all').addEventListener('click', () => compress(table.visible().map((r) => r.t).filter((t) => t.compressible)));
  $('#cancel').addEventListener('click', () => state.run?.abort());
  $('#download-packed').addEventListener('click', () => download('packed'));
  $('#download-dense').addEventListener('click', () => download('dense'));
}

/** @param {import('./safetensors.js').TensorInfo[]} tensors */
async function compress(tensors) {
  if (!tensors.length || state.run) return;
  const opts = options();
  const run = new AbortController();
  state.run = run;
  refreshButtons();
  const t0 = performance.now();
  let done = 0;
  const failed = [];
  let cancelled = 0;
  const bar = $('#progress');
  bar.hidden = false;
  const progress = () => {
    /** @type {HTMLElement} */ ($('#progress-bar')).style.transform = `scaleX(${done / tensors.length})`;
    $('#progress-text').textContent = `${done} / ${tensors.length} tensors, ${((performance.now() - t0) / 1000).toFixed(1)} s`;
  };
  progress();
  const tick = setInterval(progress, 500);
  for (const t of tensors) {
    table.update(t.name, { status: 'queued', progress: 0 });
    state.results.delete(t.name);
  }
  const jobs = tensors.map(async (t) => {
    const hessian = hessianFor(t);
    const steps = 1 + 2 * opts.iters;
    let step = 0;
    try {
      const r = await pool.run({ type: MSG.compress, tensor: ref(t), options: opts, hessian }, {
        label: t.name,
        signal: run.signal,
        onProgress: (m) => {
          if (m.event.type === 'loss') {
            if (m.event.point.kind === 'init') lossView.set(t.name, []);
            lossView.add(t.name, m.event.point.loss);
            step++;
          }
          table.update(t.name, { status: 'running', progress: Math.min(1, step / steps) });
        },
      });
      state.results.set(t.name, keepPartsOffHeap(r));
      lossView.set(t.name, r.report.losses.map((p) => p.loss));
      table.update(t.name, { status: 'done', bpw: r.report.bpw, err: r.report.relOutputError, progress: 1 });
      if (state.selected === t.name) showResult(t.name);
    } catch (e) {
      if (e instanceof CancelledError) {
        cancelled++;
        table.update(t.name, { status: 'cancelled' });
      } else {
        failed.push(t.name);
        table.update(t.name, { status: 'failed' });
        notice(`Compressing failed: ${e.message}`, 'error');
      }
    } finally {
      done++;
    }
  });
  await Promise.all(jobs);
  clearInterval(tick);
  progress();
  const ms = performance.now() - t0;
  state.lastRun = { tensors: tensors.length, ms, failed, cancelled };
  state.run = null;
  refreshButtons();
  if (cancelled) notice(`Cancelled: ${tensors.length - cancelled - failed.length} of ${tensors.length} tensors finished.`);
  else if (failed.length) {
    const again = tensors.filter((t) => failed.includes(t.name));
    notice(`Compressed ${tensors.length - failed.length} tensor(s) in ${(ms / 1000).toFixed(2)} s; ${failed.length} failed: ${failed.slice(0, 3).join(', ')}${failed.length > 3 ? ', …' : ''}.`, 'error',
      { label: `Retry ${failed.length} failed`, run: () => compress(again) });
  } else notice(`Compressed ${tensors.length} tensor(s) in ${(ms / 1000).toFixed(2)} s.`);
}

/** @param {import('./safetensors.js').TensorInfo} t @returns {import('./protocol.js').HessianRef|null} */
function hessianFor(t) {
  const h = state.hessians?.tensors.get(t.name);
  if (!h || !state.hessians) return null;
  return { file: state.hessians.file, start: h.start, end: h.end, dtype: 'F32' };
}

/** @param {'packed'|'dense'} kind */
async function download(kind) {
  const m = state.model;
  if (!m) return;
  const useFilePicker = /** @type {HTMLFormElement} */ ($('#settings')).filePicker.checked;
  const base = m.title.replace(/\.safetensors$/, '').replace(/[^\w.-]+/g, '_');
  try {
    const out = kind === 'packed'
      ? packedEntries(m.tensors, state.results, m.metadata)
      : denseEntries(m.tensors, state.results, m.metadata, async (r) => (await pool.run({ type: MSG.decode, parts: await partsInMemory(r.parts), params: r.params }, { label: `decoding ${r.report.name}` })).data);
    const res = await saveSafetensors(`${base}.${kind === 'packed' ? 'jlcm' : 'decoded'}.safetensors`, out, { useFilePicker });
    /** @type {any} */ (window).jlcm.lastSave = { kind, ...res };
    notice(`Saved ${formatBytes(res.bytes)} (${kind}) via ${res.how}, in ${res.parts} parts.`);
  } catch (e) {
    if (e.name !== 'AbortError') notice(`Download failed: ${e.message}`, 'error');
  }
}
