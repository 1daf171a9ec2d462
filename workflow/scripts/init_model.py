"""Epoch 0: the seeded initialisation shared by every metric."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.training import init_model  # noqa: E402

init_model(snakemake.output[0], **snakemake.params, log=snakemake.log[0])
