// In-page calibration from sentences (issue 7, settings: calibration
// "from sentences"): the demo model runs on the panel's example sentences in
// a worker through the package API; the H file it saves matches the native
// `jlcm calibrate --batch-size 32` on the same sentences within
// CALIBRATION_BUDGET, and a compression then uses it.
// Run: node --test tests/e2e/   (after scripts/build-web.sh)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { openBrowser, shot, nativeCli, modelDir, ARTIFACTS } from './harness.mjs';
import { parseBytes, toF32 } from '../../www/safetensors.js';

/**
 * Max abs difference of any H entry to the native one, relative to the
 * largest |H|: the model's f32 sums run on SIMD128 in the page and on AVX2
 * natively (different summation order); everything else is the same code.
 */
const CALIBRATION_BUDGET = 1e-6;
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'jlcm-e2e-calib-'));

/** @type {Awaited<ReturnType<typeof openBrowser>>} */
let b;
before(async () => { b = await openBrowser(); });
after(async () => {
  await b?.close();
  fs.rmSync(TMP, { recursive: true, force: true });
});

test('computes calibration from sentences in the page, as jlcm calibrate', async () => {
  const page = b.page;
  await page.goto(`${b.url}?demo`);
  await page.waitForSelector('#tensor-table tbody tr');
  await page.waitForFunction(() => window.jlcm.engine?.features.includes('computeCalibration'), null, { timeout: 60_000 });
  await page.waitForFunction(() => !document.querySelector('#settings option[value=computed]').disabled);
  await page.selectOption('#settings select[name=calibration]', 'computed');
  await page.waitForSelector('#calibration-panel:not([hidden]) #calib-run');
  const sentences = (await page.inputValue('#calib-sentences')).split('\n').map((s) => s.trim()).filter(Boolean);
  await page.click('#calib-run');
  await page.waitForFunction(() => window.jlcm.calibration, null, { timeout: 300_000, polling: 200 });
  const figures = await page.evaluate(() => window.jlcm.calibration);
  assert.equal(figures.tensors, 36, 'H for every Linear weight of MiniLM');
  assert.equal(figures.sentences, sentences.length);
  assert.match(await page.textContent('#hessian-name'), /36 H matrices/);
  await shot(page, 'calibration');

  // The saved H file against the native CLI on the same sentences.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#calib-save')]);
  const pageFile = path.join(TMP, 'page-calib.safetensors');
  await download.saveAs(pageFile);
  const cli = nativeCli();
  const result = { sentences: sentences.length, ms: Math.round(figures.ms), bytes: figures.bytes };
  if (cli) {
    const text = path.join(TMP, 'sentences.txt');
    fs.writeFileSync(text, sentences.join('\n') + '\n');
    const nativeFile = path.join(TMP, 'native-calib.safetensors');
    execFileSync(cli, ['calibrate', modelDir(), '--text', text, '--batch-size', '32', '-o', nativeFile], { stdio: 'ignore' });
    const got = fs.readFileSync(pageFile), want = fs.readFileSync(nativeFile);
    result.sameBytes = got.equals(want);
    const a = parseBytes(new Uint8Array(got), 'page H');
    const w = parseBytes(new Uint8Array(want), 'native H');
    assert.deepEqual(a.tensors.map((t) => t.name), w.tensors.map((t) => t.name));
    let maxAbs = 0, maxH = 0;
    for (let i = 0; i < w.tensors.length; i++) {
      const x = toF32('F32', a.tensors[i].data.slice().buffer);
      const y = toF32('F32', w.tensors[i].data.slice().buffer);
      for (let j = 0; j < y.length; j++) { maxAbs = Math.max(maxAbs, Math.abs(x[j] - y[j])); maxH = Math.max(maxH, Math.abs(y[j])); }
    }
    result.maxAbs = maxAbs;
    result.maxRel = maxAbs / maxH;
    assert.ok(result.maxRel <= CALIBRATION_BUDGET, `page H differs from jlcm calibrate by ${maxAbs} (relative ${result.maxRel})`);
  }

  // A compression with the computed H.
  const name = 'encoder.layer.0.attention.self.query.weight';
  await page.fill('#tensor-search', name);
  await page.click(`#tensor-table tr[data-name="${name}"]`);
  await page.fill('#settings input[name=iters]', '2');
  await page.click('#compress-one');
  await page.waitForFunction((n) => window.jlcm.state.results.has(n) && window.jlcm.state.run === null, name, { timeout: 120_000 });
  const withH = await page.evaluate((n) => window.jlcm.state.results.get(n).report.relOutputError, name);
  assert.ok(Number.isFinite(withH) && withH > 0 && withH < 1, `output error with H: ${withH}`);
  result.relOutputErrorWithH = withH;
  fs.writeFileSync(path.join(ARTIFACTS, 'calibration-figures.json'), JSON.stringify(result, null, 2));
  console.log('calibration figures', result);
  assert.deepEqual(b.foreignRequests(), []);
  assert.deepEqual(b.errors, []);
});
