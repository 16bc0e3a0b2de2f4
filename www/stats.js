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
  const step = Math.max(1, Math.ceil(v.length / 20000));
  // A Float32Array sample sorted without a comparator (the engine's numeric
  // sort): ~10x cheaper than an Array sorted with `(a, b) => a - b`, which
  // was most of the page's own CPU per compressed tensor (16 groups each).
  const sample = new Float32Array(Math.ceil(v.length / step));
  let n = 0;
  for (let i = 0; i < v.length; i += step) if (v[i] === v[i]) sample[n++] = v[i];
  if (!n) return [0, 1];
  const kLo = Math.floor(q * (n - 1));
  const kHi = Math.ceil((1 - q) * (n - 1));
  select(sample, 0, n - 1, kLo);
  select(sample, kLo, n - 1, kHi);
  const lo = sample[kLo];
  const hi = sample[kHi];
  return lo === hi ? [lo - 0.5, hi + 0.5] : [lo, hi];
}

/**
 * Quickselect (three-way partition, so runs of equal values such as a pruned
 * tensor's zeros stay linear): reorders `a[left..=right]` so that `a[k]` is
 * the value a full sort would put there.
 * @param {Float32Array} a @param {number} left @param {number} right @param {number} k
 */
function select(a, left, right, k) {
  while (right > left) {
    const x = a[left], y = a[(left + right) >> 1], z = a[right];
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
    let lt = left, gt = right, i = left;
    while (i <= gt) {
      if (a[i] < pivot) swap(a, lt++, i++);
      else if (a[i] > pivot) swap(a, i, gt--);
      else i++;
    }
    // [left, lt) < pivot, [lt, gt] = pivot, (gt, right] > pivot
    if (k < lt) right = lt - 1;
    else if (k > gt) left = gt + 1;
    else return;
  }
}

/** @param {Float32Array} a @param {number} i @param {number} j */
function swap(a, i, j) {
  const t = a[i];
  a[i] = a[j];
  a[j] = t;
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
