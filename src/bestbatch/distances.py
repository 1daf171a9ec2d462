"""Distances of mini-batch gradients to the full gradient: D[e, k] = ||g_k - g_bar||_2, per tensor too.

g_bar = (1/K) sum_k g_k is the full-batch gradient at the epoch-start parameters (paper, eq. 3 with
equal batch sizes). Everything is accumulated in float64: a float32 norm over 11M elements is off by
~4e-4 relative, which is the size of the differences between neighbouring batches late in training.

The per-epoch statistics of the same numbers (`noise_scale`, `gradient_diversity`) are small pure
functions at the end.
"""

import ctypes
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np

from .formats import shard_rows

# float32 row slices of 2 MiB and a float64 g_bar block of 4 MiB: g_bar stays in cache while all K rows pass
BLOCK = 1 << 19
# a shard of one block (at most BLOCK parameters) is reduced by numpy, KERNEL_ROWS rows at a time: the compiled
# passes (bestbatch._kernels) would cost a job more to load (numba's import and its cache, ~0.4 s) than to run
KERNEL_ROWS = 16
# the Gram matrix widens all K rows' slice of a block to float64 in a buffer of about GRAM_BYTES, then one BLAS
# product (syrk) adds the slice's K x K dot products: the buffer stays in cache, the product runs at BLAS speed
GRAM_BYTES = 1 << 22
# ... except for few rows, where a BLAS product of K rows is slow: up to GRAM_PAIRS_ROWS rows of a memory map,
# a compiled pass (bestbatch._kernels._gram_pairs) takes every pair's dot product from GRAM_PAIRS_WIDTH columns in
# cache (5 rows: 4x BLAS's speed; 64 rows: 0.9x)
GRAM_PAIRS_ROWS, GRAM_PAIRS_WIDTH = 40, 4096


class NonFiniteGradient(ValueError):
    """A gradient row holds NaN or inf: there is no distance to compute."""


def layer_bounds(layer_offsets, n_params):
    """[o_0 = 0, o_1, ..., o_{L-1}, P]: tensor l is the flat slice [bounds[l], bounds[l + 1]).

    layer_offsets: each tensor's first index in the flat vector, in order (the shard's layout_offset);
    None: the whole vector as one tensor."""
    offsets = np.zeros(1, np.int64) if layer_offsets is None else np.asarray(layer_offsets, dtype=np.int64)
    if (
        offsets.ndim != 1
        or offsets.size == 0
        or offsets[0] != 0
        or np.any(np.diff(offsets) < 0)
        or offsets[-1] > n_params
    ):
        raise ValueError(
            f"layer offsets must start at 0 and increase up to the {n_params} parameters, "
            f"got {offsets[:5].tolist()}{' ...' if offsets.size > 5 else ''} ({offsets.size} tensors)"
        )
    return np.append(offsets, np.int64(n_params))


def batch_distances(gradients, layer_offsets=None):
    """Brute-force reference on a (K, P) array, all in float64; layer_distance (K, L) per tensor, and gram (K, K),
    G[i, j] = g_i . g_j."""
    g = np.asarray(gradients, dtype=np.float64)
    full = g.mean(0)
    norm = np.linalg.norm(g, axis=1)
    full_norm = np.linalg.norm(full)
    diff = g - full
    bounds = layer_bounds(layer_offsets, g.shape[1])
    layer = np.stack([np.linalg.norm(diff[:, a:b], axis=1) for a, b in zip(bounds[:-1], bounds[1:])], 1)
    return dict(
        distance=np.linalg.norm(diff, axis=1),
        norm=norm,
        full_norm=full_norm,
        cosine=g @ full / (norm * full_norm),
        layer_distance=layer,
        gram=g @ g.T,
    )


def _segments(bounds, lo, hi):
    """The tensors cut into block [lo, hi): (starts relative to lo (S + 1,), tensor of each segment (S,))."""
    inner = bounds[(bounds > lo) & (bounds < hi)]
    starts = np.concatenate([[lo], inner, [hi]]).astype(np.int64)
    layers = np.searchsorted(bounds, starts[:-1], side="right").astype(np.int64) - 1  # empty tensors get no segment
    return starts - lo, layers


