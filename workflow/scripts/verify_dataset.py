"""Read the data set once, check it, and record what it holds."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from bestbatch.config import validate_config  # noqa: E402
from bestbatch.jobs import logged, verify_dataset  # noqa: E402

with logged(snakemake.log[0]):
    verify_dataset(validate_config(snakemake.config), snakemake.output[0])
