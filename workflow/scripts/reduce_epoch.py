"""Distances of one epoch's mini-batch gradients to the full gradient (one read of the shard)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from bestbatch.jobs import logged, reduce_epoch  # noqa: E402

with logged(snakemake.log[0]):
    reduce_epoch(snakemake.input[0], snakemake.output[0])
