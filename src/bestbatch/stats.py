"""From heatmaps to conclusions: the paper's claims as tests with a calibrated null.

Input, for one (model, metric, phase): a list over seeds of (E, K) matrices D[e, k] = ||g_k - g_bar||
(E epochs of the phase, K batch positions in the metric's ascending order), and optionally each seed's (K,)
batch mean scores. Every statistic works on within-epoch z-scores (each row standardised), so each
epoch's gradient scale is divided out; a negative z means "closer to the full gradient". Effects are in
within-epoch SD units.

The null. A batch that is close in one epoch tends to stay close (persistence), so epochs are not
independent replicates: permuting each epoch's positions independently destroys that persistence and gives
a null that is far too narrow (anti-conservative; tests/test_stats.py measures it). The permutation here
relabels batch positions once per replicate, the same relabelling for every epoch, so each batch keeps its
whole history. By default the same relabelling is also used for every seed ("shared"): with a
deterministic ordering (intensity, color, edges, lpips) batch k holds the same images in every seed, so
its idiosyncrasy is shared by the seeds and only a relabelling shared by the seeds is exact; when the seeds
are independent (the random ordering) it is exact too. "per_seed" (an independent relabelling per seed) is
exact only for independent seeds; "per_epoch" is the naive, wrong null, kept to show why.

The claims' test. A claim compares a region of positions with the rest; its effect is the contrast, the
difference in mean z (the shift of the region's mean z, in SD units). Its p-value relabels the studentized
contrast, that difference over its Welch standard error (WelchContrast): relabelling assumes the positions
exchangeable, and a region that is no closer on average but more variable from batch to batch breaks that
(Behrens-Fisher), which the plain contrast takes for an effect (0.21 of null studies with a verdict when
the extremes' SD is doubled; tests/test_stats.py). A permuted studentized statistic is asymptotically
valid under unequal spreads and exact under exchangeability (Janssen 1997; Chung & Romano 2013). The
interval printed beside it inverts the same test at the level Holm decides it at.

The seed is the unit of replication of the descriptive intervals (positional_profile, contrast_estimate:
the profile figure's error bars): with two or more seeds such an interval is a t-interval over the
per-seed values (df = S - 1). With one seed there is nothing to replicate, and the interval is an
epoch bootstrap that understates the uncertainty (the `method` field says so). The interval describes the
size of the difference in this ordering across training runs; the permutation p-value asks whether batch
position matters more than a random relabelling of the batches would. These are not Holm-adjusted.

Statistics are never tuned to give a verdict: a claim whose Holm-adjusted p is not below alpha is
reported as inconclusive.
"""

import math
import warnings
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

ONE_SEED_METHOD = (
    "epoch bootstrap (one seed): understates uncertainty, because a batch that is close in one "
    "epoch tends to stay close"
)
SCHEMES = ("shared", "per_seed", "per_epoch")
ALTERNATIVES = ("two-sided", "less", "greater")
VERDICTS = ("supported", "contradicted", "inconclusive")


# --- z-scores and profiles ----------------------------------------------------------------------------


def zscore_rows(D):
    """(D - row mean) / row std per epoch (population std; a constant row has std 0, taken as 1 -> all 0)."""
    D = np.asarray(D, dtype=float)
    mu = D.mean(-1, keepdims=True)
    sd = D.std(-1, keepdims=True)
    return (D - mu) / np.where(sd > 0, sd, 1.0)


def batch_profile(D):
    """(K,) mean over epochs of the row z-scores: where each batch position sits, epoch after epoch."""
    D = np.asarray(D, dtype=float)
    if D.ndim != 2 or D.shape[0] == 0:
        raise ValueError(f"expected an (E, K) matrix with E >= 1, got shape {D.shape}")
    return zscore_rows(D).mean(0)


def _seeds(Ds):
    """A list of (E, K) float arrays, one per seed; one (E, K) array alone is one seed."""
    if isinstance(Ds, np.ndarray) and Ds.ndim == 2:
        Ds = [Ds]
    Ds = [np.asarray(D, dtype=float) for D in Ds]
    if not Ds:
        raise ValueError("no seeds")
    if any(D.ndim != 2 or D.shape[0] == 0 for D in Ds) or len({D.shape[1] for D in Ds}) != 1:
        raise ValueError(f"every seed needs an (E, K) matrix with E >= 1 and the same K: {[D.shape for D in Ds]}")
    return Ds


def seed_profiles(Ds):
    """(S, K): each seed's batch profile."""
    return np.stack([batch_profile(D) for D in _seeds(Ds)])


