"""Cheap proxies against the exact answer: does a signal that costs nothing beyond training rank the batches of
an epoch like Algorithm 1's distance D[e, k] = ||g_k - g_bar||? If one does, selection can run without it.

Every proxy ranks ascending: its smallest value is the batch it predicts closest to the full gradient, as the
smallest distance is the closest batch. So a positive Spearman rho means the proxy agrees with the distance.

  last_layer      the last module's gradient distance (what GradMatch and CRAIG use): the root of the summed
                  squared layer_distance over the tensors of the network's last module (last_module_tensors)
  batch_loss      net_normal's training loss on the batch in that epoch, at the parameters its earlier steps that
                  epoch reached (what training logs for free; the g_k are at the epoch-start parameters)
  gradient_norm   ||g_k||, the batch gradient's norm

Per epoch, two numbers compare a proxy with the distance (epoch_agreement):
  spearman   rank correlation over the K batches (average ranks for ties; NaN where either row is constant)
  overlap    |top_m(distance) & top_m(proxy)| / m, the share of the m closest batches that the proxy's first m hold;
             m = max(1, K // 4), a quarter of the batches, the size of the paper's upper quartile; ties at the
             m-th place count in expectation over a random tie-break. A proxy that ranks at random overlaps m/K.

Seeds are the replicates (proxy_table): per (model, metric, phase, proxy, statistic) a seed's value is the mean over
the phase's epochs, and the table gives their mean over seeds with a t-interval (NaN bounds with one seed). It is
descriptive: no p-values and no verdicts. Statistics know no files: bestbatch.steps.proxies reads and writes them.
"""

import numpy as np

from .stats.profiles import spearman, t_interval

ALPHA = 0.05  # the intervals are at 95%
DIRECTION = "ascending"  # every proxy: smallest = predicted closest
PROXIES = {
    "last_layer": "the last module's gradient distance, sqrt of the summed squared layer distances of its tensors",
    "batch_loss": "the batch's training loss in the epoch",
    "gradient_norm": "the batch gradient's norm ||g_k||",
}
STATISTICS = ("spearman", "overlap")
COLUMNS = (
    "model",
    "metric",
    "phase",
    "first_epoch",
    "last_epoch",
    "proxy",
    "direction",
    "tensors",
    "statistic",
    "mean",
    "lo",
    "hi",
    "level",
    "n_seeds",
    "n_epochs",
    "m",
    "K",
    "chance",
)


