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

The seed is the unit of replication of the intervals: with two or more seeds an interval is a t-interval
over the per-seed values (df = S - 1). With one seed there is nothing to replicate, and the interval is an
epoch bootstrap that understates the uncertainty (the `method` field says so). The interval describes the
size of the difference in this ordering across training runs; the permutation p-value asks whether batch
position matters more than a random relabelling of the batches would. Intervals are not Holm-adjusted.

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
    return np.take_along_axis(np.broadcast_to(seed_profiles(Ds), perm.shape), perm, -1)


def permutation_p(observed, null, alternative="two-sided"):
    """Monte-Carlo p = (1 + #{null at least as extreme}) / (1 + n_perm); nan for a nan statistic.

    two-sided: |T_perm| >= |T_obs|; less: T_perm <= T_obs; greater: T_perm >= T_obs. Values equal up to
    rounding count as ties (as extreme).
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"unknown alternative {alternative!r}; known: {ALTERNATIVES}")
    observed = float(observed)
    null = np.asarray(null, dtype=float)
    if not np.isfinite(observed):
        return float("nan")
    tol = 1e-10 * max(1.0, abs(observed))
    if alternative == "two-sided":
        hits = np.abs(null) >= abs(observed) - tol
    elif alternative == "less":
        hits = null <= observed + tol
    else:
        hits = null >= observed - tol
    return float((1 + np.count_nonzero(hits & np.isfinite(null))) / (1 + null.size))


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

CHANCE_MARGIN_SE = 3  # "at chance": within 3 binomial standard errors of a chance classifier on the test set


@dataclass
class Learning:
    """Whether a run learned: its mean test accuracy over the last phase against chance (1 / classes)."""

    learned: bool
    accuracy: float
    chance: float
    margin: float

    def describe(self):
        if self.learned:
            return f"learned: test accuracy {self.accuracy:.2f} over the last phase, chance {self.chance:.2f}"
        return (
            f"the network did not learn under this order: test accuracy {self.accuracy:.2f} over the last phase, "
            f"chance {self.chance:.2f}"
        )


def learning_status(last_phase_accuracy, n_classes, n_test):
    """Learning of a run from its test accuracies over its last phase: it did not learn when their mean is
    at most chance + CHANCE_MARGIN_SE x sqrt(chance (1 - chance) / n_test), chance = 1 / n_classes (the
    test sets here are balanced); e.g. 0.109 for CIFAR-10's 10,000 test images, 0.140 for 512."""
    acc = np.asarray(last_phase_accuracy, dtype=float)
    if acc.size == 0 or not np.all(np.isfinite(acc)) or n_classes < 2 or n_test < 1:
        raise ValueError(
            f"learning_status: need finite accuracies, n_classes >= 2 and n_test >= 1 "
            f"(got {acc.size} values, {n_classes}, {n_test})"
        )
    chance = 1.0 / n_classes
    margin = CHANCE_MARGIN_SE * math.sqrt(chance * (1 - chance) / n_test)
    mean = float(acc.mean())
    return Learning(mean > chance + margin, mean, chance, margin)


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
    phase, metric, region, effect, ci_lo, ci_hi, level, p_adjusted, verdict, n_seeds, control=False, note="", alpha=0.05
):
    """One plain-English sentence for a claim (or control) row, with the numbers.

    e.g. "In phase 1 the upper-quartile batches of intensity are 0.31 SD closer to the full gradient than
    the rest (99.6% interval 0.12 to 0.50 by inverting the permutation test at Holm's level; 3 seeds,
    Holm-adjusted p = 0.004): supported." The interval is of the shift in mean z between the region and
    the rest; it excludes 0 exactly when the Holm-adjusted p is below alpha.
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
        f"({interval}, by inverting the permutation test at Holm's level; {seeds}{extra}; "
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
    matrices, phases, metrics, claims=PAPER_CLAIMS, n_perm=9999, alpha=0.05, seed=0, n_boot=2000, scheme="shared"
):
    """Every claim, control, association and profile of a study as tidy rows (a list of dicts, one schema).

    matrices: {(model, metric): [per seed: SeedRun(distance=(E, K), epoch=(E,), score=(K,), seed, learning)]}
    phases: [(phase, first_epoch, last_epoch, lr)].
    kind "claim": a claim tested on one (model, metric, phase), family "confirmatory"; "control": the same
    test on the random ordering (control=True, verdict "control"), family "exploratory"; "association":
    Spearman rho of position (rho_position) and of batch mean score (rho_score) with the profile,
    "exploratory"; "profile": mean z per decile and quartile with a t-interval over seeds (descriptive);
    "summary": per (model, claim), supported if all its rows are supported, contradicted if any is
    contradicted, else inconclusive. Holm runs within each family. A claim's or control's interval inverts
    its permutation test at the level Holm decides it at (holm_levels), so it excludes 0 exactly when the
    Holm-adjusted p < alpha. A seed whose run did not learn (SeedRun.learning) is left out and named; a
    cell with no seed left gets "not interpretable" rows outside both families. Deterministic given `seed`.
    """
    if scheme not in ("shared", "per_seed"):
        raise ValueError(f"analyse_study: scheme {scheme!r}; use shared or per_seed (per_epoch is the wrong null)")
    models = list(dict.fromkeys(model for model, _ in matrices))
    rows, tests = [], []  # tests: (row, observed, null_a, null_b) of the claims and controls, for the intervals
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
                null = np.take_along_axis(np.broadcast_to(P, perm.shape), perm, -1)

                def test(statistic):
                    observed = float(statistic(P))  # noqa: B023 (called in this iteration)
                    null_values = np.asarray(statistic(null), dtype=float)  # noqa: B023
                    return observed, permutation_p(observed, null_values), null_values

                for claim in applicable:
                    is_control = metric not in claim.metrics
                    mask = region_mask(claim.region, K)
                    effect, p, null_a = test(contrast(mask))
                    # the same relabellings of the shift delta x mask: each replicate's contrast moves by b delta
                    null_b = (mask[perm] @ contrast_weights(mask)).mean(-1)
                    row = _row(
                        kind="control" if is_control else "claim",
                        family="exploratory" if is_control else "confirmatory",
                        claim=claim.id,
                        region=claim.region,
                        expected=claim.expected,
                        statistic="contrast",
                        effect=effect,
                        p=p,
                        method=f"permutation test ({n_perm:,} relabellings, {scheme}) over {S} seed(s); interval: "
                        "the shifts of the region's mean z it does not reject at Holm's level",
                        control=is_control,
                        **cell,
                    )
                    rows.append(row)
                    tests.append((row, effect, null_a, null_b))
                rho, p, _ = test(position_rho)
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
                    rho, p, _ = test(score_rho(scores))
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
    for row, observed, null_a, null_b in tests:
        row["ci_lo"], row["ci_hi"] = inverted_interval(observed, null_a, null_b, row["level"], 1, n_perm + 1)
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
    rng, n_seeds=3, epochs=10, K=32, effect=0.0, region=None, persistence=0.8, ar=0.5, shared=0.0, effect_epochs=None
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
    """
    if not 0 <= persistence <= 1 or not 0 <= shared <= 1 or not -1 < ar < 1:
        raise ValueError("persistence and shared must lie in [0, 1], ar in (-1, 1)")
    e = np.arange(epochs)
    scale = 10.0 ** -(3 * e // epochs) * np.exp(-0.5 * e / epochs)
    mask = np.zeros(K, bool) if region is None else region_mask(region, K)
    rows_with_effect = np.ones(epochs, bool) if effect_epochs is None else np.asarray(effect_epochs, bool)
    common = rng.standard_normal(K)
    out = []
    for _ in range(n_seeds):
        b = math.sqrt(shared) * common + math.sqrt(1 - shared) * rng.standard_normal(K)
        u = np.empty((epochs, K))
        u[0] = rng.standard_normal(K)
        for i in range(1, epochs):
            u[i] = ar * u[i - 1] + math.sqrt(1 - ar * ar) * rng.standard_normal(K)
        x = math.sqrt(persistence) * b + math.sqrt(1 - persistence) * u
        x[np.ix_(rows_with_effect, mask)] += effect
        out.append(
            SeedRun(distance=scale[:, None] * (1 + 0.1 * x), epoch=e + 1, score=np.cumsum(rng.exponential(size=K)))
        )
    return out
