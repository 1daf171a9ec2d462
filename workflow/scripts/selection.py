"""The selection experiment's comparison over seeds: every arm, every control, a verdict per recommendation."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.selection import summarise_selection  # noqa: E402

summarise_selection(
    list(snakemake.input.curves),
    snakemake.output.csv,
    snakemake.output.html,
    **snakemake.params,
    plotly_js=snakemake.input.plotly_js,
    power=snakemake.input.power,
    log=snakemake.log[0],
)
