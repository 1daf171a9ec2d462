"""One (metric, epoch) job of Algorithm 1: train net_normal, probe net_compare, write the shard."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from bestbatch.config import validate_config  # noqa: E402
from bestbatch.jobs import logged, train_epoch  # noqa: E402

with logged(snakemake.log[0]):
    train_epoch(validate_config(snakemake.config), snakemake.wildcards.metric, int(snakemake.wildcards.epoch),
                snakemake.input.order, snakemake.input.state, snakemake.output.state, snakemake.output.shard,
                threads=snakemake.threads)
