"""What one per-epoch job of Algorithm 1 costs next to a plain training epoch, and its reduction next to a raw read.

    PYTHONPATH=src .venv/bin/python benchmarks/epoch.py [--models small_cnn resnet18] [--repeats 5]
        [--threads 2] [--device cpu] [--mallopt] [--out table.md]
    PYTHONPATH=src .venv/bin/python benchmarks/epoch.py --reduce-only [--models small_cnn resnet18] [--batches 3]
    PYTHONPATH=src .venv/bin/python benchmarks/epoch.py --paper-gram [--params 2097152] [--repeats 3]

Per model, on the same initial weights and the same K fixed batches of random uint8 images (random
labels), with the same device-side data path (make_batch):
  plain      the kuangliu/pytorch-cifar step (forward, cross-entropy, backward, SGD momentum 0.9,
             wd 5e-4); loss and hits kept on the device like run_epoch, so only the algorithm differs
  job        run_epoch into a ShardWriter sink + shard.finish (fsync, rename): train + compare + shard
  no-write   run_epoch into a KeepLast sink (keeps nothing): the shard write's share is job - no-write
Then, on that shard: reduce_shard without and with the batch Gram matrix (gram=True, what the workflow runs
with outputs.gram: true) against a raw sequential read of the same file (plain Python readinto of 16 MiB
blocks), all after a warm-up read so the file sits in the page cache; the read runs on one thread, the
reductions on --reduce-threads threads (default 2: the compiled passes take parameter blocks in parallel, as
many as the reduce job is granted). MB/s are the shard file's bytes over the time for all three, so
reduce/raw is a ratio of times. The "cold" columns repeat the three after evicting only this shard from the
page cache (posix_fadvise DONTNEED), which is what a reduction job on another node, or after the shard fell
out of the cache, sees.
Variants are interleaved, in a rotating order, and medians are reported, with the ratio of the
fastest runs ("best"), the minor page faults per batch, and the share of the machine's CPU that other
processes took meanwhile ("others' CPU": on a shared machine, trust a row only when it is near 0%).
--mallopt tunes glibc's malloc first (see its help): the fix for the job's page faults on CPU.
The reduction is reduce_shard as the workflow runs it: with the distance of every parameter tensor of the
shard's layout (checked against the float64 brute force, per tensor too). --reduce-only measures that
row alone, on a shard of random rows in the model's layout written by ShardWriter, without training.
--paper-gram measures the Gram matrix's cost at the paper's K = 195 batches (the cost grows with K: K / 2
multiply-adds per value read): one shard of 195 random float32 rows of --params values, reduced without and
with gram on --reduce-threads threads, warm, and what that implies for a DPN92 epoch (an estimate, linear in P).
"""

import argparse
import copy
import ctypes
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from bestbatch.augment import images_to_tensor, make_batch
from bestbatch.config import num_batches
from bestbatch.distances import batch_distances, reduce_shard
from bestbatch.formats import EpochRecords, provenance, shard_rows
from bestbatch.models import build_model
from bestbatch.resources import MODEL_COST
from bestbatch.sets import implied
from bestbatch.shards import ShardWriter, shard_bytes
from bestbatch.training import DTYPES, KeepLast, make_optimizer, parameter_layout, pick_device, run_epoch, set_numerics

DEFAULTS = {"small_cnn": (256, 8), "resnet18": (64, 3), "dpn92": (32, 2)}  # (batch size, K batches)
RAW_BLOCK = 16 << 20


def training_config(batch_size):
    """The paper's settings for one first-phase epoch; dtype is a torch dtype (the config's "float32")."""
    return dict(
        batch_size=batch_size, seed=0, augment=True, dtype=DTYPES["float32"], lr=0.1, momentum=0.9, weight_decay=5e-4
    )


def epoch_args(t, epoch):
    """run_epoch's keyword arguments for epoch `epoch` of training config `t`."""
    return dict(epoch=epoch, batch_size=t["batch_size"], seed=t["seed"], augment=t["augment"], dtype=t["dtype"])


