"""The compiled passes of the reduction (bestbatch.distances), apart so that a job that reduces a shard of
one block (by numpy) never imports numba."""

import numba
import numpy as np

FASTMATH = {"reassoc", "contract"}  # lets the sums run as SIMD partial sums; never lowers precision


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
def _segment(g, m):
    """(||g - m||^2, ||g||^2, g . m) of one contiguous slice, g widened to float64 exactly."""
    dist2 = norm2 = dot = 0.0
    for i in range(g.shape[0]):
        x = np.float64(g[i])
        d = x - m[i]
        dist2 += d * d
        norm2 += x * x
        dot += x * m[i]
    return dist2, norm2, dot


@numba.njit(nogil=True, cache=True, fastmath=FASTMATH)
def _accumulate(rows, lo, m, starts, layers, sums, segment_sums):
    """One pass over block [lo, lo + len(m)) of every row k of rows: sums[k] = (||g - m||^2, ||g||^2,
    g . m) over the block, and segment_sums[k, s] = ||g - m||^2 over its segment s = [starts[s],
    starts[s + 1]) (block-relative; tensor layers[s]).

    Every sum is float64; only the order of the additions within a segment is left to the compiler
    (SIMD partial sums, as in any BLAS dot product). The block's distance is the sum of its segments'
    sums, so sum_l of a row's per-tensor sums equals its distance to float64 rounding. (Each segment
    goes through _segment as a contiguous slice: a loop over range(starts[s], starts[s + 1]) here does
    not vectorise.)
    """
    for k in range(rows.shape[0]):
        dist2 = norm2 = dot = 0.0
        for s in range(layers.shape[0]):
            a, b = starts[s], starts[s + 1]
            d2, n2, gm = _segment(rows[k, lo + a : lo + b], m[a:b])
            segment_sums[k, s] = d2
            dist2 += d2
            norm2 += n2
            dot += gm
        sums[k, 0] = dist2
        sums[k, 1] = norm2
        sums[k, 2] = dot


@numba.njit(nogil=True, cache=True, fastmath=FASTMATH)
def _dot(a, b):
    """a . b of two contiguous slices, each value widened to float64 exactly."""
    s = 0.0
    for i in range(a.shape[0]):
        s += np.float64(a[i]) * np.float64(b[i])
    return s


@numba.njit(nogil=True, cache=True, fastmath=FASTMATH)
def _gram_pairs(rows, lo, hi, width, out):
    """out[i, j] += rows[i, lo:hi] . rows[j, lo:hi] for every pair, in slices of `width` columns (the K rows'
    slice stays in cache while every pair's dot product reads it), filled in symmetrically. For few rows, where
    a BLAS product of a K x width matrix with its transpose is slow (K = 5: a quarter of this speed)."""
    k_rows = rows.shape[0]
    part = np.zeros((k_rows, k_rows))
    for a in range(lo, hi, width):
        b = min(a + width, hi)
        for i in range(k_rows):
            for j in range(i, k_rows):
                part[i, j] += _dot(rows[i, a:b], rows[j, a:b])
    for i in range(k_rows):
        for j in range(i, k_rows):
            out[i, j] += part[i, j]
            if j != i:
                out[j, i] = out[i, j]
