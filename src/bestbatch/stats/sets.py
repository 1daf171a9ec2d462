"""Sets of batches on the claims page: does a paper's region, taken as one set of batches, approximate the full
gradient better than random sets of the same size? (bestbatch.sets answers each set exactly from the Gram matrix.)

A set S of m batches misses g_bar by ||mean_S g - g_bar||^2 = 1_S' C 1_S / m^2 (C: the centred Gram matrix), and
over random sets of m that has mean (K - m) / (m (K - 1)) tr(C) / K. Each epoch's C is divided by tr(C) / K, so
that every epoch counts alike whatever its gradient scale; those are averaged over the phase's epochs of each seed.
The statistic is half the log of the region's mean square error over the random sets' mean (the log of a ratio of
root mean squares: negative when the region is the better set), on the seeds' average. The test relabels batch
positions as the claims do (one relabelling shared by every seed and epoch of a phase, or one per seed): the
relabelled region is a random set of the same size, so it is exact when positions are exchangeable; what it
relabels is the difference from random sets' mean divided by a standard deviation that gives the region and the
rest each their own spread (`studentized`), so that a region whose batches vary more in size is not taken for a
better or worse set (tests/test_set_claims.py measures how far that holds).
"""

import numpy as np

from ..sets import normalised_centred


def normalised_phase_gram(grams):
    """The mean over epochs of C_e / (tr(C_e) / K) for one seed's Gram matrices of a phase (E, K, K) -> (K, K);
    epochs where every g_k equals g_bar (tr C = 0) are left out (NaN where none is left)."""
    C = normalised_centred(grams)
    keep = np.trace(C, axis1=-2, axis2=-1) > 0
    if not keep.any():
        return np.full(C.shape[-2:], np.nan)
    return C[keep].mean(0)


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


def studentized(W, C):
    """(q_S - E q) / sd of each set of W (n, K) of 0/1 (all of size m, 2 <= m <= K - 2) on the matrix C (K, K): q_S
    the set's mean square error 1_S' C 1_S / m^2, E q = (K - m) / (m (K - 1)) tr(C) / K its mean over random sets.

    The standard deviation is that of ||sum_k c_k y_k||^2 for independent deviations y_k (C's Gram vectors; c_k =
    1/m - 1/K in S, -1/K outside), each group with its own spread, as a Welch test lets each group have its own
    variance: sum_k c_k^4 Var ||y_k||^2 + 2 sum_{j != k} c_j^2 c_k^2 E (y_j . y_k)^2, with Var ||y||^2 the
    variance of C's diagonal within the set and within the rest, and E (y_j . y_k)^2 the mean of C_jk^2 over the
    pairs within the set, across, and within the rest. A region whose batches vary more in size than the rest's has
    its own, larger, standard deviation, so it is not taken for a better or worse set by chance."""
    W = np.asarray(W, dtype=np.float64)
    K = W.shape[1]
    m = W[0].sum()
    rest = K - m
    Wc = 1.0 - W
    d = np.diagonal(C)
    d2, E2 = d * d, C * C
    q = np.einsum("nk,nk->n", W @ C, W) / m**2
    expected = (K - m) / (m * (K - 1)) * d.sum() / K

    def spread(w, size):  # the sample variance of C's diagonal over the members of w
        return (w @ d2 - (w @ d) ** 2 / size) / (size - 1)

    within = (np.einsum("nk,nk->n", W @ E2, W) - W @ d2) / (m * (m - 1))
    across = np.einsum("nk,nk->n", W @ E2, Wc) / (m * rest)
    outside = (np.einsum("nk,nk->n", Wc @ E2, Wc) - Wc @ d2) / (rest * (rest - 1))
    c_in, c_out = 1 / m - 1 / K, -1 / K
    var = (
        m * c_in**4 * spread(W, m)
        + rest * c_out**4 * spread(Wc, rest)
        + 2 * (m * (m - 1) * c_in**4 * within + 2 * m * rest * c_in**2 * c_out**2 * across)
        + 2 * rest * (rest - 1) * c_out**4 * outside
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, (q - expected) / np.sqrt(np.maximum(var, 0.0)), 0.0)


def set_test(Cs, mask, perm):
    """(statistic, studentized statistic, its null (n,)) of a region `mask` (K,) of 2 to K - 2 batches against
    random sets of the same size, from the relabellings perm (n, U, K) of claims.analyse_study: the relabelled
    region mask[perm] is a random set of the same size; perm (n, 1, K) or a zero stride relabels the seeds' mean
    matrix once (the shared scheme), else each seed is relabelled on its own and the studentized statistics are
    averaged over the seeds. The statistic is set_statistic (what the page prints); what is relabelled is the
    studentized one (`studentized`: each set's own spread), as the claims relabel a Welch-type contrast."""
    mask = np.asarray(mask, dtype=bool)
    m, K = int(mask.sum()), mask.size
    if not 2 <= m <= K - 2:
        raise ValueError(f"a set test needs 2 to K - 2 batches in the region, got {m} of {K}")
    Cs = np.asarray(Cs, dtype=np.float64)
    if perm.shape[1] == 1 or perm.strides[1] == 0:
        C = Cs.mean(0)
        observed = studentized(mask[None], C)[0]
        null = studentized(mask[perm[:, 0]], C)
    else:
        observed = np.mean([studentized(mask[None], C)[0] for C in Cs])
        null = np.mean([studentized(mask[perm[:, s]], C) for s, C in enumerate(Cs)], 0)
    return set_statistic(Cs, mask), float(observed), null