# --- regions of positions -----------------------------------------------------------------------------
# Position k in 0..K-1 has q = k / K, compared exactly (integer arithmetic, no rounding):
#   upper_quartile      q >= 0.75
#   middle_80           0.1 <= q < 0.9
#   outside_middle_80   q < 0.1 or q >= 0.9   (the rest of middle_80)
#   extremes_10         q < 0.1 or q >= 0.9   (the same positions, named for the claim that the extremes are poor)
# K = 195: upper_quartile is k >= 147 (48 batches), middle_80 is 20 <= k <= 175 (156), the extremes 39.

REGIONS = {
    "upper_quartile": lambda k, K: 4 * k >= 3 * K,
    "middle_80": lambda k, K: (10 * k >= K) & (10 * k < 9 * K),
    "outside_middle_80": lambda k, K: (10 * k < K) | (10 * k >= 9 * K),
    "extremes_10": lambda k, K: (10 * k < K) | (10 * k >= 9 * K),
}
# How a sentence names a region, and what it is compared with.
REGION_WORDS = {
    "upper_quartile": ("the upper-quartile batches", "the rest"),
    "middle_80": ("the batches in the middle 80%", "the extremes"),
    "outside_middle_80": ("the batches outside the middle 80%", "the middle 80%"),
    "extremes_10": ("the extreme batches (lowest and highest 10%)", "the middle 80%"),
}


def region_mask(region, K):
    """(K,) bool mask of the positions in a named region (see REGIONS); a bool mask passes through."""
    if isinstance(region, str):
        if region not in REGIONS:
            raise ValueError(f"unknown region {region!r}; known: {sorted(REGIONS)}")
        return REGIONS[region](np.arange(K), K)
    mask = np.asarray(region, dtype=bool)
    if mask.shape != (K,):
        raise ValueError(f"region mask has shape {mask.shape}, expected ({K},)")
    return mask


def position_bins(K, n):
    """(K,) bin index 0..n-1 of each position, n equal-count bins (sizes differ by at most one): floor(k n / K)."""
    if not 1 <= n <= K:
        raise ValueError(f"cannot cut {K} positions into {n} non-empty bins")
    return np.arange(K) * n // K


# --- intervals ----------------------------------------------------------------------------------------


@dataclass
class Estimate:
    """A value (or a vector of them) with its interval; `method` says how the interval was made."""

    mean: object
    lo: object
    hi: object
    method: str
    n_seeds: int


def t_interval(values, alpha):
    """Mean over seeds (axis 0) with a t-interval, df = S - 1; with one seed, no interval (NaN bounds)."""
    values = np.asarray(values, dtype=float)
    S = values.shape[0]
    mean = values.mean(0)
    if S < 2:
        return mean, mean * np.nan, mean * np.nan, "one seed: no interval over seeds"
    from scipy import stats as sps  # here, not at the top: the page jobs that only ask run_learning skip scipy

    half = sps.t.ppf(1 - alpha / 2, S - 1) * values.std(0, ddof=1) / math.sqrt(S)
    method = f"t-interval over {S} seeds (df = {S - 1}); the seed is the unit of replication"
    return mean, mean - half, mean + half, method


def _epoch_bootstrap(per_epoch, alpha, rng, n_boot):
    """Percentile interval of the mean over epochs (axis 0), resampling whole epochs."""
    per_epoch = np.asarray(per_epoch, dtype=float)
    idx = rng.integers(0, per_epoch.shape[0], size=(n_boot, per_epoch.shape[0]))
    boot = per_epoch[idx].mean(1)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    return per_epoch.mean(0), lo, hi, ONE_SEED_METHOD


def _estimate(Ds, per_epoch_fn, alpha, rng, n_boot):
    """Mean over seeds of a linear summary of the z-rows, with the seed t-interval (or, one seed, the epoch bootstrap).

    per_epoch_fn maps an (E, K) z-matrix to its per-epoch values (E, ...); a seed's value is their mean.
    """
    Ds = _seeds(Ds)
    if len(Ds) >= 2:
        mean, lo, hi, method = t_interval([per_epoch_fn(zscore_rows(D)).mean(0) for D in Ds], alpha)
    else:
        rng = np.random.default_rng(rng)
        mean, lo, hi, method = _epoch_bootstrap(per_epoch_fn(zscore_rows(Ds[0])), alpha, rng, n_boot)
    scalar = np.ndim(mean) == 0
    as_out = float if scalar else np.asarray
    return Estimate(as_out(mean), as_out(lo), as_out(hi), method, len(Ds))


