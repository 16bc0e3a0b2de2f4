#!/usr/bin/env bash
# Engine speed, wasm vs native, side by side (issues 2 and 7): compress the
# 36 Linear weights of all-MiniLM-L6-v2 at 2 bits, without and with
# calibration, with
#   - the native CLI (`jlcm compress`, all cores, then RAYON_NUM_THREADS=1),
#   - the native engine on one thread, timed per phase (examples/engine_phases.rs),
#   - the SIMD128 wasm package in Node 20, one thread (`compressTensor` per
#     weight, scripts/bench-engine-wasm.mjs), timed per phase the same way,
# checks that the packed files are byte-identical, and prints a table.
#
#   bash scripts/bench-engine-wasm.sh            # build, then measure
#   SKIP_BUILD=1 bash scripts/bench-engine-wasm.sh
#   BITS=3 CASES=calib bash scripts/bench-engine-wasm.sh
#
# Outputs (packed files, calibration H, logs) go to $JLCM_BENCH_DIR
# (default /tmp/jlcm-bench-engine), outside the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
target_dir=${CARGO_TARGET_DIR:-$repo/target}
out=${JLCM_BENCH_DIR:-/tmp/jlcm-bench-engine}
bits=${BITS:-2}
cases=${CASES:-"identity calib"}
regex='^encoder\..*\.weight$'
mkdir -p "$out"

if [ "${SKIP_BUILD:-}" != 1 ]; then
  cargo build --release --bin jlcm --example engine_phases >&2
  bash scripts/build-pkg.sh >&2
fi
jlcm=$target_dir/release/jlcm
phases=$target_dir/release/examples/engine_phases
pkg=$target_dir/pkg-stage
for f in "$jlcm" "$phases" "$pkg/jlcm_bg.wasm"; do
  [ -e "$f" ] || { echo "bench-engine-wasm: $f missing (run without SKIP_BUILD=1)" >&2; exit 1; }
done
model_dir=$(bash scripts/fetch-model.sh | tail -1)
model=$model_dir/model.safetensors
H=$out/H.safetensors
if [[ " $cases " == *" calib "* ]] && [ ! -f "$H" ]; then
  "$jlcm" calibrate "$model_dir" --text ../shared/data/calib.txt -o "$H" >&2 2>/dev/null \
    || "$jlcm" calibrate "$model_dir" --text /work/shared/data/calib.txt -o "$H" >&2
fi

# run LABEL CMD...: /usr/bin/time wall, user+sys and peak RSS into $out/LABEL.time
run() {
  local label=$1
  shift
  /usr/bin/time -f '%e %U %S %M' -o "$out/$label.time" "$@" >"$out/$label.out" 2>"$out/$label.err" || {
    echo "bench-engine-wasm: $label failed:" >&2
    tail -5 "$out/$label.err" >&2
    exit 1
  }
}
# Summed final loss of the CLI's --json lines.
cli_loss() {
  node -e 'let s=0;for(const l of require("fs").readFileSync(process.argv[1],"utf8").split("\n")){if(!l.trim())continue;const r=JSON.parse(l);if(r.losses)s+=r.losses[r.losses.length-1].loss}console.log(s)' "$1"
}
field() { node -e 'const o=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));const v=process.argv[2].split(".").reduce((a,k)=>a?.[k],o);console.log(v??"")' "$1" "$2"; }
tm() { awk -v f="$2" '{ if (f=="wall") print $1; else if (f=="cpu") printf "%.2f\n", $2+$3; else print $4 }' "$out/$1.time"; }

echo "# Engine speed: wasm vs native, $bits bits, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); node $(node --version); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
summary=()
for c in $cases; do
  calib_args=()
  hfile=-
  if [ "$c" = calib ]; then calib_args=(--calib "$H"); hfile=$H; fi
  common=(compress "$model" --bits "$bits" --tensors "$regex" --json "${calib_args[@]}")
  echo "## H = $([ "$c" = calib ] && echo 'calibration (dense XᵀX/n)' || echo I)" >&2
  run "$c-cli" "$jlcm" "${common[@]}" -o "$out/$c-native.safetensors"
  RAYON_NUM_THREADS=1 run "$c-cli1" "$jlcm" "${common[@]}" -o "$out/$c-native1.safetensors"
  run "$c-phases" "$phases" "$model" "$regex" "$hfile" "$bits"
  run "$c-node" node scripts/bench-engine-wasm.mjs "$pkg" "$model" "$out/$c-wasm.safetensors" "$regex" "$hfile" "$bits"
  cp "$out/$c-phases.out" "$out/$c-phases.json"
  cp "$out/$c-node.out" "$out/$c-node.json"
  sha_native=$(sha256sum "$out/$c-native.safetensors" | cut -d' ' -f1)
  sha_native1=$(sha256sum "$out/$c-native1.safetensors" | cut -d' ' -f1)
  sha_wasm=$(field "$out/$c-node.json" sha256)
  same=no
  [ "$sha_native" = "$sha_wasm" ] && [ "$sha_native" = "$sha_native1" ] && same=yes
  loss_cli=$(cli_loss "$out/$c-cli.out")
  loss_wasm=$(field "$out/$c-node.json" loss_sum)
  n1=$(field "$out/$c-phases.json" cpu_s)
  w1=$(field "$out/$c-node.json" cpu_s)
  echo "### H = $c: packed files identical (CLI 2 threads, CLI 1 thread, wasm): $same ($sha_native); summed final loss CLI $loss_cli, wasm $loss_wasm"
  echo
  echo "| run | wall s | CPU s | peak RSS MB | engine CPU s (compression only) |"
  echo "|---|---|---|---|---|"
  for r in cli cli1 phases node; do
    name=$(case $r in cli) echo "native CLI, $(nproc) threads";; cli1) echo "native CLI, RAYON_NUM_THREADS=1";;
      phases) echo "native engine, 1 thread (engine_phases)";; node) echo "wasm SIMD128 in Node, 1 thread";; esac)
    eng=""
    [ "$r" = phases ] && eng=$n1
    [ "$r" = node ] && eng=$w1
    echo "| $name | $(tm "$c-$r" wall) | $(tm "$c-$r" cpu) | $(( $(tm "$c-$r" rss) / 1024 )) | $eng |"
  done
  echo
  echo "| phase (s, 1 thread) | native | wasm | wasm / native |"
  echo "|---|---|---|---|"
  for p in setup grouping init codebook mapping packing; do
    a=$(field "$out/$c-phases.json" "phases_s.$p"); b=$(field "$out/$c-node.json" "phases_s.$p")
    a=${a:-0}; b=${b:-0}
    echo "| $p | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN{ if (a>0) printf "%.2f", b/a; else print "-" }') |"
  done
  echo
  cli_cpu=$(tm "$c-cli" cpu); cli1_cpu=$(tm "$c-cli1" cpu); node_cpu=$(tm "$c-node" cpu)
  summary+=("| H = $c | $(tm "$c-cli" wall) / $cli_cpu | $(tm "$c-cli1" wall) / $cli1_cpu | $(tm "$c-node" wall) / $node_cpu | $(awk -v a="$cli1_cpu" -v b="$node_cpu" 'BEGIN{printf "%.2f", b/a}') | $(awk -v a="$n1" -v b="$w1" 'BEGIN{printf "%.2f", b/a}') | $same |")
done
echo "### Summary (wall s / CPU s; ratios of CPU seconds)"
echo
echo "| case | CLI $(nproc) threads | CLI 1 thread | wasm in Node, 1 thread | wasm / CLI-1-thread (process CPU) | wasm / native engine (compression CPU) | same bytes |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${summary[@]}"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
