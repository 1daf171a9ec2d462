"""One metric's epochs as an E x K matrix (HDF5) and a tidy CSV."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.distances import gather_distances  # noqa: E402

gather_distances(
    list(snakemake.input),
    snakemake.output.h5,
    snakemake.output.csv,
    metric=snakemake.wildcards.metric,
    **snakemake.params,
    log=snakemake.log[0],
)