def positional_profile(Ds, n_bins, alpha=0.05, rng=None, n_boot=2000):
    """Mean z per equal-count bin of positions (n_bins = 10: deciles, 4: quartiles), with intervals.

    Two or more seeds: per-seed bin means, their mean, and a t-interval over seeds. One seed: an epoch
    bootstrap, and `method` says that it understates the uncertainty.
    """
    Ds = _seeds(Ds)
    bins = position_bins(Ds[0].shape[1], n_bins)
    onehot = (bins[:, None] == np.arange(n_bins)) / np.bincount(bins, minlength=n_bins)
    return _estimate(Ds, lambda Z: Z @ onehot, alpha, rng, n_boot)


def contrast_weights(region_mask):
    """(K,) weights w with profile @ w = mean inside the region - mean outside."""
    mask = np.asarray(region_mask, dtype=bool)
    if mask.all() or not mask.any():
        raise ValueError("a region needs positions both inside and outside it")
    return mask / mask.sum() - ~mask / (~mask).sum()


def contrast_estimate(Ds, region_mask, alpha=0.05, rng=None, n_boot=2000):
    """Mean over seeds of [mean z inside the region - mean z outside], in within-epoch SD units (negative: closer)."""
    w = contrast_weights(region_mask)
    return _estimate(Ds, lambda Z: Z @ w, alpha, rng, n_boot)


# --- rank correlation ---------------------------------------------------------------------------------


def spearman(x, y):
    """Spearman's rho along the last axis (average ranks for ties); nan where either side is constant.

    Broadcasts: spearman(positions (K,), profiles (n, K)) gives (n,). A scalar for 1-D inputs.
    """
    from scipy import stats as sps

    x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    rx = sps.rankdata(x, axis=-1)
    ry = sps.rankdata(y, axis=-1)
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    den = np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, (rx * ry).sum(-1) / np.where(den > 0, den, 1), np.nan)
    return float(rho) if rho.ndim == 0 else rho


# --- statistics: functions of the seeds' profiles -----------------------------------------------------
# A statistic maps profiles P of shape (..., S, K) to (...): vectorised over any leading axes, so the
# observed value is statistic(P) and the null is statistic of the (n_perm, S, K) permuted profiles.


def contrast(region_mask):
    """Statistic: mean over seeds of [mean profile inside the region - mean outside] (negative: closer)."""
    w = contrast_weights(region_mask)
    return lambda P: (np.asarray(P) @ w).mean(-1)


def position_rho(P):
    """Statistic: Spearman rho of position (0..K-1) with the seed-averaged profile (negative: high scores closer)."""
    P = np.asarray(P)
    return spearman(np.arange(P.shape[-1]), P.mean(-2))


def score_rho(scores):
    """Statistic: mean over seeds of Spearman rho(batch mean score, that seed's profile); scores (S, K).

    Batch means of an ascending order rise with position, so this equals position_rho up to ties and the
    difference between averaging rhos and averaging profiles.
    """
    scores = np.asarray(scores, dtype=float)
    return lambda P: spearman(scores, np.asarray(P)).mean(-1)


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


# --- runs that did not learn ----------------------------------------------------------------------------
# A fixed order can stop a network from learning (a sorted order that groups classes into batches). Such a
# run's gradients answer no question about training; it is named on every page and never averaged in.
# The rule is a fixed practical margin above chance, the same at every test-set size: a margin of binomial
# standard errors (as before) called 0.15 accuracy "not learned" on 256 test images and "learned" on 10,000.

LEARNING_KAPPA = 0.03  # the share of the way from chance to perfect accuracy a run must reach to count as learned
LEARNING_RULE = (
    "A run counts as learned when its mean test accuracy over the last phase is at least chance plus 3% of the way "
    "from chance to perfect accuracy (chance + 0.03 × (1 − chance): 0.127 with 10 classes, 0.040 with 100), "
    "whatever the size of the test set."
)


@dataclass
class Learning:
    """Whether a run learned: its mean test accuracy over the last phase against chance (1 / classes).

    margin: how far above chance the rule asks for (LEARNING_KAPPA (1 - chance)); se: the binomial standard
    error of an accuracy near chance on this test set, sqrt(chance (1 - chance) / n_test), which describes
    the uncertainty of the accuracy and plays no part in the decision."""

    learned: bool
    accuracy: float
    chance: float
    margin: float
    se: float = math.nan

    def describe(self):
        if self.learned:
            return f"learned: test accuracy {self.accuracy:.2f} over the last phase, chance {self.chance:.2f}"
        return (
            f"the network did not learn under this order: test accuracy {self.accuracy:.2f} over the last phase, "
            f"chance {self.chance:.2f}"
        )