def epoch_records(t, epoch, stats, n_batches, meta):
    """The records a shard carries; no test pass and no ordering here (the scores are zeros)."""
    zeros = np.zeros(n_batches)
    return EpochRecords(
        epoch=epoch,
        lr=t["lr"],
        phase=1,
        metric="benchmark",
        test_loss=float("nan"),
        test_acc=float("nan"),
        provenance=meta,
        **stats,
        batch_score_min=zeros,
        batch_score_mean=zeros,
        batch_score_max=zeros,
    )


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_epoch(net, optimizer, images, labels, order, epoch, t):
    """The kuangliu/pytorch-cifar training loop over the same fixed batches."""
    bs = t["batch_size"]
    n_batches = num_batches(len(order), bs)
    order = torch.as_tensor(order, device=images.device)
    losses = torch.empty(n_batches, dtype=torch.float64, device=images.device)
    correct = torch.empty(n_batches, dtype=torch.float64, device=images.device)
    net.train()
    for k in range(n_batches):
        idx = order[k * bs : (k + 1) * bs]
        x = make_batch(images, idx, t["seed"], epoch, k, t["augment"], t["dtype"])
        y = labels[idx]
        optimizer.zero_grad(set_to_none=True)
        out = net(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        optimizer.step()
        losses[k] = loss.detach()
        correct[k] = (out.argmax(1) == y).sum()
    return losses.cpu().numpy(), correct.cpu().numpy() / bs


def raw_read(path):
    """Read the whole file sequentially in large blocks into one reused buffer; returns bytes read."""
    buf = bytearray(RAW_BLOCK)
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(view)
            if not n:
                return total
            total += n


def evict(path):
    """Drop this one file's pages from the page cache (fsync first: dirty pages are not dropped; a shard was
    fsynced by ShardWriter.finish already)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cpu_ticks():
    """(busy ticks of the whole machine, ticks of this process), or None off Linux."""
    try:
        busy = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return sum(busy) - busy[3] - busy[4], sum(busy), int(own[11]) + int(own[12])
    except (OSError, ValueError, IndexError):
        return None


def others_load(before, after):
    """Share of the machine's CPU time that other processes used in between (0..1)."""
    if before is None or after is None or after[1] == before[1]:
        return float("nan")
    return max(0.0, ((after[0] - before[0]) - (after[2] - before[2])) / (after[1] - before[1]))


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def bench_inputs(name, batch_size, n_batches, device):
    """What every variant of one model's benchmark shares: the training config t, K fixed batches of random uint8
    images and labels with their order, the network's initial weights `base`, its layout and P, the records'
    provenance, and fresh() -> (a copy of base, its optimizer)."""
    t = training_config(batch_size)
    rng = np.random.default_rng(0)
    n = batch_size * n_batches
    images = images_to_tensor(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), device)
    labels = torch.as_tensor(rng.integers(0, 10, n), device=device)
    order = rng.permutation(n)
    base = build_model(name, seed=0).to(device=device, dtype=t["dtype"])
    layout, n_params = parameter_layout(base)
    meta = json.dumps(provenance("benchmark", str(device), model=name))

    def fresh():
        net = copy.deepcopy(base)
        return net, make_optimizer(net, t["lr"], t["momentum"], t["weight_decay"])

    return t, images, labels, order, layout, n_params, meta, fresh


def bench_model(name, batch_size, n_batches, repeats, device, tmpdir, reduce_threads=2):
    t, images, labels, order, layout, n_params, meta, fresh = bench_inputs(name, batch_size, n_batches, device)
    shard = Path(tmpdir) / f"{name}_epoch_1.h5"
    epoch = 1

    def plain():
        net, opt = fresh()
        sync(device)
        t0 = time.perf_counter()
        plain_epoch(net, opt, images, labels, order, epoch, t)
        sync(device)
        return time.perf_counter() - t0, None

    def no_write():
        net, opt = fresh()
        sync(device)
        t0 = time.perf_counter()
        run_epoch(net, opt, images, labels, order, **epoch_args(t, epoch), sink=KeepLast(), progress=False)
        return time.perf_counter() - t0, None

    def job():
        net, opt = fresh()
        sync(device)
        t0 = time.perf_counter()
        with ShardWriter(shard, n_batches, n_params, t["dtype"]) as writer:
            stats = run_epoch(net, opt, images, labels, order, **epoch_args(t, epoch), sink=writer, progress=False)
            t1 = time.perf_counter()
            writer.finish(layout, epoch_records(t, epoch, stats, n_batches, meta))  # the sum run_epoch kept
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1

    variants = {"plain": plain, "no_write": no_write, "job": job}
    for fn in variants.values():  # warm-up: allocator, kernels, thread pools; also leaves a shard
        fn()
    times = {v: [] for v in variants}
    finish, others = [], []
    faults = {v: [] for v in variants}
    names = list(variants)
    for r in range(repeats):
        for v in names[r % 3 :] + names[: r % 3]:
            before, f0 = cpu_ticks(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            dt, fin = variants[v]()
            others.append(others_load(before, cpu_ticks()))
            faults[v].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n_batches)
            times[v].append(dt)
            if fin is not None:
                finish.append(fin)

    mbs = bench_reduction(shard, repeats, layout, reduce_threads)
    med = {v: statistics.median(x) for v, x in times.items()}
    return dict(
        model=name,
        batch=batch_size,
        k=n_batches,
        params=n_params,
        plain=med["plain"],
        no_write=med["no_write"],
        job=med["job"],
        finish=statistics.median(finish),
        **mbs,
        best_ratio=min(times["job"]) / min(times["plain"]),
        others=statistics.median(others),
        faults={v: statistics.median(x) for v, x in faults.items()},
        spread={v: (min(x), max(x)) for v, x in times.items()},
    )


