#!/usr/bin/env bash
# Run every cargo-fuzz target for N seconds each, one after the other, and
# print execs and coverage per target. Not part of CI (too long).
#
# Usage: bash scripts/fuzz.sh [SECONDS_PER_TARGET=600] [TARGET...]
#   FUZZ_RUNS=N: also stop a target after N executions (libFuzzer -runs;
#   whichever of SECONDS and N comes first). On a shared machine:
#   FUZZ_RUNS=10000000 nice -n 15 bash scripts/fuzz.sh 3000 packed
# Needs: cargo install cargo-fuzz; a nightly toolchain (rustup toolchain
# install nightly --profile minimal). Seeds: fuzz/seeds/ (committed), the
# bad-file corpus, and slices of the real MiniLM compressed by the release
# `jlcm` (made here if the model is cached). Findings land in
# fuzz/artifacts/<target>/; turn each into a test in tests/bad_files.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors packed options compress)
log_dir="fuzz/logs"
mkdir -p "$log_dir"

# --- seed corpora -----------------------------------------------------------
mkdir -p fuzz/corpus/safetensors fuzz/corpus/packed fuzz/corpus/options fuzz/corpus/compress
cp tests/bad-files/*.safetensors fuzz/corpus/safetensors/
cp tests/bad-files/*.safetensors fuzz/corpus/packed/
cp fuzz/seeds/options/* fuzz/corpus/options/
cp fuzz/seeds/compress/* fuzz/corpus/compress/
if [ -d fuzz/seeds/model ]; then
  cp fuzz/seeds/model/* fuzz/corpus/safetensors/
  cp fuzz/seeds/model/* fuzz/corpus/packed/
fi

# --- build and run ----------------------------------------------------------
sanitizer_flag=()
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1 and no sanitizer"
  export RUSTC_BOOTSTRAP=1
  toolchain=()
  sanitizer_flag=(--sanitizer none)
else
  toolchain=(+nightly)
fi
for t in "${targets[@]}"; do
  dict=()
  case "$t" in
    options) dict=(-dict=fuzz/dict/options.dict) ;;
    compress) dict=() ;;
    *) dict=(-dict=fuzz/dict/safetensors.dict) ;;
  esac
  echo "=== $t: ${secs}s${FUZZ_RUNS:+ or $FUZZ_RUNS runs}, $(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
  cargo "${toolchain[@]}" fuzz run "${sanitizer_flag[@]}" -O "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"} -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "${dict[@]}" \
    2>&1 | tee "$log_dir/$t.log" | grep -E '^#[0-9]+[[:space:]]+(INITED|DONE|pulse)|stat::|ERROR|SUMMARY' || true
  echo "--- $t ($(date -u +%H:%M:%S) UTC): $(grep -E 'stat::number_of_executed_units' "$log_dir/$t.log" | tail -1) ; $(grep -E '^#[0-9]+[[:space:]]+DONE' "$log_dir/$t.log" | tail -1)"
done
