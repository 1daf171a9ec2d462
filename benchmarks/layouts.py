"""Wall time of one run of Algorithm 1 in the two layouts (`execution.layout`), side by side.

    PYTHONPATH=src .venv/bin/python benchmarks/layouts.py [--epochs 4] [--images 192] [--cores 2]

One metric (intensity), one seed, ResNet18 (the compare pass costs as much as a training pass, and an
epoch is long against a job's start-up), a synthetic set of `--images` training images in batches of 32,
one thread per job and `--cores` for Snakemake. Each layout runs in its own folder: first the data, the
ordering and the initialisation (not timed), then the run's distances (timed: every train, compare and
reduce job and the gather). The two runs' matrices and last checkpoints must be bitwise equal; the script
stops if they are not. Prints the wall times, parallel / inline, and `uptime`.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def config(layout, epochs, images, model="resnet18", device="cpu"):
    return {
        "study": "layouts",
        "data": {
            "source": "synthetic",
            "root": "results/layouts/data",
            "synthetic": {"n_train": images, "n_test": 64, "seed": 0},
        },
        "models": [model],
        "seeds": [0],
        "training": {
            "epochs": epochs,
            "batch_size": 32,
            "lr": 0.05,
            "momentum": 0.9,
            "weight_decay": 5.0e-4,
            # three phases where the run is long enough (a milestone must fall inside the run)
            "lr_milestones": [m for m in sorted({max(1, epochs // 3), max(1, 2 * epochs // 3)}) if m < epochs],
            "lr_gamma": 0.1,
            "augment": True,
            "dtype": "float32",
            "device": device,
            "threads": 1,
        },
        "metrics": ["intensity"],
        "outputs": {"keep_shards": False, "keep_checkpoints": False},
        "execution": {"layout": layout},
    }


def snakemake(work, cfg, cores, *targets):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "workflow" / "Snakefile"),
            "--directory",
            str(work),
            "--configfile",
            str(cfg),
            "--cores",
            str(cores),
            "--quiet",
            "all",
            "--",
            *targets,
        ],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )


def measure(epochs=4, images=192, cores=2, model="resnet18", device="cpu"):
    """({layout: seconds} of one run's Algorithm 1 jobs, run one layout after the other; the largest
    difference between the two layouts' matrices, 0.0 when bitwise equal; whether the last checkpoints
    are bytewise equal)."""
    seconds, outputs = {}, {}
    with tempfile.TemporaryDirectory(prefix="bestbatch-layouts-") as tmp:
        for layout in ("inline", "parallel"):
            work = Path(tmp) / layout
            work.mkdir()
            cfg = work / "config.yaml"
            cfg.write_text(yaml.safe_dump(config(layout, epochs, images, model, device)))
            run = f"results/layouts/{model}/seed_0"
            snakemake(work, cfg, cores, f"{run}/checkpoints/init.pt", "results/layouts/orderings/intensity.h5")
            t0 = time.perf_counter()
            snakemake(
                work, cfg, cores, f"{run}/intensity/distances.h5", f"{run}/intensity/checkpoints/epoch_{epochs}.pt"
            )
            seconds[layout] = time.perf_counter() - t0
            with h5py.File(work / run / "intensity" / "distances.h5", "r") as f:
                outputs[layout] = {name: f[name][()] for name in f}
            outputs[layout]["checkpoint"] = (
                work / run / "intensity" / "checkpoints" / f"epoch_{epochs}.pt"
            ).read_bytes()
    a, b = outputs["inline"], outputs["parallel"]
    same_checkpoint = a.pop("checkpoint") == b.pop("checkpoint")
    diff = 0.0 if a.keys() == b.keys() else float("inf")
    for key in set(a) & set(b):
        x, y = np.asarray(a[key]), np.asarray(b[key])
        if not np.array_equal(x, y):
            numeric = x.dtype.kind in "fiu" and x.shape == y.shape
            diff = max(diff, float(np.max(np.abs(x.astype(float) - y.astype(float)))) if numeric else float("inf"))
    return seconds, diff, same_checkpoint


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--images", type=int, default=192, help="training images (batches of 32)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--model", default="resnet18")
    a = ap.parse_args()
    s, diff, same_checkpoint = measure(a.epochs, a.images, a.cores, a.model)
    if diff != 0.0 or not same_checkpoint:
        raise SystemExit(f"the two layouts gave different results (largest difference {diff}): the benchmark is void")
    ratio = s["parallel"] / s["inline"]
    print(
        f"| {a.model}, one run ({a.epochs} epochs x {a.images // 32} batches of 32, 1 thread a job, --cores {a.cores}): "
        f"layout parallel / inline ({s['parallel']:.0f} s vs {s['inline']:.0f} s) | {ratio:.2f}x | <= 0.6 | "
        f"{'yes' if ratio <= 0.6 else 'no'} |"
    )
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
