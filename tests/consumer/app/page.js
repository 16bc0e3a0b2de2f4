// (b) A bundled page on the main thread, and (c) a module worker it starts.
import init, * as jlcm from "jlcm";
import wasmUrl from "jlcm/jlcm_bg.wasm";
import { compressAndDecode } from "./check.js";

const results = (window.__results = {});
function settle(key, fn) {
  Promise.resolve().then(fn).then((r) => (results[key] = { ok: true, ...r }), (e) => (results[key] = { ok: false, error: String(e) }));
}
settle("page", async () => {
  await init({ module_or_path: wasmUrl });
  const result = await compressAndDecode(jlcm);
  // jlcm/text (and its tokenizer) is fetched only now, on first use: a
  // separate chunk, so the dynamic import fetches a script not loaded before.
  const scripts = () => performance.getEntriesByType("resource").map((e) => e.name).filter((n) => n.endsWith(".js"));
  const before = new Set(scripts());
  const { textCheck } = await import("./page-text.js");
  result.text = await textCheck();
  result.text.lazy = scripts().some((n) => !before.has(n));
  return result;
});
settle("worker", () => new Promise((resolve, reject) => {
  const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  worker.onmessage = (e) => (e.data.ok ? resolve(e.data.result) : reject(new Error(e.data.error)));
  worker.onerror = (e) => reject(new Error("worker error: " + e.message));
}));
