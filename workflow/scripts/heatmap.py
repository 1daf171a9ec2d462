"""One metric's phase-split interactive heatmap."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from bestbatch.config import validate_config  # noqa: E402
from bestbatch.logs import logged  # noqa: E402
from bestbatch.plots import heatmap_page  # noqa: E402

with logged(snakemake.log[0]):
    heatmap_page(validate_config(snakemake.config), snakemake.wildcards.metric, snakemake.input[0], snakemake.output[0])
