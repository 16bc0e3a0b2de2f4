// Opening a synthetic 8 GB sharded model (real headers, sparse data made with
// truncate): the table shows in well under 2 s and the tab stays small,
// because only the headers are read. Figures go to artifacts/open-large.json.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openBrowser, shot, rendererMemoryMB, ARTIFACTS } from './harness.mjs';
import { writeSparseShard } from './synthetic.mjs';

const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'jlcm-8gb-'));
after(() => fs.rmSync(DIR, { recursive: true, force: true }));

/** A Llama-7B-shaped model cut to 20 layers, BF16, in 4 shards: about 8.2 GB. */
function syntheticModel() {
  const hidden = 4096;
  const ffn = 11008;
  const vocab = 32000;
  const m = (name, shape) => ({ name, dtype: 'BF16', shape, bytes: shape.reduce((a, b) => a * b, 1) * 2 });
  const tensors = [m('model.embed_tokens.weight', [vocab, hidden])];
  for (let l = 0; l < 20; l++) {
    const p = `model.layers.${l}`;
    tensors.push(m(`${p}.input_layernorm.weight`, [hidden]), m(`${p}.post_attention_layernorm.weight`, [hidden]));
    for (const x of ['q', 'k', 'v', 'o']) tensors.push(m(`${p}.self_attn.${x}_proj.weight`, [hidden, hidden]));
    tensors.push(m(`${p}.mlp.gate_proj.weight`, [ffn, hidden]), m(`${p}.mlp.up_proj.weight`, [ffn, hidden]), m(`${p}.mlp.down_proj.weight`, [hidden, ffn]));
  }
  tensors.push(m('model.norm.weight', [hidden]), m('lm_head.weight', [vocab, hidden]));
  const shards = 4;
  const per = Math.ceil(tensors.length / shards);
  const weightMap = {};
  const files = [];
  for (let s = 0; s < shards; s++) {
    const file = `model-0000${s + 1}-of-0000${shards}.safetensors`;
    const part = tensors.slice(s * per, (s + 1) * per);
    writeSparseShard(path.join(DIR, file), part);
    for (const t of part) weightMap[t.name] = file;
    files.push(path.join(DIR, file));
  }
  fs.writeFileSync(path.join(DIR, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  files.push(path.join(DIR, 'model.safetensors.index.json'));
  return { files, tensors: tensors.length, bytes: files.reduce((a, f) => a + fs.statSync(f).size, 0) };
}

test('a sharded 8 GB model shows its tensor table quickly with little memory', async () => {
  const model = syntheticModel();
  assert.ok(model.bytes > 8e9, `synthetic model is ${model.bytes} bytes`);
  const b = await openBrowser({ model: false });
  try {
    await b.page.goto(b.url);
    await b.page.waitForFunction(() => window.jlcm?.pool);
    const t0 = Date.now();
    await b.page.setInputFiles('#pick-files', model.files);
    await b.page.waitForFunction((n) => document.querySelectorAll('#tensor-table tbody tr').length === n, model.tensors, { polling: 10 });
    const shownMs = Date.now() - t0;
    const openMs = await b.page.evaluate(() => window.jlcm.state.model.openMs);
    const cdp = await b.context.newCDPSession(b.page);
    await cdp.send('Performance.enable');
    const heap = async () => Math.round((Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value])).JSHeapUsedSize ?? 0) / 1e6);
    const openedHeapMB = await heap();
    const openedRendererMB = rendererMemoryMB();
    // Select a big tensor: its histogram reads sampled rows only.
    await b.page.click('#tensor-table tr[data-name="model.layers.0.mlp.down_proj.weight"]');
    await b.page.waitForSelector('#value-histogram .uplot');
    await b.page.click('#tensor-table tr[data-name="model.embed_tokens.weight"]');
    await b.page.waitForSelector('#value-histogram .uplot');
    const browsedHeapMB = await heap();
    const browsedRendererMB = rendererMemoryMB();
    await shot(b.page, 'open-8gb');
    const figures = { modelBytes: model.bytes, tensors: model.tensors, shards: 4, tableShownMs: shownMs, headersReadMs: Math.round(openMs),
      openedJsHeapMB: openedHeapMB, openedRenderer: openedRendererMB,
      afterTwoHistogramsJsHeapMB: browsedHeapMB, afterTwoHistogramsRenderer: browsedRendererMB };
    fs.writeFileSync(path.join(ARTIFACTS, 'open-large.json'), JSON.stringify(figures, null, 2));
    console.log('open-large figures', figures);
    // Targets (reported in BENCHMARKS.md, not asserted on time): table < 2 s, tab < 300 MB.
    assert.ok(openedHeapMB < 300, `JS heap ${openedHeapMB} MB`);
    if (openedRendererMB != null) assert.ok(openedRendererMB.privateMB < 300, `renderer private memory ${openedRendererMB.privateMB} MB after opening`);
    assert.deepEqual(b.foreignRequests(), []);
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});
