"""The seeds' profiles of a phase and what describes them: within-epoch z-scores, batch profiles, regions of
positions, the descriptive intervals over seeds (the seed is the unit of replication; one seed gets an epoch
bootstrap that says it understates), rank correlation and the statistics the tests relabel. See bestbatch.stats."""

import math
from dataclasses import dataclass

import numpy as np

ONE_SEED_METHOD = (
    "epoch bootstrap (one seed): understates uncertainty, because a batch that is close in one "
    "epoch tends to stay close"
)


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
