#!/usr/bin/env bash
# MiniLM runtime benchmark in wasm32 + SIMD128: sentence embeddings per
# second, batches of 1 and 32, dense f32 vs packed 2-bit weights (all 36
# Linear layers), under Node and in headless Chromium. Uses the
# `run_runtime_bench` entry of benches/kernels.rs.
#   bash scripts/bench-runtime-wasm.sh [node|chromium|both]
# The packed model is target/bench-minilm-2bit.safetensors, written by
#   JLCM_BENCH_PACKED=$PWD/target/bench-minilm-2bit.safetensors cargo bench --bench runtime
set -euo pipefail
cd "$(dirname "$0")/.."
WHERE=${1:-both}
MODEL=$(bash scripts/fetch-model.sh | tail -1)
PACKED=${JLCM_BENCH_PACKED:-target/bench-minilm-2bit.safetensors}
[ -f "$PACKED" ] || { echo "$PACKED missing: run JLCM_BENCH_PACKED=\$PWD/$PACKED cargo bench --bench runtime" >&2; exit 1; }
case "${RUSTFLAGS:-}" in
  ""|*simd128*) ;;
  *) echo "RUSTFLAGS is set without +simd128" >&2; exit 1 ;;
esac
OUT=target/bench-runtime-wasm
WASM=$(cargo build --release --bench kernels --target wasm32-unknown-unknown --message-format=json 2>/dev/null \
  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const l of s.split("\n")){if(!l)continue;const m=JSON.parse(l);if(m.reason==="compiler-artifact"&&m.target.name==="kernels"&&m.target.kind.includes("bench")){for(const f of m.filenames)if(f.endsWith(".wasm"))console.log(f)}}})')
[ -n "$WASM" ] || { echo "build failed" >&2; exit 1; }
wasm-bindgen --target nodejs --out-dir "$OUT/node" --out-name kernels "$WASM"
echo '{"type":"commonjs"}' > "$OUT/node/package.json"
wasm-bindgen --target web --out-dir "$OUT/web" --out-name kernels "$WASM"
cp scripts/bench-runtime-web/index.html scripts/bench-runtime-web/worker.js "$OUT/web/"
for f in config.json tokenizer.json model.safetensors; do ln -sf "$MODEL/$f" "$OUT/web/$f"; done
ln -sf "$PWD/$PACKED" "$OUT/web/packed.safetensors"
ln -sf "$PWD/tests/data/st_sentences.txt" "$OUT/web/sentences.txt"

if [ "$WHERE" != chromium ]; then
  echo "## Node $(node --version)"
  node -e "
const fs=require('fs');const m='$MODEL/';
process.stdout.write(require('./$OUT/node/kernels.js').run_runtime_bench(
  fs.readFileSync(m+'config.json','utf8'), fs.readFileSync(m+'tokenizer.json'),
  fs.readFileSync(m+'model.safetensors'), fs.readFileSync('$PACKED'),
  fs.readFileSync('tests/data/st_sentences.txt','utf8'), 2.0))"
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
if [ "$WHERE" != node ]; then
  echo "## $(chromium --version 2>/dev/null | head -1) (headless)"
  node scripts/bench-kernels-web/drive-chromium.mjs "$OUT/web" false
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
