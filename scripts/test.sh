#!/usr/bin/env bash
# Set up (idempotently) and run every test of jlcm. Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n=== %s\n' "$*"; }

step "set-up (skips what is present)"
bash scripts/setup.sh

step "demo model (cache outside the repo)"
bash scripts/fetch-model.sh >/dev/null

step "format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings

step "native tests"
cargo test --profile fast

step "wasm32 + SIMD128 build"
cargo build --release --lib --target wasm32-unknown-unknown
wasm="target/wasm32-unknown-unknown/release/jlcm.wasm"
simd=$(wasm-objdump -d "$wasm" | grep -c -E 'i8x16|f32x4|v128' || true)
echo "SIMD128 instructions in $wasm: $simd"
[ "$simd" -gt 0 ] || { echo "no SIMD128 instructions in the wasm build"; exit 1; }

if [ -f scripts/test-wasm.sh ]; then
  step "wasm suites (Chromium, Node) and npm consumers"
  bash scripts/test-wasm.sh
fi

if [ -d tests/e2e ]; then
  step "page end-to-end tests (playwright-core + Debian chromium)"
  bash scripts/test-e2e.sh
fi
step "all tests passed"
