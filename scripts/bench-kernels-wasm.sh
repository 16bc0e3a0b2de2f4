#!/usr/bin/env bash
# Kernel matvec benchmark (benches/kernels.rs) compiled to wasm32 + SIMD128,
# run under Node and in headless Chromium (a module worker, driven through
# chromedriver's WebDriver API). Offline: needs wasm-bindgen (= the pinned
# crate version), node, chromium and chromedriver on PATH.
#   bash scripts/bench-kernels-wasm.sh [--quick] [--matrix ROWSxCOLS] [node|chromium|both]
# (--matrix: that matrix only, every layout, no batch sweep)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=false
WHERE=both
MATRIX=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=true ;;
    --matrix) MATRIX=${2:-}; shift
      [[ "$MATRIX" =~ ^[0-9]+x[0-9]+$ ]] || { echo "--matrix wants ROWSxCOLS, e.g. 4096x4096" >&2; exit 2; } ;;
    node|chromium|both) WHERE=$1 ;;
    *) echo "usage: $0 [--quick] [--matrix ROWSxCOLS] [node|chromium|both]" >&2; exit 2 ;;
  esac
  shift
done
case "${RUSTFLAGS:-}" in
  ""|*simd128*) ;;
  *) echo "RUSTFLAGS is set without +simd128: it would replace .cargo/config.toml and drop SIMD" >&2; exit 1 ;;
esac

OUT=target/bench-wasm
WASM=$(cargo build --release --bench kernels --target wasm32-unknown-unknown --message-format=json 2>/dev/null \
  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const l of s.split("\n")){if(!l)continue;const m=JSON.parse(l);if(m.reason==="compiler-artifact"&&m.target.name==="kernels"&&m.target.kind.includes("bench")){for(const f of m.filenames)if(f.endsWith(".wasm"))console.log(f)}}})')
[ -n "$WASM" ] || { echo "build failed: run cargo build --release --bench kernels --target wasm32-unknown-unknown" >&2; exit 1; }
echo "wasm: $WASM ($(wasm-objdump -d "$WASM" 2>/dev/null | grep -c i8x16.swizzle || echo '?') i8x16.swizzle)" >&2
wasm-bindgen --target nodejs --out-dir "$OUT/node" --out-name kernels "$WASM"
echo '{"type":"commonjs"}' > "$OUT/node/package.json"
wasm-bindgen --target web --out-dir "$OUT/web" --out-name kernels "$WASM"
cp scripts/bench-kernels-web/index.html scripts/bench-kernels-web/worker.js "$OUT/web/"

if [ "$WHERE" != chromium ]; then
  echo "## Node $(node --version)"
  if [ -n "$MATRIX" ]; then
    node -e "process.stdout.write(require('./$OUT/node/kernels.js').run_kernel_bench_matrix(${MATRIX/x/,}))"
  else
    node -e "process.stdout.write(require('./$OUT/node/kernels.js').run_kernel_bench($QUICK))"
  fi
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
if [ "$WHERE" != node ]; then
  echo "## $(chromium --version 2>/dev/null | head -1) (headless)"
  node scripts/bench-kernels-web/drive-chromium.mjs "$OUT/web" "$QUICK" "$MATRIX"
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
