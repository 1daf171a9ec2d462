"""Time every metric's score_images + order_from_scores on N generated CIFAR-sized images.

    PYTHONPATH=src .venv/bin/python benchmarks/orderings.py [--n 50000] [--threads 2] [--device cpu]

LPIPS runs with a seeded random AlexNet backbone (pretrained_backbone: false) unless --pretrained is
given: the ImageNet weights cannot be fetched offline, and the cost is the same either way.
"""

import argparse
import os
import platform
import resource
import time

import numpy as np
import torch

from bestbatch.metrics import METRICS, order_from_scores, score_images


def structured_images(n, seed=0):
    """Smooth random blobs (bilinear 4x4 -> 32x32) plus pixel noise: varied colour, intensity and edges."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 255
    smooth = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    noisy = smooth + torch.randn(smooth.shape, generator=g) * 12
    return noisy.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def cpu_seconds():
    """User+system CPU of this process and its reaped children (the Canny pool), robust to a busy machine."""
    return sum(
        r.ru_utime + r.ru_stime for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def measure(n, threads, device="cpu", metrics=None, pretrained=False):
    """[(metric, wall seconds, CPU seconds)] of score_images + order_from_scores on n images."""
    images = structured_images(n)
    params = {"lpips": {"pretrained_backbone": pretrained}}
    rows = []
    for name in metrics or list(METRICS):
        t0, c0 = time.perf_counter(), cpu_seconds()
        scores = score_images(name, images, params.get(name, {}), threads=threads, device=device)
        order = order_from_scores(scores)
        rows.append((name, time.perf_counter() - t0, cpu_seconds() - c0))
        assert np.array_equal(np.sort(order), np.arange(n))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--pretrained", action="store_true", help="LPIPS with the ImageNet AlexNet (needs the weights file)"
    )
    ap.add_argument("--metrics", nargs="+", default=list(METRICS))
    args = ap.parse_args()

    load_before = os.getloadavg()[0]  # other jobs on the machine inflate wall time; say so
    rows = measure(args.n, args.threads, args.device, args.metrics, args.pretrained)

    total = ("total", sum(r[1] for r in rows), sum(r[2] for r in rows))
    print(f"\n{'metric':<10} {'seconds':>8} {'images/s':>10} {'cpu s':>8}")
    for name, dt, cpu in rows + [total]:
        print(f"{name:<10} {dt:8.2f} {args.n / dt:10.0f} {cpu:8.2f}")
    if "lpips" in args.metrics:
        print(
            f"\nlpips backbone: {'ImageNet-pretrained' if args.pretrained else 'random, seeded (pretrained_backbone: false; no weights offline)'}"
        )
    u = platform.uname()
    print(
        f"machine: {u.system} {u.release} {u.machine}, processor {platform.processor() or '?'}, "
        f"os.cpu_count()={os.cpu_count()}, --threads {args.threads}, device {args.device}, "
        f"torch {torch.__version__} default threads {torch.get_num_threads()}, "
        f"1-min load average {load_before:.2f} before / {os.getloadavg()[0]:.2f} after"
    )


if __name__ == "__main__":
    main()
