#!/usr/bin/env python3
"""Extrapolate the full-model compression time from the tensors a partial run
compressed (the `[k/n] NAME RxC B bits: W s wall, C s CPU` lines `jlcm
compress` prints when stderr is not a terminal).

    python3 scripts/scale-extrapolate.py PLAN.json RUN.log [RUN.log ...]

Each tensor of the plan is given the measured CPU seconds per weight of its
kind (head = embed/lm_head, attn = self_attn.*, mlp.down = down_proj,
mlp.gate/up = the other MLP weights) at its bits; a
(kind, bits) never measured takes the kind's rate at the nearest measured bits
scaled by 2^bits / 2^measured (the k-means and mapping work grow with K).
Prints the measured rates, the per-kind totals and the sum in CPU seconds.
"""
import json, re, sys
from collections import defaultdict

def kind(name):
    if "embed" in name or "lm_head" in name:
        return "head"
    if "self_attn" in name:
        return "attn"
    if "down_proj" in name:
        return "mlp.down"
    if ".mlp." in name:
        return "mlp.gate/up"
    return "other"

plan = json.load(open(sys.argv[1]))
line = re.compile(r"^\[\d+/\d+\] (\S+) (\d+)x(\d+) (\d+) bits: ([\d.]+) s wall, ([\d.]+) s CPU")
meas = defaultdict(lambda: [0.0, 0])  # (kind, bits) -> [cpu, weights]
rows = []
for log in sys.argv[2:]:
    for l in open(log):
        m = line.match(l)
        if m:
            name, r, c, b, wall, cpu = m.groups()
            w = int(r) * int(c)
            meas[(kind(name), int(b))][0] += float(cpu)
            meas[(kind(name), int(b))][1] += w
            rows.append((name, int(b), w, float(wall), float(cpu)))
print(f"{'measured tensor':<48} {'bits':>4} {'weights':>10} {'wall s':>7} {'CPU s':>7} {'Mw/CPU s':>9}")
for name, b, w, wall, cpu in rows:
    print(f"{name:<48} {b:>4} {w:>10} {wall:>7.1f} {cpu:>7.1f} {w / cpu / 1e6:>9.2f}")
rate = {k: v[0] / v[1] for k, v in meas.items()}
# Weights per tensor from the Llama-7B shapes.
H, M, V = 4096, 11008, 32000
def weights(name):
    if kind(name) == "head":
        return V * H
    if kind(name).startswith("mlp"):
        return M * H
    return H * H
total = defaultdict(float)
for name, b in plan.items():
    k = kind(name)
    if (k, b) in rate:
        r = rate[(k, b)]
    else:
        near = min((bb for kk, bb in rate if kk == k), key=lambda bb: abs(bb - b))
        r = rate[(k, near)] * 2 ** b / 2 ** near
    total[k] += r * weights(name)
for k, v in sorted(total.items()):
    n = sum(1 for x in plan if kind(x) == k)
    print(f"{k:<11} {n:>4} tensors: {v:8.0f} CPU s")
print(f"{'all':<11} {len(plan):>4} tensors: {sum(total.values()):8.0f} CPU s = {sum(total.values()) / 3600:.2f} CPU h")
