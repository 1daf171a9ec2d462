"""The permutation null that keeps each batch's history (one relabelling of positions shared by every epoch,
and by default by every seed), its p-values, the studentized (Welch-type) contrast the claims relabel, Holm's
correction and the intervals that invert the tests at the level Holm decides them at. See bestbatch.stats."""

import math
from dataclasses import dataclass

import numpy as np

from .profiles import _seeds, position_rho, seed_profiles, zscore_rows

SCHEMES = ("shared", "per_seed", "per_epoch")
ALTERNATIVES = ("two-sided", "less", "greater")


# --- the permutation null -----------------------------------------------------------------------------


def _permutations(rng, shape, K):
    """Random permutations of 0..K-1, one per leading index: shape + (K,)."""
    n = int(np.prod(shape))
    return rng.permuted(np.broadcast_to(np.arange(K), (n, K)), axis=1).reshape(*shape, K)


def relabellings(rng, n_perm, S, K, scheme="shared"):
    """(n_perm, S, K) index arrays: replicate i reads seed s's position k from position [i, s, k].

    shared: one permutation per replicate, the same for every seed (a broadcast view); per_seed: one per
    seed. Every epoch of a seed is relabelled alike (the profile is relabelled)."""
    if scheme == "shared":
        return np.broadcast_to(_permutations(rng, (n_perm,), K)[:, None, :], (n_perm, S, K))
    if scheme == "per_seed":
        return _permutations(rng, (n_perm, S), K)
    raise ValueError(f"relabellings: scheme {scheme!r} relabels epochs, not profiles; known: shared, per_seed")


def relabel(values, perm):
    """(n, U, K): values[u, perm[i, u, k]] for values (U, K) and relabellings perm (n, U, K).

    One relabelling shared by the units (perm broadcast over U, as relabellings(..., "shared") gives) is
    one fancy index of every row at once; otherwise a gather per (replicate, unit)."""
    values = np.asarray(values)
    if perm.shape[1] == 1 or perm.strides[1] == 0:
        return values[:, perm[:, 0]].transpose(1, 0, 2)
    return np.take_along_axis(np.broadcast_to(values, perm.shape), perm, -1)


def permuted_profiles(Ds, n_perm, rng=None, scheme="shared"):
    """(n_perm, S, K) profiles under the null that batch positions are exchangeable.

    shared: one relabelling of positions per replicate, the same for every epoch and every seed (exact when
    batches are shared by the seeds, as with a deterministic ordering, and when they are independent).
    per_seed: one relabelling per seed, the same for every epoch of that seed (exact for independent seeds only).
    per_epoch: every epoch relabelled independently: the naive null, anti-conservative (persistence is lost).
    For shared and per_seed this permutes the columns of each seed's profile (equivalent, and fast).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; known: {SCHEMES}")
    rng = np.random.default_rng(rng)
    Ds = _seeds(Ds)
    S, K = len(Ds), Ds[0].shape[1]
    if scheme == "per_epoch":
        out = np.empty((n_perm, S, K))
        for s, D in enumerate(Ds):
            Z = zscore_rows(D)
            perm = _permutations(rng, (n_perm, Z.shape[0]), K)
            out[:, s] = np.take_along_axis(np.broadcast_to(Z, perm.shape), perm, -1).mean(1)
        return out
    perm = relabellings(rng, n_perm, S, K, scheme)
    return relabel(seed_profiles(Ds), perm)


def permutation_p(observed, null, alternative="two-sided"):
    """Monte-Carlo p = (1 + #{null at least as extreme}) / (1 + n_perm); nan for a nan (or infinite) statistic.

    two-sided: |T_perm| >= |T_obs|; less: T_perm <= T_obs; greater: T_perm >= T_obs. Values equal up to
    rounding count as ties (as extreme); an infinite null value is as extreme as any finite one. A NaN null
    value for a finite observed statistic is refused (ValueError naming how many of how many): it is neither
    as extreme nor not, and counting it in the denominator only (as this function once did) biases p upwards.
    A statistic that can be undefined on a relabelling must say what it is there (see WelchContrast).
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"unknown alternative {alternative!r}; known: {ALTERNATIVES}")
    observed = float(observed)
    null = np.asarray(null, dtype=float)
    if not np.isfinite(observed):
        return float("nan")
    missing = int(np.count_nonzero(np.isnan(null)))
    if missing:
        raise ValueError(
            f"permutation_p: {missing} of {null.size} null values are NaN for a finite observed statistic; a NaN "
            "replicate is neither as extreme nor less extreme, so the p-value would be wrong either way"
        )
    tol = 1e-10 * max(1.0, abs(observed))
    if alternative == "two-sided":
        hits = np.abs(null) >= abs(observed) - tol
    elif alternative == "less":
        hits = null <= observed + tol
    else:
        hits = null >= observed - tol
    return float((1 + np.count_nonzero(hits)) / (1 + null.size))


