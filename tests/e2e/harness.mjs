// Shared set-up of the page tests: the static server (scripts/serve-static.mjs),
// Debian's chromium driven by playwright-core, and the checks every test
// wants (no request leaves the origin, no page errors).

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from '../../scripts/serve-static.mjs';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const ARTIFACTS = path.join(REPO, 'tests/e2e/artifacts');
fs.mkdirSync(ARTIFACTS, { recursive: true });

/** The demo model folder (scripts/fetch-model.sh prints it; fetched if missing). */
export function modelDir() {
  return execFileSync('bash', [path.join(REPO, 'scripts/fetch-model.sh')], { encoding: 'utf8' }).trim();
}

/** Path of Debian's chromium. */
export function chromiumPath() {
  for (const name of ['chromium', 'chromium-browser']) {
    try {
      return execFileSync('which', [name], { encoding: 'utf8' }).trim();
    } catch { /* next */ }
  }
  throw new Error('chromium not found on PATH (apt-get install chromium)');
}

/**
 * Start the server and a browser page; collects requests and errors.
 * @param {{model?: boolean, exposeGc?: boolean}} [o] exposeGc: give pages `window.gc()`
 *   (V8's --expose-gc), for tests whose stand-ins must not keep garbage alive
 */
export async function openBrowser(o = {}) {
  const { server, url } = await startServer({ root: REPO, modelDir: o.model === false ? undefined : modelDir() });
  const origin = new URL(url).origin;
  const browser = await chromium.launch({
    executablePath: chromiumPath(),
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--jlcm-e2e-run=${process.pid}`, ...(o.exposeGc ? ['--js-flags=--expose-gc'] : [])],
  });
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  /** @type {string[]} */
  const requests = [];
  /** @type {string[]} */
  const errors = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  const close = async () => {
    await browser.close();
    await new Promise((r) => server.close(r));
  };
  /** Every request went to the page's own origin (blob: URLs are local too). */
  const foreignRequests = () => requests.filter((u) => !(u.startsWith(origin + '/') || u.startsWith('blob:' + origin) || u.startsWith('data:')));
  return { browser, context, page, url, origin, requests, errors, foreignRequests, close };
}

/** Save a screenshot of the page to tests/e2e/artifacts/NAME.png. */
export async function shot(page, name) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

/** The native CLI, if built ($JLCM_CLI, target/release/jlcm or target/debug/jlcm). */
export function nativeCli() {
  if (process.env.JLCM_CLI) return process.env.JLCM_CLI;
  for (const p of ['target/release/jlcm', 'target/debug/jlcm']) {
    const full = path.join(REPO, p);
    if (fs.existsSync(full)) return full;
  }
  return null;
}

/**
 * Memory (MB) of the browser's renderer processes (the tab and its workers):
 * resident, and private (anonymous + shared memory, i.e. without the
 * chromium code pages every process maps), from /proc: renderers under the browser this process launched
 * (found by its --jlcm-e2e-run=PID switch).
 */
export function rendererMemoryMB() {
  if (!fs.existsSync('/proc')) return null;
  let root = 0;
  const parent = new Map();
  const info = new Map();
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      parent.set(Number(pid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      const field = (f) => Number(new RegExp(`${f}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
      info.set(Number(pid), { renderer: cmd.includes('--type=renderer'), rss: field('VmRSS'), private: field('RssAnon') + field('RssShmem') });
      if (cmd.includes(`--jlcm-e2e-run=${process.pid}\0`) && !cmd.includes('--type=')) root = Number(pid);
    } catch { /* gone */ }
  }
  let rss = 0;
  let priv = 0;
  let otherPriv = 0;
  for (const [pid, i] of info) {
    for (let p = pid; p > 1; p = parent.get(p) ?? 0) {
      if (p !== root) continue;
      if (i.renderer) { rss += i.rss; priv += i.private; } else otherPriv += i.private;
      break;
    }
  }
  if (info.has(root)) otherPriv += info.get(root).private;
  // browserPrivateMB: the browser's other processes (the browser process,
  // which holds Blob data, the network and GPU processes).
  return { rssMB: Math.round(rss / 1024), privateMB: Math.round(priv / 1024), browserPrivateMB: Math.round(otherPriv / 1024) };
}

/**
 * CPU time (ms, user + system) used so far by the renderer processes of the
 * browser this process launched: the page's main thread and its workers.
 * Wall-clock figures on a loaded machine say little; CPU time compares.
 */
