"""Epoch 0: the seeded initialisation shared by every metric."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from bestbatch.config import validate_config  # noqa: E402
from bestbatch.jobs import init_checkpoint, logged  # noqa: E402

with logged(snakemake.log[0]):
    init_checkpoint(validate_config(snakemake.config), snakemake.output[0])
