"""One chunk of one arm's plain training run in the selection experiment."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.selection import train_arm_chunk  # noqa: E402

train_arm_chunk(
    snakemake.input.order or None,
    snakemake.input.state,
    snakemake.output.state,
    snakemake.output.curve,
    profile_paths=list(snakemake.input.profiles),
    **snakemake.params,
    granted_threads=snakemake.threads,
    log=snakemake.log[0],
)
