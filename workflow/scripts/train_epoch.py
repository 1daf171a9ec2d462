"""One (metric, epoch) job of Algorithm 1: train net_normal (and, inline, probe net_compare and write the shard)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.training import train_epoch  # noqa: E402

train_epoch(
    snakemake.input.order,
    snakemake.input.state,
    snakemake.output.state,
    snakemake.output.get("shard"),  # inline layout
    snakemake.output.get("records"),  # parallel layout
    snakemake.output.get("epoch"),  # inline, outputs.gradients: memory or sketch
    metric=snakemake.wildcards.metric,
    epoch=int(snakemake.wildcards.epoch),
    **snakemake.params,
    shard_io=snakemake.config["outputs"]["shard_io"],  # read here, not a param: it changes no result
    granted_threads=snakemake.threads,
    log=snakemake.log[0],
)
