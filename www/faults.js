// Fault injection for the page tests (issue 5.4): make a worker fail the way
// real failures look, on its next compress job. The page itself never arms a
// fault; the tests do, through `pool.armFault(kind)`.
// - 'trap': a real WebAssembly trap (`unreachable`), as the engine's abort
//   on a Rust panic or an allocation failure in wasm (out of memory) raises;
//   the wasm instance cannot be trusted afterwards, so the pool restarts the
//   worker.
// - 'uncaught': an uncaught error in the worker and no answer ever, as a
//   worker whose script dies; the page sees only the worker's error event.

/** @type {'trap'|'uncaught'|null} */
let armed = null;

/** @param {'trap'|'uncaught'} kind */
export function armFault(kind) {
  armed = kind;
}

/** A module whose export `f` executes `unreachable`. */
const TRAP_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
  0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
  0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00, // export "f" = function 0
  0x0a, 0x05, 0x01, 0x03, 0x00, 0x00, 0x0b, // code: no locals, unreachable, end
]);

/** Fail now if a fault is armed (called at the start of a compress job). */
export async function injectArmedFault() {
  const kind = armed;
  armed = null;
  if (kind === 'trap') {
    const { exports } = new WebAssembly.Instance(new WebAssembly.Module(TRAP_MODULE));
    /** @type {any} */ (exports).f();
  }
  if (kind === 'uncaught') {
    setTimeout(() => { throw new Error('simulated worker crash (test hook)'); }, 0);
    await new Promise(() => {}); // never answers
  }
}
