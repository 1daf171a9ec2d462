"""Training loss and test accuracy of every metric's run, on one page."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from bestbatch.config import validate_config  # noqa: E402
from bestbatch.logs import logged  # noqa: E402
from bestbatch.plots import curves_page  # noqa: E402

with logged(snakemake.log[0]):
    curves_page(validate_config(snakemake.config)["metrics"], list(snakemake.input), snakemake.output[0])
