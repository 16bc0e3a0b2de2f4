// A pool of module workers (www/worker.js), one wasm instance each, running
// jobs from one queue. Cancel terminates the worker running the job and
// starts a fresh one, so it takes effect at once; a worker that crashes is
// replaced the same way and its job fails with a message naming the tensor.

import { MSG, DONE_FOR } from './protocol.js';
import { timed } from './timing.js';

/**
 * @typedef {object} Job
 * @property {number} id
 * @property {import('./protocol.js').ToWorker & {id: number}} msg
 * @property {string} label                what the user is told on failure
 * @property {(m: import('./protocol.js').ProgressMsg) => void} onProgress
 * @property {(v: any) => void} resolve
 * @property {(e: Error) => void} reject
 * @property {Slot|null} slot
 */

/**
 * @typedef {object} Slot
 * @property {Worker} worker
 * @property {Job|null} job
 * @property {boolean} ready
 * @property {number} index
 */

/** A worker whose wasm memory grew past this is replaced after its job. */
export const RECYCLE_WASM_BYTES = 256 << 20;

export class CancelledError extends Error {
  constructor(label) {
    super(`${label}: cancelled`);
    this.name = 'CancelledError';
  }
}

export class WorkerPool {
  /**
   * @param {object} o
   * @param {number} o.size
   * @param {string} o.glueUrl   wasm-bindgen glue (pkg/jlcm.js)
   * @param {WebAssembly.Module|null} o.module  compiled once, shared by every worker
   * @param {(text: string) => void} [o.onNotice]  restarts, crashes
   */
  constructor({ size, glueUrl, module, onNotice = () => {} }) {
    this.size = size;
    this.glueUrl = glueUrl;
    this.module = module;
    this.onNotice = onNotice;
    /** @type {Slot[]} */
    this.slots = [];
    /** @type {Job[]} */
    this.queue = [];
    this.nextId = 1;
    /** @type {import('./protocol.js').ReadyMsg|null} */
    this.engine = null;
    /** @type {Promise<import('./protocol.js').ReadyMsg>} */
    this.ready = new Promise((res, rej) => { this._ready = res; this._failed = rej; });
    for (let i = 0; i < size; i++) this.slots.push(this.spawn(i));
  }

  /** @param {number} index */
  spawn(index) {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: `jlcm-${index}` });
    /** @type {Slot} */
    const slot = { worker, job: null, ready: false, index };
    worker.onmessage = (e) => timed(() => `worker message ${e.data?.type}`, () => this.onMessage(slot, e.data));
    worker.onerror = (e) => {
      e.preventDefault();
      this.crashed(slot, e.message || 'the worker stopped (out of memory?)');
    };
    worker.onmessageerror = () => this.crashed(slot, 'a message could not be read');
    worker.postMessage({ type: MSG.init, module: this.module, glueUrl: this.glueUrl });
    return slot;
  }

  /** @param {Slot} slot @param {import('./protocol.js').FromWorker} m */
  onMessage(slot, m) {
    if (m.type === MSG.ready) {
      slot.ready = true;
      if (!this.engine) { this.engine = m; this._ready(m); }
      this.pump();
      return;
    }
    if (m.type === MSG.failed) {
      this._failed(new Error(m.message));
      slot.ready = true; // still runs JS-only jobs (analyse, decode)
      this.pump();
      return;
    }
    const job = slot.job;
    if (!job || /** @type {any} */ (m).id !== job.id) return;
    if (m.type === MSG.progress) { job.onProgress(m); return; }
    slot.job = null;
    job.slot = null;
    if (m.type === MSG.error && m.code === 'wasm_trap') {
      // The engine aborted (panic or out of memory): its instance is spent.
      this.replace(slot);
      job.reject(Object.assign(new Error(`${job.label}: the engine stopped (${m.message}; out of memory?); its worker was restarted`), { code: m.code }));
      return;
    }
    if (m.type === MSG.error) job.reject(Object.assign(new Error(`${job.label}: ${m.message}`), { code: m.code }));
    else if (m.type === DONE_FOR[job.msg.type]) {
      job.resolve(m);
      // A wasm memory only grows: after a large tensor, start afresh so an
      // idle pool gives the memory back (the module is compiled already).
      if (/** @type {any} */ (m).wasmBytes > RECYCLE_WASM_BYTES) { this.replace(slot); return; }
    }
    else job.reject(new Error(`${job.label}: unexpected answer \`${m.type}\``));
    this.pump();
  }

  /** @param {Slot} slot @param {string} why */
  crashed(slot, why) {
    const job = slot.job;
    this.replace(slot);
    // A job's failure is reported with its tensor by whoever ran it.
    if (!job) this.onNotice(`a worker crashed (${why}); it was restarted`);
    if (job) job.reject(Object.assign(new Error(`${job.label}: the worker crashed (${why}); it was restarted`), { code: 'worker_crashed' }));
  }

  /** Terminate a slot's worker and put a fresh one in its place. @param {Slot} slot */
  replace(slot) {
    slot.worker.terminate();
    if (slot.job) slot.job.slot = null;
    const fresh = this.spawn(slot.index);
    this.slots[slot.index] = fresh;
    this.pump();
  }

  pump() {
    for (const slot of this.slots) {
      if (!this.queue.length) return;
      if (slot.ready && !slot.job) {
        const job = /** @type {Job} */ (this.queue.shift());
        slot.job = job;
        job.slot = slot;
        slot.worker.postMessage(job.msg);
      }
    }
  }

  /**
   * Queue a job.
   * @param {Omit<import('./protocol.js').ToWorker, 'id'>} msg
   * @param {{label: string, onProgress?: (m: import('./protocol.js').ProgressMsg) => void, signal?: AbortSignal}} o
   * @returns {Promise<any>}
   */
  run(msg, { label, onProgress = () => {}, signal }) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      /** @type {Job} */
      const job = { id, msg: /** @type {any} */ ({ ...msg, id }), label, onProgress, resolve, reject, slot: null };
      if (signal) {
        if (signal.aborted) return reject(new CancelledError(label));
        signal.addEventListener('abort', () => this.cancel(job), { once: true });
      }
      this.queue.push(job);
      this.pump();
    });
  }

  /** @param {Job} job */
  cancel(job) {
    const q = this.queue.indexOf(job);
    if (q >= 0) this.queue.splice(q, 1);
    if (job.slot && job.slot.job === job) {
      const slot = job.slot;
      slot.job = null;
      this.replace(slot);
    }
    job.reject(new CancelledError(job.label));
  }

  /**
   * Test hook (www/faults.js): make the worker in slot `index` fail its next
   * compress job the way `kind` fails.
   * @param {'trap'|'uncaught'} kind @param {number} [index]
   */
  armFault(kind, index = 0) {
    this.slots[index].worker.postMessage({ type: MSG.fault, kind });
  }

  /** Jobs running or waiting. */
  get busy() {
    return this.queue.length + this.slots.filter((s) => s.job).length;
  }
}
