#!/usr/bin/env bash
# Install what the wasm build and its tests need, skipping what is present
# (idempotent; safe to run on every CI start). See TOOLCHAIN.md.
#   rustup: clippy, rustfmt
#   Debian: chromium, chromium-driver, wabt     rustup: wasm32-unknown-unknown
#   cargo: wasm-pack, wasm-bindgen-cli (= the wasm-bindgen version in Cargo.lock)
#   npm: devDependencies from package-lock.json (binaryen, playwright-core, esbuild, typescript, @huggingface/tokenizers for the page)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
say() { echo "setup: $*" >&2; }

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v wasm-objdump >/dev/null || missing+=(wabt)
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
else
  say "chromium, chromedriver, wabt present"
fi

if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "wasm32-unknown-unknown present"
else
  rustup target add wasm32-unknown-unknown
fi
rustup component list --installed | grep -q clippy || rustup component add clippy
rustup component list --installed | grep -q rustfmt || rustup component add rustfmt

if command -v wasm-pack >/dev/null; then
  say "wasm-pack present ($(wasm-pack --version))"
else
  say "cargo install wasm-pack"
  cargo install wasm-pack
fi

# wasm-bindgen-cli must match the wasm-bindgen crate exactly (trap 2).
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" = "$want" ]; then
  say "wasm-bindgen-cli $have present"
else
  say "cargo install wasm-bindgen-cli --version $want (found '${have:-none}')"
  cargo install wasm-bindgen-cli --version "$want" --force
fi

# npm devDependencies, exactly as locked.
if [ -x node_modules/.bin/wasm-opt ] && [ -x node_modules/.bin/esbuild ] && [ -x node_modules/.bin/tsc ] && [ -d node_modules/playwright-core ] \
  && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  say "npm devDependencies present"
else
  say "npm ci"
  npm ci --no-audit --no-fund
fi
