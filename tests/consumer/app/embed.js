// Node: the MiniLM runtime of the package (dense and packed weights) gives the
// embeddings the native `jlcm embed` gives, within EMBED_BUDGET.
// Usage: node embed.js MODEL_DIR PACKED SENTENCES NATIVE_DENSE.npy NATIVE_PACKED.npy
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as jlcm from "jlcm";

/** Max abs difference to the native embeddings (same code, f32, SIMD128 vs AVX2 sums). */
const EMBED_BUDGET = 1e-4;

/** The f32 data of a little-endian .npy file. */
function readNpy(path) {
  const b = readFileSync(path);
  const headerLen = b[6] === 1 ? b.readUInt16LE(8) + 10 : b.readUInt32LE(8) + 12;
  return new Float32Array(b.buffer.slice(b.byteOffset + headerLen, b.byteOffset + b.length));
}

const [dir, packedPath, sentencesPath, nativeDense, nativePacked] = process.argv.slice(2);
jlcm.initSync({ module: readFileSync(fileURLToPath(import.meta.resolve("jlcm/jlcm_bg.wasm"))) });
const texts = readFileSync(sentencesPath, "utf8").split("\n").filter((l) => l.trim());
const config = readFileSync(`${dir}/config.json`, "utf8");
const tokenizer = readFileSync(`${dir}/tokenizer.json`);
const out = {};
for (const [kind, weights, npy] of [["dense", `${dir}/model.safetensors`, nativeDense], ["packed", packedPath, nativePacked]]) {
  const encoder = new jlcm.SentenceEncoder(config, tokenizer, readFileSync(weights));
  const t0 = performance.now();
  const got = encoder.embed(texts);
  const seconds = (performance.now() - t0) / 1000;
  const want = readNpy(npy);
  if (got.length !== want.length) throw new Error(`${kind}: ${got.length} values, native has ${want.length}`);
  let maxAbs = 0;
  for (let i = 0; i < got.length; i++) maxAbs = Math.max(maxAbs, Math.abs(got[i] - want[i]));
  out[kind] = { sentences: texts.length, sentencesPerSecond: texts.length / seconds, maxAbs, packedLinears: encoder.packedLinears, weightBytes: encoder.weightBytes };
  encoder.free();
  if (!(maxAbs <= EMBED_BUDGET)) throw new Error(`${kind}: max abs difference ${maxAbs} to native > ${EMBED_BUDGET}`);
}
if (out.packed.packedLinears === 0) throw new Error("the packed model ran no packed Linear layer");
console.log(JSON.stringify({ embed: out }));
