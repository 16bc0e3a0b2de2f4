// A worker that only burns CPU: the control for the long-task figure (what
// the main thread suffers from two busy workers on a loaded machine when the
// page itself does nothing).
let x = 0;
self.onmessage = (e) => {
  const end = performance.now() + e.data.ms;
  while (performance.now() < end) for (let i = 0; i < 1e5; i++) x = (x * 1664525 + 1013904223) >>> 0;
  self.postMessage(x);
};
