"""Rules of plots.smk: a run's heatmaps, layer shares and training curves, from its gathered matrices."""

from ..formats import read_matrix
from ..logs import step
from ..plots import curves_figure, heatmap_figure, layers_figure, write_figure, write_plotly_js
from ..stats import run_learning


@step
def heatmap_page(matrix_path, out_html, *, metric, phases, plotly_js=None):
    """One metric's phase-split interactive heatmap; phases: [(phase, first, last, lr)]; plotly_js: the study's
    plotly.js, which the page loads by a relative path (None: inlined)."""
    write_figure(heatmap_figure(metric, read_matrix(matrix_path), phases), out_html, plotly_js)


@step
def layers_page(matrix_path, out_html, *, metric, phases, plotly_js=None):
    """One metric's per-layer page: which parameter tensors carry the distance in each phase."""
    write_figure(layers_figure(metric, read_matrix(matrix_path), phases), out_html, plotly_js)


@step
def curves_page(matrix_paths, out_html, *, metrics, phases, n_classes, n_test, plotly_js=None):
    """Training loss, test accuracy, gradient noise scale and gradient diversity of every metric's run,
    on one page; a run whose network did not learn (stats.run_learning) is named on it."""
    runs = {metric: read_matrix(path) for metric, path in zip(metrics, matrix_paths)}
    learning = {metric: run_learning(m.epoch, m.test_acc, phases, n_classes, n_test) for metric, m in runs.items()}
    write_figure(curves_figure(runs, learning), out_html, plotly_js)


@step
def plotly_bundle(out_js):
    """The study's one copy of plotly.js, which every page loads (bestbatch.plots.plotly_scripts)."""
    write_plotly_js(out_js)
