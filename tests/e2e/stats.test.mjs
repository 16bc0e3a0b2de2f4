// The page's statistics (www/stats.js) in Node, no browser: groupHistograms
// against the definition it replaces (a copy of each group's rows, its
// centralRange widened to the codewords and padded, then histogram).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { groupHistograms, centralRange, histogram } from '../../www/stats.js';

/** Deterministic uniform numbers in [0, 1). @param {number} seed */
function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function reference(v, cols, groups, G, include, bins) {
  return Array.from({ length: G }, (_, g) => {
    const own = [];
    for (let r = 0; r < groups.length; r++) if (groups[r] === g) own.push(...v.subarray(r * cols, (r + 1) * cols));
    const flat = Float32Array.from(own);
    let [lo, hi] = centralRange(flat);
    lo = Math.min(lo, ...include(g));
    hi = Math.max(hi, ...include(g));
    const pad = (hi - lo) * 0.03;
    return histogram(flat, lo - pad, hi + pad, bins);
  });
}

test('groupHistograms gives the counts of the per-group copies it replaces', () => {
  const rand = rng(7);
  // Shapes where a group's sample step spans rows (large groups), is 1
  // (small ones), a group is empty, values repeat, and NaN is skipped.
  for (const [rows, cols, G] of [[40, 3, 4], [300, 257, 16], [1200, 384, 16], [64, 1536, 5], [7, 20011, 3], [16, 8, 1]]) {
    const v = new Float32Array(rows * cols);
    for (let i = 0; i < v.length; i++) v[i] = rand() < 0.05 ? 0 : (rand() - 0.5) * (1 + (i % 7));
    v[3] = NaN;
    const groups = new Uint8Array(rows);
    for (let r = 0; r < rows; r++) groups[r] = G > 2 && r % G === G - 1 ? 0 : Math.floor(rand() * (G > 2 ? G - 1 : G)); // group G-1 empty when G > 2
    const words = Array.from({ length: G }, (_, g) => [-(g + 1) * 0.7, 0.1 * g, (g % 3) * 2.5]);
    const got = groupHistograms(v, cols, groups, G, (g) => words[g], 80);
    const want = reference(v, cols, groups, G, (g) => words[g], 80);
    assert.equal(got.length, G);
    for (let g = 0; g < G; g++) {
      assert.deepEqual(got[g], want[g], `rows ${rows} cols ${cols} group ${g}`);
      const total = got[g].counts.reduce((a, b) => a + b, 0) + got[g].outside;
      assert.equal(total, Array.from(groups).filter((x) => x === g).length * cols, 'every value of the group is counted once (NaN as outside)');
    }
  }
});

test('centralRange gives the quantiles of a full sort of its sample, on both selection paths', () => {
  const rand = rng(11);
  for (const n of [1, 2, 5, 63, 64, 65, 1000, 19999, 20000, 20001, 65537]) {
    for (const q of [0.001, 0.01, 0.2]) {
      for (const dup of [0, 0.5, 1]) {
        const v = Float32Array.from({ length: n }, () => (rand() < dup ? 0.25 : rand() - 0.5));
        const step = Math.max(1, Math.ceil(n / 20000));
        const sorted = Float32Array.from(v.filter((_, i) => i % step === 0)).sort();
        const m = sorted.length;
        let lo = sorted[Math.floor(q * (m - 1))];
        let hi = sorted[Math.ceil((1 - q) * (m - 1))];
        if (lo === hi) { lo -= 0.5; hi += 0.5; }
        assert.deepEqual(centralRange(v, q), [lo, hi], `n ${n} q ${q} dup ${dup}`);
      }
    }
  }
});
