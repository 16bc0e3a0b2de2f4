#!/usr/bin/env bash
# Build the npm package: the SIMD128 release wasm (wasm-pack, wasm-opt from
# npm `binaryen`), assembled from pkg-config/ and packed into dist/jlcm-<v>.tgz.
# Usage: bash scripts/build-pkg.sh        (prints the tarball's path last)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

# npm binaryen's wasm-opt first on PATH: Debian's binaryen 108 breaks
# wasm-bindgen 0.2.13x output (TOOLCHAIN.md trap 1).
[ -x node_modules/.bin/wasm-opt ] || npm ci --no-audit --no-fund
export PATH="$repo/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# A RUSTFLAGS without +simd128 would replace .cargo/config.toml's (trap 3).
if [ -n "${RUSTFLAGS:-}" ] && [[ "$RUSTFLAGS" != *simd128* ]]; then
  echo "build-pkg: RUSTFLAGS='$RUSTFLAGS' lacks +simd128; ignoring it" >&2
  unset RUSTFLAGS
fi

target_dir=${CARGO_TARGET_DIR:-$repo/target}
out=$target_dir/pkg-wasm
wasm-pack build --release --target web --mode no-install --no-pack \
  --out-dir "$out" --out-name jlcm >&2

# The package: wasm-pack's module, typings and wasm; our package.json and README.
stage=$target_dir/pkg-stage
rm -rf "$stage" && mkdir -p "$stage" dist
cp "$out"/jlcm.js "$out"/jlcm.d.ts "$out"/jlcm_bg.wasm "$out"/jlcm_bg.wasm.d.ts "$stage"/
cp pkg-config/README.md "$stage"/README.md
version=$(cargo metadata --no-deps --format-version 1 | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).packages.find(p=>p.name==="jlcm").version))')
node -e '
  const fs = require("fs");
  const pkg = JSON.parse(fs.readFileSync("pkg-config/package.json", "utf8"));
  pkg.version = process.argv[1];
  fs.writeFileSync(process.argv[2] + "/package.json", JSON.stringify(pkg, null, 2) + "\n");
' "$version" "$stage"

# Refuse a build without SIMD128 instructions.
simd=$(wasm-objdump -d "$stage/jlcm_bg.wasm" 2>/dev/null | grep -cE 'v128\.|i8x16\.|f32x4\.' || true)
echo "build-pkg: $simd SIMD128 instructions in jlcm_bg.wasm" >&2
[ "$simd" -gt 0 ] || { echo "build-pkg: no SIMD128 instructions: wrong RUSTFLAGS?" >&2; exit 1; }
gz=$(gzip -9 -c "$stage/jlcm_bg.wasm" | wc -c)
echo "build-pkg: jlcm_bg.wasm $(wc -c < "$stage/jlcm_bg.wasm") bytes, $gz gzipped" >&2

tarball=$(cd "$stage" && npm pack --pack-destination "$repo/dist" --silent)
echo "$repo/dist/$tarball"
