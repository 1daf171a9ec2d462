# bestbatch: which mini-batch best approximates the full-batch gradient, and how that changes over
# training (Lasky et al., "What's the Best Mini-batch?", Algorithm 1), as a Snakemake workflow.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/orderings.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/distances.smk"


rule all:
    input:
        expand(f"{R}/{{metric}}/distances.h5", metric=METRICS),
        expand(f"{R}/{{metric}}/distances.csv", metric=METRICS),
        expand(f"{R}/{{metric}}/checkpoints/epoch_{EPOCHS}.pt", metric=METRICS),
    default_target: True
