"""Rules of analysis.smk: what spans the runs of a study — its front page and the claims, tested."""

import json
import logging
import os
import warnings
from pathlib import Path

import pandas as pd
import yaml

from .. import stats
from ..atomic import atomic_path, write_text
from ..formats import read_matrix
from ..gradients import sketch_statement, unresolved_epochs
from ..logs import step
from ..plots import phase_summary
from ..report import claims_html, index_html, profile_figure

log = logging.getLogger("bestbatch")


def study_config_text(config, files, overrides, run_hashes):
    """The study as it runs, as YAML that can be given back with --configfile: every key, the schema's defaults
    filled in; a comment names the config files it was read from, the --config overrides and, per run, the
    config_hash its outputs' provenance records."""
    head = [
        "# The study as it runs: every key, the schema's defaults filled in (bestbatch). Give it back with",
        "# --configfile to run the same study. Read from: " + (", ".join(map(str, files)) or "a module's config"),
    ]
    if overrides:
        head.append("# --config overrides: " + ", ".join(f"{k}={v!r}" for k, v in sorted(overrides.items())))
    head.append("# config_hash in the provenance of each run's outputs (model, seed, metric):")
    head += [f"#   {model}, seed {seed}, {metric}: {h}" for (model, seed, metric), h in run_hashes]
    return "\n".join(head) + "\n" + yaml.safe_dump(config, sort_keys=False)


@step
def study_config(out_yaml, *, config, files, overrides, run_hashes):
    """results/<study>/config.yaml: the effective config (study_config_text)."""
    write_text(out_yaml, study_config_text(config, files, overrides, [(tuple(k), h) for k, h in run_hashes]))
    log.info("the study's effective config, read from %s", ", ".join(map(str, files)) or "a module's config")


@step
def study_index(
    matrix_paths,
    heatmap_paths,
    layers_paths,
    curves_paths,
    claims_html,
    config_yaml,
    out_html,
    out_summary,
    *,
    study,
    runs,
    metrics,
    phases,
    n_classes,
    n_test,
    selection_html=None,
    proxies_csv=None,
    sets_paths=None,
):
    """The study's front page. runs: [[model, seed]]; matrix_paths, heatmap_paths and layers_paths: one per
    (run, metric) in that order; curves_paths: one per run; proxies_csv: the study's proxies.csv, shown and linked;
    sets_paths: the sets pages, one per (run, metric) like heatmap_paths, or None where the study keeps no Gram
    matrices (outputs.gram: false). A run whose network did not learn (stats.run_learning) is named on the page and
    marked in summary.json."""
    here = os.path.dirname(out_html)
    rel = lambda path: os.path.relpath(path, here)  # noqa: E731
    runs = [(model, int(seed)) for model, seed in runs]
    keys = [(model, seed, metric) for model, seed in runs for metric in metrics]
    summaries, learning = {}, {}
    for key, path in zip(keys, matrix_paths):
        m = read_matrix(path)
        summaries[key] = phase_summary(m, phases)
        learning[key] = stats.run_learning(m.epoch, m.test_acc, phases, n_classes, n_test)
    links = {run: dict(curves=rel(curves), heatmaps={}, layers={}) for run, curves in zip(runs, curves_paths)}
    for (model, seed, metric), heatmap, layers in zip(keys, heatmap_paths, layers_paths):
        links[model, seed]["heatmaps"][metric] = rel(heatmap)
        links[model, seed]["layers"][metric] = rel(layers)
    if sets_paths:
        for (model, seed, metric), sets in zip(keys, sets_paths, strict=True):
            links[model, seed].setdefault("sets", {})[metric] = rel(sets)
    write_text(
        out_summary,
        json.dumps(
            [
                dict(
                    model=m,
                    seed=s,
                    metric=x,
                    learned=learning[m, s, x].learned,
                    test_accuracy_last_phase=learning[m, s, x].accuracy,
                    chance=learning[m, s, x].chance,
                    phases=summaries[m, s, x],
                )
                for m, s, x in keys
            ],
            indent=2,
        ),
    )
    write_text(
        out_html,
        index_html(
            study,
            Path(config_yaml).read_text(),
            runs,
            summaries,
            links,
            rel(claims_html),
            rel(selection_html) if selection_html else None,
            learning,
            (pd.read_csv(proxies_csv).to_dict("records"), rel(proxies_csv)) if proxies_csv else None,
        ),
    )


@step
def evaluate_claims(
    matrix_paths,
    out_csv,
    out_statistics,
    out_html,
    *,
    runs,
    metrics,
    phases,
    alpha,
    permutations,
    seed,
    n_classes,
    n_test,
    n_train,
    batch_size,
    plotly_js=None,
):
    """The paper's claims tested over the seeds (bestbatch.stats): claims.csv (claims, controls, one summary
    per model and claim), statistics.csv (every row, profiles and associations too) and the claims page.
    A run whose network did not learn (stats.run_learning) is named and left out of its rows."""
    runs = [(model, int(s)) for model, s in runs]
    matrices, sketches, unresolved, epochs_seen = {}, [], 0, 0
    for (model, s, metric), path in zip([(m, s, x) for m, s in runs for x in metrics], matrix_paths):
        m = read_matrix(path, gram=None)  # the Gram matrices where the study keeps them
        if m.sketch and m.sketch not in sketches:
            sketches.append(m.sketch)
        unresolved += len(unresolved_epochs(m.epoch, m.distance, m.sketch))
        epochs_seen += len(m.epoch)
        learning = stats.run_learning(m.epoch, m.test_acc, phases, n_classes, n_test)
        if not learning.learned:
            log.warning("%s, seed %d, %s: %s", model, s, metric, learning.describe())
        matrices.setdefault((model, metric), []).append(
            stats.SeedRun(m.distance, m.epoch, m.batch_score_mean, seed=s, learning=learning, gram=m.gram)
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = stats.analyse_study(matrices, phases, metrics, n_perm=permutations, alpha=alpha, seed=seed)
    notes = [str(w.message) for w in caught]
    for note in notes:
        log.warning("%s", note)
    if sketches:  # the page says its distances are estimates, with their bound
        notes.append(sketch_statement(sketches[0]))
        if unresolved:
            notes.append(
                f"In {unresolved} of the {epochs_seen} run-epochs the batches' sketched distances spread less (std / "
                "mean within the epoch) than the bound, so the sketch does not resolve their order there; the heatmap "
                "pages name those epochs."
            )
    table = pd.DataFrame(rows)
    with atomic_path(out_statistics) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out_csv) as tmp:
        table[table["kind"].isin(["claim", "control", "summary"])].to_csv(tmp, index=False, float_format="%.6g")
    n_seeds = sorted({len(v) for v in matrices.values()})
    write_text(
        out_html,
        claims_html(
            rows,
            profile_figure(rows, phases, plotly_js, out_html),
            n_seeds,
            alpha,
            permutations,
            notes,
            n_train,
            batch_size,
        ),
    )
    verdicts = table[table["kind"] == "summary"]["verdict"].value_counts().to_dict()
    log.info("%d rows; claim verdicts per model: %s", len(rows), verdicts)
    return rows
