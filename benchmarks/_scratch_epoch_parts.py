"""Scratch (to be deleted): where run_epoch's time goes beyond 2x a plain step, on resnet18 (CPU)."""
import copy
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from bestbatch.augment import images_to_tensor, make_batch
from bestbatch.models import build_model
from bestbatch.training import batch_gradient, make_optimizer

torch.set_num_threads(2)
name = sys.argv[1] if len(sys.argv) > 1 else "resnet18"
bs, K = 64, 4
t = dict(batch_size=bs, seed=0, augment=True, dtype="float32", lr=0.1, lr_milestones=[], lr_gamma=0.1,
         momentum=0.9, weight_decay=5e-4)
rng = np.random.default_rng(0)
images = images_to_tensor(rng.integers(0, 256, (bs * K, 32, 32, 3), dtype=np.uint8), torch.device("cpu"))
labels = torch.as_tensor(rng.integers(0, 10, bs * K))
order = torch.as_tensor(rng.permutation(bs * K))
base = build_model(name, seed=0)

T = {}


def tick(key, t0):
    now = time.perf_counter()
    T.setdefault(key, []).append(now - t0)
    return now


def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def epoch(mode):
    net = copy.deepcopy(base)
    opt = make_optimizer(net, t, 1)
    t0 = time.perf_counter()
    f0 = faults()
    compare = copy.deepcopy(net) if mode != "plain" else None
    t0 = tick(f"{mode}: deepcopy", t0)
    gsum = None
    for k in range(K):
        idx = order[k * bs:(k + 1) * bs]
        x = make_batch(images, idx, 0, 1, k, True, torch.float32)
        y = labels[idx]
        t0 = tick(f"{mode}: make_batch", t0)
        opt.zero_grad(set_to_none=True)
        out = net(x)
        loss = F.cross_entropy(out, y)
        t0 = tick(f"{mode}: normal fwd", t0)
        loss.backward()
        t0 = tick(f"{mode}: normal bwd", t0)
        opt.step()
        t0 = tick(f"{mode}: normal step", t0)
        if mode == "plain":
            continue
        if mode == "compare_nocat":
            compare.zero_grad(set_to_none=True)
            l2 = F.cross_entropy(compare(x), y)
            t0 = tick(f"{mode}: compare fwd", t0)
            l2.backward()
            t0 = tick(f"{mode}: compare bwd", t0)
            continue
        g, _ = batch_gradient(compare, x, y)
        t0 = tick(f"{mode}: compare fwd+bwd+cat", t0)
        if gsum is None:
            gsum = torch.zeros(g.numel(), dtype=torch.float64)
        gsum.add_(g)
        t0 = tick(f"{mode}: float64 add_", t0)
    T.setdefault(f"{mode}: minor page faults", []).append(faults() - f0)


import os
modes = os.environ.get("MODES", "plain,compare_nocat,job").split(",")
for m in modes:
    epoch(m)
T.clear()
for r in range(3):
    for m in modes[r % len(modes):] + modes[:r % len(modes)]:
        epoch(m)
for key, v in T.items():
    if "faults" in key:
        print(f"{key:32s} {statistics.median(v):10.0f} per epoch")
    else:
        per_epoch = [sum(v[i * len(v) // 3:(i + 1) * len(v) // 3]) for i in range(3)]
        print(f"{key:32s} {statistics.median(per_epoch) * 1e3 / K:8.1f} ms per batch")
