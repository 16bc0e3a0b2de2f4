#!/usr/bin/env bash
# Build the page's copy of the npm package into www/pkg: the same wasm module
# and glue (scripts/build-wasm.sh), with the `jlcm/text` entry bundled by
# esbuild so that its dependency `@huggingface/tokenizers` is served from this
# origin (no bare import for the browser to resolve, no CDN). The page and its
# workers import text.js only when they first tokenise.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${JLCM_SKIP_BUILD:-}" = 1 ] && [ -f www/pkg/jlcm_bg.wasm ] && [ -f www/pkg/text.js ]; then exit 0; fi
bash scripts/build-wasm.sh www/pkg
node_modules/.bin/esbuild pkg-config/text.js --bundle --minify --format=esm --external:./jlcm.js \
  --legal-comments=eof --log-level=warning --outfile=www/pkg/text.js
gz() { gzip -9 -c "$1" | wc -c; }
echo "www/pkg: core wasm $(gz www/pkg/jlcm_bg.wasm) B gz, text.js (with @huggingface/tokenizers) $(gz www/pkg/text.js) B gz" >&2
