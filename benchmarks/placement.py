"""Where the images live (data.placement: device, host, mapped) against torchvision's ImageFolder + DataLoader.

    PYTHONPATH=src .venv/bin/python benchmarks/placement.py [--quick] [--sizes 32 64 128] [--n 4096]
        [--batch-size 256] [--workers 2] [--repeats 5] [--min-seconds 0.3] [--device cpu|cuda] [--no-cold]

The same generated images (smooth random colour fields with pixel noise, made at the largest size and brought to
the others with Pillow's bicubic resize, as the image-folder decoder does) are written once per size as PNGs in
class folders (for ImageFolder) and as an image set file (formats.write_images, for every placement). Per size:

  device, host, mapped   the project's training data path as a job runs it: the image set read (mapped for mapped),
                         placement.Images, then per epoch images.expect(the fixed batches) and make_batch (gather,
                         random crop with padding crop_padding = H // 8, flip, normalise; float32, augment on) over
                         the fixed batches of one seeded order, as training.epoch_pass does. On the CPU, host is the
                         device placement (placement.py): the same code, measured again.
  DataLoader             datasets.ImageFolder + DataLoader(--workers workers, the same batch size, a sampler giving
                         the same order, drop_last, persistent workers), transforms RandomCrop(N, padding=N // 8),
                         RandomHorizontalFlip, ToTensor, Normalize with the same statistics: PNGs decoded by
                         Pillow in the workers, as a DataLoader user has it (pinned and copied on CUDA).

img/s is steady state: whole epochs, each with its own epoch number (new crops and flips), run until --min-seconds
have passed, after one warm-up epoch; the four are measured interleaved in a rotating order and the median of
--repeats is reported. "setup s" is apart, and once per method and size (not a median): for a placement the image
set's read (or mapping) and Images(); for the DataLoader ImageFolder's scan and the workers' start (iter of the
loader). "with compute" repeats the measure with a small conv net's forward, backward and SGD step on every batch
(the same net for all four), so the mapped placement's prefetch thread can overlap its reads with the compute.

Memory, measured in an untimed pass per method and size, each in a fresh process (so that none reuses memory
another freed): its setup, then one epoch. device and host: the image tensor's bytes, resident for the whole job
(on CUDA device memory for device, pinned host memory for host), beside the growth of the process's RssAnon over
the setup (the set read, then laid out as (N, 3, H, W): where glibc keeps the freed read in its heap, about twice
the set). mapped: the Rss of the image set file's mapping (/proc/self/smaps) after the epoch, that is the file's
pages it touched, which after an epoch is every page of the set: page cache, shared and reclaimable, not anonymous
memory. Every method: the peak growth of RssAnon + RssShmem during the epoch over its value after the setup (the
batches in flight; sampled every 5 ms). The DataLoader: nothing of the set in the process (the PNGs are on disk,
in the page cache once read), its workers' peak private memory (USS, /proc/<pid>/smaps_rollup, sampled every 50 ms).

The page cache: every file was just written, so the warm figures read it from memory. --cold (the default; --no-cold
skips it) adds, at the largest size, one setup + epoch per method after evicting its files from the page cache
(fsync + posix_fadvise DONTNEED; fincore, where installed, shows what stayed): on a VM the "disk" may itself be
cached by the host.

Targets (issue 32): every placement >= 1.5x the DataLoader at every size, and mapped >= 0.8x the resident (device)
placement. "others' CPU" is the share of the machine's CPU that other processes took during the timed runs
(the DataLoader's workers counted as ours): trust a row only when it is near 0%.
"""

import argparse
import copy
import datetime
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from bestbatch.augment import crop_padding, make_batch
from bestbatch.data import channel_statistics
from bestbatch.formats import read_images, write_images
from bestbatch.placement import PLACEMENTS, Images, batches_of
from bestbatch.training import keep_freed_memory

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import epoch  # noqa: E402

SEED = 0
CLASSES = 10
METHODS = (*PLACEMENTS, "dataloader")
VARIANTS = ("plain", "compute")
TARGET_VS_LOADER, TARGET_MAPPED = 1.5, 0.8
MB = 1e6


