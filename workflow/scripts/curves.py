"""Training loss and test accuracy of every metric's run, on one page."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.plots import curves_page  # noqa: E402

curves_page(
    list(snakemake.input.matrices),
    snakemake.output[0],
    **snakemake.params,
    plotly_js=snakemake.input.plotly_js,
    log=snakemake.log[0],
)
