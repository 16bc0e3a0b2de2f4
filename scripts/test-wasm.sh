#!/usr/bin/env bash
# The wasm checks: every wasm test binary (tests/web.rs, tests/node.rs, the
# kernels' tests, unit tests) in headless Chromium and in Node, then the
# package built and used by the consumer app (Node, esbuild page, worker).
# Usage: bash scripts/test-wasm.sh      (run scripts/setup.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
export PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# A RUSTFLAGS without +simd128 replaces .cargo/config.toml's (TOOLCHAIN.md trap 3).
if [ -n "${RUSTFLAGS:-}" ] && [[ "$RUSTFLAGS" != *simd128* ]]; then unset RUSTFLAGS; fi
step() { echo; echo "== test-wasm: $* ($(($(date +%s) - start)) s)"; }

step "wasm-pack test --headless --chrome"
# WASM_BINDGEN_USE_BROWSER: test binaries without run_in_browser run in
# Chromium too (instead of being skipped). `--lib --bins --test *`: unit, bin and
# integration tests; doc tests are checked natively by `cargo test`.
WASM_BINDGEN_USE_BROWSER=1 wasm-pack test --headless --chrome --mode no-install -- --lib --bins --test '*'

step "wasm-pack test --node"
wasm-pack test --node --mode no-install -- --lib --bins --test '*'

step "build the package"
tarball=$(bash scripts/build-pkg.sh | tail -1)

step "consumer tests with $tarball"
bash tests/consumer/run.sh "$tarball"

step "all wasm checks passed in $(($(date +%s) - start)) s"
