"""Rules of plots.smk: a run's heatmaps, layer shares and training curves, from its gathered matrices."""

from ..formats import read_matrix
from ..logs import step
from ..plots import curves_figure, heatmap_figure, layers_figure, write_figure
from ..stats import run_learning


@step
def heatmap_page(matrix_path, out_html, *, metric, phases):
    """One metric's phase-split interactive heatmap; phases: [(phase, first, last, lr)]."""
    write_figure(heatmap_figure(metric, read_matrix(matrix_path), phases), out_html)


@step
def layers_page(matrix_path, out_html, *, metric, phases):
    """One metric's per-layer page: which parameter tensors carry the distance in each phase."""
    write_figure(layers_figure(metric, read_matrix(matrix_path), phases), out_html)


@step
def curves_page(matrix_paths, out_html, *, metrics, phases, n_classes, n_test):
    """Training loss, test accuracy, gradient noise scale and gradient diversity of every metric's run,
    on one page; a run whose network did not learn (stats.run_learning) is named on it."""
    runs = {metric: read_matrix(path) for metric, path in zip(metrics, matrix_paths)}
    learning = {metric: run_learning(m.epoch, m.test_acc, phases, n_classes, n_test) for metric, m in runs.items()}
    write_figure(curves_figure(runs, learning), out_html)
