"""Scratch (to be deleted): the proposed reduce_shard + contiguous shard layout, checked and timed."""
import os
import statistics
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch

import bestbatch.shards as shards
from bestbatch.distances import batch_distances, reduce_shard

BLOCK = 1 << 17  # elements per block: the float64 buffers (1 MiB each) stay in cache while all K rows pass


def gradient_rows(f):
    """The (K, P) gradients, indexable as rows[k, lo:hi]: a zero-copy view of the page cache when the
    dataset is contiguous and unfiltered, else the h5py dataset itself (one read per block)."""
    dset = f["gradients"]
    offset = dset.id.get_offset()
    if dset.chunks is None and offset is not None:
        return np.memmap(f.filename, dtype=dset.dtype, mode="r", offset=offset, shape=dset.shape)
    return dset


def reduce_shard_proposed(path, progress=None):
    with h5py.File(path, "r") as f:
        rows, total = gradient_rows(f), f["gradient_sum"]
        k_rows, n_params = rows.shape
        dist2, norm2, dot = np.zeros(k_rows), np.zeros(k_rows), np.zeros(k_rows)
        full2 = 0.0
        m_buf, g_buf, d_buf = np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK)
        # blocks of parameters outside, rows inside: each block of g_bar is made once and reused K times
        for lo in range(0, n_params, BLOCK):
            hi = min(lo + BLOCK, n_params)
            m, g, d = m_buf[:hi - lo], g_buf[:hi - lo], d_buf[:hi - lo]
            total.read_direct(m, np.s_[lo:hi])
            m /= k_rows
            full2 += m @ m
            for k in range(k_rows):
                np.copyto(g, rows[k, lo:hi])  # float32 -> float64, exact
                np.subtract(g, m, out=d)
                dist2[k] += d @ d
                norm2[k] += g @ g
                dot[k] += g @ m
            if progress:
                progress(hi / n_params)
        del rows
    norm, full_norm = np.sqrt(norm2), float(np.sqrt(full2))
    return dict(distance=np.sqrt(dist2), norm=norm, full_norm=full_norm, cosine=dot / (norm * full_norm))


def write_shard(path, g, contiguous):
    orig = shards.chunk_shape
    if contiguous:  # what the proposed ShardWriter does: chunks=None
        shards.chunk_shape = lambda n, i: None
    try:
        w = shards.ShardWriter(path, g.shape[0], g.shape[1], "float32")
        for k in range(g.shape[0]):
            w.put(k, torch.from_numpy(g[k]))
        w.finish(dict(gradient_sum=g.astype(np.float64).sum(0)), {})
    finally:
        shards.chunk_shape = orig


def check(g, d):
    want = batch_distances(g)
    for layout in ("contiguous", "chunked"):
        p = d / f"check_{layout}.h5"
        write_shard(p, g, layout == "contiguous")
        got = reduce_shard_proposed(p)
        for name in ("distance", "norm", "cosine"):
            np.testing.assert_allclose(got[name], want[name], rtol=1e-12)
        np.testing.assert_allclose(got["full_norm"], want["full_norm"], rtol=1e-12)
        p.unlink()


def raw(path):
    buf = bytearray(16 << 20); v = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(v):
            pass


if __name__ == "__main__":
    torch.set_num_threads(1)
    D = Path("/tmp/bb_scratch"); D.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    # the existing unit test's case, plus K=1 and a row shorter than one block
    check((rng.standard_normal((5, 2_500_001)) * rng.uniform(0.1, 10, (5, 1))).astype(np.float32), D)
    check(rng.standard_normal((1, 1000)).astype(np.float32), D)
    check((rng.standard_normal((3, 300_000)) * 1e-3 + 1).astype(np.float32), D)  # g_k close to g_bar
    print("proposed reduce_shard matches the float64 brute force (rtol 1e-12), contiguous and chunked")
    K, P = int(sys.argv[1]) if len(sys.argv) > 1 else 4, 11_173_962
    g = (rng.standard_normal((K, P), dtype=np.float32) * rng.uniform(0.1, 10, (K, 1)).astype(np.float32))
    g += rng.standard_normal(P, dtype=np.float32) * 3
    paths = {}
    for layout in ("contiguous", "chunked"):
        paths[layout] = D / f"prop_{layout}_{K}.h5"
        t0 = time.perf_counter()
        write_shard(paths[layout], g, layout == "contiguous")
        print(f"write {layout}: {time.perf_counter() - t0:.2f} s, {paths[layout].stat().st_size / 1e6:.0f} MB")
    del g
    V = {
        "raw read (chunked file)": lambda: raw(paths["chunked"]),
        "raw read (contiguous file)": lambda: raw(paths["contiguous"]),
        "current reduce_shard, chunked": lambda: reduce_shard(paths["chunked"]),
        "current reduce_shard, contiguous": lambda: reduce_shard(paths["contiguous"]),
        "proposed, contiguous (memmap)": lambda: reduce_shard_proposed(paths["contiguous"]),
        "proposed, chunked (h5py fallback)": lambda: reduce_shard_proposed(paths["chunked"]),
    }
    for fn in V.values():
        fn()
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    times = {n: [] for n in V}
    names = list(V)
    for r in range(reps):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter(); V[n](); times[n].append(time.perf_counter() - t0)
    raw_med = {l: statistics.median(times[f"raw read ({l} file)"]) for l in ("chunked", "contiguous")}
    for n, t in times.items():
        l = "contiguous" if "contiguous" in n else "chunked"
        med = statistics.median(t)
        print(f"{n:36s} median {med * 1e3:7.1f} ms  min {min(t) * 1e3:7.1f}  {paths[l].stat().st_size / 1e6 / med:6.0f} MB/s  vs raw {raw_med[l] / med:.2f}")
