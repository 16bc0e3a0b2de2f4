// Module worker: fetch the model files served beside it, run the MiniLM
// runtime benchmark (dense vs packed) once.
import init, { run_runtime_bench } from "./kernels.js";

const bytes = async (f) => new Uint8Array(await (await fetch(f)).arrayBuffer());

self.onmessage = async () => {
  try {
    await init();
    const config = await (await fetch("config.json")).text();
    const texts = await (await fetch("sentences.txt")).text();
    const table = run_runtime_bench(
      config, await bytes("tokenizer.json"), await bytes("model.safetensors"),
      await bytes("packed.safetensors"), texts, 2.0);
    self.postMessage({ table });
  } catch (e) {
    self.postMessage({ error: String(e && e.stack ? e.stack : e) });
  }
};