def learning_status(last_phase_accuracy, n_classes, n_test):
    """Learning of a run from its test accuracies over its last phase (LEARNING_RULE): it learned when their
    mean is at least chance + LEARNING_KAPPA (1 - chance), chance = 1 / n_classes (the test sets here are
    balanced): 0.127 for 10 classes at any test-set size. n_test only sets Learning.se, the binomial
    standard error that describes the accuracy's uncertainty. On 256 test images (one binomial draw of the
    test set) a run truly at 0.18, 0.19, 0.20 is called "not learned" in 1.1%, 0.4%, 0.1% of test sets (the
    old margin of 3 binomial SEs: 18%, 10%, 4%); a run at chance (0.10) is called "learned" in 8% of
    256-image test sets and practically never on 10,000 (tests/test_stats.py measures these)."""
    acc = np.asarray(last_phase_accuracy, dtype=float)
    if acc.size == 0 or not np.all(np.isfinite(acc)) or n_classes < 2 or n_test < 1:
        raise ValueError(
            f"learning_status: need finite accuracies, n_classes >= 2 and n_test >= 1 "
            f"(got {acc.size} values, {n_classes}, {n_test})"
        )
    chance = 1.0 / n_classes
    margin = LEARNING_KAPPA * (1 - chance)
    mean = float(acc.mean())
    se = math.sqrt(chance * (1 - chance) / n_test)
    return Learning(mean >= chance + margin - 1e-12, mean, chance, margin, se)


def run_learning(epochs, test_acc, phases, n_classes, n_test):
    """Learning of an Algorithm 1 run from its per-epoch test accuracies over the study's last phase
    (phases: [(phase, first_epoch, last_epoch, lr)]; a run that stops earlier: its last epoch)."""
    epochs, acc = np.asarray(epochs), np.asarray(test_acc, dtype=float)
    _, first, last, _ = phases[-1]
    sel = (epochs >= first) & (epochs <= last)
    return learning_status(acc[sel] if sel.any() else acc[epochs == epochs.max()], n_classes, n_test)


# --- the paper's claims -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    id: str
    text: str  # in plain words, as the paper states it (section 5)
    metrics: tuple
    phases: tuple
    region: str  # a key of REGIONS
    expected: str  # "closer" or "farther" to the full gradient than the rest of the positions


PAPER_CLAIMS = [
    Claim(
        "early-upper-quartile",
        "In the first training phase the best mini-batches for intensity and for perceptual similarity "
        "(LPIPS) come from the upper quartile.",
        ("intensity", "lpips"),
        (1,),
        "upper_quartile",
        "closer",
    ),
    Claim(
        "early-color-outside-middle-80",
        "In the first training phase the best colour (HSV) mini-batches come from outside the middle 80 percent.",
        ("color",),
        (1,),
        "outside_middle_80",
        "closer",
    ),
    Claim(
        "early-edges-middle-80",
        "In the first training phase the best edge mini-batches come from inside the middle 80 percent.",
        ("edges",),
        (1,),
        "middle_80",
        "closer",
    ),
    Claim(
        "late-extremes-poor",
        "In the second and third training phases the metric extremes produce poor mini-batches, for all four metrics.",
        ("intensity", "color", "edges", "lpips"),
        (2, 3),
        "extremes_10",
        "farther",
    ),
]


NOT_INTERPRETABLE = "not interpretable"
FAMILIES = {
    "confirmatory": "the paper's claims: their verdicts are Holm-corrected over this family only",
    "exploratory": "the random-order controls and the associations with position and score: Holm-corrected over "
    "this family on its own; leads, not verdicts",
}


def verdict(effect, p_adjusted, expected, alpha=0.05):
    """supported: adjusted p < alpha with the claimed sign; contradicted: adjusted p < alpha, opposite sign;
    otherwise inconclusive. A negative effect is "closer", a positive one "farther"."""
    if expected not in ("closer", "farther"):
        raise ValueError(f"expected must be 'closer' or 'farther', got {expected!r}")
    if not (np.isfinite(effect) and np.isfinite(p_adjusted)) or effect == 0 or p_adjusted >= alpha:
        return "inconclusive"
    return "supported" if (effect < 0) == (expected == "closer") else "contradicted"


def _fmt_p(p):
    if not np.isfinite(p):
        return "p not available"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def fmt_level(level):
    """The confidence 1 - level in percent, with level to two significant digits: 95%, 99.58%, 99%."""
    if not np.isfinite(level) or not 0 < level < 1:
        return "?"
    digits = max(0, 1 - math.floor(math.log10(100 * level)))
    return f"{100 * (1 - level):.{digits}f}".rstrip("0").rstrip(".") + "%"


def fmt_interval(lo, hi, spec=".2f"):
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "unbounded" if lo != lo or np.isinf(lo) or np.isinf(hi) else "not available"
    return f"{lo:{spec}} to {hi:{spec}}"


