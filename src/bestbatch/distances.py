"""Distances of mini-batch gradients to the full gradient: D[e, k] = ||g_k - g_bar||_2.

g_bar = (1/K) sum_k g_k is the full-batch gradient at the epoch-start parameters (paper, eq. 3 with
equal batch sizes). Everything is accumulated in float64: a float32 norm over 11M elements is off by
~4e-4 relative, which is the size of the differences between neighbouring batches late in training.
"""
import numba
import numpy as np

from .formats import shard_rows

# float32 row slices of 2 MiB and a float64 g_bar block of 4 MiB: g_bar stays in cache while all K rows pass
BLOCK = 1 << 19
FASTMATH = {"reassoc", "contract"}  # lets the sums run as SIMD partial sums; never lowers precision


class NonFiniteGradient(ValueError):
    """A gradient row holds NaN or inf: there is no distance to compute."""


def batch_distances(gradients):
    """Brute-force reference on a (K, P) array, all in float64."""
    g = np.asarray(gradients, dtype=np.float64)
    full = g.mean(0)
    norm = np.linalg.norm(g, axis=1)
    full_norm = np.linalg.norm(full)
    return dict(distance=np.linalg.norm(g - full, axis=1), norm=norm, full_norm=full_norm,
                cosine=g @ full / (norm * full_norm))


@numba.njit(nogil=True, cache=True, fastmath=FASTMATH)
def _mean_block(total, k_rows, m):
    """m = total / K (IEEE division, as numpy's), returning ||m||^2 in float64."""
    norm2 = 0.0
    for i in range(m.shape[0]):
        x = total[i] / k_rows
        m[i] = x
        norm2 += x * x
    return norm2


@numba.njit(nogil=True, cache=True, fastmath=FASTMATH)
def _accumulate(g, m, sums):
    """One pass over a row block: sums += (||g - m||^2, ||g||^2, g . m).

    g (float32 or float64) is widened to float64 exactly and every sum is float64; only the order of
    the additions is left to the compiler (SIMD partial sums, as in any BLAS dot product).
    """
    dist2 = norm2 = dot = 0.0
    for i in range(g.shape[0]):
        x = np.float64(g[i])
        d = x - m[i]
        dist2 += d * d
        norm2 += x * x
        dot += x * m[i]
    sums[0] += dist2
    sums[1] += norm2
    sums[2] += dot


def _blocks(rows, total, progress):
    k_rows, n_params = rows.shape
    sums = np.zeros((k_rows, 3))  # per row: ||g_k - g_bar||^2, ||g_k||^2, g_k . g_bar
    full2 = 0.0
    m_buf = np.empty(min(BLOCK, n_params))
    for block, lo in enumerate(range(0, n_params, BLOCK), 1):
        hi = min(lo + BLOCK, n_params)
        m = m_buf[:hi - lo]
        full2 += _mean_block(total[lo:hi], k_rows, m)
        for k in range(k_rows):
            _accumulate(rows[k, lo:hi], m, sums[k])
        if progress:
            progress(block)
    return sums, full2


def reduce_rows(rows, total, progress=None):
    """Distances, norms and cosines of the K rows to their mean, every sum in float64.

    rows: (K, P) array-like of g_k (float32 or float64; a memory map or an h5py dataset reads block by
    block); total: (P,) float64 sum of the rows (kept during training), so g_bar is known before the
    first row is read. Parameter blocks run outside, rows inside: each block of g_bar is made once
    and stays in cache while the K row blocks stream past it through one fused compiled pass (no
    float64 copies of the rows). progress(blocks_done) is called after each block.

    Raises NonFiniteGradient naming the first batch (0-based, in the fixed order) with NaN or inf.
    """
    sums, full2 = _blocks(rows, total, progress)
    dist2, norm2, dot = sums.T
    bad = np.flatnonzero(~np.isfinite(norm2))  # a sum of squared float32 values cannot overflow float64
    if bad.size:
        raise NonFiniteGradient(f"the gradient of batch {int(bad[0])} (0-based, in the fixed order) "
                                f"contains NaN or inf ({bad.size} of {len(norm2)} batches do)")
    norm, full_norm = np.sqrt(norm2), float(np.sqrt(full2))
    return dict(distance=np.sqrt(dist2), norm=norm, full_norm=full_norm, cosine=dot / (norm * full_norm))


def reduce_shard(path, progress=None):
    """reduce_rows over a gradient shard, read once (memory-mapped where it is one byte range)."""
    with shard_rows(path) as (rows, total):
        try:
            return reduce_rows(rows, total, progress)
        except NonFiniteGradient as exc:
            raise NonFiniteGradient(f"{path}: {exc}") from None
