"""Decode an image folder once into CIFAR-10's on-disk format, the cache every job reads."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.data import imagefolder_dataset  # noqa: E402

imagefolder_dataset(**snakemake.params, log=snakemake.log[0])
