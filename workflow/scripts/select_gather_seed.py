"""Every arm's run of one (model, budget, seed) in the selection experiment: each arm's chunks as one curve."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # scriptdir may hold ".."
from bestbatch.steps.selection import gather_seed_curves  # noqa: E402

chunks = snakemake.params.chunks
inputs = list(snakemake.input)  # arm by arm, each arm's chunks in order (the rule's input)
gather_seed_curves(
    [
        (inputs[i * chunks : (i + 1) * chunks], h5, csv)
        for i, (h5, csv) in enumerate(zip(snakemake.output.h5, snakemake.output.csv, strict=True))
    ],
    log=snakemake.log[0],
)
