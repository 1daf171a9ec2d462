"""One arm's run of the selection experiment: its chunks' evaluations as one curve."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.selection import gather_curve  # noqa: E402

gather_curve(list(snakemake.input), snakemake.output.h5, snakemake.output.csv, log=snakemake.log[0])
