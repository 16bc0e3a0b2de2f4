// (a) Node 20: initSync with the wasm bytes (fetch of file: URLs does not work in Node).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as jlcm from "jlcm";
import { compressAndDecode } from "./check.js";

jlcm.initSync({ module: readFileSync(fileURLToPath(import.meta.resolve("jlcm/jlcm_bg.wasm"))) });
console.log(JSON.stringify({ node: await compressAndDecode(jlcm) }));
