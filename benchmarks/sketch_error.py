"""How far sketched distances are from the exact ones, measured on the same gradients (issue 31).

    PYTHONPATH=src .venv/bin/python benchmarks/sketch_error.py --compare EXACT_RESULTS SKETCH_RESULTS
    PYTHONPATH=src .venv/bin/python benchmarks/sketch_error.py --run [--model resnet18] [--images 256]
        [--batch-size 32] [--epochs 3] [--eps 0.05]

--compare: two results folders of one study, one run with the default outputs.gradients (exact) and one with
`sketch`. How the gradients are held changes no training step, so the two runs' checkpoints are the same
and each epoch's sketched distances estimate the exact distances of the same gradients. Per run (model, seed,
metric) and epoch: the largest relative error of D, |D_sketch / D - 1|, and the Spearman correlation of the two
within the epoch; the table gives, per run, the largest error over its epochs, the lowest correlation, and the
bound the pages print (distances.h5's `sketch` attribute).
--run: a short training run on random images (the model's own gradients, not a synthetic vector), each epoch's
g_k kept exactly (gradients.MemoryRows) and sketched (sketch.SketchSink with gradients.sketch_settings) from the
same pass; per epoch the same two figures, and the spread of the exact distances within the epoch (where it is
not much larger than the error, the sketch cannot keep their order). Prints markdown tables.
"""

import argparse
import sys
import time
from pathlib import Path

import h5py
import numpy as np


def spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def per_epoch(exact, sketched):
    """[(largest relative error of D, Spearman)] per epoch (rows) of two E x K distance matrices."""
    return [(float(np.max(np.abs(s / e - 1))), spearman(e, s)) for e, s in zip(exact, sketched)]


def compare(exact_dir, sketch_dir):
    import json

    rows = []
    for path in sorted(Path(sketch_dir).rglob("distances.h5")):
        twin = Path(exact_dir) / path.relative_to(sketch_dir)
        with h5py.File(path) as f, h5py.File(twin) as g:
            settings = json.loads(f.attrs["sketch"])
            assert "sketch" not in g.attrs, f"{twin} is sketched too"
            figures = per_epoch(g["distance"][:], f["distance"][:])
        errors, rhos = zip(*figures)
        rows.append((str(path.parent.relative_to(sketch_dir)), len(figures), max(errors), min(rhos), settings))
    if not rows:
        raise SystemExit(f"no sketched distances.h5 under {sketch_dir}")
    s = rows[0][4]
    print(f"sketch: d = {s['dim']}, seed {s['seed']}, bound {100 * s['eps']:.2f}% (probability {1 - s['delta']:g})\n")
    print("| run | epochs | largest relative error of D | lowest within-epoch Spearman | within the bound |")
    print("|---|---|---|---|---|")
    for run, n, err, rho, settings in rows:
        print(f"| {run} | {n} | {100 * err:.2f}% | {rho:.4f} | {'yes' if err <= settings['eps'] else 'no'} |")
    worst = max(r[2] for r in rows)
    print(f"\nall runs: largest error {100 * worst:.2f}% against the bound {100 * s['eps']:.2f}%")
    return rows


class Both:
    """A gradient sink that keeps every g_k exactly (MemoryRows) and sketches it (SketchSink) in the same pass."""

    def __init__(self, exact, sketch):
        self.exact, self.sketch = exact, sketch

    def row(self, k, device, dtype, numel):
        return self.exact.row(k, device, dtype, numel)

    def total(self, device, numel):
        return self.exact.total(device, numel)

    def put(self, k, g):
        self.exact.put(k, g)
        self.sketch.put(k, g)


def run(model, n_images, batch_size, epochs, eps, seed=0):
    import torch

    from bestbatch.augment import images_to_tensor
    from bestbatch.config import num_batches
    from bestbatch.distances import reduce_rows
    from bestbatch.gradients import MemoryRows, make_sketch_sink, reduce_sketch, sketch_settings
    from bestbatch.models import build_model
    from bestbatch.training import make_optimizer, parameter_layout, run_epoch

    rng = np.random.default_rng(seed)
    images = images_to_tensor(rng.integers(0, 256, (n_images, 32, 32, 3), dtype=np.uint8), "cpu")
    labels = torch.as_tensor(rng.integers(0, 10, n_images))
    order = rng.permutation(n_images)
    net = build_model(model, seed=seed)
    optimizer = make_optimizer(net, 0.1, 0.9, 5e-4)
    _, n_params = parameter_layout(net)
    k = num_batches(n_images, batch_size)
    settings = sketch_settings(k, eps=eps)
    print(f"{model}: P = {n_params:,}, K = {k}, sketch d = {settings['dim']:,}, bound {100 * settings['eps']:.2f}%")
    print(
        "\n| epoch | largest relative error of D | within-epoch Spearman | spread of exact D (std / mean) | "
        "mean train loss | seconds |"
    )
    print("|---|---|---|---|---|---|")
    figures = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        exact, sketched = MemoryRows(k, n_params, torch.float32), make_sketch_sink(settings, n_params, k, "cpu")
        stats = run_epoch(
            net,
            optimizer,
            images,
            labels,
            order,
            epoch=epoch,
            batch_size=batch_size,
            seed=seed,
            augment=True,
            dtype=torch.float32,
            sink=Both(exact, sketched),
            progress=False,
        )
        d_exact = reduce_rows(*exact.arrays())["distance"]
        d_sketch = reduce_sketch(sketched, threads=2, gram=False)["distance"]
        (err, rho) = per_epoch([d_exact], [d_sketch])[0]
        figures.append((err, rho))
        print(
            f"| {epoch} | {100 * err:.2f}% | {rho:.4f} | {100 * d_exact.std() / d_exact.mean():.2f}% | "
            f"{stats['train_loss'].mean():.3f} | "
            f"{time.perf_counter() - t0:.0f} |",
            flush=True,
        )
    print(f"\nlargest error {100 * max(e for e, _ in figures):.2f}% against the bound {100 * settings['eps']:.2f}%")
    return figures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", nargs=2, metavar=("EXACT_RESULTS", "SKETCH_RESULTS"))
    ap.add_argument("--run", action="store_true")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--eps", type=float, default=0.05)
    a = ap.parse_args()
    if bool(a.compare) == a.run:
        ap.error("give --compare EXACT SKETCH or --run")
    if a.compare:
        compare(*a.compare)
    else:
        run(a.model, a.images, a.batch_size, a.epochs, a.eps)


if __name__ == "__main__":
    sys.exit(main())
