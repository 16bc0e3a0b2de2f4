// Module worker: load the wasm benchmark once and run it on request.
import init, { run_kernel_bench } from "./kernels.js";

self.onmessage = async ({ data }) => {
  try {
    await init();
    self.postMessage({ table: run_kernel_bench(data.quick) });
  } catch (e) {
    self.postMessage({ error: String(e && e.stack ? e.stack : e) });
  }
};