def top_m(K):
    """How many batches the overlap compares: a quarter of them, max(1, K // 4) (the paper's upper quartile)."""
    return max(1, K // 4)


# --- per epoch ----------------------------------------------------------------------------------------


def _membership(values, m):
    """(E, K) probability that each batch is among a row's m smallest values, ties at the m-th place broken at
    random: 1 below the m-th smallest value, (m - #below) / #tied at it, 0 above."""
    values = np.asarray(values, dtype=float)
    cut = np.sort(values, -1)[..., m - 1 : m]
    below = (values < cut).sum(-1, keepdims=True)
    tied = (values == cut).sum(-1, keepdims=True)
    return np.where(values < cut, 1.0, np.where(values == cut, (m - below) / tied, 0.0))


def _degenerate(values):
    """(E,) rows that rank nothing: constant, or holding a non-finite value."""
    values = np.asarray(values, dtype=float)
    return ~np.isfinite(values).all(-1) | (values.max(-1) == values.min(-1))


def top_overlap(proxy, exact, m):
    """(E,) per epoch, the share of the m batches closest by `exact` that the m smallest of `proxy` hold (1: the
    same sets, m/K: chance); ties at the m-th place count in expectation over a random tie-break, independently
    on each side. NaN where either row is constant or not finite."""
    proxy, exact = np.atleast_2d(np.asarray(proxy, dtype=float)), np.atleast_2d(np.asarray(exact, dtype=float))
    if proxy.shape != exact.shape:
        raise ValueError(f"proxy of shape {proxy.shape} against a distance of shape {exact.shape}")
    if not 1 <= m <= exact.shape[-1]:
        raise ValueError(f"m = {m} of {exact.shape[-1]} batches")
    bad = _degenerate(proxy) | _degenerate(exact)
    with np.errstate(invalid="ignore", divide="ignore"):
        shared = (_membership(proxy, m) * _membership(exact, m)).sum(-1) / m
    return np.where(bad, np.nan, shared)


def epoch_agreement(proxy, exact, m):
    """(spearman (E,), overlap (E,)) of a proxy (E, K) with the exact distance (E, K), epoch by epoch; both rank
    ascending (smallest = closest). NaN in an epoch where either row is constant or not finite."""
    proxy, exact = np.atleast_2d(np.asarray(proxy, dtype=float)), np.atleast_2d(np.asarray(exact, dtype=float))
    overlap = top_overlap(proxy, exact, m)
    rho = np.atleast_1d(spearman(proxy, exact))
    return np.where(np.isnan(overlap), np.nan, rho), overlap


# --- the proxies --------------------------------------------------------------------------------------


def last_module_tensors(names):
    """Indices of the tensors of the network's last module, in network order: those whose name, without its
    final component (the attribute: `.weight`, `.bias`), is the last tensor's; `linear.weight` and `linear.bias`
    for a network that ends in `linear`. A name without a dot is a tensor of the network itself."""
    names = [str(n) for n in names]
    if not names:
        raise ValueError("no parameter tensors to pick the last module from")
    module = lambda name: name.rpartition(".")[0]  # noqa: E731
    last = module(names[-1])
    return [i for i, name in enumerate(names) if module(name) == last]


def proxy_values(m):
    """{proxy: ((E, K) values, tensors)} of one run's gathered Matrix `m` (layer_distance, layer_name, norm and
    train_loss); tensors names the parameter tensors a proxy reads ("" for none). A sketched matrix (its `sketch`
    settings given) has no per-tensor distances, so no last_layer."""
    values = {
        "batch_loss": (np.asarray(m.train_loss, dtype=float), ""),
        "gradient_norm": (np.asarray(m.norm, dtype=float), ""),
    }
    if getattr(m, "sketch", None):
        return values
    picked = last_module_tensors(m.layer_name)
    layers = np.asarray(m.layer_distance, dtype=float)[..., picked]
    return {"last_layer": (np.sqrt((layers**2).sum(-1)), " + ".join(str(m.layer_name[i]) for i in picked)), **values}


# --- over seeds ---------------------------------------------------------------------------------------


def _over_seeds(per_seed, alpha):
    """(mean, lo, hi, n_seeds) of the per-seed values that are not NaN (a t-interval; NaN bounds with one)."""
    values = np.asarray([v for v in per_seed if not np.isnan(v)], dtype=float)
    if values.size == 0:
        return np.nan, np.nan, np.nan, 0
    mean, lo, hi, _method = t_interval(values, alpha)
    return float(mean), float(lo), float(hi), int(values.size)


def proxy_table(matrices, phases, alpha=ALPHA):
    """One row per (model, metric, phase, proxy, statistic), in COLUMNS' order.

    matrices: {(model, metric): [one gathered Matrix per seed]}; phases: [(phase, first_epoch, last_epoch, lr)].
    A seed's value is the mean over the phase's epochs of the per-epoch statistic (epoch_agreement; epochs where
    it is NaN left out); mean, lo and hi: their mean over the seeds that have one (n_seeds) with a t-interval at
    1 - alpha (NaN bounds with one seed); n_epochs: the (seed, epoch) pairs that gave a value. m = max(1, K // 4);
    chance: what a proxy that ranks at random gives (0 for spearman, m / K for overlap)."""
    rows = []
    for (model, metric), runs in matrices.items():
        if not runs:
            continue
        Ks = {np.shape(run.distance)[-1] for run in runs}
        if len(Ks) != 1:
            raise ValueError(f"{model}, {metric}: the seeds have different numbers of batches {sorted(Ks)}")
        K = Ks.pop()
        m = top_m(K)
        values = [proxy_values(run) for run in runs]
        for phase, first, last, _lr in phases:
            for proxy in [p for p in PROXIES if all(p in v for v in values)]:
                per_seed = {statistic: [] for statistic in STATISTICS}
                n_epochs = dict.fromkeys(STATISTICS, 0)
                for run, proxies in zip(runs, values):
                    epoch = np.asarray(run.epoch)
                    rows_in = (epoch >= first) & (epoch <= last)
                    if not rows_in.any():
                        continue
                    exact = np.asarray(run.distance, dtype=float)[rows_in]
                    for statistic, per_epoch in zip(STATISTICS, epoch_agreement(proxies[proxy][0][rows_in], exact, m)):
                        kept = per_epoch[~np.isnan(per_epoch)]
                        per_seed[statistic].append(kept.mean() if kept.size else np.nan)
                        n_epochs[statistic] += kept.size
                if not per_seed["spearman"]:
                    continue  # no seed has an epoch in this phase
                tensors = values[0][proxy][1]
                for statistic in STATISTICS:
                    mean, lo, hi, n_seeds = _over_seeds(per_seed[statistic], alpha)
                    rows.append(
                        dict(
                            model=model,
                            metric=metric,
                            phase=phase,
                            first_epoch=first,
                            last_epoch=last,
                            proxy=proxy,
                            direction=DIRECTION,
                            tensors=tensors,
                            statistic=statistic,
                            mean=mean,
                            lo=lo,
                            hi=hi,
                            level=1 - alpha,
                            n_seeds=n_seeds,
                            n_epochs=n_epochs[statistic],
                            m=m,
                            K=K,
                            chance=m / K if statistic == "overlap" else 0.0,
                        )
                    )
    return rows