def gram_error(gram, reference):
    """max |G - G_ref| / (||g_i|| ||g_j||)."""
    norm = np.sqrt(np.diagonal(reference))
    return float(np.max(np.abs(gram - reference) / np.outer(norm, norm)))


def bench_reduction(shard, repeats, layout, threads=2):
    """reduce_shard (per parameter tensor of `layout`, as the workflow runs it) without and with the Gram matrix,
    on `threads` threads, against a raw read of the same shard, warm (page cache) and cold (evicted): MB/s of the
    shard file, medians, interleaved in a rotating order."""
    offsets = [offset for _, _, offset in layout]
    with shard_rows(shard) as (rows, _):
        grad_bytes = rows.size * rows.dtype.itemsize
        reference = batch_distances(rows[:], offsets) if grad_bytes <= (1 << 30) else None
    file_bytes = shard.stat().st_size
    raw_read(shard)
    # warm-up (numba's passes), and a check against the float64 brute force, per tensor and the Gram matrix too
    result = reduce_shard(shard, threads=threads)
    with_gram = reduce_shard(shard, threads=threads, gram=True)
    assert result["layer_distance"].shape == (len(result["distance"]), len(layout))
    assert list(result["layer_name"]) == [name for name, _, _ in layout]
    for name in ("distance", "norm", "cosine", "full_norm", "layer_distance"):
        assert np.array_equal(result[name], with_gram[name]), name
    if reference is not None:
        np.testing.assert_allclose(result["distance"], reference["distance"], rtol=1e-9)
        np.testing.assert_allclose(result["layer_distance"], reference["layer_distance"], rtol=1e-9, atol=0)
        assert gram_error(with_gram["gram"], reference["gram"]) <= 1e-12

    def read_all():
        assert raw_read(shard) == file_bytes

    variants = {
        "red": lambda: reduce_shard(shard, threads=threads),
        "gram": lambda: reduce_shard(shard, threads=threads, gram=True),
        "raw": read_all,
    }
    names = list(variants)
    times = {v: {"warm": [], "cold": []} for v in names}
    for r in range(max(5, repeats)):
        for cache in ("warm", "cold"):
            for v in names[r % 3 :] + names[: r % 3]:
                if cache == "cold":
                    evict(shard)
                t0 = time.perf_counter()
                variants[v]()
                times[v][cache].append(time.perf_counter() - t0)
    out = {f"{v}_{c}": file_bytes / 1e6 / statistics.median(times[v][c]) for v in names for c in ("warm", "cold")}
    best = {f"best_{v}_ratio": min(times["raw"]["warm"]) / min(times[v]["warm"]) for v in ("red", "gram")}
    return dict(out, **best, shard_mb=file_bytes / 1e6, tensors=len(layout), reduce_threads=threads)


