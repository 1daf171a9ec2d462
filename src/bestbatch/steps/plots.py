"""Rules of plots.smk: the heatmaps, the training curves and the index page, from the gathered matrices."""
import os

import yaml

from ..atomic import write_text
from ..formats import read_matrix
from ..logs import step
from ..plots import (curves_figure, heatmap_figure, index_html, layers_figure, phase_summary, summary_json,
                     write_figure)


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


@step
def index_page(matrix_paths, heatmap_paths, curves_path, out_html, out_summary, *, study, metrics, phases, config,
               layers_paths=None):
    """The study's front page: links, a per-phase summary, and the config (a dict) that produced it;
    layers_paths (one per metric, optional): the per-layer pages, linked too."""
    summaries = {m: phase_summary(read_matrix(p), phases) for m, p in zip(metrics, matrix_paths)}
    here = os.path.dirname(out_html)
    heatmap_links = {m: os.path.relpath(p, here) for m, p in zip(metrics, heatmap_paths)}
    write_text(out_summary, summary_json(summaries))
    layers_links = None if layers_paths is None else {m: os.path.relpath(p, here)
                                                      for m, p in zip(metrics, layers_paths)}
    write_text(out_html, index_html(study, yaml.safe_dump(config, sort_keys=False), metrics, summaries, heatmap_links,
                                    os.path.relpath(curves_path, here), layers_links))