def _gram_block(rows, lo, hi, buffers):
    """The rows' Gram matrix over columns [lo, hi): sum over slices of about GRAM_BYTES of x x^T, x the slice of
    every row widened to float64 (exactly) in this thread's buffer (`buffers`, thread-local), in slice order."""
    k_rows = rows.shape[0]
    width = max(64, min(hi - lo, GRAM_BYTES // (8 * k_rows)))
    x = getattr(buffers, "x", None)
    if x is None or x.shape != (k_rows, width):
        x = buffers.x = np.empty((k_rows, width))
    part = np.zeros((k_rows, k_rows))
    for a in range(lo, hi, width):
        b = min(a + width, hi)
        if b - a < width:
            x = np.empty((k_rows, b - a))
        x[...] = rows[:, a:b]  # an h5py dataset reads the slice here
        part += x @ x.T  # numpy calls syrk for a product with its own transpose: symmetric, half the work
    return part


def _block(rows, total, bounds, lo, hi, buffers, gram=False):
    """Block [lo, hi) of g_bar and of every row: (||g_bar||^2 over it, its tensors (S,), sums (K, 3) as in
    _accumulate, segment sums (K, S), and with `gram` the rows' Gram matrix over it (K, K), else None).
    buffers: a thread-local holder of this thread's g_bar block and Gram buffer."""
    k_rows = rows.shape[0]
    m = getattr(buffers, "m", None)
    if m is None:
        m = buffers.m = np.empty(min(BLOCK, rows.shape[1]))
    m = m[: hi - lo]
    from ._kernels import _accumulate, _mean_block

    full2 = _mean_block(total[lo:hi], k_rows, m)
    starts, layers = _segments(bounds, lo, hi)
    sums, segment_sums = np.empty((k_rows, 3)), np.empty((k_rows, len(layers)))
    if isinstance(rows, np.ndarray):  # a memory map: all K rows in one call, in place
        _accumulate(rows, lo, m, starts, layers, sums, segment_sums)
    else:  # an h5py dataset: one row's block at a time
        for k in range(k_rows):
            row = np.asarray(rows[k, lo:hi])[None]
            _accumulate(row, 0, m, starts, layers, sums[k : k + 1], segment_sums[k : k + 1])
    if not gram:
        return full2, layers, sums, segment_sums, None
    if isinstance(rows, np.ndarray) and k_rows <= GRAM_PAIRS_ROWS:
        from ._kernels import _gram_pairs

        products = np.zeros((k_rows, k_rows))
        _gram_pairs(rows, lo, hi, GRAM_PAIRS_WIDTH, products)
        return full2, layers, sums, segment_sums, products
    return full2, layers, sums, segment_sums, _gram_block(rows, lo, hi, buffers)


@cache
def _openblas():
    """(get, set) of the thread count of the OpenBLAS mapped into this process (numpy's), or None (not Linux, or
    another BLAS)."""
    try:
        paths = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if "openblas" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", "_64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get and set_:
                    set_.argtypes = [ctypes.c_int]
                    return get, set_
    return None


@contextmanager
def blas_threads(n, active=True):
    """numpy's OpenBLAS runs its products in `n` threads inside the block (where it can be set: else unchanged),
    and as before after it."""
    blas = _openblas() if active else None
    if blas is None:
        yield
        return
    get, set_ = blas
    before = get()
    set_(int(n))
    try:
        yield
    finally:
        set_(before)


def _one_blas_thread(active):
    """While the Gram matrix's BLAS products run, numpy's OpenBLAS runs each in one thread. The reduction splits
    its blocks over its own threads; otherwise every call from each of them starts OPENBLAS_NUM_THREADS threads of
    its own (Snakemake sets it to the job's threads), twice the cores, at half the speed when quiet and a tenth
    under load (benchmarks/results.md). And OpenBLAS's products do not give the same bits on 1 and 2 threads, so
    one thread always keeps the Gram matrix the same for any `threads` and any OPENBLAS_NUM_THREADS."""
    return blas_threads(1, active)


def _blocks(rows, total, bounds, progress, threads, gram=False):
    """The blocks, `threads` at a time (the compiled passes release the GIL), added up here in block
    order: the same additions in the same order as in one thread, so the same bits for any `threads`."""
    k_rows, n_params = rows.shape
    spans = [(lo, min(lo + BLOCK, n_params)) for lo in range(0, n_params, BLOCK)]
    if len(spans) < 2 or not isinstance(rows, np.ndarray):  # one block, or h5py (it reads in one thread)
        threads = 1
    elif threads is None:
        import numba

        threads = numba.get_num_threads()
    buffers = threading.local()
    pool = ThreadPoolExecutor(min(threads, len(spans))) if threads > 1 else None
    return _reduce_blocks(rows, total, bounds, progress, spans, pool, buffers, gram)


def _reduce_blocks(rows, total, bounds, progress, spans, pool, buffers, gram):
    """_blocks' loop: the blocks in `pool` (None: here), added up in block order."""
    k_rows = rows.shape[0]
    sums = np.zeros((k_rows, 3))  # per row: ||g_k - g_bar||^2, ||g_k||^2, g_k . g_bar
    layer_sums = np.zeros((k_rows, len(bounds) - 1))  # per row and tensor: ||g_k - g_bar||^2
    full2 = 0.0
    products = np.zeros((k_rows, k_rows)) if gram else None
    try:
        if pool is None:
            parts = (_block(rows, total, bounds, lo, hi, buffers, gram) for lo, hi in spans)
        else:
            futures = [pool.submit(_block, rows, total, bounds, lo, hi, buffers, gram) for lo, hi in spans]
            parts = (future.result() for future in futures)
        for block, (block_full2, layers, block_sums, segment_sums, block_gram) in enumerate(parts, 1):
            full2 += block_full2
            if gram:
                products += block_gram
            sums += block_sums
            layer_sums[:, layers] += segment_sums  # a block's segments are distinct tensors
            if progress:
                progress(block)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return sums, layer_sums, full2, products


def _numpy_sums(rows, total, bounds, gram=False):
    """_blocks for a shard of one block, by numpy: KERNEL_ROWS rows at a time widened to float64, each
        tensor's ||g_k - g_bar||^2 summed by einsum, their sum the row's distance^2 (as the compiled pass adds
        its segments). The same float64 sums in another order: equal to the compiled ones to rounding. The Gram
    matrix, with `gram`, by BLAS products of the same slices as _blocks makes it for more than GRAM_PAIRS_ROWS rows
    (the same bits there; for fewer, _blocks' compiled pair pass agrees to rounding)."""
    k_rows = rows.shape[0]
    m = np.asarray(total[:], dtype=np.float64) / k_rows
    sums, layer_sums = np.empty((k_rows, 3)), np.zeros((k_rows, len(bounds) - 1))
    for k0 in range(0, k_rows, KERNEL_ROWS):
        g = np.asarray(rows[k0 : k0 + KERNEL_ROWS], dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):  # NaN or inf rows are named after the sums
            d = g - m
        for layer, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            if b > a:
                layer_sums[k0 : k0 + len(g), layer] = np.einsum("ij,ij->i", d[:, a:b], d[:, a:b])
        sums[k0 : k0 + len(g), 0] = layer_sums[k0 : k0 + len(g)].sum(1)
        sums[k0 : k0 + len(g), 1] = np.einsum("ij,ij->i", g, g)
        sums[k0 : k0 + len(g), 2] = g @ m
    products = None
    if gram:  # after the sums, whose BLAS products keep the threads they had (the same bits with or without gram)
        with _one_blas_thread(True):
            products = _gram_block(rows, 0, rows.shape[1], threading.local())
    return sums, layer_sums, float(m @ m), products


def reduce_rows(rows, total, progress=None, layer_offsets=None, threads=None, kernel="auto", gram=False):
    """Distances, norms and cosines of the K rows to their mean, and each tensor's share, in float64.

    rows: (K, P) array-like of g_k (float32 or float64; a memory map or an h5py dataset reads block by
    block); total: (P,) float64 sum of the rows (kept during training), so g_bar is known before the
    first row is read. Parameter blocks run outside, rows inside: each block of g_bar is made once
    and stays in cache while the K row blocks stream past it through one fused compiled pass (no
    float64 copies of the rows); the tensor boundaries inside a block cut that pass into segments.
    layer_offsets: each parameter tensor's first index (None: one tensor). progress(blocks_done) is
    called after each block, in order. threads: how many blocks are reduced at once (a memory map of
    more than one block only; None: numba.get_num_threads(), which follows numba.set_num_threads and
    NUMBA_NUM_THREADS); the result is the same to the bit for any number. kernel: "compiled" (the numba
    passes), "numpy" (one block only) or "auto" (numpy for a shard of one block, where loading the compiled
    passes costs more than they save; a network's shards are all as wide, so they all take the same one).

    gram: also the K x K Gram matrix G[i, j] = g_i . g_j in float64, from the same blocks (each block's rows
    widened to float64 exactly in slices of about GRAM_BYTES, one BLAS product per slice, or for few rows every
    pair's dot product by a compiled pass; the slices and blocks added in order: the same bits for any
    `threads`); every set of batches is answered from it
    (bestbatch.sets). It costs K / 2 multiply-adds per value read, against the distances' three.

    Returns distance, norm, cosine (K,), full_norm, and layer_distance (K, L): ||g_k - g_bar|| over
    tensor l's slice alone, so that sum_l layer_distance[k, l]^2 = distance[k]^2; with `gram`, gram (K, K).
    Raises NonFiniteGradient naming the first batch (0-based, in the fixed order) with NaN or inf.
    """
    bounds = layer_bounds(layer_offsets, rows.shape[1])
    if kernel not in ("auto", "numpy", "compiled"):
        raise ValueError(f"kernel must be auto, numpy or compiled, got {kernel!r}")
    if kernel == "numpy" and rows.shape[1] > BLOCK:
        raise ValueError(f"the numpy reduction takes one block ({BLOCK} parameters), not {rows.shape[1]}")
    if kernel == "numpy" or (kernel == "auto" and rows.shape[1] <= BLOCK):
        sums, layer_sums, full2, products = _numpy_sums(rows, total, bounds, gram)
        if progress:
            progress(1)
    else:
        with _one_blas_thread(gram):  # the compiled passes use no BLAS: only the Gram matrix's products
            sums, layer_sums, full2, products = _blocks(rows, total, bounds, progress, threads, gram)
    dist2, norm2, dot = sums.T
    bad = np.flatnonzero(~np.isfinite(norm2))  # a sum of squared float32 values cannot overflow float64
    if bad.size:
        raise NonFiniteGradient(
            f"the gradient of batch {int(bad[0])} (0-based, in the fixed order) "
            f"contains NaN or inf ({bad.size} of {len(norm2)} batches do)"
        )
    norm, full_norm = np.sqrt(norm2), float(np.sqrt(full2))
    result = dict(
        distance=np.sqrt(dist2),
        norm=norm,
        full_norm=full_norm,
        cosine=dot / (norm * full_norm),
        layer_distance=np.sqrt(layer_sums),
    )
    if gram:
        result["gram"] = products
    return result


def reduce_shard(path, progress=None, threads=None, kernel="auto", gram=False):
    """reduce_rows over a gradient shard, read once (memory-mapped where it is one byte range), per
    parameter tensor of the shard's layout (formats.read_shard_layout; its names and offsets are read
    in the same open as the rows' places), in `threads` threads (None: numba.get_num_threads()); the
    result also holds layer_name (L,), and with `gram` the Gram matrix (K, K)."""
    with shard_rows(path, tensors=True) as (rows, total, (names, offsets)):
        try:
            result = reduce_rows(
                rows, total, progress, layer_offsets=offsets, threads=threads, kernel=kernel, gram=gram
            )
        except NonFiniteGradient as exc:
            raise NonFiniteGradient(f"{path}: {exc}") from None
    return dict(result, layer_name=names)


# --- per-epoch statistics of the distances -------------------------------------------------------------


def noise_scale(distance, full_norm, batch_size):
    """B_simple = B * mean_k ||g_k - g_bar||^2 / ||g_bar||^2 (McCandlish et al. 2018), in examples.

    distance (..., K), full_norm (...,): one value per epoch. B * ||g_k - g_bar||^2 estimates the trace
    of the per-example gradient covariance, so B_simple is the batch size at which the gradient noise
    equals the signal."""
    distance = np.asarray(distance, dtype=np.float64)
    return batch_size * np.mean(distance**2, axis=-1) / np.asarray(full_norm, dtype=np.float64) ** 2


def gradient_diversity(norm, full_norm):
    """sum_k ||g_k||^2 / ||sum_k g_k||^2 (Yin et al. 2018), dimensionless, from 1/K (all g_k equal) up.

    norm (..., K), full_norm (...,): sum_k g_k = K g_bar, so the denominator is (K ||g_bar||)^2."""
    norm = np.asarray(norm, dtype=np.float64)
    return np.sum(norm**2, axis=-1) / (norm.shape[-1] * np.asarray(full_norm, dtype=np.float64)) ** 2
