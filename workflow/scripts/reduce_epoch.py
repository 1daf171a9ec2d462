"""Distances of one epoch's mini-batch gradients to the full gradient (one read of the shard)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.distances import reduce_epoch  # noqa: E402

reduce_epoch(
    snakemake.input.shard,
    snakemake.output[0],
    (list(snakemake.input.training) or [None])[0],
    threads=snakemake.threads,
    gram=getattr(snakemake.params, "gram", False),
    log=snakemake.log[0],
)
