#!/usr/bin/env bash
# Build the npm package's SIMD128 wasm module into OUT_DIR:
#   jlcm.js + jlcm_bg.wasm  engine, format, kernels, MiniLM runtime on token ids
# plus pkg-config/text.js (the `jlcm/text` entry: tokenizer.json through
# `@huggingface/tokenizers`, then the core SentenceModel) and the typings.
# Its own cargo profile (Cargo.toml: wasm-core) keeps the test suites'
# default-feature wasm builds from overwriting it. wasm-bindgen-cli
# (pinned) and npm binaryen's wasm-opt (Debian's breaks wasm-bindgen output,
# TOOLCHAIN.md trap 1). WASM_OPT_LEVEL (-O1 | -O | -Oz | none) sets wasm-opt
# [-O1]: -O1 is as small as -O (252.6 vs 252.8 KB gz) and V8 runs the engine
# 15-20 % faster from it than from -O2 and above (BENCHMARKS `## Session 12`).
# Usage: bash scripts/build-wasm.sh OUT_DIR      (prints the gzipped size)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=${1:?usage: build-wasm.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
[ -x node_modules/.bin/wasm-opt ] || npm ci --no-audit --no-fund >&2
export PATH="$repo/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# A RUSTFLAGS without +simd128 would replace .cargo/config.toml's (trap 3).
if [ -n "${RUSTFLAGS:-}" ] && [[ "$RUSTFLAGS" != *simd128* ]]; then
  echo "build-wasm: RUSTFLAGS='$RUSTFLAGS' lacks +simd128; ignoring it" >&2
  unset RUSTFLAGS
fi
target_dir=${CARGO_TARGET_DIR:-$repo/target}
level=${WASM_OPT_LEVEL:--O1}
lock_bindgen=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
have_bindgen=$(wasm-bindgen --version | cut -d' ' -f2)
[ "$lock_bindgen" = "$have_bindgen" ] || { echo "build-wasm: wasm-bindgen-cli $have_bindgen != $lock_bindgen in Cargo.lock (cargo install wasm-bindgen-cli --version $lock_bindgen)" >&2; exit 1; }

# build_module PROFILE FEATURES OUT_NAME
build_module() {
  local profile=$1 features=$2 name=$3
  cargo build --lib --target wasm32-unknown-unknown --profile "$profile" --no-default-features $features >&2
  local tmp=$target_dir/bindgen-$name
  rm -rf "$tmp" && mkdir -p "$tmp"
  wasm-bindgen --target web --out-dir "$tmp" --out-name "$name" \
    "$target_dir/wasm32-unknown-unknown/$profile/jlcm.wasm"
  if [ "$level" = none ]; then
    cp "$tmp/${name}_bg.wasm" "$out/${name}_bg.wasm"
  else
    wasm-opt "$level" --enable-simd --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
      --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
      "$tmp/${name}_bg.wasm" -o "$out/${name}_bg.wasm"
  fi
  cp "$tmp/$name.js" "$tmp/$name.d.ts" "$tmp/${name}_bg.wasm.d.ts" "$out/"
}
build_module wasm-core "" jlcm
cp pkg-config/text.js pkg-config/text.d.ts "$out/"

# Refuse a core build without SIMD128 instructions.
simd=$(wasm-objdump -d "$out/jlcm_bg.wasm" 2>/dev/null | grep -cE 'v128\.|i8x16\.|f32x4\.' || true)
echo "build-wasm: $simd SIMD128 instructions in jlcm_bg.wasm" >&2
[ "$simd" -gt 0 ] || { echo "build-wasm: no SIMD128 instructions: wrong RUSTFLAGS?" >&2; exit 1; }
f=jlcm_bg.wasm
echo "build-wasm: $f $(wc -c < "$out/$f") bytes, $(gzip -9 -c "$out/$f" | wc -c) gzipped (wasm-opt $level)" >&2