def _centred_ranks(x):
    """Average ranks along the last axis, minus their mean: Spearman's rho is their correlation."""
    from scipy import stats as sps

    r = sps.rankdata(np.asarray(x, dtype=float), axis=-1)
    return r - r.mean(-1, keepdims=True)


def _rank_correlations(fixed, ranks, perm):
    """(n, U): per replicate and unit, the correlation of `fixed` (U, K centred ranks) with ranks[u, perm[i, u]].

    Ranks are equivariant (the ranks of relabelled values are the relabelled ranks, ties included), so a
    relabelled profile's Spearman rho needs no ranking of its own: one gather and one dot product."""
    gathered = relabel(ranks, perm)
    den = np.sqrt((fixed * fixed).sum(-1) * (ranks * ranks).sum(-1))  # (U,): a relabelling keeps both
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.einsum("iuk,uk->iu", gathered, fixed) / np.where(den > 0, den, 1), np.nan)


def _position_rho_null(units, unit_perm, relabelled):
    """position_rho of every relabelled profile: from the ranks of the seed-averaged one when it is relabelled
    as a whole (one unit), otherwise from each replicate's averaged profile."""
    if units.shape[0] == 1:
        K = units.shape[-1]
        return _rank_correlations(_centred_ranks(np.arange(K))[None], _centred_ranks(units), unit_perm)[:, 0]
    return position_rho(relabelled)


def _score_rho_null(scores, P, perm):
    """score_rho(scores) of every relabelled (S, K) profile (perm: (n, S, K)), by gathering each seed's ranks."""
    return _rank_correlations(_centred_ranks(scores), _centred_ranks(P), perm).mean(-1)


@dataclass
class PermutationTest:
    statistic: float
    p: float
    n_perm: int
    alternative: str
    scheme: str
    null: np.ndarray


def permutation_test(Ds, statistic, n_perm=1999, rng=None, alternative="two-sided", scheme="shared"):
    """Test a statistic of the seeds' profiles against relabelled batch positions (see permuted_profiles)."""
    rng = np.random.default_rng(rng)
    observed = float(statistic(seed_profiles(Ds)))
    null = np.asarray(statistic(permuted_profiles(Ds, n_perm, rng, scheme)), dtype=float)
    return PermutationTest(observed, permutation_p(observed, null, alternative), n_perm, alternative, scheme, null)


# --- the studentized contrast: robust to a region whose values spread more than the rest's ---------------
# Relabelling positions treats them as exchangeable. A region whose batches are no closer on average but
# more variable from batch to batch breaks that (the Behrens-Fisher problem): the mean of a small, variable
# region swings more than a relabelled region's, and the plain contrast rejects too often (tests/test_stats.py
# measures it). Permuting a studentized statistic, the contrast divided by its Welch standard error, is
# asymptotically valid when the spreads differ and still exact when positions are exchangeable (Janssen
# 1997; Chung & Romano 2013), so the claims' tests relabel that instead. The effect printed stays the
# contrast in SD units; only the p-value (and the interval that inverts it) is studentized.


