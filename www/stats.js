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
  const [lo, hi] = quantilePair(sample, n, q);
  return lo === hi ? [lo - 0.5, hi + 0.5] : [lo, hi];
}

/**
 * Values of rank `floor(q (n-1))` and `ceil((1-q) (n-1))` of `a[0..n)` (the
 * values a full sort would put there; `a` may be reordered). Extreme ranks
 * (within 64 of either end, as for q = 0.1 % of 20 000) keep a sorted buffer
 * of the k+1 most extreme values seen, one comparison for most values; two
 * quickselects otherwise.
 * @param {Float32Array} a @param {number} n @param {number} q
 * @returns {[number, number]}
 */
function quantilePair(a, n, q) {
  const kLo = Math.floor(q * (n - 1));
  const kHi = Math.ceil((1 - q) * (n - 1));
  if (kLo < 64 && n - 1 - kHi < 64) return [extreme(a, n, kLo, 1), extreme(a, n, n - 1 - kHi, -1)];
  select(a, 0, n - 1, kLo);
  select(a, kLo, n - 1, kHi);
  return [a[kLo], a[kHi]];
}

/**
 * The k-th smallest (`sign` 1) or k-th largest (`sign` -1) of `a[0..n)`, 0-based.
 * @param {Float32Array} a @param {number} n @param {number} k @param {1|-1} sign
 */
function extreme(a, n, k, sign) {
  const buf = new Float64Array(k + 1); // sign * value, ascending
  let m = 0;
  for (let i = 0; i < n; i++) {
    const x = sign * a[i];
    if (m === k + 1 && x >= buf[k]) continue;
    let j = m < k + 1 ? m++ : k;
    while (j > 0 && buf[j - 1] > x) { buf[j] = buf[j - 1]; j--; }
    buf[j] = x;
  }
  return sign * buf[k];
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
 * Counts in `bins` equal bins over [lo, hi]; values outside (and NaN) are
 * counted in `outside`, not drawn.
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
    if (!(x >= 0 && x <= bins)) { outside++; continue; } // NaN too
    counts[x >= bins ? bins - 1 : Math.floor(x)]++;
  }
  return { lo, hi, counts, outside };
}

/**
 * One histogram per row group of a matrix, each over its group's central
 * range (centralRange of the group's values, widened to `[lo, hi]` of
 * `include(g)` and padded by 3 %), without copying any group's values: the
 * same sample and counts as `histogram(flat_g, ...)` over a copy `flat_g` of
 * the group's rows in row order, for a tenth of the time (the copies were
 * most of a worker's time after each compressed tensor).
 * @param {Float32Array} v          `[rows * cols]`, row-major
 * @param {number} cols
 * @param {ArrayLike<number>} groups  group of each row, `0..G-1`
 * @param {number} G
 * @param {(g: number) => ArrayLike<number>} include  values each group's range must show (its codewords)
 * @param {number} bins
 * @param {number} [q]
 * @returns {import('./protocol.js').Histogram[]}
 */
export function groupHistograms(v, cols, groups, G, include, bins, q = 0.001) {
  const rows = groups.length;
  const size = new Array(G).fill(0);
  for (let r = 0; r < rows; r++) size[groups[r]] += cols;
  // Sample every `step`-th value of each group's (virtual) concatenation.
  const step = size.map((n) => Math.max(1, Math.ceil(n / 20000)));
  const sample = size.map((n, g) => new Float32Array(Math.ceil(n / step[g])));
  const taken = new Array(G).fill(0);
  const next = new Array(G).fill(0); // index into the group's concatenation of the next value to sample
  const seen = new Array(G).fill(0);
  for (let r = 0; r < rows; r++) {
    const g = groups[r];
    const base = r * cols;
    const s = sample[g];
    const st = step[g];
    let k = taken[g];
    let i = next[g] - seen[g];
    for (; i < cols; i += st) { const x = v[base + i]; if (x === x) s[k++] = x; }
    taken[g] = k;
    seen[g] += cols;
    next[g] = seen[g] + (i - cols);
  }
  const lo = new Float64Array(G);
  const hi = new Float64Array(G);
  const scale = new Float64Array(G);
  for (let g = 0; g < G; g++) {
    let a = 0, b = 1;
    const n = taken[g];
    if (n) {
      [a, b] = quantilePair(sample[g], n, q);
      if (a === b) { a -= 0.5; b += 0.5; }
    }
    for (const w of Array.from(include(g))) { if (w < a) a = w; if (w > b) b = w; }
    const pad = (b - a) * 0.03;
    lo[g] = a - pad;
    hi[g] = b + pad;
    scale[g] = bins / (hi[g] - lo[g] || 1);
  }
  // All groups' counts in one typed array (a JS Array of counts made this
  // loop 8x slower).
  const counts = new Int32Array(G * bins);
  const outside = new Float64Array(G);
  for (let r = 0; r < rows; r++) {
    const g = groups[r];
    const l = lo[g], sc = scale[g], off = g * bins;
    let out = 0;
    for (let j = r * cols, e = j + cols; j < e; j++) {
      const x = (v[j] - l) * sc;
      if (!(x >= 0 && x <= bins)) { out++; continue; } // NaN too
      counts[off + (x >= bins ? bins - 1 : x | 0)]++;
    }
    outside[g] += out;
  }
  return Array.from({ length: G }, (_, g) => ({ lo: lo[g], hi: hi[g], counts: Array.from(counts.subarray(g * bins, (g + 1) * bins)), outside: outside[g] }));
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
