// Main-thread work that takes long enough to matter (> 20 ms), recorded in
// `window.jlcm.slow` so the page tests can say what blocked.

/** @type {[string, number][]} */
export const slow = [];

/**
 * Run `fn`, recording it if it took more than 20 ms.
 * @template T
 * @param {string | (() => string)} label  a function is called after `fn`
 *   (so reading a message's data inside `fn`, its deserialisation, is timed)
 * @param {() => T} fn
 * @returns {T}
 */
export function timed(label, fn) {
  const t0 = performance.now();
  try {
    return fn();
  } finally {
    const ms = performance.now() - t0;
    if (ms > 20) slow.push([typeof label === 'function' ? label() : label, Math.round(ms)]);
  }
}
