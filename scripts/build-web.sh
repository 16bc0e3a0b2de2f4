#!/usr/bin/env bash
# Build the SIMD128 wasm package for the page into www/pkg (wasm-pack, target
# web). Uses npm binaryen's wasm-opt when installed (Debian's breaks
# wasm-bindgen output, see TOOLCHAIN.md), else skips wasm-opt.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${JLCM_SKIP_BUILD:-}" = 1 ] && [ -f www/pkg/jlcm_bg.wasm ]; then exit 0; fi
OPT=(--no-opt)
for d in node_modules/.bin www/node_modules/.bin; do
  if [ -x "$d/wasm-opt" ]; then export PATH="$PWD/$d:$PATH"; OPT=(); break; fi
done
case "${RUSTFLAGS:-}" in *simd128*|"") ;; *) echo "RUSTFLAGS is set without +simd128: it would drop SIMD" >&2; exit 1;; esac
wasm-pack build --target web --release --mode no-install --out-dir www/pkg --out-name jlcm "${OPT[@]}" >&2
rm -f www/pkg/.gitignore www/pkg/package.json www/pkg/README.md
echo "www/pkg: $(du -h www/pkg/jlcm_bg.wasm | cut -f1) wasm" >&2
