"""Once per network outside the built-in ones: refuse it if it cannot take part, and probe what it costs."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.training import model_cost  # noqa: E402

model_cost(snakemake.output[0], **snakemake.params, log=snakemake.log[0])
