// Value statistics for the views: ranges, histograms, per-row statistics.

/**
 * Finite min and max.
 * @param {ArrayLike<number>} v
 * @returns {[number, number]}
 */
export function range(v) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  if (!Number.isFinite(lo)) return [0, 1];
  return lo === hi ? [lo - 0.5, hi + 0.5] : [lo, hi];
}

/**
 * The central part of a distribution: quantiles `q` and `1 - q` of (a sample
 * of at most 20 000 of) the values, so one outlier does not flatten a plot.
 * @param {ArrayLike<number>} v
 * @param {number} [q]
 * @returns {[number, number]}
 */
export function centralRange(v, q = 0.001) {
  const step = Math.max(1, Math.floor(v.length / 20000));
  const sample = [];
  for (let i = 0; i < v.length; i += step) sample.push(v[i]);
  if (!sample.length) return [0, 1];
  sample.sort((a, b) => a - b);
  const lo = sample[Math.floor(q * (sample.length - 1))];
  const hi = sample[Math.ceil((1 - q) * (sample.length - 1))];
  return lo === hi ? [lo - 0.5, hi + 0.5] : [lo, hi];
}

/**
 * Counts in `bins` equal bins over [lo, hi]; values outside are counted in
 * `outside`, not drawn.
 * @param {ArrayLike<number>} v
 * @param {number} lo
 * @param {number} hi
 * @param {number} bins
 * @returns {import('./protocol.js').Histogram}
 */
export function histogram(v, lo, hi, bins) {
  const counts = new Array(bins).fill(0);
  const scale = bins / (hi - lo || 1);
  let outside = 0;
  for (let i = 0; i < v.length; i++) {
    const x = (v[i] - lo) * scale;
    if (x < 0 || x > bins) { outside++; continue; }
    counts[x >= bins ? bins - 1 : Math.floor(x)]++;
  }
  return { lo, hi, counts, outside };
}

/**
 * Mean, standard deviation and largest magnitude of each row.
 * @param {Float32Array} v
 * @param {number} rows
 * @param {number} cols
 */
export function rowStats(v, rows, cols) {
  const mean = new Float32Array(rows);
  const std = new Float32Array(rows);
  const absMax = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    let s2 = 0;
    let m = 0;
    for (let j = r * cols, e = j + cols; j < e; j++) {
      const x = v[j];
      s += x;
      s2 += x * x;
      const a = x < 0 ? -x : x;
      if (a > m) m = a;
    }
    mean[r] = s / cols;
    std[r] = Math.sqrt(Math.max(0, s2 / cols - (s / cols) ** 2));
    absMax[r] = m;
  }
  return { mean, std, absMax };
}

/** Bin centres of a histogram. @param {import('./protocol.js').Histogram} h */
export function binCentres(h) {
  const w = (h.hi - h.lo) / h.counts.length;
  return h.counts.map((_, i) => h.lo + (i + 0.5) * w);
}

/** @param {number} n bytes */
export function formatBytes(n) {
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(n < 10 && i ? 2 : n < 100 && i ? 1 : 0)} ${u[i]}`;
}
