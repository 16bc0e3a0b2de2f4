#!/usr/bin/env python3
"""Reference sentence embeddings from sentence-transformers (the truth the
Rust runtime is tested against, tests/runtime.rs).

Reads tests/data/st_sentences.txt (one sentence per line) and writes
tests/data/st_reference.npy ([n, 384] float32, mean-pooled, L2-normalised),
plus tests/data/st_reference_tokens.json (token counts, for diagnosis).

One-off set-up (outside the repo; torch from PyPI is a few GB):
    python3 -m venv /root/.cache/jlcm/venv
    /root/.cache/jlcm/venv/bin/pip install sentence-transformers torch
Run:
    /root/.cache/jlcm/venv/bin/python scripts/st_reference.py [MODEL_DIR]
MODEL_DIR defaults to the folder printed by scripts/fetch-model.sh.
"""
import json
import pathlib
import sys

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def main() -> None:
    model_dir = sys.argv[1] if len(sys.argv) > 1 else "/root/.cache/jlcm/models/all-MiniLM-L6-v2"
    sentences = [s for s in (DATA / "st_sentences.txt").read_text().splitlines() if s.strip()]
    torch.manual_seed(0)
    model = SentenceTransformer(model_dir, device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    emb = model.encode(sentences, batch_size=8, convert_to_numpy=True, normalize_embeddings=True)
    emb = emb.astype(np.float32)
    np.save(DATA / "st_reference.npy", emb)
    tokens = [len(model.tokenizer(s, truncation=True, max_length=256)["input_ids"]) for s in sentences]
    meta = {
        "model": model_dir.rstrip("/").split("/")[-1],
        "sentence_transformers": __import__("sentence_transformers").__version__,
        "torch": torch.__version__,
        "tokens": tokens,
    }
    (DATA / "st_reference_tokens.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {emb.shape} to {DATA / 'st_reference.npy'}; tokens per sentence {tokens}")


if __name__ == "__main__":
    main()
