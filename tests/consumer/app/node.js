// (a) Node 20: initSync with the wasm bytes (fetch of file: URLs does not work in Node).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as jlcm from "jlcm";
import * as text from "jlcm/text";
import { compressAndDecode } from "./check.js";
import { tokenizeCheck } from "./check-text.js";

jlcm.initSync({ module: readFileSync(fileURLToPath(import.meta.resolve("jlcm/jlcm_bg.wasm"))) });
const node = await compressAndDecode(jlcm);
node.text = tokenizeCheck(text);
console.log(JSON.stringify({ node }));
