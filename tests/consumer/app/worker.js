// (c) A module worker with its own wasm instance.
import init, * as jlcm from "jlcm";
import wasmUrl from "jlcm/jlcm_bg.wasm";
import { compressAndDecode } from "./check.js";

init({ module_or_path: wasmUrl })
  .then(() => compressAndDecode(jlcm))
  .then((result) => postMessage({ ok: true, result }))
  .catch((e) => postMessage({ ok: false, error: String(e && e.stack || e) }));
