"""Which parameter tensors carry the distance to the full gradient, phase by phase."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.plots import layers_page  # noqa: E402

layers_page(
    snakemake.input.matrix,
    snakemake.output[0],
    metric=snakemake.wildcards.metric,
    **snakemake.params,
    plotly_js=snakemake.input.plotly_js,
    log=snakemake.log[0],
)
