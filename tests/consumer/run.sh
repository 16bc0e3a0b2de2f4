#!/usr/bin/env bash
# Install the packed tarball into a clean temporary folder and use it from
# (a) Node 20, (b) a page bundled by esbuild in headless Chromium and
# (c) a module worker. Usage: bash tests/consumer/run.sh [dist/jlcm-X.tgz]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tarball=${1:-$(ls -t "$repo"/dist/jlcm-*.tgz | head -1)}
app=$(mktemp -d /tmp/jlcm-consumer.XXXXXX)
trap 'rm -rf "$app"' EXIT
cp "$here"/app/* "$app"/
(cd "$app" && npm install --no-audit --no-fund --no-save --silent "$tarball")
echo "consumer: installed $(basename "$tarball") into $app"

echo "consumer: type-check typed.ts against jlcm.d.ts"
(cd "$app" && "$repo/node_modules/.bin/tsc" --noEmit --strict --target es2022 --module nodenext \
  --moduleResolution nodenext --lib es2022,dom,esnext.disposable --skipLibCheck false typed.ts)

echo "consumer (a) node:"
(cd "$app" && node node.js)

echo "consumer (b) page + (c) module worker, bundled by esbuild:"
(cd "$app" && "$repo/node_modules/.bin/esbuild" page.js worker.js --bundle --format=esm \
  --loader:.wasm=file --outdir=dist --log-level=warning)
cp "$app/index.html" "$app/dist/"
node "$here/browser.mjs" "$app/dist"
echo "consumer: all passed"
