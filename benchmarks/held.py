"""Where one epoch's gradients are held (outputs.gradients: shard, memory, sketch), measured side by side.

    PYTHONPATH=src .venv/bin/python benchmarks/held.py [--models small_cnn resnet18] [--repeats 5]
        [--batches 8] [--batch-size 64] [--threads 2] [--device cpu|cuda] [--eps 0.05 | --dim 4096]
        [--study] [--study-repeats 1] [--out table.md]

Per model, on the same initial weights and the same K fixed batches of random uint8 images (random labels),
with the same device-side data path as benchmarks/epoch.py (its helpers are reused), four variants:
  plain    the kuangliu/pytorch-cifar epoch (epoch.plain_epoch)
  shard    the per-epoch job as the workflow runs it by default: run_epoch into a ShardWriter + finish (fsync,
           rename); then, timed apart, the reduce_epoch job's reduction of that shard (reduce_shard, gram=True),
           warm (the shard was just written, so it sits in the page cache)
  memory   run_epoch into gradients.MemoryRows (K x P in host memory) + gradients.reduce_memory (gram=True):
           the whole job, no disk
  sketch   gradients.make_sketch_sink (a fresh sink each time, so the projection's hash, which SparseProjection
           caches on the CPU, is built in every timed run: a job pays it once per epoch; it is also reported
           apart) + run_epoch into it + gradients.reduce_sketch (gram=True)
All reductions on --reduce-threads threads (default 2: the reduce job's grant). What a job does in every mode
(the checkpoint, the epoch file's few KB, the test pass) is left out. Variants are interleaved in a rotating
order after one warm-up run each, and medians are reported.

Per mode: the per-epoch job / plain epoch (targets from issue 31: shard <= 2.05 for the job alone, memory
<= 2.05, sketch <= 2.1; memory's and sketch's jobs include their reduction), shard's job with its reduce job
beside it, the files the mode left in its own folder and the bytes this process wrote to storage during the
run (/proc/self/io write_bytes), the host memory the gradients are held in, read from the objects (memory:
sink.rows, K P values; sketch: sink.rows, K d float64, and its cached hash, s P int32 on the CPU; shard: the
writer's recycled host rows, on the CPU the rows g_k is computed into), a check of the results against the
shard path's (memory: bitwise; sketch: the largest relative error of the distances, beside the stated bound),
and the share of the machine's CPU that other processes took meanwhile (trust a row only when it is near 0%).
On the CPU (keep_freed_memory, as the per-epoch job does there) the sketch of a ResNet18 gradient costs about
0.8 s and its hash about 4 s: expect a sketch ratio far above 2.1 there.

--study also runs the tests' tiny study (.test/config/tiny.yaml with metrics [intensity, random] and seeds [0],
each mode in its own temporary folder) as `python -m snakemake -s workflow/Snakefile --directory <tmp> --cores 2
--configfile <tmp config>` with PYTHONPATH=src, as tests/conftest.py runs it, once per mode (--study-repeats:
more, in a rotating order, medians), and reports each mode's wall time and its ratio to shard's.
"""

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from bestbatch.distances import reduce_shard
from bestbatch.gradients import MODES, MemoryRows, make_sketch_sink, reduce_memory, reduce_sketch, sketch_settings
from bestbatch.shards import ShardWriter
from bestbatch.training import keep_freed_memory, pick_device, run_epoch, set_numerics

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import epoch  # noqa: E402

TARGETS = {"shard": 2.05, "memory": 2.05, "sketch": 2.1}  # per-epoch job / plain epoch (issue 31)
DEFAULTS = {"small_cnn": (64, 8), "resnet18": epoch.DEFAULTS["resnet18"]}  # (batch size, K batches)
TINY = REPO / ".test" / "config" / "tiny.yaml"
SAME = ("distance", "norm", "cosine", "full_norm", "layer_distance", "gram")


def written_bytes():
    """Bytes this process (all its threads) has caused to be written to storage so far, or None off Linux."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def files_bytes(folder):
    """The bytes of the files under `folder`."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def tensor_bytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors)


def writer_host_bytes(writer):
    """The host rows a finished ShardWriter allocated (its recycled pool; none handed out after finish)."""
    pool = getattr(writer, "free", None)
    return pool.qsize() * writer.row_bytes if pool is not None else float("nan")


def agreement(result, shard):
    """How a mode's reduction agrees with the shard path's: memory bitwise, sketch the largest relative error
    of the distances."""
    if "layer_distance" in result and all(np.array_equal(result[k], shard[k]) for k in SAME if k in shard):
        return 0.0  # bitwise
    return float(np.max(np.abs(result["distance"] / shard["distance"] - 1)))


