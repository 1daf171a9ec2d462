"""One (metric, epoch) compare job of the parallel layout: net_compare at the epoch-start parameters writes the shard."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.training import compare_epoch  # noqa: E402

compare_epoch(
    snakemake.input.order,
    snakemake.input.state,
    snakemake.output.get("shard"),
    snakemake.output.get("reduced"),  # outputs.gradients: memory or sketch
    metric=snakemake.wildcards.metric,
    epoch=int(snakemake.wildcards.epoch),
    **snakemake.params,
    shard_io=snakemake.config["outputs"]["shard_io"],  # read here, not a param: it changes no result
    granted_threads=snakemake.threads,
    log=snakemake.log[0],
)