def sentence(
    phase,
    metric,
    region,
    effect,
    ci_lo,
    ci_hi,
    level,
    p_adjusted,
    verdict,
    n_seeds,
    control=False,
    note="",
    alpha=0.05,
    test="studentized permutation test",
):
    """One plain-English sentence for a claim (or control) row, with the numbers.

    e.g. "In phase 1 the upper-quartile batches of intensity are 0.31 SD closer to the full gradient than
    the rest (99.58% interval 0.12 to 0.50, by inverting the studentized permutation test at Holm's level;
    3 seeds; Holm-adjusted p = 0.004): supported." The interval is of the shift in mean z between the
    region and the rest; it excludes 0 exactly when the Holm-adjusted p is below alpha. `test` names the
    test inverted ("permutation test" for the pooled contrast, analyse_study(studentized=False)).
    """
    subject, rest = REGION_WORDS.get(region, (f"the batches in {region}", "the rest"))
    of = "the random ordering" if metric == "random" else metric
    if verdict == NOT_INTERPRETABLE:
        return f"In phase {phase} {subject} of {of} could not be tested: {note}: {verdict}."
    if not np.isfinite(effect):
        return f"In phase {phase} {subject} of {of} could not be compared with {rest}: {verdict}."
    closer = effect < 0
    size, lo, hi = (-effect, -ci_hi, -ci_lo) if closer else (effect, ci_lo, ci_hi)
    way = "closer to" if closer else "farther from"
    seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    interval = (
        f"{fmt_level(level)} interval {fmt_interval(lo, hi)}"
        if np.isfinite(lo) and np.isfinite(hi)
        else f"the {fmt_level(level)} interval is unbounded: no shift is rejected at Holm's level"
    )
    extra = f"; {note}" if note else ""
    text = (
        f"In phase {phase} {subject} of {of} are {size:.2f} SD {way} the full gradient than {rest} "
        f"({interval}, by inverting the {test} at Holm's level; {seeds}{extra}; "
        f"Holm-adjusted {_fmt_p(p_adjusted)})"
    )
    if control:
        chance = (
            "a pattern this strong arises by chance, so weigh the claims with care"
            if np.isfinite(p_adjusted) and p_adjusted < alpha
            else "the random ordering makes no claim; it shows how large such a pattern is by chance"
        )
        return f"{text}: control, exploratory ({chance})."
    return f"{text}: {verdict}."


# --- a whole study ------------------------------------------------------------------------------------


def _cell_rng(seed, model, metric, phase):
    """A generator per (model, metric, phase): results do not depend on the order cells are analysed in."""
    return np.random.default_rng(
        [int(seed), zlib.crc32(str(model).encode()), zlib.crc32(str(metric).encode()), zlib.crc32(str(phase).encode())]
    )


def _row(**fields):
    base = dict(
        kind=None,
        family=None,
        model=None,
        claim=None,
        metric=None,
        phase=None,
        region=None,
        expected=None,
        statistic=None,
        bin=None,
        effect=float("nan"),
        ci_lo=float("nan"),
        ci_hi=float("nan"),
        level=float("nan"),
        p=float("nan"),
        p_holm=float("nan"),
        verdict=None,
        sentence=None,
        n_seeds=None,
        not_learned=None,
        method=None,
        control=False,
        n_perm=None,
    )
    base.update(fields)
    return base


class SeedRun(NamedTuple):
    """One seed's distances of one (model, metric): the gathered matrix as the statistics need it."""

    distance: np.ndarray  # (E, K)
    epoch: np.ndarray  # (E,)
    score: np.ndarray = None  # (K,) the batches' mean metric scores
    seed: object = None  # the run's seed, to name it
    learning: Learning = None  # None: taken as learned


def _not_learned_note(runs):
    """Words for the runs of a cell that did not learn: which seeds, their accuracy and chance."""
    bad = [r for r in runs if r.learning is not None and not r.learning.learned]
    if not bad:
        return ""
    names = ", ".join(str(r.seed) for r in bad if r.seed is not None)
    accuracy = ", ".join(f"{r.learning.accuracy:.2f}" for r in bad)
    which = f"seed{'s' if len(bad) > 1 else ''} {names}" if names else f"{len(bad)} seed(s)"
    return (
        f"the network did not learn under this order in {which} (test accuracy {accuracy} over the last phase, "
        f"chance {bad[0].learning.chance:.2f})"
    )


