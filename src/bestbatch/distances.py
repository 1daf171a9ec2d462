"""Distances of mini-batch gradients to the full gradient: D[e, k] = ||g_k - g_bar||_2.

g_bar = (1/K) sum_k g_k is the full-batch gradient at the epoch-start parameters (paper, eq. 3 with
equal batch sizes). Everything is accumulated in float64: a float32 norm over 11M elements is off by
~4e-4 relative, which is the size of the differences between neighbouring batches late in training.
"""
import h5py
import numpy as np
import torch

BLOCK = 1 << 20  # elements per block: float32 rows are read and widened a block at a time


def batch_distances(gradients):
    """Brute-force reference on a (K, P) array, all in float64."""
    g = np.asarray(gradients, dtype=np.float64)
    full = g.mean(0)
    norm = np.linalg.norm(g, axis=1)
    full_norm = np.linalg.norm(full)
    return dict(distance=np.linalg.norm(g - full, axis=1), norm=norm, full_norm=full_norm,
                cosine=g @ full / (norm * full_norm))


def reduce_shard(path, progress=None):
    """Stream a shard once, row by row, and return the distances, norms and cosines in float64.

    The shard carries the float64 sum of its rows (kept during training), so g_bar is known before
    the first row is read.
    """
    with h5py.File(path, "r") as f:
        dset = f["gradients"]
        k_rows, n_params = dset.shape
        full = torch.from_numpy(f["gradient_sum"][:] / k_rows)
        full_norm = float(torch.linalg.vector_norm(full))
        dist2, norm2, dot = np.zeros(k_rows), np.zeros(k_rows), np.zeros(k_rows)
        row = np.empty(n_params, dtype=dset.dtype)
        row_t = torch.from_numpy(row)
        for k in range(k_rows):
            dset.read_direct(row, np.s_[k])
            for lo in range(0, n_params, BLOCK):
                g = row_t[lo:lo + BLOCK].to(torch.float64)
                m = full[lo:lo + BLOCK]
                d = g - m
                dist2[k] += float(d.dot(d))
                norm2[k] += float(g.dot(g))
                dot[k] += float(g.dot(m))
            if progress:
                progress(k)
    norm = np.sqrt(norm2)
    return dict(distance=np.sqrt(dist2), norm=norm, full_norm=full_norm, cosine=dot / (norm * full_norm))
