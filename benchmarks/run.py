"""The benchmark suite: every figure a ratio measured side by side in one run, in one table.

    PYTHONPATH=src .venv/bin/python benchmarks/run.py [--quick] [--out benchmarks/results.md]

Runs on the CPU by default and on CUDA when a GPU is present (DPN92 only there). Rows:
  per-epoch job / plain training epoch   (small CNN, ResNet18; DPN92 on a GPU)      target <= 2.05 (GPU 2.1)
  gradients held: shard / memory / sketch (benchmarks/held.py; small CNN, ResNet18), per-epoch job / plain epoch,
    the three and their plain epoch measured in the same run: shard (the job alone; with its reduce job beside it)
    target <= 2.05 (GPU 2.1), memory (with its reduction) target <= 2.05, sketch (with its hash build and
    reduction) target <= 2.1; --quick: small CNN only, 4 batches
  device data path / torchvision DataLoader, images per second                      target >= 1.5
  where the images live (benchmarks/placement.py; data.placement device, host, mapped), at 32, 64 and 128 px,
    images per second of the data path: each placement / ImageFolder + DataLoader (2 workers, PNGs, the same
    augmentation and order) target >= 1.5; mapped / device target >= 0.8 (warm page cache); mapped / device with a
    small net's step on every batch (no target: the prefetch's overlap)
  reduction / raw sequential read of the same shard, MB/s                            target >= 0.7
  reduction with the batch Gram matrix / the same raw read (ResNet18; DPN92 on a GPU) target >= 0.5
  the Gram matrix at the paper's K = 195 (benchmarks/epoch.py --paper-gram): reduction with / without it, and
    the estimate it gives for one DPN92 epoch on 2 threads (no target: a cost to know)
  orderings of 50,000 images, per metric and in total, seconds                       target <= 60 s
  `snakemake -n` of ours / of a floor Snakefile with the same jobs (benchmarks/dagfloor.py), CPU seconds,
    for the paper (config/config.yaml, about 1,500 jobs) and its grid of 2 models x 3 seeds (about 9,000),
    in both layouts; both sides' seconds, which vary with the machine and the day, beside it target <= 1.5
  one run in the parallel layout / the inline layout, wall time (benchmarks/layouts.py) target <= 0.6
The table replaces the one between the markers in the output file; the notes around it are kept.
"""

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from bestbatch.training import keep_freed_memory

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dagfloor  # noqa: E402
import datapath  # noqa: E402
import epoch  # noqa: E402
import held  # noqa: E402
import layouts  # noqa: E402
import orderings  # noqa: E402
import placement  # noqa: E402

DAG_NAMES = {"paper": "config/config.yaml", "grid": "2 models x 3 seeds"}
TABLE_START, TABLE_END = "<!-- benchmarks/run.py: table -->", "<!-- /table -->"


