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
include: "workflow/rules/analysis.smk"
include: "workflow/rules/selection.smk"


# Seconds of work each: run them where Snakemake runs, never through a cluster queue.
localrules:
    all,
    gather_distances,
    heatmap,
    layers,
    curves,
    claims,
    index,


rule all:
    default_target: True
    input:
        f"{R}/index.html",
        f"{R}/claims.csv",
        runs(f"{RUN}/{{metric}}/distances.csv"),
        runs(f"{RUN}/{{metric}}/checkpoints/epoch_{EPOCHS}.pt"),
        [f"{R}/selection.html"] if SEL else [],


# One metric alone, e.g. `snakemake --cores all study_intensity`: every model and seed of that metric, and
# no job of another metric.
for _metric in METRICS:

    rule:
        name:
            f"study_{_metric}"
        input:
            runs(f"{RUN}/plots/heatmap_{{metric}}.html", metric=_metric),
            runs(f"{RUN}/{{metric}}/distances.csv", metric=_metric),
            runs(f"{RUN}/{{metric}}/checkpoints/epoch_{EPOCHS}.pt", metric=_metric),
        localrule: True