def paper_gram(tmpdir, n_params=1 << 21, k_rows=195, repeats=3, threads=2):
    """The Gram matrix's cost at the paper's K: a shard of k_rows random float32 rows of n_params values (one
    tensor) written by ShardWriter, reduced warm without and with gram on `threads` threads beside a raw read,
    interleaved in a rotating order (medians); and, scaled linearly in P (the work per value read is fixed for a
    given K), an estimate for one DPN92 epoch's shard (K = 195, P from bestbatch.resources, float32).

    At K = 195 (> GRAM_PAIRS_ROWS) the Gram matrix is BLAS products, which the reduction runs on one OpenBLAS
    thread each (distances._one_blas_thread) while its own threads split the blocks."""
    shard = Path(tmpdir) / f"paper_k{k_rows}.h5"
    rng = np.random.default_rng(0)
    base = rng.standard_normal(n_params, dtype=np.float32)
    scales = rng.uniform(0.5, 2.0, k_rows).astype(np.float32)
    with ShardWriter(shard, k_rows, n_params, torch.float32) as writer:
        total = np.zeros(n_params)
        for k in range(k_rows):
            row = writer.row(k, torch.device("cpu"), torch.float32, n_params)
            np.multiply(np.roll(base, 1 + 9973 * k), scales[k], out=row.numpy())  # distinct rows, cheaply
            total += row.numpy()
            writer.put(k, row)
        stats = dict(train_loss=np.zeros(k_rows), train_acc=np.zeros(k_rows))
        writer.finish([("w", (n_params,), 0)], epoch_records(training_config(256), 1, stats, k_rows, "{}"), total)
    file_bytes = shard.stat().st_size
    raw_read(shard)
    plain, with_gram = reduce_shard(shard, threads=threads), reduce_shard(shard, threads=threads, gram=True)
    implied_values = implied(with_gram["gram"])  # a check at this size, where a brute force would need 3 GB
    np.testing.assert_allclose(implied_values["norm"], plain["norm"], rtol=1e-12)
    np.testing.assert_allclose(implied_values["distance"], plain["distance"], rtol=1e-8)
    variants = {
        "red": lambda: reduce_shard(shard, threads=threads),
        "gram": lambda: reduce_shard(shard, threads=threads, gram=True),
        "raw": lambda: raw_read(shard),
    }
    names = list(variants)
    times = {v: [] for v in names}
    before = cpu_ticks()
    for r in range(repeats):
        for v in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            variants[v]()
            times[v].append(time.perf_counter() - t0)
    others = others_load(before, cpu_ticks())
    shard.unlink()
    seconds = {v: statistics.median(x) for v, x in times.items()}
    dpn_params = MODEL_COST["dpn92"][0]
    dpn_bytes = shard_bytes(k_rows, dpn_params, torch.float32)
    return dict(
        k=k_rows,
        params=n_params,
        threads=threads,
        repeats=repeats,
        shard_gb=file_bytes / 1e9,
        seconds=seconds,
        gbs={v: file_bytes / 1e9 / t for v, t in seconds.items()},
        gram_over_red=seconds["gram"] / seconds["red"],
        dpn_params=dpn_params,
        dpn_gb=dpn_bytes / 1e9,
        dpn_seconds={v: t * dpn_bytes / file_bytes for v, t in seconds.items()},
        others=others,
    )


def paper_gram_lines(r):
    """The paper-shape measurement in a few lines of text."""
    s, g, d = r["seconds"], r["gbs"], r["dpn_seconds"]
    lines = [
        f"paper shape: K = {r['k']}, P = {r['params']:,} float32 ({r['shard_gb']:.2f} GB shard, warm), "
        f"{r['threads']} reduction threads (OpenBLAS 1 thread a call), medians of {r['repeats']} "
        f"interleaved runs, others' CPU {r['others']:.0%}",
        f"  reduction without gram {s['red']:.2f} s ({g['red']:.2f} GB/s), with gram {s['gram']:.2f} s "
        f"({g['gram']:.2f} GB/s): {r['gram_over_red']:.2f}x; raw read {s['raw']:.2f} s ({g['raw']:.2f} GB/s)",
    ]
    lines.append(
        f"  estimate for a DPN92 epoch (K = {r['k']}, P = {r['dpn_params']:,}, {r['dpn_gb']:.1f} GB, linear in P, "
        f"warm): without gram {d['red']:.0f} s, with gram {d['gram']:.0f} s" + f" on {r['threads']} threads"
    )
    return lines


