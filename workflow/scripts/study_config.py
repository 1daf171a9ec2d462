"""The study's effective config: every key, the schema's defaults filled in, and where it was read from."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.analysis import study_config  # noqa: E402

study_config(snakemake.output[0], **snakemake.params, log=snakemake.log[0])