class WelchContrast:
    """A region's Welch-type contrast with the rest, observed and under relabellings, for the region shifted
    by any delta.

    units: (U, K) the values compared, one row per unit of relabelling: with the shared relabelling the
    seed-averaged profile (U = 1; the contrast is linear in it), with per_seed each seed's profile (U = S).
    perm: (n, U, K) the relabellings (replicate i reads unit u's position k from perm[i, u, k]).
    For a unit, d = mean over the region's positions - mean over the rest and V = s_R^2 / n_R + s_rest^2 /
    n_rest (sample variances, ddof 1). The statistic is t = mean_u d_u / sqrt(sum_u V_u / U^2): Welch's t for
    one unit; for independent seeds (per_seed) the variance of a mean of independent contrasts is the sum of
    their variances over U^2. A group of one position borrows the other group's variance (one value has no
    spread of its own). Degenerate cases: when both groups of the observed data are constant (V = 0) the
    statistic is undefined and the p-value NaN; a relabelling whose two groups are each constant counts as
    +-inf (as extreme as anything) when their means differ and as 0 when they are equal, so the null never
    holds a NaN for a finite observed statistic.

    Under the hypothesis that the region is shifted by delta, the data are units - delta x mask. A
    relabelling's group sums, sums of squares, overlap with the region and sum over that overlap give every
    d_i(delta) = a_i - delta b_i and V_i(delta) (a quadratic in delta), so p(delta) costs O(n U) for any delta.
    """

    def __init__(self, units, perm, mask, relabelled=None):
        y = np.asarray(units, dtype=float)
        mask = np.asarray(mask, dtype=bool)
        if y.ndim != 2 or perm.ndim != 3 or perm.shape[1:] != y.shape or mask.shape != (y.shape[1],):
            raise ValueError(f"WelchContrast: units {y.shape}, perm {perm.shape}, mask {mask.shape} do not match")
        nR, nr = int(mask.sum()), int((~mask).sum())
        if not nR or not nr:
            raise ValueError("a region needs positions both inside and outside it")
        if nR < 2 and nr < 2:
            raise ValueError("WelchContrast: a group of one position against one has no spread to studentize by")
        m = mask.astype(float)
        G = relabel(y, perm) if relabelled is None else relabelled  # (n, U, K): the relabelled values
        M = m[perm]  # 1 where the value at a position came from the region
        # per replicate (row 0: the observed data, the identity) and unit: the region group's sum, sum of
        # squares, overlap with the region and sum over that overlap; the rest's follow from the unit's totals.
        # Then every value is centred on its unit's mean (t does not move when every value moves alike), which
        # keeps the sums of squares free of cancellation.
        mu = y.mean(-1)
        c = np.concatenate([np.full((1, y.shape[0]), float(nR)), M @ m])
        s1 = np.concatenate([(y @ m)[None], G @ m])
        s2 = np.concatenate([((y * y) @ m)[None], (G * G) @ m]) - 2 * mu * s1 + nR * mu * mu
        o = np.concatenate([(y @ m)[None], (G * M) @ m]) - mu * c
        s1 = s1 - nR * mu
        y = y - mu[:, None]
        T1, T2, TR = y.sum(-1), (y * y).sum(-1), y @ m
        r1, r2, rc, ro = T1 - s1, T2 - s2, nR - c, TR - o  # the rest's, under the shift delta of the region
        # d(delta) = a - delta b; a group's sum of squared deviations q0 - 2 delta q1 + delta^2 q2
        a, b = s1 / nR - r1 / nr, c / nR - rc / nr
        ssR = (s2 - s1 * s1 / nR, o - s1 * c / nR, c - c * c / nR)
        ssr = (r2 - r1 * r1 / nr, ro - r1 * rc / nr, rc - rc * rc / nr)
        U = y.shape[0]
        if nR > 1 and nr > 1:
            var = [(x / (nR * (nR - 1)) + z / (nr * (nr - 1))).sum(-1) / U**2 for x, z in zip(ssR, ssr)]
        else:  # a group of one position borrows the other's variance
            ss, n_ss = (ssR, nR) if nR > 1 else (ssr, nr)
            var = [(x / (n_ss - 1) * (1 / nR + 1 / nr)).sum(-1) / U**2 for x in ss]
        self.a, self.b = a.mean(-1), b.mean(-1)  # (n + 1,)
        self.v0, self.v1, self.v2 = var[0], -2 * var[1], var[2]  # var(delta) = v0 + v1 delta + v2 delta^2
        self.nR, self.nr, self.U, self.n_perm = nR, nr, U, perm.shape[0]
        self.scale = float((y * y).mean())

    def statistic(self, delta=0.0):
        """t per replicate (row 0: the observed data) for the region shifted by delta; a 1-D delta gives
        one row per delta. See the class for the degenerate cases."""
        d = np.asarray(delta, dtype=float)[..., None]
        num = self.a - d * self.b
        var = self.v0 + d * (self.v1 + d * self.v2)
        floor = 1e-13 * (self.scale + d * d) / min(self.nR, self.nr)  # a zero variance, up to rounding
        zero = var <= floor
        if not zero.any():
            return num / np.sqrt(var)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = num / np.sqrt(np.where(zero, 1.0, var))
            tiny = np.abs(num) <= 1e-12 * np.sqrt(self.scale + d * d)
            t = np.where(zero, np.where(tiny, 0.0, np.where(num > 0, np.inf, -np.inf)), t)
            t[..., 0] = np.where(zero[..., 0], np.nan, t[..., 0])  # observed groups each constant: undefined
        return t

    @property
    def effect(self):
        """The observed contrast (mean over units of mean inside - mean outside) at delta = 0."""
        return float(self.a[0])

    def p(self, delta=0.0):
        """Two-sided permutation p of the region shifted by delta (ties and infinities as in permutation_p)."""
        t = self.statistic(float(delta))
        return permutation_p(t[0], t[1:])

    def _passes(self, deltas, level):
        """p(delta) >= level for each delta (the count of permutation_p, for many deltas at once)."""
        t = self.statistic(deltas)
        obs = np.abs(t[:, :1])
        hits = np.count_nonzero(np.abs(t[:, 1:]) >= obs - 1e-10 * np.maximum(1.0, obs), axis=1)
        return (1 + hits) / (1 + self.n_perm) >= level

    def interval(self, level, grid=8, rel_tol=1e-6):
        """(lo, hi): the shifts delta whose p(delta) >= level, searched from the estimate outwards.

        The estimate (where the observed contrast is delta) has p = 1. On the side of 0: if p(0) < level
        the end is searched between the estimate and 0, so it excludes 0; otherwise the search starts at 0,
        so it holds 0. So the interval excludes 0 exactly when p(0) < level. Going outwards, the first
        shift that fails is bracketed (steps of one standard error, doubling) and the bracket cut into
        `grid` + 1 parts until it is narrower than rel_tol standard errors; the end is the last shift that
        passes (p(delta) need not be monotone far from the estimate). +-inf where no shift is rejected."""
        p0 = self.p(0.0)
        if level != level or p0 != p0:
            return math.nan, math.nan
        if math.ceil(level * (self.n_perm + 1) - 1 - 1e-9) <= 0:
            return -math.inf, math.inf
        est, se = self.effect, math.sqrt(self.v0[0])
        ends = []
        for side in (-1.0, 1.0):
            inner, outer = est, None
            if side * (0.0 - est) > 0:  # 0 lies on this side of the estimate
                inner, outer = (0.0, None) if p0 >= level else (est, 0.0)
            if outer is None:
                for powers in (np.arange(6), np.arange(6, 64)):  # most ends lie within 2^5 standard errors
                    steps = inner + side * se * 2.0**powers
                    ok = self._passes(steps, level)
                    if not ok.all():
                        first = int(np.argmin(ok))
                        inner, outer = (steps[first - 1] if first else inner), steps[first]
                        break
                    inner = steps[-1]
                if outer is None:
                    ends.append(side * math.inf)
                    continue
            while abs(outer - inner) > rel_tol * se:
                points = inner + (outer - inner) * np.arange(1, grid + 1) / (grid + 1)
                ok = self._passes(points, level)
                first = int(np.argmin(ok)) if not ok.all() else grid
                inner, outer = (points[first - 1] if first else inner), (points[first] if first < grid else outer)
            ends.append(inner)
        return min(ends[0], est), max(ends[1], est)


