"""The paper's claims tested over the seeds: effect sizes, CIs, Holm-corrected permutation p-values, verdicts."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.analysis import evaluate_claims  # noqa: E402

evaluate_claims(
    list(snakemake.input.matrices),
    snakemake.output.csv,
    snakemake.output.statistics,
    snakemake.output.html,
    **snakemake.params,
    plotly_js=snakemake.input.plotly_js,
    log=snakemake.log[0],
)
