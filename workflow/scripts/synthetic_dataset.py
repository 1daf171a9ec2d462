"""Generate the synthetic data set in CIFAR-10's on-disk format."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from bestbatch.config import validate_config  # noqa: E402
from bestbatch.jobs import logged, make_synthetic_dataset  # noqa: E402

with logged(snakemake.log[0]):
    make_synthetic_dataset(validate_config(snakemake.config))
