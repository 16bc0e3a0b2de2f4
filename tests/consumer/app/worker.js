// (c) A module worker with its own wasm instances (core, then the text module).
import init, * as jlcm from "jlcm";
import wasmUrl from "jlcm/jlcm_bg.wasm";
import initText, * as text from "jlcm/text";
import textWasmUrl from "jlcm/jlcm_text_bg.wasm";
import { compressAndDecode } from "./check.js";
import { tokenizeCheck } from "./check-text.js";

init({ module_or_path: wasmUrl })
  .then(() => compressAndDecode(jlcm))
  .then(async (result) => {
    await initText({ module_or_path: textWasmUrl });
    result.text = tokenizeCheck(text);
    postMessage({ ok: true, result });
  })
  .catch((e) => postMessage({ ok: false, error: String(e && e.stack || e) }));
