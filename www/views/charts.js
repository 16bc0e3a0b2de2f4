// Chart helpers over uPlot (served from www/node_modules, never a CDN).

import uPlot from '../node_modules/uplot/dist/uPlot.esm.js';
import { binCentres } from '../stats.js';

export { uPlot };

/** Colours of series, readable on the light background. */
export const PALETTE = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#db2777', '#0891b2', '#65a30d',
  '#9333ea', '#ea580c', '#0d9488', '#4f46e5', '#be123c', '#15803d', '#b45309', '#1d4ed8'];

/** @param {number} i */
export const colour = (i) => PALETTE[i % PALETTE.length];

const bars = uPlot.paths.bars({ size: [1, Infinity], gap: 0 });

/**
 * Replace a container's chart.
 * @param {HTMLElement} el
 * @param {any} opts uPlot options (width defaults to the container's)
 * @param {any[]} data
 * @returns {uPlot}
 */
export function chart(el, opts, data) {
  /** @type {any} */ (el)._plot?.destroy();
  el.replaceChildren();
  const width = opts.width ?? Math.max(200, el.clientWidth || 480);
  const plot = new uPlot({ ...opts, width }, data, el);
  /** @type {any} */ (el)._plot = plot;
  return plot;
}

/** Axis with compact numbers. */
export const compactAxis = (label) => ({
  label,
  size: 56,
  values: (_u, ticks) => tickLabels(ticks),
});

/** Tick labels with as many decimals as the tick spacing needs. @param {number[]} ticks */
export function tickLabels(ticks) {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : Math.abs(ticks[0] || 1);
  const big = Math.max(...ticks.map(Math.abs));
  if (big >= 1e5 || (big > 0 && big < 1e-3)) return ticks.map((v) => (v === 0 ? '0' : v.toExponential(1)));
  const decimals = Math.min(8, Math.max(0, -Math.floor(Math.log10(step || 1) + 1e-9)));
  return ticks.map((v) => v.toFixed(decimals));
}

/** @param {number} v */
export function fmt(v) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1);
  return String(+v.toPrecision(3));
}

/**
 * A histogram as bars, with optional vertical marks (codewords) on top.
 * @param {HTMLElement} el
 * @param {import('../protocol.js').Histogram} h
 * @param {{title?: string, height?: number, width?: number, marks?: number[], colour?: string, logY?: boolean, compact?: boolean}} o
 */
export function histogramChart(el, h, o = {}) {
  const x = binCentres(h);
  const marks = o.marks ?? [];
  const c = o.colour ?? PALETTE[0];
  return chart(el, {
    title: o.title,
    width: o.width,
    height: o.height ?? 220,
    legend: { show: false },
    cursor: { show: !o.compact, drag: { x: !o.compact, y: false } },
    scales: { x: { time: false, range: [h.lo, h.hi] }, y: { distr: o.logY ? 3 : 1 } },
    axes: o.compact ? [{ size: 22, font: '10px system-ui', values: (_u, t) => tickLabels(t) }, { show: false }] : [compactAxis('value'), compactAxis('count')],
    series: [{}, { label: 'count', fill: c + '55', stroke: c, paths: bars, points: { show: false } }],
    hooks: {
      draw: [(u) => {
        if (!marks.length) return;
        const { ctx } = u;
        ctx.save();
        ctx.strokeStyle = '#111827';
        ctx.lineWidth = Math.max(1, devicePixelRatio);
        ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
        for (const m of marks) {
          const px = u.valToPos(m, 'x', true);
          ctx.beginPath();
          ctx.moveTo(px, u.bbox.top);
          ctx.lineTo(px, u.bbox.top + u.bbox.height);
          ctx.stroke();
        }
        ctx.restore();
      }],
    },
  }, [x, o.logY ? h.counts.map((v) => v || null) : h.counts]);
}

/**
 * Lines over a shared x.
 * @param {HTMLElement} el
 * @param {number[]} x
 * @param {{label: string, values: (number|null)[], colour?: string, width?: number, bars?: boolean}[]} series
 * @param {{title?: string, height?: number, xLabel?: string, yLabel?: string, logY?: boolean, legend?: boolean, xIntegers?: boolean}} o
 */
export function lineChart(el, x, series, o = {}) {
  return chart(el, {
    title: o.title,
    height: o.height ?? 220,
    legend: { show: o.legend ?? (series.length > 1 && series.length <= 6) },
    scales: { x: { time: false }, y: { distr: o.logY ? 3 : 1 } },
    axes: [{ ...compactAxis(o.xLabel ?? ''), ...(o.xIntegers ? { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] } : {}) }, { ...compactAxis(o.yLabel ?? ''), size: 70 }],
    series: [{ label: o.xLabel ?? 'x' }, ...series.map((s, i) => ({
      label: s.label,
      stroke: s.colour ?? colour(i),
      width: s.width ?? 1.5,
      fill: s.bars ? (s.colour ?? colour(i)) + '66' : undefined,
      paths: s.bars ? bars : undefined,
      points: { show: false },
      spanGaps: true,
    }))],
  }, [x, ...series.map((s) => s.values)]);
}
