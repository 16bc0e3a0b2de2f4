#!/usr/bin/env bash
# The page's end-to-end tests: playwright-core (root devDependency) driving
# Debian's chromium against the page served by scripts/serve-static.mjs.
# Screenshots and measured figures land in tests/e2e/artifacts/ (gitignored).
#   bash scripts/test-e2e.sh            (JLCM_SKIP_BUILD=1 reuses www/pkg)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund
[ -d www/node_modules/uplot ] || (cd www && npm ci --no-audit --no-fund)
bash scripts/build-web.sh
bash scripts/fetch-model.sh >/dev/null
# The native CLI checks the downloaded packed file (falls back to the wasm decoder).
cargo build --release --bin jlcm   # a no-op when fresh: never compare the page with a stale CLI
node --test --test-concurrency=1 tests/e2e/
