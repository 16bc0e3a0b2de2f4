#!/usr/bin/env bash
# Build the npm package: the SIMD128 wasm module and the `jlcm/text` entry
# (scripts/build-wasm.sh), assembled with pkg-config/ and packed into
# dist/jlcm-<v>.tgz. `jlcm/text` imports the dependency
# `@huggingface/tokenizers`, which the consumer's npm installs.
# Usage: bash scripts/build-pkg.sh        (prints the tarball's path last)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

target_dir=${CARGO_TARGET_DIR:-$repo/target}
stage=$target_dir/pkg-stage
rm -rf "$stage" && mkdir -p "$stage" dist
# The wasm module, text.js, typings.
bash scripts/build-wasm.sh "$stage"
cp pkg-config/README.md "$stage"/README.md
version=$(cargo metadata --no-deps --format-version 1 | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).packages.find(p=>p.name==="jlcm").version))')
node -e '
  const fs = require("fs");
  const pkg = JSON.parse(fs.readFileSync("pkg-config/package.json", "utf8"));
  pkg.version = process.argv[1];
  fs.writeFileSync(process.argv[2] + "/package.json", JSON.stringify(pkg, null, 2) + "\n");
' "$version" "$stage"

tarball=$(cd "$stage" && npm pack --pack-destination "$repo/dist" --silent)
echo "$repo/dist/$tarball"
