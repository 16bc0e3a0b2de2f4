#!/usr/bin/env bash
# Scale benchmark: the synthetic Llama-7B (examples/gen_llama.rs) compressed
# data-free (H = I) at --target-size 2GB.
#
#   bash scripts/bench-scale.sh            # plan the whole model, compress part 0 of 32
#   SHARDS=1 bash scripts/bench-scale.sh   # compress the whole model in one run
#
# Step 1 plans the whole model (loss estimates, bit allocation, exact output
# size) without compressing. Step 2 compresses part 0 of a SHARDS-way split
# (tensors balanced by weight count, the global allocation applied), under
# /usr/bin/time -v for wall time, CPU time and peak RSS. The full-model time
# is extrapolated per tensor from the per-tensor CPU times of the run (see the
# `## Scale` section of BENCHMARKS.md). Logs go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-$HOME/.cache/jlcm/llama7b-synth}
OUT=${OUT:-$HOME/.cache/jlcm/bench}
SHARDS=${SHARDS:-32}
TARGET=${TARGET:-2GB}
mkdir -p "$OUT"
cargo build --release --bin jlcm --example gen_llama
if [ ! -f "$MODEL/model.safetensors.index.json" ]; then
  df -h "$(dirname "$MODEL")"
  target/release/examples/gen_llama "$MODEL"            # 13.5 GB, 2 shards
fi
J=target/release/jlcm
/usr/bin/time -v $J compress "$MODEL" -o "$OUT/plan.safetensors" \
  --target-size "$TARGET" --plan-only 2> "$OUT/plan.log"
if [ "$SHARDS" = 1 ]; then
  /usr/bin/time -v $J compress "$MODEL" -o "$OUT/llama7b.jlcm.safetensors" \
    --target-size "$TARGET" 2> "$OUT/run.log"
else
  /usr/bin/time -v $J compress "$MODEL" -o "$OUT/part0.safetensors" \
    --target-size "$TARGET" --shard "0/$SHARDS" 2> "$OUT/run.log"
fi
for f in plan run; do
  echo "== $f"
  grep -E "^(allocation|planned output|shard|[0-9]+ tensors compressed)" "$OUT/$f.log" || true
  grep -E "Elapsed \(wall|User time|System time|Maximum resident" "$OUT/$f.log"
done
