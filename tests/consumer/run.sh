#!/usr/bin/env bash
# Install the packed tarball into a clean temporary folder and use it from
# (a) Node 20, (b) a page bundled by esbuild in headless Chromium and
# (c) a module worker; the packed bytes must be identical in all three and
# to the native CLI's (`jlcm compress`) for the same options.
# Usage: bash tests/consumer/run.sh [dist/jlcm-X.tgz]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tarball=$(realpath "${1:-$(ls -t "$repo"/dist/jlcm-*.tgz | head -1)}")
app=$(mktemp -d /tmp/jlcm-consumer.XXXXXX)
trap 'rm -rf "$app"' EXIT
cp "$here"/app/* "$app"/
(cd "$app" && npm install --no-audit --no-fund --no-save --silent "$tarball")
echo "consumer: installed $(basename "$tarball") into $app"

echo "consumer: type-check typed.ts against jlcm.d.ts"
(cd "$app" && "$repo/node_modules/.bin/tsc" --noEmit --strict --target es2022 --module nodenext \
  --moduleResolution nodenext --lib es2022,dom,esnext.disposable --skipLibCheck false typed.ts)

echo "consumer (a) node:"
node_out=$(cd "$app" && node node.js)
echo "$node_out"
node_sha=$(node -e 'console.log(JSON.parse(process.argv[1]).node.sha256)' "$node_out")

echo "consumer: the native CLI gives the same packed bytes as Node"
(cd "$repo" && cargo build --release --quiet --bin jlcm)
node "$app/write-fixture.js" "$app/fixture.safetensors"
"${CARGO_TARGET_DIR:-$repo/target}/release/jlcm" compress "$app/fixture.safetensors" -o "$app/fixture.packed.safetensors" \
  --bits 2 --groups 4 --iters 5 >/dev/null 2>&1
native_sha=$(sha256sum "$app/fixture.packed.safetensors" | cut -d' ' -f1)
[ "$native_sha" = "$node_sha" ] || { echo "native $native_sha != node $node_sha"; exit 1; }
echo "same SHA-256 natively and in Node: $native_sha"

if [ "${JLCM_SKIP_MODEL_TESTS:-}" = 1 ]; then
  echo "consumer: MiniLM runtime check skipped (JLCM_SKIP_MODEL_TESTS=1)"
else
  model=$(bash "$repo/scripts/fetch-model.sh")
  echo "consumer: jlcm/text token ids in Node vs the tokenizers crate's (tests/data/token_ids.json)"
  (cd "$app" && node token-ids.js "$model" "$repo/tests/data")
  echo "consumer: MiniLM runtime in Node (dense and 4-bit packed) vs native jlcm embed"
  jlcm_bin="${CARGO_TARGET_DIR:-$repo/target}/release/jlcm"
  sentences="$repo/tests/data/st_sentences.txt"
  "$jlcm_bin" compress "$model/model.safetensors" -o "$app/minilm.4bit.safetensors" --bits 4 --iters 1 >/dev/null 2>&1
  "$jlcm_bin" embed "$model" --text "$sentences" -o "$app/native-dense.npy" >/dev/null 2>&1
  "$jlcm_bin" embed "$model" --text "$sentences" --weights "$app/minilm.4bit.safetensors" -o "$app/native-packed.npy" >/dev/null 2>&1
  echo "consumer: calibration from sentences in Node (jlcm/text + computeCalibration) vs native jlcm calibrate"
  "$jlcm_bin" calibrate "$model" --text "$sentences" --batch-size 5 -o "$app/native-calib.safetensors" >/dev/null 2>&1
  (cd "$app" && node embed.js "$model" minilm.4bit.safetensors "$sentences" native-dense.npy native-packed.npy native-calib.safetensors 5)
fi

echo "consumer (b) page + (c) module worker, bundled by esbuild:"
(cd "$app" && "$repo/node_modules/.bin/esbuild" page.js worker.js --bundle --splitting --format=esm \
  --loader:.wasm=file --outdir=dist --log-level=warning)
cp "$app/index.html" "$app/dist/"
node "$here/browser.mjs" "$app/dist" "$node_sha"
echo "consumer: all passed"