def bench_held(name, batch_size, n_batches, repeats, device, tmpdir, *, eps=0.05, dim=None, threads=2):
    """The four variants of one model (see the module's docstring); medians of `repeats` interleaved runs."""
    t, images, labels, order, layout, n_params, meta, copy_base = epoch.bench_inputs(
        name, batch_size, n_batches, device
    )
    settings = sketch_settings(n_batches, eps=eps, dim=dim)
    folders = {m: Path(tmpdir) / f"{name}_{m}" for m in MODES}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    shard_path = folders["shard"] / "epoch_1.h5"
    args = epoch.epoch_args(t, 1)

    def fresh():
        net, net_opt = copy_base()
        epoch.sync(device)
        return net, net_opt

    def plain():
        net, opt = fresh()
        t0 = time.perf_counter()
        epoch.plain_epoch(net, opt, images, labels, order, 1, t)
        epoch.sync(device)
        return dict(job=time.perf_counter() - t0)

    def shard():
        net, opt = fresh()
        t0 = time.perf_counter()
        with ShardWriter(shard_path, n_batches, n_params, t["dtype"]) as writer:
            stats = run_epoch(net, opt, images, labels, order, **args, sink=writer, progress=False)
            writer.finish(layout, epoch.epoch_records(t, 1, stats, n_batches, meta))
        t1 = time.perf_counter()
        result = reduce_shard(shard_path, threads=threads, gram=True)
        t2 = time.perf_counter()
        return dict(job=t1 - t0, reduction=t2 - t1, held=writer_host_bytes(writer), result=result)

    def memory():
        net, opt = fresh()
        t0 = time.perf_counter()
        sink = MemoryRows(n_batches, n_params, t["dtype"])
        run_epoch(net, opt, images, labels, order, **args, sink=sink, progress=False)
        epoch.sync(device)
        t1 = time.perf_counter()
        result = reduce_memory(sink, layout, threads=threads, gram=True)
        t2 = time.perf_counter()
        return dict(job=t2 - t0, reduction=t2 - t1, held=sink.rows.nbytes, result=result)

    def sketch():
        net, opt = fresh()
        t0 = time.perf_counter()
        sink = make_sketch_sink(settings, n_params, n_batches, device)
        epoch.sync(device)
        th = time.perf_counter()
        run_epoch(net, opt, images, labels, order, **args, sink=sink, progress=False)
        epoch.sync(device)
        t1 = time.perf_counter()
        result = reduce_sketch(sink, threads=threads, gram=True)
        t2 = time.perf_counter()
        hash_bytes = tensor_bytes(sink.projection._codes.values())  # its cache: the hash kept (CPU only)
        return dict(
            job=t2 - t0, reduction=t2 - t1, hash=th - t0, held=sink.rows.nbytes, hash_bytes=hash_bytes, result=result
        )

    variants = {"plain": plain, "shard": shard, "memory": memory, "sketch": sketch}
    warm = {v: fn() for v, fn in variants.items()}  # warm-up: allocator, kernels, numba, thread pools
    exact = warm["shard"]["result"]
    agree = {m: agreement(warm[m]["result"], exact) for m in ("memory", "sketch")}
    runs = {v: [] for v in variants}
    names = list(variants)
    for r in range(repeats):
        for v in names[r % len(names) :] + names[: r % len(names)]:
            before, w0 = epoch.cpu_ticks(), written_bytes()
            out = variants[v]()
            w1 = written_bytes()
            out.pop("result", None)
            out["others"] = epoch.others_load(before, epoch.cpu_ticks())
            out["written"] = float("nan") if w0 is None or w1 is None else w1 - w0
            out["files"] = files_bytes(folders[v]) if v in folders else 0
            runs[v].append(out)

    def med(v, key):
        return statistics.median(x[key] for x in runs[v])

    plain_s = med("plain", "job")
    modes = {}
    for m in MODES:
        job = med(m, "job")
        total = statistics.median(x["job"] + (x["reduction"] if m == "shard" else 0.0) for x in runs[m])
        modes[m] = dict(
            job=job,
            ratio=job / plain_s,
            best_ratio=min(x["job"] for x in runs[m]) / min(x["job"] for x in runs["plain"]),
            reduction=med(m, "reduction"),
            total=total,
            total_ratio=total / plain_s,
            hash=med(m, "hash") if m == "sketch" else None,
            files=med(m, "files"),
            written=med(m, "written"),
            held=med(m, "held"),
            hash_bytes=med(m, "hash_bytes") if m == "sketch" else 0,
            agree=agree.get(m),
            others=statistics.median(x["others"] for x in runs[m] + runs["plain"]),
            spread=(min(x["job"] for x in runs[m]), max(x["job"] for x in runs[m])),
        )
    return dict(
        model=name,
        batch=batch_size,
        k=n_batches,
        params=n_params,
        plain=plain_s,
        plain_spread=(min(x["job"] for x in runs["plain"]), max(x["job"] for x in runs["plain"])),
        dim=settings["dim"],
        eps=settings["eps"],
        threads=threads,
        modes=modes,
    )


