"""Sets of batches, answered exactly from an epoch's batch Gram matrix G[i, j] = g_i . g_j (K x K, float64).

For a set S of m batches, ||mean_S g - g_bar||^2 = (1/m^2) 1_S' C 1_S with C the centred Gram matrix
C[i, j] = (g_i - g_bar) . (g_j - g_bar): no gradient is read again. From C:
- the greedy set: forward selection, each step adding the batch that makes the set's error smallest;
- the m individually closest batches (smallest ||g_k - g_bar||), which can be a poor set: they may all point
  the same way;
- any named set (the paper's regions: bestbatch.stats.REGIONS);
- random sets of m batches, the baseline every set is judged against: draws, and the exact mean square
  E ||mean_S g - g_bar||^2 = (K - m) / (m (K - 1)) mean_k ||g_k - g_bar||^2 (sampling without replacement);
- the effective rank of C (participation ratio of its eigenvalues, tr(C)^2 / ||C||_F^2): how many independent
  directions the batch gradients span, from 1 (all deviations along one line) to K - 1.
Errors are also given relative to the root mean square single-batch distance sqrt(mean_k D_k^2), so that epochs
of different gradient scale can be averaged: in those units random sets have root mean square error
sqrt((K - m) / (m (K - 1))) at every epoch. Pure functions of arrays: no files.
"""

import numpy as np


def centred(gram):
    """C = (I - J/K) G (I - J/K): the Gram matrix of the g_k - g_bar, for one (K, K) or a stack (..., K, K)."""
    G = np.asarray(gram, dtype=np.float64)
    row = G.mean(-1, keepdims=True)
    return G - row - np.swapaxes(row, -1, -2) + G.mean((-1, -2), keepdims=True)


def implied(gram):
    """What G implies for each batch: distance ||g_k - g_bar||, norm ||g_k||, cosine cos(g_k, g_bar), and
    full_norm ||g_bar||; equal to the reduction's own values to rounding (a test checks it)."""
    G = np.asarray(gram, dtype=np.float64)
    C = centred(G)
    norm = np.sqrt(np.diagonal(G, axis1=-2, axis2=-1))
    full_norm = np.sqrt(np.maximum(G.mean((-1, -2)), 0.0))
    return dict(
        distance=np.sqrt(np.maximum(np.diagonal(C, axis1=-2, axis2=-1), 0.0)),
        norm=norm,
        cosine=G.mean(-1) / (norm * np.asarray(full_norm)[..., None]),
        full_norm=full_norm,
    )


def cosines(gram):
    """cos(g_i, g_j) = G[i, j] / (||g_i|| ||g_j||), (..., K, K)."""
    G = np.asarray(gram, dtype=np.float64)
    n = np.sqrt(np.diagonal(G, axis1=-2, axis2=-1))
    return G / (n[..., :, None] * n[..., None, :])


def rms_distance(C):
    """sqrt(mean_k ||g_k - g_bar||^2) = sqrt(tr C / K): the unit of the relative errors."""
    return float(np.sqrt(max(np.trace(C) / C.shape[-1], 0.0)))


def set_error(C, members):
    """||mean_S g - g_bar|| of the set S (indices, or a (K,) bool mask) from the centred Gram matrix C."""
    idx = np.flatnonzero(members) if np.asarray(members).dtype == bool else np.asarray(members, dtype=np.int64)
    if idx.size == 0:
        raise ValueError("a set of batches needs at least one member")
    return float(np.sqrt(max(C[np.ix_(idx, idx)].sum(), 0.0)) / idx.size)


def set_errors(C, indicators):
    """set_error of many sets at once: indicators (n, K) of 0/1 (every row the same size or not), -> (n,)."""
    W = np.asarray(indicators, dtype=np.float64)
    m = W.sum(1)
    if np.any(m == 0):
        raise ValueError("a set of batches needs at least one member")
    return np.sqrt(np.maximum(np.einsum("nk,nk->n", W @ C, W), 0.0)) / m


def random_mean_square(C, m):
    """E ||mean_S g - g_bar||^2 over sets S of m distinct batches drawn uniformly: (K - m)/(m (K - 1)) tr(C)/K."""
    K = C.shape[-1]
    if not 1 <= m <= K:
        raise ValueError(f"a set of {m} of {K} batches")
    return (K - m) / (m * (K - 1)) * np.trace(C) / K if K > 1 else 0.0


def random_indicators(rng, n, K, m):
    """(n, K) bool: n sets of m distinct positions, each drawn uniformly."""
    keys = rng.random((n, K))
    picked = np.argpartition(keys, m - 1, axis=1)[:, :m] if m < K else np.tile(np.arange(K), (n, 1))
    W = np.zeros((n, K), dtype=bool)
    np.put_along_axis(W, picked, True, axis=1)
    return W