# --- multiplicity -------------------------------------------------------------------------------------


def holm(pvalues):
    """Holm-Bonferroni adjusted p-values, in the input order: monotone in the sorted order, capped at 1.

    nan entries stay nan and do not count towards the number of tests.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m:
        order = ok[np.argsort(p[ok], kind="stable")]
        adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
        out[order] = adj
    return out


def holm_levels(pvalues, alpha):
    """Per test, the level alpha_j at which Holm's step-down procedure decides it (nan for a nan p).

    Sorted p_(1) <= ... <= p_(m): Holm rejects while p_(j) < alpha / (m - j + 1) and stops at the first j0
    that fails. The j-th test (j < j0) is decided at alpha / (m - j + 1); j0 and every test after it at
    alpha / (m - j0 + 1). So p < level exactly when the Holm-adjusted p < alpha, and an interval that
    inverts the test at `level` excludes the null value exactly when the verdict is significant.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    stopped = None
    for j, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        level = alpha / (m - j)
        if stopped is None and not p[i] < level:
            stopped = level
        out[i] = level if stopped is None else stopped
    return out


# --- intervals that agree with their tests --------------------------------------------------------------
# Every test here compares an observed statistic t with null values (relabellings, sign flips) and both
# move linearly with a hypothesised effect delta: the observed statistic of the data shifted by delta is
# t - delta, a null value a_i - delta b_i with |b_i| <= 1. The interval at `level` is every delta whose
# p-value is at least `level`: it excludes 0 exactly when p < level.


