"""The parallel layout with gradients in memory or sketched: the compare job's epoch file completed with the training records."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.distances import complete_epoch  # noqa: E402

complete_epoch(snakemake.input.reduced, snakemake.input.training, snakemake.output[0], log=snakemake.log[0])