export function rendererCpuMs() {
  if (!fs.existsSync('/proc')) return null;
  const tick = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim() || 100);
  const parent = new Map();
  const rows = [];
  let root = 0;
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(pid), Number(f[1]));
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes(`--jlcm-e2e-run=${process.pid}\0`) && !cmd.includes('--type=')) root = Number(pid);
      if (cmd.includes('--type=renderer')) rows.push([Number(pid), (Number(f[11]) + Number(f[12])) * tick]);
    } catch { /* gone */ }
  }
  let ms = 0;
  for (const [pid, t] of rows) for (let p = pid; p > 1; p = parent.get(p) ?? 0) if (p === root) { ms += t; break; }
  return Math.round(ms);
}

/**
 * CPU time (ms) of the renderer processes' threads, summed by thread name
 * (`CrRendererMain` = the page's main thread, `DedicatedWorker thread` = the
 * workers, `V8 Worker`/`ThreadPoolForeg` = background compilation and GC).
 * @returns {Record<string, number>|null}
 */
export function rendererThreadCpuMs() {
  if (!fs.existsSync('/proc')) return null;
  const tick = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim() || 100);
  const parent = new Map();
  const renderers = [];
  let root = 0;
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      parent.set(Number(pid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes(`--jlcm-e2e-run=${process.pid}\0`) && !cmd.includes('--type=')) root = Number(pid);
      if (cmd.includes('--type=renderer')) renderers.push(Number(pid));
    } catch { /* gone */ }
  }
  /** @type {Record<string, number>} */
  const byName = {};
  for (const pid of renderers) {
    let p = pid;
    while (p > 1 && p !== root) p = parent.get(p) ?? 0;
    if (p !== root) continue;
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/\d+$/, '').trim();
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        byName[name] = (byName[name] ?? 0) + (Number(f[11]) + Number(f[12])) * tick;
      } catch { /* gone */ }
    }
  }
  return byName;
}

/**
 * Run a command, returning its wall and CPU time (ms) via /usr/bin/time.
 * @param {string} cmd @param {string[]} args
 */
export function timedRun(cmd, args) {
  const t0 = Date.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'jlcm-cpu %U %S', cmd, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr.slice(-400)}`);
  const m = /jlcm-cpu ([\d.]+) ([\d.]+)/.exec(r.stderr);
  return { wallMs: Date.now() - t0, cpuMs: m ? Math.round((Number(m[1]) + Number(m[2])) * 1000) : null };
}

/**
 * Record the page's long tasks (`window.__longTasks`: durations;
 * `window.__longTaskStarts`: [start, ms]) and long animation frames with
 * their attribution (`window.__longFrames`), from the page's first script on.
 * @param {import('playwright-core').Page} page
 */
export async function observeLongTasks(page) {
  await page.addInitScript(() => {
    const w = /** @type {any} */ (window);
    w.__longTasks = [];
    w.__longTaskStarts = [];
    new PerformanceObserver((l) => { for (const e of l.getEntries()) { w.__longTasks.push(e.duration); w.__longTaskStarts.push([Math.round(e.startTime), Math.round(e.duration)]); } }).observe({ type: 'longtask', buffered: true });
    w.__longFrames = [];
    try {
      new PerformanceObserver((l) => {
        for (const e of /** @type {any[]} */ (l.getEntries())) {
          w.__longFrames.push({ at: Math.round(e.startTime), ms: Math.round(e.duration), blockingMs: Math.round(e.blockingDuration),
            renderMs: Math.round(e.renderStart ? e.startTime + e.duration - e.renderStart : 0),
            layoutMs: Math.round(e.styleAndLayoutStart ? e.startTime + e.duration - e.styleAndLayoutStart : 0),
            scripts: e.scripts.map((x) => `${x.invoker} ${Math.round(x.duration)}ms`) });
        }
      }).observe({ type: 'long-animation-frame', buffered: true });
    } catch { /* not supported */ }
  });
}

/** Clear what observeLongTasks recorded (and the page's own slow-JS log). @param {import('playwright-core').Page} page */
export async function clearLongTasks(page) {
  await page.evaluate(() => { const w = /** @type {any} */ (window); w.__longTasks.length = 0; w.__longTaskStarts.length = 0; w.__longFrames.length = 0; w.jlcm.slow.length = 0; });
}

/** Each long task over `over` ms, with the long animation frame around it. @param {import('playwright-core').Page} page @param {number} [over] */
export async function longTasksOver(page, over = 100) {
  return page.evaluate((over) => { const w = /** @type {any} */ (window); return w.__longTaskStarts.filter(([, ms]) => ms > over)
    .map(([at, ms]) => ({ at, ms, frame: w.__longFrames.find((f) => f.at <= at + 1 && at < f.at + f.ms) ?? null })); }, over);
}