def write_table(path, text):
    """Replace the table between the markers in `path`, keeping the notes around it (or write it whole)."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    if TABLE_START in old and TABLE_END in old:
        head, rest = old.split(TABLE_START, 1)
        text = head + TABLE_START + "\n" + text + rest[rest.index(TABLE_END) :]
    path.write_text(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and images (a smoke run, not for the README)")
    ap.add_argument("--out", default=str(HERE / "results.md"), help="markdown table (default benchmarks/results.md)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        keep_freed_memory()  # as the per-epoch job does on CPU
    repeats = 2 if a.quick else 5
    u = platform.uname()
    machine = (
        f"{u.system} {u.release} {u.machine}, {epoch.cpu_model()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {a.threads} threads, device {device}"
        + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
    )
    print(machine, flush=True)
    rows = []  # (measure, value, target, met)

    models = ["small_cnn", "resnet18"] + (["dpn92"] if device.type == "cuda" else [])
    with tempfile.TemporaryDirectory(prefix="bestbatch-bench-") as tmp:
        for name in models:
            bs, k = epoch.DEFAULTS[name]
            r = epoch.bench_model(name, bs, k, repeats, device, tmp)
            limit = 2.1 if device.type == "cuda" else 2.05
            ratio = r["job"] / r["plain"]
            rows.append(
                (
                    f"{name}: per-epoch job / plain epoch ({bs} x {k} batches; {r['plain']:.2f} s vs {r['job']:.2f} s)",
                    f"{ratio:.2f}x",
                    f"<= {limit}",
                    ratio <= limit,
                )
            )
            red = r["red_warm"] / r["raw_warm"]
            rows.append(
                (
                    f"{name}: reduction / raw read ({r['shard_mb']:.0f} MB shard; {r['red_warm']:.0f} vs "
                    f"{r['raw_warm']:.0f} MB/s)",
                    f"{red:.2f}x",
                    ">= 0.7",
                    red >= 0.7,
                )
            )
            print(rows[-2], rows[-1], flush=True)
            if name != "small_cnn":  # a shard of one block (numpy, one thread): its ratios measure call overhead
                gram = r["gram_warm"] / r["raw_warm"]
                rows.append(
                    (
                        f"{name}: reduction with gram / raw read ({r['shard_mb']:.0f} MB shard, K = {k}; "
                        f"{r['gram_warm']:.0f} vs {r['raw_warm']:.0f} MB/s, without gram {r['red_warm']:.0f} MB/s; "
                        f"{r['reduce_threads']} threads)",
                        f"{gram:.2f}x",
                        ">= 0.5",
                        gram >= 0.5,
                    )
                )
                print(rows[-1], flush=True)
        # where the gradients are held: shard / memory / sketch, each against a plain epoch of the same run
        held_models = {"small_cnn": (64, 4)} if a.quick else held.DEFAULTS
        targets = dict(held.TARGETS, shard=2.1) if device.type == "cuda" else held.TARGETS
        for name, (bs, k) in held_models.items():
            r = held.bench_held(name, bs, k, repeats, device, tmp)
            for row in held.suite_rows(r, targets=targets):
                rows.append(row)
                print(row, flush=True)
        pg = epoch.paper_gram(tmp, 1 << (20 if a.quick else 21), repeats=repeats if a.quick else 3)
        s, d = pg["seconds"], pg["dpn_seconds"]
        rows.append(
            (
                f"K = {pg['k']} batches, P = {pg['params']:,} ({pg['shard_gb']:.2f} GB shard, warm): reduction with gram / "
                f"without ({s['gram']:.2f} s vs {s['red']:.2f} s; {pg['threads']} threads, OpenBLAS 1 a call)",
                f"{pg['gram_over_red']:.2f}x",
                "",
                None,
            )
        )
        rows.append(
            (
                f"DPN92 epoch ({pg['dpn_gb']:.1f} GB shard, K = {pg['k']}), reduction with gram on {pg['threads']} threads: "
                f"an estimate from the row above, linear in P (without gram {d['red']:.0f} s)",
                f"{d['gram']:.0f} s",
                "",
                None,
            )
        )
        print(rows[-2], rows[-1], flush=True)
    n_dp = 5000 if a.quick else 20000
    dev, dl = datapath.measure(n_dp, 256, a.threads, device, repeats=repeats)
    rows.append(
        (
            f"data path / DataLoader ({a.threads} workers), {n_dp} images ({dev:,.0f} vs {dl:,.0f} img/s)",
            f"{dev / dl:.2f}x",
            ">= 1.5",
            dev / dl >= 1.5,
        )
    )
    print(rows[-1], flush=True)
    pr = placement.measure(
        n=2048 if a.quick else 4096,
        workers=2,  # the baseline, whatever the machine's cores
        device=device,
        repeats=repeats,
        min_seconds=0.2 if a.quick else 0.3,
        cold=False,
        log=lambda line: print(line, flush=True),
    )
    for row in placement.suite_rows(pr):
        rows.append(row)
        print(row, flush=True)
    n_ord = 10000 if a.quick else 50000
    ords = orderings.measure(n_ord, a.threads, str(device))
    for name, secs, _ in ords:
        rows.append((f"ordering {name}, {n_ord} images", f"{secs:.1f} s", "", None))
    total = sum(s for _, s, _ in ords)
    rows.append(
        (
            f"all orderings, {n_ord} images (LPIPS with a random backbone: no weights offline)",
            f"{total:.1f} s",
            "<= 60 s",
            total <= 60 if n_ord == 50000 else None,
        )
    )
    # Planning the DAG: ours against a floor with the same jobs, interleaved (benchmarks/dagfloor.py).
    cases = [(name, layout) for name in ("paper", "grid") for layout in ("inline", "parallel")]
    for r in dagfloor.compare(cases, repeats=1 if a.quick else 3, log=lambda line: print(line, flush=True)):
        rows.append(
            (
                f"snakemake -n, {r['config']} DAG ({DAG_NAMES[r['config']]}, {r['layout']} layout, {r['jobs']} jobs): "
                f"ours / floor, CPU seconds ({r['ours_cpu']:.1f} s vs {r['floor_cpu']:.1f} s; wall {r['ours']:.1f} s vs "
                f"{r['floor']:.1f} s)",
                f"{r['ratio']:.2f}x",
                "<= 1.5",
                r["ratio"] <= 1.5,
            )
        )
        print(rows[-1], flush=True)
    if device.type == "cpu":  # on a GPU machine benchmarks/gpu_check.py measures the layouts on the device
        args = dict(epochs=2, images=96) if a.quick else dict(epochs=4, images=192)
        seconds, diff, same_checkpoint = layouts.measure(**args, cores=2)
        if diff != 0.0 or not same_checkpoint:
            raise SystemExit(f"the two layouts gave different results (largest difference {diff})")
        ratio = seconds["parallel"] / seconds["inline"]
        rows.append(
            (
                f"resnet18, one run ({args['epochs']} epochs x {args['images'] // 32} batches, 1 thread a job, "
                f"--cores 2): layout parallel / inline ({seconds['parallel']:.0f} s vs {seconds['inline']:.0f} s; "
                f"results bitwise equal)",
                f"{ratio:.2f}x",
                "<= 0.6",
                ratio <= 0.6,
            )
        )

    load = os.getloadavg()[0]
    lines = [
        f"Machine: {machine}. 1-minute load average at the end: {load:.2f}.",
        "",
        "| measure | value | target | met |",
        "|---|---|---|---|",
    ]
    lines += [f"| {m} | {v} | {t} | {'' if ok is None else ('yes' if ok else 'no')} |" for m, v, t, ok in rows]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    write_table(a.out, text)


if __name__ == "__main__":
    main()