def reduce_only(name, batch_size, n_batches, repeats, tmpdir, threads=2):
    """The reduction row alone, without training: a shard of K random float32 rows laid out as the model's
    parameter tensors, written by ShardWriter as an epoch job writes it, then bench_reduction."""
    layout, n_params = parameter_layout(build_model(name, seed=0))
    shard = Path(tmpdir) / f"{name}_reduce.h5"
    rng = np.random.default_rng(0)
    with ShardWriter(shard, n_batches, n_params, torch.float32) as writer:
        total = np.zeros(n_params)
        for k in range(n_batches):
            row = writer.row(k, torch.device("cpu"), torch.float32, n_params)
            row.copy_(torch.from_numpy(rng.standard_normal(n_params, dtype=np.float32)))
            total += row.numpy()
            writer.put(k, row)
        t = training_config(batch_size)
        stats = dict(train_loss=np.zeros(n_batches), train_acc=np.zeros(n_batches))
        writer.finish(layout, epoch_records(t, 1, stats, n_batches, "{}"), gradient_sum=total)
    before = cpu_ticks()
    r = bench_reduction(shard, repeats, layout, threads)
    return dict(r, model=name, batch=batch_size, k=n_batches, params=n_params, others=others_load(before, cpu_ticks()))


REDUCE_COLUMNS = [
    "model",
    "batch x K",
    "params",
    "tensors",
    "shard MB",
    "reduce MB/s",
    "raw read MB/s",
    "reduce/raw",
    "reduce/raw (best)",
    "reduce+gram MB/s",
    "gram/raw",
    "gram/raw (best)",
    "gram/reduce",
    "cold reduce MB/s",
    "cold raw MB/s",
    "cold reduce/raw",
    "cold gram/raw",
    "others' CPU",
]


def reduce_rows_table(results):
    for r in results:
        yield [
            r["model"],
            f"{r['batch']} x {r['k']}",
            f"{r['params']:,}",
            str(r["tensors"]),
            f"{r['shard_mb']:.1f}",
            f"{r['red_warm']:.0f}",
            f"{r['raw_warm']:.0f}",
            f"{r['red_warm'] / r['raw_warm']:.2f}",
            f"{r['best_red_ratio']:.2f}",
            f"{r['gram_warm']:.0f}",
            f"{r['gram_warm'] / r['raw_warm']:.2f}",
            f"{r['best_gram_ratio']:.2f}",
            f"{r['gram_warm'] / r['red_warm']:.2f}",
            f"{r['red_cold']:.0f}",
            f"{r['raw_cold']:.0f}",
            f"{r['red_cold'] / r['raw_cold']:.2f}",
            f"{r['gram_cold'] / r['raw_cold']:.2f}",
            f"{r['others']:.0%}",
        ]


COLUMNS = [
    "model",
    "batch x K",
    "params",
    "plain s",
    "job (no write) s",
    "job s",
    "of which finish s",
    "job/plain",
    "job/plain (best)",
    "no-write/plain",
    "write share",
    "page faults/batch plain|job",
    "shard MB",
    "reduce MB/s",
    "raw read MB/s",
    "reduce/raw",
    "reduce+gram MB/s",
    "gram/raw",
    "cold reduce MB/s",
    "cold raw MB/s",
    "cold reduce/raw",
    "others' CPU",
]


def table_rows(results):
    for r in results:
        yield [
            r["model"],
            f"{r['batch']} x {r['k']}",
            f"{r['params']:,}",
            f"{r['plain']:.2f}",
            f"{r['no_write']:.2f}",
            f"{r['job']:.2f}",
            f"{r['finish']:.2f}",
            f"{r['job'] / r['plain']:.2f}",
            f"{r['best_ratio']:.2f}",
            f"{r['no_write'] / r['plain']:.2f}",
            f"{(r['job'] - r['no_write']) / r['job']:.0%}",
            f"{r['faults']['plain']:.0f} | {r['faults']['job']:.0f}",
            f"{r['shard_mb']:.1f}",
            f"{r['red_warm']:.0f}",
            f"{r['raw_warm']:.0f}",
            f"{r['red_warm'] / r['raw_warm']:.2f}",
            f"{r['gram_warm']:.0f}",
            f"{r['gram_warm'] / r['raw_warm']:.2f}",
            f"{r['red_cold']:.0f}",
            f"{r['raw_cold']:.0f}",
            f"{r['red_cold'] / r['raw_cold']:.2f}",
            f"{r['others']:.0%}",
        ]


