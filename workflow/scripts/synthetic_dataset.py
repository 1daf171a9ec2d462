"""Generate the synthetic data set in CIFAR-10's on-disk format."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.data import synthetic_dataset  # noqa: E402

synthetic_dataset(**snakemake.params, log=snakemake.log[0])