# --- the images, written once per size ----------------------------------------------------------------------------
def generate(n, sizes, seed=SEED):
    """{size: (n, size, size, 3) uint8} of the same n images, and their labels: smooth colour fields (an 8 x 8 grid
    of random colours, bicubic) with pixel noise, made at the largest size and resized down with Pillow's bicubic."""
    rng = np.random.default_rng(seed)
    top = max(sizes)
    labels = rng.integers(0, CLASSES, n).astype(np.int64)
    out = {s: np.empty((n, s, s, 3), np.uint8) for s in sizes}
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        big = np.asarray(coarse.resize((top, top), Image.BICUBIC), np.int16)
        big = np.clip(big + rng.integers(-6, 7, big.shape, dtype=np.int16), 0, 255).astype(np.uint8)
        for s in sizes:
            out[s][i] = big if s == top else np.asarray(Image.fromarray(big).resize((s, s), Image.BICUBIC))
    return out, labels


def write_sets(root, images, labels):
    """Per size: <root>/<size>px/png/c<label>/<i>.png (ImageFolder) and <root>/<size>px/train.h5 (the image set).
    Returns {size: (png folder, set file, png bytes)}."""
    out = {}
    for size, arr in images.items():
        folder = Path(root) / f"{size}px"
        png = folder / "png"
        for c in range(CLASSES):
            (png / f"c{c}").mkdir(parents=True, exist_ok=True)
        nbytes = 0
        for i, (img, label) in enumerate(zip(arr, labels)):
            path = png / f"c{label}" / f"{i:06d}.png"
            Image.fromarray(img).save(path)
            nbytes += path.stat().st_size
        stats = channel_statistics(arr)
        write_images(
            folder / "train.h5",
            {"train": (arr, labels), "test": (np.empty((0, size, size, 3), np.uint8), np.empty(0, np.int64))},
            [f"c{c}" for c in range(CLASSES)],
            "benchmarks/placement.py",
            stats,
        )
        out[size] = (png, folder / "train.h5", nbytes, stats)
    return out


def cached_mb(path):
    """MB of `path` in the page cache (fincore), or None where fincore is not installed."""
    if not shutil.which("fincore"):
        return None
    try:
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)], capture_output=True, text=True
        )
        return int(out.stdout.split()[0]) / MB
    except (OSError, ValueError, IndexError):
        return None


