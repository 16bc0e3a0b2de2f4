// The page's packed-layout reader (www/packed.js) in Node, no browser: its
// dense decode of a file the native CLI packed equals `jlcm decode`, with and
// without the input rotation (`--rotate`), and rotatedRows (the groups
// view's rows) maps the weight back onto the codes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { nativeCli } from './harness.mjs';
import { randomMatrix, writeSafetensors } from './synthetic.mjs';
import { splitPacked, decodeF32, rotatedRows } from '../../www/packed.js';
import { parseBytes } from '../../www/safetensors.js';

test('decodeF32 equals jlcm decode, rotated or not', () => {
  const cli = nativeCli();
  assert.ok(cli, 'the native CLI is built (target/release/jlcm or JLCM_CLI)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jlcm-packed-'));
  const [rows, cols] = [24, 96];
  const input = path.join(dir, 'in.safetensors');
  writeSafetensors(input, [{ name: 'w', dtype: 'F32', shape: [rows, cols], values: randomMatrix(rows, cols, 5) }]);
  for (const flags of [[], ['--rotate'], ['--rotate', '--dim', '2', '--bits', '4']]) {
    const packed = path.join(dir, 'p.safetensors');
    const dense = path.join(dir, 'd.safetensors');
    execFileSync(cli, ['compress', input, '-o', packed, ...flags], { stdio: 'pipe' });
    execFileSync(cli, ['decode', packed, '-o', dense], { stdio: 'pipe' });
    const { parts, params } = splitPacked(new Uint8Array(fs.readFileSync(packed)), 'w');
    assert.equal(Boolean(params.rotation), flags.includes('--rotate'), `${flags}: rotation in the parameters`);
    const got = decodeF32(parts, params);
    const t = parseBytes(new Uint8Array(fs.readFileSync(dense)), 'dense').tensors.find((x) => x.name === 'w');
    const want = new Float32Array(t.data.slice().buffer);
    assert.equal(got.length, want.length);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    assert.ok(worst <= 1e-6, `${flags}: worst difference ${worst}`);
    // What the groups view draws: the rows rotated back onto the codes.
    const codes = decodeF32(parts, { ...params, rotation: undefined });
    const back = rotatedRows(got, rows, cols, params.rotation);
    let off = 0;
    for (let i = 0; i < codes.length; i++) off = Math.max(off, Math.abs(back[i] - codes[i]));
    assert.ok(off <= 1e-5, `${flags}: rotatedRows(Ŵ) is the codes, worst ${off}`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
});