def markdown(rows, columns=COLUMNS):
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["small_cnn", "resnet18"])
    ap.add_argument("--batches", type=int, help="K fixed batches per epoch (default: small_cnn 8, resnet18 3)")
    ap.add_argument("--batch-size", type=int, help="default per model: small_cnn 256, resnet18 64")
    ap.add_argument("--repeats", type=int, default=5, help="timed repetitions of each variant (after one warm-up)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for training")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--reduce-threads", type=int, default=2, help="threads of the reductions (default 2)")
    ap.add_argument("--tmpdir", help="where the shard is written (default: the system temp dir)")
    ap.add_argument("--out", help="also write the table as markdown to this file")
    ap.add_argument(
        "--reduce-only",
        action="store_true",
        help="only the reduction row: a shard of random rows in the model's parameter layout, no training",
    )
    ap.add_argument(
        "--paper-gram",
        action="store_true",
        help="only the Gram matrix's cost at K = 195 (a shard of --params random float32 values a row), and its "
        "estimate for a DPN92 epoch",
    )
    ap.add_argument("--params", type=int, default=1 << 21, help="P of the --paper-gram shard (default 2^21)")
    ap.add_argument(
        "--mallopt",
        action="store_true",
        help="set glibc M_MMAP_THRESHOLD=32 MiB, M_TRIM_THRESHOLD=2 GiB first, so freed activations stay "
        "in the heap instead of being unmapped and page-faulted back in by the other net",
    )
    args = ap.parse_args()

    if args.mallopt:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        if not (libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)):
            raise SystemExit("--mallopt: glibc mallopt refused")
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    set_numerics(device)
    u = platform.uname()
    gpu = f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""
    header = [
        f"machine: {u.system} {u.release} {u.machine}, node {u.node}",
        f"cpu: {cpu_model()}, os.cpu_count()={os.cpu_count()}",
        f"torch {torch.__version__}, h5py {h5py.__version__}, numpy {np.__version__}, "
        f"threads {torch.get_num_threads()} (reduction {args.reduce_threads}), device {device}{gpu}"
        + (", glibc mallopt(M_MMAP_THRESHOLD=32 MiB, M_TRIM_THRESHOLD=2 GiB)" if args.mallopt else ""),
    ]
    print("\n".join(header), flush=True)
    if args.paper_gram:
        with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="bestbatch-gram-") as tmpdir:
            lines = paper_gram_lines(paper_gram(tmpdir, args.params, repeats=args.repeats, threads=args.reduce_threads))
        print("\n".join(lines))
        if args.out:
            Path(args.out).write_text("\n".join(f"- {h}" for h in header + lines) + "\n")
        return

    results = []
    columns, table = (REDUCE_COLUMNS, reduce_rows_table) if args.reduce_only else (COLUMNS, table_rows)
    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="bestbatch-epoch-") as tmpdir:
        for name in args.models:
            bs, k = DEFAULTS.get(name, (64, 4))
            bs, k = args.batch_size or bs, args.batches or k
            t0 = time.perf_counter()
            if args.reduce_only:
                r = reduce_only(name, bs, k, args.repeats, tmpdir, args.reduce_threads)
                print(f"{name}: done in {time.perf_counter() - t0:.0f} s", flush=True)
            else:
                r = bench_model(name, bs, k, args.repeats, device, tmpdir, args.reduce_threads)
                spread = ", ".join(f"{v} {lo:.2f}-{hi:.2f}" for v, (lo, hi) in r["spread"].items())
                print(f"{name}: done in {time.perf_counter() - t0:.0f} s (min-max s: {spread})", flush=True)
            results.append(r)

    rows = list(table(results))
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    print()
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(x.rjust(w) for x, w in zip(row, widths)))
    if args.reduce_only:
        notes = (
            f"reduction only: medians of {max(5, args.repeats)} interleaved runs each; reduce = reduce_shard with "
            "the per-tensor distances, gram = the same with the batch Gram matrix, both on "
            f"{args.reduce_threads} threads; best = ratio of the fastest runs; targets reduce/raw >= 0.7, "
            "gram/raw >= 0.5 (warm); "
            "others' CPU = share of the machine's CPU other processes used meanwhile"
        )
    else:
        notes = (
            f"medians of {args.repeats} interleaved repetitions (reduction: {max(5, args.repeats)}); "
            "best = ratio of the fastest runs; targets: job/plain <= 2.1, reduce/raw >= 0.7, gram/raw >= 0.5 (warm; "
            f"the reductions on {args.reduce_threads} threads); "
            "write share = (job - no-write) / job; "
            "MB/s = shard file bytes / time; others' CPU = median share of the machine's CPU that other "
            "processes used during the training runs (timings are only clean when it is near 0%)"
        )
    print("\n" + notes)
    if args.out:
        Path(args.out).write_text(
            "\n\n".join(["\n".join(f"- {h}" for h in header), markdown(rows, columns), notes]) + "\n"
        )


if __name__ == "__main__":
    main()
