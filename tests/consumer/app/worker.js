// (c) A module worker with its own wasm instance, and jlcm/text.
import init, * as jlcm from "jlcm";
import wasmUrl from "jlcm/jlcm_bg.wasm";
import * as text from "jlcm/text";
import { compressAndDecode } from "./check.js";
import { tokenizeCheck } from "./check-text.js";

init({ module_or_path: wasmUrl })
  .then(() => compressAndDecode(jlcm))
  .then(async (result) => {
    result.text = tokenizeCheck(text);
    postMessage({ ok: true, result });
  })
  .catch((e) => postMessage({ ok: false, error: String(e && e.stack || e) }));
