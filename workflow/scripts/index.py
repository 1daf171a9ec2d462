"""The study's front page: every run's heatmaps and curves, a per-phase summary, the claims, the proxies, the config."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.analysis import study_index  # noqa: E402

study_index(
    list(snakemake.input.matrices),
    list(snakemake.input.heatmaps),
    list(snakemake.input.layers),
    list(snakemake.input.curves),
    snakemake.input.claims,
    snakemake.input.config,
    snakemake.output.html,
    snakemake.output.summary,
    selection_html=(list(snakemake.input.selection) or [None])[0],
    proxies_csv=snakemake.input.proxies,
    sets_paths=list(snakemake.input.sets) or None,
    **snakemake.params,
    log=snakemake.log[0],
)
