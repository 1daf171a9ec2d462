"""Simulated studies with no training, for calibration and power: null and planted effects, unequal spread,
heavy tails and ties. See bestbatch.stats."""

import math

import numpy as np

from .claims import SeedRun
from .profiles import region_mask

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


def simulate_gram_study(
    rng,
    n_seeds=3,
    epochs=7,
    K=32,
    dim=16,
    effect=0.0,
    region=None,
    effect_epochs=None,
    persistence=0.6,
    shared=0.7,
    spread=0.0,
    spread_region="extremes_10",
    df=None,
    grid=None,
    clip=None,
):
    """Batch gradients of one (model, metric) without training, as the claims see them: [per seed SeedRun(distance,
    epoch, score, gram)], the distances those of the Gram matrices.

    g_k = scale_e (mu + a_k x_ek) in `dim` dimensions: mu a fixed full gradient of norm 1, x_ek = sqrt(persistence)
    b_k + sqrt(1 - persistence) u_ek with unit-variance coordinates / sqrt(dim), b_k the batch's persistent deviation
    (a share `shared` common to the seeds, as with a deterministic order), u_ek fresh each epoch; scale_e shrinks
    tenfold every third of training (step-decay phases). A planted effect multiplies the deviations of `region`'s
    batches by exp(effect) in `effect_epochs` (negative: those batches are closer and their mean is a better set).
    With effect = 0 the positions are exchangeable in every null below, none of which makes a region a better or
    worse set on average: spread > 0: a_k^2 at spread_region's positions is Gamma with mean 1 and coefficient of
    variation `spread` (unequal spread; a_k = 1 elsewhere); df: b and u are multivariate Student t with df > 2
    degrees of freedom, scaled to unit variance (heavy tails); grid: every coordinate of g is rounded to multiples
    of grid * scale_e (ties); clip: each g_k is scaled down to at most clip times the epoch's median norm
    (censoring, as gradient clipping does).
    """
    if (
        spread < 0
        or (df is not None and df <= 2)
        or (grid is not None and grid <= 0)
        or (clip is not None and clip <= 0)
    ):
        raise ValueError(f"spread >= 0, df > 2, grid > 0 and clip > 0 (got {spread}, {df}, {grid}, {clip})")
    e = np.arange(epochs)
    scale = 10.0 ** -(3 * e // epochs) * np.exp(-0.5 * e / epochs)
    mask = np.zeros(K, bool) if region is None else region_mask(region, K)
    effect_rows = np.ones(epochs, bool) if effect_epochs is None else np.asarray(effect_epochs, bool)
    spread_at = region_mask(spread_region, K)

    def draw(*shape):
        z = rng.standard_normal(shape)
        if df is not None:
            z *= np.sqrt((df - 2) / rng.chisquare(df, shape[:-1]))[..., None]
        return z / math.sqrt(dim)

    mu = rng.standard_normal(dim)
    mu /= np.linalg.norm(mu)
    common = draw(K, dim)
    out = []
    for _ in range(n_seeds):
        b = math.sqrt(shared) * common + math.sqrt(1 - shared) * draw(K, dim)
        a = np.ones(K)
        if spread > 0:
            a[spread_at] = np.sqrt(rng.gamma(1 / spread**2, spread**2, int(spread_at.sum())))
        x = math.sqrt(persistence) * b + math.sqrt(1 - persistence) * draw(epochs, K, dim)
        x = a[None, :, None] * x
        x[np.ix_(effect_rows, mask)] *= math.exp(effect)
        g = scale[:, None, None] * (mu + x)
        if grid is not None:
            g = np.round(g / (grid * scale[:, None, None])) * grid * scale[:, None, None]
        if clip is not None:
            norm = np.linalg.norm(g, axis=-1, keepdims=True)
            g *= np.minimum(1.0, clip * np.median(norm, axis=1, keepdims=True) / norm)
        gram = g @ np.swapaxes(g, -1, -2)
        distance = np.linalg.norm(g - g.mean(1, keepdims=True), axis=-1)
        out.append(SeedRun(distance=distance, epoch=e + 1, score=np.cumsum(rng.exponential(size=K)), gram=gram))
    return out
