#!/usr/bin/env bash
# Build the wasm package for the web, fetch the demo model into the cache and
# serve the page (repo + model) on localhost. Prints the URL.
#   bash scripts/serve.sh [port]        (default 8000; JLCM_SKIP_BUILD=1 to reuse www/pkg)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-8000}"
bash scripts/build-web.sh
MODEL="$(bash scripts/fetch-model.sh)"
[ -d www/node_modules/uplot ] || (cd www && npm install --no-audit --no-fund --silent)
exec node scripts/serve-static.mjs . "$MODEL" "$PORT"