def analyse_study(
    matrices,
    phases,
    metrics,
    claims=PAPER_CLAIMS,
    n_perm=9999,
    alpha=0.05,
    seed=0,
    n_boot=2000,
    scheme="shared",
    studentized=True,
):
    """Every claim, control, association and profile of a study as tidy rows (a list of dicts, one schema).

    matrices: {(model, metric): [per seed: SeedRun(distance=(E, K), epoch=(E,), score=(K,), seed, learning)]}
    phases: [(phase, first_epoch, last_epoch, lr)].
    kind "claim": a claim tested on one (model, metric, phase), family "confirmatory"; "control": the same
    test on the random ordering (control=True, verdict "control"), family "exploratory"; "association":
    Spearman rho of position (rho_position) and of batch mean score (rho_score) with the profile,
    "exploratory"; "profile": mean z per decile and quartile with a t-interval over seeds (descriptive);
    "summary": per (model, claim), supported if all its rows are supported, contradicted if any is
    contradicted, else inconclusive. Holm runs within each family. A claim's or control's effect is the
    contrast (the shift of the region's mean z); its p-value relabels the studentized contrast
    (WelchContrast: robust to a region whose batches spread more or less than the rest's), or with
    studentized=False the plain contrast (kept to show, in tests/test_stats.py and benchmarks/power.py, what
    the studentized test fixes). Its interval inverts that test at the level Holm decides it at
    (holm_levels), so it excludes 0 exactly when the Holm-adjusted p < alpha. The Spearman rows' nulls come
    from relabelled ranks (ranks are equivariant), which gives the values of relabelling and ranking each
    profile. A seed whose run did not learn (SeedRun.learning, stats.LEARNING_RULE) is left out and named;
    a cell with no seed left gets "not interpretable" rows outside both families. Deterministic given `seed`.
    """
    if scheme not in ("shared", "per_seed"):
        raise ValueError(f"analyse_study: scheme {scheme!r}; use shared or per_seed (per_epoch is the wrong null)")
    models = list(dict.fromkeys(model for model, _ in matrices))
    rows, tests = [], []  # tests: (row, how to invert its test) of the claims and controls, for the intervals
    for model in models:
        for metric in metrics:
            runs = matrices.get((model, metric)) or []
            note = _not_learned_note(runs)
            learned = [r for r in runs if r.learning is None or r.learning.learned]
            for phase, first, last, _lr in phases:
                cell = dict(model=model, metric=metric, phase=phase, not_learned=note or None)
                picked = []
                for run in learned:
                    epoch = np.asarray(run.epoch)
                    sel = (epoch >= first) & (epoch <= last)
                    if sel.any():
                        picked.append((np.asarray(run.distance, dtype=float)[sel], run.score))
                applicable = [
                    c
                    for c in claims
                    if phase in c.phases and (metric in c.metrics or (metric == "random" and "random" not in c.metrics))
                ]
                if not picked:
                    if runs and note:
                        for claim in applicable:
                            is_control = metric not in claim.metrics
                            rows.append(
                                _row(
                                    kind="control" if is_control else "claim",
                                    claim=claim.id,
                                    region=claim.region,
                                    expected=claim.expected,
                                    statistic="contrast",
                                    verdict=NOT_INTERPRETABLE,
                                    control=is_control,
                                    n_seeds=0,
                                    method="not tested: no seed of this order learned",
                                    sentence=sentence(
                                        phase,
                                        metric,
                                        claim.region,
                                        *[math.nan] * 4,
                                        math.nan,
                                        NOT_INTERPRETABLE,
                                        0,
                                        note=note,
                                    ),
                                    **cell,
                                )
                            )
                    continue
                Ds = _seeds([D for D, _ in picked])
                K, S = Ds[0].shape[1], len(Ds)
                cell.update(n_seeds=S, n_perm=n_perm)
                rng = _cell_rng(seed, model, metric, phase)
                P = seed_profiles(Ds)
                perm = relabellings(rng, n_perm, S, K, scheme)
                # the units relabelled: with one relabelling for every seed the statistics below are functions of
                # the seed-averaged profile, relabelled once; with one per seed, of each seed's own profile
                if scheme == "shared":
                    units, unit_perm = P.mean(0, keepdims=True), perm[:, :1]
                else:
                    units, unit_perm = P, perm
                relabelled = relabel(units, unit_perm)  # (n, U, K)

                for claim in applicable:
                    is_control = metric not in claim.metrics
                    mask = region_mask(claim.region, K)
                    w = contrast_weights(mask)
                    effect = float(contrast(mask)(P))
                    if studentized:
                        welch = WelchContrast(units, unit_perm, mask, relabelled)
                        p, interval = welch.p(0.0), welch
                        how = (
                            f"studentized permutation test (Welch-type contrast; {n_perm:,} relabellings, {scheme}) "
                            f"over {S} seed(s)"
                        )
                    else:
                        null_a = (relabelled @ w).mean(-1)
                        p = permutation_p(effect, null_a)
                        # the same relabellings of the shift delta x mask: each replicate's contrast moves by b delta
                        interval = (null_a, (mask[unit_perm] @ w).mean(-1))
                        how = f"permutation test ({n_perm:,} relabellings, {scheme}) over {S} seed(s)"
                    row = _row(
                        kind="control" if is_control else "claim",
                        family="exploratory" if is_control else "confirmatory",
                        claim=claim.id,
                        region=claim.region,
                        expected=claim.expected,
                        statistic="contrast",
                        effect=effect,
                        p=p,
                        method=f"{how}; interval: the shifts of the region's mean z it does not reject at Holm's level",
                        control=is_control,
                        **cell,
                    )
                    rows.append(row)
                    tests.append((row, interval))
                rho = position_rho(P)
                p = permutation_p(rho, _position_rho_null(units, unit_perm, relabelled))
                rows.append(
                    _row(
                        kind="association",
                        family="exploratory",
                        statistic="rho_position",
                        effect=rho,
                        p=p,
                        method="Spearman rho of position with the seed-averaged profile",
                        **cell,
                    )
                )
                if all(score is not None for _, score in picked):
                    scores = np.stack([np.asarray(score, dtype=float) for _, score in picked])
                    rho = float(score_rho(scores)(P))
                    p = permutation_p(rho, _score_rho_null(scores, P, perm))
                    rows.append(
                        _row(
                            kind="association",
                            family="exploratory",
                            statistic="rho_score",
                            effect=rho,
                            p=p,
                            method="mean over seeds of Spearman rho of batch mean score with the profile",
                            **cell,
                        )
                    )
                for name, n in (("decile", 10), ("quartile", 4)):
                    if K < n:
                        continue
                    est = positional_profile(Ds, n, alpha, rng, n_boot)
                    for b in range(n):
                        rows.append(
                            _row(
                                kind="profile",
                                statistic=name,
                                bin=b + 1,
                                effect=float(est.mean[b]),
                                ci_lo=float(est.lo[b]),
                                ci_hi=float(est.hi[b]),
                                method=est.method,
                                **cell,
                            )
                        )

    for family in FAMILIES:
        members = [r for r in rows if r["family"] == family and np.isfinite(r["p"])]
        m = len(members)
        if m and m / (n_perm + 1) >= alpha:
            warnings.warn(
                f"{m} tests in the {family} family with n_perm={n_perm}: the smallest possible Holm-adjusted p is "
                f"{m / (n_perm + 1):.3g} >= alpha = {alpha}, so nothing can be significant; raise n_perm",
                stacklevel=2,
            )
        pvalues = [r["p"] for r in members]
        for r, adj, level in zip(members, holm(pvalues), holm_levels(pvalues, alpha)):
            r["p_holm"], r["level"] = float(adj), float(level)
    for row, interval in tests:
        if isinstance(interval, WelchContrast):
            lo, hi = interval.interval(row["level"])
        else:
            lo, hi = inverted_interval(row["effect"], *interval, row["level"], 1, n_perm + 1)
        # the interval holds the printed effect (the estimate, up to rounding) without moving across 0
        row["ci_lo"], row["ci_hi"] = min(lo, row["effect"]), max(hi, row["effect"])
    for r in rows:
        if r["kind"] in ("claim", "control") and r["verdict"] != NOT_INTERPRETABLE:
            r["verdict"] = "control" if r["control"] else verdict(r["effect"], r["p_holm"], r["expected"], alpha)
            r["sentence"] = sentence(
                r["phase"],
                r["metric"],
                r["region"],
                r["effect"],
                r["ci_lo"],
                r["ci_hi"],
                r["level"],
                r["p_holm"],
                r["verdict"],
                r["n_seeds"],
                r["control"],
                r["not_learned"] or "",
                alpha,
                "studentized permutation test" if studentized else "permutation test",
            )
        elif r["kind"] == "association":
            what = "position" if r["statistic"] == "rho_position" else "batch mean score"
            of = "the random ordering" if r["metric"] == "random" else r["metric"]
            r["sentence"] = (
                f"In phase {r['phase']} the Spearman rho of {what} with the z-scored distance for {of} "
                f"is {r['effect']:+.2f} ({r['n_seeds']} seeds, exploratory, Holm-adjusted {_fmt_p(r['p_holm'])})."
            )

    by_id = {c.id: c for c in claims}
    for model in models:
        for claim_id in dict.fromkeys(r["claim"] for r in rows if r["kind"] == "claim" and r["model"] == model):
            verdicts = [
                r["verdict"] for r in rows if r["kind"] == "claim" and r["model"] == model and r["claim"] == claim_id
            ]
            if all(v == NOT_INTERPRETABLE for v in verdicts):
                overall = NOT_INTERPRETABLE
            elif all(v == "supported" for v in verdicts):
                overall = "supported"
            elif any(v == "contradicted" for v in verdicts):
                overall = "contradicted"
            else:
                overall = "inconclusive"
            counts = ", ".join(f"{verdicts.count(v)} {v}" for v in (*VERDICTS, NOT_INTERPRETABLE) if v in verdicts)
            n = len(verdicts)
            rows.append(
                _row(
                    kind="summary",
                    model=model,
                    claim=claim_id,
                    region=by_id[claim_id].region,
                    expected=by_id[claim_id].expected,
                    verdict=overall,
                    sentence=f'{model}: "{by_id[claim_id].text}" {overall.capitalize()}: {counts} '
                    f"({n} metric-phase row{'s' if n != 1 else ''}).",
                )
            )
    return rows


