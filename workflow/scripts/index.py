"""The study's index page: links, a per-phase summary, and the config."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from bestbatch.steps.plots import index_page  # noqa: E402

index_page(list(snakemake.input.matrices), list(snakemake.input.heatmaps), snakemake.input.curves, snakemake.output.html,
           snakemake.output.summary, **snakemake.params, log=snakemake.log[0])
