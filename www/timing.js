// Main-thread work that takes long enough to matter (> 20 ms), recorded in
// `window.jlcm.slow` so the page tests can say what blocked.

/** @type {[string, number][]} */
export const slow = [];
/** Every timed call, by label: [calls, total ms, longest ms]. @type {Map<string, [number, number, number]>} */
export const timings = new Map();

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
    const name = typeof label === 'function' ? label() : label;
    const t = timings.get(name) ?? [0, 0, 0];
    timings.set(name, [t[0] + 1, t[1] + ms, Math.max(t[2], ms)]);
    if (ms > 20) slow.push([name, Math.round(ms)]);
  }
}
