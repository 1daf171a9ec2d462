"""Cheap proxies (last layer's distance, batch loss, gradient norm) against the exact distance, over the seeds."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.proxies import proxies_table  # noqa: E402

proxies_table(list(snakemake.input.matrices), snakemake.output.csv, **snakemake.params, log=snakemake.log[0])
