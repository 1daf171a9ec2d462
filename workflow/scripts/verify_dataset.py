"""Read the data set once, check it, and record what it holds."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.data import verify_dataset  # noqa: E402

verify_dataset(snakemake.output[0], **snakemake.params, log=snakemake.log[0])
