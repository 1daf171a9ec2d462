"""How many seeds the selection page's confirmatory family needs: power simulated on step-decay curves of the
study's own layout."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.selection import selection_power  # noqa: E402

selection_power(snakemake.output.json, **snakemake.params, log=snakemake.log[0])
