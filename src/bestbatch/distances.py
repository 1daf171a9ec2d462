"""Distances of mini-batch gradients to the full gradient: D[e, k] = ||g_k - g_bar||_2.

g_bar = (1/K) sum_k g_k is the full-batch gradient at the epoch-start parameters (paper, eq. 3 with
equal batch sizes). Everything is accumulated in float64: a float32 norm over 11M elements is off by
~4e-4 relative, which is the size of the differences between neighbouring batches late in training.
"""
import h5py
import numpy as np

BLOCK = 1 << 17  # float64 buffers of 1 MiB stay in cache while all K rows pass


def batch_distances(gradients):
    """Brute-force reference on a (K, P) array, all in float64."""
    g = np.asarray(gradients, dtype=np.float64)
    full = g.mean(0)
    norm = np.linalg.norm(g, axis=1)
    full_norm = np.linalg.norm(full)
    return dict(distance=np.linalg.norm(g - full, axis=1), norm=norm, full_norm=full_norm,
                cosine=g @ full / (norm * full_norm))


def gradient_rows(f):
    """(K, P) gradients as rows[k, lo:hi]: a zero-copy memmap if contiguous, else the h5py dataset."""
    dset = f["gradients"]
    offset = dset.id.get_offset()
    if dset.chunks is None and offset is not None:
        return np.memmap(f.filename, dtype=dset.dtype, mode="r", offset=offset, shape=dset.shape)
    return dset


def reduce_shard(path, progress=None):
    """Stream a shard once and return the distances, norms and cosines, every sum in float64.

    The shard carries the float64 sum of its rows (kept during training), so g_bar is known before
    the first row is read. Parameter blocks run outside, rows inside: each block of g_bar is made once
    and reused K times, and the float64 buffers stay in cache. progress(blocks_done) is called after each block.
    """
    with h5py.File(path, "r") as f:
        rows, total = gradient_rows(f), f["gradient_sum"]
        k_rows, n_params = rows.shape
        dist2, norm2, dot = np.zeros(k_rows), np.zeros(k_rows), np.zeros(k_rows)
        full2 = 0.0
        m_buf, g_buf, d_buf = np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK)
        for block, lo in enumerate(range(0, n_params, BLOCK), 1):
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
                progress(block)
        del rows
    norm, full_norm = np.sqrt(norm2), float(np.sqrt(full2))
    return dict(distance=np.sqrt(dist2), norm=norm, full_norm=full_norm, cosine=dot / (norm * full_norm))