# --- simulated studies (no training) ------------------------------------------------------------------


def simulate_study(
    rng,
    n_seeds=3,
    epochs=10,
    K=32,
    effect=0.0,
    region=None,
    persistence=0.8,
    ar=0.5,
    shared=0.0,
    effect_epochs=None,
    spread=1.0,
    spread_region="extremes_10",
    spread_rest=False,
    batch_df=None,
    grid=None,
):
    """Distance matrices of one (model, metric) without training: [per seed SeedRun(distance, epoch, score)].

    Each cell's latent x[e, k] = sqrt(persistence) b_k + sqrt(1 - persistence) u[e, k] has unit variance:
    b_k ~ N(0, 1) is the batch's persistent effect (a batch that is close stays close), of which a share
    `shared` is common to every seed (the same images in every seed, as with a deterministic ordering), and
    u is AR(1) noise over epochs (coefficient `ar`). A planted effect adds `effect` (negative: closer) to
    x in `region` (a region name or mask) for the epochs in `effect_epochs` (a bool mask; None: all), which
    shifts the z-profile there by about `effect` SD (z-scoring the shifted row shrinks it by
    1/sqrt(1 + effect^2 q (1 - q)) for a region of share q: 2% for 0.5 SD in a quartile). The distance is
    D = scale_e (1 + 0.1 x) with a per-epoch scale that shrinks tenfold every third of training and decays
    within it, like the lr phases; z-scores do not see the scale. With effect = 0 the positions are
    exchangeable. Batch mean scores are ascending, as in an ordering.

    Nulls the tests were not designed for (effect = 0 still: no position is closer on average):
    spread: x is multiplied by `spread` at the positions of `spread_region` (or, spread_rest=True, at every
    other position), so those batches are more (or less) variable from batch to batch and epoch to epoch,
    not farther on average. batch_df: the persistent effects b are Student t with that many degrees of
    freedom (> 2), scaled to unit variance (heavy tails; None: normal). grid: x is rounded to multiples of
    `grid` (the distances to multiples of 0.1 grid scale_e), so many batches tie, as with distances stored
    at low precision. The defaults draw the same random numbers as before these options existed.
    """
    if not 0 <= persistence <= 1 or not 0 <= shared <= 1 or not -1 < ar < 1:
        raise ValueError("persistence and shared must lie in [0, 1], ar in (-1, 1)")
    if spread <= 0 or (batch_df is not None and batch_df <= 2) or (grid is not None and grid <= 0):
        raise ValueError(f"spread must be > 0, batch_df > 2 and grid > 0 (got {spread}, {batch_df}, {grid})")
    e = np.arange(epochs)
    scale = 10.0 ** -(3 * e // epochs) * np.exp(-0.5 * e / epochs)
    mask = np.zeros(K, bool) if region is None else region_mask(region, K)
    rows_with_effect = np.ones(epochs, bool) if effect_epochs is None else np.asarray(effect_epochs, bool)
    spread_at = region_mask(spread_region, K)
    spread_at = ~spread_at if spread_rest else spread_at

    def batch_effects(size):
        if batch_df is None:
            return rng.standard_normal(size)
        return rng.standard_t(batch_df, size) / math.sqrt(batch_df / (batch_df - 2))

    common = batch_effects(K)
    out = []
    for _ in range(n_seeds):
        b = math.sqrt(shared) * common + math.sqrt(1 - shared) * batch_effects(K)
        u = np.empty((epochs, K))
        u[0] = rng.standard_normal(K)
        for i in range(1, epochs):
            u[i] = ar * u[i - 1] + math.sqrt(1 - ar * ar) * rng.standard_normal(K)
        x = math.sqrt(persistence) * b + math.sqrt(1 - persistence) * u
        if spread != 1.0:
            x[:, spread_at] *= spread
        x[np.ix_(rows_with_effect, mask)] += effect
        if grid is not None:
            x = np.round(x / grid) * grid
        out.append(
            SeedRun(distance=scale[:, None] * (1 + 0.1 * x), epoch=e + 1, score=np.cumsum(rng.exponential(size=K)))
        )
    return out
