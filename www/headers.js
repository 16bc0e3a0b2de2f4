// Header validation by the engine's own reader: the wasm build of
// src/format/safetensors.rs (`parseHeader`), instantiated once on the main
// thread, so a bad file dropped on the page gets the same one-line message as
// the CLI and the npm package (tests/bad-files/manifest.json). The page's JS
// reader (safetensors.js) stays the fallback when the wasm is not built.

import { useEngineHeaderParser } from './safetensors.js';
import { useEnginePackedInspector } from './packed-file.js';

/**
 * Instantiate the wasm package on the main thread (from the module compiled
 * once for the workers) and route header validation through it.
 * @param {string} glueUrl
 * @param {WebAssembly.Module} module
 * @returns {Promise<boolean>} whether the engine's reader is in use
 */
export async function useEngineHeaders(glueUrl, module) {
  const glue = await import(glueUrl);
  await glue.default({ module_or_path: module });
  if (typeof glue.parseHeader !== 'function') return false;
  useEngineHeaderParser((bytes, fileLength) => glue.parseHeader(bytes, fileLength));
  // Packed files dropped on the page are checked whole by the engine (packed-file.js).
  if (typeof glue.inspectPackedFile === 'function') useEnginePackedInspector((bytes) => glue.inspectPackedFile(bytes));
  return true;
}
