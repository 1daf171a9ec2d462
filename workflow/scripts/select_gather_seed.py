"""Every arm's run of one (model, budget, seed) in the selection experiment: each arm's chunks as one curve."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.selection import gather_seed_curves  # noqa: E402

gather_seed_curves(
    list(snakemake.input), snakemake.output.h5, snakemake.output.csv, **snakemake.params, log=snakemake.log[0]
)
