"""Scratch (to be deleted): where does reduce_shard's time go, and what would be faster?"""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import mmap
import statistics
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from bestbatch.distances import batch_distances, reduce_shard
from bestbatch.shards import ShardWriter

torch.set_num_threads(int(os.environ.get('TT', '1')))
K, P = int(sys.argv[1]) if len(sys.argv) > 1 else 4, 11_173_962
D = Path("/tmp/bb_scratch"); D.mkdir(exist_ok=True)
path = D / f"shard_{K}.h5"
if not path.exists():
    rng = np.random.default_rng(0)
    g = (rng.standard_normal((K, P), dtype=np.float32) * rng.uniform(0.1, 10, (K, 1)).astype(np.float32))
    g += rng.standard_normal(P, dtype=np.float32) * 3
    w = ShardWriter(path, K, P, "float32")
    for k in range(K):
        w.put(k, torch.from_numpy(g[k]))
    w.finish(dict(gradient_sum=g.astype(np.float64).sum(0)), {})
    del g
with h5py.File(path, "r") as f:
    G = f["gradients"][:]
REF = batch_distances(G)
del G
FILE_BYTES = path.stat().st_size


def raw():
    buf = bytearray(16 << 20); v = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(v):
            pass


def h5_read_only():
    with h5py.File(path, "r") as f:
        d = f["gradients"]
        row = np.empty(d.shape[1], d.dtype)
        for k in range(d.shape[0]):
            d.read_direct(row, np.s_[k])


def compute_current(row_t, full, acc, k):
    BLOCK = 1 << 20
    for lo in range(0, row_t.numel(), BLOCK):
        g = row_t[lo:lo + BLOCK].to(torch.float64)
        m = full[lo:lo + BLOCK]
        d = g - m
        acc[0][k] += float(d.dot(d)); acc[1][k] += float(g.dot(g)); acc[2][k] += float(g.dot(m))


def compute_only():
    """the current per-row float64 work on rows already in memory (first row reused)"""
    with h5py.File(path, "r") as f:
        d = f["gradients"]
        row = np.empty(d.shape[1], d.dtype); d.read_direct(row, np.s_[0])
        full = torch.from_numpy(f["gradient_sum"][:] / K)
    acc = np.zeros((3, K))
    rt = torch.from_numpy(row)
    for k in range(K):
        compute_current(rt, full, acc, k)


def make_np_compute(block):
    def compute(row, full, acc, k, bufs):
        g64, d64 = bufs
        for lo in range(0, row.size, block):
            hi = min(lo + block, row.size)
            n = hi - lo
            g, d, m = g64[:n], d64[:n], full[lo:hi]
            np.copyto(g, row[lo:hi])
            np.subtract(g, m, out=d)
            acc[0, k] += d @ d; acc[1, k] += g @ g; acc[2, k] += g @ m
    return compute


def finish(acc, full_norm):
    norm = np.sqrt(acc[1])
    return dict(distance=np.sqrt(acc[0]), norm=norm, full_norm=full_norm, cosine=acc[2] / (norm * full_norm))


def reduce_np(block):
    """h5py read_direct per row, then numpy float64 work in L2-sized blocks with reused buffers"""
    comp = make_np_compute(block)
    def run():
        with h5py.File(path, "r") as f:
            d = f["gradients"]
            k_rows, n = d.shape
            full = f["gradient_sum"][:] / k_rows
            row = np.empty(n, d.dtype)
            bufs = (np.empty(block), np.empty(block))
            acc = np.zeros((3, k_rows))
            for k in range(k_rows):
                d.read_direct(row, np.s_[k])
                comp(row, full, acc, k, bufs)
        return finish(acc, float(np.linalg.norm(full)))
    return run


def chunk_views(f, mm):
    """Zero-copy float32 views of every (1, C) chunk of an uncompressed, row-chunked dataset."""
    d = f["gradients"]
    assert d.compression is None and d.chunks[0] == 1
    ids = d.id
    out = {}
    for i in range(ids.get_num_chunks()):
        info = ids.get_chunk_info(i)
        k, c0 = info.chunk_offset
        n = min(d.chunks[1], d.shape[1] - c0)
        out[(k, c0)] = np.frombuffer(mm, dtype=d.dtype, count=n, offset=info.byte_offset)
    return out


