#!/usr/bin/env python3
"""Compare two `jlcm embed` outputs (.npy, [n, hidden], L2-normalised rows):
mean/min cosine of matching rows and top-1 retrieval agreement (each
sentence's nearest other sentence is the same under both).
Usage: python3 scripts/compare-embeddings.py ORIGINAL.npy COMPRESSED.npy"""
import sys
import numpy as np

a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
cos = (a * b).sum(1)
sa, sb = a @ a.T, b @ b.T
np.fill_diagonal(sa, -np.inf)
np.fill_diagonal(sb, -np.inf)
agree = (sa.argmax(1) == sb.argmax(1)).mean()
print(f"n {len(a)}  cosine mean {cos.mean():.4f} min {cos.min():.4f}  top-1 agreement {agree:.3f}")
