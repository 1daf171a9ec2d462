"""Score every training image by one metric and write the ascending order."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.orderings import make_ordering  # noqa: E402

make_ordering(
    snakemake.output[0],
    metric=snakemake.wildcards.metric,
    **snakemake.params,
    granted_threads=snakemake.threads,
    log=snakemake.log[0],
)
