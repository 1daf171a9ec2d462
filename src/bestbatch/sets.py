"""Sets of batches, answered exactly from an epoch's batch Gram matrix G[i, j] = g_i . g_j (K x K, float64).

For a set S of m batches, ||mean_S g - g_bar||^2 = (1/m^2) 1_S' C 1_S with C the centred Gram matrix
C[i, j] = (g_i - g_bar) . (g_j - g_bar): no gradient is read again. From C:
- the greedy set: forward selection, each step adding the batch that makes the set's error smallest; it is
  myopic (the batches it leaves to the end can be the ones a good set keeps), so
- the swapped set (best_set): the greedy set, then single swaps of a member for a non-member while one lowers the
  error (a 1-swap local optimum: no set one exchange away is better; exact at m = 1, K - 1 and K, not in general);
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

import warnings

import numpy as np


def centred(gram):
    """C = (I - J/K) G (I - J/K): the Gram matrix of the g_k - g_bar, for one (K, K) or a stack (..., K, K)."""
    G = np.asarray(gram, dtype=np.float64)
    row = G.mean(-1, keepdims=True)
    return G - row - np.swapaxes(row, -1, -2) + G.mean((-1, -2), keepdims=True)


def normalised_centred(grams):
    """(..., K, K): each epoch's centred Gram matrix C divided by tr(C) / K (the mean square distance
    ||g_k - g_bar||^2), so its diagonal averages 1 and every epoch counts alike whatever its gradient scale; an
    epoch whose g_k all equal g_bar gives 0 (any set is exact)."""
    C = centred(grams)
    scale = (np.trace(C, axis1=-2, axis2=-1) / C.shape[-1])[..., None, None]
    return np.where(scale > 0, C / np.where(scale > 0, scale, 1.0), 0.0)


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


def _members(C, members):
    """Sorted distinct positions of a set given as indices or a (K,) bool mask; refuses an empty set."""
    K = C.shape[-1]
    a = np.asarray(members)
    if a.dtype == bool:
        if a.shape != (K,):
            raise ValueError(f"a mask of {a.shape} for {K} batches")
        idx = np.flatnonzero(a)
    else:
        idx = np.unique(a.astype(np.int64))
        if idx.size != a.size or (idx.size and not 0 <= idx[0] <= idx[-1] < K):
            raise ValueError(f"members must be distinct positions in 0..{K - 1}, got {a.tolist()}")
    if idx.size == 0:
        raise ValueError("a set of batches needs at least one member")
    return idx


SWAP_TOLERANCE = 1e-12  # an exchange counts only if it lowers 1_S' C 1_S by more than this x m x max |C_ij|


def swap_refine(C, members, max_swaps=None):
    """Improve a set by single swaps: (members (m,) sorted, error), a 1-swap local optimum of ||mean_S g - g_bar||.

    Each pass makes the best exchange of a member i for a non-member j. With s = C 1_S the exchange changes
    q = 1_S' C 1_S by -2 s_i + C_ii + 2 s_j - 2 C_ij + C_jj, so all m (K - m) exchanges are evaluated at once from s,
    and s is updated in O(K) after a swap. Ties: the lowest member, then the lowest non-member. It stops when no
    exchange lowers q by more than SWAP_TOLERANCE x m x max |C_ij| (relative to the scale of s, so rounding in s
    cannot make a swap and its reverse both look better and loop), or after max_swaps swaps (default 10 K), with a
    RuntimeWarning saying so: the set is then better than the one given but perhaps not a local optimum. The error
    is recomputed from C for the final set (no drift from the running sums)."""
    C = np.asarray(C, dtype=np.float64)
    K = C.shape[-1]
    idx = _members(C, members)
    m = idx.size
    inside = np.zeros(K, dtype=bool)
    inside[idx] = True
    max_swaps = 10 * K if max_swaps is None else int(max_swaps)
    diag = np.diagonal(C)
    tol = SWAP_TOLERANCE * m * float(np.max(np.abs(C)))
    s = C[:, idx].sum(1)
    swaps = 0
    while m < K:
        ins, outs = np.flatnonzero(inside), np.flatnonzero(~inside)
        delta = (diag[ins] - 2 * s[ins])[:, None] + (diag[outs] + 2 * s[outs])[None, :] - 2 * C[np.ix_(ins, outs)]
        a, b = np.unravel_index(int(np.argmin(delta)), delta.shape)  # row-major: lowest member, then non-member
        if not delta[a, b] < -tol:
            break
        if swaps == max_swaps:
            warnings.warn(
                f"swap_refine: stopped after {max_swaps} swaps with an exchange still lowering the error "
                f"(by {-delta[a, b]:.3g} in 1_S' C 1_S); the set is not a 1-swap local optimum",
                RuntimeWarning,
                stacklevel=2,
            )
            break
        i, j = ins[a], outs[b]
        inside[i], inside[j] = False, True
        s += C[:, j] - C[:, i]
        swaps += 1
    idx = np.flatnonzero(inside)
    return idx, set_error(C, idx)


def best_set(C, m):
    """A good set of m batches: (members (m,) sorted, error). Forward selection to m (greedy_set), then single swaps
    until none improves (swap_refine). Deterministic (ties: the lowest positions). Exact at m = 1 (the closest
    batch), m = K - 1 (all but the closest: the error is ||g_j - g_bar|| / (K - 1) for the batch j left out, and a
    swap compares two of those) and m = K; elsewhere a local optimum, not the best set in general."""
    order, _ = greedy_set(C, m)
    return swap_refine(C, order)


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
    """The m the curves are drawn at: 1, 2, 4, ... (about 12 sizes, geometric) up to K - 1, and the sizes in `extra`
    below K (a set of all K batches is g_bar itself: its error is 0, nothing to compare); [1] for K = 1."""
    if K == 1:
        return [1]
    grid = np.unique(np.round(np.geomspace(1, K - 1, min(K - 1, 12))).astype(np.int64))
    return sorted(set(int(m) for m in grid) | {int(m) for m in extra if 1 <= m < K})


REGION_SETS = ("upper_quartile", "middle_80", "outside_middle_80")  # the paper's regions (stats.REGIONS) as sets
RANDOM_QUANTILES = (0.05, 0.5, 0.95)


def epoch_sets(gram, rng, draws=200, regions=None, sizes=None):
    """Every set of one epoch, from its Gram matrix (K, K), as rows (dicts): set, m, error, relative_error.

    set: "greedy" (forward selection), "swapped" (best_set: the greedy set, then single swaps until none improves),
    "closest" (the m individually closest), "random_q05" / "random_median" / "random_q95" (the
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
        add("swapped", m, swap_refine(C, order[:m])[1])  # best_set(C, m): the greedy prefix is its start
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
    """The mean over a phase's epochs of cos(g_i - g_bar, g_j - g_bar), (K, K): which batches stray from the full
    gradient the same way (a set of them adds up its strays) and which cancel. The cosines of the g_k themselves
    are all close to 1 wherever g_bar dominates (early training) and show no such structure."""
    sel = np.asarray(epoch_phase) == phase
    return cosines(centred(np.asarray(gram)[sel])).mean(0) if sel.any() else None
