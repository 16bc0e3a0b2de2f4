// Module worker: load the wasm benchmark once and run it on request.
import init, { run_kernel_bench, run_kernel_bench_matrix } from "./kernels.js";

self.onmessage = async ({ data }) => {
  try {
    await init();
    const m = /^(\d+)x(\d+)$/.exec(data.matrix || "");
    const table = m ? run_kernel_bench_matrix(Number(m[1]), Number(m[2])) : run_kernel_bench(data.quick);
    self.postMessage({ table });
  } catch (e) {
    self.postMessage({ error: String(e && e.stack ? e.stack : e) });
  }
};
