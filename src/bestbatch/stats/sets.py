"""Sets of batches on the claims page: does a paper's region, taken as one set of batches, approximate the full
gradient better than random sets of the same size? (bestbatch.sets answers each set exactly from the Gram matrix.)

A set S of m batches misses g_bar by ||mean_S g - g_bar||^2 = 1_S' C 1_S / m^2 (C: the centred Gram matrix), and
over random sets of m that has mean (K - m) / (m (K - 1)) tr(C) / K. Each epoch's C is divided by tr(C) / K, so
that every epoch counts alike whatever its gradient scale; those are averaged over the phase's epochs of each seed.
The statistic is half the log of the region's mean square error over the random sets' mean (the log of a ratio of
root mean squares: negative when the region is the better set), on the seeds' average. Its null relabels batch
positions as the claims do (one relabelling shared by every seed and epoch of a phase, or one per seed): the
relabelled region is a random set of the same size, so the test is exact when positions are exchangeable.
"""

import numpy as np

from ..sets import centred


def normalised_phase_gram(grams):
    """The mean over epochs of C_e / (tr(C_e) / K) for one seed's Gram matrices of a phase (E, K, K) -> (K, K);
    epochs where every g_k equals g_bar (tr C = 0) are left out (NaN where none is left)."""
    C = centred(grams)
    K = C.shape[-1]
    scale = np.trace(C, axis1=-2, axis2=-1) / K
    keep = scale > 0
    if not keep.any():
        return np.full((K, K), np.nan)
    return (C[keep] / scale[keep, None, None]).mean(0)


def _ratio(quad, m, K):
    """Half the log of quad (the set's mean square error per unit tr(C) / K) over the random sets' mean at size m."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.5 * np.log(np.maximum(quad, 0.0) / ((K - m) / (m * (K - 1))))


def set_statistic(Cs, mask):
    """Half the log of the region's mean square error over the random sets' (see the module's docstring), on the
    mean over seeds of Cs (S, K, K) (each seed's normalised_phase_gram); mask (K,) bool, 0 < m < K."""
    w = np.asarray(mask, dtype=np.float64)
    m, K = w.sum(), w.size
    return float(_ratio(w @ np.mean(Cs, 0) @ w / m**2, m, K))


def set_test(Cs, mask, perm):
    """(statistic, its null (n,)) of a region `mask` (K,) against random sets of the same size, from the
    relabellings perm (n, U, K) of claims.analyse_study: the relabelled region mask[perm] is a random set of the
    same size; perm (n, 1, K) or a zero stride relabels the seeds' mean matrix once (the shared scheme), else each
    seed is relabelled on its own and the statistic is that of the seeds' mean.

    Exact when positions are exchangeable. Not studentized: where a region's batches are no better a set on average
    but far more variable in size than the rest's, it rejects more often than alpha (tests/test_set_claims.py
    measures how much; the rows are exploratory, never verdicts)."""
    mask = np.asarray(mask, dtype=bool)
    m, K = int(mask.sum()), mask.size
    Cs = np.asarray(Cs, dtype=np.float64)
    if perm.shape[1] == 1 or perm.strides[1] == 0:
        W = mask[perm[:, 0]].astype(np.float64)  # (n, K)
        quad = np.einsum("nk,nk->n", W @ Cs.mean(0), W)
    else:
        quad = np.zeros(perm.shape[0])
        for s in range(perm.shape[1]):
            W = mask[perm[:, s]].astype(np.float64)
            quad += np.einsum("nk,nk->n", W @ Cs[s], W)
        quad /= perm.shape[1]
    return set_statistic(Cs, mask), _ratio(quad / m**2, m, K)
