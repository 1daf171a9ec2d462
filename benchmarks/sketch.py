"""What the sketch (bestbatch.sketch) costs per gradient on the CPU, and how far it is from the exact distances.

    PYTHONPATH=src .venv/bin/python benchmarks/sketch.py [--params 11000000 34000000] [--dim 17000]
        [--threads 2] [--repeats 3] [--batches 195] [--epoch-params 1048576]

Part 1, per gradient of P float32 values (ResNet18 ~11 M, DPN92 ~34 M) at d values: the one-time hash of the
projection (kept on the CPU: 4 s P bytes), the sketch of one gradient with that hash kept (what a job pays per
batch), without it (the hash recomputed for every gradient), and a plain copy of the same vector (the floor: one
read and one write of P values). Medians of --repeats, after one warm-up.
Part 2, one synthetic epoch: K gradients of P values (a shared gradient, a low-rank part and noise, with
per-coordinate scales over two decades), reduced exactly (distances.reduce_rows) and from their sketches:
the largest relative error of D = ||g_k - g_bar|| over the K batches and the Spearman correlation of the
sketched D with the exact D, beside the bound the page would state (sketch_bound, delta = 0.05).
The machine and its load (uptime) are printed with the table: on a shared machine, times are upper bounds.
"""

import argparse
import math
import os
import platform
import statistics
import subprocess
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from bestbatch.distances import reduce_rows
from bestbatch.sketch import SparseProjection, reduce_sketches, sketch_bound


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_gradient(n_params, dim, nonzeros, repeats, uncached):
    g = torch.randn(n_params, generator=torch.Generator().manual_seed(0))
    copy = torch.empty_like(g)
    proj = SparseProjection(n_params, dim, seed=0, nonzeros=nonzeros)
    start = time.perf_counter()
    proj.codes(0, 1, "cpu")  # builds the hash of all P coordinates once
    hash_s = time.perf_counter() - start
    sketch_s = timed(lambda: proj(g), repeats)
    copy_s = timed(lambda: copy.copy_(g), repeats)
    nocache_s = None
    if uncached:
        bare = SparseProjection(n_params, dim, seed=0, nonzeros=nonzeros, cache=False)
        nocache_s = timed(lambda: bare(g), 1)
    return dict(hash=hash_s, sketch=sketch_s, nocache=nocache_s, copy=copy_s, cache_mb=4 * nonzeros * n_params / 1e6)


def synthetic_epoch(k_rows, n_params, seed=0, rank=8):
    """(K, P) float32: shared + low-rank + noise, times per-coordinate scales over two decades."""
    gen = torch.Generator().manual_seed(seed)
    scale = 10 ** (2 * torch.rand(n_params, generator=gen))
    basis = torch.randn(rank, n_params, generator=gen) / math.sqrt(rank)
    shared = torch.randn(n_params, generator=gen)
    rows = torch.empty(k_rows, n_params)
    for k in range(k_rows):
        coef = torch.randn(rank, generator=gen) * (1 + k % 5)  # batches differ in how far they stray
        rows[k] = (shared + coef @ basis + 0.5 * torch.randn(n_params, generator=gen)) * scale
    return rows


def epoch_error(k_rows, n_params, dim, nonzeros):
    rows = synthetic_epoch(k_rows, n_params)
    host = rows.numpy()
    start = time.perf_counter()
    exact = reduce_rows(host, host.sum(0, dtype=np.float64))["distance"]
    exact_s = time.perf_counter() - start
    proj = SparseProjection(n_params, dim, seed=1, nonzeros=nonzeros)
    start = time.perf_counter()
    sketched_rows = torch.stack([proj(r) for r in rows]).numpy()
    sketched = reduce_sketches(sketched_rows)["distance"]
    sketch_s = time.perf_counter() - start
    rel = np.abs(sketched - exact) / exact
    return dict(
        max_rel=float(rel.max()),
        median_rel=float(np.median(rel)),
        spearman=float(spearmanr(sketched, exact).statistic),
        spread=float(exact.max() / exact.min()),
        exact_s=exact_s,
        sketch_s=sketch_s,
    )


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); uptime: {uptime}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=int, nargs="+", default=[11_000_000, 34_000_000])
    ap.add_argument("--dim", type=int, default=17_000)
    ap.add_argument("--nonzeros", type=int, nargs="+", default=[4, 1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, default=195)
    ap.add_argument("--epoch-params", type=int, default=1 << 20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    print(f"machine: {machine()}")
    print(f"\nPer gradient, float32, CPU, d = {args.dim:,}:\n")
    print(
        "| P | s | hash, once (s) | kept hash (MB) | sketch (s) | sketch, hash not kept (s) | copy (s) | sketch / copy |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n_params in args.params:
        for nonzeros in args.nonzeros:
            r = per_gradient(n_params, args.dim, nonzeros, args.repeats, uncached=n_params == min(args.params))
            nocache = f"{r['nocache']:.2f}" if r["nocache"] is not None else "-"
            print(
                f"| {n_params:,} | {nonzeros} | {r['hash']:.2f} | {r['cache_mb']:.0f} | {r['sketch']:.3f} | {nocache} "
                f"| {r['copy']:.4f} | {r['sketch'] / r['copy']:.0f}x |"
            )
    print(f"\nOne synthetic epoch: K = {args.batches}, P = {args.epoch_params:,}, d = {args.dim:,}:\n")
    print(
        "| s | max rel. error of D | median rel. error | Spearman(D sketched, D exact) | max D / min D "
        "| stated bound, distances / pairs (delta 0.05) | exact reduction (s) | sketch + reduction (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for nonzeros in args.nonzeros:
        e = epoch_error(args.batches, args.epoch_params, args.dim, nonzeros)
        b_dist = sketch_bound(args.batches, args.dim, 0.05, "distances", nonzeros)["eps"]
        b_pairs = sketch_bound(args.batches, args.dim, 0.05, "pairs", nonzeros)["eps"]
        print(
            f"| {nonzeros} | {100 * e['max_rel']:.2f}% | {100 * e['median_rel']:.2f}% | {e['spearman']:.4f} "
            f"| {e['spread']:.2f} | {100 * b_dist:.2f}% / {100 * b_pairs:.2f}% | {e['exact_s']:.1f} | {e['sketch_s']:.1f} |"
        )
    print(f"\nafter: uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
