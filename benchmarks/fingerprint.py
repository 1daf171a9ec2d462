#!/usr/bin/env python3
"""What knowing an image folder by its content costs when Snakemake starts (bestbatch.fingerprint).

    python benchmarks/fingerprint.py [--images 100000] [--folder DIR]

Generates a folder of small PNGs (8 x 8, ten classes, 90% train / 10% test) once, then measures
  * scan_imagefolder with the digest cache: cold (every file read and hashed), warm (nothing read), after `touch`
    on every file (every file read again, found unchanged), and without content (names and sizes, as before);
  * `snakemake -n` of a one-epoch study on that folder (tiny_mlp, one metric), warm: the whole planning time.
Prints a table; the machine and its load (`uptime`) go with the figures.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from bestbatch.data import scan_imagefolder  # noqa: E402
from bestbatch.fingerprint import cache_path  # noqa: E402


def generate(root, n, classes=10):
    rng = np.random.default_rng(0)
    n_test = n // 10
    for split, count in (("train", n - n_test), ("test", n_test)):
        for c in range(classes):
            (root / split / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                root / split / f"c{i % classes}" / f"{i:06d}.png"
            )


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--folder", type=Path, default=None, help="where the images are generated (default: a temp dir)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bestbatch-fingerprint-"))
    root = args.folder or work / "images"
    if not (root / "train").is_dir():
        t, _ = timed(lambda: generate(root, args.images))
        print(f"generated {args.images} PNGs in {root} in {t:.0f} s")
    cache = cache_path(work / "state", root)
    rows = []
    t, scan = timed(lambda: scan_imagefolder(root, cache=cache))
    rows.append(("scan, cold cache (every file hashed)", t))
    rows.append(
        (
            "scan, warm cache (nothing read)",
            min(timed(lambda: scan_imagefolder(root, cache=cache))[0] for _ in range(3)),
        )
    )
    for path in root.rglob("*.png"):
        os.utime(path)
    t, touched = timed(lambda: scan_imagefolder(root, cache=cache))
    assert touched.fingerprints == scan.fingerprints
    rows.append(("scan after touch on every file (all re-hashed)", t))
    rows.append(
        ("scan without content (names, sizes, mtimes)", timed(lambda: scan_imagefolder(root, content=False))[0])
    )
    config = {
        "study": "fp",
        "data": {"source": "imagefolder", "root": str(root)},
        "models": ["tiny_mlp"],
        "seeds": [0],
        "training": {"epochs": 1, "batch_size": 256, "lr": 0.1},
        "metrics": ["intensity"],
    }
    (work / "fp.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "-n", "--quiet", "rules"]
    cmd += ["--configfile", str(work / "fp.yaml")]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    subprocess.run(cmd, check=True, capture_output=True, env=env)  # the study's own digest cache, filled
    t = min(timed(lambda: subprocess.run(cmd, check=True, capture_output=True, env=env))[0] for _ in range(3))
    rows.append(("`snakemake -n` of a one-epoch study, warm (all of planning)", t))
    print(f"\n{args.images} images of 8x8 px; {os.cpu_count()} cores; uptime: {os.getloadavg()}")
    print(f"{'what':<62} {'seconds':>8}")
    for what, seconds in rows:
        print(f"{what:<62} {seconds:>8.2f}")
    if args.folder is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
