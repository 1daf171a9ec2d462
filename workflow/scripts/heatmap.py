"""One metric's phase-split interactive heatmap."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.plots import heatmap_page  # noqa: E402

heatmap_page(
    snakemake.input.matrix,
    snakemake.output[0],
    metric=snakemake.wildcards.metric,
    **snakemake.params,
    plotly_js=snakemake.input.plotly_js,
    log=snakemake.log[0],
)
