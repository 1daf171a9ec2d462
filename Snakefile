# bestbatch: which mini-batch best approximates the full-batch gradient, and how does that change over
# training (Lasky et al., "What's the Best Mini-batch?", Algorithm 1), as a Snakemake workflow.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/orderings.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/distances.smk"
include: "workflow/rules/plots.smk"


# Seconds of work each: run them where Snakemake runs, never through a cluster queue.
localrules:
    all,
    gather_distances,
    heatmap,
    curves,
    index,


rule all:
    input:
        f"{R}/index.html",
        expand(f"{R}/{{metric}}/distances.csv", metric=METRICS),
        expand(f"{R}/{{metric}}/checkpoints/epoch_{EPOCHS}.pt", metric=METRICS),
    default_target: True


# One metric alone, e.g. `snakemake --cores all study_intensity`: no job of another metric runs.
for _metric in METRICS:

    rule:
        name:
            f"study_{_metric}"
        localrule: True
        input:
            f"{R}/plots/heatmap_{_metric}.html",
            f"{R}/{_metric}/distances.csv",
            f"{R}/{_metric}/checkpoints/epoch_{EPOCHS}.pt",