# --- the machine: CPU shares and memory from /proc ----------------------------------------------------------------
def _children():
    """{pid: CPU ticks} of this process's live children (the DataLoader's workers)."""
    me, kids = os.getpid(), {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == me:
                kids[int(d)] = int(fields[11]) + int(fields[12])
    return kids


def cpu_sample():
    """(busy ticks of the machine, all its ticks, ticks of this process, its reaped and its live children)."""
    try:
        busy = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    ours = sum(int(own[i]) for i in (11, 12, 13, 14)) + sum(_children().values())
    return sum(busy) - busy[3] - busy[4], sum(busy), ours


def rss():
    """{RssAnon, RssFile, RssShmem} of this process in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("RssAnon", "RssFile", "RssShmem"):
            out[key] = int(line.split()[1]) * 1024
    return out


def mapped_rss(path):
    """Bytes of `path`'s pages mapped into this process (the Rss of its mappings in /proc/self/smaps)."""
    total, inside, name = 0, False, str(Path(path).resolve())
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and not head[0].endswith(":"):  # a mapping's header: range, perms, offset, device, inode, path
            inside = " ".join(head[5:]) == name
        elif inside and head[0] == "Rss:":
            total += int(head[1]) * 1024
    return total


def uss(pid):
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return sum(
        int(line.split()[1]) * 1024 for line in text.splitlines() if line.startswith(("Private_Clean", "Private_Dirty"))
    )


def _anon():
    r = rss()
    return r["RssAnon"] + r["RssShmem"]


class Peak:
    """Samples RssAnon + RssShmem of this process (and the private memory of its children) in a thread; .anon and .children
    are the peaks seen, in bytes."""

    def __init__(self, children=False, every=0.005):
        self.children, self.every, self.anon, self.kids = children, every, 0, 0
        self._stop = threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        tick = 0
        while not self._stop.is_set():
            self.anon = max(self.anon, _anon())
            if self.children and tick % 10 == 0:
                self.kids = max(self.kids, sum(uss(p) for p in _children()))
            tick += 1
            time.sleep(self.every)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.anon = max(self.anon, _anon())


# --- the two data paths --------------------------------------------------------------------------------------------
def small_net(seed=SEED):
    """The compute of the "with compute" columns: a 4 x 4 patch convolution, a stride-2 convolution, pooled, linear
    (5,754 parameters); on these 2 cores its step takes a few times as long as the data path's batch."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 4, stride=4),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, CLASSES),
    )


def stepper(base, device):
    net = copy.deepcopy(base).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    return step


class Placed:
    """One job's images where `placement` puts them: read from the image set file, then its epochs."""

    def __init__(self, path, placement, device, order, batch_size, stats):
        t0 = time.perf_counter()
        splits, _, _ = read_images(path, test=False, mmap=placement == "mapped")
        images, labels = splits["train"]
        self.images = Images(images, device, placement)
        self.labels = torch.as_tensor(labels, device=device)
        del splits, images
        epoch.sync(device)
        self.setup = time.perf_counter() - t0
        self.order, self.batch_size, self.stats = order, batch_size, stats
        self.batches = batches_of(order, batch_size)
        self.order_dev = torch.as_tensor(order, device=device)
        # as epoch_pass: off the device, gathered by host indices (no read-back of GPU indices per batch)
        self.gather_order = self.order_dev if placement == "device" else torch.as_tensor(order)

    def epoch(self, e, step=None):
        """One epoch as training.epoch_pass runs it (the read-ahead told the fixed batches); returns the images."""
        bs = self.batch_size
        self.images.expect(self.batches)
        for k in range(len(self.batches)):
            idx = self.order_dev[k * bs : (k + 1) * bs]
            x = make_batch(
                self.images, self.gather_order[k * bs : (k + 1) * bs], SEED, e, k, True, torch.float32, self.stats
            )
            if step is not None:
                step(x, self.labels[idx])
        return len(self.batches) * bs

    def close(self):
        self.images.close()


class Loader:
    """ImageFolder + DataLoader over the PNGs, the sampler giving `order` (image i is the file named i)."""

    def __init__(self, folder, size, order, batch_size, workers, stats, device, persistent=True):
        t0 = time.perf_counter()
        tf = transforms.Compose(
            [
                transforms.RandomCrop(size, padding=crop_padding(size, size)),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(*stats),
            ]
        )
        ds = datasets.ImageFolder(str(folder), tf)
        position = {int(Path(p).stem): j for j, (p, _) in enumerate(ds.samples)}
        self.loader = DataLoader(
            ds,
            batch_size=batch_size,
            sampler=[position[i] for i in order],
            num_workers=workers,
            drop_last=True,
            persistent_workers=persistent and workers > 0,
            pin_memory=device.type == "cuda",
        )
        self._first = iter(self.loader)  # starts the workers
        self.setup = time.perf_counter() - t0
        self.device = device

    def epoch(self, e, step=None):
        it = self._first if self._first is not None else iter(self.loader)
        self._first = None
        n = 0
        for x, y in it:
            x = x.to(self.device, non_blocking=True)
            if step is not None:
                step(x, y.to(self.device, non_blocking=True))
            n += x.shape[0]
        return n

    def close(self):
        self._first = None
        it = getattr(self.loader, "_iterator", None)
        if it is not None:
            it._shutdown_workers()
        self.loader = None


def timed(run, device, min_seconds, first_epoch, step=None):
    """(images/s over whole epochs run until min_seconds passed, the next epoch number)."""
    epoch.sync(device)
    t0, n, e = time.perf_counter(), 0, first_epoch
    while True:
        n += run.epoch(e, step)
        e += 1
        epoch.sync(device)
        if time.perf_counter() - t0 >= min_seconds:
            return n / (time.perf_counter() - t0), e


# --- one size -------------------------------------------------------------------------------------------------------
def bench_size(files, size, n, batch_size, workers, device, repeats, min_seconds, log=print):
    png, path, png_bytes, stats = files
    order = np.random.default_rng(SEED).permutation(n)
    base = small_net()
    runs = {m: Placed(path, m, device, order, batch_size, stats) for m in PLACEMENTS}
    runs["dataloader"] = Loader(png, size, order, batch_size, workers, stats, device)
    steps = {m: stepper(base, device) for m in METHODS}
    next_epoch = dict.fromkeys(METHODS, 1)
    for m, run in runs.items():  # warm-up: allocator, thread pools, the loader's first epoch (its workers' start)
        for step in (None, steps[m]):
            _, next_epoch[m] = timed(run, device, 0, next_epoch[m], step)
    ips = {(m, v): [] for m in METHODS for v in VARIANTS}
    others = {(m, v): [] for m in METHODS for v in VARIANTS}
    names = list(METHODS)
    for r in range(repeats):
        for v in VARIANTS:
            for m in names[r % len(names) :] + names[: r % len(names)]:
                before = cpu_sample()
                x, next_epoch[m] = timed(
                    runs[m], device, min_seconds, next_epoch[m], steps[m] if v == "compute" else None
                )
                others[(m, v)].append(epoch.others_load(before, cpu_sample()))
                ips[(m, v)].append(x)
        log(f"  {size} px, round {r + 1}/{repeats}: " + ", ".join(f"{m} {ips[(m, 'plain')][-1]:,.0f}" for m in names))
    setup = {m: run.setup for m, run in runs.items()}
    for run in runs.values():
        run.close()
    del runs
    gc.collect()
    memory = measure_memory(files, size, n, batch_size, workers, device, torch.get_num_threads())
    return dict(
        size=size,
        n=n,
        set_mb=n * size * size * 3 / MB,
        png_mb=png_bytes / MB,
        ips={k: statistics.median(x) for k, x in ips.items()},
        spread={k: (min(x), max(x)) for k, x in ips.items()},
        others={k: statistics.median(x) for k, x in others.items()},
        setup=setup,
        memory=memory,
    )


def memory_of(method, size, png, path, n, batch_size, workers, device, stats):
    """{MB figures} of one method from this process's state: its setup, then one epoch (module docstring)."""
    order = np.random.default_rng(SEED).permutation(n)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    gpu0 = torch.cuda.memory_allocated() if cuda else 0
    before = rss()
    if method == "dataloader":
        run = Loader(png, size, order, batch_size, workers, stats, device, persistent=False)
    else:
        run = Placed(path, method, device, order, batch_size, stats)
    placed = rss()
    gpu1 = torch.cuda.memory_allocated() if cuda else 0
    with Peak(children=method == "dataloader") as peak:
        run.epoch(1)
        epoch.sync(device)
    after = rss()  # before run.close(): the mapping is still there
    row = dict(
        anon_setup=(placed["RssAnon"] + placed["RssShmem"] - before["RssAnon"] - before["RssShmem"]) / MB,
        anon_peak=(peak.anon - placed["RssAnon"] - placed["RssShmem"]) / MB,
        file=mapped_rss(path) / MB,
        file_all=(after["RssFile"] - before["RssFile"]) / MB,
        gpu_setup=(gpu1 - gpu0) / MB,
        gpu_peak=(torch.cuda.max_memory_allocated() - gpu1) / MB if cuda else 0.0,
        workers=peak.kids / MB,
        store=0.0 if method == "dataloader" else run.images.nbytes / MB,
    )
    run.close()
    return row


def measure_memory(files, size, n, batch_size, workers, device, threads):
    """{method: memory_of(...)}, each in a fresh process (so that no method reuses memory another freed)."""
    png, path, _, stats = files
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    out = {}
    for m in METHODS:
        spec = dict(
            method=m,
            size=size,
            png=str(png),
            path=str(path),
            n=n,
            batch_size=batch_size,
            workers=workers,
            device=str(device),
            stats=stats,
            threads=threads,
        )
        done = subprocess.run(
            [sys.executable, __file__, "--memory-of", json.dumps(spec)], capture_output=True, text=True, env=env
        )
        if done.returncode:
            raise RuntimeError(f"the memory pass of {m} at {size} px failed:\n{done.stderr[-2000:]}")
        out[m] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def _memory_main(spec):
    spec = json.loads(spec)
    torch.set_num_threads(spec.pop("threads"))
    device = torch.device(spec.pop("device"))
    if device.type == "cpu":
        keep_freed_memory()
    stats = tuple(tuple(x) for x in spec.pop("stats"))
    png, path = Path(spec.pop("png")), Path(spec.pop("path"))
    print(json.dumps(memory_of(device=device, stats=stats, png=png, path=path, **spec)))


def bench_cold(files, size, n, batch_size, workers, device):
    """{method: (setup s, images/s of setup + one epoch, MB of the set file cached before, others' CPU)} after
    evicting the method's files from the page cache."""
    png, path, _, stats = files
    order = np.random.default_rng(SEED).permutation(n)
    pngs = sorted(png.rglob("*.png"))
    out = {}
    for m in METHODS:
        gc.collect()
        for p in (path, *pngs):
            epoch.evict(p)
        cached = cached_mb(path)
        epoch.sync(device)
        before, t0 = cpu_sample(), time.perf_counter()
        if m == "dataloader":
            run = Loader(png, size, order, batch_size, workers, stats, device, persistent=False)
        else:
            run = Placed(path, m, device, order, batch_size, stats)
        k = run.epoch(1)
        epoch.sync(device)
        out[m] = (run.setup, k / (time.perf_counter() - t0), cached, epoch.others_load(before, cpu_sample()))
        run.close()
        del run  # a live mapping keeps its pages in the cache
    return out


def measure(
    sizes=(32, 64, 128),
    n=4096,
    batch_size=256,
    workers=2,
    device=None,
    repeats=5,
    min_seconds=0.3,
    cold=True,
    tmp=None,
    log=print,
):
    """Every figure of the module docstring, as a dict (table() renders it)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    started = dict(load=os.getloadavg(), when=datetime.datetime.now().astimezone())
    with tempfile.TemporaryDirectory(prefix="bestbatch-placement-", dir=tmp) as root:
        t0 = time.perf_counter()
        images, labels = generate(n, sizes)
        files = write_sets(root, images, labels)
        del images
        log(
            f"wrote {n} images at {', '.join(f'{s} px' for s in sizes)} as PNGs and image sets in {time.perf_counter() - t0:.0f} s"
        )
        per_size = [bench_size(files[s], s, n, batch_size, workers, device, repeats, min_seconds, log) for s in sizes]
        cold_run = bench_cold(files[max(sizes)], max(sizes), n, batch_size, workers, device) if cold else None
    return dict(
        device=device,
        n=n,
        batch_size=batch_size,
        workers=workers,
        repeats=repeats,
        min_seconds=min_seconds,
        sizes=per_size,
        cold=cold_run,
        cold_size=max(sizes),
        load=(started["load"], os.getloadavg()),
        when=started["when"],
    )


# --- the tables -------------------------------------------------------------------------------------------------------
def verdicts(r):
    """[(size, what, ratio, target, met)] of the issue's two targets, from the measured medians."""
    out = []
    for s in r["sizes"]:
        ips = s["ips"]
        for m in PLACEMENTS:
            ratio = ips[(m, "plain")] / ips[("dataloader", "plain")]
            out.append((s["size"], f"{m} / DataLoader", ratio, f">= {TARGET_VS_LOADER}", ratio >= TARGET_VS_LOADER))
        ratio = ips[("mapped", "plain")] / ips[("device", "plain")]
        out.append((s["size"], "mapped / device", ratio, f">= {TARGET_MAPPED}", ratio >= TARGET_MAPPED))
    return out


def memory_text(m, row, cuda):
    """The memory column (MB): what holds the images, and the peak growth during the epoch (module docstring)."""
    peak = f"epoch peak +{row['anon_peak']:.0f}" + (f", GPU +{row['gpu_peak']:.0f}" if cuda else "")
    if m == "dataloader":
        return f"none in the process (PNGs on disk); workers' USS peak {row['workers']:.0f}; {peak}"
    if m == "mapped":
        return f"{row['file']:.1f} of the file mapped in (page cache, reclaimable); {peak}"
    where = ("GPU" if m == "device" else "pinned host") if cuda else "host"
    return f"{row['store']:.1f} resident ({where}; RssAnon +{row['anon_setup']:.0f} over the setup); {peak}"


def table(r):
    cuda = r["device"].type == "cuda"
    lines = [
        "| px | set MB | PNG MB | method | img/s | / DataLoader | img/s with compute | / DataLoader with compute | "
        "setup s | memory, MB | others' CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["sizes"]:
        ips, dl = s["ips"], s["ips"][("dataloader", "plain")]
        dlc = s["ips"][("dataloader", "compute")]
        for m in METHODS:
            name = m + (" (= device on the CPU)" if m == "host" and not cuda else "")
            name = f"DataLoader ({r['workers']} workers)" if m == "dataloader" else name
            lines.append(
                f"| {s['size']} | {s['set_mb']:.1f} | {s['png_mb']:.1f} | {name} | {ips[(m, 'plain')]:,.0f} | "
                f"{ips[(m, 'plain')] / dl:.2f}x | {ips[(m, 'compute')]:,.0f} | {ips[(m, 'compute')] / dlc:.2f}x | "
                f"{s['setup'][m]:.2f} | {memory_text(m, s['memory'][m], cuda)} | "
                f"{max(s['others'][(m, v)] for v in VARIANTS):.0%} |"
            )
    lines += ["", "| px | measure | value | target | met | with compute |", "|---|---|---|---|---|---|"]
    for size, what, ratio, target, met in verdicts(r):
        s = next(x for x in r["sizes"] if x["size"] == size)
        num, den = what.split(" / ")
        den = "dataloader" if den == "DataLoader" else den
        c = s["ips"][(num, "compute")] / s["ips"][(den, "compute")]
        lines.append(f"| {size} | {what} | {ratio:.2f}x | {target} | {'yes' if met else 'no'} | {c:.2f}x |")
    if r["cold"]:
        lines += [
            "",
            f"Cold, {r['cold_size']} px: each method's files evicted from the page cache first, then its setup and one "
            "epoch (img/s include the setup):",
            "",
            "| method | set file cached before, MB | setup s | img/s, setup + 1 epoch | others' CPU |",
            "|---|---|---|---|---|",
        ]
        for m, (setup, x, cached, others) in r["cold"].items():
            c = "?" if cached is None else f"{cached:.1f}"
            lines.append(
                f"| {'DataLoader' if m == 'dataloader' else m} | {c} | {setup:.2f} | {x:,.0f} | {others:.0%} |"
            )
    return "\n".join(lines) + "\n"


def header(r, threads):
    (l0, _, _), (l1, _, _) = r["load"]
    u = platform.uname()
    dev = r["device"]
    card = f" ({torch.cuda.get_device_name()})" if dev.type == "cuda" else ""
    return (
        f"{r['when']:%Y-%m-%d %H:%M %Z}: {u.system} {u.release} {u.machine}, {epoch.cpu_model()}, {os.cpu_count()} "
        f"cores, torch {torch.__version__} on {threads} threads, device {dev}{card}. {r['n']} images per size, batch "
        f"{r['batch_size']}, float32, augment on; medians of {r['repeats']} interleaved runs of at least "
        f"{r['min_seconds']} s, warm page cache (the files were just written). 1-minute load average {l0:.2f} at "
        f"the start, {l1:.2f} at the end."
    )


def suite_rows(r):
    """(measure, value, target, met) rows for benchmarks/run.py: each placement against the DataLoader and mapped
    against device, per size (warm page cache), and mapped / device with the small net's compute."""
    for size, what, ratio, target, met in verdicts(r):
        s = next(x for x in r["sizes"] if x["size"] == size)
        num, den = what.split(" / ")
        a, b = s["ips"][(num, "plain")], s["ips"][("dataloader" if den == "DataLoader" else den, "plain")]
        note = f"{r['workers']} workers" if den == "DataLoader" else "the prefetch thread reading the mapped set"
        yield (
            f"{size} px, {r['n']} images ({s['set_mb']:.0f} MB): data path, {what} ({note}; {a:,.0f} vs {b:,.0f} "
            f"img/s; others' CPU {max(s['others'].values()):.0%})",
            f"{ratio:.2f}x",
            target,
            met,
        )
    for s in r["sizes"]:
        a, b = s["ips"][("mapped", "compute")], s["ips"][("device", "compute")]
        yield (
            f"{s['size']} px: data path with a small net's step, mapped / device ({a:,.0f} vs {b:,.0f} img/s)",
            f"{a / b:.2f}x",
            "",
            None,
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,048 images, 3 repeats of 0.2 s (a few minutes)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--n", type=int, default=None, help="images per size (default 4096, --quick 2048)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2, help="the DataLoader's workers")
    ap.add_argument("--repeats", type=int, default=None, help="default 5, --quick 3")
    ap.add_argument("--min-seconds", type=float, default=None, help="default 0.3, --quick 0.2")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default=None, help="cpu or cuda (default cuda when available)")
    ap.add_argument("--no-cold", dest="cold", action="store_false", help="skip the cold page cache run")
    ap.add_argument("--tmp", default=None, help="folder for the generated files (default the system's)")
    ap.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)  # one memory pass, in a fresh process
    a = ap.parse_args()
    if a.memory_of:
        return _memory_main(a.memory_of)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        keep_freed_memory()  # as the training job does on CPU
    r = measure(
        a.sizes,
        a.n or (2048 if a.quick else 4096),
        a.batch_size,
        a.workers,
        device,
        a.repeats or (3 if a.quick else 5),
        a.min_seconds or (0.2 if a.quick else 0.3),
        a.cold,
        a.tmp,
    )
    print("\n" + header(r, a.threads) + "\n\n" + table(r))
    for size, what, ratio, target, met in verdicts(r):
        print(f"{size} px {what}: {ratio:.2f}x, target {target}: {'met' if met else 'missed'}")


if __name__ == "__main__":
    main()
