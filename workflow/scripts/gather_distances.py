"""One metric's epochs as an E x K matrix (HDF5) and a tidy CSV."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from bestbatch.jobs import gather_metric, logged  # noqa: E402

with logged(snakemake.log[0]):
    gather_metric(snakemake.wildcards.metric, list(snakemake.input), snakemake.output.h5, snakemake.output.csv)
