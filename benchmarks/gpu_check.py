"""The figures of the GPU check (benchmarks/gpu_check.sh runs the CUDA tests first, then this).

    PYTHONPATH=src .venv/bin/python benchmarks/gpu_check.py [--out benchmarks/results.md] [--rehearse]

On the CUDA device: the per-epoch job / plain epoch ratio of ResNet18 and DPN92 with the shard written
(benchmarks/epoch.py), ResNet18's per-epoch job / plain epoch with the gradients held in memory and sketched
(outputs.gradients: memory, sketch; benchmarks/held.py, each job with its reduction, the sketch with its hash),
one run of a few ResNet18 epochs in each layout (benchmarks/layouts.py): their wall times and whether their
results agree bitwise, and the data path with the images on the GPU, in pinned host memory and mapped, against
torchvision's DataLoader, at 32, 64 and 128 px (benchmarks/placement.py, warm page cache). Writes the card's
name, the software and the figures between the `gpu_check` markers of --out (the rest of the file is kept) and
prints them.
--rehearse runs the same steps on the CPU with small_cnn and fewer images, to try the script where no GPU
is (it proves nothing about CUDA); its table says so.
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import epoch  # noqa: E402
import held  # noqa: E402
import layouts  # noqa: E402
import placement  # noqa: E402

START, END = "<!-- benchmarks/gpu_check.py: table -->", "<!-- /gpu_check -->"


def write_section(path, text):
    """Replace the section between the markers in `path` (append it, with the markers, when absent)."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    if START in old and END in old:
        head, rest = old.split(START, 1)
        new = head + START + "\n" + text + rest[rest.index(END) :]
    else:
        new = old.rstrip("\n") + f"\n\n## GPU check\n\n{START}\n{text}{END}\n"
    path.write_text(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "results.md"))
    ap.add_argument("--rehearse", action="store_true", help="on the CPU, small: try the script without a GPU")
    a = ap.parse_args()
    if not a.rehearse and not torch.cuda.is_available():
        raise SystemExit(
            "gpu_check: no CUDA device is visible (torch.cuda.is_available() is False); run it on a machine with "
            "an NVIDIA GPU and the project's environment (make env), or pass --rehearse to try it on the CPU"
        )
    device = torch.device("cpu" if a.rehearse else "cuda")
    t_start = time.perf_counter()
    if a.rehearse:
        card = (
            f"no GPU: a rehearsal on the CPU ({platform.processor() or platform.machine()}), proves nothing about CUDA"
        )
        models = {"small_cnn": (64, 2)}
        held_model = ("small_cnn", 64, 2)
        layout_args = dict(epochs=2, images=64, cores=2, model="small_cnn", device="cpu")
    else:
        props = torch.cuda.get_device_properties(0)
        card = f"{torch.cuda.get_device_name(0)} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
        models = {"resnet18": epoch.DEFAULTS["resnet18"], "dpn92": epoch.DEFAULTS["dpn92"]}
        held_model = ("resnet18", *held.DEFAULTS["resnet18"])
        layout_args = dict(epochs=3, images=2048, cores=4, model="resnet18", device="cuda")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bestbatch-gpu-check-") as tmp:
        for name, (bs, k) in models.items():
            r = epoch.bench_model(name, bs, k, 2, device, tmp)
            ratio = r["job"] / r["plain"]
            rows.append(
                (
                    f"{name}: per-epoch job / plain epoch, shard written ({bs} x {k} batches; {r['plain']:.2f} s vs "
                    f"{r['job']:.2f} s)",
                    f"{ratio:.2f}x",
                    "<= 2.1",
                    "yes" if ratio <= 2.1 else "no",
                )
            )
            print(rows[-1], flush=True)
        # the gradients held in memory and sketched (outputs.gradients), each against its own plain epoch
        name, bs, k = held_model
        r = held.bench_held(name, bs, k, 2, device, tmp)
        for measure, value, target, met in held.suite_rows(r, modes=("memory", "sketch")):
            rows.append((measure, value, target, "yes" if met else "no"))
            print(rows[-1], flush=True)
    # where the images live (data.placement): each placement against the DataLoader, mapped against device
    sizes, n, repeats = ((32,), 512, 1) if a.rehearse else ((32, 64, 128), 1024, 3)
    pr = placement.measure(sizes=sizes, n=n, device=device, repeats=repeats, min_seconds=0.2, cold=False)
    for measure, value, target, met in placement.suite_rows(pr):
        rows.append((measure, value, target, "" if met is None else "yes" if met else "no"))
        print(rows[-1], flush=True)
    seconds, diff, same_checkpoint = layouts.measure(**layout_args)
    ratio = seconds["parallel"] / seconds["inline"]
    rows.append(
        (
            f"{layout_args['model']}, one run of {layout_args['epochs']} epochs ({layout_args['images']} images), "
            f"layout parallel / inline on one device ({seconds['parallel']:.0f} s vs {seconds['inline']:.0f} s)",
            f"{ratio:.2f}x",
            "",
            "",
        )
    )
    rows.append(
        (
            "the two layouts' matrices and last checkpoints",
            "bitwise equal"
            if diff == 0.0 and same_checkpoint
            else f"differ (largest difference {diff:.3g}, checkpoints {'equal' if same_checkpoint else 'differ'})",
            "bitwise equal",
            "yes" if diff == 0.0 and same_checkpoint else "no",
        )
    )
    print(rows[-2], rows[-1], flush=True)
    lines = [
        f"Card: {card}. Measured {datetime.date.today().isoformat()} by `bash benchmarks/gpu_check.sh`"
        f"{' --rehearse' if a.rehearse else ''}; torch {torch.__version__}, {os.cpu_count()} CPU cores, "
        f"{time.perf_counter() - t_start:.0f} s for these figures, 1-minute load average {os.getloadavg()[0]:.2f}.",
        "",
        "| measure | value | target | met |",
        "|---|---|---|---|",
        *(f"| {m} | {v} | {t} | {ok} |" for m, v, t, ok in rows),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_section(a.out, text)


if __name__ == "__main__":
    main()
