"""Score every training image by one metric and write the ascending order."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from bestbatch.config import validate_config  # noqa: E402
from bestbatch.jobs import logged, make_ordering  # noqa: E402

with logged(snakemake.log[0]):
    make_ordering(validate_config(snakemake.config), snakemake.wildcards.metric, snakemake.output[0],
                  threads=snakemake.threads)
