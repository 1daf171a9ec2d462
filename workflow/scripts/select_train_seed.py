"""One chunk of every arm of one (model, budget, seed) in the selection experiment (execution.selection_jobs: seed)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.selection import train_seed_chunk  # noqa: E402

train_seed_chunk(**snakemake.params, granted_threads=snakemake.threads, log=snakemake.log[0])