def reduce_mmap(block, threads=1):
    """rows straight from the page cache (mmap of the uncompressed chunks), blocks in L2"""
    comp = make_np_compute(block)
    def run():
        with h5py.File(path, "r") as f, open(path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            d = f["gradients"]
            k_rows, n = d.shape
            full = f["gradient_sum"][:] / k_rows
            views = chunk_views(f, mm)
            acc = np.zeros((3, k_rows))
            cols = sorted({c for _, c in views})
            def work(my_cols, acc_t):
                bufs = (np.empty(block), np.empty(block))
                for c0 in my_cols:
                    m = full[c0:c0 + d.chunks[1]]
                    for k in range(k_rows):
                        comp(views[(k, c0)], m, acc_t, k, bufs)
            if threads == 1:
                work(cols, acc)
            else:
                accs = [np.zeros((3, k_rows)) for _ in range(threads)]
                ts = [threading.Thread(target=work, args=(cols[i::threads], accs[i])) for i in range(threads)]
                [t.start() for t in ts]; [t.join() for t in ts]
                acc = sum(accs)
            del views
            mm.close()
        return finish(acc, float(np.linalg.norm(full)))
    return run


def reduce_h5_groups(block, group=8):
    """h5py reads of (group x chunk) tiles; each full block stays in cache while the group's rows pass"""
    comp = make_np_compute(block)
    def run():
        with h5py.File(path, "r") as f:
            d = f["gradients"]
            k_rows, n = d.shape
            C = d.chunks[1]
            full = f["gradient_sum"][:] / k_rows
            tile = np.empty((min(group, k_rows), C), d.dtype)
            bufs = (np.empty(block), np.empty(block))
            acc = np.zeros((3, k_rows))
            for k0 in range(0, k_rows, group):
                k1 = min(k0 + group, k_rows)
                for c0 in range(0, n, C):
                    c1 = min(c0 + C, n)
                    t = tile[:k1 - k0, :c1 - c0]
                    d.read_direct(t, np.s_[k0:k1, c0:c1]) if t.flags.c_contiguous else None
                    if not t.flags.c_contiguous:
                        t = np.empty((k1 - k0, c1 - c0), d.dtype); d.read_direct(t, np.s_[k0:k1, c0:c1])
                    m = full[c0:c1]
                    for b0 in range(0, c1 - c0, block):
                        b1 = min(b0 + block, c1 - c0)
                        mb = m[b0:b1]
                        g64, d64 = bufs[0][:b1 - b0], bufs[1][:b1 - b0]
                        for j in range(k1 - k0):
                            np.copyto(g64, t[j, b0:b1])
                            np.subtract(g64, mb, out=d64)
                            acc[0, k0 + j] += d64 @ d64; acc[1, k0 + j] += g64 @ g64; acc[2, k0 + j] += g64 @ mb
        return finish(acc, float(np.linalg.norm(full)))
    return run


def reduce_np_prefetch(block):
    """B plus a reader thread: h5py releases the GIL, so row k+1 is read while row k is reduced"""
    comp = make_np_compute(block)
    import queue
    def run():
        with h5py.File(path, "r") as f:
            d = f["gradients"]
            k_rows, n = d.shape
            full = f["gradient_sum"][:] / k_rows
            rows = [np.empty(n, d.dtype) for _ in range(2)]
            q_full, q_free = queue.Queue(), queue.Queue()
            for r in rows: q_free.put(r)
            def reader():
                for k in range(k_rows):
                    r = q_free.get(); d.read_direct(r, np.s_[k]); q_full.put(r)
            th = threading.Thread(target=reader); th.start()
            bufs = (np.empty(block), np.empty(block))
            acc = np.zeros((3, k_rows))
            for k in range(k_rows):
                r = q_full.get(); comp(r, full, acc, k, bufs); q_free.put(r)
            th.join()
        return finish(acc, float(np.linalg.norm(full)))
    return run


def check(name, res):
    for key in ("distance", "norm", "cosine"):
        np.testing.assert_allclose(res[key], REF[key], rtol=1e-12, err_msg=f"{name} {key}")


VARIANTS = {} if (os.environ.get("ROUND2") or os.environ.get("ROUND3") or os.environ.get("ROUND4")) else {
    "raw read": raw,
    "h5 read_direct only": h5_read_only,
    "reduce_shard (current)": lambda: reduce_shard(path),
    "B h5 rows + np 64K": reduce_np(1 << 16),
    "B h5 rows + np 32K": reduce_np(1 << 15),
    "C mmap groups np 64K": reduce_mmap(1 << 16),
    "D h5 tiles g8 np 64K": reduce_h5_groups(1 << 16),
    "E B + reader thread": reduce_np_prefetch(1 << 16),
}
for name, fn in VARIANTS.items():
    r = fn()
    if isinstance(r, dict):
        check(name, r)
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 7
times = {n: [] for n in VARIANTS}
cpu = {n: [] for n in VARIANTS}
names = list(VARIANTS)
for r in range(reps if VARIANTS else 0):
    for n in names[r % len(names):] + names[:r % len(names)]:
        t0 = time.perf_counter(); c0 = time.process_time(); VARIANTS[n](); times[n].append(time.perf_counter() - t0); cpu[n].append(time.process_time() - c0)
raw_med = statistics.median(times["raw read"]) if VARIANTS else 0
print(f"K={K} P={P} file {FILE_BYTES/1e6:.0f} MB, {reps} reps")
for n, t in times.items():
    med, mn = statistics.median(t), min(t)
    print(f"{n:26s} median {med*1e3:7.1f} ms  min {mn*1e3:7.1f} ms  {FILE_BYTES/1e6/med:6.0f} MB/s  vs raw {raw_med/med:.2f}  cpu med {statistics.median(cpu[n])*1e3:7.1f} ms  (min-ratio {min(times['raw read'])/mn:.2f})")


# ---- round 2: everything zero-copy from the page cache, m computed per block in cache
def mmap_views(f, mm):
    d = f["gradients"]
    s = f["gradient_sum"]
    assert s.chunks is None and s.compression is None
    sview = np.frombuffer(mm, dtype=s.dtype, count=s.shape[0], offset=s.id.get_offset())
    return chunk_views(f, mm), sview


def reduce_F(block, identity=False, threads=1, group=16, populate=False):
    def run():
        with h5py.File(path, "r") as f, open(path, "rb") as fh:
            if populate:
                mm = mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
            else:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            d = f["gradients"]
            k_rows, n = d.shape
            C = d.chunks[1]
            views, s = mmap_views(f, mm)
            cols = list(range(0, n, C))
            def work(my_cols, acc, fn2):
                mb_, g_, d_ = np.empty(block), np.empty(block), np.empty(block)
                for c0 in my_cols:
                    c1 = min(c0 + C, n)
                    for b0 in range(c0, c1, block):
                        b1 = min(b0 + block, c1)
                        m, g, dd = mb_[:b1 - b0], g_[:b1 - b0], d_[:b1 - b0]
                        np.divide(s[b0:b1], k_rows, out=m)
                        fn2[0] += m @ m
                        for k in range(k_rows):
                            np.copyto(g, views[(k, c0)][b0 - c0:b1 - c0])
                            if identity:
                                acc[1, k] += g @ g; acc[2, k] += g @ m
                            else:
                                np.subtract(g, m, out=dd)
                                acc[0, k] += dd @ dd; acc[1, k] += g @ g; acc[2, k] += g @ m
            accs = [np.zeros((3, k_rows)) for _ in range(threads)]
            fn2s = [[0.0] for _ in range(threads)]
            if threads == 1:
                work(cols, accs[0], fn2s[0])
            else:
                ts = [threading.Thread(target=work, args=(cols[i::threads], accs[i], fn2s[i])) for i in range(threads)]
                [t.start() for t in ts]; [t.join() for t in ts]
            acc = sum(accs); full2 = sum(x[0] for x in fn2s)
            if identity:
                acc[0] = acc[1] - 2 * acc[2] + full2
            del views, s
            mm.close()
        full_norm = float(np.sqrt(full2))
        norm = np.sqrt(acc[1])
        return dict(distance=np.sqrt(acc[0]), norm=norm, full_norm=full_norm, cosine=acc[2] / (norm * full_norm))
    return run


if __name__ == "__main__" and os.environ.get("ROUND2") and not os.environ.get("ROUND3"):
    V2 = {
        "raw read": raw,
        "reduce_shard (current)": lambda: reduce_shard(path),
        "C mmap groups np 64K": reduce_mmap(1 << 16),
        "F mmap all 64K": reduce_F(1 << 16),
        "F mmap all 32K": reduce_F(1 << 15),
        "F mmap all 128K": reduce_F(1 << 17),
        "F identity 64K": reduce_F(1 << 16, identity=True),
        "F 2 threads 64K": reduce_F(1 << 16, threads=2),
        "F identity 2thr": reduce_F(1 << 16, identity=True, threads=2),
    }
    for name, fn in V2.items():
        r = fn()
        if isinstance(r, dict):
            worst = max(float(np.max(np.abs(r[k] / REF[k] - 1))) for k in ("distance", "norm", "cosine"))
            print(f"{name}: worst rel err vs float64 brute force {worst:.1e}")
    times = {n: [] for n in V2}; cpu = {n: [] for n in V2}
    names = list(V2)
    for r in range(reps):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter(); c0 = time.process_time(); V2[n](); times[n].append(time.perf_counter() - t0); cpu[n].append(time.process_time() - c0)
    raw_med = statistics.median(times["raw read"])
    for n, t in times.items():
        med, mn = statistics.median(t), min(t)
        print(f"{n:26s} median {med*1e3:7.1f} ms  min {mn*1e3:7.1f} ms  {FILE_BYTES/1e6/med:6.0f} MB/s  vs raw {raw_med/med:.2f}  cpu med {statistics.median(cpu[n])*1e3:7.1f} ms (min-ratio {min(times['raw read'])/mn:.2f})")


def reduce_H(block, identity=False, group=16):
    """proposal: plain h5py, column tiles of (group rows x block), m = sum/K per block, reused across rows"""
    def run():
        with h5py.File(path, "r") as f:
            dset, total = f["gradients"], f["gradient_sum"]
            k_rows, n = dset.shape
            acc = np.zeros((3, k_rows))
            full2 = 0.0
            tile = np.empty((min(group, k_rows), block), dset.dtype)
            s = np.empty(block); m = np.empty(block); g = np.empty(block); dd = np.empty(block)
            for lo in range(0, n, block):
                hi = min(lo + block, n); w = hi - lo
                sw, mw, gw, dw = s[:w], m[:w], g[:w], dd[:w]
                total.read_direct(sw, np.s_[lo:hi])
                np.divide(sw, k_rows, out=mw)
                full2 += mw @ mw
                for k0 in range(0, k_rows, group):
                    k1 = min(k0 + group, k_rows)
                    t = tile[:k1 - k0, :w] if w == block else np.empty((k1 - k0, w), dset.dtype)
                    dset.read_direct(t, np.s_[k0:k1, lo:hi])
                    for j in range(k1 - k0):
                        np.copyto(gw, t[j])
                        if not identity:
                            np.subtract(gw, mw, out=dw)
                            acc[0, k0 + j] += dw @ dw
                        acc[1, k0 + j] += gw @ gw
                        acc[2, k0 + j] += gw @ mw
            if identity:
                acc[0] = acc[1] - 2 * acc[2] + full2
        full_norm = float(np.sqrt(full2))
        norm = np.sqrt(acc[1])
        return dict(distance=np.sqrt(acc[0]), norm=norm, full_norm=full_norm, cosine=acc[2] / (norm * full_norm))
    return run


if __name__ == "__main__" and os.environ.get("ROUND3") and not os.environ.get("ROUND4"):
    V2 = {
        "raw read": raw,
        "reduce_shard (current)": lambda: reduce_shard(path),
        "F mmap all 128K": reduce_F(1 << 17),
        "F mmap all 256K": reduce_F(1 << 18),
        "F identity 256K": reduce_F(1 << 18, identity=True),
        "H h5 tiles 128K": reduce_H(1 << 17),
        "H h5 tiles 256K": reduce_H(1 << 18),
        "H h5 tiles 512K": reduce_H(1 << 19),
        "H identity 256K": reduce_H(1 << 18, identity=True),
    }
    for name, fn in V2.items():
        r = fn()
        if isinstance(r, dict):
            worst = max(float(np.max(np.abs(r[k] / REF[k] - 1))) for k in ("distance", "norm", "cosine"))
            print(f"{name}: worst rel err vs float64 brute force {worst:.1e}")
    times = {n: [] for n in V2}; cpu = {n: [] for n in V2}
    names = list(V2)
    for r in range(reps):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter(); c0 = time.process_time(); V2[n](); times[n].append(time.perf_counter() - t0); cpu[n].append(time.process_time() - c0)
    raw_med = statistics.median(times["raw read"])
    for n, t in times.items():
        med, mn = statistics.median(t), min(t)
        print(f"{n:26s} median {med*1e3:7.1f} ms  min {mn*1e3:7.1f} ms  {FILE_BYTES/1e6/med:6.0f} MB/s  vs raw {raw_med/med:.2f}  cpu med {statistics.median(cpu[n])*1e3:7.1f} ms (min-ratio {min(times['raw read'])/mn:.2f})")


if __name__ == "__main__" and os.environ.get("ROUND4"):
    V2 = {
        "raw read": raw,
        "reduce_shard (current)": lambda: reduce_shard(path),
        "F direct 256K": reduce_F(1 << 18),
        "F direct 256K populate": reduce_F(1 << 18, populate=True),
        "F direct 256K 2thr": reduce_F(1 << 18, threads=2),
        "F identity 256K": reduce_F(1 << 18, identity=True),
        "F identity 256K populate": reduce_F(1 << 18, identity=True, populate=True),
        "F identity 256K 2thr": reduce_F(1 << 18, identity=True, threads=2),
    }
    times = {n: [] for n in V2}; cpu = {n: [] for n in V2}
    names = list(V2)
    for name, fn in V2.items():
        fn()
    for r in range(reps):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter(); c0 = time.process_time(); V2[n](); times[n].append(time.perf_counter() - t0); cpu[n].append(time.process_time() - c0)
    raw_med = statistics.median(times["raw read"])
    for n, t in times.items():
        med, mn = statistics.median(t), min(t)
        print(f"{n:26s} median {med*1e3:7.1f} ms  min {mn*1e3:7.1f} ms  {FILE_BYTES/1e6/med:6.0f} MB/s  vs raw {raw_med/med:.2f}  cpu med {statistics.median(cpu[n])*1e3:7.1f} ms (min-ratio {min(times['raw read'])/mn:.2f})")
