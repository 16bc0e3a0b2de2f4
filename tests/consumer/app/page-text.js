// The text module, loaded on demand (a dynamic import: its own chunk).
import initText, * as text from "jlcm/text";
import textWasmUrl from "jlcm/jlcm_text_bg.wasm";
import { tokenizeCheck } from "./check-text.js";

export async function textCheck() {
  await initText({ module_or_path: textWasmUrl });
  return tokenizeCheck(text);
}
