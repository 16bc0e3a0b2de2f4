#!/usr/bin/env bash
# Build the page's copy of the npm package's wasm modules into www/pkg (the
# same files as the package: scripts/build-wasm.sh, core + lazily loaded
# tokenizer module + text.js).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${JLCM_SKIP_BUILD:-}" = 1 ] && [ -f www/pkg/jlcm_bg.wasm ] && [ -f www/pkg/jlcm_text_bg.wasm ]; then exit 0; fi
bash scripts/build-wasm.sh www/pkg
echo "www/pkg: $(du -h www/pkg/jlcm_bg.wasm | cut -f1) core wasm, $(du -h www/pkg/jlcm_text_bg.wasm | cut -f1) text wasm" >&2
