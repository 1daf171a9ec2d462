"""Rules of proxies.smk: cheap proxies (the last layer's distance, the batch loss, the gradient norm) against the
exact distance, from the study's gathered matrices (bestbatch.proxies)."""

import logging

import pandas as pd

from ..atomic import atomic_path
from ..formats import read_matrix
from ..logs import step
from ..proxies import COLUMNS, proxy_table

log = logging.getLogger("bestbatch")


@step
def proxies_table(matrix_paths, out_csv, *, runs, metrics, phases):
    """results/<study>/proxies.csv: per model, metric, phase, proxy and statistic (spearman, overlap), the mean
    over seeds with its 95% t-interval (bestbatch.proxies.proxy_table). runs: [[model, seed]]; matrix_paths: one
    per (run, metric) in that order; phases: [(phase, first_epoch, last_epoch, lr)]."""
    matrices = {}
    for (model, _seed, metric), path in zip([(m, s, x) for m, s in runs for x in metrics], matrix_paths, strict=True):
        matrices.setdefault((model, metric), []).append(read_matrix(path))
    table = pd.DataFrame(proxy_table(matrices, phases), columns=list(COLUMNS))
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    for (model, metric, proxy, statistic), rows in table.groupby(["model", "metric", "proxy", "statistic"], sort=False):
        log.info(
            "%s, %s, %s: %s by phase %s (chance %.3g; %s seeds)",
            model,
            metric,
            proxy,
            statistic,
            ", ".join(f"{phase}: {mean:.3f}" for phase, mean in zip(rows["phase"], rows["mean"])),
            rows["chance"].iloc[0],
            "/".join(map(str, sorted(set(rows["n_seeds"])))),
        )
    log.info("%d rows written to %s", len(table), out_csv)
    return table
