"""The study's index page: links, a per-phase summary, and the config."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from bestbatch.config import validate_config  # noqa: E402
from bestbatch.logs import logged  # noqa: E402
from bestbatch.plots import index_page  # noqa: E402

with logged(snakemake.log[0]):
    config = validate_config(snakemake.config)
    here = os.path.dirname(snakemake.output.html)
    index_page(config, snakemake.config, config["metrics"], list(snakemake.input.matrices), snakemake.output.html,
               snakemake.output.summary,
               {m: os.path.relpath(p, here) for m, p in zip(config["metrics"], snakemake.input.heatmaps)},
               os.path.relpath(snakemake.input.curves, here))
