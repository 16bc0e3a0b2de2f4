#!/usr/bin/env bash
# Install what jlcm's build and tests need; skips what is present.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
rustup component list --installed | grep -q clippy || rustup component add clippy
rustup component list --installed | grep -q rustfmt || rustup component add rustfmt
need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v wasm-objdump >/dev/null || need_apt+=(wabt)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
command -v wasm-pack >/dev/null || cargo install wasm-pack
want=$(grep -A1 'name = "wasm-bindgen"' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p' | head -1)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
[ "$have" = "$want" ] || cargo install wasm-bindgen-cli --version "$want" --force
if [ -f package-lock.json ]; then
  [ -d node_modules ] && [ node_modules -nt package-lock.json ] || npm ci --no-audit --no-fund
fi