COLUMNS = [
    "model",
    "batch x K",
    "params",
    "mode",
    "plain s",
    "job s",
    "job/plain",
    "job/plain (best)",
    "target",
    "met",
    "reduction s",
    "job + reduce job s",
    "(job + reduce job)/plain",
    "hash s",
    "files MB",
    "written MB",
    "held MB",
    "hash MB",
    "vs shard",
    "others' CPU",
]


def mb(x):
    return "-" if x is None or x != x else f"{x / 1e6:.1f}"


def table_rows(results):
    for r in results:
        for m in MODES:
            x = r["modes"][m]
            if m == "memory":
                vs = "bitwise" if x["agree"] == 0.0 else f"differs ({x['agree']:.2g})"
            elif m == "sketch":
                vs = f"D within {x['agree']:.2%} (bound {r['eps']:.2%}, d = {r['dim']})"
            else:
                vs = ""
            yield [
                r["model"],
                f"{r['batch']} x {r['k']}",
                f"{r['params']:,}",
                m,
                f"{r['plain']:.2f}",
                f"{x['job']:.2f}",
                f"{x['ratio']:.2f}",
                f"{x['best_ratio']:.2f}",
                f"<= {TARGETS[m]}",
                "yes" if x["ratio"] <= TARGETS[m] else "no",
                f"{x['reduction']:.2f}" + ("" if m == "shard" else " (in the job)"),
                f"{x['total']:.2f}",
                f"{x['total_ratio']:.2f}",
                "-" if x["hash"] is None else f"{x['hash']:.2f}",
                mb(x["files"]),
                mb(x["written"]),
                mb(x["held"]),
                mb(x["hash_bytes"]) if m == "sketch" else "-",
                vs,
                f"{x['others']:.0%}",
            ]


def suite_rows(r, modes=MODES, targets=TARGETS):
    """(measure, value, target, met) rows of one bench_held result, for benchmarks/run.py and gpu_check.py."""
    head = f"{r['model']}: gradients held: "
    shape = f"{r['batch']} x {r['k']} batches; plain {r['plain']:.2f} s"
    for m in modes:
        x = r["modes"][m]
        if m == "shard":
            what = (
                f"shard, per-epoch job / plain epoch ({shape} vs {x['job']:.2f} s; with its reduce job "
                f"{x['total_ratio']:.2f}x; {mb(x['written'])} MB written"
            )
        elif m == "memory":
            what = (
                f"memory, per-epoch job with its reduction / plain epoch ({shape} vs {x['job']:.2f} s; "
                f"{mb(x['held'])} MB held in host memory, {mb(x['written'])} MB written"
            )
        else:
            what = (
                f"sketch (d = {r['dim']}), per-epoch job with its hash and reduction / plain epoch ({shape} vs "
                f"{x['job']:.2f} s, hash {x['hash']:.2f} s; D within {x['agree']:.1%} of exact, bound {r['eps']:.1%}"
            )
        limit = targets[m]
        yield (
            f"{head}{what}; others' CPU {x['others']:.0%})",
            f"{x['ratio']:.2f}x",
            f"<= {limit}",
            x["ratio"] <= limit,
        )


def study(tmpdir, modes=MODES, repeats=1, cores=2, log=print):
    """Wall seconds of the tiny study (metrics intensity and random, seed 0) in each mode, each in its own
    folder, run as tests/conftest.py runs the workflow; medians of `repeats` runs in a rotating order."""
    config = yaml.safe_load(TINY.read_text())
    config["metrics"], config["seeds"] = ["intensity", "random"], [0]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    seconds, jobs = {m: [] for m in modes}, {}
    names = list(modes)
    for r in range(repeats):
        for mode in names[r % len(names) :] + names[: r % len(names)]:
            work = Path(tempfile.mkdtemp(prefix=f"study-{mode}-", dir=tmpdir))
            cfg = work / "tiny.yaml"
            cfg.write_text(
                yaml.safe_dump(dict(config, outputs=dict(config["outputs"], gradients=mode)), sort_keys=False)
            )
            cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "--directory"]
            cmd += [str(work), "--cores", str(cores), "--configfile", str(cfg)]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
            dt = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"the tiny study in mode {mode} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}")
            done = re.findall(r"(\d+) of (\d+) steps", proc.stderr)
            jobs[mode] = int(done[-1][1]) if done else None
            seconds[mode].append(dt)
            log(f"tiny study, gradients {mode}: {dt:.1f} s, {jobs[mode]} jobs, load {os.getloadavg()[0]:.2f}")
    med = {m: statistics.median(s) for m, s in seconds.items()}
    return [dict(mode=m, seconds=med[m], ratio=med[m] / med["shard"], jobs=jobs[m], runs=seconds[m]) for m in modes]


