"""Rules of plots.smk: a run's heatmaps, layer shares and training curves, from its gathered matrices."""

import logging
import zlib

import numpy as np

from ..atomic import atomic_path
from ..formats import read_matrix
from ..gradients import sketch_statement, unresolved_statement
from ..logs import step
from ..plots import (
    curves_figure,
    heatmap_figure,
    layers_figure,
    note_sketch,
    sets_figure,
    write_figure,
    write_plotly_js,
)
from ..sets import REGION_SETS, phase_cosines, run_sets
from ..stats import region_mask, run_learning

log = logging.getLogger("bestbatch")
SETS_COLUMNS = ("model", "seed", "metric", "epoch", "phase", "set", "m", "error", "relative_error", "effective_rank")


@step
def heatmap_page(matrix_path, out_html, *, metric, phases, plotly_js=None):
    """One metric's phase-split interactive heatmap; phases: [(phase, first, last, lr)]; plotly_js: the study's
    plotly.js, which the page loads by a relative path (None: inlined)."""
    m = read_matrix(matrix_path)
    note = sketch_statement(m.sketch) + unresolved_statement(m.epoch, m.distance, m.sketch)
    write_figure(note_sketch(heatmap_figure(metric, m, phases), note), out_html, plotly_js)


@step
def layers_page(matrix_path, out_html, *, metric, phases, plotly_js=None):
    """One metric's per-layer page: which parameter tensors carry the distance in each phase."""
    m = read_matrix(matrix_path)
    note = sketch_statement(m.sketch) and (
        "Sketched gradients keep no per-tensor distances: the one row is the whole vector. "
        + sketch_statement(m.sketch)
    )
    write_figure(note_sketch(layers_figure(metric, m, phases), note), out_html, plotly_js)


@step
def sets_page(matrix_path, out_csv, out_html, *, model, seed, metric, phases, draws=200, rng_seed=0, plotly_js=None):
    """One run's sets of batches (bestbatch.sets), from its Gram matrices: every epoch's greedy set, m closest,
    random sets (draws per size, seeded by (rng_seed, model, seed, metric): the same numbers on every rerun) and
    the paper's regions as a tidy CSV (SETS_COLUMNS), and the page (plots.sets_figure)."""
    import pandas as pd  # here: the other pages' jobs need not pay its import

    m = read_matrix(matrix_path, gram=True)
    K = m.gram.shape[-1]
    rng = np.random.default_rng(
        [int(rng_seed), zlib.crc32(str(model).encode()), int(seed), zlib.crc32(metric.encode())]
    )
    regions = {name: region_mask(name, K) for name in REGION_SETS}
    table = pd.DataFrame(run_sets(m.epoch, m.phase, m.gram, rng, draws, regions))
    table.insert(0, "metric", metric)
    table.insert(0, "seed", int(seed))
    table.insert(0, "model", model)
    table = table[list(SETS_COLUMNS)]
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.9g")
    cos = {p: phase_cosines(m.gram, m.phase, p) for p, *_ in phases if np.any(m.phase == p)}
    write_figure(note_sketch(sets_figure(metric, table, cos, phases), sketch_statement(m.sketch)), out_html, plotly_js)
    last = table[table.epoch == table.epoch.max()]
    log.info(
        "%s: %d epochs x %d batches; last epoch's effective rank %.2f",
        metric,
        len(m.epoch),
        K,
        last.effective_rank.iloc[0],
    )
    return table


@step
def curves_page(matrix_paths, out_html, *, metrics, phases, n_classes, n_test, plotly_js=None):
    """Training loss, test accuracy, gradient noise scale and gradient diversity of every metric's run,
    on one page; a run whose network did not learn (stats.run_learning) is named on it."""
    runs = {metric: read_matrix(path) for metric, path in zip(metrics, matrix_paths)}
    learning = {metric: run_learning(m.epoch, m.test_acc, phases, n_classes, n_test) for metric, m in runs.items()}
    sketched = next((m.sketch for m in runs.values() if m.sketch), None)
    note = sketch_statement(sketched) and "Noise scale and diversity from sketched gradients. " + sketch_statement(
        sketched
    )
    write_figure(note_sketch(curves_figure(runs, learning), note), out_html, plotly_js)


@step
def plotly_bundle(out_js):
    """The study's one copy of plotly.js, which every page loads (bestbatch.plots.plotly_scripts)."""
    write_plotly_js(out_js)