def inverted_interval(observed, null_a, null_b, level, offset, denominator):
    """(lo, hi): the deltas with p(delta) = (offset + #{i : |a_i - delta b_i| >= |t - delta|}) / denominator
    >= level. Each null value is at least as extreme as t - delta on a closed interval of delta that holds
    t (where t - delta = 0), so the set is one interval: its ends are order statistics of those intervals'
    ends. +-inf where no delta is excluded (too few replicates for this level)."""
    t = float(observed)
    a, b = np.asarray(null_a, dtype=float), np.asarray(null_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"null_a and null_b must be 1-D and of one length, got {a.shape}, {b.shape}")
    if np.any(np.abs(b) > 1 + 1e-9):
        raise ValueError("inverted_interval: every |b_i| must be <= 1")
    need = math.ceil(level * denominator - offset - 1e-9)  # null values that must be at least as extreme
    if not np.isfinite(t) or level != level:
        return math.nan, math.nan
    if need <= 0:
        return -math.inf, math.inf
    # |a - d b| >= |t - d|  <=>  (b^2 - 1) d^2 + 2 (t - a b) d + (a^2 - t^2) >= 0
    A, B, C = b * b - 1, 2 * (t - a * b), a * a - t * t
    lo, hi = np.full(a.shape, -math.inf), np.full(a.shape, math.inf)
    curved = A < -1e-12
    disc = np.sqrt(np.maximum(B[curved] ** 2 - 4 * A[curved] * C[curved], 0.0))
    r1, r2 = (-B[curved] + disc) / (2 * A[curved]), (-B[curved] - disc) / (2 * A[curved])
    lo[curved], hi[curved] = np.minimum(r1, r2), np.maximum(r1, r2)
    flat = ~curved  # |b| = 1: a half-line through t, or every delta where a = +-t (B = C = 0 up to rounding)
    every = np.abs(B[flat]) <= 1e-9 * np.maximum(1.0, np.maximum(abs(t), np.abs(a[flat])))
    with np.errstate(divide="ignore", invalid="ignore"):
        edge = -C[flat] / B[flat]
    rising = B[flat] > 0  # B d + C >= 0 from the edge upwards
    lo[flat] = np.where(every, -math.inf, np.where(rising, edge, -math.inf))
    hi[flat] = np.where(every, math.inf, np.where(rising, math.inf, edge))
    lo, hi = np.minimum(lo, t), np.maximum(hi, t)  # rounding must not lose t itself
    if need > a.size:
        return t, t
    return float(np.sort(lo)[need - 1]), float(np.sort(hi)[a.size - need])