STUDY_COLUMNS = ["tiny study (intensity, random; seed 0), --cores 2", "jobs", "wall s", "/ shard"]


def study_rows(results):
    for r in results:
        yield [f"gradients: {r['mode']}", str(r["jobs"]), f"{r['seconds']:.1f}", f"{r['ratio']:.2f}"]


def print_table(columns, rows):
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(x.rjust(w) for x, w in zip(row, widths)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["small_cnn", "resnet18"])
    ap.add_argument("--batches", type=int, help="K fixed batches per epoch (default: small_cnn 8, resnet18 3)")
    ap.add_argument("--batch-size", type=int, help="default per model: small_cnn 64, resnet18 64")
    ap.add_argument("--repeats", type=int, default=5, help="timed repetitions of each variant (after one warm-up)")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads (default 2)")
    ap.add_argument("--reduce-threads", type=int, default=2, help="threads of the reductions (default 2)")
    ap.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda where available, else cpu")
    ap.add_argument("--eps", type=float, default=0.05, help="the sketch's bound (gradients.sketch_settings)")
    ap.add_argument("--dim", type=int, help="the sketch's length instead of --eps")
    ap.add_argument("--study", action="store_true", help="also the tiny study's wall time in each mode")
    ap.add_argument("--study-repeats", type=int, default=1, help="runs of the tiny study per mode (default 1)")
    ap.add_argument("--tmpdir", help="where shards and studies go (default: the system temp dir)")
    ap.add_argument("--out", help="also write the tables as markdown to this file")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    device = pick_device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    set_numerics(device)
    if device.type == "cpu":
        keep_freed_memory()  # as the per-epoch job does on CPU
    u = platform.uname()
    gpu = f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""
    header = [
        f"machine: {u.system} {u.release} {u.machine}, {epoch.cpu_model()}, os.cpu_count()={os.cpu_count()}",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads (reductions {a.reduce_threads}), "
        f"device {device}{gpu}; load average at the start {os.getloadavg()[0]:.2f}",
    ]
    print("\n".join(header), flush=True)
    results, studies = [], None
    with tempfile.TemporaryDirectory(dir=a.tmpdir, prefix="bestbatch-held-") as tmp:
        for name in a.models:
            bs, k = DEFAULTS.get(name, epoch.DEFAULTS.get(name, (64, 4)))
            bs, k = a.batch_size or bs, a.batches or k
            t0 = time.perf_counter()
            r = bench_held(name, bs, k, a.repeats, device, tmp, eps=a.eps, dim=a.dim, threads=a.reduce_threads)
            spread = ", ".join(
                f"{m} {lo:.2f}-{hi:.2f}"
                for m, (lo, hi) in [("plain", r["plain_spread"])] + [(m, r["modes"][m]["spread"]) for m in MODES]
            )
            print(f"{name}: done in {time.perf_counter() - t0:.0f} s (min-max job s: {spread})", flush=True)
            results.append(r)
        if a.study:
            studies = study(tmp, repeats=a.study_repeats, log=lambda line: print(line, flush=True))
    rows = list(table_rows(results))
    print()
    print_table(COLUMNS, rows)
    blocks = [epoch.markdown(rows, COLUMNS)]
    if studies:
        srows = list(study_rows(studies))
        print()
        print_table(STUDY_COLUMNS, srows)
        blocks.append(epoch.markdown(srows, STUDY_COLUMNS))
    notes = (
        f"medians of {a.repeats} interleaved repetitions after one warm-up each; best = ratio of the fastest runs; "
        "job = the per-epoch job (shard: train + compare + shard written; memory, sketch: with their reduction, "
        "sketch with its hash build too); reduce job = reduce_shard of the warm shard, gram=True; files MB = "
        "what the mode left in its folder; written MB = /proc/self/io write_bytes during the run; held MB = "
        "the gradients' host memory (shard: the writer's host rows; memory: K P values; sketch: K d float64), "
        "hash MB = the sketch's cached hash; vs shard = the reduction against the shard path's; others' CPU = "
        "median share of the machine's CPU other processes used meanwhile. Load average at the end "
        f"{os.getloadavg()[0]:.2f}."
    )
    print("\n" + notes)
    if a.out:
        Path(a.out).write_text("\n\n".join(["\n".join(f"- {h}" for h in header), *blocks, notes]) + "\n")


if __name__ == "__main__":
    main()
