// Node: jlcm/text's tokenizer (@huggingface/tokenizers) gives exactly the ids
// the Rust `tokenizers` crate gives (recorded in tests/data/token_ids.json,
// checked natively by tests/runtime.rs) for all-MiniLM-L6-v2's tokenizer.json:
// accents, CJK, emoji, control characters, truncation past 256 tokens, the
// empty string, then every held-out sentence.
// Usage: node token-ids.js MODEL_DIR REPO_TESTS_DATA_DIR
import { readFileSync } from "node:fs";
import { Tokenizer } from "jlcm/text";

const [dir, data] = process.argv.slice(2);
const cases = JSON.parse(readFileSync(`${data}/tokenizer_cases.json`, "utf8"));
const heldout = readFileSync(`${data}/heldout.txt`, "utf8").split("\n");
if (heldout.at(-1) === "") heldout.pop();
const texts = cases.concat(heldout);
const want = JSON.parse(readFileSync(`${data}/token_ids.json`, "utf8")).ids;
if (want.length !== texts.length) throw new Error(`${want.length} recorded id lists for ${texts.length} texts`);

const tokenizer = new Tokenizer(readFileSync(`${dir}/tokenizer.json`), 256, readFileSync(`${dir}/tokenizer_config.json`));
const t0 = performance.now();
const batch = tokenizer.encode(texts);
const ms = performance.now() - t0;
let at = 0, mismatched = 0, tokens = 0;
texts.forEach((text, i) => {
  const got = [...batch.ids.subarray(at, at + batch.lengths[i])];
  at += batch.lengths[i];
  tokens += got.length;
  if (JSON.stringify(got) !== JSON.stringify(want[i])) {
    mismatched++;
    console.error(`text ${i} ${JSON.stringify(text).slice(0, 60)}: got ${got.length} ids [${got.slice(0, 12)}…], want ${want[i].length} [${want[i].slice(0, 12)}…]`);
  }
});
if (!batch.lengths.some((n) => n === 256)) throw new Error("no text reached the 256-token truncation");
if (mismatched) throw new Error(`${mismatched} of ${texts.length} texts tokenised differently from the tokenizers crate`);
console.log(JSON.stringify({ tokenIds: { texts: texts.length, tokens, identical: true, ms: Math.round(ms) } }));
