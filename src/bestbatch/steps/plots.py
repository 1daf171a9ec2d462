"""Rules of plots.smk: a run's heatmaps, layer shares and training curves, from its gathered matrices."""

from ..formats import read_matrix
from ..logs import step
from ..plots import curves_figure, heatmap_figure, layers_figure, write_figure


@step
def heatmap_page(matrix_path, out_html, *, metric, phases):
    """One metric's phase-split interactive heatmap; phases: [(phase, first, last, lr)]."""
    write_figure(heatmap_figure(metric, read_matrix(matrix_path), phases), out_html)


@step
def layers_page(matrix_path, out_html, *, metric, phases):
    """One metric's per-layer page: which parameter tensors carry the distance in each phase."""
    write_figure(layers_figure(metric, read_matrix(matrix_path), phases), out_html)


@step
def curves_page(matrix_paths, out_html, *, metrics):
    """Training loss, test accuracy, gradient noise scale and gradient diversity of every metric's run,
    on one page."""
    write_figure(curves_figure({m: read_matrix(p) for m, p in zip(metrics, matrix_paths)}), out_html)