def greedy_set(C, m_max=None):
    """Forward selection on C: (order (m_max,), error (m_max,)), the batch added at each step and the error of
    the first j + 1 together. Each step adds the batch that makes ||mean_S g - g_bar|| smallest (ties: the lowest
    position), in O(K) per step from the running sums s = C 1_S and q = 1_S' C 1_S."""
    K = C.shape[-1]
    m_max = K if m_max is None else int(m_max)
    if not 1 <= m_max <= K:
        raise ValueError(f"greedy_set: {m_max} of {K} batches")
    diag = np.diagonal(C).copy()
    s, q = np.zeros(K), 0.0
    free = np.ones(K, dtype=bool)
    order, error = np.empty(m_max, dtype=np.int64), np.empty(m_max)
    for j in range(m_max):
        candidate = np.where(free, q + 2 * s + diag, np.inf)  # 1' C 1 of S + {i}
        i = int(np.argmin(candidate))
        order[j], free[i] = i, False
        q = float(candidate[i])
        s += C[:, i]
        error[j] = np.sqrt(max(q, 0.0)) / (j + 1)
    return order, error


def closest(C, m):
    """The m batches individually closest to g_bar (smallest C[k, k]; ties: the lowest position)."""
    return np.argsort(np.diagonal(C), kind="stable")[:m]


def effective_rank(C):
    """Participation ratio of C's eigenvalues, tr(C)^2 / sum_ij C_ij^2 (no decomposition: sum lambda^2 = ||C||_F^2);
    NaN where every g_k equals g_bar."""
    C = np.asarray(C, dtype=np.float64)
    frob2 = np.sum(C * C, axis=(-1, -2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(frob2 > 0, np.trace(C, axis1=-2, axis2=-1) ** 2 / np.where(frob2 > 0, frob2, 1.0), np.nan)


def set_sizes(K, extra=()):
    """The m the curves are drawn at: 1, 2, 4, ... (about 12 sizes, geometric) up to K, and the sizes in `extra`."""
    grid = np.unique(np.round(np.geomspace(1, K, min(K, 12))).astype(np.int64))
    return sorted(set(int(m) for m in grid) | {int(m) for m in extra if 1 <= m <= K})


REGION_SETS = ("upper_quartile", "middle_80", "outside_middle_80")  # the paper's regions (stats.REGIONS) as sets
RANDOM_QUANTILES = (0.05, 0.5, 0.95)


def epoch_sets(gram, rng, draws=200, regions=None, sizes=None):
    """Every set of one epoch, from its Gram matrix (K, K), as rows (dicts): set, m, error, relative_error.

    set: "greedy", "closest" (the m individually closest), "random_q05" / "random_median" / "random_q95" (the
    quantiles of `draws` random sets of m), "random_rms" (the exact root mean square over all random sets), and
    each of `regions` ({name: (K,) bool mask}) at its own size. sizes: the m of the curves (set_sizes(K) and the
    regions' sizes by default). relative_error: error / rms_distance (the error of a single batch, in the root
    mean square); NaN where every g_k equals g_bar."""
    C = centred(gram)
    K = C.shape[0]
    regions = regions or {}
    sizes = set_sizes(K, [int(np.sum(mask)) for mask in regions.values()]) if sizes is None else list(sizes)
    unit = rms_distance(C)
    rows = []

    def add(name, m, error):
        rows.append(dict(set=name, m=int(m), error=float(error), relative_error=error / unit if unit > 0 else np.nan))

    order, greedy = greedy_set(C, max(sizes))
    for m in sizes:
        add("greedy", m, greedy[m - 1])
        add("closest", m, set_error(C, closest(C, m)))
        errors = set_errors(C, random_indicators(rng, draws, K, m))
        for q, name in zip(RANDOM_QUANTILES, ("random_q05", "random_median", "random_q95")):
            add(name, m, np.quantile(errors, q))
        add("random_rms", m, np.sqrt(max(random_mean_square(C, m), 0.0)))
    for name, mask in regions.items():
        if np.any(mask):
            add(name, int(np.sum(mask)), set_error(C, mask))
    return rows


def run_sets(epochs, phases, gram, rng, draws=200, regions=None):
    """epoch_sets of every epoch of a run, with epoch, phase and the epoch's effective_rank on each row.

    epochs (E,), phases (E,), gram (E, K, K): a gathered matrix's."""
    rows = []
    for epoch, phase, G in zip(epochs, phases, gram):
        rank = float(effective_rank(centred(G)))
        for row in epoch_sets(G, rng, draws, regions):
            rows.append(dict(epoch=int(epoch), phase=int(phase), **row, effective_rank=rank))
    return rows


def phase_cosines(gram, epoch_phase, phase):
    """The mean over a phase's epochs of cos(g_i, g_j), (K, K): which batches point the same way."""
    sel = np.asarray(epoch_phase) == phase
    return cosines(np.asarray(gram)[sel]).mean(0) if sel.any() else None
