"""Which sets of batches stand in for the full gradient: one run's sets from its Gram matrices, a CSV and a page."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.plots import sets_page  # noqa: E402

sets_page(
    snakemake.input.matrix,
    snakemake.output.csv,
    snakemake.output.html,
    model=snakemake.wildcards.model,
    seed=int(snakemake.wildcards.seed),
    metric=snakemake.wildcards.metric,
    **snakemake.params,
    plotly_js=snakemake.input.plotly_js,
    log=snakemake.log[0],
)
